//! Engine hot path, no sockets and no simulator: one request through a `Proxy` — route lookup,
//! weighted pick, round-robin endpoint, reuse of an idle connection, send, response, outcome.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_engine::config::{
    Destination, DestinationRule, HttpRoute, RouteDestination, Subset, VirtualService,
};
use proxy_engine::{
    Action, AttemptEnd, CompiledMesh, Endpoint, EndpointAddr, MeshConfig, Proxy, ProxyRole,
    Registry, RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

fn mesh() -> CompiledMesh {
    let mut reg = Registry::default();
    let eps = (0..10)
        .map(|i| Endpoint {
            addr: EndpointAddr::Sim(i),
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
    let subset = |name: &str| Subset {
        name: name.into(),
        labels: BTreeMap::from([("version".into(), name.into())]),
    };
    let config = MeshConfig {
        virtual_services: vec![VirtualService {
            name: None,
            hosts: vec!["reviews".into()],
            http: vec![HttpRoute {
                name: Some("split".into()),
                route: vec![dest("v1", 80), dest("v2", 20)],
            }],
        }],
        destination_rules: vec![DestinationRule {
            host: "reviews".into(),
            subsets: vec![subset("v1"), subset("v2")],
        }],
    };
    CompiledMesh::compile(&config, &reg).expect("bench mesh compiles")
}

fn round_trip(c: &mut Criterion) {
    let mut proxy = Proxy::new(
        Arc::new(mesh()),
        ProxyRole::Client {
            name: "bench".into(),
        },
        1,
    );
    let head = RequestHead::get("reviews", "/reviews/1");
    let mut id = 0u64;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    group.bench_function("request_round_trip_split_80_20", |b| {
        b.iter(|| {
            id += 1;
            let now = Time(id);
            proxy.handle_request(now, RequestId(id), head.clone());
            let mut completed = 0;
            while let Some(action) = proxy.poll_action() {
                match action {
                    Action::Connect { conn, .. } => proxy.handle_connected(now, conn),
                    Action::Send { attempt, .. } => {
                        proxy.handle_response_head(now, attempt, ResponseHead { status: 200 });
                        proxy.handle_attempt_end(now, attempt, AttemptEnd::Done);
                    }
                    Action::Complete { outcome, .. } => {
                        completed += black_box(outcome.status) as u32
                    }
                    _ => {}
                }
            }
            completed
        })
    });
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
