//! `Gateway` objects compiled (servers checked, merged into one listener per port) and virtual
//! services bound to them: Istio's `gateways` names (`mesh`, `name`, `ns/name`, the legacy
//! FQDN form), the default `[mesh]`, per-match `gateways` and `port`, and the server hosts'
//! `namespace/` restriction. See `crate::gateway` for the rules at run time.

use super::Builder;
use crate::config::{Gateway, Server, VirtualService};
use crate::gateway::{CompiledGateway, Domain, GatewayListener, ListenerProtocol, VirtualHost};
use crate::mesh::{
    CompiledRoute, ConfigError, ConfigWarning, HostTable, Redirect, RouteAction, RouteId,
};

/// A proxy a route can apply at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Bound {
    /// Every sidecar.
    Mesh,
    /// The gateway `namespace/name`.
    Gateway(String),
}

/// A config object's namespace (`default` when unset).
fn namespace(ns: &Option<String>) -> &str {
    ns.as_deref().unwrap_or("default")
}

/// What a `gateways` entry written in namespace `ns` names (Istio's `resolveGatewayName`).
fn resolve(name: &str, ns: &str) -> Bound {
    if name == "mesh" {
        return Bound::Mesh;
    }
    if let Some((ns2, n)) = name.split_once('/') {
        let ns2 = if ns2 == "." { ns } else { ns2 };
        return Bound::Gateway(format!("{ns2}/{n}"));
    }
    // The legacy `name.namespace.svc.cluster.local` form.
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() >= 2 {
        return Bound::Gateway(format!("{}/{}", parts[1], parts[0]));
    }
    Bound::Gateway(format!("{ns}/{name}"))
}

/// What a virtual service binds to at its top level (`[mesh]` when unset).
fn bindings(vs: &VirtualService) -> Vec<Bound> {
    if vs.gateways.is_empty() {
        return vec![Bound::Mesh];
    }
    let ns = namespace(&vs.namespace);
    vs.gateways.iter().map(|g| resolve(g, ns)).collect()
}

/// Whether sidecars apply `vs`.
pub(super) fn binds_mesh(vs: &VirtualService) -> bool {
    bindings(vs).contains(&Bound::Mesh)
}

/// Whether the match block `block` of route `route` (one of `routes`, the virtual service's
/// compiled routes in order) applies at `at` on `port`: per-match `gateways` override the
/// virtual service's, and a block's `port` must be the listener's (any port at a sidecar).
pub(super) fn block_applies(
    vs: &VirtualService,
    routes: &[RouteId],
    route: RouteId,
    block: Option<u32>,
    at: &Bound,
    port: Option<u16>,
) -> bool {
    let Some(j) = block else { return true };
    let Some(r) = routes.iter().position(|&id| id == route) else {
        return false;
    };
    let Some(m) = vs.http.get(r).and_then(|h| h.matches.get(j as usize)) else {
        return false;
    };
    let ns = namespace(&vs.namespace);
    let gateways_ok = m.gateways.is_empty() || m.gateways.iter().any(|g| &resolve(g, ns) == at);
    let port_ok = match (m.port, port) {
        (Some(want), Some(p)) => want == p,
        _ => true,
    };
    gateways_ok && port_ok
}

/// A server host's namespace restriction (`None`: any namespace) and its domain.
fn server_host(host: &str, gateway_ns: &str) -> (Option<String>, Domain) {
    match host.split_once('/') {
        Some(("*", h)) => (None, Domain::parse(h)),
        Some((".", h)) => (Some(gateway_ns.to_owned()), Domain::parse(h)),
        Some((ns, h)) => (Some(ns.to_owned()), Domain::parse(h)),
        None => (None, Domain::parse(host)),
    }
}

/// The virtual host domain a server with `hosts` gives the host `vs_host` of a virtual
/// service in namespace `vs_ns`: the narrower of the first overlapping server host the
/// namespace may bind and the virtual service's host; `None` if the server does not serve it.
fn serving(hosts: &[(Option<String>, Domain)], vs_ns: &str, vs_host: &str) -> Option<Domain> {
    let vd = Domain::parse(vs_host);
    (hosts.iter())
        .filter(|(ns, _)| ns.as_deref().is_none_or(|n| n == vs_ns))
        .find(|(_, d)| d.overlaps(&vd))
        .map(|(_, d)| d.narrower(&vd))
}

/// The listener protocol of a server, checked as Istio's `validateServer` does.
fn server_protocol(at: &str, s: &Server) -> Result<ListenerProtocol, ConfigError> {
    let invalid = |field: String, message: String| ConfigError::Invalid { field, message };
    if s.hosts.is_empty() {
        return Err(invalid(
            format!("{at}.hosts"),
            "a server needs at least one host".into(),
        ));
    }
    if s.port.number == 0 {
        return Err(invalid(
            format!("{at}.port.number"),
            "a port 1..=65535 is expected, found 0".into(),
        ));
    }
    let mode = s.tls.as_ref().and_then(|t| t.mode.as_deref());
    match s.port.protocol.to_ascii_uppercase().as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => {
            if let Some(t) = &s.tls {
                let passthrough = matches!(mode, None | Some("PASSTHROUGH"));
                let certs = t.server_certificate.is_some()
                    || t.private_key.is_some()
                    || t.credential_name.is_some();
                if !passthrough || certs {
                    return Err(invalid(
                        format!("{at}.tls"),
                        "a plain-text server may carry `tls` only for `https_redirect` (no mode, \
                         no certificates)"
                            .into(),
                    ));
                }
            }
            Ok(ListenerProtocol::Http)
        }
        "HTTPS" => match mode {
            Some("SIMPLE") | Some("ISTIO_MUTUAL") => Ok(ListenerProtocol::Https),
            None if s.tls.is_none() => Err(invalid(
                format!("{at}.tls"),
                "an HTTPS server requires a `tls` block".into(),
            )),
            other => Err(invalid(
                format!("{at}.tls.mode"),
                format!(
                    "meshtwin terminates HTTPS with mode SIMPLE (or ISTIO_MUTUAL); found {}",
                    other.unwrap_or("PASSTHROUGH (the default)")
                ),
            )),
        },
        other => Err(invalid(
            format!("{at}.port.protocol"),
            format!(
                "meshtwin models HTTP gateway servers (HTTP, HTTPS, HTTP2, GRPC); found `{other}`"
            ),
        )),
    }
}

impl Builder<'_> {
    /// Compiles every `Gateway` and binds the virtual services to it; warns about virtual
    /// services naming gateways that do not exist.
    pub(super) fn add_gateways(&mut self) -> Result<(), ConfigError> {
        let config = self.config;
        let mut names = std::collections::BTreeSet::new();
        for (i, g) in config.gateways.iter().enumerate() {
            let name = format!("{}/{}", namespace(&g.namespace), g.name);
            if !names.insert(name.clone()) {
                return Err(ConfigError::Invalid {
                    field: format!("gateways[{i}].name"),
                    message: format!("gateway `{name}` is defined twice"),
                });
            }
            let compiled = self.gateway(i, g, name)?;
            self.mesh.gateways.push(compiled);
        }
        for (v, vs) in config.virtual_services.iter().enumerate() {
            let ns = namespace(&vs.namespace);
            let top = vs
                .gateways
                .iter()
                .map(|g| (format!("virtual_services[{v}].gateways"), g));
            let per_match = vs.http.iter().enumerate().flat_map(|(r, h)| {
                h.matches.iter().enumerate().flat_map(move |(m, b)| {
                    (b.gateways.iter()).map(move |g| {
                        (
                            format!("virtual_services[{v}].http[{r}].match[{m}].gateways"),
                            g,
                        )
                    })
                })
            });
            for (field, g) in top.chain(per_match) {
                if let Bound::Gateway(name) = resolve(g, ns) {
                    if !names.contains(&name) {
                        let warning = ConfigWarning::UnknownGateway {
                            field,
                            gateway: name,
                        };
                        if !self.mesh.warnings.contains(&warning) {
                            self.mesh.warnings.push(warning);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn gateway(
        &mut self,
        i: usize,
        g: &Gateway,
        name: String,
    ) -> Result<CompiledGateway, ConfigError> {
        let config = self.config;
        let gw_ns = namespace(&g.namespace);
        let at_gw = Bound::Gateway(name.clone());
        let mut listeners: Vec<GatewayListener> = Vec::new();
        let mut server_names = std::collections::BTreeSet::new();
        for (j, s) in g.servers.iter().enumerate() {
            let at = format!("gateways[{i}].servers[{j}]");
            if let Some(n) = &s.name {
                if !server_names.insert(n.as_str()) {
                    return Err(ConfigError::Invalid {
                        field: format!("{at}.name"),
                        message: format!("server name `{n}` is used twice"),
                    });
                }
            }
            let protocol = server_protocol(&at, s)?;
            let port = s.port.number;
            let li = match listeners.iter().position(|l| l.port == port) {
                Some(li) => {
                    if listeners[li].protocol != protocol {
                        return Err(ConfigError::Invalid {
                            field: format!("{at}.port"),
                            message: format!(
                                "port {port} is already a {:?} listener of this gateway",
                                listeners[li].protocol
                            ),
                        });
                    }
                    li
                }
                None => {
                    let miss = format!("{name}:{port}/(no route)");
                    let miss = self.push_route(CompiledRoute::unmatched(miss));
                    let redirect = format!("{name}:{port}/(https redirect)");
                    let redirect = self.push_route(CompiledRoute::plain(
                        redirect,
                        RouteAction::Redirect(Redirect {
                            status: 301,
                            uri: None,
                            authority: None,
                            port: None,
                            scheme: Some("https".into()),
                        }),
                        None,
                    ));
                    listeners.push(GatewayListener {
                        port,
                        protocol,
                        vhosts: Vec::new(),
                        miss,
                        redirect,
                    });
                    listeners.len() - 1
                }
            };
            let hosts: Vec<(Option<String>, Domain)> =
                s.hosts.iter().map(|h| server_host(h, gw_ns)).collect();
            let require_tls = protocol == ListenerProtocol::Http
                && s.tls.as_ref().is_some_and(|t| t.https_redirect);
            for (v, vs) in config.virtual_services.iter().enumerate() {
                if !bindings(vs).contains(&at_gw) {
                    continue;
                }
                let vs_ns = namespace(&vs.namespace);
                let routes = self.vs_routes.get(v).cloned().unwrap_or_default();
                let miss = self.vs_miss.get(v).copied().flatten();
                for vs_host in &vs.hosts {
                    let Some(domain) = serving(&hosts, vs_ns, vs_host) else {
                        continue;
                    };
                    let mut table =
                        HostTable::filtered(&routes, &self.mesh.routes, |route, block| {
                            block_applies(vs, &routes, route, block, &at_gw, Some(port))
                        });
                    table.miss = miss;
                    let l = &mut listeners[li];
                    match l.vhosts.iter_mut().find(|h| h.domain == domain) {
                        Some(h) => {
                            h.require_tls |= require_tls;
                            if !table.routes.iter().all(|r| h.table.routes.contains(r)) {
                                h.table.extend(table);
                            }
                        }
                        None => l.vhosts.push(VirtualHost {
                            domain,
                            require_tls,
                            table,
                        }),
                    }
                }
            }
        }
        // A virtual service host no server of a gateway it binds to serves (IST0132).
        for (v, vs) in config.virtual_services.iter().enumerate() {
            if !bindings(vs).contains(&at_gw) {
                continue;
            }
            let vs_ns = namespace(&vs.namespace);
            for (h, vs_host) in vs.hosts.iter().enumerate() {
                let served = (g.servers.iter())
                    .map(|s| {
                        s.hosts
                            .iter()
                            .map(|h| server_host(h, gw_ns))
                            .collect::<Vec<_>>()
                    })
                    .any(|hosts| serving(&hosts, vs_ns, vs_host).is_some());
                if !served {
                    self.mesh.warnings.push(ConfigWarning::HostNotInGateway {
                        field: format!("virtual_services[{v}].hosts[{h}]"),
                        host: vs_host.clone(),
                        gateway: name.clone(),
                    });
                }
            }
        }
        Ok(CompiledGateway {
            name,
            selector: g.selector.clone(),
            listeners,
        })
    }
}
