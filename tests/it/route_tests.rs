//! `meshtwin test`: route unit tests end to end, with the exit codes the README documents
//! (0 pass, 1 a failing case or coverage under --fail-under, 65 unreadable input, 2 usage).

use crate::common::{meshtwin, scratch};

const SAMPLES: &str = "istio-config/tests/samples";

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_bundled_gateway_tests_pass_on_the_scenario_and_on_the_istio_sample() {
    let out = meshtwin(&[
        "test",
        "scenarios/route-tests/",
        "--scenario",
        "scenarios/bookinfo.ron",
        "--gateway",
        "bookinfo-gateway",
        "--fail-under",
        "100",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("3 cases: 3 passed, 0 failed\nCurrent route coverage: 100%\n"),
        "{stdout}"
    );
    let gateway = format!("{SAMPLES}/bookinfo-gateway.yaml");
    let out = meshtwin(&[
        "test",
        "scenarios/route-tests/bookinfo-gateway.yaml",
        "--istio",
        &gateway,
        "--gateway",
        "default/bookinfo-gateway",
    ]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

fn write(name: &str, body: &str) -> String {
    let dir = scratch("route-tests", name);
    let path = dir.join("tests.yaml");
    std::fs::write(&path, body).expect("write tests");
    path.display().to_string()
}

const JASON: &str = "testCases:
- description: jason gets v2
  wantMatch: true
  request: {authority: [reviews], method: [GET], uri: [/reviews/0], headers: {end-user: jason}}
  route: [{destination: {host: reviews, subset: v2}}]
";

#[test]
fn a_failing_case_exits_1_and_says_what_it_got() {
    let tests = write("failing", &JASON.replace("v2}", "v1}"));
    let vs = format!("{SAMPLES}/virtual-service-reviews-jason-v2-v3.yaml");
    let out = meshtwin(&["test", &tests, "--istio", &vs]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("FAIL  jason gets v2"), "{stdout}");
    assert!(
        stdout.contains("matched VirtualService default/reviews http[0]"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 1 route test cases failed"),
        "{stderr}"
    );
}

#[test]
fn coverage_under_fail_under_exits_1_and_lists_the_rule_not_reached() {
    let tests = write("coverage", JASON);
    let vs = format!("{SAMPLES}/virtual-service-reviews-jason-v2-v3.yaml");
    let out = meshtwin(&["test", &tests, "--istio", &vs, "--fail-under", "50"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = meshtwin(&["test", &tests, "--istio", &vs, "--fail-under", "60"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("Current route coverage: 50%\n"), "{stdout}");
    assert!(
        stdout.contains("not reached: VirtualService default/reviews http[1]"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Failed to meet coverage requirement: 60%"),
        "{stderr}"
    );
}

#[test]
fn unreadable_inputs_exit_65_and_usage_errors_2() {
    let vs = format!("{SAMPLES}/virtual-service-reviews-jason-v2-v3.yaml");
    let bad = write(
        "bad",
        "testCases:\n- description: x\n  wantMatch: yes please\n",
    );
    let out = meshtwin(&["test", &bad, "--istio", &vs]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(
        stderr.contains(
            "tests.yaml:3:14: testCases[0].wantMatch: expected true or false, found a string"
        ),
        "{stderr}"
    );
    let out = meshtwin(&["test", "/nonexistent/tests.yaml", "--istio", &vs]);
    assert_eq!(out.status.code(), Some(65), "{:?}", text(&out));
    let tests = write("usage", JASON);
    let out = meshtwin(&["test", &tests]);
    assert_eq!(out.status.code(), Some(2), "no config: {:?}", text(&out));
    let out = meshtwin(&["test", &tests, "--istio", &vs, "--fail-under", "101"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}
