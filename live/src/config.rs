//! The live proxy's configuration files (RON, same error reporting as scenarios):
//!
//! ```ron
//! Proxy(
//!     listeners: [
//!         (name: "ingress", bind: "127.0.0.1:8080"),
//!         (name: "ingress-tls", bind: "127.0.0.1:8443", tls: (cert: "cert.pem", key: "key.pem")),
//!     ],
//!     admin: "127.0.0.1:15000",
//!     mesh: Mesh(virtual_services: [...], destination_rules: [...]),
//!     endpoints: { "reviews": [(addr: "127.0.0.1:9081", labels: {"version": "v1"})] },
//! )
//! ```
//!
//! `endpoints` may instead come from a separate file (`--endpoints`), holding just the map.

use crate::driver::Generation;
use proxy_engine::{CompiledMesh, Endpoint, EndpointMap, MeshConfig, Nanos, Registry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// A live proxy's whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "Proxy")]
pub struct ProxyConfig {
    /// Downstream listeners.
    pub listeners: Vec<ListenerConfig>,
    /// Admin endpoint address; default `127.0.0.1:15000`. Only loopback by default.
    #[serde(default = "default_admin")]
    pub admin: Option<SocketAddr>,
    /// Traffic policy.
    #[serde(default)]
    pub mesh: MeshConfig,
    /// Services and their endpoints (or pass `--endpoints FILE`).
    #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
    pub endpoints: BTreeMap<String, Vec<EndpointSpec>>,
    /// Limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// Print an Envoy-style access log line per request to stdout. Default false.
    #[serde(default)]
    pub access_log: bool,
}

fn default_admin() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 15000)))
}

/// One downstream listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name (logs and metrics).
    pub name: String,
    /// Address to bind (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Terminate TLS with this certificate (ALPN offers h2 and http/1.1).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// What this listener is; each listener runs its own engine. Default `Ingress`.
    #[serde(default)]
    pub role: ListenerRole,
}

/// The role of a listener's proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenerRole {
    /// An ingress gateway: the mesh's entry point.
    #[default]
    Ingress,
    /// The outbound side of a service's sidecar.
    Sidecar {
        /// The service the sidecar belongs to.
        service: String,
    },
    /// A gateway server: the mesh's `Gateway` objects whose selector `labels` satisfy route
    /// this listener's requests as their servers on `port` (the `Gateway`'s port number, not
    /// the bound socket's). A TLS listener is an `HTTPS` server.
    Gateway {
        /// The gateway proxy's labels (`{"istio": "ingressgateway"}`).
        #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
        labels: std::collections::BTreeMap<String, String>,
        /// The server port.
        port: u16,
    },
}

/// PEM files of a TLS listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

/// One endpoint of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Name, unique within the service and version; default: the address. A reload keeps the
    /// state (ejection, connections, balancing) of every endpoint whose name it keeps.
    #[serde(default)]
    pub name: Option<String>,
    /// Socket address.
    pub addr: SocketAddr,
    /// Labels such as `version`.
    #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
    pub labels: BTreeMap<String, String>,
}

/// Protective bounds of a listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest wait for a complete request head; slower clients are disconnected. Default 10 s.
    pub header_read_timeout: Nanos,
    /// Largest request head (request line and headers), bytes; larger gets 431. Default 64 KiB.
    pub max_header_bytes: usize,
    /// Largest request body, bytes; larger gets 413 (at once when `Content-Length` says so,
    /// before any `100 Continue`). Default 1 MiB (Envoy's buffer limit).
    pub max_body_bytes: usize,
    /// Most request headers; more gets 431. Default 100 (Envoy's `max_headers_count`).
    pub max_headers: usize,
    /// Largest upstream response body, bytes; larger is a reset (503). Default 16 MiB.
    pub max_response_bytes: usize,
    /// Most downstream connections open at once per listener; more wait in the accept queue.
    /// Default 10 000.
    pub max_connections: usize,
    /// Longest wait for a whole request body once its head has arrived; slower gets 408
    /// (Envoy's `request_timeout`). Default 300 s, Envoy's edge recommendation.
    pub request_timeout: Nanos,
    /// On SIGTERM, how long in-flight requests may take to finish before their connections are
    /// closed (503 `DC` in the engine's accounting). Default 30 s (Kubernetes' default
    /// termination grace period).
    pub drain_timeout: Nanos,
}

/// hyper's and Envoy's default header count limit.
pub const DEFAULT_MAX_HEADERS: usize = 100;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Nanos::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024,
            max_headers: DEFAULT_MAX_HEADERS,
            max_response_bytes: 16 * 1024 * 1024,
            max_connections: 10_000,
            request_timeout: Nanos::from_secs(300),
            drain_timeout: Nanos::from_secs(30),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigFileError {
    /// Unreadable or invalid RON (names file, line, column, field).
    #[error(transparent)]
    File(#[from] sim_core::ScenarioError),
    /// The mesh does not compile against the endpoints.
    #[error("{file}: mesh.{0}", file = .1)]
    Mesh(proxy_engine::ConfigError, String),
    /// A listener or endpoint is missing.
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<String, ConfigFileError> {
    Ok(sim_core::load::read_text(path, "config")?)
}

impl ProxyConfig {
    /// Reads `path`, and the endpoints from `endpoints` when given.
    pub fn load(path: &Path, endpoints: Option<&Path>) -> Result<ProxyConfig, ConfigFileError> {
        let file = path.display().to_string();
        let text = read(path)?;
        let mut config: ProxyConfig = sim_core::load::parse_as(&file, &text)?;
        if let Some(ep) = endpoints {
            let text = read(ep)?;
            config.endpoints = sim_core::load::parse_as(&ep.display().to_string(), &text)?;
        }
        if config.listeners.is_empty() {
            return Err(ConfigFileError::Invalid(format!(
                "{file}: listeners: at least one listener is required"
            )));
        }
        // `reviews.default.svc.cluster.local` names the service `reviews`.
        let services: Vec<String> = config.endpoints.keys().cloned().collect();
        proxy_engine::hosts::shorten(&mut config.mesh, &|h| services.iter().any(|s| s == h));
        // Located like a scenario's mesh errors: file, line, column and field.
        CompiledMesh::compile(&config.mesh, &config.registry()).map_err(|e| {
            let e = match e {
                proxy_engine::ConfigError::UnknownHost { field, host, .. } => {
                    proxy_engine::ConfigError::Invalid {
                        field,
                        message: format!(
                            "host `{host}` has no endpoints: add `\"{host}\": [(addr: \
                                 \"IP:PORT\")]` under `endpoints` (or pass --endpoints FILE)"
                        ),
                    }
                }
                e => e,
            };
            ConfigFileError::File(sim_core::load::mesh_error(&file, &text, &e))
        })?;
        config.compile(&file, None)?;
        Ok(config)
    }

    /// The registry of endpoints.
    pub fn registry(&self) -> Registry {
        let mut reg = Registry::default();
        for (service, eps) in &self.endpoints {
            let endpoints = eps
                .iter()
                .map(|e| Endpoint {
                    name: endpoint_name(service, e),
                    labels: e.labels.clone(),
                })
                .collect();
            reg.add_service(service.clone(), endpoints);
        }
        reg
    }

    /// Where each endpoint of `mesh` (compiled from `registry()`) listens.
    pub fn addresses(&self, mesh: &CompiledMesh) -> EndpointMap<SocketAddr> {
        let by_name: BTreeMap<String, SocketAddr> = (self.endpoints.iter())
            .flat_map(|(service, eps)| eps.iter().map(|e| (endpoint_name(service, e), e.addr)))
            .collect();
        mesh.endpoint_map(|name| by_name.get(name).copied())
    }

    /// The compiled mesh and its endpoints' addresses; an undefined subset is an error here,
    /// as in `meshtwin validate`. With `running` (a reload), the next generation of the running
    /// mesh, so the proxy keeps the state of every cluster and endpoint that stays.
    pub fn compile(
        &self,
        file: &str,
        running: Option<&CompiledMesh>,
    ) -> Result<Generation, ConfigFileError> {
        let registry = self.registry();
        let mesh = match running {
            Some(r) => CompiledMesh::compile_next(&self.mesh, &registry, r),
            None => CompiledMesh::compile(&self.mesh, &registry),
        }
        .map_err(|e| ConfigFileError::Mesh(e, file.to_owned()))?;
        if let Some(w) = mesh.warnings().first() {
            return Err(ConfigFileError::Invalid(format!("{file}: mesh.{w}")));
        }
        crate::origination::check(&mesh)
            .map_err(|e| ConfigFileError::Invalid(format!("{file}: mesh: {e}")))?;
        let addrs = self.addresses(&mesh);
        Ok(Generation {
            mesh: Arc::new(mesh),
            addrs,
        })
    }
}

/// An endpoint's stable instance name: `service/version/` and its configured name, else its
/// address.
fn endpoint_name(service: &str, e: &EndpointSpec) -> String {
    format!(
        "{service}/{}/{}",
        e.labels.get("version").map_or("-", String::as_str),
        e.name
            .as_deref()
            .map_or_else(|| e.addr.to_string(), str::to_owned)
    )
}
