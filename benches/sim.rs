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
//! * `queue/*`: the event queue alone, on a mesh simulation's mix (most events due at once,
//!   the rest a little later): events pushed and popped per second.

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

/// The event queue on a steady state of `pending` events: each pop pushes one event due at
/// once (a proxy's next step) or, one time in three, one a pseudo-random time later (a
/// network leg, a service time).
fn queue(c: &mut Criterion) {
    use proxy_engine::Time;
    use sim_core::queue::EventQueue;
    let mut group = c.benchmark_group("queue");
    const OPS: u64 = 100_000;
    group.throughput(Throughput::Elements(OPS));
    for pending in [64usize, 4096] {
        group.bench_function(format!("pop_push_{pending}_pending"), |b| {
            b.iter(|| {
                let mut q = EventQueue::default();
                let mut x = 0x9E37_79B9_7F4A_7C15u64;
                for i in 0..pending as u64 {
                    q.push(Time(i * 1_000), i);
                }
                let mut sum = 0u64;
                for i in 0..OPS {
                    let Some((now, e)) = q.pop() else { break };
                    sum = sum.wrapping_add(e);
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = if x % 3 == 0 {
                        now.0 + x % 2_000_000
                    } else {
                        now.0
                    };
                    q.push(Time(at), i);
                }
                sum
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_1hop,
    bench_policies,
    retry_storm,
    canary,
    queue
);
criterion_main!(benches);
