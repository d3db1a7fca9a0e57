//! Downstream listeners: accept TCP (optionally TLS), serve HTTP/1.1 and HTTP/2 (h2c by prior
//! knowledge, or ALPN over TLS) with hyper, and hand each request to the engine driver.
//!
//! Protective bounds (`Limits`): a header read timeout, a maximum request head (hyper answers
//! 431), a maximum body (413), a maximum number of open connections. Malformed requests get
//! hyper's 400. A client that goes away mid-request cancels it through the engine (`DC`).

use crate::config::{Limits, DEFAULT_MAX_HEADERS};
use crate::driver::ProxyHandle;
use crate::header_timer::HeaderTimer;
use crate::http_util::{self, Body};
use crate::stop::{StopSignal, StopWatch};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use proxy_engine::RequestId;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// A running listener.
pub struct Listener {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Stops accepting, lets open connections finish their in-flight requests (graceful
    /// shutdown), and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Ctx {
    proxy: ProxyHandle,
    limits: Limits,
    scheme: &'static str,
}

/// Binds `addr` and serves requests through `proxy`.
pub async fn listen(
    addr: SocketAddr,
    proxy: ProxyHandle,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<Listener> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        proxy,
        scheme: if tls.is_some() { "https" } else { "http" },
        limits,
    });
    let task = tokio::spawn(accept_loop(
        listener,
        ctx,
        tls.map(TlsAcceptor::from),
        stopped,
    ));
    Ok(Listener { addr, stop, task })
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    tls: Option<TlsAcceptor>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections));
    let signal = StopSignal::new();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // Bound open connections: wait for a slot before accepting.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = stopped.changed() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => break,
        };
        let Ok((stream, peer)) = accepted else {
            // E.g. out of file descriptors: pause rather than spin, then try again.
            drop(permit);
            (ctx.proxy.gauges.accept_errors_total).fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let tls = tls.clone();
        let stop = signal.watch();
        conns.spawn(async move {
            let gauges = ctx.proxy.gauges.clone();
            gauges
                .downstream_connections
                .fetch_add(1, Ordering::Relaxed);
            match tls {
                Some(acceptor) => {
                    // The handshake, ClientHello included, within the header read timeout.
                    let timeout = Duration::from_nanos(ctx.limits.header_read_timeout.0);
                    let shake = tokio::time::timeout(timeout, acceptor.accept(stream)).await;
                    if shake.is_err() {
                        gauges.protocol_errors_total.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(Ok(s)) = shake {
                        let proto = match s.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Proto::Http2,
                            Some(_) => Proto::Http1,
                            None => Proto::Unknown,
                        };
                        serve(TokioIo::new(s), ctx, peer, stop, proto).await;
                    }
                }
                None => {
                    let timeout = Duration::from_nanos(ctx.limits.header_read_timeout.0);
                    match tokio::time::timeout(timeout, sniff(&stream)).await {
                        Ok(proto) => serve(TokioIo::new(stream), ctx, peer, stop, proto).await,
                        // Connected and sent nothing for a whole header read timeout.
                        Err(_) => {
                            gauges.protocol_errors_total.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            gauges
                .downstream_connections
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        while conns.try_join_next().is_some() {}
    }
    // The socket closes now, so the kernel stops accepting connections no one will serve.
    drop(listener);
    // Graceful: the connections are told and finish their in-flight requests, for at most
    // `drain_timeout`; then the rest are closed.
    signal.fire();
    let drain = Duration::from_nanos(ctx.limits.drain_timeout.0);
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// The pause after a failed accept (out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// HTTP/2 streams a client may open at once on one connection (Envoy's edge recommendation).
const H2_MAX_STREAMS: u32 = 100;
/// HTTP/2 flow-control window per stream, bytes (Envoy's edge recommendation: 64 KiB).
const H2_STREAM_WINDOW: u32 = 64 * 1024;
/// HTTP/2 flow-control window per connection, bytes (Envoy's edge recommendation: 1 MiB).
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// The protocol a downstream connection speaks, when known before serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
    /// Not decided yet (a TLS peer without ALPN, or a plain one whose first bytes were a
    /// partial match of the HTTP/2 preface): hyper's auto builder reads the preface.
    Unknown,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Decides a plain connection's protocol from its first bytes, without consuming them: an
/// HTTP/1.1 request differs from the HTTP/2 preface in its first byte or so. Serving a known
/// protocol with its own hyper builder spares every read the auto builder's rewind wrapper.
async fn sniff(stream: &tokio::net::TcpStream) -> Proto {
    let mut buf = [0u8; H2_PREFACE.len()];
    let Ok(n) = stream.peek(&mut buf).await else {
        return Proto::Unknown; // hyper reports the error
    };
    if buf[..n] != H2_PREFACE[..n] {
        Proto::Http1
    } else if n == H2_PREFACE.len() {
        Proto::Http2
    } else {
        Proto::Unknown
    }
}

/// Drives a connection to its end, beginning its graceful shutdown when the listener stops.
/// Returns whether it ended cleanly.
async fn drive<C, T, E>(conn: C, stop: &mut StopWatch, shutdown: fn(Pin<&mut C>)) -> bool
where
    C: Future<Output = Result<T, E>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    std::future::poll_fn(|cx| {
        if !stopping && stop.stopped(cx) {
            stopping = true;
            shutdown(conn.as_mut());
        }
        conn.as_mut().poll(cx)
    })
    .await
    .is_ok()
}

async fn serve<I>(io: I, ctx: Arc<Ctx>, peer: SocketAddr, mut stop: StopWatch, proto: Proto)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_nanos(ctx.limits.header_read_timeout.0);
    let max_buf = ctx.limits.max_header_bytes.max(8192);
    let max_h2_headers = ctx.limits.max_header_bytes as u32;
    let max_headers = ctx.limits.max_headers;
    let gauges = ctx.proxy.gauges.clone();
    let conn = Arc::new(Conn {
        strings: std::sync::Mutex::new(http_util::ConnStrings::new(
            &peer.ip().to_string(),
            ctx.scheme,
        )),
        ctx,
        seen_request: std::sync::atomic::AtomicBool::new(false),
    });
    let first = conn.clone();
    // hyper's header read timeout is HTTP/1's; an HTTP/2 (or undecided) connection must
    // bring its first request head within the same time, or it is closed.
    let watchdog = async move {
        tokio::time::sleep(header_timeout).await;
        if first.seen_request.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    let svc = service_fn(move |req| handle(req, conn.clone()));
    let ok = match proto {
        Proto::Http1 => {
            let mut b = hyper::server::conn::http1::Builder::new();
            // One `send` of a flattened head and body rather than a `writev`: the kernel's
            // vectored path costs more per call than copying a small body here.
            b.writev(false)
                .timer(HeaderTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(max_buf);
            if max_headers != DEFAULT_MAX_HEADERS {
                b.max_headers(max_headers); // else hyper's own (on the stack)
            }
            drive(b.serve_connection(io, svc), &mut stop, |c| {
                c.graceful_shutdown()
            })
            .await
        }
        Proto::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .max_header_list_size(max_h2_headers)
                .max_concurrent_streams(H2_MAX_STREAMS)
                .initial_stream_window_size(H2_STREAM_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW);
            let served = drive(b.serve_connection(io, svc), &mut stop, |c| {
                c.graceful_shutdown()
            });
            tokio::select! {
                ok = served => ok,
                () = watchdog => false,
            }
        }
        Proto::Unknown => {
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1()
                .writev(false)
                .timer(HeaderTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(max_buf);
            if max_headers != DEFAULT_MAX_HEADERS {
                b.http1().max_headers(max_headers);
            }
            b.http2()
                .timer(TokioTimer::new())
                .max_header_list_size(max_h2_headers)
                .max_concurrent_streams(H2_MAX_STREAMS)
                .initial_stream_window_size(H2_STREAM_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW);
            let served = drive(b.serve_connection(io, svc), &mut stop, |c| {
                c.graceful_shutdown()
            });
            tokio::select! {
                ok = served => ok,
                () = watchdog => false,
            }
        }
    };
    if !ok {
        gauges.protocol_errors_total.fetch_add(1, Ordering::Relaxed);
    }
}

/// A refusal before the engine sees the request (counted as a rejection) that also ends the
/// connection: the request's body is left unread, so the connection's next bytes would not
/// be a request.
fn refuse_and_close(ctx: &Ctx, status: StatusCode, msg: &'static str) -> Response<Body> {
    ctx.proxy
        .gauges
        .rejected_total
        .fetch_add(1, Ordering::Relaxed);
    let mut resp = http_util::text(status, msg);
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// The bytes of `parts`' head as HTTP/1.1 writes it: the request line, each header as
/// `name: value\r\n`, and the blank line (HTTP/2 heads are measured the same way).
fn head_bytes(parts: &http::request::Parts) -> usize {
    let target = parts.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = parts.method.as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = (parts.headers.iter())
        .map(|(n, v)| n.as_str().len() + 2 + v.len() + 2)
        .sum();
    line + headers + 2
}

/// What a connection's requests share: one `Arc` per request, not one per part.
struct Conn {
    ctx: Arc<Ctx>,
    /// Strings shared by the requests' heads (HTTP/2 may run several at once, hence the lock).
    strings: std::sync::Mutex<http_util::ConnStrings>,
    /// A request head has arrived on the connection (the first-request watchdog stands down).
    seen_request: std::sync::atomic::AtomicBool,
}

/// Sends `Cancel` for a request whose downstream future is dropped before its response.
struct CancelGuard<'a> {
    proxy: &'a ProxyHandle,
    req: RequestId,
    armed: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.proxy.cancel(self.req);
        }
    }
}

async fn handle(req: Request<Incoming>, conn: Arc<Conn>) -> Result<Response<Body>, Infallible> {
    let ctx = &conn.ctx;
    conn.seen_request.store(true, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    // HTTP/1 heads past the count are hyper's 431; HTTP/2 ones are counted here. The size is
    // measured here too, as the head's bytes on the wire: hyper's buffer limit alone lets a
    // head through that arrives in fewer, larger reads.
    if parts.headers.len() > ctx.limits.max_headers
        || head_bytes(&parts) > ctx.limits.max_header_bytes
    {
        ctx.proxy
            .gauges
            .rejected_total
            .fetch_add(1, Ordering::Relaxed);
        return Ok(http_util::text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large",
        ));
    }
    // A body announced larger than the limit is refused before it is read, so a client that
    // sent `Expect: 100-continue` gets the 413 and no `100 Continue` (hyper sends that only
    // when the body is first read).
    let announced = (parts.headers.get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > ctx.limits.max_body_bytes as u64) {
        // The unread body would be the next request's bytes: the connection ends here.
        let msg = "request body too large";
        return Ok(refuse_and_close(ctx, StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    let body: Bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        // Boxed: only requests with a body pay for this future's size.
        let collect = Box::pin(Limited::new(body, ctx.limits.max_body_bytes).collect());
        let within = Duration::from_nanos(ctx.limits.request_timeout.0);
        let Ok(collected) = tokio::time::timeout(within, collect).await else {
            let msg = "request timeout";
            return Ok(refuse_and_close(ctx, StatusCode::REQUEST_TIMEOUT, msg));
        };
        match collected {
            Ok(c) => c.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                ctx.proxy
                    .gauges
                    .rejected_total
                    .fetch_add(1, Ordering::Relaxed);
                let msg = "request body too large";
                return Ok(http_util::text(StatusCode::PAYLOAD_TOO_LARGE, msg));
            }
            Err(_) => {
                ctx.proxy
                    .gauges
                    .rejected_total
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(http_util::text(StatusCode::BAD_REQUEST, "bad request body"));
            }
        }
    };
    let head = {
        let mut strings = crate::lock(&conn.strings);
        http_util::head_from_request(&parts, &mut strings)
    };
    if head.authority.is_empty() {
        ctx.proxy
            .gauges
            .rejected_total
            .fetch_add(1, Ordering::Relaxed);
        let msg = "missing or invalid Host";
        return Ok(http_util::text(StatusCode::BAD_REQUEST, msg));
    }
    let id = ctx.proxy.next_id();
    let mut guard = CancelGuard {
        proxy: &ctx.proxy,
        req: id,
        armed: true,
    };
    let resp = ctx.proxy.forward(id, head, parts, body).await;
    guard.armed = false;
    Ok(resp.unwrap_or_else(|| http_util::text(StatusCode::SERVICE_UNAVAILABLE, "proxy stopped")))
}
