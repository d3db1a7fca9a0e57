//! Nothing lost on real sockets: requests the load generator sent = outcomes the proxy recorded
//! = outcomes in the report, even when an upstream instance is killed mid-run.

mod common;

use live::loadgen::{self, LoadOptions, Progress};
use reports::{Report, RunInfo};
use sim_core::scenario::Arrivals;
use sim_core::workload::Mix;
use std::sync::Arc;
use std::time::Duration;

const SCENARIO: &str = r#"Scenario(
    duration: "3s",
    services: {
        "api": Service(versions: {"v1": (instances: 3, workers: 8, latency: LogNormal(p50: "5ms", p99: "20ms"))}),
    },
    mesh: Mesh(destination_rules: [DestinationRule(host: "api", traffic_policy: (load_balancer: (simple: ROUND_ROBIN)))]),
    workload: [OpenLoop(host: "api", rate: 200)],
)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_counted_once_even_when_an_instance_dies() {
    let (services, client, listener, s) = common::lab(SCENARIO).await;
    let load = LoadOptions {
        target: listener.addr,
        tls: None,
        mix: Mix::new("api", "load", &[]),
        rate: 200.0,
        schedule: Vec::new(),
        arrivals: Arrivals::Poisson,
        duration: Duration::from_secs(3),
        drain: Duration::from_secs(5),
        connections: 32,
        max_connections: 10_000,
        seed: 5,
        window: s.window,
    };
    let progress = Arc::new(Progress::default());
    let run = tokio::spawn(loadgen::run(load, progress.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    services.instances[0].kill();
    let m = run
        .await
        .expect("load ran")
        .expect("no load task failed")
        .metrics;
    // Let the proxy record the last completions.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let proxy = client.snapshot().finish();

    let sent = progress.sent.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(m.generated, sent);
    assert_eq!(
        m.totals.count, sent,
        "load generator: one outcome per request sent"
    );
    assert_eq!(
        proxy.totals.count, sent,
        "proxy: one outcome per request received"
    );
    let hop_total: u64 = proxy.destinations.iter().map(|(_, st)| st.count).sum();
    assert_eq!(
        hop_total, sent,
        "every request reached a destination (or failed at one)"
    );
    let report = Report::new(
        &RunInfo {
            scenario: "accounting".into(),
            seed: 1,
            duration_ns: 3_000_000_000,
            mode: "live",
        },
        &m,
    );
    let by_status: u64 = report.totals.by_status.values().sum();
    assert_eq!(by_status, sent, "report: one outcome per request");
    // The kill mattered: requests failed on the dead instance (reset), or were refused and
    // retried elsewhere (Istio's default policy retries connect failures) ...
    let failed: u64 = proxy
        .totals
        .flags()
        .filter(|(f, _)| *f == "UF" || *f == "UR")
        .map(|(_, n)| n)
        .sum();
    let retries: u64 = proxy.events.iter().map(|(_, e)| e.retries).sum();
    assert!(
        failed + retries > 10,
        "flags after the kill: {:?}, retries {retries}",
        proxy.totals.flags().collect::<Vec<_>>()
    );
    assert_eq!(
        proxy.totals.attempts,
        proxy.totals.count + retries,
        "every retry is one more attempt"
    );
    // ... and the others kept serving.
    assert!(m.totals.success as f64 > 0.6 * sent as f64);
    assert_eq!(
        m.totals.count - m.totals.success,
        proxy.totals.count - proxy.totals.success
    );
    listener.shutdown().await;
    services.stop().await;
}
