//! A live gateway proxy on loopback: HTTP and HTTPS (SIMPLE termination with rustls) gateway
//! servers routing by the virtual services bound to them, 404 `NR` for a host no server
//! serves and for a virtual service bound only to the mesh, `https_redirect`'s 301.

mod common;
use common::{echo, generation, get, parse_mesh};
use live::config::Limits;
use live::driver::{self, DriverOptions, ProxyHandle};
use live::server::{self, Listener};
use proxy_engine::gateway;
use proxy_engine::ProxyRole;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

const MESH: &str = r#"Mesh(
    gateways: [Gateway(name: "gw", selector: {"istio": "ingressgateway"}, servers: [
        (port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["foo.bar"]),
        (port: (number: 80, protocol: "HTTP", name: "http-redirect"), hosts: ["secure.bar"],
            tls: (https_redirect: true)),
        (port: (number: 443, protocol: "HTTPS", name: "https"), hosts: ["secure.bar"],
            tls: (mode: "SIMPLE", credential_name: "secure-cert")),
    ])],
    virtual_services: [
        VirtualService(name: "edge", hosts: ["*"], gateways: ["gw"], http: [
            HttpRoute(match: [(uri: Prefix("/productpage"))], route: [(destination: (host: "productpage"))]),
        ]),
        VirtualService(hosts: ["productpage"], http: [HttpRoute(route: [(destination: (host: "productpage"))])]),
    ],
)"#;

async fn gateway_listener(
    services: &[(&str, Vec<(SocketAddr, &str)>)],
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (ProxyHandle, Listener) {
    let compiled = generation(&parse_mesh(MESH), services, None);
    let opts = DriverOptions {
        name: format!("gw-{port}"),
        seed: 7,
        max_response_bytes: 1 << 20,
        access_log: false,
        window: Some(proxy_engine::Nanos::from_secs(1)),
        probe: None,
        listener: Some(gateway::Listener {
            port,
            tls: tls.is_some(),
        }),
    };
    let role = ProxyRole::Gateway {
        name: "istio-ingressgateway".into(),
        labels: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
    };
    let handle = driver::spawn(compiled, role, opts);
    let addr = "127.0.0.1:0".parse().expect("addr");
    let listener = server::listen(addr, handle.clone(), Limits::default(), tls)
        .await
        .expect("listen");
    (handle, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gateway_routes_bound_hosts_and_answers_404_and_301() {
    let page = echo("productpage").await;
    let services = [("productpage", vec![(page.addr, "v1")])];
    let (handle, l) = gateway_listener(&services, 80, None).await;
    let got = get(l.addr, "foo.bar", "/productpage", &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, "productpage"));
    let got = get(l.addr, "foo.bar:8080", "/productpage", &[]).await;
    assert_eq!(got.status, 200, "the port in Host is ignored");
    let got = get(l.addr, "bad.bar", "/productpage", &[]).await;
    assert_eq!(got.status, 404, "no server host");
    let got = get(l.addr, "productpage", "/", &[]).await;
    assert_eq!(got.status, 404, "a mesh-only virtual service");
    let got = get(l.addr, "secure.bar", "/productpage?x=1", &[]).await;
    assert_eq!(got.status, 301);
    let location = got.headers.get("location").and_then(|v| v.to_str().ok());
    assert_eq!(location, Some("https://secure.bar/productpage?x=1"));
    let m = handle.snapshot().finish();
    assert_eq!(m.totals.count, 5, "every request recorded once");
    let nr = m.totals.flags().find(|(f, _)| *f == "NR").map(|(_, n)| n);
    assert_eq!(nr, Some(2));
    assert_eq!(page.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_gateway_terminates_tls_and_routes() {
    let page = echo("productpage").await;
    let services = [("productpage", vec![(page.addr, "v1")])];
    let cert = rcgen::generate_simple_self_signed(vec!["secure.bar".to_owned()]).expect("cert");
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let server = live::tls::server_config_der(vec![der.clone()], key).expect("tls config");
    let (_handle, l) = gateway_listener(&services, 443, Some(server)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    for (host, path, want) in [
        ("secure.bar", "/productpage", 200),
        ("secure.bar", "/other", 404),
        ("foo.bar", "/productpage", 404),
    ] {
        let tcp = tokio::net::TcpStream::connect(l.addr)
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("secure.bar").expect("name");
        let tls = connector.connect(name, tcp).await.expect("handshake");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("http/1.1 over TLS");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(path)
            .header("host", host)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), want, "{host}{path}: no redirect over TLS");
    }
}

/// `run --live` on `scenarios/egress-gateway.ron` (Istio's egress-gateway task): sleep's
/// sidecar sends edition.cnn.com to the live egress gateway's listener, which routes it on to
/// the external service; every request shows at each hop, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_through_a_live_egress_gateway_hop_by_hop() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/egress-gateway.ron");
    let mut s = sim_core::load(&path).unwrap_or_else(|e| panic!("{e}"));
    s.duration = proxy_engine::Nanos::from_secs(3);
    let m = run_live(&s).await;
    let n = m.generated;
    assert!(n > 150, "{n} requests");
    assert_eq!(m.totals.by_status, vec![(200, n)]);
    let count = |table: &[(String, metrics::Stats)], name: &str| {
        table
            .iter()
            .find(|(t, _)| t == name)
            .map_or(0, |(_, st)| st.count)
    };
    assert_eq!(
        count(&m.routes, "edition.cnn.com/to-gateway"),
        n,
        "the sidecar's hop"
    );
    assert_eq!(
        count(&m.routes, "edition.cnn.com/to-cnn"),
        n,
        "the gateway's hop"
    );
    assert_eq!(count(&m.clusters, "istio-egressgateway|cnn"), n);
    assert_eq!(count(&m.destinations, "edition.cnn.com/v1"), n);
}

/// `run --live` with a workload entering an `HTTPS` gateway server: the lab's gateway listener
/// terminates TLS (a certificate made at start, as the server names a Kubernetes secret) and
/// the load generator speaks TLS to it; every request is routed and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_enters_a_live_https_gateway_server() {
    let text = r#"Scenario(seed: 4, duration: "2s",
        services: {"productpage": (versions: {"v1": (instances: 1, workers: 16, latency: Constant("1ms"))})},
        gateway_proxies: {"istio-ingressgateway": (labels: {"istio": "ingressgateway"})},
        mesh: Mesh(
            gateways: [Gateway(name: "gw", selector: {"istio": "ingressgateway"}, servers: [
                (port: (number: 443, protocol: "HTTPS", name: "https"), hosts: ["secure.bar"],
                    tls: (mode: "SIMPLE", credential_name: "secure-cert")),
            ])],
            virtual_services: [VirtualService(name: "edge", hosts: ["secure.bar"], gateways: ["gw"],
                http: [HttpRoute(name: "pages", route: [(destination: (host: "productpage"))])])],
        ),
        workload: [OpenLoop(host: "secure.bar", via: (gateway: "istio-ingressgateway", port: 443, tls: true),
            rate: 50)])"#;
    let s = sim_core::load::parse("https.ron", text).unwrap_or_else(|e| panic!("{e}"));
    sim_core::load::validate("https.ron", text, &s).unwrap_or_else(|e| panic!("{e}"));
    let m = run_live(&s).await;
    let n = m.generated;
    assert!(n > 50, "{n} requests");
    assert_eq!(
        m.totals.by_status,
        vec![(200, n)],
        "every request over TLS answered"
    );
    let pages = (m.routes.iter()).find(|(r, _)| r == "secure.bar/pages");
    assert_eq!(pages.map(|(_, st)| st.count), Some(n));
}

/// `run --live` on `s` with its own seed.
async fn run_live(s: &sim_core::Scenario) -> metrics::RunMetrics {
    let connections = live::lab::Connections {
        initial: 8,
        max: 1_000,
    };
    let progress = Arc::new(live::loadgen::Progress::default());
    live::lab::run(s, s.seed, connections, progress)
        .await
        .expect("live runs")
}
