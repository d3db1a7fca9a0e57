//! The live load generator stays open loop: with an instance that hangs, the requests it holds
//! do not hold back the ones due meanwhile (new connections are opened), so `run --live`
//! generates what the simulation of the same file generates, and every request has one outcome.

use live::loadgen::Progress;
use std::sync::Arc;

/// Poisson at 150/s for 4 s; from 1 s on, one of two instances accepts and never answers. No
/// route timeout: hung requests wait until the drain (2 s) cuts them off.
const SCENARIO: &str = r#"Scenario(
    seed: 9,
    duration: "4s",
    drain: "2s",
    services: {
        "api": Service(versions: {"v1": (instances: 2, workers: 64, latency: Constant("2ms"))}),
    },
    faults: [(target: (service: "api", instance: 0), start: "1s", kind: Hang)],
    workload: [OpenLoop(host: "api", rate: 150)],
)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_instance_does_not_hold_back_the_open_loop() {
    let s = sim_core::load::parse("open-loop.ron", SCENARIO).unwrap_or_else(|e| panic!("{e}"));
    sim_core::load::validate("open-loop.ron", SCENARIO, &s).unwrap_or_else(|e| panic!("{e}"));
    let sim = sim_core::run(&s, s.seed, &mut |_| {}).expect("sim runs");
    let connections = live::lab::Connections {
        initial: 8,
        max: 10_000,
    };
    let live = live::lab::run(&s, s.seed, connections, Arc::new(Progress::default()))
        .await
        .expect("live runs");
    // Both counts are Poisson with mean 150 · 4 = 600: each within 5 sd (5 · √600 ≈ 122).
    let n = 600.0;
    for (what, got) in [("sim", sim.generated), ("live", live.generated)] {
        assert!(
            (got as f64 - n).abs() <= 5.0 * n.sqrt(),
            "{what} generated {got}, expected {n} ± {:.0}",
            5.0 * n.sqrt()
        );
    }
    assert_eq!(live.dropped, 0, "a generous connection limit drops nothing");
    assert_eq!(live.generated, live.totals.count, "one outcome per request");
    // The hung instance held requests until the drain cut them off (DC). Least-request
    // balancing steers away from it as its active count grows, so far fewer than half.
    let dc = |m: &metrics::RunMetrics| {
        m.totals
            .flags()
            .find(|(f, _)| *f == "DC")
            .map_or(0, |(_, k)| k)
    };
    let (cut, cut_sim) = (dc(&live), dc(&sim));
    println!("cut off at the drain: live {cut}, sim {cut_sim}");
    assert!(
        cut >= 20 && cut_sim >= 20,
        "the hang mattered: live {cut}, sim {cut_sim}"
    );
    // The client proxy saw every request too, cut-off ones included.
    let at_route: u64 = live.routes.iter().map(|(_, st)| st.count).sum();
    assert_eq!(
        at_route,
        live.generated,
        "{:?}",
        live.routes
            .iter()
            .map(|r| (&r.0, r.1.count))
            .collect::<Vec<_>>()
    );
}
