//! A failure at any hop is visible in the report: a 404 `NR` or 429 `RL` at a middle hop has a
//! route row, and a client success that a retry bought over a failed inner hop is counted in
//! `absorbed_failures` and warned about in the summary.

use metrics::{RunMetrics, Stats};
use reports::{Report, RunInfo};

fn run(text: &str) -> RunMetrics {
    let s = sim_core::load::parse("hops.ron", text).unwrap_or_else(|e| panic!("{e}"));
    sim_core::load::validate("hops.ron", text, &s).unwrap_or_else(|e| panic!("{e}"));
    let m = sim_core::run(&s, s.seed, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.generated, m.totals.count, "nothing lost");
    m
}

fn row<'a>(rows: &'a [(String, Stats)], name: &str) -> &'a Stats {
    &rows
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| {
            panic!(
                "no `{name}` in {:?}",
                rows.iter().map(|r| &r.0).collect::<Vec<_>>()
            )
        })
        .1
}

fn flag(s: &Stats, name: &str) -> u64 {
    s.flags().find(|(f, _)| *f == name).map_or(0, |(_, n)| n)
}

/// The frontend calls `/missing` on a backend whose only route is `/items`, and `/limited`
/// on a route with a local rate limit: both fail at the middle hop, and both show.
#[test]
fn no_route_and_rate_limit_at_a_middle_hop_have_rows() {
    let m = run(r#"Scenario(
        seed: 3,
        duration: "2s",
        services: {
            "frontend": Service(
                versions: {"v1": (instances: 1, workers: 64, latency: Constant("1ms"))},
                calls: [Parallel([(host: "backend", path: "/missing"), (host: "backend", path: "/limited")])],
            ),
            "backend": Service(versions: {"v1": (instances: 1, workers: 64, latency: Constant("1ms"))}),
        },
        mesh: Mesh(virtual_services: [VirtualService(hosts: ["backend"], http: [
            HttpRoute(name: "items", match: [(uri: Prefix("/items"))], route: [(destination: (host: "backend"))]),
            HttpRoute(name: "limited", match: [(uri: Prefix("/limited"))], route: [(destination: (host: "backend"))],
                local_rate_limit: (max_tokens: 5, tokens_per_fill: 1, fill_interval: "1s")),
        ])]),
        workload: [OpenLoop(host: "frontend", rate: 50, arrivals: Constant)],
    )"#);
    let n = m.generated;
    assert!(n >= 90, "{n}");
    let missing = row(&m.routes, "backend/(no route)");
    assert_eq!(missing.count, n, "every call to /missing");
    assert_eq!(flag(missing, "NR"), n);
    assert_eq!(missing.by_status, vec![(404, n)]);
    // 5 tokens at the start and one a second: all but at most 5 + 2 are limited.
    let limited = row(&m.routes, "backend/limited");
    assert_eq!(limited.count, n);
    let rl = flag(limited, "RL");
    assert!(rl >= n - 7 && rl < n, "{rl} of {n} limited");
    assert_eq!(
        limited.by_status.iter().find(|e| e.0 == 429).map(|e| e.1),
        Some(rl)
    );
    // A 4xx is not a failed call for the handler (only 5xx or no answer is), so the client
    // saw only successes: the report says each one hid a failed hop.
    assert_eq!(m.totals.success, n);
    assert_eq!(m.absorbed, Some(n));
}

/// Backend answers 503 one time in two; the frontend's calls are not retried, so its handler
/// fails, and the client's own proxy retries the frontend on 5xx. Every client success that
/// followed a failed inner hop is counted, and the summary says so.
#[test]
fn a_success_bought_by_an_outer_retry_is_counted_and_warned() {
    let m = run(r#"Scenario(
        seed: 11,
        duration: "4s",
        services: {
            "frontend": Service(
                versions: {"v1": (instances: 2, workers: 64, latency: Constant("1ms"))},
                calls: [Call(host: "backend", path: "/")],
            ),
            "backend": Service(versions: {"v1": (instances: 2, workers: 64, latency: Constant("1ms"), errors: 0.5, error_status: 503)}),
        },
        mesh: Mesh(virtual_services: [
            VirtualService(hosts: ["backend"], http: [HttpRoute(name: "once", route: [(destination: (host: "backend"))], retries: (attempts: 0))]),
            VirtualService(hosts: ["frontend"], http: [HttpRoute(name: "retry", route: [(destination: (host: "frontend"))], retries: (attempts: 4, retry_on: "5xx"))]),
        ]),
        workload: [OpenLoop(host: "frontend", rate: 200)],
    )"#);
    let backend = row(&m.routes, "backend/once");
    let inner_failures = backend.count - backend.success;
    assert!(inner_failures > 100, "{inner_failures}");
    // A client request whose first frontend try failed (p = 1/2) and a later one succeeded
    // (p = 1 − 1/2⁴ of the rest): absorbed = n · 1/2 · (1 − 1/16) ± 5 sd.
    let n = m.totals.count as f64;
    let p = 0.5 * (1.0 - 1.0 / 16.0);
    let absorbed = m
        .absorbed
        .expect("the simulator follows requests across hops") as f64;
    let sd = (n * p * (1.0 - p)).sqrt();
    assert!(
        (absorbed - n * p).abs() <= 5.0 * sd,
        "absorbed {absorbed} of {n}, expected {:.0} ± {:.0}",
        n * p,
        5.0 * sd
    );
    let info = RunInfo {
        scenario: "hops".into(),
        mode: "sim",
        seed: 11,
        duration_ns: 4_000_000_000,
    };
    let report = Report::new(&info, &m);
    assert_eq!(report.absorbed_failures, m.absorbed);
    let text = reports::text::summary(&report, None, &reports::table::Look::default());
    assert!(text.contains("a hop inside the mesh failed"), "{text}");
}

/// The one bad instance of `outlier-ejection.ron` is visible by name: its requests fall while
/// it is ejected, and its ejected time is what outlier detection promises (30 s, then 60 s,
/// each returning on the next 10 s interval tick: 90 to 110 s in all).
#[test]
fn the_bad_instance_of_the_outlier_scenario_is_named_with_its_ejected_time() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/outlier-ejection.ron");
    let s = sim_core::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let m = sim_core::run(&s, s.seed, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.instances.len(), 10, "every instance has a row");
    let requests: u64 = m.instances.iter().map(|(_, i)| i.requests).sum();
    assert_eq!(
        requests,
        row(&m.destinations, "backend/v1").count,
        "rows add up"
    );
    let (bad, good): (Vec<_>, Vec<_>) = m.instances.iter().partition(|(_, i)| i.ejections > 0);
    assert_eq!(
        bad.len(),
        1,
        "{:?}",
        bad.iter().map(|b| &b.0).collect::<Vec<_>>()
    );
    let (name, b) = bad[0];
    assert_eq!(name, "backend/v1/3");
    assert_eq!(b.ejections, 2);
    let ejected_s = b.ejected_ns as f64 / 1e9;
    assert!((90.0..=110.0).contains(&ejected_s), "{ejected_s}");
    assert!(b.success < b.requests);
    let least_good = good.iter().map(|(_, i)| i.requests).min().unwrap_or(0);
    assert!(
        b.requests * 5 < least_good,
        "ejected most of the run: {} vs {least_good}",
        b.requests
    );
}
