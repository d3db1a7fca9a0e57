//! Gateways in the engine, case by case after Istio's own request simulator
//! (`pilot/pkg/networking/core/gateway_simulation_test.go`) and the istio.io ingress tasks: a
//! virtual service bound to a gateway by name, server host wildcards and `namespace/`
//! restrictions, the `mesh` default, per-match `gateways`, `https_redirect`, and 404 `NR`
//! where a gateway has no virtual host or no route.

use crate::common::mesh;
use proxy_engine::gateway::Listener;
use proxy_engine::harness::{registry, Harness};
use proxy_engine::{CompiledMesh, ConfigWarning, Outcome, Proxy, ProxyRole, RequestHead};
use std::collections::BTreeMap;
use std::sync::Arc;

const HTTP: Listener = Listener {
    port: 80,
    tls: false,
};

/// A gateway proxy labelled `istio: ingressgateway` on `text`'s mesh, over services a, b and
/// productpage.
fn ingress(text: &str) -> (Harness, Arc<CompiledMesh>) {
    let reg = registry(&[
        ("a", &[("v1", 1)]),
        ("b", &[("v1", 1)]),
        ("productpage", &[("v1", 1)]),
        ("reviews", &[("v1", 1)]),
    ]);
    let mesh = Arc::new(CompiledMesh::compile(&mesh(text), &reg).expect("compiles"));
    let role = ProxyRole::Gateway {
        name: "istio-ingressgateway".into(),
        labels: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
    };
    let proxy = Proxy::new(mesh.clone(), role, 7);
    (Harness::with_proxy(proxy), mesh)
}

/// The service an outcome went to, or its route's name for a local reply.
fn went(mesh: &CompiledMesh, o: &Outcome) -> String {
    match o.cluster {
        Some(c) => mesh.cluster(c).name.clone(),
        None => {
            let route = o.route.map_or("-".into(), |r| mesh.route(r).name.clone());
            format!("{} {route}", o.status)
        }
    }
}

fn get(host: &str, path: &str) -> RequestHead {
    RequestHead::get(host, path)
}

/// E1: a virtual service with host `*` bound to the gateway takes the server's host only.
#[test]
fn bound_virtual_service_routes_the_server_hosts_only() {
    let (mut h, m) = ingress(
        r#"Mesh(
        gateways: [Gateway(name: "gateway", selector: {"istio": "ingressgateway"},
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["foo.bar"])])],
        virtual_services: [VirtualService(hosts: ["*"], gateways: ["gateway"], http: [
            HttpRoute(match: [(uri: Exact("/productpage"))],
                route: [(destination: (host: "productpage"))])])],
    )"#,
    );
    let o = h.request_on(get("foo.bar", "/productpage"), HTTP);
    assert_eq!(went(&m, &o), "productpage");
    let o = h.request_on(get("foo.bar", "/"), HTTP);
    assert_eq!(went(&m, &o), "404 */(no route)", "host matched, no route");
    let o = h.request_on(get("bad.bar", "/productpage"), HTTP);
    assert_eq!(
        went(&m, &o),
        "404 default/gateway:80/(no route)",
        "no virtual host"
    );
    assert_eq!(o.flags.to_string(), "NR");
    // The port in Host is ignored at a gateway.
    let o = h.request_on(get("foo.bar:8080", "/productpage"), HTTP);
    assert_eq!(went(&m, &o), "productpage");
}

/// E2: a gateway with no virtual service answers 404 `NR` on its port.
#[test]
fn gateway_without_virtual_service_answers_404() {
    let (mut h, m) = ingress(
        r#"Mesh(gateways: [Gateway(name: "gateway",
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["foo.bar"])])])"#,
    );
    let o = h.request_on(get("foo.bar", "/"), HTTP);
    assert_eq!(went(&m, &o), "404 default/gateway:80/(no route)");
    let o = h.request_on(
        get("foo.bar", "/"),
        Listener {
            port: 81,
            tls: false,
        },
    );
    assert_eq!(
        (o.status, o.flags.to_string()),
        (404, "NR".into()),
        "no listener"
    );
}

/// E3: a wildcard server host; each virtual service's host becomes its own virtual host.
#[test]
fn wildcard_server_merges_virtual_services() {
    let (mut h, m) = ingress(
        r#"Mesh(
        gateways: [Gateway(name: "gateway",
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["*.example.com"])])],
        virtual_services: [
            VirtualService(name: "a", hosts: ["a.example.com"], gateways: ["gateway"],
                http: [HttpRoute(route: [(destination: (host: "a"))])]),
            VirtualService(name: "b", hosts: ["b.example.com"], gateways: ["gateway"],
                http: [HttpRoute(route: [(destination: (host: "b"))])]),
        ],
    )"#,
    );
    assert_eq!(
        went(&m, &h.request_on(get("a.example.com", "/"), HTTP)),
        "a"
    );
    assert_eq!(
        went(&m, &h.request_on(get("B.Example.com", "/"), HTTP)),
        "b"
    );
    let o = h.request_on(get("c.example.com", "/"), HTTP);
    assert_eq!(o.status, 404);
}

/// E4 and E5: `https_redirect` answers 301 to `https://` on the HTTP server whatever the
/// routes, and is inert on an HTTPS server.
#[test]
fn https_redirect_wins_over_routes_on_plain_http_only() {
    let (mut h, m) = ingress(
        r#"Mesh(
        gateways: [Gateway(name: "gateway", servers: [
            (port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["example.com"],
                tls: (https_redirect: true)),
            (port: (number: 443, protocol: "HTTPS", name: "https"), hosts: ["example.com"],
                tls: (https_redirect: true, mode: "SIMPLE", credential_name: "test")),
        ])],
        virtual_services: [VirtualService(hosts: ["example.com"], gateways: ["gateway"],
            http: [HttpRoute(route: [(destination: (host: "b"))])])],
    )"#,
    );
    let req = h.send_on(get("example.com", "/x?y=1"), HTTP);
    h.run();
    let o = h.outcome(req).expect("done");
    assert_eq!(o.status, 301);
    assert_eq!(went(&m, &o), "301 default/gateway:80/(https redirect)");
    let location = h.reply_headers[&req]
        .iter()
        .find(|(n, _)| &**n == "location")
        .map(|(_, v)| v.to_string());
    assert_eq!(location.as_deref(), Some("https://example.com/x?y=1"));
    assert!(h.sent.is_empty(), "the route is never used");
    let o = h.request_on(
        get("example.com", "/x"),
        Listener {
            port: 443,
            tls: true,
        },
    );
    assert_eq!(went(&m, &o), "b", "routed normally over TLS");
}

/// E7: a virtual service without `gateways` binds to sidecars only; listing a gateway drops
/// sidecars unless `mesh` is listed; per-match `gateways` and `port` split one service's legs.
#[test]
fn mesh_is_the_default_binding_and_per_match_gateways_override() {
    let text = r#"Mesh(
        gateways: [Gateway(name: "gw",
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["*"])])],
        virtual_services: [
            VirtualService(hosts: ["reviews"], http: [HttpRoute(route: [(destination: (host: "a"))])]),
            VirtualService(hosts: ["productpage"], gateways: ["gw", "mesh"], http: [
                HttpRoute(name: "edge", match: [(gateways: ["gw"], port: 80)],
                    route: [(destination: (host: "b"))]),
                HttpRoute(name: "inside", match: [(gateways: ["mesh"])],
                    route: [(destination: (host: "productpage"))]),
            ]),
            VirtualService(hosts: ["b"], gateways: ["default/gw"],
                http: [HttpRoute(route: [(destination: (host: "a"))])]),
        ],
    )"#;
    let (mut h, m) = ingress(text);
    let o = h.request_on(get("reviews", "/"), HTTP);
    assert_eq!(
        went(&m, &o),
        "404 default/gw:80/(no route)",
        "VS is mesh-only"
    );
    assert_eq!(went(&m, &h.request_on(get("productpage", "/"), HTTP)), "b");
    assert_eq!(went(&m, &h.request_on(get("b", "/"), HTTP)), "a");
    let on_8080 = Listener {
        port: 8080,
        tls: false,
    };
    assert_eq!(h.request_on(get("productpage", "/"), on_8080).status, 404);
    // The same mesh at a sidecar.
    let mut side = Harness::new(m.clone());
    assert_eq!(went(&m, &side.request(get("reviews", "/"))), "a");
    assert_eq!(
        went(&m, &side.request(get("productpage", "/"))),
        "productpage",
        "the inside leg"
    );
    assert_eq!(
        went(&m, &side.request(get("b", "/"))),
        "b",
        "a gateway-only VS leaves b its default route"
    );
}

/// E8: a server host `ns1/*` binds only virtual services of namespace `ns1`.
#[test]
fn server_host_namespace_restricts_binding() {
    let text = r#"Mesh(
        gateways: [Gateway(name: "gw", namespace: "istio-system",
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["ns1/*"])])],
        virtual_services: [
            VirtualService(namespace: "ns2", hosts: ["foo.com"], gateways: ["istio-system/gw"],
                http: [HttpRoute(route: [(destination: (host: "a"))])]),
            VirtualService(namespace: "ns1", hosts: ["bar.com"], gateways: ["istio-system/gw"],
                http: [HttpRoute(route: [(destination: (host: "b"))])]),
        ],
    )"#;
    let (mut h, m) = ingress(text);
    assert_eq!(h.request_on(get("foo.com", "/"), HTTP).status, 404);
    assert_eq!(went(&m, &h.request_on(get("bar.com", "/"), HTTP)), "b");
    assert_eq!(
        m.warnings(),
        &[ConfigWarning::HostNotInGateway {
            field: "virtual_services[0].hosts[0]".into(),
            host: "foo.com".into(),
            gateway: "istio-system/gw".into(),
        }],
        "IST0132"
    );
}

/// A gateway applies to the gateway proxies its selector picks; a virtual service naming a
/// gateway that does not exist is warned about.
#[test]
fn selector_picks_gateway_proxies_and_unknown_gateways_warn() {
    let text = r#"Mesh(
        gateways: [Gateway(name: "egress", selector: {"istio": "egressgateway"},
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["*"])])],
        virtual_services: [VirtualService(hosts: ["a.example"], gateways: ["egress", "typo"],
            http: [HttpRoute(route: [(destination: (host: "a"))])])],
    )"#;
    let (mut h, m) = ingress(text);
    let o = h.request_on(get("a.example", "/"), HTTP);
    assert_eq!(o.status, 404, "the ingress proxy is not selected");
    assert_eq!(
        m.warnings()[0].to_string(),
        "virtual_services[0].gateways: gateway `default/typo` is not defined by any Gateway \
         (its routes apply nowhere)"
    );
}

/// E19 and Istio's server validation.
#[test]
fn bad_gateway_configs_name_the_field() {
    let reg = registry(&[("a", &[("v1", 1)])]);
    let err = |text: &str| {
        CompiledMesh::compile(&mesh(text), &reg)
            .expect_err("rejected")
            .to_string()
    };
    assert_eq!(
        err(r#"Mesh(virtual_services: [VirtualService(hosts: ["*"],
            http: [HttpRoute(route: [(destination: (host: "a"))])])])"#),
        "virtual_services[0].hosts[0]: wildcard host * is not allowed for virtual services \
         bound to the mesh gateway"
    );
    let server = |s: &str| format!("Mesh(gateways: [Gateway(name: \"g\", servers: [{s}])])");
    assert_eq!(
        err(&server(
            r#"(port: (number: 443, protocol: "HTTPS", name: "https"), hosts: ["x"])"#
        )),
        "gateways[0].servers[0].tls: an HTTPS server requires a `tls` block"
    );
    assert!(err(&server(
        r#"(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["x"],
            tls: (mode: "SIMPLE", credential_name: "c"))"#
    ))
    .starts_with("gateways[0].servers[0].tls: a plain-text server may carry `tls` only"));
    assert_eq!(
        err(&server(
            r#"(port: (number: 80, protocol: "HTTP", name: "http"), hosts: [])"#
        )),
        "gateways[0].servers[0].hosts: a server needs at least one host"
    );
    assert!(err(&server(
        r#"(port: (number: 9000, protocol: "TCP", name: "tcp"), hosts: ["x"])"#
    ))
    .contains("meshtwin models HTTP gateway servers"));
}

/// A gateway is the mesh's edge: a client's `x-envoy-*` headers (which steer Envoy's retries,
/// timeouts and attempt counts) are removed before routing, as Envoy sanitizes external
/// requests; other headers pass, and a sidecar keeps them all.
#[test]
fn a_gateway_removes_the_clients_envoy_headers() {
    let text = r#"Mesh(
        gateways: [Gateway(name: "gateway", selector: {"istio": "ingressgateway"},
            servers: [(port: (number: 80, protocol: "HTTP", name: "http"), hosts: ["*"])])],
        virtual_services: [
            VirtualService(hosts: ["*"], gateways: ["gateway"], http: [
                HttpRoute(match: [(headers: {"x-envoy-max-retries": Exact("5")})],
                    route: [(destination: (host: "a"))]),
                HttpRoute(route: [(destination: (host: "b"))])]),
            VirtualService(hosts: ["a"], http: [
                HttpRoute(match: [(headers: {"x-envoy-max-retries": Exact("5")})],
                    route: [(destination: (host: "a"))]),
                HttpRoute(route: [(destination: (host: "b"))])]),
        ],
    )"#;
    let mut head = get("foo.bar", "/");
    head.headers = Arc::from(vec![
        (Arc::from("x-envoy-max-retries"), Arc::from("5")),
        (Arc::from("X-Envoy-Attempt-Count"), Arc::from("7")),
        (Arc::from("x-user"), Arc::from("1")),
    ]);
    let (mut h, m) = ingress(text);
    let o = h.request_on(head.clone(), HTTP);
    assert_eq!(
        went(&m, &o),
        "b",
        "the route on the client's header is not taken"
    );
    let sent: Vec<&str> = h.sent[0].head.headers.iter().map(|(n, _)| &**n).collect();
    assert_eq!(sent, ["x-user"]);
    // A sidecar trusts its own workload's headers.
    let reg = registry(&[("a", &[("v1", 1)]), ("b", &[("v1", 1)])]);
    let mesh = Arc::new(CompiledMesh::compile(&crate::common::mesh(text), &reg).expect("compiles"));
    let role = ProxyRole::Sidecar {
        service: "web".into(),
    };
    let mut h = Harness::with_proxy(Proxy::new(mesh.clone(), role, 7));
    let mut inside = head;
    inside.authority = Arc::from("a");
    let o = h.request(inside);
    assert_eq!(went(&mesh, &o), "a");
    assert_eq!(h.sent[0].head.headers.len(), 3);
}
