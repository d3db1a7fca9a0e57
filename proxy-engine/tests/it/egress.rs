//! Hosts outside the mesh: Istio's outbound traffic policy (`ALLOW_ANY` passthrough, the
//! default; `REGISTRY_ONLY` answering 502 from `block_all`) and ServiceEntries registering an
//! external host, after the istio.io egress-control task; ServiceEntry validation after
//! Istio's `ValidateServiceEntry`.

use crate::common::mesh;
use proxy_engine::harness::{registry, Harness};
use proxy_engine::{CompiledMesh, Endpoint, Registry, RequestHead};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A mesh service `web` and two external APIs, `httpbin.org` and `www.google.com`.
fn reg() -> Registry {
    let mut r = registry(&[("web", &[("v1", 1)])]);
    for host in ["httpbin.org", "www.google.com"] {
        let ep = Endpoint {
            name: format!("{host}/-/0"),
            labels: BTreeMap::new(),
        };
        r.add_external_service(host, vec![ep]);
    }
    r
}

/// (status, route name) of a GET to `host` from a sidecar on `text`'s mesh.
fn call(text: &str, host: &str) -> (u16, String) {
    let m = Arc::new(CompiledMesh::compile(&mesh(text), &reg()).expect("compiles"));
    let mut h = Harness::new(m.clone());
    let o = h.request(RequestHead::get(host, "/"));
    let route = o.route.map_or("-".into(), |r| m.route(r).name.clone());
    (o.status, route)
}

#[test]
fn allow_any_passes_unknown_external_hosts_through() {
    assert_eq!(
        call("Mesh()", "httpbin.org"),
        (200, "httpbin.org/PassthroughCluster".into())
    );
    assert_eq!(call("Mesh()", "web"), (200, "web/default".into()));
    assert_eq!(
        call("Mesh()", "nowhere.example"),
        (404, "(unknown host)".into())
    );
}

#[test]
fn registry_only_blocks_what_no_service_entry_lists() {
    let only = r#"Mesh(outbound_traffic_policy: (mode: "REGISTRY_ONLY"),
        service_entries: [(hosts: ["www.google.com"], ports: [(number: 443, name: "https", protocol: "HTTPS")],
            resolution: "DNS", location: "MESH_EXTERNAL")])"#;
    assert_eq!(
        call(only, "httpbin.org"),
        (502, "httpbin.org/block_all".into()),
        "E10"
    );
    assert_eq!(
        call(only, "www.google.com"),
        (200, "www.google.com/default".into()),
        "E12"
    );
    assert_eq!(call(only, "nowhere.example"), (502, "block_all".into()));
    assert_eq!(
        call(only, "web"),
        (200, "web/default".into()),
        "mesh services stay"
    );
    let wildcard = r#"Mesh(outbound_traffic_policy: (mode: "REGISTRY_ONLY"),
        service_entries: [(hosts: ["*.org"])])"#;
    assert_eq!(
        call(wildcard, "httpbin.org"),
        (200, "httpbin.org/default".into())
    );
}

#[test]
fn service_entry_validation_follows_istio() {
    let err = |se: &str| {
        let text = format!("Mesh(service_entries: [{se}])");
        CompiledMesh::compile(&mesh(&text), &reg())
            .expect_err("rejected")
            .to_string()
    };
    assert_eq!(
        err(r#"(hosts: ["*"])"#),
        "service_entries[0].hosts[0]: invalid host *"
    );
    assert_eq!(
        err(r#"(hosts: ["a.com"], endpoints: [(address: "1.2.3.4")])"#),
        "service_entries[0].endpoints: no endpoints should be provided for resolution type none"
    );
    assert!(err(r#"(hosts: ["a.com"], resolution: "DNS_ROUND_ROBIN",
        endpoints: [(address: "1.2.3.4"), (address: "1.2.3.5")])"#)
    .contains("there must only be 0 or 1 endpoint"));
    assert!(err(r#"(hosts: ["a.com", "b.com"], resolution: "DNS",
        ports: [(number: 9000, name: "tcp", protocol: "TCP")])"#)
    .contains("multiple hosts provided with non-HTTP, non-TLS ports"));
    let bad_mode = CompiledMesh::compile(
        &mesh(r#"Mesh(outbound_traffic_policy: (mode: "DENY"))"#),
        &reg(),
    )
    .expect_err("rejected");
    assert!(bad_mode.to_string().contains("ALLOW_ANY or REGISTRY_ONLY"));
}
