//! Each diagnostic fires on a minimal config that has the problem, with istioctl's message,
//! and the Bookinfo samples that are fine stay silent.

use istio_config::analyze::{analyze, Diagnostic, Input, Level};
use istio_config::{import_paths, import_text, Imported, Options};
use std::path::PathBuf;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

/// A scenario (RON, unvalidated) for the workload-aware checks.
const SCENARIO: &str = r#"Scenario(
    duration: "10s",
    services: {
        "reviews": Service(versions: {"v1": (instances: 1, latency: Constant("1ms")), "v2": (instances: 1, latency: Constant("1ms"))}),
        "ratings": Service(versions: {"v1": (instances: 1, latency: Constant("1ms"))}),
        "front": Service(versions: {"v1": (instances: 1, latency: Constant("1ms"))}, calls: [
            Call(host: "reviews", timeout: "1s", retries: 2),
        ]),
    },
    gateway_proxies: {"ingress": (labels: {"istio": "ingressgateway"})},
    workload: [
        OpenLoop(name: "users", host: "front", rate: 10),
        OpenLoop(name: "web", host: "example.com", via: (gateway: "ingress", port: 80), rate: 1),
    ],
)"#;

fn import(yaml: &str) -> Imported {
    let mut imported = Imported::default();
    import_text(&mut imported, "t.yaml", yaml, Options::default()).expect("imports");
    imported
}

fn run(imported: &Imported, with_scenario: bool) -> Vec<Diagnostic> {
    let mut scenario = sim_core::load::parse("s.ron", SCENARIO).expect("scenario parses");
    scenario.mesh = imported.mesh.clone();
    sim_core::load::shorten_hosts(&mut scenario);
    let input = Input {
        mesh: if with_scenario {
            &scenario.mesh
        } else {
            &imported.mesh
        },
        origins: Some(&imported.origins),
        scenario: with_scenario.then_some(&scenario),
        file: Some("s.ron"),
        kubernetes_services: &imported.kubernetes_services,
    };
    analyze(input)
}

/// The one diagnostic with `code`, asserting its level and message.
fn expect(found: &[Diagnostic], code: &str, level: Level, message: &str) {
    let hits: Vec<&Diagnostic> = found.iter().filter(|d| d.code == code).collect();
    assert!(
        hits.iter()
            .any(|d| d.level == level && d.message == message),
        "want {code} {level:?} {message:?}, got {found:#?}"
    );
}

const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n";
const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n";
const GW: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\n";

#[test]
fn ist0101_names_the_missing_gateway_host_subset_and_selector() {
    let yaml = format!(
        "{VS}metadata: {{name: r}}\nspec:\n  hosts: [reviews]\n  gateways: [mesh, nope]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: v9}}\n    mirror: {{host: reviews-bogus}}\n---\n{DR}metadata: {{name: reviews}}\nspec:\n  host: reviews\n  subsets: [{{name: v1, labels: {{version: v1}}}}]\n---\n{GW}metadata: {{name: gw}}\nspec:\n  selector: {{istio: nope}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]\n"
    );
    let found = run(&import(&yaml), true);
    expect(
        &found,
        "IST0101",
        Level::Error,
        "Referenced gateway not found: \"nope\"",
    );
    expect(
        &found,
        "IST0101",
        Level::Error,
        "Referenced mirror host not found: \"reviews-bogus\"",
    );
    expect(
        &found,
        "IST0101",
        Level::Error,
        "Referenced host+subset in destinationrule not found: \"reviews+v9\"",
    );
    expect(
        &found,
        "IST0101",
        Level::Error,
        "Referenced selector not found: \"istio=nope\"",
    );
    let line = found
        .iter()
        .find(|d| d.message.contains("gateway not found"))
        .expect("one");
    assert_eq!(
        line.to_string(),
        "Error [IST0101] (VirtualService default/r t.yaml:1) Referenced gateway not found: \"nope\""
    );
}

#[test]
fn ist0101_host_without_a_scenario_goes_by_the_kubernetes_services_of_the_yaml() {
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews}}\n---\n{VS}metadata: {{name: r}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews-bogus}}\n"
    );
    let found = run(&import(&yaml), false);
    expect(
        &found,
        "IST0101",
        Level::Error,
        "Referenced host not found: \"reviews-bogus\"",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn ist0104_a_gateway_port_no_traffic_reaches() {
    let yaml = format!(
        "{GW}metadata: {{name: httpbin-gateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - {{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}\n  - {{port: {{number: 8004, name: http2, protocol: HTTP}}, hosts: ['*']}}\n"
    );
    let found = run(&import(&yaml), true);
    expect(
        &found,
        "IST0104",
        Level::Warning,
        "The gateway refers to a port that is not exposed on the workload (pod selector istio=ingressgateway; port 8004)",
    );
    assert_eq!(found.iter().filter(|d| d.code == "IST0104").count(), 1);
}

#[test]
fn ist0109_two_mesh_virtual_services_for_one_host() {
    let yaml = format!(
        "{VS}metadata: {{name: a}}\nspec:\n  hosts: [reviews]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n---\n{VS}metadata: {{name: b}}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"
    );
    let found = run(&import(&yaml), false);
    let message = "The VirtualServices default/a,default/b associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.";
    expect(&found, "IST0109", Level::Error, message);
    assert_eq!(
        found.iter().filter(|d| d.code == "IST0109").count(),
        2,
        "one per VirtualService"
    );
}

#[test]
fn ist0128_and_ist0129_tls_origination_without_ca_certificates() {
    let yaml = format!(
        "{DR}metadata: {{name: a}}\nspec:\n  host: a.example.com\n  trafficPolicy: {{tls: {{mode: SIMPLE}}}}\n---\n{DR}metadata: {{name: b, namespace: shop}}\nspec:\n  host: b.example.com\n  trafficPolicy:\n    portLevelSettings: [{{port: {{number: 443}}, tls: {{mode: MUTUAL}}}}]\n---\n{DR}metadata: {{name: c}}\nspec:\n  host: c.example.com\n  trafficPolicy: {{tls: {{mode: SIMPLE, caCertificates: /etc/ca.pem}}}}\n"
    );
    let found = run(&import(&yaml), false);
    expect(&found, "IST0128", Level::Warning, "DestinationRule a in namespace default has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: a.example.com");
    expect(&found, "IST0129", Level::Warning, "DestinationRule b in namespace shop has TLS mode set to MUTUAL but no caCertificates are set to validate server identity for host: b.example.com at port 443");
    assert_eq!(found.len(), 2, "{found:#?}");
}

#[test]
fn ist0130_and_ist0131_unreachable_rules_and_ineffective_matches() {
    // Two match-less rules: the second is never used.
    let yaml = format!(
        "{VS}metadata: {{name: r}}\nspec:\n  hosts: [reviews]\n  http:\n  - fault: {{abort: {{httpStatus: 503, percentage: {{value: 10}}}}}}\n    route: [{{destination: {{host: reviews}}}}]\n  - route: [{{destination: {{host: reviews}}}}]\n"
    );
    let found = run(&import(&yaml), true);
    expect(
        &found,
        "IST0130",
        Level::Warning,
        "VirtualService rule #1 not used (only the last rule can have no matches).",
    );
    let yaml = format!(
        "{VS}metadata: {{name: r}}\nspec:\n  hosts: [reviews]\n  http:\n  - name: first\n    match: [{{uri: {{prefix: /api}}}}, {{uri: {{exact: /x}}}}]\n    route: [{{destination: {{host: reviews}}}}]\n  - match: [{{name: again, uri: {{exact: /x}}}}]\n    route: [{{destination: {{host: reviews}}}}]\n  - match: [{{uri: {{prefix: /api/v1}}}}]\n    route: [{{destination: {{host: reviews}}}}]\n  - route: [{{destination: {{host: reviews}}}}]\n  - match: [{{uri: {{exact: /late}}}}]\n    route: [{{destination: {{host: reviews}}}}]\n"
    );
    let found = run(&import(&yaml), true);
    expect(&found, "IST0131", Level::Info, "VirtualService rule #1 match \"again\" is not used (duplicate/overlapping match in rule \"first\").");
    expect(
        &found,
        "IST0130",
        Level::Warning,
        "VirtualService rule #1 not used (all matches used by prior rules).",
    );
    expect(&found, "IST0131", Level::Info, "VirtualService rule #2 match #0 of prefix /api/v1 is not used (duplicate/overlapping match in rule #0 of prefix /api on \"first\").");
    expect(
        &found,
        "IST0130",
        Level::Warning,
        "VirtualService rule #4 not used (route without matches defined before).",
    );
}

#[test]
fn ist0132_a_host_the_gateway_does_not_serve() {
    let yaml = format!(
        "{GW}metadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [foo.bar]}}]\n---\n{VS}metadata: {{name: r}}\nspec:\n  hosts: [bad.bar]\n  gateways: [gw]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"
    );
    let found = run(&import(&yaml), true);
    expect(&found, "IST0132", Level::Warning, "one or more host [bad.bar] defined in VirtualService default/r not found in Gateway default/gw.");
}

#[test]
fn ist0145_the_conflicting_gateways_of_the_istio_docs() {
    let yaml = format!(
        "{GW}metadata: {{name: alpha}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [foo.example.com]}}]\n---\n{GW}metadata: {{name: beta}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*.example.com']}}]\n"
    );
    let found = run(&import(&yaml), true);
    let alpha = found
        .iter()
        .find(|d| d.code == "IST0145" && d.origin == "Gateway default/alpha")
        .expect("alpha");
    assert_eq!(
        alpha.to_string(),
        "Error [IST0145] (Gateway default/alpha t.yaml:1) Conflict with gateways default/beta (workload selector istio=ingressgateway, port 80, hosts foo.example.com)."
    );
}

#[test]
fn ist0173_a_subset_that_selects_no_instance() {
    let yaml = format!(
        "{DR}metadata: {{name: reviews}}\nspec:\n  host: reviews\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v4, labels: {{version: v4}}}}\n"
    );
    let found = run(&import(&yaml), true);
    expect(&found, "IST0173", Level::Error, "The Subset v4 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).");
    assert_eq!(found.iter().filter(|d| d.code == "IST0173").count(), 1);
}

#[test]
fn meshtwin_codes_for_timeouts_and_retries() {
    let yaml = format!(
        "{VS}metadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n  - timeout: 2s\n    retries: {{attempts: 3, perTryTimeout: 2s}}\n    route: [{{destination: {{host: reviews}}}}]\n"
    );
    let found = run(&import(&yaml), true);
    expect(&found, "MT0001", Level::Warning, "route reviews/0: perTryTimeout 2s is not below the route timeout 2s: Envoy ignores it, so one try may use the whole timeout and no retry fits");
    // front gives reviews 1 s, the route may spend min(4 × 2 s, 2 s) = 2 s.
    expect(&found, "MT0003", Level::Warning, "front gives its calls to reviews 1s, but route reviews/0 may spend up to 2s on 4 tries of 2s: tries after 1s are wasted (the caller has given up)");
    // users → front (3 tries, Istio's default) → reviews (3 app tries × 4 mesh tries).
    expect(&found, "MT0002", Level::Info, "retries multiply across hops: one request can become up to 36 attempts at reviews (front ×3 → reviews ×3×4); retry at one layer, or bound the others");
}

#[test]
fn mt0004_a_timeline_that_names_a_subset_before_its_rule() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios/blue-green-ordering.ron");
    let s = sim_core::load::load(&path).expect("loads");
    let found = analyze(Input {
        mesh: &s.mesh,
        origins: None,
        scenario: Some(&s),
        file: Some("blue-green-ordering.ron"),
        kubernetes_services: &[],
    });
    let hit = found.iter().find(|d| d.code == "MT0004").expect("MT0004");
    assert!(hit.message.contains("subset `v2`"), "{hit}");
    assert!(hit.message.contains("from 30s until 32s"), "{hit}");
}

#[test]
fn the_bookinfo_samples_that_are_fine_stay_silent() {
    let base = [
        samples().join("bookinfo.yaml"),
        samples().join("bookinfo-gateway.yaml"),
        samples().join("destination-rule-all.yaml"),
    ];
    let tasks = [
        "virtual-service-all-v1.yaml",
        "virtual-service-details-v2.yaml",
        "virtual-service-ratings-test-abort.yaml",
        "virtual-service-ratings-test-delay.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews-90-10.yaml",
        "virtual-service-reviews-jason-v2-v3.yaml",
        "virtual-service-reviews-test-v2.yaml",
        "virtual-service-reviews-v2-v3.yaml",
        "virtual-service-reviews-v3.yaml",
    ];
    for task in tasks {
        let mut paths = base.to_vec();
        paths.push(samples().join(task));
        let imported = import_paths(&paths, Options::default()).expect("imports");
        let found = analyze(Input {
            mesh: &imported.mesh,
            origins: Some(&imported.origins),
            scenario: None,
            file: None,
            kubernetes_services: &imported.kubernetes_services,
        });
        assert!(found.is_empty(), "{task}: {found:#?}");
    }
}

#[test]
fn two_task_files_for_one_host_conflict_as_in_a_cluster() {
    let paths = [
        samples().join("bookinfo.yaml"),
        samples().join("virtual-service-all-v1.yaml"),
        samples().join("virtual-service-reviews-v3.yaml"),
        samples().join("destination-rule-all.yaml"),
    ];
    let imported = import_paths(&paths, Options::default()).expect("imports");
    let found = analyze(Input {
        mesh: &imported.mesh,
        origins: Some(&imported.origins),
        scenario: None,
        file: None,
        kubernetes_services: &imported.kubernetes_services,
    });
    assert!(found.iter().all(|d| d.code == "IST0109"), "{found:#?}");
    assert_eq!(found.len(), 2, "{found:#?}");
}
