//! Unit tests of the proxy state machine.

use super::*;
use crate::config::{DestinationRule, LoadBalancerSettings, MeshConfig, SimpleLb, TrafficPolicy};
use crate::harness::{Accept, Harness, Reply};
use crate::registry::{Endpoint, Registry};
use std::collections::BTreeMap;

/// A client proxy for service `backend` with `endpoints` endpoints, round robin.
fn proxy(endpoints: u32) -> Proxy {
    let reg = crate::harness::registry(&[("backend", &[("v1", endpoints)])]);
    let config = MeshConfig {
        gateways: Vec::new(),
        service_entries: Vec::new(),
        outbound_traffic_policy: None,
        destination_rules: vec![DestinationRule {
            host: "backend".into(),
            traffic_policy: Some(TrafficPolicy {
                load_balancer: Some(LoadBalancerSettings {
                    simple: Some(SimpleLb::RoundRobin),
                    consistent_hash: None,
                }),
                ..Default::default()
            }),
            subsets: Vec::new(),
        }],
        ..Default::default()
    };
    let mesh = CompiledMesh::compile(&config, &reg).expect("compiles");
    let role = ProxyRole::Client {
        name: "test".into(),
    };
    Proxy::new(Arc::new(mesh), role, 7)
}

fn drain(p: &mut Proxy) -> Vec<Action> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

fn completed(actions: &[Action]) -> Vec<Outcome> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Complete { outcome, .. } => Some(*outcome),
            _ => None,
        })
        .collect()
}

/// Runs one request to completion against an upstream answering `status`; returns the
/// endpoint chosen, the outcome, and whether a new connection was opened.
fn round_trip(p: &mut Proxy, id: u64, status: u16) -> (EndpointId, Outcome, bool) {
    let now = Time(id);
    p.handle_request(now, RequestId(id), RequestHead::get("backend", "/"));
    let mut actions = drain(p);
    let mut opened = false;
    if let Some(Action::Connect { conn, .. }) = actions.first().cloned() {
        opened = true;
        p.handle_connected(now, conn);
        actions = drain(p);
    }
    let Some(Action::Send { attempt, .. }) = actions.first().cloned() else {
        panic!("expected a send, got {actions:?}");
    };
    p.handle_response_head(now, attempt, ResponseHead { status });
    p.handle_attempt_end(now, attempt, AttemptEnd::Done);
    let actions = drain(p);
    assert!(matches!(actions[0], Action::Forward { .. }));
    let outcomes = completed(&actions);
    assert_eq!(outcomes.len(), 1);
    let endpoint = outcomes[0].endpoint.expect("an endpoint was used");
    (endpoint, outcomes[0], opened)
}

#[test]
fn unknown_host_is_404_nr() {
    let mut h = Harness::with_proxy(proxy(1));
    let outcome = h.request(RequestHead::get("nosuch", "/"));
    assert_eq!(outcome.status, 404);
    assert_eq!(outcome.flags, ResponseFlags::NO_ROUTE_FOUND);
    assert_eq!(outcome.attempts, 0);
    assert_eq!(h.proxy.open_requests(), 0);
}

#[test]
fn no_endpoints_is_503_uh() {
    let mut h = Harness::with_proxy(proxy(0));
    let outcome = h.request(RequestHead::get("backend", "/"));
    assert_eq!(
        (outcome.status, outcome.flags.to_string().as_str()),
        (503, "UH")
    );
}

#[test]
fn round_robin_cycles_and_reuses_connections() {
    let mut h = Harness::with_proxy(proxy(3));
    let picks: Vec<(EndpointId, bool)> = (0..6)
        .map(|_| {
            let connects = h.connects.len();
            let outcome = h.request(RequestHead::get("backend", "/"));
            assert_eq!((outcome.status, outcome.attempts), (200, 1));
            assert!(outcome.flags.is_empty());
            let ep = outcome.endpoint.expect("an endpoint was used");
            (ep, h.connects.len() > connects)
        })
        .collect();
    for i in 0..3 {
        assert_eq!(picks[i].0, picks[i + 3].0, "period 3");
        assert!(
            picks[i].1 && !picks[i + 3].1,
            "second lap reuses connections"
        );
    }
    let distinct: std::collections::BTreeSet<_> = picks.iter().map(|p| p.0).collect();
    assert_eq!(distinct.len(), 3);
    assert_eq!(h.proxy.open_connections(), 3);
}

#[test]
fn connect_failure_is_retried_twice_then_503_uf_urx() {
    // Istio's default policy: 2 retries on connect-failure, jittered backoff in between.
    let mut h = Harness::with_proxy(proxy(1)).accept(|_| Accept::Refuse);
    let outcome = h.request(RequestHead::get("backend", "/"));
    let connects = h.connects.len();
    for pair in h.connects.windows(2) {
        assert!(
            pair[1].0.since(pair[0].0) < Nanos::from_millis(50),
            "backoff within [0, 50ms)"
        );
    }
    assert_eq!(connects, 3);
    assert_eq!(
        (
            outcome.status,
            outcome.flags.to_string().as_str(),
            outcome.attempts
        ),
        (503, "UF,URX", 3)
    );
    assert_eq!(h.proxy.open_connections(), 0);
    h.proxy.check_invariants().expect("invariants");
}

#[test]
fn a_reload_that_removes_routes_and_clusters_leaves_requests_in_flight_alone() {
    let mut reg = Registry::default();
    let ep = |i: u32, v: &str| Endpoint {
        name: format!("backend/{v}/{i}"),
        labels: BTreeMap::from([("version".to_owned(), v.to_owned())]),
    };
    reg.add_service("backend", vec![ep(0, "v1"), ep(1, "v2")]);
    let text = r#"Mesh(
        virtual_services: [VirtualService(hosts: ["backend"], http: [
            HttpRoute(name: "slow", match: [(uri: Prefix("/slow"))],
                route: [(destination: (host: "backend", subset: "v2"))],
                fault: (delay: (fixed_delay: "1s", percentage: 100))),
            HttpRoute(name: "rest", route: [(destination: (host: "backend", subset: "v1"))],
                retries: (attempts: 2, retry_on: "5xx")),
        ])],
        destination_rules: [DestinationRule(host: "backend", subsets: [
            (name: "v1", labels: {"version": "v1"}), (name: "v2", labels: {"version": "v2"})])],
    )"#;
    let options =
        ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
    let config: MeshConfig = options.from_str(text).expect("parses");
    let before = CompiledMesh::compile(&config, &reg).expect("compiles");
    let after =
        CompiledMesh::compile_next(&MeshConfig::default(), &reg, &before).expect("compiles");
    // Removed clusters keep their slots as tombstones (no endpoints).
    let live = |m: &CompiledMesh| {
        m.clusters()
            .iter()
            .filter(|c| !c.endpoints.is_empty())
            .count()
    };
    assert!(live(&after) < live(&before));
    let role = ProxyRole::Client {
        name: "test".into(),
    };
    let mut p = Proxy::new(Arc::new(before), role, 1);
    p.handle_request(Time(0), RequestId(1), RequestHead::get("backend", "/slow"));
    p.handle_request(Time(0), RequestId(2), RequestHead::get("backend", "/"));
    let actions = drain(&mut p);
    let Some(Action::Connect { conn, .. }) = actions.first().cloned() else {
        panic!("{actions:?}")
    };
    p.apply_config(Time(1), Arc::new(after))
        .expect("a later generation");
    p.handle_connected(Time(2), conn);
    let Some(Action::Send { attempt, .. }) = drain(&mut p).first().cloned() else {
        panic!("send")
    };
    // A retriable answer: the retry still follows the old route's policy.
    p.handle_response_head(Time(3), attempt, ResponseHead { status: 503 });
    p.handle_attempt_end(Time(3), attempt, AttemptEnd::Done);
    let mut outcomes = Vec::new();
    let mut now = Time(3);
    for _ in 0..20 {
        let actions = drain(&mut p);
        outcomes.extend(completed(&actions));
        for a in &actions {
            match a {
                Action::Connect { conn, .. } => p.handle_connected(now, *conn),
                Action::Send { attempt, .. } => {
                    p.handle_response_head(now, *attempt, ResponseHead { status: 200 });
                    p.handle_attempt_end(now, *attempt, AttemptEnd::Done);
                }
                _ => {}
            }
        }
        if let Some(at) = p.poll_timeout() {
            now = now.max(at);
            p.handle_timeout(now);
        }
    }
    outcomes.extend(completed(&drain(&mut p)));
    assert_eq!(
        outcomes.len(),
        2,
        "each request completes once: {outcomes:?}"
    );
    assert!(outcomes.iter().all(|o| o.status == 200));
    let retried = outcomes.iter().find(|o| o.attempts == 2).expect("retried");
    assert_eq!(
        retried.route,
        Some(RouteId(1)),
        "the old route id, of the old mesh"
    );
    p.check_invariants().expect("invariants");
}

#[test]
fn explicit_idle_timeout_closes_idle_connections() {
    let mut p = proxy(1);
    let mut mesh = (**p.config()).clone();
    mesh.clusters[0].limits.idle_timeout = Some(Nanos::from_secs(1));
    mesh.generation += 1;
    p.apply_config(Time(0), Arc::new(mesh))
        .expect("a later generation");
    let (_, _, opened) = round_trip(&mut p, 0, 200);
    assert!(opened);
    assert_eq!(p.open_connections(), 1, "idle, kept");
    let at = p.poll_timeout().expect("idle timer");
    assert_eq!(at, Time(0) + Nanos::from_secs(1));
    p.handle_timeout(at);
    assert!(matches!(
        drain(&mut p).as_slice(),
        [Action::CloseConnection { .. }]
    ));
    assert_eq!(p.open_connections(), 0);
}

#[test]
fn downstream_cancel_completes_once_with_dc() {
    let mut p = proxy(1);
    let (_, _, _) = round_trip(&mut p, 0, 200);
    p.handle_request(Time(10), RequestId(1), RequestHead::get("backend", "/"));
    let Some(Action::Send { attempt, .. }) = drain(&mut p).first().cloned() else {
        panic!("expected send on the idle connection");
    };
    p.handle_downstream_cancel(Time(20), RequestId(1));
    let actions = drain(&mut p);
    assert!(actions.contains(&Action::CancelAttempt { attempt }));
    let outcome = completed(&actions)[0];
    assert_eq!(
        (outcome.status, outcome.flags.to_string().as_str()),
        (0, "DC")
    );
    // A late report on the cancelled attempt is ignored: still exactly one outcome.
    p.handle_attempt_end(Time(30), attempt, AttemptEnd::Done);
    assert!(completed(&drain(&mut p)).is_empty());
    assert_eq!(
        p.open_connections(),
        0,
        "mid-request HTTP/1.1 connection is closed"
    );
}

#[test]
fn reset_before_headers_is_503_ur() {
    let mut h = Harness::with_proxy(proxy(1)).upstream(|_| Reply::Reset);
    let outcome = h.request(RequestHead::get("backend", "/"));
    assert_eq!(
        (outcome.status, outcome.flags.to_string().as_str()),
        (503, "UR")
    );
}

/// Per-cluster and per-endpoint state is made at first use: a proxy in a mesh of a thousand
/// services, each with outlier detection, holds state for the one service it calls, not for
/// the mesh (the issue's 30,000-instance mesh took 4 GB when every sidecar held all of it).
#[test]
fn state_is_made_for_what_the_proxy_uses() {
    let mut reg = Registry::default();
    let mut rules = Vec::new();
    for s in 0..1000u32 {
        let name = format!("svc{s}");
        let eps = (0..3)
            .map(|k| Endpoint {
                name: format!("{name}/-/{k}"),
                labels: BTreeMap::new(),
            })
            .collect();
        reg.add_service(&name, eps);
        rules.push(DestinationRule {
            host: name,
            traffic_policy: Some(TrafficPolicy {
                outlier_detection: Some(Default::default()),
                ..Default::default()
            }),
            subsets: Vec::new(),
        });
    }
    let config = MeshConfig {
        gateways: Vec::new(),
        service_entries: Vec::new(),
        outbound_traffic_policy: None,
        destination_rules: rules,
        ..Default::default()
    };
    let mesh = Arc::new(CompiledMesh::compile(&config, &reg).expect("compiles"));
    let role = ProxyRole::Client {
        name: "test".into(),
    };
    let p = Proxy::new(mesh, role, 7);
    let held = |p: &Proxy| {
        let detectors = p.outliers.iter().filter(|d| d.is_some()).count();
        (p.active.len(), p.rr.len(), detectors)
    };
    assert_eq!(held(&p), (0, 0, 0), "nothing before the first request");
    // Calls to the first service only: tables reach its ids, one detector.
    let mut h = Harness::with_proxy(p);
    for _ in 0..10 {
        assert_eq!(h.request(RequestHead::get("svc0", "/")).status, 200);
    }
    let p = h.proxy;
    let (endpoints, clusters, detectors) = held(&p);
    assert!(endpoints <= 3 && clusters <= 1, "{endpoints} {clusters}");
    assert_eq!(detectors, 1);
    assert_eq!(p.open_requests(), 0);
}
