//! The timeline: config changes at set times, pushed to each proxy after its own delay.

use crate::common::{run, scenario};
use metrics::RunMetrics;

fn bundled(name: &str) -> String {
    let path = format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Hops to `destination` (`service/version`) that started in each window.
fn hops_per_window(m: &RunMetrics, destination: &str) -> Vec<u64> {
    let index = m.series.destinations.iter().position(|d| d == destination);
    (m.series.windows.iter())
        .map(|w| {
            (w.by_destination.iter())
                .find(|(d, _)| Some(*d as usize) == index)
                .map_or(0, |(_, n)| *n)
        })
        .collect()
}

/// Hops of route `route` that carried flag `flag`.
fn route_flag(m: &RunMetrics, route: &str, flag: &str) -> u64 {
    (m.routes.iter())
        .find(|(name, _)| name == route)
        .and_then(|(_, s)| s.flags().find(|(f, _)| *f == flag))
        .map_or(0, |(_, n)| n)
}

#[test]
fn a_blue_green_switch_fails_nothing_and_flips_within_a_window() {
    let m = run(&scenario(&bundled("blue-green.ron")));
    assert_eq!(m.totals.success, m.totals.count, "no request fails");
    let blue = hops_per_window(&m, "reviews/v1");
    let green = hops_per_window(&m, "reviews/v2");
    // The change is made at 30 s and reaches every proxy within 1 s (push_delay ≤ 1 s): every
    // window before 30 s is all blue, every one from 31 s all green.
    for w in 0..30 {
        assert!(
            blue[w] > 0 && green[w] == 0,
            "window {w}: {} / {}",
            blue[w],
            green[w]
        );
    }
    for w in 31..60 {
        assert!(
            blue[w] == 0 && green[w] > 0,
            "window {w}: {} / {}",
            blue[w],
            green[w]
        );
    }
}

#[test]
fn a_route_before_its_subset_answers_nc_for_the_gap_and_make_before_break_none() {
    // A constant push delay makes the gap exact: each sidecar holds the route to v2 without
    // the rule defining v2 from 30.5 s to 32.5 s.
    let text = bundled("blue-green-ordering.ron").replace(
        "push_delay: Uniform(lo: \"0ms\", hi: \"1s\")",
        "push_delay: Constant(\"500ms\")",
    );
    let m = run(&scenario(&text));
    let nc = route_flag(&m, "reviews/switch", "NC");
    // 200 requests/s for 2 s, Poisson arrivals: 400 expected, sd 20; four sd either side.
    assert!((320..=480).contains(&nc), "{nc} requests answered NC");
    assert_eq!(
        m.totals.count - m.totals.success,
        nc,
        "every failure is one NC"
    );
    let errors: Vec<u64> = m.series.windows.iter().map(|w| w.errors).collect();
    for (w, e) in errors.iter().enumerate() {
        assert_eq!(*e > 0, (30..=32).contains(&w), "window {w}: {e} errors");
    }
    // The rule first, the route once the rule is everywhere: nothing fails.
    let fixed = text
        .replace(
            "(at: \"30s\", change: Apply(VirtualService",
            "(at: \"28s\", change: Apply(VirtualService",
        )
        .replace(
            "(at: \"32s\", change: Apply(DestinationRule",
            "(at: \"26s\", change: Apply(DestinationRule",
        );
    let fixed = reorder(&fixed);
    let m = run(&scenario(&fixed));
    assert_eq!(
        m.totals.success, m.totals.count,
        "make-before-break fails nothing"
    );
    assert!(
        hops_per_window(&m, "reviews/v2")[40] > 0,
        "v2 serves after the switch"
    );
}

/// The ordering scenario with its two timeline entries swapped (the rule listed first).
fn reorder(text: &str) -> String {
    let start = text.find("        (at: \"28s\"").expect("route entry");
    let middle = text.find("        (at: \"26s\"").expect("rule entry");
    let end = text[middle..]
        .find("]))),\n")
        .map(|i| middle + i + "]))),\n".len())
        .expect("end");
    format!(
        "{}{}{}{}",
        &text[..start],
        &text[middle..end],
        &text[start..middle],
        &text[end..]
    )
}

#[test]
fn a_proxy_keeps_the_latest_generation_when_an_older_one_arrives_late() {
    // Two changes 100 ms apart with pushes spread over 5 s: many proxies receive the second
    // before the first. Had they applied the late first one, they would send to v2 after
    // every push has arrived (15.1 s).
    let text = bundled("blue-green.ron")
        .replace("push_delay: Uniform(lo: \"0ms\", hi: \"1s\")", "push_delay: Uniform(lo: \"0ms\", hi: \"5s\")")
        .replace(
            "(at: \"30s\", change: SetWeights(host: \"reviews\", weights: {\"v1\": 0, \"v2\": 100})),",
            "(at: \"10s\", change: SetWeights(host: \"reviews\", weights: {\"v1\": 0, \"v2\": 100})),\n        \
             (at: \"10.1s\", change: SetWeights(host: \"reviews\", weights: {\"v1\": 100, \"v2\": 0})),",
        );
    let m = run(&scenario(&text));
    let green = hops_per_window(&m, "reviews/v2");
    assert!(
        green[10..16].iter().sum::<u64>() > 0,
        "some proxies had the first change"
    );
    assert_eq!(green[16..].iter().sum::<u64>(), 0, "{green:?}");
}

#[test]
fn bad_timelines_are_located_errors_and_hazards_are_warnings() {
    let base = bundled("blue-green.ron");
    let entry =
        "(at: \"30s\", change: SetWeights(host: \"reviews\", weights: {\"v1\": 0, \"v2\": 100})),";
    let with = |replacement: &str| base.replace(entry, replacement);
    let error = |text: &str| {
        let s = sim_core::load::parse("t.ron", text).expect("parses");
        match sim_core::load::validate("t.ron", text, &s) {
            Ok(()) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    };
    let e = error(&with(
        "(at: \"30s\", change: SetWeights(host: \"reviews\", weights: {\"v1\": 10, \"v2\": 80})),",
    ));
    assert!(
        e.contains("timeline[0].change") && e.contains("add up to 90, expected 100"),
        "{e}"
    );
    let e = error(&with(
        "(at: \"30s\", change: SetWeights(host: \"reviews\", route: \"canary\", weights: {\"v2\": 100})),",
    ));
    assert!(
        e.contains("no route `canary` (named routes: switch)"),
        "{e}"
    );
    let e = error(&with(
        "(at: \"30s\", change: Remove(DestinationRule(\"ratings\"))),",
    ));
    assert!(
        e.contains("no DestinationRule for host `ratings` to remove (there are: reviews)"),
        "{e}"
    );
    let e = error(&with(&format!(
        "{entry}\n        (at: \"20s\", change: Remove(VirtualService(\"reviews\"))),"
    )));
    assert!(
        e.contains("timeline[1].at") && e.contains("time order"),
        "{e}"
    );
    let e = error(&with(
        "(at: \"2m\", change: Remove(VirtualService(\"reviews\"))),",
    ));
    assert!(e.contains("after the run ends"), "{e}");
    let e = error(&with(
        "(at: \"30s\", change: SetWeights(host: \"ratings\", weights: {\"v1\": 100})),",
    ));
    assert!(
        e.contains("timeline[0].change") && e.contains("ratings"),
        "{e}"
    );
    // An intermediate state naming an undefined subset runs, with a warning saying when.
    let ordering = bundled("blue-green-ordering.ron");
    let s = scenario(&ordering);
    let warnings = sim_core::timeline::warnings(&s);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("timeline[0]: from 30s until 32s") && warnings[0].contains("v2"),
        "{warnings:?}"
    );
    assert!(sim_core::timeline::warnings(&scenario(&base)).is_empty());
}

/// Two tiers; reviews v1 starts with 4 instances, the timeline adds `extra` entries; no
/// retries, so every failure shows.
fn deployment(push_delay: &str, timeline: &str) -> String {
    format!(
        r#"Scenario(
    seed: 3,
    duration: "60s",
    push_delay: {push_delay},
    services: {{
        "productpage": Service(
            versions: {{"v1": (instances: 2, workers: 32, latency: Constant("1ms"))}},
            calls: [Call(host: "reviews", path: "/r")],
        ),
        "reviews": Service(versions: {{"v1": (instances: 4, workers: 32, latency: Constant("2ms"))}}),
    }},
    mesh: Mesh(virtual_services: [
        VirtualService(hosts: ["reviews"], http: [HttpRoute(
            route: [(destination: (host: "reviews"))],
            retries: (attempts: 0),
        )]),
    ]),
    timeline: [{timeline}],
    workload: [OpenLoop(host: "productpage", rate: 400, arrivals: Constant)],
)"#
    )
}

/// Five standard errors of a count with probability `p` out of `n` (Istio's default
/// LEAST_REQUEST picks hosts at random, two at a time).
fn spread(p: f64, n: f64) -> f64 {
    5.0 * (n * p * (1.0 - p)).sqrt()
}

fn instance_requests(m: &RunMetrics, name: &str) -> u64 {
    (m.instances.iter())
        .find(|(n, _)| n == name)
        .map_or(0, |(_, s)| s.requests)
}

#[test]
fn scaled_up_instances_take_traffic_once_ready() {
    // 4 → 6 at 20 s, ready 5 s later: from 25 s each of 6 takes a sixth of 400 req/s.
    let text = deployment(
        "Constant(\"0ms\")",
        r#"(at: "20s", change: Scale(service: "reviews", version: "v1", instances: 6, startup: Constant("5s")))"#,
    );
    let m = run(&scenario(&text));
    assert_eq!(m.totals.success, m.totals.count);
    // The entry makes a generation at 20 s; the new instances joining another at 25 s.
    let made: Vec<(u64, &str)> = (m.generations.iter())
        .map(|g| (g.at.0 / 1_000_000_000, g.cause.as_str()))
        .collect();
    assert_eq!(made, vec![(20, "timeline[0]"), (25, "instances ready")]);
    // Spread over 6 from 25 s to 60 s: 35 s × 400 / 6 each.
    let expected = 35.0 * 400.0 / 6.0;
    for name in ["reviews/v1/4", "reviews/v1/5"] {
        let got = instance_requests(&m, name) as f64;
        let tolerance = spread(1.0 / 6.0, 35.0 * 400.0);
        assert!(
            (got - expected).abs() < tolerance,
            "{name}: {got} of {expected}"
        );
    }
}

#[test]
fn removed_instances_drain_for_their_grace_and_late_pushes_fail_after_it() {
    // 4 → 2 at 30 s with 10 s of grace. Pushed within 5 s (< grace): the removed instances
    // finish everything they get and nothing fails.
    let scale = r#"(at: "30s", change: Scale(service: "reviews", version: "v1", instances: 2, grace: "10s"))"#;
    let m = run(&scenario(&deployment("Constant(\"5s\")", scale)));
    assert_eq!(m.totals.success, m.totals.count, "drained within the grace");
    // Until the push reaches the productpage sidecars (35 s) all four take a quarter.
    let removed = instance_requests(&m, "reviews/v1/3") as f64;
    let expected = 35.0 * 400.0 / 4.0;
    let tolerance = spread(0.25, 35.0 * 400.0);
    assert!(
        (removed - expected).abs() < tolerance,
        "{removed} of {expected}"
    );
    // Pushed after 15 s (> grace): from 40 s to 45 s the removed half is gone — connections
    // refused, no retry — so half of those requests fail, counted, and nothing else does.
    let m = run(&scenario(&deployment("Constant(\"15s\")", scale)));
    let failed = (m.totals.count - m.totals.success) as f64;
    let expected = 5.0 * 400.0 / 2.0;
    let tolerance = spread(0.5, 5.0 * 400.0);
    assert!(
        (failed - expected).abs() < tolerance,
        "{failed} failed, want {expected}"
    );
}

#[test]
fn a_version_added_and_one_removed_swap_the_endpoints() {
    let text = deployment(
        "Constant(\"0ms\")",
        r#"(at: "20s", change: AddVersion(service: "reviews", version: "v2", spec: (instances: 2, workers: 32, latency: Constant("2ms")))),
        (at: "40s", change: RemoveVersion(service: "reviews", version: "v1", grace: "5s"))"#,
    );
    let m = run(&scenario(&text));
    assert_eq!(m.totals.success, m.totals.count);
    let share = |d: &str| {
        (m.destinations.iter())
            .find(|(n, _)| n == d)
            .map_or(0, |(_, s)| s.count)
    };
    // 0–20 s all v1; 20–40 s 4 of 6 endpoints are v1; 40–60 s all v2.
    let v1 = share("reviews/v1") as f64;
    let expected = 400.0 * (20.0 + 20.0 * 4.0 / 6.0);
    let tolerance = spread(4.0 / 6.0, 20.0 * 400.0);
    assert!((v1 - expected).abs() < tolerance, "v1 {v1} of {expected}");
    assert_eq!(share("reviews/v1") + share("reviews/v2"), m.totals.count);
}
