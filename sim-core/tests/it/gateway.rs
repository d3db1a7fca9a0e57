//! Ingress through a gateway proxy in the simulator: a workload enters at a `Gateway` server
//! port, the gateway proxy routes by the virtual services bound to it, and what no virtual
//! host or route takes is answered 404 `NR` at the gateway; every request is counted once.

use crate::common::{flag_count, invalid, run, scenario, status_count};

const INGRESS: &str = r#"Scenario(
    seed: 11, duration: "20s",
    services: {
        "productpage": (versions: {"v1": (instances: 2, workers: 8, latency: Exponential(mean: "5ms"))}),
        "reviews": (versions: {"v1": (instances: 1, workers: 8, latency: Exponential(mean: "5ms"))}),
    },
    gateway_proxies: {"istio-ingressgateway": (labels: {"istio": "ingressgateway"})},
    mesh: Mesh(
        gateways: [Gateway(name: "bookinfo-gateway", selector: {"istio": "ingressgateway"},
            servers: [(port: (number: 8080, protocol: "HTTP", name: "http"), hosts: ["*"])])],
        virtual_services: [VirtualService(name: "bookinfo", hosts: ["*"],
            gateways: ["bookinfo-gateway"], http: [
                HttpRoute(name: "pages", match: [(uri: Exact("/productpage"))],
                    route: [(destination: (host: "productpage", port: 9080))]),
            ])],
    ),
    workload: [OpenLoop(name: "users", host: "bookinfo.example.com",
        via: (gateway: "istio-ingressgateway", port: 8080), rate: 100,
        requests: [(weight: 9, path: "/productpage"), (weight: 1, path: "/admin")])],
)"#;

#[test]
fn workload_enters_through_the_gateway_and_misses_get_404_nr() {
    let s = scenario(INGRESS);
    let m = run(&s);
    let n = m.generated;
    assert!(n > 1500, "{n} requests");
    let missed = status_count(&m, 404);
    assert_eq!(missed, flag_count(&m, "NR"));
    assert_eq!(missed + status_count(&m, 200), n, "nothing else happens");
    // Each request is `/admin` with probability 1/10: within five standard errors.
    let p = 0.1;
    let sd = (p * (1.0 - p) * n as f64).sqrt();
    assert!(
        (missed as f64 - p * n as f64).abs() < 5.0 * sd,
        "{missed} of {n} missed"
    );
    let route = |name: &str| {
        (m.routes.iter())
            .find(|(r, _)| r == name)
            .map_or(0, |(_, st)| st.count)
    };
    assert_eq!(route("bookinfo/pages"), n - missed);
    assert_eq!(route("bookinfo/(no route)"), missed);
    // The workload's outcomes are the gateway's: end to end and per workload agree.
    assert_eq!(m.workloads[0].1.count, n);
}

#[test]
fn a_port_without_a_server_or_an_unknown_gateway_is_a_scenario_error() {
    let err = invalid(&INGRESS.replace("port: 8080)", "port: 80)"));
    assert!(
        err.contains(
            "no Gateway server of gateway proxy `istio-ingressgateway` listens on port 80"
        ),
        "{err}"
    );
    let err = invalid(&INGRESS.replace("gateway: \"istio-ingressgateway\"", "gateway: \"nope\""));
    assert!(err.contains("unknown gateway proxy `nope`"), "{err}");
    let err = invalid(&INGRESS.replace(
        "gateways: [\"bookinfo-gateway\"]",
        "gateways: [\"bookinfo-gw\"]",
    ));
    assert!(
        err.contains("gateway `default/bookinfo-gw` is not defined"),
        "{err}"
    );
}

/// A mesh service calling an external API: passed through under `ALLOW_ANY`, blocked with
/// 502 under `REGISTRY_ONLY` (counted on the `block_all` route), let through again by a
/// ServiceEntry.
#[test]
fn outbound_traffic_policy_and_service_entries_in_the_simulator() {
    let text = |mesh: &str| {
        format!(
            r#"Scenario(seed: 3, duration: "10s", services: {{
            "web": Service(versions: {{"v1": (instances: 1, workers: 50, latency: Constant("1ms"))}},
                calls: [Call(host: "httpbin.org", path: "/get")]),
            "httpbin.org": Service(external: true,
                versions: {{"v1": (instances: 1, workers: 50, latency: Constant("20ms"))}}),
        }}, mesh: {mesh}, workload: [OpenLoop(host: "web", rate: 50)])"#
        )
    };
    let route = |m: &metrics::RunMetrics, name: &str| {
        (m.routes.iter())
            .find(|(r, _)| r == name)
            .map(|(_, s)| s.clone())
    };
    let m = run(&scenario(&text("Mesh()")));
    let through = route(&m, "httpbin.org/PassthroughCluster").expect("passthrough");
    assert_eq!(through.count, m.generated);
    assert_eq!(status_count(&m, 200), m.generated);
    let m = run(&scenario(&text(
        r#"Mesh(outbound_traffic_policy: (mode: "REGISTRY_ONLY"))"#,
    )));
    let blocked = route(&m, "httpbin.org/block_all").expect("block_all");
    assert_eq!(blocked.count, m.generated, "every call blocked");
    assert_eq!(blocked.by_status, vec![(502, m.generated)]);
    assert_eq!(
        status_count(&m, 500),
        m.generated,
        "web fails without its API"
    );
    assert!(
        m.destinations.iter().all(|(d, _)| d != "httpbin.org/v1"),
        "nothing reached it"
    );
    let m = run(&scenario(&text(
        r#"Mesh(outbound_traffic_policy: (mode: "REGISTRY_ONLY"),
            service_entries: [(hosts: ["httpbin.org"], ports: [(number: 80, name: "http", protocol: "HTTP")],
                resolution: "DNS")])"#,
    )));
    assert_eq!(status_count(&m, 200), m.generated);
    assert_eq!(
        route(&m, "httpbin.org/default").map(|s| s.count),
        Some(m.generated)
    );
}
