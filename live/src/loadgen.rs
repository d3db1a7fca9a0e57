//! The load generator (`meshtwin load`): open loop, like wrk2. Each of `connections` keeps one
//! HTTP/1.1 connection and sends its share of the rate on its own schedule (constant spacing or
//! Poisson); latency is measured from the **intended** send time, so a slow server is charged
//! for the requests it delayed (coordinated-omission correction). Every request sent gets
//! exactly one recorded outcome: its status, or status 0 with flag `UC` when the connection
//! broke, or `DC` when the drain deadline cut it off.

use crate::http_util;
use crate::upstream::{self, Sender};
use bytes::Bytes;
use proxy_engine::metrics::{RunMetrics, Stats, TimeSeries};
use proxy_engine::{Nanos, Outcome, RequestHead, ResponseFlags, Time};
use sim_core::rng::stream;
use sim_core::scenario::{Arrivals, RateChange};
use sim_core::workload::{ArrivalProcess, Mix, RateSchedule};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to send, how fast, for how long.
#[derive(Clone)]
pub struct LoadOptions {
    /// Where to connect.
    pub target: SocketAddr,
    /// Weighted request mix (authority = Host).
    pub mix: Mix,
    /// Requests per second at time 0.
    pub rate: f64,
    /// Rate changes over time.
    pub schedule: Vec<RateChange>,
    /// Spacing of arrivals.
    pub arrivals: Arrivals,
    /// How long to send.
    pub duration: Duration,
    /// After `duration`, how long to wait for outstanding responses.
    pub drain: Duration,
    /// Connections (each carries its share of the rate).
    pub connections: usize,
    /// Seed of the arrival and mix streams.
    pub seed: u64,
    /// Time-series window.
    pub window: Nanos,
}

/// Live counters for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Responses (or failures) recorded.
    pub done: AtomicU64,
    /// Of those, not successful.
    pub errors: AtomicU64,
}

struct Shared {
    totals: Stats,
    series: TimeSeries,
}

/// Runs the load and returns what the clients saw (only `generated`, `totals` and `series` are
/// filled).
pub async fn run(opts: LoadOptions, progress: Arc<Progress>) -> RunMetrics {
    let shared = Arc::new(Mutex::new(Shared {
        totals: Stats::default(),
        series: TimeSeries::new(opts.window),
    }));
    let epoch = Instant::now();
    let c = opts.connections.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..c {
        let opts = opts.clone();
        let (shared, progress) = (shared.clone(), progress.clone());
        tasks.spawn(connection(i, c, opts, epoch, shared, progress));
    }
    let deadline = epoch + opts.duration + opts.drain;
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = tokio::time::sleep_until(deadline.into()) => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    let sent = progress.sent.load(Ordering::Relaxed);
    let mut s = match Arc::try_unwrap(shared) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(arc) => {
            let guard = crate::lock(&arc);
            Shared {
                totals: guard.totals.clone(),
                series: guard.series.clone(),
            }
        }
    };
    // Requests cut off at the drain deadline: one outcome each, status 0, flag DC.
    let recorded = s.totals.count;
    let cut = Outcome::bare(0, ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION);
    let end = Time(opts.duration.as_nanos() as u64);
    for _ in recorded..sent {
        s.totals.record(&cut, Nanos(opts.drain.as_nanos() as u64));
        s.series
            .record(end, &cut, Nanos(opts.drain.as_nanos() as u64));
    }
    RunMetrics {
        generated: sent,
        absorbed: None,
        totals: s.totals,
        routes: Vec::new(),
        destinations: Vec::new(),
        clusters: Vec::new(),
        mirrors: Vec::new(),
        series: s.series,
        events: Vec::new(),
        instances: Vec::new(),
    }
}

fn scaled(changes: &[RateChange], k: f64) -> Vec<RateChange> {
    changes
        .iter()
        .map(|c| match c {
            RateChange::Step { at, rate } => RateChange::Step {
                at: *at,
                rate: rate * k,
            },
            RateChange::Ramp { from, to, rate } => RateChange::Ramp {
                from: *from,
                to: *to,
                rate: rate * k,
            },
        })
        .collect()
}

async fn connection(
    i: usize,
    c: usize,
    opts: LoadOptions,
    epoch: Instant,
    shared: Arc<Mutex<Shared>>,
    progress: Arc<Progress>,
) {
    let k = 1.0 / c as f64;
    let schedule = RateSchedule::new(opts.rate * k, &scaled(&opts.schedule, k));
    let end = Time(opts.duration.as_nanos() as u64);
    let mut arrivals = ArrivalProcess::new(schedule, opts.arrivals, end);
    let mut rng = stream(opts.seed, &format!("loadgen/{i}"));
    // Stagger constant-rate connections so their sends interleave evenly.
    let offset = match opts.arrivals {
        Arrivals::Constant if opts.rate > 0.0 => Nanos::from_secs_f64(i as f64 / opts.rate),
        _ => Nanos::ZERO,
    };
    let mut sender: Option<Sender> = None;
    let mut t = Time::ZERO;
    while let Some(next) = arrivals.next(t, &mut rng) {
        t = next;
        let intended = epoch + Duration::from_nanos((next + offset).0);
        if intended >= epoch + opts.duration {
            break;
        }
        crate::clock::sleep_until_precise(intended).await;
        let head = opts.mix.pick(&mut rng);
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let outcome = send(&mut sender, opts.target, &head).await;
        let latency = Nanos(intended.elapsed().as_nanos() as u64);
        let start = Time(intended.duration_since(epoch).as_nanos() as u64);
        if let Ok(mut s) = shared.lock() {
            s.totals.record(&outcome, latency);
            s.series.record(start, &outcome, latency);
        }
        progress.done.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_success() {
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One request on the connection (reconnecting if needed); its outcome.
async fn send(sender: &mut Option<Sender>, target: SocketAddr, head: &RequestHead) -> Outcome {
    let broken = Outcome::bare(0, ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
    if sender.as_mut().is_none_or(|s| s.is_closed()) {
        match upstream::connect(target, Duration::from_secs(10), false).await {
            Ok(s) => *sender = Some(s),
            Err(_) => return Outcome::bare(0, ResponseFlags::UPSTREAM_CONNECTION_FAILURE),
        }
    }
    let Some(s) = sender.as_mut() else {
        return broken;
    };
    let Some(req) = http_util::upstream_request(head, Bytes::new(), &[]) else {
        return broken;
    };
    match upstream::exchange(s, req, 64 * 1024 * 1024).await {
        Ok((parts, _)) => {
            if upstream::closes(&parts) {
                *sender = None;
            }
            Outcome::bare(parts.status.as_u16(), ResponseFlags::NONE)
        }
        Err(_) => {
            *sender = None;
            broken
        }
    }
}
