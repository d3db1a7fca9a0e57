//! A bare hyper 1.x reverse proxy, for `benches/live/run.sh` only: the floor under
//! `meshtwin proxy` on the same stack (tokio current-thread runtime, hyper's HTTP/1.1 server and
//! `client::conn`, mimalloc), with nothing of the proxy on top.
//!
//! Each downstream connection gets its own upstream connection, opened at accept and polled
//! inline by the request that uses it, as `live` does. There is no engine, routing, pool,
//! header rewriting, hop-by-hop stripping, metrics, access log, timeout or error handling
//! beyond a 502: it shows what the stack itself costs per request, so the bench can tell the
//! stack's share of a gap to HAProxy from meshtwin's own.
//!
//! Usage: `hyper_floor LISTEN UPSTREAM` (socket addresses), e.g.
//! `cargo run --release -p live --example hyper_floor -- 127.0.0.1:18084 127.0.0.1:18080`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = Full<Bytes>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream), None) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: hyper_floor LISTEN UPSTREAM   (socket addresses)");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            // A connection's error (wrk closes its connections mid-request when it stops) only
            // ends that connection.
            tokio::task::spawn_local(async move {
                let _ = serve(stream, upstream).await;
            });
        }
    })
}

/// Serves one downstream connection through its own upstream connection.
async fn serve(stream: TcpStream, upstream: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    stream.set_nodelay(true)?;
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (send, conn) = client::Builder::new()
        .writev(false)
        .handshake::<_, Body>(TokioIo::new(up))
        .await?;
    // The upstream connection, taken by the request in flight (HTTP/1.1: one at a time). One
    // thread (a `LocalSet`), so no lock.
    let slot = Rc::new(RefCell::new(Some((send, Box::pin(conn)))));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let slot = slot.clone();
        async move {
            let taken = slot.borrow_mut().take();
            let Some((mut send, mut conn)) = taken else {
                return Ok::<_, Infallible>(bad_gateway());
            };
            let (parts, _) = req.into_parts();
            let mut up = hyper::Request::new(Body::new(Bytes::new()));
            *up.uri_mut() = parts.uri;
            *up.headers_mut() = parts.headers;
            let answer = {
                let exchange = async {
                    send.ready().await?;
                    let (head, body) = send.send_request(up).await?.into_parts();
                    let body = body.collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(hyper::Response::from_parts(head, Body::new(body)))
                };
                let mut exchange = std::pin::pin!(exchange);
                // The connection is polled by the request using it, not by a task of its own.
                std::future::poll_fn(|cx| {
                    let _ = conn.as_mut().poll(cx);
                    exchange.as_mut().poll(cx)
                })
                .await
            };
            match answer {
                Ok(resp) => {
                    *slot.borrow_mut() = Some((send, conn));
                    Ok(resp)
                }
                Err(_) => Ok(bad_gateway()),
            }
        }
    });
    server::Builder::new()
        .writev(false)
        .serve_connection(TokioIo::new(stream), service)
        .await?;
    Ok(())
}

fn bad_gateway() -> hyper::Response<Body> {
    let mut resp = hyper::Response::new(Body::new(Bytes::from_static(b"bad gateway\n")));
    *resp.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    resp
}
