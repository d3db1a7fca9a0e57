//! Engine hot path, no sockets and no simulator: one request through a `Proxy` on a 50-route
//! virtual service — route match, weighted pick, least-request endpoint pick, reuse of an idle
//! connection, send, response, outcome. The issue target for match + pick + LB is ≤ 300 ns.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_engine::config::{
    Destination, DestinationRule, HttpMatchRequest, HttpRoute, RouteDestination, StringMatch,
    Subset, VirtualService,
};
use proxy_engine::{
    Action, AttemptEnd, CompiledMesh, Endpoint, MeshConfig, Proxy, ProxyRole, Registry,
    RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

/// A virtual service of 50 routes with mixed matchers (prefix, exact, header, regex,
/// method + presence), then a catch-all 80/20 split.
fn fifty_routes() -> CompiledMesh {
    let mut reg = Registry::default();
    let eps = (0..10)
        .map(|i| Endpoint {
            name: format!("backend/-/{i}"),
            labels: BTreeMap::from([("version".into(), if i < 8 { "v1" } else { "v2" }.into())]),
        })
        .collect();
    reg.add_service("reviews", eps);
    let dest = |subset: &str, weight| RouteDestination {
        destination: Destination {
            host: "reviews".into(),
            subset: Some(subset.into()),
            port: None,
        },
        weight: Some(weight),
    };
    let mut http: Vec<HttpRoute> = (0..50)
        .map(|i| {
            let mut m = HttpMatchRequest::default();
            match i % 5 {
                0 => m.uri = Some(StringMatch::Prefix(format!("/svc{i}/"))),
                1 => m.uri = Some(StringMatch::Exact(format!("/exact/{i}"))),
                2 => {
                    m.headers
                        .insert("x-route".into(), StringMatch::Exact(format!("r{i}")));
                }
                3 => m.uri = Some(StringMatch::Regex(format!("/re{i}/[0-9]+"))),
                _ => {
                    m.method = Some(StringMatch::Exact("PUT".into()));
                    m.headers
                        .insert(format!("x-flag-{i}"), StringMatch::Present);
                }
            }
            HttpRoute {
                name: Some(format!("r{i}")),
                matches: vec![m],
                route: vec![dest("v1", 100)],
                ..Default::default()
            }
        })
        .collect();
    http.push(HttpRoute {
        name: Some("default".into()),
        route: vec![dest("v1", 80), dest("v2", 20)],
        ..Default::default()
    });
    let subset = |name: &str| Subset {
        name: name.into(),
        labels: BTreeMap::from([("version".into(), name.into())]),
        traffic_policy: None,
    };
    let config = MeshConfig {
        gateways: Vec::new(),
        service_entries: Vec::new(),
        outbound_traffic_policy: None,
        virtual_services: vec![VirtualService {
            name: None,
            namespace: None,
            gateways: Vec::new(),
            hosts: vec!["reviews".into()],
            http,
        }],
        destination_rules: vec![DestinationRule {
            host: "reviews".into(),
            traffic_policy: None,
            subsets: vec![subset("v1"), subset("v2")],
        }],
        local_rate_limit: None,
    };
    CompiledMesh::compile(&config, &reg).expect("bench mesh compiles")
}

/// Requests that match at different depths of the 50-route table, and the catch-all.
fn mixed_requests() -> Vec<RequestHead> {
    let header = |path: &str, name: &str, value: &str| {
        let mut h = RequestHead::get("reviews", path);
        h.headers = Arc::from(vec![(Arc::from(name), Arc::from(value))]);
        h
    };
    vec![
        RequestHead::get("reviews", "/svc5/items"),
        RequestHead::get("reviews", "/exact/21"),
        header("/", "x-route", "r32"),
        RequestHead::get("reviews", "/re43/12345"),
        RequestHead::get("reviews", "/svc45/x?y=1"),
        header("/", "end-user", "jason"),
        RequestHead::get("reviews", "/reviews/1"),
        RequestHead::get("reviews", "/exact/46"),
    ]
}

/// Route match + weighted pick + LB pick (least request), then the whole round trip of one
/// request through the engine, on the 50-route table.
fn fifty_route_round_trip(c: &mut Criterion) {
    let role = ProxyRole::Client {
        name: "bench".into(),
    };
    let mut proxy = Proxy::new(Arc::new(fifty_routes()), role, 1);
    let heads = mixed_requests();
    let mut id = 0u64;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("fifty_route_vs_match_pick_lb", |b| {
        b.iter(|| {
            id += 1;
            let head = &heads[id as usize % heads.len()];
            black_box(proxy.decide(head))
        })
    });
    group.bench_function("fifty_route_vs_mixed_matchers_round_trip", |b| {
        b.iter(|| {
            id += 1;
            let now = Time(id);
            let head = heads[id as usize % heads.len()].clone();
            proxy.handle_request(now, RequestId(id), head);
            let mut completed = 0;
            while let Some(action) = proxy.poll_action() {
                match action {
                    Action::Connect { conn, .. } => proxy.handle_connected(now, conn),
                    Action::Send { attempt, .. } => {
                        proxy.handle_response_head(now, attempt, ResponseHead { status: 200 });
                        proxy.handle_attempt_end(now, attempt, AttemptEnd::Done);
                    }
                    Action::Complete { outcome, .. } => {
                        completed += u32::from(black_box(outcome.status))
                    }
                    _ => {}
                }
            }
            completed
        })
    });
    group.finish();
}

criterion_group!(benches, fifty_route_round_trip);
criterion_main!(benches);
