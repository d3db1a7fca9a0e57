//! Config generations: a mesh compiled with `CompiledMesh::compile_next` keeps every cluster's
//! and endpoint's id, so a proxy given it keeps the state of everything that stayed. Each test
//! ejects one `cart` host and leaves an idle connection to each other host, reloads, and checks
//! that `cart` still avoids the ejected host, reuses its connections (no new connect) and, where
//! its hosts did not change, continues its round-robin rotation where it was.

use proxy_engine::{
    Action, AttemptEnd, CompiledMesh, Endpoint, EndpointId, MeshConfig, Proxy, ProxyRole, Registry,
    RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::common::mesh;

/// `cart` with `carts` instances (named `cart/v1/k`), `reviews` v1 and v2, and `extra`
/// services of one instance each.
fn registry(carts: &[u32], extra: &[&str]) -> Registry {
    let ep = |name: String, version: &str| Endpoint {
        name,
        labels: BTreeMap::from([("version".to_owned(), version.to_owned())]),
    };
    let mut reg = Registry::default();
    reg.add_service(
        "reviews",
        vec![
            ep("reviews/v1/0".into(), "v1"),
            ep("reviews/v2/0".into(), "v2"),
        ],
    );
    reg.add_service(
        "cart",
        carts
            .iter()
            .map(|&k| ep(format!("cart/v1/{k}"), "v1"))
            .collect(),
    );
    for s in extra {
        reg.add_service(*s, vec![ep(format!("{s}/v1/0"), "v1")]);
    }
    reg
}

const CART_RULE: &str = r#"DestinationRule(host: "cart", traffic_policy: (
    load_balancer: (simple: ROUND_ROBIN),
    outlier_detection: (consecutive_5xx_errors: 1, interval: "10s", base_ejection_time: "30s",
                        max_ejection_percent: 100),
))"#;

fn before() -> MeshConfig {
    mesh(&format!(
        r#"Mesh(
        virtual_services: [VirtualService(hosts: ["reviews"], http: [HttpRoute(route: [
            (destination: (host: "reviews", subset: "v1"))])])],
        destination_rules: [
            DestinationRule(host: "reviews", subsets: [(name: "v1", labels: {{"version": "v1"}})]),
            {CART_RULE},
        ],
    )"#
    ))
}

/// One request to `host`, answered `status`; the endpoint it went to and whether the proxy
/// opened a connection for it.
fn call(p: &mut Proxy, now: &mut Time, id: u64, host: &str, status: u16) -> (EndpointId, bool) {
    *now = Time(now.0 + 1_000);
    p.handle_request(*now, RequestId(id), RequestHead::get(host, "/"));
    let mut opened = false;
    loop {
        let actions: Vec<Action> = std::iter::from_fn(|| p.poll_action()).collect();
        if let Some(conn) = actions.iter().find_map(|a| match a {
            Action::Connect { conn, .. } => Some(*conn),
            _ => None,
        }) {
            opened = true;
            p.handle_connected(*now, conn);
            continue;
        }
        let Some((attempt, endpoint)) = actions.iter().find_map(|a| match a {
            Action::Send {
                attempt, endpoint, ..
            } => Some((*attempt, *endpoint)),
            _ => None,
        }) else {
            panic!("request {id} to {host}: no send in {actions:?}");
        };
        p.handle_response_head(*now, attempt, ResponseHead { status });
        p.handle_attempt_end(*now, attempt, AttemptEnd::Done);
        let _: Vec<Action> = std::iter::from_fn(|| p.poll_action()).collect();
        return (endpoint, opened);
    }
}

/// A proxy on `before()` with one `cart` host ejected and idle connections to the others;
/// the ejected host and the round-robin order seen.
fn warmed(carts: &[u32]) -> (Proxy, Time, EndpointId, Vec<EndpointId>) {
    let first = CompiledMesh::compile(&before(), &registry(carts, &[])).expect("compiles");
    let role = ProxyRole::Client {
        name: "test".into(),
    };
    let mut p = Proxy::new(Arc::new(first), role, 7);
    let mut now = Time::ZERO;
    let (ejected, _) = call(&mut p, &mut now, 0, "cart", 503);
    let mut order = Vec::new();
    for id in 1..=(carts.len() as u64 - 1) {
        let (e, opened) = call(&mut p, &mut now, id, "cart", 200);
        assert!(opened && e != ejected, "a fresh, healthy host");
        order.push(e);
    }
    call(&mut p, &mut now, 50, "reviews", 200);
    (p, now, ejected, order)
}

/// After a reload: `calls` requests to `cart` never reach `ejected` and open no connection;
/// the endpoints they went to.
fn after_reload(p: &mut Proxy, now: &mut Time, ejected: EndpointId, calls: u64) -> Vec<EndpointId> {
    (0..calls)
        .map(|i| {
            let (e, opened) = call(p, now, 100 + i, "cart", 200);
            assert_ne!(
                e, ejected,
                "request {i}: the ejected host was picked after the reload"
            );
            assert!(!opened, "request {i}: a new connection after the reload");
            e
        })
        .collect()
}

#[test]
fn a_subset_inserted_ahead_of_others_leaves_other_hosts_alone() {
    let (mut p, mut now, ejected, order) = warmed(&[0, 1, 2, 3]);
    // Another subset ahead of v1 and a split: compiled fresh, every cluster id would move.
    let next = mesh(&format!(
        r#"Mesh(
        virtual_services: [VirtualService(hosts: ["reviews"], http: [HttpRoute(route: [
            (destination: (host: "reviews", subset: "v2"), weight: 50),
            (destination: (host: "reviews", subset: "v1"), weight: 50)])])],
        destination_rules: [
            DestinationRule(host: "reviews", subsets: [
                (name: "v2", labels: {{"version": "v2"}}),
                (name: "v1", labels: {{"version": "v1"}})]),
            {CART_RULE},
        ],
    )"#
    ));
    let fresh = CompiledMesh::compile(&next, &registry(&[0, 1, 2, 3], &[])).expect("compiles");
    let cart = |m: &CompiledMesh| m.clusters().iter().position(|c| c.name == "cart");
    assert_ne!(
        cart(&fresh),
        cart(p.config()),
        "the fresh compile moves `cart`"
    );
    let mesh = CompiledMesh::compile_next(&next, &registry(&[0, 1, 2, 3], &[]), p.config())
        .expect("compiles");
    assert_eq!(cart(&mesh), cart(p.config()), "compile_next keeps its id");
    p.apply_config(now, Arc::new(mesh))
        .expect("a later generation");
    let seen = after_reload(&mut p, &mut now, ejected, 6);
    // The rotation goes on where it was: the same cycle of the three healthy hosts.
    let cycle: Vec<EndpointId> = order.iter().cycle().copied().take(6).collect();
    assert_eq!(seen, cycle, "round robin restarted");
    p.check_invariants().expect("invariants");
}

#[test]
fn an_endpoint_removed_leaves_the_other_hosts_alone() {
    let (mut p, mut now, ejected, order) = warmed(&[0, 1, 2, 3]);
    // Remove a healthy host (not the ejected one).
    let gone = order[0];
    let name = p.config().endpoints()[gone.0 as usize].name.clone();
    let k: u32 = name
        .rsplit('/')
        .next()
        .and_then(|k| k.parse().ok())
        .expect("cart/v1/k");
    let carts: Vec<u32> = (0..4).filter(|&i| i != k).collect();
    let mesh = CompiledMesh::compile_next(&before(), &registry(&carts, &[]), p.config())
        .expect("compiles");
    p.apply_config(now, Arc::new(mesh))
        .expect("a later generation");
    let seen = after_reload(&mut p, &mut now, ejected, 6);
    assert!(!seen.contains(&gone), "a removed host was picked");
    p.check_invariants().expect("invariants");
}

#[test]
fn a_cluster_added_leaves_the_others_alone() {
    let (mut p, mut now, ejected, order) = warmed(&[0, 1, 2, 3]);
    let next = mesh(&format!(
        r#"Mesh(destination_rules: [
            DestinationRule(host: "reviews", subsets: [(name: "v1", labels: {{"version": "v1"}})]),
            DestinationRule(host: "ratings", subsets: [(name: "v1", labels: {{"version": "v1"}})]),
            {CART_RULE},
        ],
        virtual_services: [
            VirtualService(hosts: ["ratings"], http: [HttpRoute(route: [
                (destination: (host: "ratings", subset: "v1"))])]),
            VirtualService(hosts: ["reviews"], http: [HttpRoute(route: [
                (destination: (host: "reviews", subset: "v1"))])]),
        ])"#
    ));
    let mesh =
        CompiledMesh::compile_next(&next, &registry(&[0, 1, 2, 3], &["ratings"]), p.config())
            .expect("compiles");
    p.apply_config(now, Arc::new(mesh))
        .expect("a later generation");
    let seen = after_reload(&mut p, &mut now, ejected, 6);
    let cycle: Vec<EndpointId> = order.iter().cycle().copied().take(6).collect();
    assert_eq!(seen, cycle, "round robin restarted");
    let (_, opened) = call(&mut p, &mut now, 300, "ratings", 200);
    assert!(opened, "the new cluster works");
    p.check_invariants().expect("invariants");
}

#[test]
fn a_mesh_of_another_lineage_is_refused() {
    let (mut p, now, _, _) = warmed(&[0, 1, 2, 3]);
    let other = CompiledMesh::compile(&before(), &registry(&[0, 1, 2, 3], &[])).expect("compiles");
    let err = p
        .apply_config(now, Arc::new(other))
        .expect_err("not a successor");
    assert!(err.to_string().contains("compile_next"), "{err}");
    // A generation of the lineage whose endpoint names were renumbered is no successor either
    // once compiled fresh; compile_next from the running mesh always is.
    let next = CompiledMesh::compile_next(&before(), &registry(&[3, 2, 1, 0], &[]), p.config())
        .expect("compiles");
    assert_eq!(next.generation(), p.config().generation() + 1);
    assert!(next.succeeds(p.config()));
}
