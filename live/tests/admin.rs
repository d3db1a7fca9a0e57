//! The admin endpoint faces only its operator: GET and HEAD, a loopback-style `Host` (no
//! DNS rebinding), secret header values hidden in `/config`, and a connection cap.

use live::admin::{self, AdminState, MAX_CONNECTIONS};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn start(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let config = serde_json::json!({
        "mesh": {"virtual_services": [{"hosts": ["svc"], "http": [{
            "match": [{"headers": {"authorization": {"Exact": "Bearer s3cr3t"}, "x-user": {"Exact": "jason"}}}],
            "headers": {"request": {"set": {"x-api-token": "t0k3n", "x-env": "prod"}}},
        }]}]}
    });
    let state = AdminState {
        proxies: Vec::new(),
        config: Arc::new(Mutex::new(config)),
        accept_errors: Default::default(),
    };
    let (addr, _task) = rt
        .block_on(admin::serve("127.0.0.1:0".parse().expect("addr"), state))
        .expect("binds");
    std::mem::forget(_task);
    addr
}

fn request(addr: SocketAddr, text: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(text.as_bytes()).expect("writes");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn only_get_and_head_from_a_loopback_host() {
    let rt = runtime();
    let addr = start(&rt);
    let ok = request(
        addr,
        &format!(
            "GET /ready HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            addr.port()
        ),
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    for host in ["127.0.0.1", "[::1]:15000", "localhost"] {
        let r = request(
            addr,
            &format!("GET /ready HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{host}: {r}");
    }
    let rebound = request(
        addr,
        "GET /config HTTP/1.1\r\nHost: evil.example:15000\r\nConnection: close\r\n\r\n",
    );
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(!rebound.contains("virtual_services"), "{rebound}");
    let post = request(
        addr,
        "POST /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
}

#[test]
fn config_hides_secret_header_values_and_keeps_the_rest() {
    let rt = runtime();
    let addr = start(&rt);
    let r = request(
        addr,
        "GET /config HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(!r.contains("s3cr3t") && !r.contains("t0k3n"), "{r}");
    assert_eq!(r.matches("<redacted>").count(), 2, "{r}");
    assert!(r.contains("jason") && r.contains("prod"), "{r}");
}

#[test]
fn connections_beyond_the_cap_are_closed_and_a_freed_slot_serves_again() {
    let rt = runtime();
    let addr = start(&rt);
    // Idle connections (no request yet) hold every slot.
    let held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).expect("connects"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(addr).expect("the kernel accepts");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = extra.write_all(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut buf = [0u8; 64];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "over the cap the connection is closed unanswered");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let r = request(
        addr,
        "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}
