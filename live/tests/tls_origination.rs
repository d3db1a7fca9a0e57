//! TLS origination live: a `DestinationRule` with `tls.mode: SIMPLE` makes the proxy open TLS
//! (rustls) to the upstream, verifying its certificate against the rule's `ca_certificates`
//! for the SNI name. The upstream here is a local TLS server whose certificate a test CA (made
//! with rcgen) signed: it sees TLS with the SNI; with another CA in the rule, every request
//! fails with a flagged 503 (`UF`), each counted once.

mod common;
use bytes::Bytes;
use common::{get, proxy};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use live::config::Limits;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const HOST: &str = "api.example.test";

/// A test certificate authority.
fn test_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

/// Writes `pem` to a file of its own under the temp directory.
fn pem_file(name: &str, pem: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshtwin-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path
}

/// A TLS upstream serving `HOST` with a certificate `ca` signed: counts completed handshakes,
/// remembers the SNI of each, answers 200 `secure`.
struct TlsUpstream {
    addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    names: Arc<Mutex<Vec<String>>>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_upstream(ca: &CertifiedIssuer<'static, KeyPair>) -> TlsUpstream {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![HOST.to_owned()])
        .expect("params")
        .signed_by(&key, ca)
        .expect("leaf");
    let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = live::tls::server_config_der(vec![cert.der().clone()], der_key).expect("tls");
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handshakes = Arc::new(AtomicU64::new(0));
    let names = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::new(AtomicU64::new(0));
    let (h, n, r) = (handshakes.clone(), names.clone(), requests.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, h, n, r) = (acceptor.clone(), h.clone(), n.clone(), r.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return; // the client refused our certificate
                };
                h.fetch_add(1, Ordering::Relaxed);
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                n.lock().expect("lock").push(sni);
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    r.fetch_add(1, Ordering::Relaxed);
                    async {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("secure"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TlsUpstream {
        addr,
        handshakes,
        names,
        requests,
        task,
    }
}

fn mesh(ca_file: &std::path::Path) -> String {
    format!(
        r#"Mesh(destination_rules: [DestinationRule(host: "{HOST}",
            traffic_policy: (tls: (mode: "SIMPLE", ca_certificates: "{}")))])"#,
        ca_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_tls_reaches_the_upstream_verified_by_the_configured_ca() {
    let ca = test_ca("meshtwin test CA");
    let upstream = tls_upstream(&ca).await;
    let ca_file = pem_file("ca.pem", &ca.pem());
    let services = [(HOST, vec![(upstream.addr, "v1")])];
    let (handle, l) = proxy(&mesh(&ca_file), &services, Limits::default()).await;
    for _ in 0..5 {
        let got = get(l.addr, HOST, "/politics", &[]).await;
        assert_eq!((got.status, got.body.as_str()), (200, "secure"));
    }
    assert_eq!(upstream.requests.load(Ordering::Relaxed), 5);
    let handshakes = upstream.handshakes.load(Ordering::Relaxed);
    assert!((1..=5).contains(&handshakes), "{handshakes} handshakes");
    let names = upstream.names.lock().expect("lock").clone();
    assert!(names.iter().all(|n| n == HOST), "SNI {names:?}");
    let m = handle.snapshot().finish();
    assert_eq!(m.totals.count, 5);
    assert_eq!(m.totals.by_status, vec![(200, 5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_fails_the_handshake_with_a_counted_503_uf() {
    let ca = test_ca("meshtwin test CA");
    let upstream = tls_upstream(&ca).await;
    let other = test_ca("some other CA");
    let ca_file = pem_file("other-ca.pem", &other.pem());
    let services = [(HOST, vec![(upstream.addr, "v1")])];
    let (handle, l) = proxy(&mesh(&ca_file), &services, Limits::default()).await;
    let n = 4;
    for _ in 0..n {
        let got = get(l.addr, HOST, "/politics", &[]).await;
        assert_eq!(got.status, 503, "{}", got.body);
    }
    assert_eq!(
        upstream.requests.load(Ordering::Relaxed),
        0,
        "nothing got through"
    );
    assert_eq!(upstream.handshakes.load(Ordering::Relaxed), 0);
    let m = handle.snapshot().finish();
    assert_eq!(m.totals.count, n, "each request counted once");
    assert_eq!(m.totals.by_status, vec![(503, n)]);
    let uf = m.totals.flags().find(|(f, _)| *f == "UF").map(|(_, k)| k);
    assert_eq!(uf, Some(n), "flagged as an upstream connection failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_file_fails_like_a_bad_handshake() {
    let ca = test_ca("meshtwin test CA");
    let upstream = tls_upstream(&ca).await;
    let services = [(HOST, vec![(upstream.addr, "v1")])];
    let missing = std::env::temp_dir().join("meshtwin-no-such-ca.pem");
    let (handle, l) = proxy(&mesh(&missing), &services, Limits::default()).await;
    let got = get(l.addr, HOST, "/", &[]).await;
    assert_eq!(got.status, 503);
    let m = handle.snapshot().finish();
    let uf = m.totals.flags().find(|(f, _)| *f == "UF").map(|(_, k)| k);
    assert_eq!((m.totals.count, uf), (1, Some(1)));
}
