//! The scenario's gateway proxies in `run --live`: one engine driver and loopback listener
//! per server port the run uses — the ports workloads enter by (`via`) and the port of a
//! gateway's own service (an egress gateway that sidecars send to). Each such driver is the
//! gateway proxy with the gateway's role, name and RNG seed, listening as that `Gateway`
//! server (`DriverOptions::listener`), so it routes as the simulator's gateway proxy does.
//!
//! An `HTTPS` server terminates TLS with rustls: with the certificate and key files its `tls`
//! names (`server_certificate`, `private_key`), else with a self-signed certificate made at
//! start for its hosts (a `credential_name` is a Kubernetes secret the lab cannot read). The
//! load generator does not verify it, as `curl -k` does not.

use crate::config::Limits;
use crate::driver::{self, DriverOptions, Generation, ProxyHandle};
use crate::lab::LabError;
use crate::server::{self, Listener};
use sim_core::scenario::{Scenario, Workload};
use sim_core::topology::{Owner, ProxySpec, Topology};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// One running server port of a gateway proxy.
pub struct GatewayServer {
    /// The gateway proxy's number among the topology's gateways.
    pub gateway: u32,
    /// Its name (the key in `gateway_proxies`).
    pub name: String,
    /// The `Gateway` server port it listens as.
    pub port: u16,
    /// Its driver.
    pub handle: ProxyHandle,
    /// Its loopback listener.
    pub listener: Listener,
}

/// The server ports each gateway proxy (by name) runs, and whether each speaks TLS: those
/// workloads enter by (TLS as the workload says, which the scenario check matched to the
/// server), and its service's (plain: sidecars' mesh TLS is not modeled).
pub fn ports(s: &Scenario) -> BTreeMap<&str, BTreeMap<u16, bool>> {
    let mut ports: BTreeMap<&str, BTreeMap<u16, bool>> = BTreeMap::new();
    for w in &s.workload {
        let Workload::OpenLoop(o) = w else { continue };
        let Some(via) = &o.via else { continue };
        let entry = ports.entry(via.gateway.as_str()).or_default();
        entry.insert(via.port, via.tls);
    }
    for (name, g) in &s.gateway_proxies {
        if let Some(service) = &g.service {
            let entry = ports.entry(name.as_str()).or_default();
            entry.entry(service.port).or_insert(false);
        }
    }
    ports
}

/// The TLS setup of gateway `name`'s `HTTPS` server on `port`: its certificate files, or a
/// self-signed certificate for its hosts.
fn server_tls(
    s: &Scenario,
    name: &str,
    port: u16,
) -> Result<std::sync::Arc<rustls::ServerConfig>, LabError> {
    let server = (s.gateway_proxies.get(name)).and_then(|g| g.server(&s.mesh, port));
    let tls = server.and_then(|sv| sv.tls.as_ref());
    let files = tls.and_then(|t| t.server_certificate.as_ref().zip(t.private_key.as_ref()));
    let failed = |e: String| LabError::Files(format!("gateway `{name}` port {port}: {e}"));
    if let Some((cert, key)) = files {
        let (cert, key) = (std::path::Path::new(cert), std::path::Path::new(key));
        return crate::tls::server_config(cert, key).map_err(|e| failed(e.to_string()));
    }
    let mut names: Vec<String> = (server.map(|sv| sv.hosts.as_slice()).unwrap_or_default())
        .iter()
        .map(|h| h.rsplit('/').next().unwrap_or(h))
        .filter(|h| *h != "*")
        .map(str::to_owned)
        .collect();
    names.push("localhost".into());
    let pair = rcgen::generate_simple_self_signed(names).map_err(|e| failed(e.to_string()))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pair.signing_key.serialize_der().into());
    crate::tls::server_config_der(vec![pair.cert.der().clone()], key)
        .map_err(|e| failed(e.to_string()))
}

/// The load generator's TLS to an `HTTPS` gateway server: SNI `host` (the workload's, or
/// `localhost` when it is no valid name), the certificate not verified.
pub fn client_tls(host: &str) -> Result<crate::origination::Originate, LabError> {
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let sni = match rustls::pki_types::ServerName::try_from(host) {
        Ok(_) => host,
        Err(_) => "localhost",
    };
    let tls = proxy_engine::tls::UpstreamTls {
        sni: sni.into(),
        ca_certificates: None,
        client_certificate: None,
        insecure_skip_verify: true,
    };
    crate::origination::originate(&tls, false).map_err(|e| LabError::Files(e.to_string()))
}

/// Starts every gateway server port `s` uses over `generation`, with the same options as the
/// lab's other proxies (`options`).
pub async fn start(
    s: &Scenario,
    topology: &Topology<'_>,
    generation: &Generation,
    options: impl Fn(&ProxySpec) -> DriverOptions,
) -> Result<Vec<GatewayServer>, LabError> {
    let ports = ports(s);
    let mut servers = Vec::new();
    for spec in &topology.proxies {
        let Owner::Gateway { gateway } = spec.owner else {
            continue;
        };
        for (&port, &tls) in ports.get(spec.name.as_str()).into_iter().flatten() {
            let opts = DriverOptions {
                listener: Some(proxy_engine::gateway::Listener { port, tls }),
                ..options(spec)
            };
            let server_tls = match tls {
                true => Some(server_tls(s, &spec.name, port)?),
                false => None,
            };
            let handle = driver::spawn(generation.clone(), spec.role.clone(), opts);
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let listener =
                server::listen(any, handle.clone(), Limits::default(), server_tls).await?;
            servers.push(GatewayServer {
                gateway,
                name: spec.name.clone(),
                port,
                handle,
                listener,
            });
        }
    }
    Ok(servers)
}

/// The listener of gateway `name`'s server `port`, among `servers`.
pub fn find<'a>(servers: &'a [GatewayServer], name: &str, port: u16) -> Option<&'a GatewayServer> {
    servers.iter().find(|g| g.name == name && g.port == port)
}
