//! Route unit tests (`istio_config::routetest`) on Istio's Bookinfo samples (copied in
//! `tests/samples`, Apache-2.0) and on small configs with a known answer.

use istio_config::routetest::{self, Target};
use istio_config::{import_paths, import_text, Imported, Options};
use std::path::PathBuf;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples")
        .join(name)
}

fn target_of(imported: &Imported) -> Target {
    let mut mesh = imported.mesh.clone();
    let registry = routetest::registry_for(&mut mesh);
    let names = (imported.origins.virtual_services.iter())
        .map(|o| (o.resource(), format!("{}:{}", o.file, o.line)))
        .collect();
    Target::new(mesh, &registry, names).expect("compiles")
}

fn samples(names: &[&str]) -> Target {
    let paths: Vec<PathBuf> = names.iter().map(|n| sample(n)).collect();
    target_of(&import_paths(&paths, Options::default()).expect("imports"))
}

fn yaml(text: &str) -> Target {
    let mut imported = Imported::default();
    import_text(&mut imported, "config.yaml", text, Options::default()).expect("imports");
    target_of(&imported)
}

fn cases(text: &str) -> Vec<routetest::TestCase> {
    routetest::parse("tests.yaml", text).expect("test file parses")
}

const JASON: &str = r#"
testCases:
  - description: jason gets v2
    wantMatch: true
    request:
      authority: ["reviews"]
      method: ["GET"]
      uri: ["/reviews/0"]
      headers: {end-user: jason}
    route:
      - destination: {host: reviews, subset: v2}
"#;

const OTHERS: &str = r#"
  - description: everyone else gets v3, short name or FQDN
    wantMatch: true
    request:
      authority: ["reviews", "reviews.default.svc.cluster.local", "reviews:9080"]
      method: ["GET", "POST"]
      uri: ["/reviews/0", "/"]
    route:
      - destination: {host: reviews.default.svc.cluster.local, subset: v3}
"#;

fn jason_rules() -> Target {
    samples(&[
        "virtual-service-reviews-jason-v2-v3.yaml",
        "destination-rule-reviews.yaml",
    ])
}

#[test]
fn passing_cases_pass_and_every_combination_is_a_request() {
    let target = jason_rules();
    let tests = cases(&format!("{JASON}{OTHERS}"));
    assert_eq!(
        tests[1].requests.len(),
        3 * 2 * 2,
        "authority × method × uri"
    );
    let report = routetest::run(&tests, &target);
    let text = report.render(&tests, &target);
    assert_eq!(report.failed(), 0, "{text}");
    assert_eq!(report.outcomes[1].requests, 12);
    assert_eq!(report.coverage(), 100.0);
    assert!(text.contains("Current route coverage: 100%\n"), "{text}");
}

#[test]
fn coverage_counts_the_rules_no_request_reaches() {
    let target = jason_rules();
    let tests = cases(JASON);
    let report = routetest::run(&tests, &target);
    assert_eq!(report.failed(), 0);
    // Two rules, one reached.
    assert_eq!(report.rules.len(), 2);
    assert_eq!(report.coverage(), 50.0);
    let text = report.render(&tests, &target);
    assert!(text.contains("Current route coverage: 50%\n"), "{text}");
    assert!(
        text.contains("not reached: VirtualService default/reviews http[1]"),
        "{text}"
    );
}

#[test]
fn coverage_is_printed_as_router_check_tool_prints_a_double() {
    // Three rules, one reached: 33.3333%, six significant digits as a C++ stream.
    let target = samples(&[
        "virtual-service-reviews-jason-v2-v3.yaml",
        "virtual-service-ratings-test-abort.yaml",
        "destination-rule-all.yaml",
    ]);
    let tests = cases(JASON);
    let report = routetest::run(&tests, &target);
    let text = report.render(&tests, &target);
    assert_eq!(report.rules.len(), 4, "{text}");
    assert!(text.contains("Current route coverage: 25%\n"), "{text}");
    let target = samples(&[
        "virtual-service-reviews-jason-v2-v3.yaml",
        "virtual-service-details-v2.yaml",
        "destination-rule-all.yaml",
    ]);
    let report = routetest::run(&tests, &target);
    let text = report.render(&tests, &target);
    assert_eq!(report.rules.len(), 3, "{text}");
    assert!(
        text.contains("Current route coverage: 33.3333%\n"),
        "{text}"
    );
}

#[test]
fn a_wrong_expectation_fails_and_names_the_rule_it_matched() {
    let target = jason_rules();
    let tests = cases(&JASON.replace("subset: v2", "subset: v1"));
    let report = routetest::run(&tests, &target);
    assert_eq!(report.failed(), 1);
    let failure = &report.outcomes[0].failures[0];
    assert!(
        failure.starts_with("GET reviews/reviews/0 [end-user: jason]: matched VirtualService default/reviews http[0]"),
        "{failure}"
    );
    assert!(
        failure.contains(r#"route: got [{"destination":{"host":"reviews","subset":"v2"}}], want [{"destination":{"host":"reviews","subset":"v1"}}]"#),
        "{failure}"
    );
    assert!(report
        .render(&tests, &target)
        .starts_with("FAIL  jason gets v2"));
}

#[test]
fn want_match_false_passes_when_the_rule_differs_and_fails_when_it_is_the_same() {
    let target = jason_rules();
    let differs = JASON
        .replace("wantMatch: true", "wantMatch: false")
        .replace("subset: v2", "subset: v3");
    assert_eq!(routetest::run(&cases(&differs), &target).failed(), 0);
    // Unset is false, as the validator's Go zero value.
    let unset = JASON.replace("    wantMatch: true\n", "");
    let report = routetest::run(&cases(&unset), &target);
    assert_eq!(report.failed(), 1);
    assert!(report.outcomes[0].failures[0].contains("want anything else (wantMatch: false)"));
}

#[test]
fn random_value_picks_the_weighted_destination_as_router_check_tool() {
    // reviews 80 % v1, 20 % v2: draw = randomValue % 100; [0, 80) → v1, [80, 100) → v2
    // (Envoy's WeightedClusterEntry walk over cumulative weights).
    let target = samples(&[
        "virtual-service-reviews-80-20.yaml",
        "destination-rule-reviews.yaml",
    ]);
    for value in [0u64, 1, 79, 80, 99, 100, 179, 180, 12_345] {
        let want = if value % 100 < 80 { "v1" } else { "v2" };
        let text = format!(
            r#"
testCases:
  - description: draw {value}
    wantMatch: true
    randomValue: {value}
    request: {{authority: [reviews], method: [GET], uri: [/]}}
    destination: {{host: reviews, subset: {want}}}
"#
        );
        let tests = cases(&text);
        let report = routetest::run(&tests, &target);
        assert_eq!(report.failed(), 0, "{}", report.render(&tests, &target));
    }
}

#[test]
fn a_pick_on_an_undefined_subset_is_reported_as_such() {
    // No destination rule: the subsets are undefined, the pick is a 503 NC.
    let target = samples(&["virtual-service-reviews-80-20.yaml"]);
    let tests = cases(
        "testCases:\n- description: nc\n  wantMatch: true\n  request: {authority: [reviews], method: [GET], uri: [/]}\n  destination: {host: reviews, subset: v1}\n",
    );
    let report = routetest::run(&tests, &target);
    let failure = &report.outcomes[0].failures[0];
    assert!(
        failure.ends_with("destination: got an undefined subset, 503 NC, want reviews|v1"),
        "{failure}"
    );
}

const EDGE: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: web}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: web}
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http:
  - name: old-api
    match: [{uri: {prefix: /v1/}}]
    redirect: {uri: /v2/, redirectCode: 308}
  - name: api
    match: [{uri: {prefix: /v2/}}]
    rewrite: {uri: /}
    headers:
      request:
        set: {x-api: "2"}
    route:
    - destination: {host: api}
  - name: slow
    match: [{headers: {x-test: {exact: slow}}}]
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 50}}
    route:
    - destination: {host: shop}
  - name: shop
    route:
    - destination: {host: shop}
"#;

#[test]
fn redirect_rewrite_fault_and_headers_are_checked_at_a_gateway() {
    let mut target = yaml(EDGE);
    target.at_gateway("web/edge").expect("the gateway exists");
    let tests = cases(
        r#"
testCases:
- description: v1 is redirected
  wantMatch: true
  request: {authority: [shop.example.com], method: [GET, HEAD], uri: [/v1/items]}
  redirect: {uri: /v2/, redirectCode: 308}
- description: v2 is rewritten, with a header
  wantMatch: true
  request: {authority: ["shop.example.com", "shop.example.com:80"], method: [GET], uri: [/v2/items]}
  rewrite: {uri: /}
  headers: {request: {set: {x-api: "2"}}}
  route: [{destination: {host: api.web.svc.cluster.local}}]
- description: slow test header gets the delay
  wantMatch: true
  request: {authority: [shop.example.com], method: [GET], uri: [/], headers: {X-Test: slow}}
  fault: {delay: {fixedDelay: 2s, percentage: {value: 50}}}
- description: the rest has no fault
  wantMatch: false
  request: {authority: [shop.example.com], method: [GET], uri: [/]}
  fault: {delay: {fixedDelay: 2s, percentage: {value: 50}}}
"#,
    );
    let report = routetest::run(&tests, &target);
    let text = report.render(&tests, &target);
    assert_eq!(report.failed(), 0, "{text}");
    assert_eq!(report.coverage(), 100.0, "{text}");
    // The same requests at a sidecar match nothing (the service is bound to the gateway only).
    let sidecar = yaml(EDGE);
    let report = routetest::run(&tests[..1], &sidecar);
    assert_eq!(report.failed(), 1);
    assert!(report.outcomes[0].failures[0].contains("no VirtualService rule matched (404 NR)"));
    assert!(report.rules.is_empty());
}

#[test]
fn an_unknown_gateway_is_an_error_listing_the_known_ones() {
    let mut target = yaml(EDGE);
    let e = target
        .at_gateway("default/edge")
        .expect_err("not in default");
    assert_eq!(e, "no Gateway default/edge; the config has: web/edge");
}

fn parse_error(text: &str) -> String {
    routetest::parse("tests.yaml", text)
        .expect_err("must not parse")
        .to_string()
}

#[test]
fn bad_test_files_are_errors_with_file_line_and_field() {
    let base = "testCases:\n- description: x\n  wantMatch: true\n  request: {authority: [a], method: [GET], uri: [/]}\n";
    assert_eq!(
        parse_error(&format!("{base}  rout: []\n")),
        "tests.yaml:5:3: testCases[0].rout: unknown field `rout` of a test case, expected one of: \
         description, wantMatch, request, route, redirect, rewrite, fault, headers, delegate, \
         randomValue, destination"
    );
    assert_eq!(
        parse_error("testCases:\n- description: x\n  route: []\n"),
        "tests.yaml:2:3: testCases[0].request: missing field `request`"
    );
    assert_eq!(
        parse_error(&base.replace("method: [GET]", "method: []")),
        "tests.yaml:4:37: testCases[0].request.method: the list is empty: give at least one value"
    );
    assert!(parse_error(base).contains("nothing to check"));
    assert_eq!(
        parse_error(&format!("{base}  route: [{{destination: {{host: a}}, weight: many}}]\n")),
        "tests.yaml:5:44: testCases[0].route[0].weight: invalid type: string \"many\", expected u32"
    );
    let unmodeled = parse_error(&format!(
        "{base}  route: [{{destination: {{host: a}}, headers: {{request: {{set: {{a: b}}}}}}}}]\n"
    ));
    assert!(
        unmodeled.contains("testCases[0].route[0].headers: not modeled"),
        "{unmodeled}"
    );
    assert!(
        unmodeled.ends_with("so it cannot be checked"),
        "{unmodeled}"
    );
    assert!(parse_error(&format!("{base}  delegate: {{name: x}}\n")).contains("delegate"));
    assert_eq!(
        parse_error("testCases:\n  - a: [1\n"),
        "tests.yaml:3:1: YAML syntax: while parsing a flow sequence, expected ',' or ']'"
    );
    assert_eq!(
        parse_error("tests: []\n"),
        "tests.yaml:1:1: tests: unknown field `tests`, expected `testCases`"
    );
}
