//! Simulator throughput: `scenarios/bench-1hop.ron` (client → proxy → 10 instances), shortened
//! to 5 s of load (~100 k requests) per iteration. Criterion reports requests per second of wall
//! time; the issue target is ≥ 1 M simulated requests/s on one core.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy_engine::Nanos;
use std::path::Path;

fn bench_1hop(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/bench-1hop.ron");
    let mut scenario = sim_core::load(&path).unwrap_or_else(|e| panic!("{e}"));
    scenario.duration = Nanos::from_secs(5);
    let requests = sim_core::run(&scenario, scenario.seed, &mut |_| {})
        .expect("bench scenario runs")
        .generated;
    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(requests));
    group.sample_size(20);
    group.bench_function("bench_1hop_5s", |b| {
        b.iter(|| {
            sim_core::run(&scenario, scenario.seed, &mut |_| {})
                .expect("bench scenario runs")
                .generated
        })
    });
    group.finish();
}

criterion_group!(benches, bench_1hop);
criterion_main!(benches);
