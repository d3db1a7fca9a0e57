//! `meshtwin proxy` as a process: admin endpoint (`/ready`, `/metrics`, `/config`), config
//! reload on SIGHUP and on file change without dropping requests, graceful drain on SIGTERM; and
//! `meshtwin load` against it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A minimal HTTP/1.1 GET with `Connection: close`; returns (status, body).
fn get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Some((status, body))
}

fn config(port: u16, admin: u16, body: &str) -> String {
    format!(
        r#"Proxy(
    listeners: [(name: "main", bind: "127.0.0.1:{port}")],
    admin: "127.0.0.1:{admin}",
    mesh: Mesh(virtual_services: [VirtualService(hosts: ["svc"], http: [
        HttpRoute(name: "slow", match: [(uri: Prefix("/slow"))],
            fault: (delay: (fixed_delay: "1500ms", percentage: 100.0)),
            direct_response: (status: 200, body: "slow")),
        HttpRoute(name: "hello", direct_response: (status: 200, body: "{body}")),
    ])]),
    endpoints: {{"svc": [(addr: "127.0.0.1:9", labels: {{"version": "v1"}})]}},
)
"#
    )
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(p: &Proc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &p.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshtwin-proxy-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn start(cfg: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_meshtwin"))
        .args([
            "proxy",
            "--config",
            cfg.to_str().expect("utf-8"),
            "--workers",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy starts");
    Proc(child)
}

/// A proxy process answering `body`, ready: (process, config path, port, admin port).
fn running(test: &str, body: &str) -> (Proc, PathBuf, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let cfg = scratch(test).join("proxy.ron");
    std::fs::write(&cfg, config(port, admin, body)).expect("write");
    let p = start(&cfg);
    wait_for("/ready", || {
        get(admin, "127.0.0.1", "/ready").is_some_and(|r| r.0 == 200)
    });
    (p, cfg, port, admin)
}

#[test]
fn admin_reload_and_graceful_drain() {
    let (p, cfg, port, admin) = running("reload", "one");
    assert_eq!(get(port, "svc", "/"), Some((200, "one".into())));
    let (_, metrics) = get(admin, "127.0.0.1", "/metrics").expect("metrics");
    assert!(
        metrics.contains(
            r#"meshtwin_route_requests_total{listener="main",route="svc/hello",code="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE meshtwin_route_latency_seconds histogram"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"meshtwin_downstream_connections{listener="main"}"#),
        "{metrics}"
    );
    let (_, json) = get(admin, "127.0.0.1", "/config").expect("config");
    assert!(json.contains("\"one\""), "{json}");

    // Reload on SIGHUP, with a slow request in flight that must not be dropped.
    let slow = std::thread::spawn(move || get(port, "svc", "/slow"));
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(&cfg, config(port, admin, "two")).expect("write");
    signal(&p, "-HUP");
    wait_for("reload", || {
        get(port, "svc", "/").is_some_and(|r| r.1 == "two")
    });
    assert_eq!(
        slow.join().expect("thread"),
        Some((200, "slow".into())),
        "in-flight request survived the reload"
    );

    // Reload on file change alone (the file is polled each second).
    std::fs::write(&cfg, config(port, admin, "three")).expect("write");
    wait_for("file-change reload", || {
        get(port, "svc", "/").is_some_and(|r| r.1 == "three")
    });
    // A broken file is rejected and the running config stays.
    std::fs::write(&cfg, "Proxy(listeners: [], oops: 1)").expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(port, "svc", "/"), Some((200, "three".into())));

    // SIGTERM drains: the in-flight request completes, then the process exits 0.
    let slow = std::thread::spawn(move || get(port, "svc", "/slow"));
    std::thread::sleep(Duration::from_millis(300));
    let mut p = p;
    signal(&p, "-TERM");
    assert_eq!(
        slow.join().expect("thread"),
        Some((200, "slow".into())),
        "drained, not dropped"
    );
    let status = p.0.wait().expect("exit");
    assert!(status.success(), "{status:?}");
    std::mem::forget(p);
}

#[test]
fn load_generator_reports_every_request() {
    let (_p, _cfg, port, admin) = running("load", "hi");
    let out = Command::new(env!("CARGO_BIN_EXE_meshtwin"))
        .args([
            "load",
            &format!("http://127.0.0.1:{port}/"),
            // wrk-style: a Host header replaces the URL's authority (not a second Host).
            "-H",
            "Host: svc",
            "--rate",
            "200",
            "--duration",
            "2s",
            "-c",
            "4",
            "--quiet",
            "--json",
            "-",
        ])
        .output()
        .expect("load runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["mode"], "live");
    let generated = v["generated"].as_u64().expect("generated");
    assert_eq!(v["totals"]["count"].as_u64(), Some(generated));
    assert_eq!(v["totals"]["by_status"]["200"].as_u64(), Some(generated));
    // Constant rate 200/s for 2 s: 400 sends (±1 per connection at the edges).
    assert!((396..=404).contains(&generated), "{generated}");
    let (_, metrics) = get(admin, "127.0.0.1", "/metrics").expect("metrics");
    assert!(
        metrics.contains(&format!(
            r#"meshtwin_route_requests_total{{listener="main",route="svc/hello",code="200"}} {generated}"#
        )),
        "{metrics}"
    );
}

/// The README's proxy example, with `meshtwin cert` for its TLS files, validates and runs as
/// written (only its ports replaced by free ones).
#[test]
fn the_readme_proxy_example_runs_as_written() {
    let readme = include_str!("../../README.md");
    assert!(!readme.contains("[...]"), "no placeholders in the README");
    let at = readme.find("```ron\nProxy(").expect("the example") + "```ron\n".len();
    let end = at + readme[at..].find("```").expect("its end");
    let mut example = readme[at..end].to_owned();
    let mut ports = Vec::new();
    for p in ["8080", "8443", "15000", "15001"] {
        let free = free_port();
        let from = format!("\"127.0.0.1:{p}\"");
        assert!(example.contains(&from), "{from} in the example");
        example = example.replace(&from, &format!("\"127.0.0.1:{free}\""));
        ports.push(free);
    }
    let dir = scratch("readme");
    std::fs::write(dir.join("proxy.ron"), &example).expect("write");
    let bin = env!("CARGO_BIN_EXE_meshtwin");
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["cert", "--force"]);
    run(&["validate", "proxy.ron"]);
    let child = Command::new(bin)
        .args(["proxy", "--config", "proxy.ron"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy starts");
    let _proxy = Proc(child);
    let (ingress, tls, admin) = (ports[0], ports[1], ports[2]);
    wait_for("/ready", || {
        get(admin, "127.0.0.1", "/ready").is_some_and(|r| r.0 == 200)
    });
    // Nothing listens on the example's upstreams here: the engine answers 503 (`UF`).
    assert_eq!(get(ingress, "reviews", "/").map(|r| r.0), Some(503));
    assert!(
        TcpStream::connect(("127.0.0.1", tls)).is_ok(),
        "TLS listener up"
    );
}

/// An upstream answering every request with `status`, keeping connections open; counts
/// requests.
fn upstream(status: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = std::sync::Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                loop {
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        counter.fetch_add(1, Ordering::SeqCst);
                        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                        if s.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (port, hits)
}

/// An endpoints-file change (an endpoint inserted ahead of the others) reloads the proxy and
/// leaves the other hosts' state alone: the host ejected before it stays ejected.
#[test]
fn an_endpoints_file_change_keeps_other_hosts_ejected() {
    use std::sync::atomic::Ordering;
    let (bad, bad_hits) = upstream(503);
    let (good1, _) = upstream(200);
    let (good2, _) = upstream(200);
    let (added, added_hits) = upstream(200);
    let (port, admin) = (free_port(), free_port());
    let dir = scratch("endpoints");
    let cfg = dir.join("proxy.ron");
    let eps = dir.join("endpoints.ron");
    std::fs::write(
        &cfg,
        format!(
            r#"Proxy(
    listeners: [(name: "main", bind: "127.0.0.1:{port}")],
    admin: "127.0.0.1:{admin}",
    mesh: Mesh(destination_rules: [DestinationRule(host: "svc", traffic_policy: (
        load_balancer: (simple: ROUND_ROBIN),
        outlier_detection: (consecutive_5xx_errors: 1, interval: "10s",
                            base_ejection_time: "60s", max_ejection_percent: 100),
    ))]),
)
"#
        ),
    )
    .expect("write");
    let endpoints = |ports: &[u16]| {
        let list: Vec<String> = ports
            .iter()
            .map(|p| format!(r#"(addr: "127.0.0.1:{p}", labels: {{"version": "v1"}})"#))
            .collect();
        format!("{{\"svc\": [{}]}}\n", list.join(", "))
    };
    std::fs::write(&eps, endpoints(&[bad, good1, good2])).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_meshtwin"))
        .args(["proxy", "--config", cfg.to_str().expect("utf-8")])
        .args([
            "--endpoints",
            eps.to_str().expect("utf-8"),
            "--workers",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy starts");
    let _p = Proc(child);
    wait_for("/ready", || {
        get(admin, "127.0.0.1", "/ready").is_some_and(|r| r.0 == 200)
    });
    // Round robin reaches the bad host within three requests; its first 503 ejects it.
    for _ in 0..6 {
        assert!(get(port, "svc", "/").is_some());
    }
    let ejected_at = bad_hits.load(Ordering::SeqCst);
    assert_eq!(ejected_at, 1, "one 503, then ejected");
    std::fs::write(&eps, endpoints(&[added, bad, good1, good2])).expect("write");
    wait_for("the endpoints-file reload", || {
        get(port, "svc", "/").is_some_and(|r| r.0 == 200) && added_hits.load(Ordering::SeqCst) > 0
    });
    for _ in 0..12 {
        assert_eq!(get(port, "svc", "/").map(|r| r.0), Some(200));
    }
    assert_eq!(
        bad_hits.load(Ordering::SeqCst),
        ejected_at,
        "the ejected host was used again after the reload"
    );
}
