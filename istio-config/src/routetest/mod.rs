//! Route unit tests (`meshtwin test`): test cases in the istio-config-validator format run
//! against the real engine's route matching, as Envoy's `router_check_tool` runs them against
//! a route table, with route coverage. Each request of a case is decided by
//! `Proxy::decide_at` (sidecar or gateway listener, the weighted pick's draw fixed by the
//! case's `randomValue`), and the matched rule is traced back to the VirtualService `http`
//! entry it was compiled from (`CompiledMesh::route_source`) so the expectations compare with
//! the rule as written.

mod parse;
mod report;

pub use parse::{parse, MAX_REQUESTS_PER_CASE};
pub use report::{Outcome, Report};

use proxy_engine::config::{
    Destination, HeaderOperations, HttpFaultInjection, HttpRedirect, HttpRewrite, RouteDestination,
};
use proxy_engine::head::HeadParts;
use proxy_engine::{CompiledMesh, ConfigError, Decision, MeshConfig, Proxy, ProxyRole, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One test case as written.
#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    /// `description`.
    pub description: String,
    /// The file it was read from.
    pub file: String,
    /// Where it starts.
    pub at: crate::yaml::Pos,
    /// `wantMatch`: every expectation must hold (`true`) or none may (`false`, also when
    /// unset, as the validator's Go zero value).
    pub want_match: bool,
    /// The requests unfolded from `request`.
    pub requests: Vec<Request>,
    /// `randomValue`: the weighted pick takes destination `randomValue % total weight` in
    /// order (Envoy's `random_value`); default 0.
    pub random_value: u64,
    /// What is checked.
    pub expect: Expect,
}

/// One request of a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `:authority`.
    pub authority: String,
    /// Method, upper-case.
    pub method: String,
    /// Path, query included.
    pub uri: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
}

/// The expectations of a case; each one given is checked against the matched rule.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expect {
    /// The rule's `route` (an empty list: no rule matches).
    pub route: Option<Vec<RouteDestination>>,
    /// The rule's `redirect`.
    pub redirect: Option<HttpRedirect>,
    /// The rule's `rewrite`.
    pub rewrite: Option<HttpRewrite>,
    /// The rule's `fault`.
    pub fault: Option<HttpFaultInjection>,
    /// The rule's `headers`.
    pub headers: Option<HeaderOperations>,
    /// The destination (host and subset) the weighted pick lands on.
    pub destination: Option<Destination>,
}

impl Expect {
    /// Nothing to check.
    pub fn is_empty(&self) -> bool {
        self.route.is_none()
            && self.redirect.is_none()
            && self.rewrite.is_none()
            && self.fault.is_none()
            && self.headers.is_none()
            && self.destination.is_none()
    }
}

/// A gateway the tests run at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayAt {
    /// `namespace/name`.
    pub name: String,
    /// The labels the proxy carries (the Gateway's selector, so it selects this proxy).
    pub labels: BTreeMap<String, String>,
    /// Its server ports and whether each terminates TLS, the default (first server's) first.
    pub ports: Vec<(u16, bool)>,
}

/// What the tests run against: a compiled mesh, and the config it was compiled from.
pub struct Target {
    /// The config, hosts as compiled.
    pub mesh: MeshConfig,
    /// The compiled mesh.
    pub compiled: Arc<CompiledMesh>,
    /// The modeled services (to resolve the hosts tests write).
    pub services: BTreeSet<String>,
    /// How each virtual service is named in output (`VirtualService default/reviews`) and
    /// where it was written (`file:line`, or empty), index for index.
    pub names: Vec<(String, String)>,
    /// Run at this gateway instead of as a sidecar.
    pub gateway: Option<GatewayAt>,
}

impl Target {
    /// Compiles `mesh` over `registry`; virtual services are named by `names` (missing
    /// entries by their own name).
    pub fn new(
        mesh: MeshConfig,
        registry: &Registry,
        mut names: Vec<(String, String)>,
    ) -> Result<Target, ConfigError> {
        let compiled = Arc::new(CompiledMesh::compile(&mesh, registry)?);
        let services = registry.services.iter().map(|s| s.name.clone()).collect();
        for (i, vs) in mesh.virtual_services.iter().enumerate().skip(names.len()) {
            let name = vs.name.clone().or_else(|| vs.hosts.first().cloned());
            let ns = vs.namespace.as_deref().unwrap_or("default");
            let name = name.unwrap_or_else(|| i.to_string());
            names.push((format!("VirtualService {ns}/{name}"), String::new()));
        }
        Ok(Target {
            mesh,
            compiled,
            services,
            names,
            gateway: None,
        })
    }

    /// Runs the tests at the Gateway `reference` (`namespace/name`, or `name` in `default`).
    pub fn at_gateway(&mut self, reference: &str) -> Result<(), String> {
        let (ns, name) = reference.split_once('/').unwrap_or(("default", reference));
        let Some(gw) = (self.mesh.gateways.iter())
            .find(|g| g.name == name && g.namespace.as_deref().unwrap_or("default") == ns)
        else {
            let known: Vec<String> = (self.mesh.gateways.iter())
                .map(|g| format!("{}/{}", g.namespace.as_deref().unwrap_or("default"), g.name))
                .collect();
            return Err(format!(
                "no Gateway {ns}/{name}; the config has: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ));
        };
        let mut ports: Vec<(u16, bool)> = Vec::new();
        for server in &gw.servers {
            let tls = server.port.protocol.eq_ignore_ascii_case("HTTPS");
            if !ports.iter().any(|(p, _)| *p == server.port.number) {
                ports.push((server.port.number, tls));
            }
        }
        self.gateway = Some(GatewayAt {
            name: format!("{ns}/{name}"),
            labels: gw.selector.clone(),
            ports,
        });
        Ok(())
    }

    /// The config rules in this context (sidecar, or the gateway's listeners), as
    /// `(virtual service, http index)`.
    pub fn rules(&self) -> BTreeSet<(usize, usize)> {
        let routes = match &self.gateway {
            None => self.compiled.sidecar_routes(),
            Some(g) => (self.compiled.gateways().iter())
                .filter(|c| c.selects(&g.labels))
                .flat_map(|c| &c.listeners)
                .flat_map(|l| &l.vhosts)
                .flat_map(|h| h.table.routes.iter().copied())
                .collect(),
        };
        routes
            .into_iter()
            .filter_map(|r| self.compiled.route_source(r))
            .collect()
    }

    /// A host as a test or rule in namespace `ns` writes it, resolved as the mesh resolves
    /// it: expanded with the namespace, then the short name when it names a modeled service.
    fn resolve(&self, host: &str, ns: &str) -> String {
        let full = crate::import::expand(host, ns);
        let known = |h: &str| self.services.contains(h);
        match proxy_engine::hosts::service_name(&full, &known) {
            Some(short) => short.to_owned(),
            None => full,
        }
    }

    /// `VirtualService ns/name http[r] (file:line)`.
    pub fn rule_name(&self, v: usize, r: usize) -> String {
        match self.names.get(v) {
            Some((name, at)) if !at.is_empty() => format!("{name} http[{r}] ({at})"),
            Some((name, _)) => format!("{name} http[{r}]"),
            None => format!("virtual_services[{v}].http[{r}]"),
        }
    }

    fn resolve_route(&self, route: &[RouteDestination], ns: &str) -> Vec<RouteDestination> {
        let mut out = route.to_vec();
        for d in &mut out {
            d.destination.host = self.resolve(&d.destination.host, ns);
        }
        out
    }
}

/// A registry for a config without a scenario: one service per host the config routes to
/// or has a rule for, minus the hosts service entries declare, without endpoints (a test
/// needs the route and cluster, not an instance). Hosts `name.namespace.svc.cluster.local`
/// become the service `name`, and the config's hosts are shortened to match.
pub fn registry_for(mesh: &mut MeshConfig) -> Registry {
    let external: BTreeSet<&str> = (mesh.service_entries.iter())
        .flat_map(|se| se.hosts.iter().map(String::as_str))
        .collect();
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for vs in &mesh.virtual_services {
        for rule in &vs.http {
            hosts.extend(rule.route.iter().map(|d| d.destination.host.clone()));
            hosts.extend(rule.mirror.iter().map(|m| m.host.clone()));
            hosts.extend(rule.mirrors.iter().map(|m| m.destination.host.clone()));
        }
    }
    hosts.extend(mesh.destination_rules.iter().map(|r| r.host.clone()));
    let mut names: BTreeSet<String> = BTreeSet::new();
    for host in &hosts {
        if external.contains(host.as_str()) || host.contains('*') {
            continue;
        }
        let short = host
            .strip_suffix(proxy_engine::hosts::CLUSTER_SUFFIX)
            .and_then(|stem| stem.split_once('.'))
            .map_or(host.as_str(), |(name, _)| name);
        names.insert(short.to_owned());
    }
    proxy_engine::hosts::shorten(mesh, &|h| names.contains(h));
    let mut registry = Registry::default();
    for name in names {
        registry.add_service(name, Vec::new());
    }
    registry
}

/// What one request got: the rule it matched and the destination it was sent to.
struct Got {
    /// `(virtual service, http index)` of the matched config rule.
    rule: Option<(usize, usize)>,
    /// The picked cluster's name (`service` or `service|subset`); `None` for no route, a
    /// local reply, or an undefined subset.
    cluster: Option<String>,
    /// How the engine decided, for messages.
    decision: &'static str,
}

/// Runs every case against `target`.
pub fn run(tests: &[TestCase], target: &Target) -> Report {
    let role = match &target.gateway {
        None => ProxyRole::Sidecar {
            service: "route-test".into(),
        },
        Some(g) => ProxyRole::Gateway {
            name: g.name.clone(),
            labels: g.labels.clone(),
        },
    };
    let mut proxy = Proxy::new(target.compiled.clone(), role, 0);
    let mut report = Report {
        outcomes: Vec::with_capacity(tests.len()),
        covered: BTreeSet::new(),
        rules: target.rules(),
    };
    for case in tests {
        let mut outcome = Outcome {
            requests: case.requests.len(),
            failures: Vec::new(),
        };
        for request in &case.requests {
            let got = decide(&mut proxy, target, request, case.random_value);
            if let Some(rule) = got.rule {
                report.covered.insert(rule);
            }
            if let Some(why) = check(target, case, &got) {
                outcome
                    .failures
                    .push(format!("{}: {why}", show_request(request)));
            }
        }
        report.outcomes.push(outcome);
    }
    report
}

fn decide(proxy: &mut Proxy, target: &Target, request: &Request, dice: u64) -> Got {
    let listener = target.gateway.as_ref().map(|g| {
        let explicit =
            (request.authority.rsplit_once(':')).and_then(|(_, p)| p.parse::<u16>().ok());
        let port = explicit.or(g.ports.first().map(|p| p.0)).unwrap_or(80);
        let tls = g.ports.iter().any(|&(p, tls)| p == port && tls);
        proxy_engine::gateway::Listener { port, tls }
    });
    let scheme = if listener.is_some_and(|l| l.tls) {
        "https"
    } else {
        "http"
    };
    let headers: Vec<(Arc<str>, Arc<str>)> = (request.headers.iter())
        .map(|(n, v)| (Arc::from(n.as_str()), Arc::from(v.as_str())))
        .collect();
    let head = proxy_engine::head::RequestHead::new(HeadParts {
        method: Arc::from(request.method.as_str()),
        authority: Arc::from(request.authority.as_str()),
        path: Arc::from(request.uri.as_str()),
        scheme: Arc::from(scheme),
        headers: Arc::from(headers),
        source: Arc::from("route-test"),
    });
    let decision = proxy.decide_at(&head, listener, Some(dice));
    let mesh = &target.compiled;
    let (route, cluster, what) = match decision {
        Decision::NoRoute => (None, None, "404 NR"),
        Decision::LocalReply { route } => (Some(route), None, "a local reply"),
        Decision::NoCluster { route } => (Some(route), None, "an undefined subset, 503 NC"),
        Decision::NoEndpoint { route, cluster } | Decision::Endpoint { route, cluster, .. } => (
            Some(route),
            Some(mesh.cluster(cluster).name.clone()),
            "the host's default route",
        ),
    };
    Got {
        rule: route.and_then(|r| mesh.route_source(r)),
        cluster,
        decision: what,
    }
}

/// Why the case fails for this request, if it does: with `wantMatch`, the first expectation
/// that does not hold; without, the first that does.
fn check(target: &Target, case: &TestCase, got: &Got) -> Option<String> {
    let rule = got.rule.and_then(|(v, r)| {
        let vs = target.mesh.virtual_services.get(v)?;
        Some((vs, vs.http.get(r)?))
    });
    let ns = rule.map_or("default", |(vs, _)| {
        vs.namespace.as_deref().unwrap_or("default")
    });
    let matched = match got.rule {
        Some((v, r)) => format!("matched {}", target.rule_name(v, r)),
        None => format!("no VirtualService rule matched ({})", got.decision),
    };
    let want = case.want_match;
    let e = &case.expect;
    let mut checks: Vec<(&str, String, String)> = Vec::new();
    if let Some(route) = &e.route {
        let have = rule.map_or(Vec::new(), |(_, h)| target.resolve_route(&h.route, ns));
        let route = target.resolve_route(route, ns);
        checks.push(("route", report::show(&have), report::show(&route)));
    }
    let field = |f: fn(&proxy_engine::config::HttpRoute) -> String| {
        rule.map_or("null".into(), |(_, h)| f(h))
    };
    if let Some(x) = &e.redirect {
        checks.push((
            "redirect",
            field(|h| report::show(&h.redirect)),
            report::show(&Some(x)),
        ));
    }
    if let Some(x) = &e.rewrite {
        checks.push((
            "rewrite",
            field(|h| report::show(&h.rewrite)),
            report::show(&Some(x)),
        ));
    }
    if let Some(x) = &e.fault {
        checks.push((
            "fault",
            field(|h| report::show(&h.fault)),
            report::show(&Some(x)),
        ));
    }
    if let Some(x) = &e.headers {
        checks.push((
            "headers",
            field(|h| report::show(&h.headers)),
            report::show(&Some(x)),
        ));
    }
    if let Some(d) = &e.destination {
        let host = target.resolve(&d.host, ns);
        let wanted = match &d.subset {
            Some(s) => format!("{host}|{s}"),
            None => host,
        };
        let have = got
            .cluster
            .clone()
            .unwrap_or_else(|| got.decision.to_owned());
        checks.push(("destination", have, wanted));
    }
    for (what, have, wanted) in checks {
        if (have == wanted) != want {
            return Some(match want {
                true => format!("{matched}; {what}: got {have}, want {wanted}"),
                false => {
                    format!("{matched}; {what}: got {have}, want anything else (wantMatch: false)")
                }
            });
        }
    }
    None
}

fn show_request(r: &Request) -> String {
    let mut s = format!("{} {}{}", r.method, r.authority, r.uri);
    if !r.headers.is_empty() {
        let h: Vec<String> = r.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        s.push_str(&format!(" [{}]", h.join(", ")));
    }
    s
}
