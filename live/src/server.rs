//! Downstream listeners: accept TCP (optionally TLS), serve HTTP/1.1 and HTTP/2 (h2c by prior
//! knowledge, or ALPN over TLS) with hyper, and hand each request to the engine driver.
//!
//! Protective bounds (`Limits`): a header read timeout, a maximum request head (hyper answers
//! 431), a maximum body (413), a maximum number of open connections. Malformed requests get
//! hyper's 400. A client that goes away mid-request cancels it through the engine (`DC`).

use crate::config::Limits;
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
            continue; // e.g. too many open files: try again
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
                    if let Ok(s) = acceptor.accept(stream).await {
                        serve(TokioIo::new(s), ctx, peer, stop).await;
                    }
                }
                None => serve(TokioIo::new(stream), ctx, peer, stop).await,
            }
            gauges
                .downstream_connections
                .fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
        while conns.try_join_next().is_some() {}
    }
    // Graceful: the connections are told and finish their in-flight requests.
    signal.fire();
    while conns.join_next().await.is_some() {}
}

async fn serve<I>(io: I, ctx: Arc<Ctx>, peer: SocketAddr, mut stop: StopWatch)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(HeaderTimer::new())
        .header_read_timeout(Duration::from_nanos(ctx.limits.header_read_timeout.0))
        .max_buf_size(ctx.limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(ctx.limits.max_header_bytes as u32);
    // Shared by the connection's requests (HTTP/2 may run several at once, hence the lock).
    let ctx_gauges = ctx.proxy.gauges.clone();
    let strings = Arc::new(std::sync::Mutex::new(http_util::ConnStrings::new(
        &peer.ip().to_string(),
        ctx.scheme,
    )));
    let svc = service_fn(move |req| handle(req, ctx.clone(), strings.clone()));
    let gauges = ctx_gauges.clone();
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stopping = false;
    let result = std::future::poll_fn(|cx| {
        if !stopping && stop.stopped(cx) {
            stopping = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await;
    if result.is_err() {
        gauges.protocol_errors_total.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `Cancel` for a request whose downstream future is dropped before its response.
struct CancelGuard {
    proxy: ProxyHandle,
    req: RequestId,
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.armed {
            self.proxy.cancel(self.req);
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    strings: Arc<std::sync::Mutex<http_util::ConnStrings>>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body: Bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        // Boxed: only requests with a body pay for this future's size.
        match Box::pin(Limited::new(body, ctx.limits.max_body_bytes).collect()).await {
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
        let mut strings = crate::lock(&strings);
        http_util::head_from_request(&parts, &mut strings)
    };
    if head.authority.is_empty() {
        ctx.proxy
            .gauges
            .rejected_total
            .fetch_add(1, Ordering::Relaxed);
        return Ok(http_util::text(StatusCode::BAD_REQUEST, "missing Host"));
    }
    let id = ctx.proxy.next_id();
    let mut guard = CancelGuard {
        proxy: ctx.proxy.clone(),
        req: id,
        armed: true,
    };
    let resp = ctx.proxy.forward(id, head, parts, body).await;
    guard.armed = false;
    Ok(resp.unwrap_or_else(|| http_util::text(StatusCode::SERVICE_UNAVAILABLE, "proxy stopped")))
}
