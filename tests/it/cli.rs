//! The `meshtwin` binary: bad input gives a clear error (file, line, column, field) and a
//! non-zero exit, never a panic; `run --json` is byte-identical for a seed.

use crate::common::meshtwin;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A scratch directory unique to this test.
fn scratch(test: &str) -> PathBuf {
    crate::common::scratch("cli", test)
}

const GOOD: &str = r#"Scenario(
    seed: 5,
    duration: "2s",
    services: {
        "web": Service(versions: {"v1": (instances: 2, workers: 4, latency: Exponential(mean: "2ms"))}),
    },
    workload: [OpenLoop(host: "web", rate: 100)],
)
"#;

/// Writes `template` with `from` replaced by `to`, validates it, checks the failure is an
/// error (exit 1, the file named, no panic) and returns stderr.
fn invalid_from(template: &str, test: &str, from: &str, to: &str) -> String {
    assert!(
        template.contains(from),
        "bad test: {from:?} not in the template"
    );
    let path = scratch(test).join("bad.ron");
    std::fs::write(&path, template.replacen(from, to, 1)).expect("write");
    let out = meshtwin(&["validate", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:", path.display())),
        "names the file: {stderr}"
    );
    stderr
}

/// `GOOD` with one edit, validated.
fn invalid(test: &str, from: &str, to: &str) -> String {
    invalid_from(GOOD, test, from, to)
}

#[test]
fn good_scenario_validates() {
    let path = scratch("good").join("good.ron");
    std::fs::write(&path, GOOD).expect("write");
    let out = meshtwin(&["validate", path.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 service, 2 instances"));
}

#[test]
fn unknown_field_is_named_with_its_position() {
    let err = invalid("unknown", "workers: 4,", "workers: 4, wrokers: 5,");
    assert!(err.contains("bad.ron:5:"), "line: {err}");
    assert!(
        err.contains("services.web.versions.v1"),
        "field path: {err}"
    );
    assert!(err.contains("wrokers"), "the unknown field: {err}");
}

#[test]
fn bad_duration_says_what_is_expected() {
    let err = invalid("duration", "\"2s\"", "\"2 fortnights\"");
    assert!(err.contains("bad.ron:3:"), "line: {err}");
    assert!(err.contains("duration"), "field: {err}");
    assert!(err.contains("invalid duration `2 fortnights`"), "{err}");
    assert!(err.contains("\"250ms\""), "shows an example: {err}");
}

#[test]
fn weight_that_is_not_a_number_is_rejected() {
    let err = invalid(
        "weight",
        "workload: [OpenLoop(host: \"web\", rate: 100)]",
        "workload: [OpenLoop(host: \"web\", rate: 100, requests: [(weight: \"heavy\", path: \"/\")])]",
    );
    assert!(err.contains("bad.ron:7:"), "line: {err}");
    assert!(
        err.contains("workload[0].OpenLoop.requests[0].weight"),
        "field: {err}"
    );
    assert!(err.to_lowercase().contains("expected"), "{err}");
}

#[test]
fn reference_to_an_undefined_service_is_rejected() {
    let err = invalid("undefined", "host: \"web\"", "host: \"wbe\"");
    assert!(err.contains("bad.ron:7:"), "line: {err}");
    assert!(err.contains("workload[0].host"), "field: {err}");
    assert!(err.contains("unknown service `wbe`"), "{err}");
    assert!(err.contains("(web)"), "lists the known services: {err}");
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let out = meshtwin(&["run", "/nonexistent/scenario.ron"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("cannot read the scenario"), "{stderr}");
}

fn run_json(dir: &Path, name: &str, seed: &str) -> Vec<u8> {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/basic.ron");
    let json = dir.join(name);
    let out = meshtwin(&[
        "run",
        scenario.to_str().expect("utf-8"),
        "--seed",
        seed,
        "--duration",
        "5s",
        "--quiet",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--quiet prints nothing");
    std::fs::read(json).expect("report written")
}

#[test]
fn run_json_is_byte_identical_per_seed() {
    let dir = scratch("determinism");
    let a = run_json(&dir, "a.json", "9");
    let b = run_json(&dir, "b.json", "9");
    let c = run_json(&dir, "c.json", "10");
    assert!(a == b, "same seed, different bytes");
    assert!(a != c, "different seed, same bytes");
    let v: serde_json::Value = serde_json::from_slice(&a).expect("JSON");
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["seed"], 9);
    assert!(v.get("wall_time").is_none() && !String::from_utf8_lossy(&a).contains("wall"));
}

#[test]
fn run_prints_a_summary_with_wall_clock_figures() {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/basic.ron");
    let out = meshtwin(&["run", scenario.to_str().expect("utf-8"), "--duration", "2s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "scenario basic (sim), seed 42",
        "backend/v2",
        "simulated requests/s",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
}

const ROUTED: &str = r#"Scenario(
    duration: "2s",
    services: {
        "web": Service(versions: {
            "v1": (instances: 1, latency: Constant("1ms")),
            "v2": (instances: 1, latency: Constant("1ms")),
        }),
    },
    mesh: Mesh(
        virtual_services: [VirtualService(hosts: ["web"], http: [
            HttpRoute(match: [(uri: Regex("/api/.*"))], route: [(destination: (host: "web", subset: "v2"))]),
            HttpRoute(route: [(destination: (host: "web", subset: "v1"), weight: 90), (destination: (host: "web", subset: "v2"), weight: 10)]),
        ])],
        destination_rules: [DestinationRule(host: "web", subsets: [
            (name: "v1", labels: {"version": "v1"}), (name: "v2", labels: {"version": "v2"}),
        ])],
    ),
    workload: [OpenLoop(host: "web", rate: 10)],
)
"#;

/// `ROUTED` with one edit, validated.
fn invalid_mesh(test: &str, from: &str, to: &str) -> String {
    invalid_from(ROUTED, test, from, to)
}

#[test]
fn routed_template_is_valid() {
    let path = scratch("routed").join("ok.ron");
    std::fs::write(&path, ROUTED).expect("write");
    let out = meshtwin(&["validate", path.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn regex_that_does_not_compile_is_located() {
    let err = invalid_mesh("regex", "\"/api/.*\"", "\"/api/(.*\"");
    assert!(err.contains("bad.ron:11:"), "line: {err}");
    assert!(
        err.contains("mesh.virtual_services[0].http[0].match[0].uri"),
        "field: {err}"
    );
    assert!(err.contains("regex `/api/(.*` does not compile"), "{err}");
}

#[test]
fn undefined_subset_is_located() {
    let err = invalid_mesh(
        "subset",
        "subset: \"v2\"), weight: 10",
        "subset: \"v3\"), weight: 10",
    );
    assert!(err.contains("bad.ron:12:"), "line: {err}");
    assert!(
        err.contains("mesh.virtual_services[0].http[1].route[1].destination.subset"),
        "field: {err}"
    );
    assert!(
        err.contains("subset `v3` is not defined for host `web`"),
        "{err}"
    );
}

#[test]
fn negative_weight_is_located() {
    let err = invalid_mesh("negative", "weight: 90", "weight: -90");
    assert!(err.contains("bad.ron:12:"), "line: {err}");
    assert!(
        err.contains("mesh.virtual_services[0].http[1].route[0].weight"),
        "field: {err}"
    );
    assert!(err.to_lowercase().contains("expected"), "{err}");
}

#[test]
fn load_host_header_that_contradicts_host_flag_is_an_error() {
    // `-H "Host: x"` replaces the URL's authority; with a different `--host` it is ambiguous.
    let out = meshtwin(&[
        "load",
        "http://127.0.0.1:9/",
        "--rate",
        "1",
        "--host",
        "reviews",
        "-H",
        "Host: ratings",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("contradicts --host"), "{err}");
}

#[test]
fn duplicate_map_keys_are_errors_with_their_position() {
    let err = invalid(
        "dup-service",
        "\"web\": Service(",
        "\"web\": Service(versions: {\"v1\": (instances: 1, latency: Constant(\"1ms\"))}),\n        \"web\": Service(",
    );
    assert!(
        err.contains("bad.ron:6:"),
        "line of the second `web`: {err}"
    );
    assert!(err.contains("duplicate key `web`"), "{err}");
    let err = invalid(
        "dup-header",
        "workload: [OpenLoop(host: \"web\", rate: 100)]",
        "workload: [OpenLoop(host: \"web\", rate: 100, requests: [(path: \"/\", headers: {\"x-a\": \"1\", \"x-a\": \"2\"})])]",
    );
    assert!(err.contains("bad.ron:7:"), "line: {err}");
    assert!(err.contains("duplicate key `x-a`"), "{err}");
}

/// Inputs that used to pass `validate` and then panic, hang or exhaust memory at run time.
#[test]
fn inputs_that_would_break_the_run_are_rejected_naming_the_limit() {
    let err = invalid(
        "mix-overflow",
        "workload: [OpenLoop(host: \"web\", rate: 100)]",
        "workload: [OpenLoop(host: \"web\", rate: 100, requests: [(weight: 4294967295, path: \"/\"), (weight: 1, path: \"/b\")])]",
    );
    assert!(err.contains("workload[0].requests"), "{err}");
    assert!(err.contains("4294967296"), "{err}");
    let err = invalid("fast", "rate: 100", "rate: 1e11");
    assert!(
        err.contains("workload[0].rate") && err.contains("1e7"),
        "{err}"
    );
    let err = invalid(
        "tiny-window",
        "duration: \"2s\",",
        "duration: \"2s\", window: \"1us\",",
    );
    assert!(
        err.contains("bad.ron:3:") || err.contains("bad.ron:4:"),
        "{err}"
    );
    assert!(err.contains("window") && err.contains("100000"), "{err}");
    let err = invalid("many", "instances: 2", "instances: 10000000");
    assert!(err.contains("at most 100000"), "{err}");
    let err = invalid("status", "workers: 4,", "workers: 4, error_status: 150,");
    assert!(
        err.contains("error_status") && err.contains("200..=599"),
        "{err}"
    );
    let err = invalid(
        "method",
        "workload: [OpenLoop(host: \"web\", rate: 100)]",
        "workload: [OpenLoop(host: \"web\", rate: 100, requests: [(method: \"GE T\", path: \"/\")])]",
    );
    assert!(err.contains("requests[0].method"), "{err}");
    let err = invalid(
        "header-name",
        "workload: [OpenLoop(host: \"web\", rate: 100)]",
        "workload: [OpenLoop(host: \"web\", rate: 100, requests: [(path: \"/\", headers: {\"bad name\": \"1\"})])]",
    );
    assert!(err.contains("not a valid HTTP header name"), "{err}");
    let err = invalid(
        "header-value",
        "workload: [OpenLoop(host: \"web\", rate: 100)]",
        "workload: [OpenLoop(host: \"web\", rate: 100, requests: [(path: \"/\", headers: {\"x\": \"a\\r\\nb\"})])]",
    );
    assert!(err.contains("control characters"), "{err}");
    let err = invalid_from(
        &GOOD.replace("\"web\"", "\"we/b\""),
        "name",
        "rate: 100",
        "rate: 100",
    );
    assert!(err.contains("`we/b` is not a usable name"), "{err}");
}

/// A call chain far deeper than the thread's stack would allow a recursive check is validated.
#[test]
fn a_call_chain_of_seventy_thousand_services_validates() {
    let n = 70_000;
    let mut text = String::from("Scenario(seed: 1, duration: \"1s\", services: {\n");
    for i in 0..n {
        let calls = if i + 1 < n {
            format!(", calls: [Call(host: \"s{}\")]", i + 1)
        } else {
            String::new()
        };
        text += &format!(
            "\"s{i}\": Service(versions: {{\"v1\": (instances: 1, latency: Constant(\"1ms\"))}}{calls}),\n"
        );
    }
    text += "}, workload: [OpenLoop(host: \"s0\", rate: 1)])\n";
    let path = scratch("chain").join("chain.ron");
    std::fs::write(&path, text).expect("write");
    let out = meshtwin(&["validate", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}

#[test]
fn error_messages_name_a_field_once_and_the_os_error_once() {
    let err = invalid("syntax", "seed: 5,", "seed: 5");
    assert!(err.contains("bad.ron:3:"), "{err}");
    assert!(!err.contains("?:"), "no unnamed field: {err}");
    assert!(err.contains("(syntax)"), "{err}");
    let out = meshtwin(&["validate", "/nonexistent/scenario.ron"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");
    let path = scratch("utf8").join("bad.ron");
    std::fs::write(&path, b"Scenario(\n  seed: 5, \xff)").expect("write");
    let out = meshtwin(&["validate", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("bad.ron:2:12:"), "{stderr}");
    assert!(stderr.contains("byte 21 is not UTF-8"), "{stderr}");
}

#[test]
fn validate_checks_several_files_and_proxy_configs() {
    let dir = scratch("several");
    let good = dir.join("good.ron");
    std::fs::write(&good, GOOD).expect("write");
    let proxy = dir.join("proxy.ron");
    std::fs::write(
        &proxy,
        "// a proxy\nProxy(\n    listeners: [(name: \"in\", bind: \"127.0.0.1:0\")],\n    mesh: Mesh(virtual_services: [VirtualService(hosts: [\"reviews\"], http: [HttpRoute(route: [(destination: (host: \"reviews\"))])])]),\n    endpoints: {\"reviews\": [(addr: \"127.0.0.1:9\")]},\n)\n",
    )
    .expect("write");
    let out = meshtwin(&[
        "validate",
        good.to_str().expect("utf-8"),
        proxy.to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("good.ron: ok (1 service, 2 instances, 1 workload"),
        "{stdout}"
    );
    assert!(
        stdout.contains("proxy.ron: ok (proxy config: 1 listener, 1 service, 1 endpoint)"),
        "{stdout}"
    );
    // A rule for a host with no endpoints: which host, where, and that `endpoints` is missing.
    let text = std::fs::read_to_string(&proxy).expect("read");
    std::fs::write(
        &proxy,
        text.replace("endpoints: {\"reviews\"", "endpoints: {\"ratings\""),
    )
    .expect("write");
    let out = meshtwin(&["validate", proxy.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("proxy.ron:4:"), "line: {stderr}");
    assert!(
        stderr.contains("host `reviews` has no endpoints"),
        "{stderr}"
    );
    assert!(stderr.contains("under `endpoints`"), "{stderr}");
}

#[test]
fn json_to_stdout_is_json_only_and_a_closed_pipe_ends_quietly() {
    let path = scratch("json-stdout").join("good.ron");
    std::fs::write(&path, GOOD).expect("write");
    let file = path.to_str().expect("utf-8 path");
    let out = meshtwin(&["run", file, "--json", "-"]);
    assert!(out.status.success());
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(json["mode"], "sim");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requests "),
        "summary on stderr"
    );
    // `| head -c 10`: the reader goes away after a few bytes.
    for args in [vec!["run", file, "--json", "-"], vec!["run", file]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshtwin"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawns");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("waits");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {stderr}");
    }
}

#[test]
fn a_timeline_runs_live_and_switches_without_a_failure() {
    // blue-green.ron shortened: the switch at 2 s of 4, pushed over 200 ms.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/blue-green.ron"),
    )
    .expect("scenario");
    let text = text
        .replace("duration: \"60s\"", "duration: \"4s\", drain: \"5s\"")
        .replace("hi: \"1s\"", "hi: \"200ms\"")
        .replace("(at: \"30s\"", "(at: \"2s\"");
    let report = live_report("timeline-live", &text);
    let totals = &report["totals"];
    assert_eq!(report["generated"], totals["count"], "nothing lost");
    assert_eq!(totals["success"], totals["count"], "no request fails");
    let count = |name: &str| {
        (report["destinations"]
            .as_array()
            .expect("destinations")
            .iter())
        .find(|d| d["name"] == name)
        .and_then(|d| d["count"].as_u64())
        .unwrap_or(0)
    };
    // 200 requests/s: about 400 before the switch to blue, 400 after to green.
    assert!(
        count("reviews/v1") > 200 && count("reviews/v2") > 200,
        "{report}"
    );
}

#[test]
fn a_live_run_with_two_workloads_counts_each_request_once() {
    let text = r#"Scenario(
    duration: "2s",
    drain: "5s",
    services: {
        "api": Service(versions: {"v1": (instances: 2, workers: 8, latency: Constant("2ms"))}),
    },
    workload: [
        OpenLoop(host: "api", rate: 100, arrivals: Constant),
        OpenLoop(host: "api", rate: 50, arrivals: Constant),
    ],
)"#;
    let report = live_report("two-workloads-live", text);
    assert_eq!(report["generated"], report["totals"]["count"], "{report}");
    let per_workload: u64 = (report["workloads"].as_array().expect("workloads").iter())
        .filter_map(|w| w["count"].as_u64())
        .sum();
    assert_eq!(Some(per_workload), report["generated"].as_u64(), "{report}");
    // 100 + 50 requests/s for 2 s, sent at constant spacing.
    let generated = report["generated"].as_u64().expect("generated");
    assert!((296..=304).contains(&generated), "{generated}");
}

#[test]
fn a_live_run_scales_a_version_up_and_down_and_loses_nothing() {
    // reviews v1: 2 instances, 4 from 2 s (ready 0.5 s later), 1 from 4 s with 1 s of grace:
    // every instance ever up takes traffic, and with no push delay nothing fails.
    let text = r#"Scenario(
    duration: "6s",
    drain: "5s",
    services: {
        "reviews": Service(versions: {"v1": (instances: 2, workers: 8, latency: Constant("2ms"))}),
    },
    timeline: [
        (at: "2s", change: Scale(service: "reviews", version: "v1", instances: 4, startup: Constant("500ms"))),
        (at: "4s", change: Scale(service: "reviews", version: "v1", instances: 1, grace: "1s")),
    ],
    workload: [OpenLoop(host: "reviews", rate: 100, arrivals: Constant)],
)"#;
    let report = live_report("scale-live", text);
    assert_eq!(report["generated"], report["totals"]["count"], "{report}");
    assert_eq!(
        report["totals"]["success"], report["totals"]["count"],
        "{report}"
    );
    let busy = (report["instances"].as_array().expect("instances").iter())
        .filter(|i| i["requests"].as_u64().is_some_and(|n| n > 0))
        .count();
    assert_eq!(busy, 4, "every instance that was up took traffic: {report}");
}

/// Runs scenario `text` live (`run --live --quiet --json`) in a scratch directory named
/// `test`; asserts it succeeded and returns the JSON report.
fn live_report(test: &str, text: &str) -> serde_json::Value {
    let dir = scratch(test);
    let scenario = dir.join("scenario.ron");
    std::fs::write(&scenario, text).expect("write");
    let json = dir.join("report.json");
    let out = meshtwin(&[
        "run",
        "--live",
        "--quiet",
        &scenario.display().to_string(),
        "--json",
        &json.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json")
}
