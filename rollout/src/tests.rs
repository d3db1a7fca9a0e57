//! The controllers against the tools' documented decisions, with scripted measurements.

use super::*;
use crate::condition::Condition;
use crate::spec::{
    AnalysisSpec, ArgoCanary, ArgoMetric, ArgoStep, FlaggerAnalysis, FlaggerMetric, Pause, Query,
    ThresholdRange,
};
use proxy_engine::Nanos;
use std::cell::Cell;

const MIN: u64 = 60_000_000_000;

/// Measurements the test sets before each tick: `requests` canary responses, `errors` of them
/// 5xx, all 5 ms.
struct Script {
    requests: Cell<u64>,
    errors: Cell<u64>,
}

impl Script {
    fn healthy() -> Script {
        Script {
            requests: Cell::new(1000),
            errors: Cell::new(0),
        }
    }
    fn set(&self, requests: u64, errors: u64) {
        self.requests.set(requests);
        self.errors.set(errors);
    }
}

impl MetricSource for Script {
    fn window(&self, _side: Side, _route: Option<&str>, _now: Time, over: Nanos) -> WindowStats {
        let mut buckets = [0; 20];
        buckets[2] = self.requests.get(); // (1, 5] ms
        WindowStats {
            requests: self.requests.get(),
            non_5xx: self.requests.get() - self.errors.get(),
            buckets,
            span: over,
            hops: Default::default(),
        }
    }
}

fn success_rate(min: f64) -> FlaggerMetric {
    FlaggerMetric {
        name: "request-success-rate".into(),
        interval: Nanos::from_secs(60),
        threshold_range: ThresholdRange {
            min: Some(min),
            max: None,
        },
        query: None,
        route: None,
    }
}

fn flagger(a: FlaggerAnalysis) -> Controller {
    let spec = RolloutSpec {
        host: "podinfo".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        start: Nanos::ZERO,
        strategy: Strategy::Flagger(a),
    };
    spec.validate().expect("valid");
    Controller::new(&spec)
}

fn analysis(step: u32, max: u32, threshold: u32) -> FlaggerAnalysis {
    FlaggerAnalysis {
        interval: Nanos::from_secs(60),
        threshold,
        max_weight: max,
        step_weight: step,
        step_weights: vec![],
        step_weight_promotion: 0,
        iterations: 0,
        matches: vec![],
        mirror: false,
        mirror_weight: None,
        metrics: vec![success_rate(99.0)],
    }
}

/// Ticks until the run ends (or `limit` ticks), each at the time the controller asks for.
fn run(c: &mut Controller, source: &Script, limit: usize) -> Vec<Decision> {
    let mut out = Vec::new();
    while let Some(at) = c.next_tick() {
        if out.len() == limit {
            break;
        }
        out.push(c.tick(at, source));
    }
    out
}

fn weights(log: &[Decision]) -> Vec<(u64, &'static str, u32)> {
    log.iter()
        .map(|d| (d.at.0 / MIN, d.phase, d.canary_weight))
        .collect()
}

#[test]
fn flagger_canary_steps_then_promotes_at_the_ticks_the_config_implies() {
    // step 10, max 30, interval 1m: t0 new revision, t1 10 (no check), t2 20, t3 30,
    // t4 30 ≥ 30 → promote, t5 route to primary → Finalising, t6 Succeeded.
    let mut c = flagger(analysis(10, 30, 2));
    let log = run(&mut c, &Script::healthy(), 20);
    assert_eq!(
        weights(&log),
        vec![
            (0, "Progressing", 0),
            (1, "Progressing", 10),
            (2, "Progressing", 20),
            (3, "Progressing", 30),
            (4, "Promoting", 30),
            (5, "Finalising", 0),
            (6, "Succeeded", 0),
        ]
    );
    assert!(
        log[1].checks.is_empty(),
        "the first step runs no metric check"
    );
    assert_eq!(log[2].checks.len(), 1);
    assert_eq!(c.outcome(), Outcome::Promoted);
    // From the promotion on the new version takes all traffic.
    assert_eq!(log[3].routing.canary_weight, 30);
    assert_eq!(log[4].routing.canary_weight, 100);
    assert_eq!(log[6].routing.canary_weight, 100);
}

#[test]
fn flagger_overshoots_max_weight() {
    // maxWeight 50, stepWeight 20 → 20, 40, 60 (40 < 50 before adding), then promotion.
    let mut c = flagger(analysis(20, 50, 1));
    let log = run(&mut c, &Script::healthy(), 20);
    let w: Vec<u32> = log.iter().map(|d| d.canary_weight).collect();
    assert_eq!(&w[..5], &[0, 20, 40, 60, 60]);
    assert_eq!(log[4].phase, "Promoting");
}

#[test]
fn flagger_counts_failed_checks_over_the_whole_run() {
    // threshold 2: failures at t2 and t4 (t3 passes) → rollback at t5, weight 0.
    let mut c = flagger(analysis(10, 50, 2));
    let s = Script::healthy();
    let mut log = Vec::new();
    for tick in 0..8 {
        let Some(at) = c.next_tick() else { break };
        match tick {
            2 | 4 => s.set(1000, 50), // 95 % < 99 %
            _ => s.set(1000, 0),
        }
        log.push(c.tick(at, &s));
    }
    let failed: Vec<u32> = log.iter().map(|d| d.counter).collect();
    assert_eq!(&failed[..], &[0, 0, 1, 1, 2, 2]);
    let w: Vec<u32> = log.iter().map(|d| d.canary_weight).collect();
    assert_eq!(
        &w[..],
        &[0, 10, 10, 20, 20, 0],
        "a failed check holds the weight"
    );
    assert_eq!(log[5].phase, "Failed");
    assert_eq!(log[5].routing.canary_weight, 0);
    assert_eq!(c.outcome(), Outcome::RolledBack);
    assert!(c.next_tick().is_none());
}

#[test]
fn flagger_fails_a_check_without_data() {
    let mut c = flagger(analysis(10, 50, 1));
    let s = Script::healthy();
    c.tick(Time(0), &s);
    c.tick(Time(MIN), &s); // weight 10, no check
    s.set(0, 0);
    let d = c.tick(Time(2 * MIN), &s);
    assert_eq!(d.counter, 1);
    assert_eq!(d.checks[0].value, None);
    assert!(d.message.contains("no values found"), "{}", d.message);
    let d = c.tick(Time(3 * MIN), &s);
    assert_eq!(d.phase, "Failed");
}

#[test]
fn flagger_step_weights_and_their_last_step_as_max() {
    let mut a = analysis(0, 0, 1);
    a.step_weights = vec![1, 2, 10, 80];
    let mut c = flagger(a);
    let log = run(&mut c, &Script::healthy(), 20);
    let w: Vec<u32> = log.iter().map(|d| d.canary_weight).collect();
    assert_eq!(&w[..6], &[0, 1, 2, 10, 80, 80]);
    assert_eq!(log[5].phase, "Promoting");
}

#[test]
fn flagger_mirrors_for_one_tick_before_shifting() {
    let mut a = analysis(10, 20, 1);
    a.mirror = true;
    a.mirror_weight = Some(50);
    let mut c = flagger(a);
    let log = run(&mut c, &Script::healthy(), 20);
    assert_eq!(
        log[1].routing.mirror,
        Some(50),
        "t1 turns mirroring on at 100/0"
    );
    assert_eq!(log[1].canary_weight, 0);
    assert_eq!(
        log[2].routing.mirror, None,
        "t2 turns it off with the first step"
    );
    assert_eq!(log[2].canary_weight, 10);
    assert_eq!(
        log[2].checks.len(),
        1,
        "the mirrored tick's traffic is analysed"
    );
}

#[test]
fn flagger_ab_testing_routes_matched_requests_for_its_iterations() {
    let mut a = analysis(0, 0, 1);
    a.iterations = 3;
    a.matches = vec![Default::default()];
    let mut c = flagger(a);
    let log = run(&mut c, &Script::healthy(), 20);
    let it: Vec<(u32, bool, u32)> = (log.iter())
        .map(|d| {
            (
                d.iterations,
                d.routing.matched_only,
                d.routing.canary_weight,
            )
        })
        .collect();
    assert_eq!(
        &it[..5],
        &[
            (0, true, 0),
            (1, true, 100),
            (2, true, 100),
            (3, true, 100),
            (3, false, 100)
        ]
    );
    assert_eq!(log[4].phase, "Promoting");
}

fn ratio_metric(failure_limit: Option<i32>, count: Option<u32>) -> ArgoMetric {
    ArgoMetric {
        name: "success-rate".into(),
        query: Query::SuccessRatio,
        version: Side::Canary,
        route: None,
        window: None,
        interval: Some(Nanos::from_secs(60)),
        initial_delay: Nanos::ZERO,
        count,
        success_condition: Some(Condition::parse("result[0] >= 0.95").expect("parses")),
        failure_condition: None,
        failure_limit,
        inconclusive_limit: None,
        consecutive_error_limit: None,
        consecutive_success_limit: None,
    }
}

fn argo(steps: Vec<ArgoStep>) -> Controller {
    let spec = RolloutSpec {
        host: "reviews".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        start: Nanos::ZERO,
        strategy: Strategy::ArgoCanary(ArgoCanary {
            steps,
            analysis: None,
        }),
    };
    spec.validate().expect("valid");
    Controller::new(&spec)
}

#[test]
fn argo_failure_limit_is_strictly_greater() {
    // failureLimit 3 tolerates three failed measurements and fails on the fourth.
    let mut c = argo(vec![
        ArgoStep::SetWeight(20),
        ArgoStep::Analysis(AnalysisSpec {
            metrics: vec![ratio_metric(Some(3), Some(10))],
        }),
    ]);
    let s = Script::healthy();
    s.set(1000, 100); // 0.90 < 0.95: every measurement fails
    let log = run(&mut c, &s, 20);
    assert_eq!(log.len(), 4, "measurements at 0, 1, 2 and 3 min");
    assert_eq!(log[2].phase, "Progressing");
    assert_eq!(log[3].phase, "Degraded");
    assert_eq!(log[3].canary_weight, 0);
    assert!(
        log[3].message.contains("failed (4) > failureLimit (3)"),
        "{}",
        log[3].message
    );
}

#[test]
fn argo_steps_pause_and_promote() {
    let mut c = argo(vec![
        ArgoStep::SetWeight(20),
        ArgoStep::Pause(Pause {
            duration: Some(Nanos::from_secs(600)),
        }),
        ArgoStep::SetWeight(50),
        ArgoStep::Analysis(AnalysisSpec {
            metrics: vec![ratio_metric(None, Some(2))],
        }),
        ArgoStep::SetWeight(80),
    ]);
    let log = run(&mut c, &Script::healthy(), 20);
    let seen: Vec<(u64, &str, u32)> = weights(&log);
    assert_eq!(
        seen,
        vec![
            (0, "Progressing", 20),  // setWeight 20, pause starts
            (10, "Progressing", 50), // pause over: 50, first measurement
            (11, "Healthy", 80),     // second measurement: Successful → 80 → promoted
        ]
    );
    assert_eq!(log[2].routing.canary_weight, 100);
    assert_eq!(c.outcome(), Outcome::Promoted);
}

#[test]
fn argo_indefinite_pause_and_no_data_errors() {
    let mut c = argo(vec![
        ArgoStep::SetWeight(10),
        ArgoStep::Pause(Pause::default()),
    ]);
    let log = run(&mut c, &Script::healthy(), 5);
    assert_eq!(log.len(), 1);
    assert_eq!(c.outcome(), Outcome::Paused);
    // No traffic: each measurement is an Error; the 5th in a row (> 4) ends the run.
    let mut c = argo(vec![ArgoStep::Analysis(AnalysisSpec {
        metrics: vec![ratio_metric(None, None)],
    })]);
    let s = Script::healthy();
    s.set(0, 0);
    let log = run(&mut c, &s, 20);
    assert_eq!(log.len(), 5);
    assert_eq!(log[4].phase, "Degraded");
    assert!(log[4]
        .message
        .contains("consecutiveErrors (5) > consecutiveErrorLimit (4)"));
}

#[test]
fn argo_metric_without_conditions_is_successful_and_both_conditions_can_be_inconclusive() {
    let mut m = ratio_metric(None, Some(1));
    m.success_condition = None;
    let mut c = argo(vec![ArgoStep::Analysis(AnalysisSpec { metrics: vec![m] })]);
    let s = Script::healthy();
    s.set(1000, 500);
    run(&mut c, &s, 5);
    assert_eq!(
        c.outcome(),
        Outcome::Promoted,
        "the code's verdict, not the docs'"
    );
    let mut m = ratio_metric(None, Some(1));
    m.failure_condition = Some(Condition::parse("result[0] < 0.5").expect("parses"));
    let mut c = argo(vec![ArgoStep::Analysis(AnalysisSpec { metrics: vec![m] })]);
    s.set(1000, 200); // 0.8: neither ≥ 0.95 nor < 0.5
    run(&mut c, &s, 5);
    assert_eq!(c.outcome(), Outcome::Paused, "Inconclusive pauses");
}

fn blue_green(b: crate::spec::ArgoBlueGreen) -> Controller {
    let spec = RolloutSpec {
        host: "reviews".into(),
        stable: "blue".into(),
        canary: "green".into(),
        start: Nanos::ZERO,
        strategy: Strategy::ArgoBlueGreen(b),
    };
    spec.validate().expect("valid");
    Controller::new(&spec)
}

fn bg(pre: Option<ArgoMetric>, post: Option<ArgoMetric>, auto: bool) -> crate::spec::ArgoBlueGreen {
    crate::spec::ArgoBlueGreen {
        preview_match: vec![Default::default()],
        auto_promotion_enabled: auto,
        auto_promotion_seconds: None,
        scale_down_delay: Nanos::from_secs(30),
        termination_grace: Nanos::from_secs(30),
        pre_promotion_analysis: pre.map(|m| AnalysisSpec { metrics: vec![m] }),
        post_promotion_analysis: post.map(|m| AnalysisSpec { metrics: vec![m] }),
    }
}

#[test]
fn argo_blue_green_gates_pauses_and_switches_back() {
    let s = Script::healthy();
    // Pre-promotion passes (2 measurements) → switch; post-promotion fails → switch back.
    let mut c = blue_green(bg(
        Some(ratio_metric(None, Some(2))),
        Some(ratio_metric(None, Some(1))),
        true,
    ));
    let d0 = c.tick(Time(0), &s);
    assert!(
        d0.routing.matched_only,
        "the preview gets the matched requests"
    );
    let d1 = c.tick(Time(MIN), &s);
    assert_eq!(
        (d1.routing.canary_weight, d1.routing.matched_only),
        (100, false)
    );
    s.set(1000, 100);
    let d2 = c.tick(Time(2 * MIN), &s);
    assert_eq!(d2.phase, "Degraded");
    assert_eq!(
        d2.routing,
        Routing::default(),
        "switched back to the stable version"
    );
    // auto_promotion_enabled false: paused before the switch, the preview still routed.
    s.set(1000, 0);
    let mut c = blue_green(bg(None, None, false));
    let d = c.tick(Time(0), &s);
    assert_eq!((d.phase, d.routing.matched_only), ("Paused", true));
    assert_eq!(c.outcome(), Outcome::Paused);
    // An inconclusive post-promotion analysis pauses after the switch: everything stays on
    // the new version.
    let mut post = ratio_metric(None, Some(1));
    post.failure_condition = Some(Condition::parse("result[0] < 0.5").expect("parses"));
    let mut c = blue_green(bg(None, Some(post), true));
    c.tick(Time(0), &s);
    s.set(1000, 200); // 0.8: neither ≥ 0.95 nor < 0.5
    let d = c.tick(Time(MIN), &s);
    assert_eq!(
        (d.phase, d.routing.canary_weight, d.routing.matched_only),
        ("Paused", 100, false)
    );
    s.set(1000, 0);
    // A failing pre-promotion analysis aborts without switching.
    let mut c = blue_green(bg(Some(ratio_metric(None, Some(1))), None, true));
    s.set(1000, 100);
    let d = c.tick(Time(0), &s);
    assert_eq!((d.phase, d.routing), ("Degraded", Routing::default()));
}

#[test]
fn argo_blue_green_scales_the_old_version_down_after_the_delay() {
    let s = Script::healthy();
    let sec = |n: u64| Time(n * 1_000_000_000);
    // No analyses: the switch at the first tick, the scale-down scale_down_delay later.
    let mut c = blue_green(bg(None, None, true));
    let d = c.tick(Time(0), &s);
    assert_eq!((d.routing.canary_weight, d.scale_down), (100, None));
    assert_eq!(c.next_tick(), Some(sec(30)));
    let d = c.tick(sec(30), &s);
    let down = d.scale_down.expect("the old version scales down");
    assert_eq!(
        (down.side, down.grace),
        (Side::Stable, Nanos::from_secs(30))
    );
    assert_eq!((c.next_tick(), c.outcome()), (None, Outcome::Promoted));
    // A post-promotion analysis (2 measurements a minute apart) outlasts the delay: the
    // old version stays until it succeeds, then scales down in the same tick.
    let mut c = blue_green(bg(None, Some(ratio_metric(None, Some(2))), true));
    let log = run(&mut c, &s, 10);
    let seen: Vec<(Time, &str, bool)> = (log.iter())
        .map(|d| (d.at, d.phase, d.scale_down.is_some()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Time(0), "Progressing", false), // switched, analysis started
            (Time(0), "Progressing", false), // measurement 1
            (Time(MIN), "Healthy", true),    // measurement 2: Successful, 60 s > 30 s
        ]
    );
    // scale_down_delay 0: in the tick that switches.
    let mut now = bg(None, None, true);
    now.scale_down_delay = Nanos::ZERO;
    let d = blue_green(now).tick(Time(0), &s);
    assert!(d.scale_down.is_some());
    // Switched back after a failed post-promotion analysis: nothing scales down.
    let mut c = blue_green(bg(None, Some(ratio_metric(None, Some(1))), true));
    c.tick(Time(0), &s);
    s.set(1000, 100);
    let d = c.tick(Time(MIN), &s);
    assert_eq!(
        (d.phase, d.scale_down, c.next_tick()),
        ("Degraded", None, None)
    );
}

#[test]
fn flagger_blue_green_runs_its_iterations_then_switches_then_promotes() {
    // iterations 3, no match: blue/green. t1 starts (iteration 1, no check, nothing routed to
    // the canary), t2 and t3 count iterations 2 and 3, t4 routes all to the canary, t5
    // promotes, t6 routes to the (promoted) primary, t7 succeeds.
    let mut a = analysis(0, 0, 1);
    a.iterations = 3;
    let mut c = flagger(a);
    let log = run(&mut c, &Script::healthy(), 20);
    let seen: Vec<(&str, u32, u32)> = (log.iter())
        .map(|d| (d.phase, d.iterations, d.routing.canary_weight))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("Progressing", 0, 0),
            ("Progressing", 1, 0),
            ("Progressing", 2, 0),
            ("Progressing", 3, 0),
            ("Progressing", 4, 100),
            ("Promoting", 4, 100),
            ("Finalising", 4, 100),
            ("Succeeded", 4, 100),
        ]
    );
}

#[test]
fn flagger_promotion_steps_the_primary_weight_back_up() {
    // step_weight_promotion 20 from canary 40: primary 80/canary 20, then 100/0 → Finalising.
    let mut a = analysis(20, 40, 1);
    a.step_weight_promotion = 20;
    let mut c = flagger(a);
    let log = run(&mut c, &Script::healthy(), 20);
    let seen: Vec<(&str, u32)> = log.iter().map(|d| (d.phase, d.canary_weight)).collect();
    assert_eq!(
        &seen[3..],
        &[
            ("Promoting", 40),
            ("Promoting", 20),
            ("Finalising", 0),
            ("Succeeded", 0)
        ]
    );
    assert!(log[3..].iter().all(|d| d.routing.canary_weight == 100));
}

#[test]
fn a_route_scopes_only_a_callers_side_query() {
    let spec = |query: Query| RolloutSpec {
        host: "reviews".into(),
        stable: "v1".into(),
        canary: "v2".into(),
        start: Nanos::ZERO,
        strategy: Strategy::ArgoCanary(ArgoCanary {
            steps: vec![ArgoStep::Analysis(AnalysisSpec {
                metrics: vec![ArgoMetric {
                    query,
                    route: Some("reviews/insiders".into()),
                    ..ratio_metric(None, Some(1))
                }],
            })],
            analysis: None,
        }),
    };
    let e = spec(Query::SuccessRatio)
        .validate()
        .expect_err("destination side");
    assert_eq!(e.field, "strategy.ArgoCanary.steps[0].metrics[0].route");
    let ok = spec(Query::HopErrorRatio);
    ok.validate().expect("callers' side");
    assert_eq!(ok.routes(), vec!["reviews/insiders".to_owned()]);
}
