//! The reference and conflict checks: IST0101 (gateway, host, subset, selector), IST0104,
//! IST0109, IST0128/IST0129, IST0132, IST0145 and IST0173, after the analyzers of Istio's
//! `pkg/config/analysis/analyzers` (`virtualservice/*`, `gateway/*`, `destinationrule/*`).

use super::{Level, Object, Report};
use crate::import::expand;
use proxy_engine::config::{Destination, Gateway, VirtualService};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn check(report: &mut Report<'_>) {
    let hosts = Hosts::of(report);
    gateway_refs(report);
    destinations(report, &hosts);
    mesh_conflicts(report, &hosts);
    tls(report);
    hosts_in_gateways(report);
    conflicting_gateways(report);
    workloads(report, &hosts);
}

/// The hosts the model knows and how a written host resolves.
struct Hosts {
    /// Short names of the scenario's services (and gateway services).
    services: BTreeSet<String>,
    /// Fully qualified names of the Kubernetes Services in the YAML.
    kubernetes: BTreeSet<String>,
    /// ServiceEntry hosts (may start with `*.`).
    entries: Vec<String>,
    /// Whether any service model was given (else host checks go by ServiceEntries and
    /// Kubernetes Services alone, as `istioctl analyze --use-kube=false`).
    model: bool,
}

impl Hosts {
    fn of(report: &Report<'_>) -> Hosts {
        let input = report.input;
        let mut services = BTreeSet::new();
        if let Some(s) = input.scenario {
            services.extend(s.services.keys().cloned());
            services.extend(
                s.gateway_proxies
                    .values()
                    .filter_map(|g| g.service.as_ref().map(|svc| svc.name.clone())),
            );
        }
        let kubernetes = input
            .kubernetes_services
            .iter()
            .map(|(ns, name)| format!("{name}.{ns}.svc.cluster.local"))
            .collect();
        let entries = input
            .mesh
            .service_entries
            .iter()
            .flat_map(|se| se.hosts.iter().map(|h| h.to_ascii_lowercase()))
            .collect();
        Hosts {
            services,
            kubernetes,
            entries,
            model: input.scenario.is_some(),
        }
    }

    /// A written host as one key: a modeled service's short name, else the host expanded with
    /// the object's namespace, lower-case.
    fn canon(&self, host: &str, ns: &str) -> String {
        let is = |h: &str| self.services.contains(h);
        if let Some(short) = proxy_engine::hosts::service_name(host, &is) {
            return short.to_owned();
        }
        if !host.contains('.') && self.model {
            return host.to_owned();
        }
        expand(host, ns).to_ascii_lowercase()
    }

    /// Whether a canonical host names something the model knows.
    fn known(&self, canon: &str) -> bool {
        self.services.contains(canon)
            || self.kubernetes.contains(canon)
            || self.entries.iter().any(|e| host_matches(e, canon))
    }
}

/// Istio's `host.Name.Matches`: equal names, or a wildcard (`*.example.com`, `*`) covering
/// the other; symmetric.
pub(crate) fn host_matches(a: &str, b: &str) -> bool {
    let (aw, bw) = (a.starts_with('*'), b.starts_with('*'));
    match (aw, bw) {
        (false, false) => a.eq_ignore_ascii_case(b),
        (true, false) => ends_with(b, &a[1..]),
        (false, true) => ends_with(a, &b[1..]),
        (true, true) => {
            if a.len() < b.len() {
                ends_with(&b[1..], &a[1..])
            } else {
                ends_with(&a[1..], &b[1..])
            }
        }
    }
}

fn ends_with(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.is_char_boundary(s.len() - suffix.len())
        && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// `ns/name` of a `gateways` entry written in namespace `ns` (Istio's `resolveGatewayName`);
/// `None` for `mesh`.
fn gateway_key(name: &str, ns: &str) -> Option<String> {
    if name == "mesh" {
        return None;
    }
    if let Some(rest) = name.strip_prefix("./") {
        return Some(format!("{ns}/{rest}"));
    }
    if name.contains('/') {
        return Some(name.to_owned());
    }
    if let Some(stem) = name.strip_suffix(".svc.cluster.local") {
        if let Some((gw, gns)) = stem.split_once('.') {
            return Some(format!("{gns}/{gw}"));
        }
    }
    Some(format!("{ns}/{name}"))
}

fn gateway_index(report: &Report<'_>) -> BTreeMap<String, usize> {
    let input = report.input;
    (input.mesh.gateways.iter().enumerate())
        .map(|(i, g)| {
            (
                format!("{}/{}", input.namespace(Object::Gateway(i)), g.name),
                i,
            )
        })
        .collect()
}

/// Every `gateways` entry of a virtual service (top level and per match).
fn gateway_names(vs: &VirtualService) -> Vec<&str> {
    let mut names: Vec<&str> = vs.gateways.iter().map(String::as_str).collect();
    for route in &vs.http {
        for m in &route.matches {
            names.extend(m.gateways.iter().map(String::as_str));
        }
    }
    names
}

/// IST0101 `gateway`.
fn gateway_refs(report: &mut Report<'_>) {
    let known = gateway_index(report);
    let mesh = report.input.mesh;
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        let ns = report.input.namespace(Object::VirtualService(v));
        let mut reported = BTreeSet::new();
        for name in gateway_names(vs) {
            let Some(key) = gateway_key(name, &ns) else {
                continue;
            };
            if !known.contains_key(&key) && reported.insert(name) {
                let message = format!("Referenced gateway not found: {name:?}");
                report.add("IST0101", Level::Error, Object::VirtualService(v), message);
            }
        }
    }
}

/// IST0101 `host`, `mirror host`, `host+subset in destinationrule`,
/// `mirror+subset in destinationrule`.
fn destinations(report: &mut Report<'_>, hosts: &Hosts) {
    let mesh = report.input.mesh;
    let mut subsets: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (d, dr) in mesh.destination_rules.iter().enumerate() {
        let ns = report.input.namespace(Object::DestinationRule(d));
        let entry = subsets.entry(hosts.canon(&dr.host, &ns)).or_default();
        entry.extend(dr.subsets.iter().map(|s| s.name.as_str()));
    }
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        let ns = report.input.namespace(Object::VirtualService(v));
        let mut checks: Vec<(&Destination, bool)> = Vec::new();
        for route in &vs.http {
            checks.extend(route.route.iter().map(|d| (&d.destination, false)));
            checks.extend(route.mirror.iter().map(|d| (d, true)));
            checks.extend(route.mirrors.iter().map(|m| (&m.destination, true)));
        }
        // An imported short name was expanded with the namespace: name it as written.
        let suffix = format!(".{ns}.svc.cluster.local");
        let imported = report.input.origins.is_some();
        for (dest, mirror) in checks {
            let canon = hosts.canon(&dest.host, &ns);
            let written = match dest.host.strip_suffix(&suffix) {
                Some(short) if imported => short,
                _ => dest.host.as_str(),
            };
            if !hosts.known(&canon) {
                let what = if mirror { "mirror host" } else { "host" };
                let message = format!("Referenced {what} not found: {written:?}");
                report.add("IST0101", Level::Error, Object::VirtualService(v), message);
                continue;
            }
            if let Some(subset) = &dest.subset {
                if !subsets
                    .get(&canon)
                    .is_some_and(|s| s.contains(subset.as_str()))
                {
                    let what = if mirror {
                        "mirror+subset"
                    } else {
                        "host+subset"
                    };
                    let message = format!(
                        "Referenced {what} in destinationrule not found: \"{written}+{subset}\""
                    );
                    report.add("IST0101", Level::Error, Object::VirtualService(v), message);
                }
            }
        }
    }
}

/// IST0109: two virtual services bound to `mesh` claim one host.
fn mesh_conflicts(report: &mut Report<'_>, hosts: &Hosts) {
    let mesh = report.input.mesh;
    let mut by_host: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        if !(vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh")) {
            continue;
        }
        let ns = report.input.namespace(Object::VirtualService(v));
        for host in &vs.hosts {
            let list = by_host.entry(hosts.canon(host, &ns)).or_default();
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
    for (host, list) in by_host {
        if list.len() < 2 {
            continue;
        }
        let names: Vec<String> = (list.iter())
            .map(|&v| {
                let (origin, _) = report.input.origin(Object::VirtualService(v));
                origin.trim_start_matches("VirtualService ").to_owned()
            })
            .collect();
        for &v in &list {
            let message = format!(
                "The VirtualServices {} associated with mesh gateway define the same host {host} \
                 which can lead to undefined behavior. This can be fixed by merging the \
                 conflicting VirtualServices into a single resource.",
                names.join(",")
            );
            report.add("IST0109", Level::Error, Object::VirtualService(v), message);
        }
    }
}

/// IST0128 / IST0129: TLS origination that does not verify the server.
fn tls(report: &mut Report<'_>) {
    let input = report.input;
    for (d, dr) in input.mesh.destination_rules.iter().enumerate() {
        let Some(tls) = dr.traffic_policy.as_ref().and_then(|p| p.tls.as_ref()) else {
            continue;
        };
        let mode = tls.mode.as_deref().unwrap_or("DISABLE");
        if !matches!(mode, "SIMPLE" | "MUTUAL") || tls.ca_certificates.is_some() {
            continue;
        }
        let origin = input.origins.and_then(|o| o.destination_rules.get(d));
        let name = origin.map_or(dr.host.as_str(), |o| o.name.as_str());
        let ns = input.namespace(Object::DestinationRule(d));
        let (code, message) = match origin.and_then(|o| o.port_level_tls) {
            Some(port) => (
                "IST0129",
                format!(
                    "DestinationRule {name} in namespace {ns} has TLS mode set to {mode} but no \
                     caCertificates are set to validate server identity for host: {} at port {port}",
                    dr.host
                ),
            ),
            None => (
                "IST0128",
                format!(
                    "DestinationRule {name} in namespace {ns} has TLS mode set to {mode} but no \
                     caCertificates are set to validate server identity for host: {}",
                    dr.host
                ),
            ),
        };
        report.add(code, Level::Warning, Object::DestinationRule(d), message);
    }
}

/// A gateway server host as a (namespace restriction, DNS name) pair, sanitized as Istio's
/// `sanitizeServerHostNamespace` does.
fn server_host<'h>(host: &'h str, gw_ns: &str) -> (Option<String>, &'h str) {
    match host.split_once('/') {
        Some((".", name)) => (Some(gw_ns.to_owned()), name),
        Some(("*", name)) => (None, name),
        Some((ns, name)) => (Some(ns.to_owned()), name),
        None => (None, host),
    }
}

/// IST0132: a virtual service bound to a gateway none of whose servers serve its hosts.
fn hosts_in_gateways(report: &mut Report<'_>) {
    let known = gateway_index(report);
    let mesh = report.input.mesh;
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        let ns = report.input.namespace(Object::VirtualService(v));
        let mut done = BTreeSet::new();
        for name in &vs.gateways {
            let Some(&g) = gateway_key(name, &ns).and_then(|k| known.get(&k)) else {
                continue;
            };
            if !done.insert(g) {
                continue;
            }
            let gw: &Gateway = &mesh.gateways[g];
            let gw_ns = report.input.namespace(Object::Gateway(g));
            let found = vs.hosts.iter().any(|h| {
                gw.servers.iter().flat_map(|s| &s.hosts).any(|sh| {
                    let (only, name) = server_host(sh, &gw_ns);
                    only.is_none_or(|o| o == ns) && host_matches(name, h)
                })
            });
            if !found {
                let (vs_origin, _) = report.input.origin(Object::VirtualService(v));
                let message = format!(
                    "one or more host [{}] defined in VirtualService {} not found in Gateway {gw_ns}/{}.",
                    vs.hosts.join(" "),
                    vs_origin.trim_start_matches("VirtualService "),
                    gw.name
                );
                report.add(
                    "IST0132",
                    Level::Warning,
                    Object::VirtualService(v),
                    message,
                );
            }
        }
    }
}

/// `k=v,k2=v2`, as istioctl prints a selector.
fn selector(gw: &Gateway) -> String {
    let parts: Vec<String> = gw
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    parts.join(",")
}

/// IST0145: two gateways selecting the same workloads declare one host on one port.
fn conflicting_gateways(report: &mut Report<'_>) {
    let mesh = report.input.mesh;
    let n = mesh.gateways.len();
    for a in 0..n {
        for b in 0..n {
            if a == b || mesh.gateways[a].selector != mesh.gateways[b].selector {
                continue;
            }
            let (ga, gb) = (&mesh.gateways[a], &mesh.gateways[b]);
            let mut ports: BTreeMap<u16, BTreeSet<&str>> = BTreeMap::new();
            for sa in &ga.servers {
                for sb in gb
                    .servers
                    .iter()
                    .filter(|s| s.port.number == sa.port.number)
                {
                    for ha in &sa.hosts {
                        if sb.hosts.iter().any(|hb| host_matches(ha, hb)) {
                            ports.entry(sa.port.number).or_default().insert(ha);
                        }
                    }
                }
            }
            for (port, hosts) in ports {
                let other = format!("{}/{}", report.input.namespace(Object::Gateway(b)), gb.name);
                let hosts: Vec<&str> = hosts.into_iter().collect();
                let message = format!(
                    "Conflict with gateways {other} (workload selector {}, port {port}, hosts {}).",
                    selector(ga),
                    hosts.join(",")
                );
                report.add("IST0145", Level::Error, Object::Gateway(a), message);
            }
        }
    }
}

/// The checks that need the scenario's workloads: IST0101 `selector`, IST0104 and IST0173.
fn workloads(report: &mut Report<'_>, hosts: &Hosts) {
    let Some(s) = report.input.scenario else {
        return;
    };
    let mesh = report.input.mesh;
    let registry = sim_core::topology::Topology::of(s).registry();
    for (d, dr) in mesh.destination_rules.iter().enumerate() {
        let ns = report.input.namespace(Object::DestinationRule(d));
        let canon = hosts.canon(&dr.host, &ns);
        let Some(service) = registry.service(&canon) else {
            continue;
        };
        for subset in &dr.subsets {
            let selects = service.endpoints.iter().any(|e| {
                subset
                    .labels
                    .iter()
                    .all(|(k, v)| e.labels.get(k) == Some(v))
            });
            if !selects {
                let message = format!(
                    "The Subset {} defined in the DestinationRule does not select any pods. \
                     Which may lead to 503 UH (NoHealthyUpstream).",
                    subset.name
                );
                report.add("IST0173", Level::Error, Object::DestinationRule(d), message);
            }
        }
    }
    for (g, gw) in mesh.gateways.iter().enumerate() {
        let selected: Vec<&String> = (s.gateway_proxies.iter())
            .filter(|(_, p)| gw.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
            .map(|(name, _)| name)
            .collect();
        if selected.is_empty() {
            let message = format!("Referenced selector not found: {:?}", selector(gw));
            report.add("IST0101", Level::Error, Object::Gateway(g), message);
            continue;
        }
        let mut reached: BTreeSet<u16> = BTreeSet::new();
        for w in &s.workload {
            if let Some(via) = w.via() {
                if selected.contains(&&via.gateway) {
                    reached.insert(via.port);
                }
            }
        }
        for name in &selected {
            if let Some(svc) = s
                .gateway_proxies
                .get(*name)
                .and_then(|p| p.service.as_ref())
            {
                reached.insert(svc.port);
            }
        }
        let mut ports: Vec<u16> = gw.servers.iter().map(|sv| sv.port.number).collect();
        ports.dedup();
        for port in ports.into_iter().filter(|p| !reached.contains(p)) {
            let message = format!(
                "The gateway refers to a port that is not exposed on the workload (pod selector \
                 {}; port {port})",
                selector(gw)
            );
            report.add("IST0104", Level::Warning, Object::Gateway(g), message);
        }
    }
}
