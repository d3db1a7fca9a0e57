//! Helpers for live end-to-end tests: echo upstreams, a proxy built from RON, a raw client.

#![allow(dead_code, missing_docs)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use live::config::Limits;
use live::driver::{self, DriverOptions, Generation, ProxyHandle};
use live::server::{self, Listener};
use proxy_engine::{CompiledMesh, Endpoint, MeshConfig, ProxyRole, Registry};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What an echo upstream received: Host, URI, headers.
pub(crate) type Seen = (String, String, Vec<(String, String)>);

/// An upstream that answers 200 with its name (body and `x-served-by`), and remembers what it
/// received.
pub(crate) struct Echo {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicU64>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn echo(name: &str) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s, name) = (hits.clone(), seen.clone(), name.to_owned());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (h, s, name) = (h.clone(), s.clone(), name.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (h, s, name) = (h.clone(), s.clone(), name.clone());
                    async move {
                        h.fetch_add(1, Ordering::Relaxed);
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        s.lock()
                            .expect("lock")
                            .push((host, req.uri().to_string(), headers));
                        let resp = http::Response::builder()
                            .header("x-served-by", name.as_str())
                            .body(Full::new(Bytes::from(name)))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Echo {
        addr,
        hits,
        seen,
        task,
    }
}

pub(crate) fn parse_mesh(text: &str) -> MeshConfig {
    sim_core::load::parse_as("test-mesh.ron", text).unwrap_or_else(|e| panic!("{e}"))
}

/// A proxy (driver + plain listener) over `services` (name → [(addr, version)]).
pub(crate) async fn proxy(
    mesh: &str,
    services: &[(&str, Vec<(SocketAddr, &str)>)],
    limits: Limits,
) -> (ProxyHandle, Listener) {
    proxy_tls(mesh, services, limits, None).await
}

/// `mesh` compiled over `services` (each endpoint named `service/version/addr`) with their
/// addresses; with `running`, as its next generation.
pub(crate) fn generation(
    mesh: &MeshConfig,
    services: &[(&str, Vec<(SocketAddr, &str)>)],
    running: Option<&CompiledMesh>,
) -> Generation {
    let mut reg = Registry::default();
    let mut addrs = BTreeMap::new();
    for (name, eps) in services {
        let endpoints = eps
            .iter()
            .map(|(addr, v)| {
                let name = format!("{name}/{v}/{addr}");
                addrs.insert(name.clone(), *addr);
                Endpoint {
                    name,
                    labels: BTreeMap::from([("version".to_owned(), (*v).to_owned())]),
                }
            })
            .collect();
        reg.add_service(*name, endpoints);
    }
    let compiled = match running {
        Some(r) => CompiledMesh::compile_next(mesh, &reg, r),
        None => CompiledMesh::compile(mesh, &reg),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    Generation {
        addrs: compiled.endpoint_map(|n| addrs.get(n).copied()),
        mesh: Arc::new(compiled),
    }
}

pub(crate) async fn proxy_tls(
    mesh: &str,
    services: &[(&str, Vec<(SocketAddr, &str)>)],
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (ProxyHandle, Listener) {
    let compiled = generation(&parse_mesh(mesh), services, None);
    let opts = DriverOptions {
        name: "test".into(),
        seed: 7,
        max_response_bytes: 1 << 20,
        access_log: false,
        window: Some(proxy_engine::Nanos::from_secs(1)),
        probe: None,
        listener: None,
    };
    let handle = driver::spawn(
        compiled,
        ProxyRole::Client {
            name: "test".into(),
        },
        opts,
    );
    let listener = server::listen(
        "127.0.0.1:0".parse().expect("addr"),
        handle.clone(),
        limits,
        tls,
    )
    .await
    .expect("listen");
    (handle, listener)
}

/// A response as the tests look at it.
#[derive(Debug)]
pub(crate) struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// One HTTP/1.1 request on a fresh connection.
pub(crate) async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut b = http::Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = sender
        .send_request(b.body(Full::new(Bytes::new())).expect("req"))
        .await
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A scenario's services running live (`meshtwin serve`'s code) and a client proxy over them
/// (driver + plain listener), from scenario text.
pub(crate) async fn lab(
    text: &str,
) -> (
    live::lab::Services,
    ProxyHandle,
    Listener,
    sim_core::Scenario,
) {
    let s = sim_core::load::parse("test.ron", text).unwrap_or_else(|e| panic!("{e}"));
    sim_core::load::validate("test.ron", text, &s).unwrap_or_else(|e| panic!("{e}"));
    let services = live::lab::start_services(&s, 1).await.expect("services");
    let opts = DriverOptions {
        name: "client".into(),
        seed: 3,
        max_response_bytes: 1 << 20,
        access_log: false,
        window: Some(s.window),
        probe: None,
        listener: None,
    };
    let role = ProxyRole::Client {
        name: "client".into(),
    };
    let client = driver::spawn(services.generation.clone(), role, opts);
    let listener = server::listen(
        "127.0.0.1:0".parse().expect("addr"),
        client.clone(),
        Limits::default(),
        None,
    )
    .await
    .expect("listen");
    (services, client, listener, s)
}

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`: its request sender.
pub(crate) async fn h2c(
    addr: SocketAddr,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    sender
}
