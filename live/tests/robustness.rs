//! Bad input and broken upstreams: malformed request → 400, oversized head → 431, oversized
//! body → 413, a client that never finishes its head is disconnected, upstream refused → 503 UF,
//! upstream reset mid-response → 503 UR. Never a panic; every case counted in the metrics.

mod common;
use common::{echo, get, proxy};
use live::config::Limits;
use proxy_engine::Nanos;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Writes raw bytes, returns what the server answers before closing (or `timeout`).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_slow_clients_are_cut_off() {
    let v1 = echo("v1").await;
    let limits = Limits {
        header_read_timeout: Nanos::from_millis(300),
        max_header_bytes: 8192,
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let (h, l) = proxy("Mesh()", &[("svc", vec![(v1.addr, "v1")])], limits).await;
    let malformed = raw(
        l.addr,
        b"GET / HTTP/1.1\r\nHost svc\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(status_line(&malformed).contains(" 400 "), "{malformed:?}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: svc\r\nx-big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let too_big = raw(l.addr, big.as_bytes(), Duration::from_secs(2)).await;
    assert!(status_line(&too_big).contains(" 431 "), "{too_big:?}");
    let body = format!(
        "POST / HTTP/1.1\r\nHost: svc\r\ncontent-length: 5000\r\n\r\n{}",
        "b".repeat(5000)
    );
    let huge_body = raw(l.addr, body.as_bytes(), Duration::from_secs(2)).await;
    assert!(status_line(&huge_body).contains(" 413 "), "{huge_body:?}");
    // No `Host`, or two (RFC 9112 §3.2: both 400).
    for head in [
        "GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: svc\r\nHost: other\r\nconnection: close\r\n\r\n",
    ] {
        let resp = raw(l.addr, head.as_bytes(), Duration::from_secs(2)).await;
        assert!(status_line(&resp).contains(" 400 "), "{resp:?}");
        assert!(resp.ends_with("missing or invalid Host"), "{resp:?}");
    }
    // A head that never completes: the connection is closed after the header read timeout.
    let started = std::time::Instant::now();
    let slow = raw(
        l.addr,
        b"GET / HTTP/1.1\r\nHost: svc\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "slow client held for {:?}",
        started.elapsed()
    );
    assert!(!slow.contains(" 200 "), "{slow:?}");
    // A client that connects and sends nothing at all is cut off the same way.
    let started = std::time::Instant::now();
    let silent = raw(l.addr, b"", Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "silent client held for {:?}",
        started.elapsed()
    );
    assert!(silent.is_empty(), "{silent:?}");
    // The proxy still serves.
    assert_eq!(get(l.addr, "svc", "/", &[]).await.status, 200);
    // Every error path is counted: 413 and the two bad `Host`s as rejections; 400, 431 and
    // the two timeouts as connections ending in a protocol error (the 413's connection is
    // closed cleanly, `Connection: close`, its body unread). Only the good request reached
    // the engine.
    let g = &h.gauges;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(g.rejected_total.load(Relaxed), 3);
    assert_eq!(g.protocol_errors_total.load(Relaxed), 4);
    assert_eq!(h.snapshot().finish().totals.count, 1);
    let text = live::admin::prometheus(&[("main".to_owned(), h.clone())]);
    assert!(
        text.contains(r#"meshtwin_downstream_protocol_errors_total{listener="main"} 4"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_reset_upstreams_are_flagged() {
    // A port nothing listens on: bind, learn the port, close.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr");
    // An upstream that reads the request, starts a response, then drops the connection.
    let resetter = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let reset_addr = resetter.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = resetter.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    .await;
                // Dropped here: the body never completes.
            });
        }
    });
    let services = [
        ("gone", vec![(closed, "v1")]),
        ("flaky", vec![(reset_addr, "v1")]),
    ];
    let (handle, l) = proxy("Mesh()", &services, Limits::default()).await;
    let refused = get(l.addr, "gone", "/", &[]).await;
    assert_eq!(refused.status, 503);
    assert!(
        refused.body.contains("connection failure"),
        "{}",
        refused.body
    );
    let reset = get(l.addr, "flaky", "/", &[]).await;
    assert_eq!(reset.status, 503);
    assert!(reset.body.contains("remote reset"), "{}", reset.body);
    let m = handle.snapshot().finish();
    let flags: Vec<(&str, u64)> = m.totals.flags().collect();
    // Istio's default policy retries the refused connection twice (URX: retries ran out); a
    // reset after the response head is not retried.
    assert_eq!(flags, vec![("UF", 1), ("URX", 1), ("UR", 1)]);
    assert_eq!(m.totals.count, 2);
    assert_eq!(m.totals.attempts, 3 + 1);
}
