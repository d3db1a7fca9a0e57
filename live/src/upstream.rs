//! Upstream connections, opened only when the engine asks (`Action::Connect`): TCP connect with
//! a timeout, then hyper's low-level HTTP/1.1 or HTTP/2 handshake. The engine owns pooling and
//! reuse; this module hands back a `Sender` and performs exchanges on it.
//!
//! An HTTP/1.1 connection has no task of its own: hyper's connection state machine lives in the
//! `Sender` and is polled by whichever task performs the exchange, in the same poll as the
//! request. A proxied request then costs one task wake-up per upstream response instead of
//! three (the dispatch channel, the response callback, the body channel each crossing to a
//! separate connection task). While idle nobody polls it; `Sender::is_closed` polls it once to
//! notice an upstream that closed it. HTTP/2 multiplexes streams from many tasks, so its
//! connection runs on a spawned task.
//!
//! The driver cancels an exchange (the engine gave up on the attempt) through its `Cancel`: a
//! flag on the exchange's waker, which the exchange checks each time it is polled.

use crate::http_util::Body;
use crate::origination::{Originate, Stream};
use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use proxy_engine::ConnectFailure;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::net::TcpStream;

/// hyper's HTTP/1.1 connection state machine over a loopback or remote TCP stream (or TLS
/// over it).
type H1Connection = http1::Connection<TokioIo<Stream>, Body>;

/// An open HTTP/1.1 connection: the request handle and the connection it drives.
pub struct H1 {
    send: http1::SendRequest<Body>,
    /// `None` once the connection has ended. It is dropped then, not kept: dropping it fails
    /// whatever is still queued on `send`, so nothing waits on a dead connection.
    conn: Option<Pin<Box<H1Connection>>>,
    /// The waker both halves are polled with during an exchange, and its cancel flag; one per
    /// connection, as it carries one exchange at a time.
    inline: Inline,
}

/// An HTTP/2 stream handle: the connection's request handle and this exchange's own waker
/// and cancel flag.
pub struct H2 {
    send: hyper::client::conn::http2::SendRequest<Body>,
    inline: Inline,
}

/// The waker of an exchange, and its cancel flag.
///
/// hyper's two halves of an HTTP/1.1 connection wake each other: queueing the request wakes
/// the connection, the connection delivering the response wakes the request. Polled inline,
/// both halves are polled by the same task in the same poll, so such a wake would only
/// schedule that task once more for nothing (two extra polls of the whole downstream
/// connection per request). A wake that comes while the exchange is being polled is recorded
/// instead, and the exchange polls both halves again at once; any other wake (the socket
/// becoming readable, a cancel) is passed on to the task.
///
/// **Invariant:** a wake is never lost. `state` moves `IDLE → POLLING` (the poller, before
/// polling), `POLLING → WOKEN` (a wake) and back to `IDLE` (the poller, after): a wake either
/// lands while `POLLING`, which the poller's closing compare-exchange sees, or finds `IDLE`
/// and wakes the task.
#[derive(Default)]
struct InlineWake {
    state: AtomicU8,
    /// Set (then the task woken) when the engine gives up on the exchange.
    cancelled: AtomicBool,
    task: AtomicWaker,
}

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

impl Wake for InlineWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_task_unless_polling();
    }
}

impl InlineWake {
    fn wake_task_unless_polling(&self) {
        let seen = self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire);
        if seen == Err(IDLE) {
            self.task.wake();
        }
    }
}

/// An exchange's `InlineWake` and the `Waker` made from it.
struct Inline {
    wake: Arc<InlineWake>,
    waker: Waker,
}

impl Default for Inline {
    fn default() -> Inline {
        let wake = Arc::<InlineWake>::default();
        Inline {
            waker: Waker::from(wake.clone()),
            wake,
        }
    }
}

impl Inline {
    /// Polls `f` with the inline waker on behalf of the task polling with `cx`, again as long
    /// as it woke itself meanwhile; `Cancelled` once the exchange is cancelled.
    fn poll<T>(
        &self,
        cx: &Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<Result<T, AttemptFailure>>,
    ) -> Poll<Result<T, AttemptFailure>> {
        let w = &*self.wake;
        w.task.register(cx.waker());
        let mut icx = Context::from_waker(&self.waker);
        loop {
            if w.cancelled.load(Ordering::Acquire) {
                return Poll::Ready(Err(AttemptFailure::Cancelled));
            }
            w.state.store(POLLING, Ordering::Release);
            let r = f(&mut icx);
            let idle = w
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire);
            if idle.is_ok() {
                return r;
            }
            // Woken while polling: the wake was for this very poll.
            w.state.store(IDLE, Ordering::Release);
            if r.is_ready() {
                return r;
            }
        }
    }

    /// The handle that cancels the next exchange polled through this (the flag cleared).
    fn cancel_handle(&self) -> Cancel {
        self.wake.cancelled.store(false, Ordering::Release);
        Cancel(self.wake.clone())
    }
}

/// Cancels an exchange: the engine gave up on the attempt (timeout, downstream gone). The
/// exchange returns `AttemptFailure::Cancelled` and drops the request, which resets the stream
/// (HTTP/1.1: the connection goes with it).
pub struct Cancel(Arc<InlineWake>);

impl Cancel {
    /// Cancels the exchange (a no-op once it has ended).
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.wake_task_unless_polling();
    }
}

/// Polls the connection once; drops it if it ended. Returns whether it is still open.
fn poll_conn(conn: &mut Option<Pin<Box<H1Connection>>>, cx: &mut Context<'_>) -> bool {
    if let Some(c) = conn.as_mut() {
        if c.as_mut().poll(cx).is_ready() {
            *conn = None;
        }
    }
    conn.is_some()
}

/// An open upstream connection: HTTP/1.1 (one request at a time; the sender is taken for the
/// exchange and given back) or HTTP/2 (the sender is cloned per stream).
pub enum Sender {
    /// HTTP/1.1.
    H1(H1),
    /// HTTP/2 with prior knowledge.
    H2(H2),
}

impl Sender {
    /// Whether the connection is gone. An idle HTTP/1.1 connection is polled once here (with no
    /// waker) so that a close by the upstream since its last exchange is noticed.
    pub fn is_closed(&mut self) -> bool {
        match self {
            Sender::H1(c) => {
                !poll_conn(&mut c.conn, &mut Context::from_waker(Waker::noop()))
                    || c.send.is_closed()
            }
            Sender::H2(s) => s.send.is_closed(),
        }
    }

    /// The handle that cancels the next exchange on this sender.
    pub fn cancel_handle(&self) -> Cancel {
        match self {
            Sender::H1(c) => c.inline.cancel_handle(),
            Sender::H2(s) => s.inline.cancel_handle(),
        }
    }

    /// A handle for one more exchange: the sender itself for HTTP/1.1 (taken), a clone for
    /// HTTP/2 (the connection keeps serving others).
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(H2 {
                send: s.send.clone(),
                inline: Inline::default(),
            })),
        }
    }
}

/// Connects to `addr` within `timeout`, speaking HTTP/2 if `http2`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    http2: bool,
) -> Result<Sender, ConnectFailure> {
    match tokio::time::timeout(timeout, connect_untimed(addr, http2, None)).await {
        Err(_) => Err(ConnectFailure::Timeout),
        Ok(r) => r,
    }
}

/// Connects to `addr`, speaking HTTP/2 if `http2`, over TLS when `tls` is set (originated:
/// a failed handshake is `ConnectFailure::Tls`), for as long as it takes: for a caller whose
/// connect deadline is decided elsewhere (the engine's `connect_timeout`: the proxy driver
/// drops this future when the engine closes the connection).
pub async fn connect_untimed(
    addr: SocketAddr,
    http2: bool,
    tls: Option<&Originate>,
) -> Result<Sender, ConnectFailure> {
    let tcp = match TcpStream::connect(addr).await {
        Err(_) => return Err(ConnectFailure::Refused),
        Ok(s) => s,
    };
    let _ = tcp.set_nodelay(true);
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(tls) => Stream::handshake(tcp, tls)
            .await
            .map_err(|_| ConnectFailure::Tls)?,
    };
    let io = TokioIo::new(stream);
    // Each connection task ends when the engine closes it (senders dropped) or the peer does.
    if http2 {
        let exec = hyper_util::rt::TokioExecutor::new();
        let (sender, conn) = hyper::client::conn::http2::handshake(exec, io)
            .await
            .map_err(|_| ConnectFailure::Refused)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(H2 {
            send: sender,
            inline: Inline::default(),
        }))
    } else {
        // Flattened writes (`send`, not `writev`), as downstream: see `server`.
        let (send, conn) = http1::Builder::new()
            .writev(false)
            .handshake(io)
            .await
            .map_err(|_| ConnectFailure::Refused)?;
        Ok(Sender::H1(H1 {
            send,
            conn: Some(Box::pin(conn)),
            inline: Inline::default(),
        }))
    }
}

/// Why an attempt got no complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection or stream broke before the response completed.
    Reset,
    /// The response body exceeded the limit.
    TooLarge,
    /// The exchange was cancelled (see `Cancel`).
    Cancelled,
}

/// A complete upstream response.
pub type Answer = (http::response::Parts, Bytes);

/// Sends `req` on `sender` and reads the whole response (at most `max_body` bytes).
///
/// The HTTP/1.1 path is written out here rather than in a function of its own: each level of
/// `async fn` keeps its own copy of its arguments, and this future is part of every proxied
/// request's future, which hyper moves once per request. The rarer HTTP/2 path is boxed.
pub async fn exchange(
    sender: &mut Sender,
    req: http::Request<Body>,
    max_body: usize,
) -> Result<Answer, AttemptFailure> {
    let H1 { send, conn, inline } = match sender {
        Sender::H1(c) => c,
        Sender::H2(H2 { send, inline }) => {
            let mut work = Box::pin(exchange_h2(send, req, max_body));
            return std::future::poll_fn(|cx| inline.poll(cx, |icx| work.as_mut().poll(icx))).await;
        }
    };
    // The request and its connection polled together, in this task.
    let work = async {
        send.ready().await.map_err(|_| AttemptFailure::Reset)?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|_| AttemptFailure::Reset)?;
        read_answer(resp, max_body).await
    };
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        inline.poll(cx, |icx| {
            // The connection first: it writes the request, reads the response and feeds the
            // body that `work` waits for. If it ends, dropping it resolves `work` (with the
            // response if it was complete, else an error).
            poll_conn(conn, icx);
            work.as_mut().poll(icx)
        })
    })
    .await
}

/// The HTTP/2 exchange: a stream on the connection's own task.
async fn exchange_h2(
    s: &mut hyper::client::conn::http2::SendRequest<Body>,
    mut req: http::Request<Body>,
    max_body: usize,
) -> Result<Answer, AttemptFailure> {
    s.ready().await.map_err(|_| AttemptFailure::Reset)?;
    // HTTP/2 carries the authority in the URI (`:authority`), not in `Host`.
    if let Some(host) = req.headers_mut().remove(http::header::HOST) {
        if let Ok(host) = host.to_str() {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            if let Ok(uri) = format!("http://{host}{pq}").parse() {
                *req.uri_mut() = uri;
            }
        }
    }
    let resp = s
        .send_request(req)
        .await
        .map_err(|_| AttemptFailure::Reset)?;
    read_answer(resp, max_body).await
}

/// Reads a response's whole body (at most `max_body` bytes). A body that arrives in one
/// chunk, as a small response does, is kept as it came (no copy, no buffer list).
async fn read_answer(
    resp: http::Response<hyper::body::Incoming>,
    max_body: usize,
) -> Result<Answer, AttemptFailure> {
    let (parts, body) = resp.into_parts();
    Ok((parts, read_body(body, max_body).await?))
}

/// A whole body, at most `max_body` bytes (see `read_answer`).
async fn read_body<B>(mut body: B, max_body: usize) -> Result<Bytes, AttemptFailure>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut whole = Bytes::new();
    // Once a second chunk arrives: all chunks so far, copied together.
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| AttemptFailure::Reset)?.into_data() else {
            continue; // trailers: not forwarded
        };
        let len = joined.as_ref().map_or(whole.len(), BytesMut::len) + data.len();
        if len > max_body {
            return Err(AttemptFailure::TooLarge);
        }
        match &mut joined {
            Some(buf) => buf.extend_from_slice(&data),
            None if whole.is_empty() => whole = data,
            None => {
                let mut buf = BytesMut::with_capacity(len);
                buf.extend_from_slice(&whole);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(whole, BytesMut::freeze))
}

/// Whether the response asks to close the connection.
pub fn closes(parts: &http::response::Parts) -> bool {
    parts
        .headers
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::CountingWaker;

    #[test]
    fn a_wake_while_polling_repolls_instead_of_waking_the_task() {
        let (task, task_waker) = CountingWaker::new();
        let cx = Context::from_waker(&task_waker);
        let inline = Inline::default();
        // The first pass wakes itself (as hyper's halves do); the second makes progress.
        let mut passes = 0;
        let r = inline.poll(&cx, |icx| {
            passes += 1;
            if passes == 1 {
                icx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(Ok(passes))
            }
        });
        assert_eq!(r, Poll::Ready(Ok(2)));
        assert_eq!(task.count(), 0, "the task was not scheduled again");
        // A pass that does not wake itself ends the poll, pending.
        let mut passes = 0;
        let r: Poll<Result<(), _>> = inline.poll(&cx, |_| {
            passes += 1;
            Poll::Pending
        });
        assert!(r.is_pending());
        assert_eq!(passes, 1);
        // A wake from outside a poll (the socket became readable) reaches the task, and so
        // does the next one after the task polled again.
        inline.waker.wake_by_ref();
        assert_eq!(task.count(), 1);
        let _: Poll<Result<(), _>> = inline.poll(&cx, |_| Poll::Pending);
        inline.waker.wake_by_ref();
        assert_eq!(task.count(), 2);
    }

    #[test]
    fn no_wake_from_another_thread_is_lost() {
        // A task (this thread) polls, then sleeps until woken. Another thread sends wakes one
        // at a time, each once the previous one was seen, at varying moments: during the poll
        // or after it. Each must lead to a poll that sees it (the poll in progress polls
        // again, or the task is woken); a lost one leaves the task asleep, and the wait below
        // times out.
        use std::sync::atomic::AtomicUsize;
        use std::time::Instant;
        const WAKES: usize = 5_000;
        let (task, task_waker) = CountingWaker::new();
        let cx = Context::from_waker(&task_waker);
        let inline = Inline::default();
        let sent = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let waking = {
            let (sent, seen, waker) = (sent.clone(), seen.clone(), inline.waker.clone());
            std::thread::spawn(move || {
                for i in 1..=WAKES {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while seen.load(Ordering::SeqCst) < i - 1 {
                        if Instant::now() > deadline {
                            return; // the task is stuck: its side reports it
                        }
                        std::thread::yield_now();
                    }
                    for _ in 0..(i * 7919) % 2000 {
                        std::hint::spin_loop();
                    }
                    sent.store(i, Ordering::SeqCst);
                    waker.wake_by_ref();
                }
            })
        };
        let mut woken = 0;
        loop {
            let r: Poll<Result<(), _>> = inline.poll(&cx, |_| {
                seen.store(sent.load(Ordering::SeqCst), Ordering::SeqCst);
                Poll::Pending
            });
            assert!(r.is_pending());
            if seen.load(Ordering::SeqCst) == WAKES {
                break;
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while task.count() == woken {
                let at = seen.load(Ordering::SeqCst);
                assert!(Instant::now() < deadline, "a wake was lost after {at}");
                std::thread::yield_now();
            }
            woken = task.count();
        }
        waking.join().unwrap_or_else(|_| panic!("waking thread"));
    }

    /// A body of the given chunks, then an error if `fail`.
    struct Chunks(std::collections::VecDeque<&'static str>, bool);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(match self.0.pop_front() {
                Some(c) => Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                    c.as_bytes(),
                )))),
                None if self.1 => Some(Err(std::io::Error::other("reset"))),
                None => None,
            })
        }
    }

    fn read(chunks: &[&'static str], fail: bool, max: usize) -> Result<Bytes, AttemptFailure> {
        let body = Chunks(chunks.iter().copied().collect(), fail);
        let rt = tokio::runtime::Builder::new_current_thread().build();
        rt.unwrap_or_else(|e| panic!("{e}"))
            .block_on(read_body(body, max))
    }

    #[test]
    fn a_body_is_read_whole_within_its_limit() {
        assert_eq!(read(&[], false, 10), Ok(Bytes::new()));
        assert_eq!(read(&["hello"], false, 10), Ok(Bytes::from("hello")));
        assert_eq!(
            read(&["", "he", "llo", " you"], false, 9),
            Ok(Bytes::from("hello you"))
        );
        assert_eq!(
            read(&["hello", " you"], false, 8),
            Err(AttemptFailure::TooLarge)
        );
        assert_eq!(
            read(&["hello world"], false, 8),
            Err(AttemptFailure::TooLarge)
        );
        assert_eq!(read(&["hello"], true, 10), Err(AttemptFailure::Reset));
    }

    #[test]
    fn a_cancel_wakes_the_task_and_ends_the_exchange() {
        let (task, task_waker) = CountingWaker::new();
        let cx = Context::from_waker(&task_waker);
        let inline = Inline::default();
        let cancel = inline.cancel_handle();
        // Cancelled while the task waits: the task is woken, and its next poll ends the
        // exchange without polling it.
        let _: Poll<Result<(), _>> = inline.poll(&cx, |_| Poll::Pending);
        cancel.cancel();
        assert_eq!(task.count(), 1);
        let r: Poll<Result<(), _>> = inline.poll(&cx, |_| panic!("polled after cancel"));
        assert_eq!(r, Poll::Ready(Err(AttemptFailure::Cancelled)));
        // Cancelled during a poll (another thread, or the exchange itself): seen at once.
        let inline = Inline::default();
        let cancel = inline.cancel_handle();
        let r: Poll<Result<(), _>> = inline.poll(&cx, |_| {
            cancel.cancel();
            Poll::Pending
        });
        assert_eq!(r, Poll::Ready(Err(AttemptFailure::Cancelled)));
        assert_eq!(task.count(), 1, "no extra wake");
    }
}
