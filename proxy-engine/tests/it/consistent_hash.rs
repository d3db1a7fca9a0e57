//! Consistent hashing through a real `Proxy` configured by a destination rule: a key always
//! lands on the same endpoint while the endpoint set is unchanged; requests without the key
//! still get an endpoint; the ring and Maglev spread keys over every endpoint.

use proxy_engine::harness::registry;
use proxy_engine::{CompiledMesh, Decision, EndpointId, Proxy, ProxyRole, RequestHead};
use std::collections::BTreeSet;
use std::sync::Arc;

fn proxy(lb: &str) -> Proxy {
    let text = format!(
        r#"Mesh(destination_rules: [DestinationRule(host: "cart", traffic_policy: (load_balancer: {lb}))])"#
    );
    let config = crate::common::mesh(&text);
    let reg = registry(&[("cart", &[("v1", 8)])]);
    let mesh = CompiledMesh::compile(&config, &reg).unwrap_or_else(|e| panic!("{e}"));
    Proxy::new(Arc::new(mesh), ProxyRole::Client { name: "t".into() }, 3)
}

fn endpoint(p: &mut Proxy, head: &RequestHead) -> EndpointId {
    match p.decide(head) {
        Decision::Endpoint { endpoint, .. } => endpoint,
        other => panic!("expected an endpoint, got {other:?}"),
    }
}

fn with_header(name: &str, value: &str) -> RequestHead {
    let mut h = RequestHead::get("cart", "/cart?session=s1");
    h.headers = Arc::from(vec![(Arc::from(name), Arc::from(value))]);
    h
}

#[test]
fn each_key_sticks_to_one_endpoint() {
    let policies = [
        r#"(consistent_hash: (http_header_name: "x-user"))"#,
        r#"(consistent_hash: (http_header_name: "x-user", maglev: (table_size: 65537)))"#,
        r#"(consistent_hash: (http_cookie: (name: "session")))"#,
        r#"(consistent_hash: (http_query_parameter_name: "session", ring_hash: (minimum_ring_size: 4096)))"#,
    ];
    for policy in policies {
        let mut p = proxy(policy);
        let mut used = BTreeSet::new();
        for user in 0..200 {
            let key = format!("user-{user}");
            let head = if policy.contains("cookie") {
                with_header("cookie", &format!("a=b; session={key}"))
            } else if policy.contains("query") {
                RequestHead::get("cart", &format!("/cart?session={key}&x=1"))
            } else {
                with_header("x-user", &key)
            };
            let first = endpoint(&mut p, &head);
            for _ in 0..5 {
                assert_eq!(endpoint(&mut p, &head), first, "{policy}: {key} moved");
            }
            used.insert(first);
        }
        assert_eq!(used.len(), 8, "{policy}: 200 keys reach all 8 endpoints");
        // No key: still served (a random endpoint, as Envoy does).
        endpoint(&mut p, &RequestHead::get("cart", "/"));
    }
}

#[test]
fn source_ip_hashing_pins_a_client() {
    let mut p = proxy("(consistent_hash: (use_source_ip: true))");
    let mut head = RequestHead::get("cart", "/");
    head.source = Arc::from("10.0.0.7");
    let first = endpoint(&mut p, &head);
    assert!((0..20).all(|_| endpoint(&mut p, &head) == first));
}
