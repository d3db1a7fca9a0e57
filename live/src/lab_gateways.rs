//! The scenario's gateway proxies in `run --live`: one engine driver and loopback listener
//! per server port the run uses — the ports workloads enter by (`via`) and the port of a
//! gateway's own service (an egress gateway that sidecars send to). Each such driver is the
//! gateway proxy with the gateway's role, name and RNG seed, listening as that `Gateway`
//! server (`DriverOptions::listener`), so it routes as the simulator's gateway proxy does.

use crate::config::Limits;
use crate::driver::{self, DriverOptions, Generation, ProxyHandle};
use crate::lab::LabError;
use crate::server::{self, Listener};
use sim_core::scenario::{Scenario, Workload};
use sim_core::topology::{Owner, ProxySpec, Topology};
use std::collections::{BTreeMap, BTreeSet};
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

/// The server ports each gateway proxy (by name) runs: those workloads enter by, and its
/// service's. A workload entering over TLS is refused: the load generator speaks plain HTTP.
pub fn ports(s: &Scenario) -> Result<BTreeMap<&str, BTreeSet<u16>>, LabError> {
    let mut ports: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for (i, w) in s.workload.iter().enumerate() {
        let Workload::OpenLoop(o) = w else { continue };
        let Some(via) = &o.via else { continue };
        if via.tls {
            return Err(LabError::Unsupported(format!(
                "workload[{i}].via.tls: the live load generator speaks plain HTTP only, so it \
                 cannot enter an HTTPS gateway server (run it in the simulator, or point a \
                 TLS client at `meshtwin proxy`)"
            )));
        }
        ports
            .entry(via.gateway.as_str())
            .or_default()
            .insert(via.port);
    }
    for (name, g) in &s.gateway_proxies {
        if let Some(service) = &g.service {
            ports.entry(name.as_str()).or_default().insert(service.port);
        }
    }
    Ok(ports)
}

/// Starts every gateway server port `s` uses over `generation`, with the same options as the
/// lab's other proxies (`options`).
pub async fn start(
    s: &Scenario,
    topology: &Topology<'_>,
    generation: &Generation,
    options: impl Fn(&ProxySpec) -> DriverOptions,
) -> Result<Vec<GatewayServer>, LabError> {
    let ports = ports(s)?;
    let mut servers = Vec::new();
    for spec in &topology.proxies {
        let Owner::Gateway { gateway } = spec.owner else {
            continue;
        };
        for &port in ports.get(spec.name.as_str()).into_iter().flatten() {
            let opts = DriverOptions {
                listener: Some(proxy_engine::gateway::Listener { port, tls: false }),
                ..options(spec)
            };
            let handle = driver::spawn(generation.clone(), spec.role.clone(), opts);
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            let listener = server::listen(any, handle.clone(), Limits::default(), None).await?;
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
