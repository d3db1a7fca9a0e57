//! Egress through an egress gateway in the simulator, as Istio's "Egress gateway for HTTP
//! traffic" task sets it up: a sidecar's route bound to `mesh` sends an external host to the
//! egress gateway's service (subset `cnn`), the gateway's route bound to the gateway sends it
//! on to the external service. Every hop shows in the report: the sidecar's route and the
//! gateway's, each destination, each cluster; every request is counted once.

use crate::common::{flag_count, invalid, run, scenario, status_count};
use metrics::{RunMetrics, Stats};

/// The task's objects (`ServiceEntry cnn`, `Gateway istio-egressgateway`, `DestinationRule
/// egressgateway-for-cnn`, `VirtualService direct-cnn-through-egress-gateway`), with a `sleep`
/// service that calls `edition.cnn.com` with the application timeout `timeout`.
fn egress(policy: &str, timeout: &str) -> String {
    format!(
        r#"Scenario(
    seed: 17, duration: "20s",
    services: {{
        "sleep": (versions: {{"v1": (instances: 1, workers: 64, latency: Constant("1ms"))}},
            calls: [Call(host: "edition.cnn.com", path: "/politics", timeout: {timeout})]),
        "edition.cnn.com": (external: true,
            versions: {{"v1": (instances: 1, workers: 64, latency: Constant("20ms"))}}),
    }},
    gateway_proxies: {{"istio-egressgateway": (labels: {{"istio": "egressgateway"}},
        service: (name: "istio-egressgateway", port: 80))}},
    mesh: Mesh(
        outbound_traffic_policy: (mode: "{policy}"),
        service_entries: [(name: "cnn", hosts: ["edition.cnn.com"], resolution: "DNS",
            ports: [(number: 80, name: "http-port", protocol: "HTTP"),
                    (number: 443, name: "https", protocol: "HTTPS")])],
        gateways: [Gateway(name: "istio-egressgateway", selector: {{"istio": "egressgateway"}},
            servers: [(port: (number: 80, name: "http", protocol: "HTTP"),
                hosts: ["edition.cnn.com"])])],
        destination_rules: [DestinationRule(
            host: "istio-egressgateway", subsets: [(name: "cnn")])],
        virtual_services: [VirtualService(name: "direct-cnn-through-egress-gateway",
            hosts: ["edition.cnn.com"], gateways: ["istio-egressgateway", "mesh"], http: [
                HttpRoute(name: "to-gateway", match: [(gateways: ["mesh"], port: 80)],
                    route: [(destination: (host: "istio-egressgateway", subset: "cnn", port: 80),
                        weight: 100)]),
                HttpRoute(name: "to-cnn", match: [(gateways: ["istio-egressgateway"], port: 80)],
                    route: [(destination: (host: "edition.cnn.com", port: 80), weight: 100)]),
            ])],
    ),
    workload: [OpenLoop(host: "sleep", rate: 50)],
)"#
    )
}

fn stats<'a>(table: &'a [(String, Stats)], name: &str) -> &'a Stats {
    let found = table.iter().find(|(n, _)| n == name);
    let names: Vec<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
    &found
        .unwrap_or_else(|| panic!("no `{name}` in {names:?}"))
        .1
}

fn hops(m: &RunMetrics) -> [u64; 4] {
    [
        stats(&m.routes, "edition.cnn.com/to-gateway").count,
        stats(&m.routes, "edition.cnn.com/to-cnn").count,
        stats(&m.clusters, "istio-egressgateway|cnn").count,
        stats(&m.destinations, "edition.cnn.com/v1").count,
    ]
}

#[test]
fn sidecar_to_egress_gateway_to_the_external_host_hop_by_hop() {
    for policy in ["ALLOW_ANY", "REGISTRY_ONLY"] {
        let m = run(&scenario(&egress(policy, "None")));
        let n = m.generated;
        assert!(n > 800, "{n} requests");
        assert_eq!(status_count(&m, 200), n, "{policy}: every request answered");
        // One request per hop: the sidecar's route to the gateway, the gateway's route to
        // cnn, the gateway's subset cluster, and cnn itself.
        assert_eq!(hops(&m), [n; 4], "{policy}");
        let sleep = stats(&m.destinations, "sleep/v1");
        assert_eq!(sleep.count, n);
        // The relayed hop costs what the gateway's own upstream hop costs, and more: the
        // sidecar's hop contains the gateway's.
        let through_gateway = stats(&m.routes, "edition.cnn.com/to-gateway");
        let at_gateway = stats(&m.routes, "edition.cnn.com/to-cnn");
        let median = |s: &Stats| s.latency.value_at_quantile(0.5);
        assert!(median(through_gateway) >= median(at_gateway));
        let least = at_gateway
            .latency
            .highest_equivalent(at_gateway.latency.min());
        assert!(least >= 20_000_000, "cnn takes 20 ms, {least} ns");
    }
}

#[test]
fn an_application_timeout_resets_the_relayed_request_at_the_gateway() {
    // sleep gives up after 5 ms; cnn takes 20 ms: the sidecar's hop and the gateway's both
    // end as downstream cancels (`DC`), and sleep fails with 500.
    let m = run(&scenario(&egress("ALLOW_ANY", "\"5ms\"")));
    let n = m.generated;
    assert_eq!(status_count(&m, 500), n);
    let [to_gateway, to_cnn, ..] = hops(&m);
    assert_eq!((to_gateway, to_cnn), (n, n));
    let dc = |s: &Stats| s.flags().find(|(f, _)| *f == "DC").map_or(0, |(_, k)| k);
    assert_eq!(dc(stats(&m.routes, "edition.cnn.com/to-gateway")), n);
    assert_eq!(
        dc(stats(&m.routes, "edition.cnn.com/to-cnn")),
        n,
        "the gateway saw its downstream go"
    );
    assert_eq!(flag_count(&m, "DC"), 0, "the client got sleep's answer");
}

#[test]
fn a_gateway_service_needs_a_server_on_its_port_and_a_name_of_its_own() {
    let base = egress("ALLOW_ANY", "None");
    let err = invalid(&base.replace(
        "service: (name: \"istio-egressgateway\", port: 80)",
        "service: (name: \"istio-egressgateway\", port: 8080)",
    ));
    assert!(
        err.contains(
            "no Gateway server of gateway proxy `istio-egressgateway` listens on port 8080"
        ),
        "{err}"
    );
    let err = invalid(&base.replace(
        "service: (name: \"istio-egressgateway\", port: 80)",
        "service: (name: \"sleep\")",
    ));
    assert!(err.contains("`sleep` is already a service's name"), "{err}");
    let err = invalid(&base.replace("subset: \"cnn\", port: 80", "subset: \"cnn\", port: 443"));
    assert!(
        err.contains("is reached on port 80 only, found 443"),
        "{err}"
    );
}

/// Istio's "Egress TLS origination" task: the application sends plain HTTP and the proxy
/// originates TLS (`DestinationRule` `tls.mode: SIMPLE`). In the twin the handshake costs one
/// round trip more per new connection (TLS 1.3's full handshake) and changes nothing else.
#[test]
fn tls_origination_costs_one_round_trip_per_new_connection() {
    let text = |tls: &str| {
        format!(
            r#"Scenario(seed: 5, duration: "10s", network: (latency: Constant("1ms")),
            services: {{
                "web": (versions: {{"v1": (instances: 1, workers: 8, latency: Constant("1ms"))}},
                    calls: [Call(host: "edition.cnn.com")]),
                "edition.cnn.com": (external: true,
                    versions: {{"v1": (instances: 1, workers: 8, latency: Constant("10ms"))}}),
            }},
            mesh: Mesh(destination_rules: [DestinationRule(host: "edition.cnn.com",
                traffic_policy: (
                    connection_pool: (http: (max_requests_per_connection: 1)){tls}))]),
            workload: [OpenLoop(host: "web", rate: 20)])"#
        )
    };
    let hop = |m: &RunMetrics| {
        let s = stats(&m.destinations, "edition.cnn.com/v1");
        (s.count, s.latency.min(), s.latency.max())
    };
    let plain = run(&scenario(&text("")));
    let tls = run(&scenario(&text(
        r#", tls: (mode: "SIMPLE", sni: "edition.cnn.com")"#,
    )));
    let (n, low, high) = hop(&plain);
    assert_eq!(hop(&tls).0, n, "the same requests");
    assert_eq!(status_count(&tls, 200), tls.generated);
    // Plain: connect (2 legs), request and answer (2 legs), 10 ms of work = 14 ms; TLS adds
    // 2 legs. Every connection is new (one request each), so every hop pays it.
    let ms = |ns: u64| (ns as f64 / 1e6 * 10.0).round() / 10.0;
    assert_eq!((ms(low), ms(high)), (14.0, 14.0), "plain");
    let (_, low, high) = hop(&tls);
    assert_eq!((ms(low), ms(high)), (16.0, 16.0), "TLS");
}
