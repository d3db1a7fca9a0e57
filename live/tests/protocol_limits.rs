//! Protocol limits at the listener: the header count (Envoy's `max_headers_count`, default
//! 100) over HTTP/1.1 and HTTP/2, the head size at exactly `max_header_bytes` however the head
//! arrives, and a body announced over `max_body_bytes` refused with 413 before any
//! `100 Continue`.

mod common;
use common::{echo, proxy};
use live::config::Limits;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes raw bytes, returns what the server answers before closing (or 2 s).
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n");
    // `Host` and `Connection` count: n in all.
    for i in 0..n.saturating_sub(2) {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_count_is_limited_over_http1_and_http2() {
    let v1 = echo("v1").await;
    let services = [("svc", vec![(v1.addr, "v1")])];
    let (_d, default) = proxy("Mesh()", &services, Limits::default()).await;
    let ok = raw(default.addr, &with_headers(100)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "100 headers pass: {ok}");
    let over = raw(default.addr, &with_headers(101)).await;
    assert!(over.starts_with("HTTP/1.1 431"), "101 do not: {over}");
    let limits = Limits {
        max_headers: 10,
        ..Limits::default()
    };
    let (h, l) = proxy("Mesh()", &services, limits).await;
    assert!(raw(l.addr, &with_headers(10))
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(raw(l.addr, &with_headers(11))
        .await
        .starts_with("HTTP/1.1 431"));
    // HTTP/2 (h2c with prior knowledge): the listener counts them.
    let mut sender = common::h2c(l.addr).await;
    for (n, want) in [(10, 200), (11, 431)] {
        let mut req = http::Request::builder().uri("http://svc/");
        for i in 0..n {
            req = req.header(format!("x-h{i}"), "v");
        }
        let req = req
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status().as_u16(), want, "{n} headers over HTTP/2");
    }
    let rejected = h
        .gauges
        .rejected_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        rejected, 1,
        "the HTTP/2 one is counted (HTTP/1's are hyper's protocol errors)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_oversized_body_gets_413_without_100_continue() {
    let v1 = echo("v1").await;
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let (_h, l) = proxy("Mesh()", &[("svc", vec![(v1.addr, "v1")])], limits).await;
    // The client waits for `100 Continue` before sending a byte of its 2 MiB body.
    let resp = raw(
        l.addr,
        b"POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(!resp.contains("100 Continue"), "{resp}");
    // Within the limit, the 100 comes and the request goes through.
    let mut s = TcpStream::connect(l.addr).await.expect("connect");
    s.write_all(b"POST /small HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    s.write_all(b"hello").await.expect("body");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
}

/// A head of `total` bytes on the wire (one padding header makes up the size).
fn head_of(total: usize) -> Vec<u8> {
    let start = "GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\nx-pad: ";
    let pad = total - start.len() - "\r\n\r\n".len();
    format!("{start}{}\r\n\r\n", "a".repeat(pad)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_size_limit_holds_exactly_whatever_the_read_pattern() {
    let v1 = echo("v1").await;
    let limits = Limits::default(); // 64 KiB
    let max = limits.max_header_bytes;
    let (_h, l) = proxy("Mesh()", &[("svc", vec![(v1.addr, "v1")])], limits).await;
    // 112 KiB in one write used to pass a 64 KiB limit.
    let big = raw(l.addr, &head_of(112 * 1024)).await;
    assert!(
        big.starts_with("HTTP/1.1 431"),
        "{}",
        &big[..big.len().min(80)]
    );
    let over = raw(l.addr, &head_of(max + 1)).await;
    assert!(over.starts_with("HTTP/1.1 431"), "one byte over");
    let at = raw(l.addr, &head_of(max)).await;
    assert!(
        at.starts_with("HTTP/1.1 200"),
        "exactly at the limit: {}",
        &at[..at.len().min(80)]
    );
}
