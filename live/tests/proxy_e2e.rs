//! The live proxy end to end on loopback, with real clients: header routing, an 80/20 split,
//! mirroring, injected abort and delay, redirects and header edits, TLS termination, HTTP/2.

mod common;
use common::{echo, get, proxy, proxy_tls};
use live::config::Limits;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const MESH: &str = r#"Mesh(
    virtual_services: [
        VirtualService(hosts: ["reviews"], http: [
            HttpRoute(name: "jason", match: [(headers: {"end-user": Exact("jason")})],
                route: [(destination: (host: "reviews", subset: "v2"))]),
            HttpRoute(name: "old", match: [(uri: Prefix("/old"))], redirect: (uri: "/new")),
            HttpRoute(name: "abort", match: [(uri: Prefix("/abort"))],
                fault: (abort: (http_status: 418, percentage: 100.0)),
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "delay", match: [(uri: Prefix("/delay"))],
                fault: (delay: (fixed_delay: "300ms", percentage: 100.0)),
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "edit", match: [(uri: Prefix("/edit"))],
                rewrite: (uri: "/rewritten"),
                headers: (request: (set: {"x-added": "yes"}), response: (set: {"x-resp": "1"})),
                route: [(destination: (host: "reviews", subset: "v1"))]),
            HttpRoute(name: "split", route: [
                (destination: (host: "reviews", subset: "v1"), weight: 80),
                (destination: (host: "reviews", subset: "v2"), weight: 20),
            ], mirror: (host: "shadow"), mirror_percentage: 100.0),
        ]),
    ],
    destination_rules: [DestinationRule(host: "reviews", subsets: [
        (name: "v1", labels: {"version": "v1"}), (name: "v2", labels: {"version": "v2"}),
    ])],
)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_split_mirror_faults_and_edits_on_real_sockets() {
    let (v1, v2, shadow) = (echo("v1").await, echo("v2").await, echo("shadow").await);
    let services = [
        ("reviews", vec![(v1.addr, "v1"), (v2.addr, "v2")]),
        ("shadow", vec![(shadow.addr, "v1")]),
    ];
    let (handle, listener) = proxy(MESH, &services, Limits::default()).await;
    let addr = listener.addr;

    // Header routing.
    for _ in 0..10 {
        let got = get(addr, "reviews", "/", &[("end-user", "jason")]).await;
        assert_eq!((got.status, got.body.as_str()), (200, "v2"));
    }
    // An unchanged head is forwarded from the downstream parts: end-to-end headers pass,
    // hop-by-hop ones do not, Host is the authority, the try is counted.
    let hdrs = [
        ("end-user", "jason"),
        ("x-custom", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
    ];
    let got = get(addr, "reviews", "/fwd?q=1", &hdrs).await;
    assert_eq!((got.status, got.body.as_str()), (200, "v2"));
    let (host, uri, seen) = v2.seen.lock().expect("lock").last().cloned().expect("seen");
    assert_eq!((host.as_str(), uri.as_str()), ("reviews", "/fwd?q=1"));
    let has = |k: &str, v: &str| seen.iter().any(|(a, b)| a == k && b == v);
    assert!(has("x-custom", "1") && has("end-user", "jason"), "{seen:?}");
    assert!(has("x-envoy-attempt-count", "1"), "{seen:?}");
    assert!(
        !seen.iter().any(|(k, _)| k == "keep-alive" || k == "te"),
        "{seen:?}"
    );
    assert_eq!(seen.iter().filter(|(k, _)| k == "host").count(), 1);
    // 80/20 split: Binomial(n, 0.2) within 5 standard deviations.
    let n = 400;
    let mut to_v2 = 0;
    for _ in 0..n {
        let got = get(addr, "reviews", "/x", &[]).await;
        assert_eq!(got.status, 200);
        to_v2 += usize::from(got.body == "v2");
    }
    let (nf, k) = (n as f64, to_v2 as f64);
    assert!(
        (k - 0.2 * nf).abs() < 5.0 * (nf * 0.16).sqrt(),
        "{to_v2} of {n} to v2"
    );
    // The mirror received a copy of every split request (fire and forget: wait a little).
    let deadline = Instant::now() + Duration::from_secs(5);
    while shadow.hits.load(Ordering::Relaxed) < n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shadow.hits.load(Ordering::Relaxed), n as u64);
    assert!(
        shadow
            .seen
            .lock()
            .expect("lock")
            .iter()
            .all(|(host, _, _)| host == "reviews"),
        "no -shadow suffix (Istio >= 1.28)"
    );

    // Redirect, abort, delay, rewrite and header edits.
    let got = get(addr, "reviews", "/old/page", &[]).await;
    assert_eq!(got.status, 301);
    assert_eq!(got.headers["location"], "http://reviews/new");
    let got = get(addr, "reviews", "/abort", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (418, "fault filter abort"));
    let started = Instant::now();
    let got = get(addr, "reviews", "/delay", &[]).await;
    assert_eq!(got.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "delay is real time"
    );
    let got = get(addr, "reviews", "/edit/a?b=1", &[]).await;
    assert_eq!(got.headers["x-resp"], "1");
    let last = v1
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("v1 saw it");
    assert_eq!(last.1, "/rewritten/a?b=1");
    assert!(last.2.iter().any(|(k, v)| k == "x-added" && v == "yes"));
    // No route: 404 NR.
    let got = get(addr, "nosuch", "/", &[]).await;
    assert_eq!(got.status, 404);

    // Every request got one recorded outcome, with the flags.
    let m = handle.snapshot().finish();
    assert_eq!(m.totals.count, 10 + 1 + n as u64 + 5);
    let flag = |f: &str| {
        m.totals
            .flags()
            .find(|(n, _)| *n == f)
            .map_or(0, |(_, c)| c)
    };
    assert_eq!((flag("FI"), flag("DI"), flag("NR")), (1, 1, 1));
    listener.shutdown().await;
}

fn test_tls() -> (
    std::sync::Arc<rustls::ServerConfig>,
    rustls::pki_types::CertificateDer<'static>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    (
        live::tls::server_config_der(vec![der.clone()], key).expect("tls config"),
        der,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_termination_and_http2() {
    let v1 = echo("v1").await;
    let services = [("reviews", vec![(v1.addr, "v1")])];
    let (server_config, cert) = test_tls();
    let (_h, tls_listener) = proxy_tls(
        r#"Mesh()"#,
        &services,
        Limits::default(),
        Some(server_config),
    )
    .await;

    // TLS with ALPN h2: a real rustls client speaking HTTP/2.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(tls_listener.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = http::Request::builder()
            .uri("https://reviews/over-tls")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
    }
    assert!(v1
        .seen
        .lock()
        .expect("lock")
        .iter()
        .all(|(host, _, _)| host == "reviews"));

    // h2c (HTTP/2 with prior knowledge) on a plain listener.
    let (_h2, plain) = common::proxy(r#"Mesh()"#, &services, Limits::default()).await;
    let mut sender = common::h2c(plain.addr).await;
    let req = http::Request::builder()
        .uri("http://reviews/h2c")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(
        (resp.status(), resp.version()),
        (http::StatusCode::OK, http::Version::HTTP_2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_multiplexes_one_connection_per_endpoint() {
    let v1 = echo("v1").await;
    let mesh = r#"Mesh(destination_rules: [DestinationRule(host: "grpc-ish",
        traffic_policy: (connection_pool: (http: (h2_upgrade_policy: UPGRADE))))])"#;
    let (handle, listener) = proxy(
        mesh,
        &[("grpc-ish", vec![(v1.addr, "v1")])],
        Limits::default(),
    )
    .await;
    let addr = listener.addr;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40 {
        set.spawn(async move { get(addr, "grpc-ish", &format!("/call/{i}"), &[]).await });
    }
    while let Some(got) = set.join_next().await {
        let got = got.expect("task");
        assert_eq!((got.status, got.body.as_str()), (200, "v1"));
    }
    // All 40 went as HTTP/2 streams (absolute URIs carry the :authority) on one connection.
    let seen = v1.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 40);
    assert!(
        seen.iter()
            .all(|(_, uri, _)| uri.starts_with("http://grpc-ish/call/")),
        "{:?}",
        seen[0]
    );
    assert_eq!(
        handle.gauges.upstream_connections.load(Ordering::Relaxed),
        1
    );
    let m = handle.snapshot().finish();
    assert_eq!((m.totals.count, m.totals.success), (40, 40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_stay_named_right_across_a_reload_that_renumbers_routes() {
    let up = echo("api").await;
    let before = r#"Mesh(virtual_services: [VirtualService(hosts: ["api"], http: [
        HttpRoute(name: "a", route: [(destination: (host: "api"))])])])"#;
    let after = r#"Mesh(virtual_services: [VirtualService(hosts: ["api"], http: [
        HttpRoute(name: "b", match: [(uri: Prefix("/b"))], route: [(destination: (host: "api"))]),
        HttpRoute(name: "a", route: [(destination: (host: "api"))])])])"#;
    let (handle, l) = proxy(before, &[("api", vec![(up.addr, "v1")])], Limits::default()).await;
    assert_eq!(get(l.addr, "api", "/", &[]).await.status, 200);
    let next = common::generation(
        &common::parse_mesh(after),
        &[("api", vec![(up.addr, "v1")])],
        Some(&handle.mesh()),
    );
    handle.reload(next).expect("a later generation");
    assert_eq!(get(l.addr, "api", "/", &[]).await.status, 200);
    assert_eq!(get(l.addr, "api", "/b", &[]).await.status, 200);
    let m = handle.metrics();
    let routes: Vec<(&str, u64)> = m
        .routes
        .iter()
        .map(|(n, s)| (n.as_str(), s.count))
        .collect();
    assert_eq!(routes, vec![("api/a", 2), ("api/b", 1)]);
    assert_eq!(m.totals.count, 3);
    l.shutdown().await;
}
