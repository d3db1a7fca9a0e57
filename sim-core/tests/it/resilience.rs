//! Resilience semantics in the simulator, against their known answers: retry arithmetic, the
//! route timeout's bound under faults, circuit breakers, rate limits, outlier ejection, retry
//! storms with and without a budget, and the faults themselves.

use crate::common::{flag_count, run, scenario, status_count};
use metrics::RunMetrics;
use proxy_engine::Nanos;

/// `observed` is within four standard errors of a binomial share `p` over `n` trials.
fn within_binomial(observed: f64, p: f64, n: u64, what: &str) {
    let sd = (p * (1.0 - p) / n as f64).sqrt();
    assert!(
        (observed - p).abs() <= 4.0 * sd + 1e-12,
        "{what}: observed {observed:.5}, expected {p:.5} ± {:.5} (4σ, n = {n})",
        4.0 * sd
    );
}

fn share_with_attempts(m: &RunMetrics, k: usize) -> f64 {
    let n = m.totals.by_attempts.get(k).copied().unwrap_or(0);
    n as f64 / m.totals.count as f64
}

#[test]
fn retries_follow_the_geometric_law() {
    // Every try fails independently with p = 0.3 (503); 2 retries on 5xx. Success is
    // 1 − p³; a request takes k tries with probability p^(k−1)(1 − p) for k ≤ 2 and p² for 3.
    let s = scenario(
        r#"Scenario(seed: 7, duration: "10s", services: {
            "svc": Service(versions: {"v1": (instances: 4, workers: 200, latency: Constant("1ms"),
                                              errors: 0.3, error_status: 503)}),
        }, mesh: Mesh(virtual_services: [VirtualService(hosts: ["svc"], http: [
            HttpRoute(route: [(destination: (host: "svc"))],
                      retries: (attempts: 2, retry_on: "5xx")),
        ])]), workload: [OpenLoop(host: "svc", rate: 2000)])"#,
    );
    let m = run(&s);
    let n = m.totals.count;
    assert!(n > 15_000, "{n}");
    let p: f64 = 0.3;
    within_binomial(
        m.totals.success as f64 / n as f64,
        1.0 - p.powi(3),
        n,
        "success rate",
    );
    within_binomial(share_with_attempts(&m, 1), 1.0 - p, n, "1 try");
    within_binomial(share_with_attempts(&m, 2), p * (1.0 - p), n, "2 tries");
    within_binomial(share_with_attempts(&m, 3), p * p, n, "3 tries");
    assert_eq!(m.totals.by_attempts.len(), 4, "never more than 3 tries");
    // Every failure left is a request whose 3 tries all failed: flagged URX.
    assert_eq!(flag_count(&m, "URX"), n - m.totals.success);
    let retries: u64 = m.events.iter().map(|(_, e)| e.retries).sum();
    assert_eq!(m.totals.attempts, n + retries);
}

#[test]
fn per_try_timeouts_are_not_retried_under_istio_default_policy() {
    // A 50 ms per-try timeout on a 100 ms service with the default retry_on: no retry, 504 UT.
    let s = scenario(
        r#"Scenario(duration: "1s", services: {
            "svc": Service(versions: {"v1": (instances: 2, workers: 100, latency: Constant("100ms"))}),
        }, mesh: Mesh(virtual_services: [VirtualService(hosts: ["svc"], http: [
            HttpRoute(route: [(destination: (host: "svc"))],
                      retries: (attempts: 2, per_try_timeout: "50ms")),
        ])]), workload: [OpenLoop(host: "svc", rate: 100, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert_eq!(status_count(&m, 504), m.totals.count);
    assert_eq!(flag_count(&m, "UT"), m.totals.count);
    assert_eq!(m.totals.attempts, m.totals.count, "no retries");
    let h = &m.totals.latency;
    assert!(h.equivalent(h.min(), 50_000_000) && h.equivalent(h.max(), 50_000_000));
}

#[test]
fn the_route_timeout_bounds_client_latency_under_every_fault() {
    // Five instances, each with a different fault, retries with per-try timeouts: whatever
    // happens, no client waits longer than the 300 ms route timeout (plus nothing: the timer
    // fires at the exact instant in virtual time).
    let s = scenario(
        r#"Scenario(seed: 3, duration: "20s", network: (latency: Constant("1ms")), services: {
            "svc": Service(versions: {"v1": (instances: 6, workers: 50, latency: LogNormal(p50: "20ms", p99: "200ms"))}),
        }, mesh: Mesh(virtual_services: [VirtualService(hosts: ["svc"], http: [
            HttpRoute(route: [(destination: (host: "svc"))], timeout: "300ms",
                      retries: (attempts: 3, per_try_timeout: "120ms", retry_on: "5xx,reset,connect-failure")),
        ])]),
        faults: [
            (target: (service: "svc", instance: 0), start: "2s", kind: Hang),
            (target: (service: "svc", instance: 1), start: "4s", length: "5s", kind: Crash),
            (target: (service: "svc", instance: 2), kind: Latency(Exponential(mean: "200ms"))),
            (target: (service: "svc", instance: 3), start: "6s", length: "6s", kind: Partition(from: "load-0")),
            (target: (service: "svc", instance: 4), kind: Errors(probability: 0.5, status: 503)),
            (target: (service: "svc", instance: 5), start: "1s", length: "10s", kind: SlowStart(factor: 8)),
        ],
        workload: [OpenLoop(host: "svc", rate: 300)])"#,
    );
    let m = run(&s);
    let max = m.totals.latency.max();
    let bound = Nanos::from_millis(300).0;
    assert!(
        m.totals.latency.equivalent(max, bound) || max <= bound,
        "max {max} ns over the 300 ms route timeout"
    );
    assert!(flag_count(&m, "UT") > 0, "some requests did time out");
    assert!(m.totals.success as f64 > 0.8 * m.totals.count as f64);
}

#[test]
fn a_crash_refuses_connections_and_resets_what_it_held() {
    // Two instances, no retries: while instance 0 is down (1 s – 2 s), requests sent to it fail
    // (refused: UF; on a connection the crash closed, or in its queue: UR); afterwards all is
    // well again.
    let s = scenario(
        r#"Scenario(duration: "3s", services: {
            "svc": Service(versions: {"v1": (instances: 2, workers: 4, latency: Constant("20ms"))}),
        }, mesh: Mesh(
            virtual_services: [VirtualService(hosts: ["svc"], http: [
                HttpRoute(route: [(destination: (host: "svc"))], retries: (attempts: 0))])],
            destination_rules: [DestinationRule(host: "svc", traffic_policy: (load_balancer: (simple: ROUND_ROBIN)))],
        ),
        faults: [(target: (service: "svc", instance: 0), start: "1s", length: "1s", kind: Crash)],
        workload: [OpenLoop(host: "svc", rate: 200, arrivals: Constant)])"#,
    );
    let m = run(&s);
    let failed = m.totals.count - m.totals.success;
    // Round robin: half of the ~200 requests of the crash second went to instance 0.
    assert!((90..=110).contains(&failed), "{failed} failures");
    assert_eq!(flag_count(&m, "UF") + flag_count(&m, "UR"), failed);
    // By start time: the crash second, plus the few requests in flight when it began.
    let w = &m.series.windows;
    assert!(w[0].errors <= 4, "in flight at the crash: {}", w[0].errors);
    assert_eq!(w[2].errors, 0, "all is well after the restart");
    // With Istio's default policy the refused connections are retried on the other host.
    let retried = s.clone();
    let mut retried = retried;
    retried.mesh.virtual_services.clear();
    let m = run(&retried);
    assert!(
        flag_count(&m, "UF") == 0 && m.totals.count - m.totals.success < 10,
        "default retries hide refused connections: {:?}",
        m.totals.flags().collect::<Vec<_>>()
    );
}

#[test]
fn a_partition_makes_connects_time_out() {
    // The load cannot reach the only instance for the first 2 s: the connect timeout (1 s here)
    // fails the requests with UF; the default policy retries twice, so a request gives up after
    // three connect timeouts plus backoff.
    let s = scenario(
        r#"Scenario(duration: "3s", drain: "10s", services: {
            "svc": Service(versions: {"v1": (instances: 1, workers: 4, latency: Constant("5ms"))}),
        }, mesh: Mesh(destination_rules: [DestinationRule(host: "svc", traffic_policy: (
            connection_pool: (tcp: (connect_timeout: "1s"))))]),
        faults: [(target: (service: "svc"), length: "2s", kind: Partition(from: "load-0"))],
        workload: [OpenLoop(host: "svc", rate: 10, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert!(flag_count(&m, "UF") > 0);
    assert_eq!(flag_count(&m, "UF"), m.totals.count - m.totals.success);
    assert!(m.totals.success > 0, "the partition heals");
}

fn library(name: &str, duration: Option<u64>) -> RunMetrics {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    let mut s = sim_core::load(&path).unwrap_or_else(|e| panic!("{e}"));
    if let Some(secs) = duration {
        s.duration = Nanos::from_secs(secs);
    }
    run(&s)
}

#[test]
fn retry_storm_amplifies_without_a_budget_and_not_with_one() {
    let storm = library("retry-storm.ron", Some(30));
    let budget = library("retry-storm-budget.ron", Some(30));
    let amp = storm.totals.amplification();
    let amp_budget = budget.totals.amplification();
    assert!(amp > 2.0, "without a budget: {amp:.3} attempts per request");
    assert!(amp_budget <= 1.2, "with a budget: {amp_budget:.3}");
    // The storm never recovers; the budgeted run does (last 5 s all successful).
    let tail = |m: &RunMetrics| {
        let w = &m.series.windows[25..30];
        w.iter().map(|w| w.errors).sum::<u64>() as f64
            / w.iter().map(|w| w.requests).sum::<u64>() as f64
    };
    assert!(
        tail(&storm) > 0.9,
        "storm tail error share {}",
        tail(&storm)
    );
    assert_eq!(tail(&budget), 0.0);
    let overflows: u64 = budget.events.iter().map(|(_, e)| e.retry_overflows).sum();
    assert!(overflows > 0, "the budget refused retries");
}

#[test]
fn istio_circuit_breaking_task_overflows_a_share() {
    let m = library("istio-circuit-breaking.ron", None);
    let uo = flag_count(&m, "UO");
    let share = uo as f64 / m.totals.count as f64;
    assert!((0.2..0.6).contains(&share), "UO share {share:.3}");
    assert_eq!(status_count(&m, 503), uo, "every 503 is an overflow");
    let events: u64 = m.events.iter().map(|(_, e)| e.overflows).sum();
    assert_eq!(events, uo);
}

#[test]
fn local_rate_limit_passes_burst_plus_refill() {
    // 50-token bucket refilled at 100/s, offered ~250/s for 30 s: 50 + 100 · 30 pass.
    let m = library("rate-limit.ron", None);
    let api = &m
        .routes
        .iter()
        .find(|(n, _)| n == "backend/api")
        .expect("api route")
        .1;
    let limited = api.flags().find(|(f, _)| *f == "RL").map_or(0, |(_, n)| n);
    let passed = api.count - limited;
    assert!(passed.abs_diff(50 + 100 * 30) <= 2, "{passed} passed");
    let health = &m
        .routes
        .iter()
        .find(|(n, _)| n == "backend/health")
        .expect("health")
        .1;
    assert!(health.flags().next().is_none(), "health is not limited");
}

#[test]
fn outlier_detection_ejects_the_bad_instance_and_success_recovers() {
    let m = library("outlier-ejection.ron", None);
    let e = &m.events[0].1;
    assert_eq!(
        e.ejections, 2,
        "ejected at 10 s and again after returning at 50 s"
    );
    assert_eq!(e.unejections, 2, "returned on the 50 s and 120 s ticks");
    // Exactly five failures per ejection: the fifth consecutive 5xx ejects at once.
    assert_eq!(status_count(&m, 500), 10);
    let w = &m.series.windows;
    assert_eq!(w[10].events.ejections, 1);
    assert_eq!(w[50].events.unejections + w[50].events.ejections, 2);
}

#[test]
fn breakers_turn_excess_away_fast() {
    let m = library("breaker-protects.ron", None);
    let route = |name: &str| &m.routes.iter().find(|(n, _)| n == name).expect(name).1;
    let protected = route("protected/default");
    let unprotected = route("unprotected/default");
    assert!(protected.flags().any(|(f, _)| f == "UO"));
    assert!(
        protected.latency.value_at_quantile(0.99) * 5 < unprotected.latency.value_at_quantile(0.5),
        "admitted requests stay fast"
    );
}
