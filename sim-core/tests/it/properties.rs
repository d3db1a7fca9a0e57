//! Property tests over random resilience configurations and fault schedules: whatever the
//! limits, retries, outlier settings and faults, every proxy stays within its pool limits and
//! `maxEjectionPercent` at every step, every request ends in exactly one outcome, and the same
//! seed gives the same results.

use metrics::RunMetrics;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Params {
    instances: u32,
    workers: u32,
    queue: u32,
    errors: f64,
    rate: u32,
    max_connections: u32,
    pending: u32,
    max_requests: u32,
    per_connection: u32,
    max_retries: u32,
    budget: bool,
    attempts: u32,
    retry_on: &'static str,
    per_try_ms: u32,
    timeout_ms: u32,
    consecutive: u32,
    max_ejection: u32,
    faults: Vec<(u32, u32, u32, u32)>,
    closed_users: u32,
    http2: bool,
    hash: bool,
}

fn params() -> impl Strategy<Value = Params> {
    let retry_on = prop::sample::select(vec![
        "5xx",
        "gateway-error,reset",
        "connect-failure",
        "reset,503",
        "retriable-4xx,5xx",
    ]);
    (
        (1u32..6, 1u32..8, 0u32..20, 0.0f64..0.5, 50u32..600),
        (0u32..6, 0u32..6, 0u32..12, 0u32..4, 0u32..4, any::<bool>()),
        (0u32..4, retry_on, 0u32..80, 0u32..400),
        (0u32..6, 0u32..101),
        prop::collection::vec((0u32..6, 0u32..6, 0u32..2000, 100u32..1500), 0..4),
        (0u32..4, any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(svc, pool, retry, outlier, faults, (closed_users, http2, hash))| Params {
                instances: svc.0,
                workers: svc.1,
                queue: svc.2,
                errors: svc.3,
                rate: svc.4,
                max_connections: pool.0,
                pending: pool.1,
                max_requests: pool.2,
                per_connection: pool.3,
                max_retries: pool.4,
                budget: pool.5,
                attempts: retry.0,
                retry_on: retry.1,
                per_try_ms: retry.2,
                timeout_ms: retry.3,
                consecutive: outlier.0,
                max_ejection: outlier.1,
                faults,
                closed_users,
                http2,
                hash,
            },
        )
}

/// A scenario text for `p`; limits of 0 are left unset (Istio: unlimited).
fn scenario(p: &Params) -> String {
    let opt = |name: &str, v: u32| {
        if v == 0 {
            String::new()
        } else {
            format!("{name}: {v}, ")
        }
    };
    let kinds = [
        "Errors(probability: 0.7, status: 503)",
        "Latency(Exponential(mean: \"50ms\"))",
        "Crash",
        "Hang",
        "Partition(from: \"load-0\")",
        "SlowStart(factor: 4)",
    ];
    let faults: Vec<String> = p
        .faults
        .iter()
        .map(|(kind, instance, start, length)| {
            format!(
                "(target: (service: \"svc\", instance: {}), start: \"{start}ms\", length: \"{length}ms\", kind: {})",
                instance % p.instances,
                kinds[*kind as usize]
            )
        })
        .collect();
    let retries = format!(
        "retries: (attempts: {}, retry_on: \"{}\"{}), {}",
        p.attempts,
        p.retry_on,
        if p.per_try_ms > 0 {
            format!(", per_try_timeout: \"{}ms\"", p.per_try_ms)
        } else {
            String::new()
        },
        if p.timeout_ms > 0 {
            format!("timeout: \"{}ms\",", p.timeout_ms)
        } else {
            String::new()
        }
    );
    let outlier = if p.consecutive > 0 {
        format!(
            "outlier_detection: (consecutive_5xx_errors: {}, interval: \"200ms\", base_ejection_time: \"300ms\", max_ejection_percent: {}),",
            p.consecutive, p.max_ejection
        )
    } else {
        String::new()
    };
    let budget = if p.budget {
        "retry_budget: (percent: 20, min_retry_concurrency: 2),"
    } else {
        ""
    };
    let lb = if p.hash {
        "load_balancer: (consistent_hash: (http_header_name: \"x-user\")),"
    } else {
        ""
    };
    let mut workload = format!(
        "OpenLoop(host: \"svc\", rate: {}, requests: [(headers: {{\"x-user\": \"a\"}}), (headers: {{\"x-user\": \"b\"}}), (path: \"/\")])",
        p.rate
    );
    if p.closed_users > 0 {
        workload.push_str(&format!(
            ", ClosedLoop(name: \"users\", host: \"svc\", users: {}, think: Exponential(mean: \"2ms\"))",
            p.closed_users
        ));
    }
    format!(
        r#"Scenario(seed: 5, duration: "2s", drain: "3s", network: (latency: Exponential(mean: "200us")),
        services: {{
            "svc": Service(versions: {{"v1": (instances: {}, workers: {}, queue: {}, errors: {},
                                             latency: Exponential(mean: "5ms"))}}),
        }},
        mesh: Mesh(
            virtual_services: [VirtualService(hosts: ["svc"], http: [
                HttpRoute(route: [(destination: (host: "svc"))], {retries})])],
            destination_rules: [DestinationRule(host: "svc", traffic_policy: (
                connection_pool: (tcp: ({}connect_timeout: "300ms"),
                                  http: ({}{}{}{}{})),
                {outlier} {budget} {lb}
            ))],
        ),
        faults: [{}],
        workload: [{workload}])"#,
        p.instances,
        p.workers,
        p.queue,
        p.errors,
        opt("max_connections", p.max_connections),
        opt("http1_max_pending_requests", p.pending),
        opt("http2_max_requests", p.max_requests),
        opt("max_requests_per_connection", p.per_connection),
        opt("max_retries", p.max_retries),
        if p.http2 {
            "h2_upgrade_policy: UPGRADE, "
        } else {
            ""
        },
        faults.join(", "),
    )
}

/// What must be identical between two runs with one seed.
fn fingerprint(m: &RunMetrics) -> String {
    let t = &m.totals;
    let windows: Vec<(u64, u64)> = m
        .series
        .windows
        .iter()
        .map(|w| (w.requests, w.errors))
        .collect();
    format!(
        "{} {} {:?} {:?} {:?} {} {:?} {:?}",
        m.generated,
        t.count,
        t.by_status,
        t.by_flag,
        t.by_attempts,
        t.latency_sum_ns,
        m.events,
        windows
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn limits_hold_every_request_ends_once_and_runs_repeat(p in params()) {
        let text = scenario(&p);
        let s = sim_core::load::parse("prop.ron", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        sim_core::load::validate("prop.ron", &text, &s).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let m = sim_core::sim::run_checked(&s, s.seed)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(m.generated, m.totals.count, "one outcome per request\n{}", text);
        let by_status: u64 = m.totals.by_status.iter().map(|(_, n)| n).sum();
        prop_assert_eq!(by_status, m.totals.count);
        let again = sim_core::run(&s, s.seed, &mut |_| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(fingerprint(&m), fingerprint(&again), "same seed, same results");
    }
}
