//! Rollouts in the simulator: the controller's decisions come at the ticks its config
//! implies, the routing follows them after the push delay, and the measured effects match
//! the binomial shares the weights imply.

use crate::common::{run, scenario};
use metrics::RunMetrics;
use rollout::{Outcome, Strategy};

fn bundled(name: &str) -> String {
    let path = format!("{}/../scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (hops to `destination`, all hops to `service`) that started in each window.
fn hops(m: &RunMetrics, destination: &str) -> Vec<(u64, u64)> {
    let service = destination.split('/').next().unwrap_or_default();
    let ids: Vec<(u32, bool)> = (m.series.destinations.iter().enumerate())
        .filter(|(_, d)| d.split('/').next() == Some(service))
        .map(|(i, d)| (i as u32, d == destination))
        .collect();
    (m.series.windows.iter())
        .map(|w| {
            let mut mine = 0;
            let mut all = 0;
            for (d, n) in &w.by_destination {
                if let Some((_, is)) = ids.iter().find(|(i, _)| i == d) {
                    all += n;
                    if *is {
                        mine += n;
                    }
                }
            }
            (mine, all)
        })
        .collect()
}

/// The share of `destination` over windows `from..to` (whole seconds), and the count it is
/// measured over.
fn share(per_window: &[(u64, u64)], from: u64, to: u64) -> (f64, u64) {
    let (mine, all) = (per_window[from as usize..to as usize].iter())
        .fold((0, 0), |(a, b), (m, n)| (a + m, b + n));
    (mine as f64 / all.max(1) as f64, all)
}

/// Five standard errors of a binomial proportion `p` measured over `n`.
fn tolerance(p: f64, n: u64) -> f64 {
    5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-9
}

struct Flagger {
    start: u64,
    interval: u64,
    step: u32,
    max: u32,
    threshold: u32,
}

fn flagger(s: &sim_core::Scenario) -> Flagger {
    let spec = s.rollout.as_ref().expect("a rollout");
    let Strategy::Flagger(a) = &spec.strategy else {
        panic!("a Flagger rollout")
    };
    Flagger {
        start: spec.start.0 / 1_000_000_000,
        interval: a.interval.0 / 1_000_000_000,
        step: a.step_weight,
        max: a.max_weight,
        threshold: a.threshold,
    }
}

#[test]
fn a_healthy_canary_steps_up_at_each_tick_and_is_promoted() {
    let s = scenario(&bundled("canary-promote.ron"));
    let f = flagger(&s);
    let m = run(&s);
    assert_eq!(
        m.totals.success, m.totals.count,
        "a healthy canary fails nothing"
    );
    let log = m.rollout.as_ref().expect("a rollout log");
    let ramp = (f.max / f.step) as usize; // ticks from the first step to max_weight
                                          // Tick 0 detects the revision, ticks 1..=ramp step up, then Promoting, Finalising,
                                          // Succeeded.
    let mut expected = vec![("Progressing", 0)];
    expected.extend((1..=ramp).map(|k| ("Progressing", k as u32 * f.step)));
    expected.extend([("Promoting", f.max), ("Finalising", 0), ("Succeeded", 0)]);
    let seen: Vec<(&str, u32)> = log
        .decisions
        .iter()
        .map(|d| (d.phase, d.canary_weight))
        .collect();
    assert_eq!(seen, expected);
    for (i, d) in log.decisions.iter().enumerate() {
        assert_eq!(
            d.at.0 / 1_000_000_000,
            f.start + i as u64 * f.interval,
            "tick {i}"
        );
    }
    assert!(
        log.decisions[1].checks.is_empty(),
        "the first step runs no check"
    );
    assert_eq!(log.outcome, Outcome::Promoted);
    // Between ticks (after the ≤ 1 s push delay) v2 carries the weight the tick set.
    let v2 = hops(&m, "reviews/v2");
    for k in 1..=ramp {
        let at = f.start + k as u64 * f.interval;
        let p = f64::from(k as u32 * f.step) / 100.0;
        let (got, n) = share(&v2, at + 1, at + f.interval);
        assert!(
            (got - p).abs() < tolerance(p, n),
            "tick {k}: share {got} of {n}, want {p}"
        );
    }
    // Promotion routes everything to the new version.
    let promoted = f.start + (ramp as u64 + 1) * f.interval;
    let (got, n) = share(&v2, promoted + 1, s.duration.0 / 1_000_000_000);
    assert!(
        n > 0 && got == 1.0,
        "after promotion v2 serves all: {got} of {n}"
    );
}

#[test]
fn a_canary_that_goes_bad_is_rolled_back_at_the_tick_its_config_implies() {
    let s = scenario(&bundled("canary-rollback.ron"));
    let f = flagger(&s);
    let fault = &s.faults[0];
    let sim_core::scenario::FaultKind::Errors { probability, .. } = fault.kind else {
        panic!("an error burst")
    };
    let ramp = (f.max / f.step) as u64;
    let at_max = f.start + ramp * f.interval;
    assert_eq!(
        fault.start.0 / 1_000_000_000,
        at_max,
        "the burst starts at max weight"
    );
    let m = run(&s);
    let log = m.rollout.as_ref().expect("a rollout log");
    // The first tick after the burst fails, and each one after it: failed checks 1, 2, …
    // (counted over the run); the tick that finds `threshold` of them rolls back.
    let first_bad = ramp as usize + 1;
    let rollback = first_bad + f.threshold as usize;
    assert_eq!(log.decisions.len(), rollback + 1);
    for j in 0..f.threshold as usize {
        let d = &log.decisions[first_bad + j];
        assert_eq!(
            (d.counter, d.canary_weight),
            (j as u32 + 1, f.max),
            "tick {}",
            first_bad + j
        );
        assert_eq!(d.checks[0].verdict, "fail");
    }
    let d = &log.decisions[rollback];
    assert_eq!(
        (d.phase, d.canary_weight, d.routing.canary_weight),
        ("Failed", 0, 0)
    );
    assert_eq!(log.outcome, Outcome::RolledBack);
    let rolled_back = f.start + rollback as u64 * f.interval;
    // During the burst users see its errors on the canary's share: p × max_weight.
    let errors = |from: u64, to: u64| {
        (m.series.windows[from as usize..to as usize].iter())
            .fold((0u64, 0u64), |(e, n), w| (e + w.errors, n + w.requests))
    };
    let (e, n) = errors(at_max + 1, rolled_back);
    let p = probability * f64::from(f.max) / 100.0;
    let got = e as f64 / n as f64;
    assert!(
        (got - p).abs() < tolerance(p, n),
        "error rate {got} of {n}, want {p}"
    );
    // Within one interval of the rollback (after the ≤ 1 s push delay), success recovers
    // fully and v2 gets nothing.
    let end = s.duration.0 / 1_000_000_000;
    let (e, n) = errors(rolled_back + 2, end);
    assert!(n > 0 && e == 0, "{e} errors of {n} after the rollback");
    let (got, _) = share(&hops(&m, "reviews/v2"), rolled_back + 2, end);
    assert_eq!(got, 0.0);
}

#[test]
fn ab_testing_sends_only_the_matched_requests_to_the_canary_for_its_iterations() {
    let s = scenario(&bundled("ab-test.ron"));
    let f = flagger(&s);
    let Some(Strategy::Flagger(a)) = s.rollout.as_ref().map(|r| &r.strategy) else {
        panic!("a Flagger rollout")
    };
    let iterations = u64::from(a.iterations);
    let m = run(&s);
    let log = m.rollout.as_ref().expect("a rollout log");
    let seen: Vec<(&str, u32)> = log
        .decisions
        .iter()
        .map(|d| (d.phase, d.iterations))
        .collect();
    // Tick 1 starts (iteration 1, no check), each later tick counts one; at `iterations`
    // the next tick promotes.
    let mut expected = vec![("Progressing", 0)];
    expected.extend((1..=iterations as u32).map(|i| ("Progressing", i)));
    expected.extend([("Promoting", 5), ("Finalising", 5), ("Succeeded", 5)]);
    assert_eq!(seen, expected);
    // While testing, v2 gets the insiders' share of the workload: weight 1 of 10.
    let v2 = hops(&m, "reviews/v2");
    let from = f.start + f.interval + 1;
    let to = f.start + (iterations + 1) * f.interval;
    let (got, n) = share(&v2, from, to);
    assert!((got - 0.1).abs() < tolerance(0.1, n), "share {got} of {n}");
    let matched = (m.routes.iter()).find(|(name, _)| name == "reviews/canary-match");
    assert!(
        matched.is_some_and(|(_, st)| st.count > 0),
        "the A/B rule is reported"
    );
    // Before the test nothing reaches v2.
    let (before, _) = share(&v2, 0, f.start + f.interval);
    assert_eq!(before, 0.0);
}

#[test]
fn a_mirror_step_catches_a_bad_canary_before_any_user_sees_it() {
    let s = scenario(&bundled("canary-mirror.ron"));
    let m = run(&s);
    assert_eq!(
        m.totals.success, m.totals.count,
        "users only ever get v1's answers"
    );
    let log = m.rollout.as_ref().expect("a rollout log");
    let d = &log.decisions[1];
    assert_eq!(
        (d.canary_weight, d.routing.mirror),
        (0, Some(100)),
        "tick 1 mirrors"
    );
    let d = &log.decisions[2];
    assert_eq!(
        d.checks[0].verdict, "fail",
        "the mirrored traffic is analysed"
    );
    // v2 answers 5 % 500s: the measured success rate is binomial around 95 %.
    let v = d.checks[0].value.expect("mirrored traffic");
    let n = (m.mirrors.iter())
        .find(|(d, _)| d == "reviews/v2")
        .map_or(0, |(_, st)| st.count);
    assert!(n > 0);
    assert!(
        (v / 100.0 - 0.95).abs() < tolerance(0.95, n / 2),
        "success {v}"
    );
    assert_eq!(log.decisions[3].phase, "Failed");
    assert_eq!(
        log.decisions[3].routing.mirror, None,
        "rollback stops mirroring"
    );
    // No user request ever went to v2.
    let (got, _) = share(&hops(&m, "reviews/v2"), 0, s.duration.0 / 1_000_000_000);
    assert_eq!(got, 0.0);
}

/// The (time s, canary weight) an Argo canary's steps imply at each point where the rollout
/// waits: a pause's start, each inline measurement; then the full promotion (100).
fn argo_waits(c: &rollout::spec::ArgoCanary, start: u64) -> Vec<(u64, u32)> {
    use rollout::spec::ArgoStep;
    let (mut t, mut weight, mut out) = (start, 0, Vec::new());
    for step in &c.steps {
        match step {
            ArgoStep::SetWeight(w) => weight = *w,
            ArgoStep::Pause(p) => {
                out.push((t, weight));
                t += p.duration.expect("timed pauses").0 / 1_000_000_000;
            }
            ArgoStep::Analysis(a) => {
                let m = &a.metrics[0];
                let every = m.interval.expect("an interval").0 / 1_000_000_000;
                for _ in 1..m.count.expect("a count") {
                    out.push((t, weight));
                    t += every;
                }
            }
        }
    }
    out.push((t, 100));
    out
}

#[test]
fn argo_canary_steps_wait_and_weigh_as_the_steps_say_then_promote() {
    let s = scenario(&bundled("argo-canary-steps.ron"));
    let spec = s.rollout.as_ref().expect("a rollout");
    let Strategy::ArgoCanary(c) = &spec.strategy else {
        panic!("an Argo canary")
    };
    let start = spec.start.0 / 1_000_000_000;
    let m = run(&s);
    assert_eq!(m.totals.success, m.totals.count);
    let log = m.rollout.as_ref().expect("a rollout log");
    let seen: Vec<(u64, u32)> = (log.decisions.iter())
        .map(|d| (d.at.0 / 1_000_000_000, d.routing.canary_weight))
        .collect();
    assert_eq!(seen, argo_waits(c, start));
    assert_eq!(log.outcome, Outcome::Promoted);
    let background = (log.decisions.iter())
        .flat_map(|d| &d.checks)
        .filter(|c| c.metric == "p99-latency")
        .count();
    assert!(
        background >= 3,
        "the background analysis measured {background} times"
    );
    // Each weight holds between its changes (after the ≤ 1 s push delay).
    let canary = hops(&m, "reviews/v2");
    for pair in seen.windows(2) {
        let ((from, w), (to, _)) = (pair[0], pair[1]);
        let p = f64::from(w) / 100.0;
        let (got, n) = share(&canary, from + 1, to);
        assert!(
            (got - p).abs() < tolerance(p, n),
            "{from}–{to} s: {got} of {n}, want {p}"
        );
    }
}

#[test]
fn argo_blue_green_previews_then_switches_at_once_and_fails_nothing() {
    let s = scenario(&bundled("argo-blue-green.ron"));
    let spec = s.rollout.as_ref().expect("a rollout");
    let Strategy::ArgoBlueGreen(b) = &spec.strategy else {
        panic!("an Argo blue/green")
    };
    let secs = |n: proxy_engine::Nanos| n.0 / 1_000_000_000;
    let start = secs(spec.start);
    // The switch comes with the pre-promotion analysis' last measurement: its initial delay
    // plus (count − 1) intervals after the preview is up.
    let pre = &b
        .pre_promotion_analysis
        .as_ref()
        .expect("pre-promotion")
        .metrics[0];
    let every = secs(pre.interval.expect("an interval"));
    let switch =
        start + secs(pre.initial_delay) + u64::from(pre.count.expect("a count") - 1) * every;
    let m = run(&s);
    assert_eq!(
        m.totals.success, m.totals.count,
        "no request fails because of the switch"
    );
    let log = m.rollout.as_ref().expect("a rollout log");
    let switched = (log.decisions.iter())
        .find(|d| d.routing.canary_weight == 100 && !d.routing.matched_only)
        .expect("a switch");
    assert_eq!(switched.at.0 / 1_000_000_000, switch);
    assert_eq!(log.outcome, Outcome::Promoted);
    let green = hops(&m, "reviews/v2");
    // Before the preview nothing reaches green; during it the testers' 1 in 20; from a
    // second after the switch (the push delay) everything, in every window.
    assert_eq!(share(&green, 0, start).0, 0.0);
    let (got, n) = share(&green, start + 1, switch);
    assert!(
        (got - 0.05).abs() < tolerance(0.05, n),
        "preview share {got} of {n}"
    );
    let end = s.duration.0 / 1_000_000_000;
    for w in switch + 1..end {
        assert_eq!(
            green[w as usize].0, green[w as usize].1,
            "window {w} is all green"
        );
    }
}

#[test]
fn an_analysis_on_the_callers_side_sees_the_retries_users_never_see() {
    // v2 answers 10 % 503s; the route's retries (2, on 5xx) hide them from users, but each
    // hop to v2 takes 1 + p + p² tries on average. An Argo metric on retry amplification
    // catches it at its first measurement and aborts.
    let text = r#"Scenario(
    seed: 4,
    duration: "3m",
    services: {
        "web": Service(
            versions: {"v1": (instances: 2, workers: 32, latency: Constant("1ms"))},
            calls: [Call(host: "api", path: "/")],
        ),
        "api": Service(versions: {
            "v1": (instances: 2, workers: 32, latency: Constant("2ms")),
            "v2": (instances: 2, workers: 32, latency: Constant("2ms"), errors: 0.1, error_status: 503),
        }),
    },
    mesh: Mesh(
        virtual_services: [VirtualService(hosts: ["api"], http: [HttpRoute(
            route: [(destination: (host: "api", subset: "stable"))],
            retries: (attempts: 2, retry_on: "5xx"),
        )])],
        destination_rules: [DestinationRule(host: "api", subsets: [
            (name: "stable", labels: {"version": "v1"}),
            (name: "canary", labels: {"version": "v2"}),
        ])],
    ),
    rollout: (
        host: "api", stable: "stable", canary: "canary", start: "10s",
        strategy: ArgoCanary(steps: [
            SetWeight(50),
            Analysis(metrics: [(
                name: "retry-amplification",
                query: RetryAmplification,
                initial_delay: "1m",
                window: "1m",
                success_condition: "result < 1.05",
            )]),
        ]),
    ),
    workload: [OpenLoop(host: "web", rate: 200)],
)"#;
    let m = run(&scenario(text));
    let log = m.rollout.as_ref().expect("a rollout log");
    let last = log.decisions.last().expect("decisions");
    assert_eq!((last.at.0 / 1_000_000_000, last.phase), (70, "Degraded"));
    let p: f64 = 0.1;
    let tries = 1.0 + p + p * p;
    let value = last.checks[0].value.expect("hops to v2");
    // ~6,000 hops to v2 in the window; tries per hop have variance p(1-p)(1+3p) or so.
    assert!(
        (value - tries).abs() < 5.0 * (p * 1.3 / 6000.0).sqrt(),
        "{value} vs {tries}"
    );
    assert_eq!(last.routing.canary_weight, 0);
    let failed = m.totals.count - m.totals.success;
    assert!(
        (failed as f64) < 0.001 * m.totals.count as f64,
        "retries hid the errors: {failed}"
    );
}

#[test]
fn a_metric_scoped_to_a_route_sees_only_that_routes_hops() {
    // v2 takes 10 ms; the `insiders` route (10 % of requests) times out at 5 ms, so every
    // insider hop to v2 fails (504 UT) and no other hop does. Over all hops to v2 the error
    // ratio is the insiders' share, 0.1, under the 0.2 bound; scoped to the route it is 1.
    let text = |route: &str| {
        format!(
            r#"Scenario(
    seed: 5,
    duration: "2m",
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
    rollout: (
        host: "api", stable: "stable", canary: "canary", start: "10s",
        strategy: ArgoCanary(steps: [
            SetWeight(50),
            Analysis(metrics: [(
                name: "errors",
                query: HopErrorRatio,
                {route}
                initial_delay: "30s",
                window: "30s",
                success_condition: "result < 0.2",
            )]),
        ]),
    ),
    workload: [OpenLoop(host: "api", rate: 200, requests: [
        (weight: 1, headers: {{"x-group": "insiders"}}),
        (weight: 9),
    ])],
)"#
        )
    };
    let scoped = run(&scenario(&text(r#"route: "api/insiders","#)));
    assert!(
        scoped.routes.iter().any(|(name, _)| name == "api/insiders"),
        "the route is named as the metric names it: {:?}",
        scoped.routes.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    let log = scoped.rollout.as_ref().expect("a rollout log");
    let last = log.decisions.last().expect("decisions");
    assert_eq!(last.phase, "Degraded", "{last:?}");
    assert_eq!(
        last.checks[0].value,
        Some(1.0),
        "every insider hop to v2 timed out"
    );
    assert_eq!(last.routing.canary_weight, 0);
    let typo = crate::common::invalid(&text(r#"route: "api/insider","#));
    assert!(
        typo.contains("rollout: a metric reads route `api/insider`, which the mesh does not have (routes, as the report names them: api/default, api/insiders)"),
        "{typo}"
    );
    let all = run(&scenario(&text("")));
    let log = all.rollout.as_ref().expect("a rollout log");
    let last = log.decisions.last().expect("decisions");
    assert_eq!(last.phase, "Healthy", "{last:?}");
    let first = (log.decisions.iter())
        .flat_map(|d| d.checks.iter())
        .find_map(|c| c.value)
        .expect("a measurement");
    // ~3,000 hops to v2 in the 30 s window, a tenth of them insiders'.
    assert!((first - 0.1).abs() < tolerance(0.1, 3000), "{first}");
}

/// A blue/green of reviews switched at 10 s with no analysis, every sidecar receiving each
/// change exactly 10 s late, blue scaled down `delay` after the switch and serving for
/// `grace` more.
fn late_switch(delay: &str, grace: &str) -> sim_core::Scenario {
    scenario(&format!(
        r#"Scenario(
    seed: 3, duration: "45s", push_delay: Constant("10s"),
    services: {{
        "productpage": Service(
            versions: {{"v1": (instances: 3, workers: 64, latency: Constant("1ms"))}},
            calls: [Call(host: "reviews", path: "/reviews")],
        ),
        "reviews": Service(versions: {{
            "v1": (instances: 2, workers: 64, latency: Constant("2ms")),
            "v2": (instances: 2, workers: 64, latency: Constant("2ms")),
        }}),
    }},
    mesh: Mesh(destination_rules: [DestinationRule(host: "reviews", subsets: [
        (name: "blue", labels: {{"version": "v1"}}),
        (name: "green", labels: {{"version": "v2"}}),
    ])]),
    rollout: (host: "reviews", stable: "blue", canary: "green", start: "10s",
        strategy: ArgoBlueGreen(scale_down_delay: "{delay}", termination_grace: "{grace}")),
    workload: [OpenLoop(host: "productpage", rate: 200)],
)"#
    ))
}

#[test]
fn blue_is_scaled_down_after_the_delay_and_a_late_switch_reaches_it_only_if_it_is_gone() {
    // A sidecar sends to blue until its switch arrives (10 s late); blue serves until
    // delay + grace after the switch. Client requests fail for the gap between the two:
    // 200/s × (10 s − delay − grace)⁺, Poisson counts (5σ), plus the requests blue still
    // held when it stopped.
    for (delay, grace, gap) in [("0s", "0s", 10.0), ("3s", "2s", 5.0), ("30s", "30s", 0.0)] {
        let s = late_switch(delay, grace);
        let m = run(&s);
        let log = m.rollout.as_ref().expect("a rollout log");
        let down = (log.decisions.iter())
            .find(|d| d.message.contains("Scaled down the old version"))
            .unwrap_or_else(|| panic!("blue scales down: {:?}", log.decisions));
        let delay_s: u64 = delay.trim_end_matches('s').parse().expect("seconds");
        assert_eq!(down.at.0, (10 + delay_s) * 1_000_000_000, "{delay}");
        let failed = (m.totals.count - m.totals.success) as f64;
        let expected: f64 = 200.0 * gap;
        let slack = 5.0 * expected.sqrt() + 200.0 * 0.05;
        assert!(
            (failed - expected).abs() <= slack,
            "delay {delay}, grace {grace}: {failed} failed, expected {expected} ± {slack}"
        );
        if gap == 0.0 {
            assert_eq!(failed, 0.0, "a delay longer than the push: nothing fails");
        }
    }
}
