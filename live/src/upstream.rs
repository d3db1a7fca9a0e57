//! Upstream connections, opened only when the engine asks (`Action::Connect`): TCP connect with
//! a timeout, then hyper's low-level HTTP/1.1 handshake. The engine owns pooling and reuse; this
//! module hands back a `SendRequest` and nothing else.

use crate::http_util::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proxy_engine::ConnectFailure;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// An open upstream connection: HTTP/1.1 (one request at a time; the sender is taken for the
/// exchange and given back) or HTTP/2 (the sender is cloned per stream).
pub enum Sender {
    /// HTTP/1.1.
    H1(SendRequest<Body>),
    /// HTTP/2 with prior knowledge.
    H2(hyper::client::conn::http2::SendRequest<Body>),
}

impl Sender {
    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// A handle for one more exchange: the sender itself for HTTP/1.1 (taken), a clone for
    /// HTTP/2 (the connection keeps serving others).
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(s.clone())),
        }
    }
}

/// Connects to `addr` within `timeout`, speaking HTTP/2 if `http2`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    http2: bool,
) -> Result<Sender, ConnectFailure> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectFailure::Timeout),
        Ok(Err(_)) => return Err(ConnectFailure::Refused),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
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
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|_| ConnectFailure::Refused)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H1(sender))
    }
}

/// Why an attempt got no complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection or stream broke before the response completed.
    Reset,
    /// The response body exceeded the limit.
    TooLarge,
}

/// A complete upstream response.
pub type Answer = (http::response::Parts, Bytes);

/// Sends `req` on `sender` and reads the whole response (at most `max_body` bytes).
pub async fn exchange(
    sender: &mut Sender,
    req: http::Request<Body>,
    max_body: usize,
) -> Result<Answer, AttemptFailure> {
    let resp = match sender {
        Sender::H1(s) => {
            s.ready().await.map_err(|_| AttemptFailure::Reset)?;
            s.send_request(req).await
        }
        Sender::H2(s) => {
            s.ready().await.map_err(|_| AttemptFailure::Reset)?;
            // HTTP/2 carries the authority in the URI (`:authority`), not in `Host`.
            let mut req = req;
            if let Some(host) = req.headers_mut().remove(http::header::HOST) {
                if let Ok(host) = host.to_str() {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    if let Ok(uri) = format!("http://{host}{pq}").parse() {
                        *req.uri_mut() = uri;
                    }
                }
            }
            s.send_request(req).await
        }
    }
    .map_err(|_| AttemptFailure::Reset)?;
    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                AttemptFailure::TooLarge
            } else {
                AttemptFailure::Reset
            }
        })?
        .to_bytes();
    Ok((parts, bytes))
}

/// Whether the response asks to close the connection.
pub fn closes(parts: &http::response::Parts) -> bool {
    parts
        .headers
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}
