//! meshtwin's own codes, for hazards a model of the traffic shows and `istioctl analyze`
//! does not (documented in the README, "Diagnostic codes"):
//!
//! - `MT0001` (Warning): a route's `perTryTimeout` ≥ its `timeout` — Envoy then ignores the
//!   per-try timeout, so one try may use the whole route timeout and no retry fits in it.
//! - `MT0002` (Info): retries multiply across hops — the worst-case number of attempts one
//!   request can cause at a service deep in the call graph (each hop's tries: the caller
//!   application's `1 + retries` times the mesh route's `1 + attempts`, Istio's default 2
//!   when a route sets none), when at least two hops retry and the product reaches 10.
//! - `MT0003` (Warning): a caller's timeout shorter than the callee's retries can use — the
//!   application abandons a try after `timeout`, while the route's tries (`1 + attempts` ×
//!   `perTryTimeout`, bounded by the route `timeout`) may run longer: retries after it are
//!   wasted work.
//! - `MT0004` (Warning): during a timeline, a config generation names a subset no
//!   DestinationRule defines yet (503 `NC` for that time range).

use super::{Diagnostic, Level, Object, Report};
use proxy_engine::config::{HttpRoute, VirtualService};
use proxy_engine::Nanos;
use sim_core::Scenario;
use std::collections::BTreeMap;

/// Istio's default retries of a route without `retries`.
const DEFAULT_ATTEMPTS: u32 = 2;
/// The worst-case amplification MT0002 reports from.
const AMPLIFICATION: u64 = 10;

pub(super) fn check(report: &mut Report<'_>) {
    per_try_timeouts(report);
    let Some(s) = report.input.scenario else {
        return;
    };
    amplification(report, s);
    caller_timeouts(report, s);
    for w in sim_core::timeline::warnings(s) {
        push(
            report,
            "MT0004",
            Level::Warning,
            "Scenario timeline".into(),
            w,
        );
    }
}

fn push(
    report: &mut Report<'_>,
    code: &'static str,
    level: Level,
    origin: String,
    message: String,
) {
    let reference = report.input.file.unwrap_or_default().to_owned();
    report.out.push(Diagnostic {
        code,
        level,
        origin,
        reference,
        message,
    });
}

fn route_name(vs: &VirtualService, route: &HttpRoute, r: usize) -> String {
    let prefix = vs
        .name
        .as_deref()
        .or(vs.hosts.first().map(String::as_str))
        .unwrap_or("?");
    match &route.name {
        Some(n) => format!("{prefix}/{n}"),
        None => format!("{prefix}/{r}"),
    }
}

/// MT0001.
fn per_try_timeouts(report: &mut Report<'_>) {
    let mesh = report.input.mesh;
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        for (r, route) in vs.http.iter().enumerate() {
            let (Some(timeout), Some(per_try)) = (
                route.timeout.filter(|t| t.0 > 0),
                route.retries.as_ref().and_then(|x| x.per_try_timeout),
            ) else {
                continue;
            };
            if per_try.0 >= timeout.0 {
                let message = format!(
                    "route {}: perTryTimeout {per_try} is not below the route timeout {timeout}: \
                     Envoy ignores it, so one try may use the whole timeout and no retry fits",
                    route_name(vs, route, r)
                );
                report.add("MT0001", Level::Warning, Object::VirtualService(v), message);
            }
        }
    }
}

/// The mesh-bound routes of `host` (its virtual service's, with their index).
fn routes_of<'m>(report: &Report<'m>, host: &str) -> Vec<(usize, usize, &'m HttpRoute)> {
    let mesh = report.input.mesh;
    let mut out = Vec::new();
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        let bound = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
        if bound && vs.hosts.iter().any(|h| h == host) {
            out.extend(vs.http.iter().enumerate().map(|(r, route)| (v, r, route)));
        }
    }
    out
}

/// Tries the mesh makes for one request to `host`, at worst.
fn mesh_tries(report: &Report<'_>, host: &str) -> u64 {
    let routes = routes_of(report, host);
    let tries = |route: &HttpRoute| {
        1 + u64::from(
            route
                .retries
                .as_ref()
                .map_or(DEFAULT_ATTEMPTS, |r| r.attempts),
        )
    };
    routes
        .iter()
        .map(|(_, _, r)| tries(r))
        .max()
        .unwrap_or(1 + u64::from(DEFAULT_ATTEMPTS))
}

/// MT0002: the worst product of tries along the call graph, from each workload.
fn amplification(report: &mut Report<'_>, s: &Scenario) {
    // Worst attempts reaching each service, and the path that gives them.
    let mut worst: BTreeMap<String, (u64, usize, Vec<String>)> = BTreeMap::new();
    let mut stack: Vec<(String, u64, usize, Vec<String>)> = Vec::new();
    for w in &s.workload {
        if w.via().is_some() || !s.services.contains_key(w.host()) {
            continue;
        }
        let t = mesh_tries(report, w.host());
        stack.push((
            w.host().to_owned(),
            t,
            usize::from(t > 1),
            vec![format!("{} ×{t}", w.host())],
        ));
    }
    // Requests entering through a gateway: from every service a gateway route sends to.
    if s.workload.iter().any(|w| w.via().is_some()) {
        for vs in &report.input.mesh.virtual_services {
            if vs.gateways.is_empty() || vs.gateways.iter().all(|g| g == "mesh") {
                continue;
            }
            for route in &vs.http {
                for d in &route.route {
                    if s.services.contains_key(&d.destination.host) {
                        let t = 1 + u64::from(
                            route
                                .retries
                                .as_ref()
                                .map_or(DEFAULT_ATTEMPTS, |r| r.attempts),
                        );
                        let host = d.destination.host.clone();
                        stack.push((
                            host.clone(),
                            t,
                            usize::from(t > 1),
                            vec![format!("{host} ×{t}")],
                        ));
                    }
                }
            }
        }
    }
    let mut steps = 0usize;
    while let Some((host, product, retrying, path)) = stack.pop() {
        steps += 1;
        if steps > 100_000 {
            break;
        }
        if worst.get(&host).is_some_and(|(p, _, _)| product <= *p) {
            continue;
        }
        worst.insert(host.clone(), (product, retrying, path.clone()));
        let Some(svc) = s.services.get(&host) else {
            continue;
        };
        for step in svc.all_steps() {
            for call in step.calls() {
                let app = 1 + u64::from(call.retries);
                let mesh = mesh_tries(report, &call.host);
                let tries = app * mesh;
                let mut next = path.clone();
                next.push(if app > 1 {
                    format!("{} ×{app}×{mesh}", call.host)
                } else {
                    format!("{} ×{mesh}", call.host)
                });
                stack.push((
                    call.host.clone(),
                    product.saturating_mul(tries),
                    retrying + usize::from(tries > 1),
                    next,
                ));
            }
        }
    }
    for (host, (product, retrying, path)) in worst {
        if product >= AMPLIFICATION && retrying >= 2 {
            let message = format!(
                "retries multiply across hops: one request can become up to {product} attempts \
                 at {host} ({}); retry at one layer, or bound the others",
                path.join(" → ")
            );
            push(
                report,
                "MT0002",
                Level::Info,
                format!("Service {host}"),
                message,
            );
        }
    }
}

/// MT0003: a call's timeout against what the callee's route may spend on its tries.
fn caller_timeouts(report: &mut Report<'_>, s: &Scenario) {
    for (caller, svc) in &s.services {
        for step in svc.all_steps() {
            for call in step.calls() {
                let Some(timeout) = call.timeout else {
                    continue;
                };
                for (v, r, route) in routes_of(report, &call.host) {
                    let Some(retries) = route.retries.as_ref().filter(|x| x.attempts > 0) else {
                        continue;
                    };
                    let Some(per_try) = retries.per_try_timeout else {
                        continue;
                    };
                    let tries = u64::from(retries.attempts) + 1;
                    let mut spend = Nanos(per_try.0.saturating_mul(tries));
                    if let Some(t) = route.timeout.filter(|t| t.0 > 0) {
                        spend = Nanos(spend.0.min(t.0));
                    }
                    if timeout.0 < spend.0 {
                        let vs = &report.input.mesh.virtual_services[v];
                        let message = format!(
                            "{caller} gives its calls to {} {timeout}, but route {} may spend up \
                             to {spend} on {tries} tries of {per_try}: tries after {timeout} are \
                             wasted (the caller has given up)",
                            call.host,
                            route_name(vs, route, r)
                        );
                        report.add("MT0003", Level::Warning, Object::VirtualService(v), message);
                    }
                }
            }
        }
    }
}
