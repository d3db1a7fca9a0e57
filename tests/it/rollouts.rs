//! Rollouts through the binary: byte-identical reports for a seed, and the same decisions
//! live as in the simulation.

use crate::common::meshtwin;
use std::path::PathBuf;

fn scratch(test: &str) -> PathBuf {
    crate::common::scratch("rollouts", test)
}

fn bundled(name: &str) -> String {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `scenario` (with `extra` flags) and returns the JSON report's text.
fn report(dir: &std::path::Path, name: &str, scenario: &std::path::Path, extra: &[&str]) -> String {
    let json = dir.join(format!("{name}.json"));
    let mut args = vec!["run", "--quiet", scenario.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    args.extend(["--json", json.to_str().expect("utf-8")]);
    let out = meshtwin(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&json).expect("report")
}

#[test]
fn a_rollout_report_is_byte_identical_for_a_seed() {
    let dir = scratch("bytes");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/canary-rollback.ron");
    let a = report(&dir, "a", &path, &[]);
    let b = report(&dir, "b", &path, &[]);
    assert!(a == b, "same seed, different bytes");
    let v: serde_json::Value = serde_json::from_str(&a).expect("json");
    assert_eq!(v["rollout"]["outcome"], "rolled_back");
    assert_eq!(v["rollout"]["tool"], "flagger");
    let c = report(&dir, "c", &path, &["--seed", "2"]);
    assert_ne!(a, c);
    // The HTML too, with the rollout's charts and decision table.
    let html = |name: &str| {
        let out = dir.join(format!("{name}.html"));
        let p = out.to_str().expect("utf-8");
        report(&dir, name, &path, &["--html", p]);
        std::fs::read_to_string(&out).expect("html")
    };
    let (x, y) = (html("x"), html("y"));
    assert!(x == y, "same seed, different HTML");
    for needle in [
        "<section id=\"rollout\">",
        "Canary weight set by the controller",
        "Share of reviews's traffic by version",
        "<h3>Decisions</h3>",
        "Rolling back reviews failed checks threshold reached 2",
    ] {
        assert!(x.contains(needle), "the HTML has {needle}");
    }
}

/// `canary-rollback.ron` at live speed: Flagger's shortest interval (10 s), 25 % steps to
/// 50 %, the burst when 50 % is reached, the load long enough for the rollback.
fn short_rollback() -> String {
    let mut text = bundled("canary-rollback.ron");
    for (from, to) in [
        ("duration: \"11m\"", "duration: \"65s\""),
        ("start: \"1m\"", "start: \"5s\""),
        (
            "interval: \"1m\",\n            threshold",
            "interval: \"10s\",\n            threshold",
        ),
        ("step_weight: 10", "step_weight: 25"),
        ("start: \"6m\"", "start: \"25s\""),
        ("rate: 200", "rate: 100"),
    ] {
        assert!(text.contains(from), "canary-rollback.ron has {from}");
        text = text.replacen(from, to, 1);
    }
    text.replace("interval: \"1m\"),", "interval: \"10s\"),")
}

/// (time s, phase, canary weight, failed checks) of each decision.
fn decisions(v: &serde_json::Value) -> Vec<(f64, String, u64, u64)> {
    (v["rollout"]["decisions"]
        .as_array()
        .expect("decisions")
        .iter())
    .map(|d| {
        (
            d["at_s"].as_f64().expect("at"),
            d["phase"].as_str().expect("phase").to_owned(),
            d["canary_weight"].as_u64().expect("weight"),
            d["failed_checks"].as_u64().expect("failed"),
        )
    })
    .collect()
}

#[test]
fn live_canary_rollback_reaches_the_simulations_decisions_at_the_same_ticks() {
    let dir = scratch("live");
    let path = dir.join("canary-rollback-short.ron");
    std::fs::write(&path, short_rollback()).expect("write");
    let sim: serde_json::Value =
        serde_json::from_str(&report(&dir, "sim", &path, &[])).expect("json");
    let expected = decisions(&sim);
    // Derived from the config: 5 s new revision, 15 s 25 %, 25 s 50 % (the burst starts),
    // 35 s and 45 s fail, 55 s rolls back.
    let phases: Vec<(f64, &str, u64, u64)> = expected
        .iter()
        .map(|(t, p, w, f)| (*t, p.as_str(), *w, *f))
        .collect();
    assert_eq!(
        phases,
        vec![
            (5.0, "Progressing", 0, 0),
            (15.0, "Progressing", 25, 0),
            (25.0, "Progressing", 50, 0),
            (35.0, "Progressing", 50, 1),
            (45.0, "Progressing", 50, 2),
            (55.0, "Failed", 0, 2),
        ]
    );
    let live: serde_json::Value =
        serde_json::from_str(&report(&dir, "live", &path, &["--live"])).expect("json");
    assert_eq!(live["mode"], "live");
    assert_eq!(
        decisions(&live),
        expected,
        "live decides as the simulation does"
    );
    assert_eq!(live["rollout"]["outcome"], "rolled_back");
    // The live canary's measured success rate during the burst is 95 % give or take the
    // binomial spread of ~500 answers a window.
    let check = &live["rollout"]["decisions"][3]["checks"][0];
    let rate = check["value"].as_f64().expect("a value") / 100.0;
    assert!(
        (rate - 0.95).abs() < 5.0 * (0.95f64 * 0.05 / 400.0).sqrt(),
        "{rate}"
    );
}

/// A blue/green of reviews switched at 2 s, each sidecar receiving every change exactly 2 s
/// late, blue scaled down `delay` after the switch with no termination grace.
fn late_switch(delay: &str) -> String {
    format!(
        r#"Scenario(
    seed: 5, duration: "7s", push_delay: Constant("2s"),
    services: {{
        "productpage": Service(
            versions: {{"v1": (instances: 2, workers: 16, latency: Constant("1ms"))}},
            calls: [Call(host: "reviews", path: "/reviews")],
        ),
        "reviews": Service(versions: {{
            "v1": (instances: 2, workers: 16, latency: Constant("1ms")),
            "v2": (instances: 2, workers: 16, latency: Constant("1ms")),
        }}),
    }},
    mesh: Mesh(destination_rules: [DestinationRule(host: "reviews", subsets: [
        (name: "blue", labels: {{"version": "v1"}}),
        (name: "green", labels: {{"version": "v2"}}),
    ])]),
    rollout: (host: "reviews", stable: "blue", canary: "green", start: "2s",
        strategy: ArgoBlueGreen(scale_down_delay: "{delay}", termination_grace: "0s")),
    workload: [OpenLoop(host: "productpage", rate: 200)],
)"#
    )
}

#[test]
fn live_blue_green_scales_blue_down_after_the_delay_as_the_simulation_does() {
    // Sidecars route to blue until their switch arrives 2 s late; blue stops `delay` after
    // the switch. Live and simulated, client requests fail for the gap between the two:
    // 200/s × (2 s − delay)⁺, Poisson (5σ) plus 50 ms of timer slack live.
    let dir = scratch("scale-down");
    for (delay, gap) in [("1s", 1.0), ("3s", 0.0)] {
        let path = dir.join(format!("late-{delay}.ron"));
        std::fs::write(&path, late_switch(delay)).expect("write");
        for mode in [&[][..], &["--live"][..]] {
            let name = format!("{delay}{}", mode.len());
            let v: serde_json::Value =
                serde_json::from_str(&report(&dir, &name, &path, mode)).expect("json");
            let down = (v["rollout"]["decisions"]
                .as_array()
                .expect("decisions")
                .iter())
            .find(|d| {
                d["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Scaled down"))
            })
            .unwrap_or_else(|| panic!("{mode:?}: blue scales down: {v}"));
            let at = down["at_s"].as_f64().unwrap_or_else(|| panic!("{down}"));
            let delay_s: f64 = delay.trim_end_matches('s').parse().expect("seconds");
            assert!((at - (2.0 + delay_s)).abs() < 0.2, "{mode:?}: at {at}");
            let count = v["totals"]["count"].as_f64().expect("count");
            let failed = count - v["totals"]["success"].as_f64().expect("success");
            let expected: f64 = 200.0 * gap;
            let slack = 5.0 * expected.sqrt() + 200.0 * 0.05;
            assert!(
                (failed - expected).abs() <= slack,
                "{mode:?} delay {delay}: {failed} of {count} failed, expected {expected} ± {slack}"
            );
        }
    }
}

/// An Argo canary of `api` at 50 % whose analysis (one measurement of the callers'-side
/// error ratio, 4 s after the step, over 4 s) reads `route` (or every route). v2 takes 10 ms
/// and the `insiders` route (1 request in 10) times out at 5 ms.
fn route_scoped(route: &str) -> String {
    format!(
        r#"Scenario(
    seed: 5, duration: "9s",
    services: {{"api": Service(versions: {{
        "v1": (instances: 2, workers: 32, latency: Constant("1ms")),
        "v2": (instances: 2, workers: 32, latency: Constant("10ms")),
    }})}},
    mesh: Mesh(
        virtual_services: [VirtualService(hosts: ["api"], http: [
            HttpRoute(name: "insiders", match: [(headers: {{"x-group": Exact("insiders")}})],
                route: [(destination: (host: "api", subset: "stable"))], timeout: "5ms"),
            HttpRoute(name: "default", route: [(destination: (host: "api", subset: "stable"))]),
        ])],
        destination_rules: [DestinationRule(host: "api", subsets: [
            (name: "stable", labels: {{"version": "v1"}}),
            (name: "canary", labels: {{"version": "v2"}}),
        ])],
    ),
    rollout: (host: "api", stable: "stable", canary: "canary", start: "1s",
        strategy: ArgoCanary(steps: [SetWeight(50), Analysis(metrics: [(
            name: "errors", query: HopErrorRatio, {route}
            initial_delay: "4s", window: "4s", success_condition: "result < 0.2",
        )])])),
    workload: [OpenLoop(host: "api", rate: 200, requests: [
        (weight: 1, headers: {{"x-group": "insiders"}}),
        (weight: 9),
    ])],
)"#
    )
}

#[test]
fn live_a_route_scoped_metric_sees_only_that_routes_hops_as_the_simulation_does() {
    // Scoped to the insiders' route every hop to v2 timed out: 1.0, the step fails and the
    // rollout aborts. Over every route the insiders are a tenth of v2's ~400 hops: 0.1 ± 5σ,
    // and it passes.
    let dir = scratch("route-scoped");
    for (route, phase) in [(r#"route: "api/insiders","#, "Degraded"), ("", "Healthy")] {
        let path = dir.join(format!("scoped-{}.ron", route.len()));
        std::fs::write(&path, route_scoped(route)).expect("write");
        for mode in [&[][..], &["--live"][..]] {
            let name = format!("{}-{}", route.len(), mode.len());
            let v: serde_json::Value =
                serde_json::from_str(&report(&dir, &name, &path, mode)).expect("json");
            let decisions = v["rollout"]["decisions"].as_array().expect("decisions");
            let last = decisions.last().expect("a decision");
            assert_eq!(last["phase"], phase, "{mode:?} {route}: {last}");
            let value = (decisions.iter())
                .flat_map(|d| d["checks"].as_array().into_iter().flatten())
                .find_map(|c| c["value"].as_f64())
                .unwrap_or_else(|| panic!("{mode:?}: a measurement: {decisions:?}"));
            let expected = if route.is_empty() { 0.1 } else { 1.0 };
            let within = 5.0 * (expected * (1.0 - expected) / 400.0f64).sqrt() + 1e-9;
            assert!(
                (value - expected).abs() <= within,
                "{mode:?} {route}: {value}, expected {expected} ± {within}"
            );
        }
    }
}
