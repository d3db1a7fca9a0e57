//! The modeled services behave as specified: worker limits and bounded queues, call graphs in
//! sequence and in parallel, modeled error rates, closed-loop users, and the drain that cancels
//! what never finishes.

use crate::common::{flag_count, run, scenario, status_count};
use proxy_engine::Nanos;

#[test]
fn call_steps_add_up_in_sequence_and_take_the_max_in_parallel() {
    // frontend: [b (5 ms)] then [c (3 ms) || d (7 ms)], then its own 1 ms: 5 + 7 + 1 = 13 ms.
    let s = scenario(
        r#"Scenario(duration: "1s", services: {
            "frontend": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("1ms"))},
                calls: [Call(host: "b"), Parallel([(host: "c"), (host: "d")])]),
            "b": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("5ms"))}),
            "c": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("3ms"))}),
            "d": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("7ms"))}),
        }, workload: [OpenLoop(host: "frontend", rate: 50, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert_eq!(m.totals.count, 50);
    let h = &m.totals.latency;
    assert!(
        h.equivalent(h.min(), h.max()),
        "every request takes the same time"
    );
    assert_eq!(m.totals.mean_ns(), 13e6);
    let hops: Vec<&str> = m.destinations.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(hops, ["b/v1", "c/v1", "d/v1", "frontend/v1"]);
    let d = &m.destinations[2].1;
    assert_eq!(
        (d.count, d.mean_ns()),
        (50, 7e6),
        "per-hop latency is the hop's own"
    );
}

#[test]
fn full_queue_answers_503_at_once() {
    // One worker, no queue, 10 ms service, an arrival every 5 ms: every other request finds
    // the worker busy. (At t = 10 ms the finish was scheduled first, so it frees the worker
    // before the next arrival: ties break by insertion order.)
    let s = scenario(
        r#"Scenario(duration: "1s", services: {
            "svc": Service(versions: {"v1": (instances: 1, workers: 1, queue: 0, latency: Constant("10ms"))}),
        }, workload: [OpenLoop(host: "svc", rate: 200, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert_eq!(m.totals.count, 200);
    assert_eq!(status_count(&m, 503), 100);
    assert_eq!(status_count(&m, 200), 100);
}

#[test]
fn fifo_queue_holds_requests_until_a_worker_frees() {
    // A burst of 3 at once (constant 1000/s over 3 ms) on one worker with 5 ms service: the
    // waits are 0, 4 and 8 ms (arrivals at 0, 1, 2 ms), so latencies are 5, 9 and 13 ms.
    let s = scenario(
        r#"Scenario(duration: "3ms", services: {
            "svc": Service(versions: {"v1": (instances: 1, workers: 1, latency: Constant("5ms"))}),
        }, workload: [OpenLoop(host: "svc", rate: 1000, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert_eq!(m.totals.count, 3);
    assert_eq!(m.totals.mean_ns(), 9e6);
    assert_eq!(
        m.totals.latency.max(),
        m.totals.latency.highest_equivalent(13_000_000)
    );
}

#[test]
fn error_rate_is_binomial() {
    let s = scenario(
        r#"Scenario(seed: 3, duration: "100s", services: {
            "svc": Service(versions: {"v1": (instances: 2, workers: 64, latency: Constant("1ms"), errors: 0.2, error_status: 503)}),
        }, workload: [OpenLoop(host: "svc", rate: 500)])"#,
    );
    let m = run(&s);
    let n = m.totals.count as f64;
    let errors = status_count(&m, 503) as f64;
    // Binomial(n, 0.2): allow 5 standard deviations (false failure odds below 1e-6).
    let sd = (n * 0.2 * 0.8).sqrt();
    assert!((errors - 0.2 * n).abs() < 5.0 * sd, "{errors} of {n}");
}

#[test]
fn closed_loop_users_follow_littles_law() {
    // 5 users, 10 ms response, 90 ms think: each user completes a request every 100 ms.
    let s = scenario(
        r#"Scenario(duration: "10s", services: {
            "svc": Service(versions: {"v1": (instances: 1, workers: 5, latency: Constant("10ms"))}),
        }, workload: [ClosedLoop(host: "svc", users: 5, think: Constant("90ms"))])"#,
    );
    let m = run(&s);
    assert_eq!(m.totals.count, 5 * 100);
    assert_eq!(m.totals.mean_ns(), 10e6);
}

#[test]
fn requests_still_open_at_the_drain_deadline_are_cancelled_not_lost() {
    // 100 ms of arrivals at 100/s into a service that takes 10 minutes; drain 1 s.
    let s = scenario(
        r#"Scenario(duration: "100ms", drain: "1s", services: {
            "slow": Service(versions: {"v1": (instances: 1, workers: 1000, latency: Constant("10m"))}),
        }, workload: [OpenLoop(host: "slow", rate: 100, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert_eq!(m.totals.count, 10);
    assert_eq!(flag_count(&m, "DC"), 10);
    assert_eq!(status_count(&m, 0), 10);
    // Cancelled at the deadline: latency is deadline - start, at most 1.1 s.
    assert!(m.totals.latency.max() <= Nanos::from_millis(1100).0 + 2_000_000);
}

#[test]
fn failed_call_fails_the_caller_with_500() {
    let s = scenario(
        r#"Scenario(duration: "1s", services: {
            "front": Service(versions: {"v1": (instances: 1, workers: 10, latency: Constant("1ms"))},
                calls: [Call(host: "back")]),
            "back": Service(versions: {"v1": (instances: 1, workers: 10, latency: Constant("1ms"), errors: 1.0, error_status: 503)}),
        }, workload: [OpenLoop(host: "front", rate: 20, arrivals: Constant)])"#,
    );
    let m = run(&s);
    assert_eq!(status_count(&m, 500), 20);
    let back = &m
        .destinations
        .iter()
        .find(|(n, _)| n == "back/v1")
        .expect("hop")
        .1;
    assert_eq!(back.by_status, vec![(503, 20)]);
}

#[test]
fn weighted_split_shares_are_binomial() {
    let s = scenario(
        r#"Scenario(seed: 11, duration: "60s", services: {
            "svc": Service(versions: {
                "v1": (instances: 2, workers: 64, latency: Constant("1ms")),
                "v2": (instances: 2, workers: 64, latency: Constant("1ms")),
            }),
        }, mesh: Mesh(
            virtual_services: [VirtualService(hosts: ["svc"], http: [HttpRoute(route: [
                (destination: (host: "svc", subset: "v1"), weight: 80),
                (destination: (host: "svc", subset: "v2"), weight: 20),
            ])])],
            destination_rules: [DestinationRule(host: "svc", subsets: [
                (name: "v1", labels: {"version": "v1"}), (name: "v2", labels: {"version": "v2"})])],
        ), workload: [OpenLoop(host: "svc", rate: 1000)])"#,
    );
    let m = run(&s);
    let n = m.totals.count as f64;
    let v2 = m
        .destinations
        .iter()
        .find(|(d, _)| d == "svc/v2")
        .expect("v2")
        .1
        .count as f64;
    // Binomial(n, 0.2), 5 standard deviations.
    assert!(
        (v2 - 0.2 * n).abs() < 5.0 * (n * 0.16).sqrt(),
        "{v2} of {n}"
    );
}

#[test]
fn work_steps_and_call_probabilities_shape_the_handler() {
    // frontend: 2 ms of work, then b with probability 0.3 (5 ms), then its own 1 ms: a
    // request takes 3 ms or 8 ms, and b gets a binomial 30 % of them.
    let s = scenario(
        r#"Scenario(duration: "20s", services: {
            "frontend": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("1ms"))},
                calls: [Work(Constant("2ms")), Call(host: "b", probability: 0.3)]),
            "b": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("5ms"))}),
        }, workload: [OpenLoop(host: "frontend", rate: 200, arrivals: Constant)])"#,
    );
    let m = run(&s);
    let n = m.totals.count;
    assert_eq!(n, 4000);
    let b = (m.destinations.iter())
        .find(|(d, _)| d == "b/v1")
        .map_or(0, |(_, st)| st.count);
    let sd = (0.3 * 0.7 * n as f64).sqrt();
    assert!((b as f64 - 0.3 * n as f64).abs() < 5.0 * sd, "{b} of {n}");
    let h = &m.totals.latency;
    assert_eq!(
        h.count_between(0, 3_000_000),
        n - b,
        "3 ms without the call"
    );
    assert!(h.equivalent(h.max(), 8_000_000), "8 ms with it");
}

#[test]
fn a_version_may_call_what_its_service_does_not() {
    let s = scenario(
        r#"Scenario(duration: "10s", services: {
            "reviews": Service(versions: {
                "v1": (instances: 1, workers: 100, latency: Constant("1ms")),
                "v2": (instances: 1, workers: 100, latency: Constant("1ms"), calls: [Call(host: "ratings")]),
            }),
            "ratings": Service(versions: {"v1": (instances: 1, workers: 100, latency: Constant("1ms"))}),
        }, workload: [OpenLoop(host: "reviews", rate: 100)])"#,
    );
    let m = run(&s);
    let count = |d: &str| {
        (m.destinations.iter())
            .find(|(n, _)| n == d)
            .map_or(0, |(_, st)| st.count)
    };
    assert_eq!(count("ratings/v1"), count("reviews/v2"));
    assert!(count("reviews/v1") > 0);
}
