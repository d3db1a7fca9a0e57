//! A lean HTTP/1.1 client connection for the load generator, in the manner of wrk's own: the
//! request goes out as one write of its bytes, the response head is parsed with `httparse` (the
//! parser hyper uses), and the body is read and discarded by its framing (RFC 9112 §6.3): none
//! for a HEAD request or a 1xx, 204 or 304 answer, chunked for `Transfer-Encoding: chunked`,
//! `Content-Length` bytes, else until the server closes. Interim 1xx answers are skipped.
//!
//! Why not hyper's client: a load generator's cost per request is what limits the rate it can
//! hold on a small machine. hyper's client runs a dispatch task per connection and hands every
//! request and answer across a channel; here a send is a write and the reads of its answer, in
//! the caller's task.

use crate::origination::{Originate, Stream};
use bytes::{Buf, BytesMut};
use proxy_engine::RequestHead;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most response header fields accepted.
const MAX_HEADERS: usize = 100;

/// Why an exchange failed; the connection is unusable afterwards.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before the answer was complete.
    #[error("connection closed before the answer was complete")]
    Closed,
    /// The answer is not valid HTTP/1.1.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    /// The answer's body is longer than the limit.
    #[error("answer body over the limit")]
    TooLarge,
}

/// How the body of an answer is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// An HTTP/1.1 connection carrying one request at a time.
#[derive(Debug)]
pub struct H1Conn {
    stream: Stream,
    buf: BytesMut,
    /// Set when the connection cannot carry another request.
    closed: bool,
}

impl H1Conn {
    /// Connects to `addr` (TCP_NODELAY), over TLS with `tls`, failing after `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&Originate>,
    ) -> io::Result<H1Conn> {
        let open = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            match tls {
                None => Ok(Stream::Plain(tcp)),
                Some(tls) => Stream::handshake(tcp, tls).await,
            }
        };
        let stream = tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        Ok(H1Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            closed: false,
        })
    }

    /// Whether an answer ended the connection (`Connection: close`, a body to the close, a
    /// failed exchange). Costs nothing; `is_closed` also asks the socket.
    pub fn is_ended(&self) -> bool {
        self.closed
    }

    /// Whether the connection can no longer carry a request: an earlier answer ended it, or
    /// the server closed it (or sent something unasked) while it was idle.
    pub fn is_closed(&mut self) -> bool {
        if !self.closed && !self.stream.is_idle_open() {
            self.closed = true;
        }
        self.closed
    }

    /// Sends `request` (bytes from `render`) and reads its answer; the status. A request for
    /// `HEAD` has an answer without a body. A body longer than `max_body` fails the exchange.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head_request: bool,
        max_body: u64,
    ) -> Result<u16, H1Error> {
        self.closed = true; // until the answer has been read whole
        self.buf.clear();
        self.stream.write_all(request).await?;
        loop {
            let (status, framing, keep) = self.read_head(head_request).await?;
            if (100..200).contains(&status) && status != 101 {
                continue; // interim answer: the final one follows
            }
            self.read_body(framing, max_body).await?;
            self.closed = !keep || framing == Framing::UntilClose || status == 101;
            return Ok(status);
        }
    }

    /// Reads more bytes into the buffer; `Closed` at end of stream.
    async fn fill(&mut self) -> Result<(), H1Error> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(H1Error::Closed);
        }
        Ok(())
    }

    /// Parses the next response head: status, body framing and whether the connection stays
    /// open after the answer.
    async fn read_head(&mut self, head_request: bool) -> Result<(u16, Framing, bool), H1Error> {
        loop {
            match parse_head(&self.buf, head_request)? {
                Some((len, answer)) => {
                    self.buf.advance(len);
                    return Ok(answer);
                }
                None if self.buf.len() < MAX_HEAD => self.fill().await?,
                None => return Err(H1Error::Malformed("response head too long")),
            }
        }
    }

    /// Reads and discards a body of the given framing.
    async fn read_body(&mut self, framing: Framing, max_body: u64) -> Result<(), H1Error> {
        match framing {
            Framing::None => Ok(()),
            Framing::Length(n) if n > max_body => Err(H1Error::TooLarge),
            Framing::Length(n) => self.discard(n).await,
            Framing::Chunked => self.read_chunked(max_body).await,
            Framing::UntilClose => {
                let mut total = self.buf.len() as u64;
                self.buf.clear();
                loop {
                    match self.stream.read_buf(&mut self.buf).await? {
                        0 => return Ok(()),
                        n => total += n as u64,
                    }
                    self.buf.clear();
                    if total > max_body {
                        return Err(H1Error::TooLarge);
                    }
                }
            }
        }
    }

    /// Discards the next `n` bytes of the stream.
    async fn discard(&mut self, mut n: u64) -> Result<(), H1Error> {
        loop {
            let take = n.min(self.buf.len() as u64);
            self.buf.advance(take as usize);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Reads a chunked body (chunk extensions and trailers are skipped).
    async fn read_chunked(&mut self, max_body: u64) -> Result<(), H1Error> {
        let mut total: u64 = 0;
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.buf.advance(len);
                        break size;
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() < MAX_HEAD => {
                        self.fill().await?
                    }
                    _ => return Err(H1Error::Malformed("invalid chunk size")),
                }
            };
            if size == 0 {
                return self.skip_trailers().await;
            }
            total = total.saturating_add(size);
            if total > max_body {
                return Err(H1Error::TooLarge);
            }
            self.discard(size).await?;
            self.expect_crlf().await?;
        }
    }

    /// The CRLF after a chunk's data.
    async fn expect_crlf(&mut self) -> Result<(), H1Error> {
        while self.buf.len() < 2 {
            self.fill().await?;
        }
        if &self.buf[..2] != b"\r\n" {
            return Err(H1Error::Malformed("chunk not followed by CRLF"));
        }
        self.buf.advance(2);
        Ok(())
    }

    /// Trailer lines up to and including the empty line that ends a chunked body.
    async fn skip_trailers(&mut self) -> Result<(), H1Error> {
        loop {
            match self.buf.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.buf.advance(2);
                    return Ok(());
                }
                Some(i) => self.buf.advance(i + 2),
                None if self.buf.len() < MAX_HEAD => self.fill().await?,
                None => return Err(H1Error::Malformed("trailers too long")),
            }
        }
    }
}

/// The response head at the start of `buf`: its length, status, body framing and whether the
/// connection stays open; `None` while incomplete. (Synchronous, so the parser's header array
/// never lives in a future.)
#[allow(clippy::type_complexity)]
fn parse_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(usize, (u16, Framing, bool))>, H1Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(H1Error::Malformed("invalid response head")),
    };
    let status = resp.code.ok_or(H1Error::Malformed("no status"))?;
    let head = parse_fields(resp.headers)?;
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else if head.chunked {
        Framing::Chunked
    } else if let Some(n) = head.length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let keep = if resp.version == Some(0) {
        head.keep_alive
    } else {
        !head.close
    };
    Ok(Some((len, (status, framing, keep))))
}

/// What the load generator needs of a response head's fields.
#[derive(Debug, Default)]
struct Fields {
    length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

fn parse_fields(headers: &[httparse::Header<'_>]) -> Result<Fields, H1Error> {
    let mut f = Fields::default();
    let mut encoded = false;
    for h in headers {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| H1Error::Malformed("invalid content-length"))?;
            if f.length.is_some_and(|m| m != n) {
                return Err(H1Error::Malformed("conflicting content-length"));
            }
            f.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            // Chunked only when it is the last coding (RFC 9112 §6.3).
            f.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                f.close |= token.eq_ignore_ascii_case("close");
                f.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    if encoded {
        // Transfer-Encoding overrides Content-Length; a non-chunked final coding means the
        // body runs to the close.
        f.length = None;
        f.close |= !f.chunked;
    }
    Ok(f)
}

/// The request bytes of `head` (with `Host` from its authority, and `content-length: 0` for
/// methods that usually carry a body); `None` if a part is not valid HTTP.
pub fn render(head: &RequestHead) -> Option<Vec<u8>> {
    http::Method::from_bytes(head.method.as_bytes()).ok()?;
    http::uri::PathAndQuery::try_from(&*head.path).ok()?;
    http::HeaderValue::from_str(&head.authority).ok()?;
    let mut out = Vec::with_capacity(64 + head.path.len() + head.authority.len());
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(head.authority.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in head.headers.iter() {
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        http::HeaderValue::from_str(value).ok()?;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if matches!(&*head.method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each request on one connection with the next canned bytes.
    async fn serve(answers: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            for a in answers {
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.expect("read");
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                s.write_all(a).await.expect("write");
            }
        });
        addr
    }

    fn get() -> Vec<u8> {
        let head = RequestHead::new(proxy_engine::types::HeadParts {
            method: "GET".into(),
            authority: "svc".into(),
            path: "/x?y=1".into(),
            scheme: "http".into(),
            headers: Vec::new().into(),
            source: "".into(),
        });
        render(&head).expect("valid head")
    }

    #[tokio::test]
    async fn reads_every_framing_and_reuses_the_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nt: v\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno",
        ])
        .await;
        let mut c = H1Conn::connect(addr, Duration::from_secs(5), None)
            .await
            .expect("connect");
        let req = get();
        for expect in [200, 201, 204] {
            assert_eq!(
                c.exchange(&req, false, 1 << 20).await.expect("answer"),
                expect
            );
            assert!(!c.is_closed(), "kept open after {expect}");
        }
        assert_eq!(c.exchange(&req, false, 1 << 20).await.expect("answer"), 503);
        assert!(c.is_closed(), "connection: close ends it");
    }

    #[tokio::test]
    async fn a_body_to_the_close_and_a_short_answer() {
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\n\r\nall of it"]).await;
        let mut c = H1Conn::connect(addr, Duration::from_secs(5), None)
            .await
            .expect("connect");
        assert_eq!(
            c.exchange(&get(), false, 1 << 20).await.expect("answer"),
            200
        );
        assert!(c.is_closed());
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]).await;
        let mut c = H1Conn::connect(addr, Duration::from_secs(5), None)
            .await
            .expect("connect");
        assert!(matches!(
            c.exchange(&get(), false, 1 << 20).await,
            Err(H1Error::Closed)
        ));
        assert!(c.is_closed());
    }

    #[tokio::test]
    async fn limits_and_garbage_fail_the_exchange() {
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"]).await;
        let mut c = H1Conn::connect(addr, Duration::from_secs(5), None)
            .await
            .expect("connect");
        assert!(matches!(
            c.exchange(&get(), false, 10).await,
            Err(H1Error::TooLarge)
        ));
        let addr = serve(vec![b"SMTP ready\r\n\r\n"]).await;
        let mut c = H1Conn::connect(addr, Duration::from_secs(5), None)
            .await
            .expect("connect");
        assert!(matches!(
            c.exchange(&get(), false, 10).await,
            Err(H1Error::Malformed(_))
        ));
    }

    #[test]
    fn renders_origin_form_with_host_first() {
        assert_eq!(get(), b"GET /x?y=1 HTTP/1.1\r\nhost: svc\r\n\r\n");
    }
}
