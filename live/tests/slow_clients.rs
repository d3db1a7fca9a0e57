//! Slow and idle clients cannot hold the live proxy's connections: an HTTP/2 preface that
//! never completes, a TLS connection that never sends its ClientHello and a body sent a byte
//! at a time are cut off; on shutdown the listening socket closes at once and the drain ends
//! at `drain_timeout` even with a request that never completes.

mod common;
use common::{echo, get, proxy};
use live::config::Limits;
use proxy_engine::Nanos;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits() -> Limits {
    Limits {
        header_read_timeout: Nanos::from_millis(300),
        request_timeout: Nanos::from_millis(500),
        drain_timeout: Nanos::from_millis(500),
        ..Limits::default()
    }
}

/// Sends `bytes`, then waits for the server to close; returns how long that took and what it
/// answered (`None` if still open after 5 s).
async fn held(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<(Duration, String)> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await {
        Ok(_) => Some((
            started.elapsed(),
            String::from_utf8_lossy(&out).into_owned(),
        )),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_http2_preface_is_cut_off_at_the_header_timeout() {
    let v1 = echo("v1").await;
    let (_h, l) = proxy("Mesh()", &[("svc", vec![(v1.addr, "v1")])], limits()).await;
    for first in [&b"P"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        let (took, _) = held(l.addr, first).await.expect("closed, not held");
        assert!(
            took < Duration::from_secs(2),
            "held {took:?} after {first:?}"
        );
    }
    assert_eq!(get(l.addr, "svc", "/", &[]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_slower_than_the_request_timeout_gets_408() {
    let v1 = echo("v1").await;
    let (h, l) = proxy("Mesh()", &[("svc", vec![(v1.addr, "v1")])], limits()).await;
    let mut s = TcpStream::connect(l.addr).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 100\r\n\r\nx")
        .await
        .expect("write");
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    // One byte every 100 ms: never idle for long, never done.
    while started.elapsed() < Duration::from_secs(3) {
        tokio::select! {
            n = s.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                let _ = s.write_all(b"x").await;
            }
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        h.snapshot().finish().totals.count,
        0,
        "never reached the engine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_never_says_hello_is_cut_off() {
    let v1 = echo("v1").await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = live::tls::server_config_der(vec![cert.cert.der().clone()], key).expect("tls");
    let (_h, l) = common::proxy_tls(
        "Mesh()",
        &[("svc", vec![(v1.addr, "v1")])],
        limits(),
        Some(tls),
    )
    .await;
    let (took, _) = held(l.addr, b"").await.expect("closed, not held");
    assert!(took < Duration::from_secs(2), "held {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_socket_at_once_and_the_drain_is_bounded() {
    let v1 = echo("v1").await;
    // A route whose requests take 10 s: longer than the drain allows.
    let mesh = r#"Mesh(virtual_services: [VirtualService(hosts: ["svc"], http: [HttpRoute(
        fault: (delay: (fixed_delay: "10s", percentage: 100.0)), route: [(destination: (host: "svc"))])])])"#;
    let (h, l) = proxy(mesh, &[("svc", vec![(v1.addr, "v1")])], limits()).await;
    let addr = l.addr;
    let stuck = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let stopping = tokio::spawn(l.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the socket still accepts"
    );
    stopping.await.expect("shutdown");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "drain took {took:?}");
    tokio::time::timeout(Duration::from_secs(2), stuck)
        .await
        .expect("client released")
        .expect("task");
    // The abandoned request is recorded, not lost.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let totals = h.snapshot().finish().totals;
    assert_eq!(totals.count, 1, "{totals:?}");
}
