//! Simulator throughput. Criterion reports simulated requests per second of wall time:
//!
//! * `bench_1hop_5s`: `scenarios/bench-1hop.ron` (client → proxy → 10 instances, 5-route
//!   virtual service) shortened to 5 s of load (~100 k requests); target ≥ 1 M requests/s.
//! * `bench_policies_5s`: `scenarios/bench-policies.ron`, the same traffic with every resilience
//!   policy on (timeouts, retries, budget, breakers, outlier detection, rate limit); target
//!   ≥ 500 k requests/s.
//! * `retry_storm_60s`: `scenarios/retry-storm.ron` whole (60 s at 5 000 req/s, ~1 M attempts);
//!   target under 2 s per run.
//! * `canary_30m`: `scenarios/bench-canary.ron` whole: a 30-minute Flagger canary of a
//!   three-tier mesh at 1 000 req/s (1.8 M requests, 5.4 M hops, 31 controller ticks);
//!   target under 5 s per run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_engine::Nanos;
use std::path::Path;

fn bench_scenario(c: &mut Criterion, file: &str, id: &str, duration: Option<u64>, samples: usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(file);
    let mut scenario = sim_core::load(&path).unwrap_or_else(|e| panic!("{e}"));
    if let Some(secs) = duration {
        scenario.duration = Nanos::from_secs(secs);
    }
    let requests = sim_core::run(&scenario, scenario.seed, &mut |_| {})
        .expect("bench scenario runs")
        .generated;
    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(requests));
    group.sample_size(samples);
    group.bench_function(id, |b| {
        b.iter(|| {
            sim_core::run(&scenario, scenario.seed, &mut |_| {})
                .expect("bench scenario runs")
                .generated
        })
    });
    group.finish();
}

fn bench_1hop(c: &mut Criterion) {
    bench_scenario(c, "bench-1hop.ron", "bench_1hop_5s", Some(5), 20);
}

fn bench_policies(c: &mut Criterion) {
    bench_scenario(c, "bench-policies.ron", "bench_policies_5s", Some(5), 20);
}

fn retry_storm(c: &mut Criterion) {
    bench_scenario(c, "retry-storm.ron", "retry_storm_60s", None, 10);
}

fn canary(c: &mut Criterion) {
    bench_scenario(c, "bench-canary.ron", "canary_30m", None, 10);
}

criterion_group!(benches, bench_1hop, bench_policies, retry_storm, canary);
criterion_main!(benches);
