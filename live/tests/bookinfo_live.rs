//! Bookinfo live: `scenarios/bookinfo.ron` with the request-routing task's VirtualService
//! (jason → reviews v2, everyone else → v1) run on loopback by `run --live`'s code — the load
//! generator enters through a live ingress gateway listener (the `Gateway` server on port
//! 8080), productpage calls details and reviews through its sidecar, propagating `end-user` —
//! and in the simulator; the twin must predict what the live run does.
//!
//! Tolerances: every request is answered 200 in both (exact); each of jason's requests
//! reaches reviews v2 and no one else's does (exact, both); jason's share of requests (rate 5
//! of 25, p = 0.2) differs by at most 4 standard errors of the difference of two binomial
//! shares, sqrt(2·p(1−p)/n); the median page latency within 20 %, the bound of the project's
//! other sim-vs-live test (loopback and proxy hops the simulation does not model).

use live::loadgen::Progress;
use metrics::{RunMetrics, Stats};
use proxy_engine::config::VirtualService;
use std::path::Path;
use std::sync::Arc;

const JASON_V2: &str = r#"VirtualService(hosts: ["reviews"], http: [
    HttpRoute(match: [(headers: {"end-user": Exact("jason")})], route: [(destination: (host: "reviews", subset: "v2"))]),
    HttpRoute(route: [(destination: (host: "reviews", subset: "v1"))])])"#;

fn count(table: &[(String, Stats)], name: &str) -> u64 {
    table
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, s)| s.count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_through_a_live_ingress_gateway_matches_the_simulation() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bookinfo.ron");
    let mut s = sim_core::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    let vs: VirtualService = options.from_str(JASON_V2).expect("virtual service");
    s.mesh.virtual_services.push(vs);
    s.duration = proxy_engine::Nanos::from_secs(20);
    let sim = sim_core::run(&s, s.seed, &mut |_| {}).expect("sim runs");
    let live = live::lab::run(
        &s,
        s.seed,
        live::lab::Connections {
            initial: 16,
            max: 1_000,
        },
        Arc::new(Progress::default()),
    )
    .await
    .expect("live runs");
    for (what, m) in [("sim", &sim), ("live", &live)] {
        let n = m.generated;
        assert!(n > 300, "{what}: {n} requests");
        assert_eq!(m.totals.count, n, "{what}: nothing lost");
        assert_eq!(
            m.totals.by_status,
            vec![(200, n)],
            "{what}: every page answered"
        );
        let jason = count(&m.workloads, "jason");
        assert_eq!(count(&m.workloads, "visitors") + jason, n, "{what}");
        assert_eq!(
            count(&m.destinations, "reviews/v2"),
            jason,
            "{what}: jason sees v2"
        );
        assert_eq!(count(&m.destinations, "reviews/v3"), 0, "{what}");
        assert_eq!(count(&m.destinations, "reviews/v1"), n - jason, "{what}");
        // The gateway's route took every page.
        assert_eq!(count(&m.routes, "bookinfo/0"), n, "{what}");
    }
    let share = |m: &RunMetrics| count(&m.workloads, "jason") as f64 / m.generated as f64;
    let n = sim.generated.min(live.generated) as f64;
    let sd = (2.0 * 0.2 * 0.8 / n).sqrt();
    let (sim_share, live_share) = (share(&sim), share(&live));
    assert!(
        (sim_share - live_share).abs() <= 4.0 * sd,
        "jason's share sim {sim_share:.3} live {live_share:.3} (sd {sd:.3})"
    );
    let p50 = |m: &RunMetrics| m.totals.latency.value_at_quantile(0.5) as f64 / 1e6;
    let (p50_sim, p50_live) = (p50(&sim), p50(&live));
    println!(
        "bookinfo: requests sim {} live {}; p50 ms sim {p50_sim:.3} live {p50_live:.3}",
        sim.generated, live.generated
    );
    assert!(
        (p50_live / p50_sim - 1.0).abs() <= 0.20,
        "p50 sim {p50_sim:.3} ms live {p50_live:.3} ms"
    );
}
