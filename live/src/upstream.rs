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

/// An open HTTP/1.1 upstream connection.
pub type Sender = SendRequest<Body>;

/// Connects to `addr` within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectFailure> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectFailure::Timeout),
        Ok(Err(_)) => return Err(ConnectFailure::Refused),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ConnectFailure::Refused)?;
    tokio::spawn(async move {
        // The connection ends when the engine closes it (sender dropped) or the peer does.
        let _ = conn.await;
    });
    Ok(sender)
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
    sender.ready().await.map_err(|_| AttemptFailure::Reset)?;
    let resp = sender
        .send_request(req)
        .await
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
