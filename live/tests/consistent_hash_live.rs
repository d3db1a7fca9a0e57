//! Consistent hashing places instances by their stable names, so a hash key lands on the same
//! instance in the simulator and in `run --live` (where the instances are real sockets on
//! ephemeral ports).

use live::loadgen::Progress;
use metrics::RunMetrics;
use std::sync::Arc;

const SCENARIO: &str = r#"Scenario(
    seed: 5,
    duration: "2s",
    services: {
        "cart": Service(versions: {"v1": (instances: 6, workers: 8, latency: Constant("1ms"))}),
    },
    mesh: Mesh(destination_rules: [DestinationRule(host: "cart", traffic_policy: (
        load_balancer: (consistent_hash: (http_header_name: "x-user")),
    ))]),
    workload: [OpenLoop(host: "cart", rate: 150, requests: [
        (weight: 1, headers: {"x-user": "alice"}),
        (weight: 2, headers: {"x-user": "bob"}),
        (weight: 4, headers: {"x-user": "carol"}),
    ])],
)"#;

/// Instances that served requests, most first.
fn busiest(m: &RunMetrics) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = m
        .instances
        .iter()
        .filter(|(_, i)| i.requests > 0)
        .map(|(n, i)| (n.clone(), i.requests))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_lands_on_the_same_instance_in_the_simulator_and_live() {
    let s = sim_core::load::parse("hash.ron", SCENARIO).unwrap_or_else(|e| panic!("{e}"));
    sim_core::load::validate("hash.ron", SCENARIO, &s).unwrap_or_else(|e| panic!("{e}"));
    let sim = sim_core::run(&s, s.seed, &mut |_| {}).expect("sim runs");
    let live = live::lab::run(
        &s,
        s.seed,
        live::lab::Connections {
            initial: 8,
            max: 10_000,
        },
        Arc::new(Progress::default()),
    )
    .await
    .expect("live runs");
    let (a, b) = (busiest(&sim), busiest(&live));
    let names = |v: &[(String, u64)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    // Three keys with shares 1/7, 2/7, 4/7 over ~300 requests: each instance's count is far
    // from the others' (binomial sd ≤ 9), so the order by count names which key went where.
    assert!(a.len() <= 3, "sim: a key spread over instances: {a:?}");
    assert_eq!(names(&a), names(&b), "sim {a:?} vs live {b:?}");
}
