//! The load generator (`meshtwin load`, and the clients of `run --live`): open loop, like wrk2
//! and k6's arrival-rate executors. One scheduler draws the arrivals (constant spacing or
//! Poisson) and, at each intended send time, hands the request to an idle HTTP/1.1 connection;
//! when every connection is busy (a slow or hung server) it opens another, up to
//! `max_connections`, and past that the request is dropped and counted (k6's
//! `dropped_iterations`), never silently delayed. Latency is measured from the **intended** send
//! time, so a slow server is charged for the requests it delayed (coordinated-omission
//! correction).
//!
//! Every request sent gets exactly one recorded outcome: its status, or status 0 with flag `UC`
//! when the connection broke, `UF` when it could not connect, or `DC` when the drain deadline
//! cut it off (its connection is then closed, so the proxy sees the cancel too).
//!
//! [`Progress::stop`] ends the sending early (a threshold marked `abort_on_fail`): no request
//! is issued after it, and those in flight get the drain time to finish, as at the end.
//! [`Progress::snapshot`] reads what the clients have seen so far, while the load runs.
//!
//! Sends are timed by the high-resolution timer (`hires`), not by spinning; arrivals that fall
//! due together are issued together, and each send's lateness behind its intended time is
//! recorded for the terminal summary.

use crate::h1client::{self, H1Conn};
use metrics::{RunMetrics, Stats, TimeSeries};
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
    /// Speak TLS to it (an `HTTPS` gateway server), with this client setup.
    pub tls: Option<crate::origination::Originate>,
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
    /// Connections opened before the first send.
    pub connections: usize,
    /// Most connections open at once; a request due when all are busy and this many are open
    /// is dropped.
    pub max_connections: usize,
    /// Seed of the arrival and mix streams.
    pub seed: u64,
    /// Time-series window.
    pub window: Nanos,
}

/// Live counters for a progress line, the clients' figures so far, and the stop switch; one
/// may be shared by several load runs (`run --live` has one per workload).
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Responses (or failures) recorded.
    pub done: AtomicU64,
    /// Of those, not successful.
    pub errors: AtomicU64,
    /// Requests due when every connection was busy and `max_connections` were open: not sent.
    pub dropped: AtomicU64,
    /// Set once by [`Progress::stop`]; every load run sharing this watches it.
    stop: tokio::sync::watch::Sender<bool>,
    /// The figures of every load run started with this progress.
    runs: Mutex<Vec<Arc<Mutex<Shared>>>>,
}

/// What the clients have seen so far: the figures of every load run sharing a [`Progress`].
#[derive(Debug)]
pub struct Snapshot {
    /// Requests sent.
    pub sent: u64,
    /// Requests not sent because every connection was busy.
    pub dropped: u64,
    /// Outcomes recorded so far.
    pub totals: Stats,
    /// Outcomes recorded so far, by window of intended send time.
    pub series: TimeSeries,
}

impl Snapshot {
    /// The figures as a [`RunMetrics`] (only `generated`, `dropped`, `totals` and `series`
    /// filled), as a load run returns them.
    pub fn into_metrics(self) -> RunMetrics {
        RunMetrics {
            generated: self.sent,
            dropped: self.dropped,
            absorbed: None,
            totals: self.totals,
            workloads: Vec::new(),
            routes: Vec::new(),
            destinations: Vec::new(),
            clusters: Vec::new(),
            mirrors: Vec::new(),
            series: self.series,
            events: Vec::new(),
            instances: Vec::new(),
            rollout: None,
            generations: Vec::new(),
        }
    }
}

impl Progress {
    /// Stops the sending of every load run sharing this progress: nothing is issued after
    /// this, and requests in flight get the drain time.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether [`Progress::stop`] was called.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// The clients' figures so far, merged over the load runs sharing this progress.
    pub fn snapshot(&self) -> Snapshot {
        let runs = crate::lock(&self.runs);
        let mut totals = Stats::default();
        let mut series: Option<TimeSeries> = None;
        for run in runs.iter() {
            let s = crate::lock(run);
            totals.merge(&s.totals);
            match &mut series {
                Some(all) => all.merge(&s.series),
                None => series = Some(s.series.clone()),
            }
        }
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            totals,
            series: series.unwrap_or_else(TimeSeries::off),
        }
    }

    /// Resolves once [`Progress::stop`] is called.
    async fn stopping(&self) {
        let mut rx = self.stop.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A send task panicked: a bug, reported rather than hidden in a report of fewer requests.
    #[error("a load task failed: {0}")]
    Task(String),
}

/// What a load run measured, beyond the report's figures.
#[derive(Debug)]
pub struct LoadRun {
    /// What the clients saw (only `generated`, `totals`, `series` and `dropped` are filled).
    pub metrics: RunMetrics,
    /// How late each send was behind its intended time, nanoseconds (wall-clock; terminal
    /// only, never in the JSON).
    pub lateness: hdrhistogram::Histogram<u64>,
}

#[derive(Debug)]
struct Shared {
    totals: Stats,
    series: TimeSeries,
    lateness: hdrhistogram::Histogram<u64>,
}

/// Connections not carrying a request, and how many are open in all.
struct Pool {
    idle: Vec<H1Conn>,
    open: usize,
}

/// What every send task shares.
struct Ctx {
    target: SocketAddr,
    tls: Option<crate::origination::Originate>,
    epoch: Instant,
    /// When the drain ends: a request still unanswered is cut off (`DC`).
    cutoff: Instant,
    /// How long requests in flight get after a stop.
    drain: Duration,
    shared: Arc<Mutex<Shared>>,
    pool: Mutex<Pool>,
    progress: Arc<Progress>,
}

/// Runs the load; the clients' outcomes and the sends' lateness.
pub async fn run(opts: LoadOptions, progress: Arc<Progress>) -> Result<LoadRun, LoadError> {
    // Connections opened up front, before the clock starts (as wrk2 connects first).
    let mut idle = Vec::new();
    for _ in 0..opts.connections.min(opts.max_connections.max(1)) {
        if let Ok(s) = H1Conn::connect(opts.target, CONNECT_TIMEOUT, opts.tls.as_ref()).await {
            idle.push(s);
        }
    }
    let epoch = Instant::now();
    let shared = Arc::new(Mutex::new(Shared {
        totals: Stats::default(),
        series: TimeSeries::new(opts.window),
        lateness: lateness_histogram(),
    }));
    crate::lock(&progress.runs).push(shared.clone());
    let ctx = Arc::new(Ctx {
        target: opts.target,
        tls: opts.tls.clone(),
        epoch,
        cutoff: epoch + opts.duration + opts.drain,
        drain: opts.drain,
        shared,
        pool: Mutex::new(Pool {
            open: idle.len(),
            idle,
        }),
        progress,
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut failure = None;
    let schedule = RateSchedule::new(opts.rate, &opts.schedule);
    let end = Time(opts.duration.as_nanos() as u64);
    let mut arrivals = ArrivalProcess::new(schedule, opts.arrivals, end);
    let mut rng = stream(opts.seed, "loadgen");
    let mut t = Time::ZERO;
    let mut next = arrivals.next(t, &mut rng);
    let mut timer = crate::hires::TaskTimer::new();
    while let Some(at) = next.filter(|at| *at < end) {
        tokio::select! {
            () = timer.sleep_until(epoch + Duration::from_nanos(at.0)) => {}
            () = ctx.progress.stopping() => break,
        }
        // Everything due by now goes out together.
        let now = Time(epoch.elapsed().as_nanos() as u64);
        next = Some(at);
        let mut yielded = false;
        while let Some(due) = next.filter(|d| *d <= now && *d < end) {
            if !yielded && crate::lock(&ctx.pool).idle.is_empty() {
                // Every connection looks busy; their answers may be waiting unread (a
                // generator short of CPU). Let the runtime read them first, once per wake,
                // so a busy generator does not open connections it does not need.
                yielded = true;
                tokio::task::yield_now().await;
                continue;
            }
            t = due;
            let head = opts.mix.pick(&mut rng);
            issue(&ctx, &mut tasks, due, head, opts.max_connections);
            next = arrivals.next(t, &mut rng);
        }
        // Reap finished sends so the set does not grow with the run.
        while let Some(done) = tasks.try_join_next() {
            failure = failure.or(panic_of(done));
        }
        // Behind schedule (the next send is already due): let answered sends hand their
        // connections back first, so catching up reuses connections instead of opening one
        // per request.
        if next.is_some_and(|d| d <= Time(epoch.elapsed().as_nanos() as u64)) {
            tokio::task::yield_now().await;
        }
    }
    while let Some(done) = tasks.join_next().await {
        failure = failure.or(panic_of(done));
    }
    if let Some(why) = failure {
        return Err(LoadError::Task(why));
    }
    let sent = ctx.progress.sent.load(Ordering::Relaxed);
    let dropped = ctx.progress.dropped.load(Ordering::Relaxed);
    // Cloned, not taken: the figures stay readable by `Progress::snapshot` while other load
    // runs sharing the progress go on.
    let s = {
        let mut shared = crate::lock(&ctx.shared);
        Shared {
            totals: shared.totals.clone(),
            series: shared.series.clone(),
            lateness: std::mem::replace(&mut shared.lateness, lateness_histogram()),
        }
    };
    let figures = Snapshot {
        sent,
        dropped,
        totals: s.totals,
        series: s.series,
    };
    Ok(LoadRun {
        metrics: figures.into_metrics(),
        lateness: s.lateness,
    })
}

/// Lateness up to 10 s, 3 significant digits.
fn lateness_histogram() -> hdrhistogram::Histogram<u64> {
    // Constant bounds hdrhistogram accepts (low 1, high ≥ 2·low, sigfig ≤ 5).
    #[allow(clippy::expect_used)]
    hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid bounds")
}

/// The panic message of a send task that panicked.
fn panic_of(done: Result<(), tokio::task::JoinError>) -> Option<String> {
    let e = done.err()?;
    if !e.is_panic() {
        return None;
    }
    let p = e.into_panic();
    Some(
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".to_owned()),
    )
}

/// Sends one request due at `due` on an idle connection, a new one, or drops it when
/// `max_connections` are open and busy.
fn issue(
    ctx: &Arc<Ctx>,
    tasks: &mut tokio::task::JoinSet<()>,
    due: Time,
    head: RequestHead,
    max_connections: usize,
) {
    let conn = {
        let mut pool = crate::lock(&ctx.pool);
        match pool.idle.pop() {
            Some(s) => Some(Some(s)),
            None if pool.open < max_connections => {
                pool.open += 1;
                Some(None) // connect in the task
            }
            None => None,
        }
    };
    let Some(conn) = conn else {
        ctx.progress.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    ctx.progress.sent.fetch_add(1, Ordering::Relaxed);
    let ctx = ctx.clone();
    tasks.spawn(async move {
        let intended = ctx.epoch + Duration::from_nanos(due.0);
        let late = intended.elapsed().as_nanos() as u64;
        let mut sender = conn;
        let cut_off = async {
            tokio::select! {
                () = tokio::time::sleep_until(ctx.cutoff.into()) => {}
                () = async {
                    ctx.progress.stopping().await;
                    tokio::time::sleep(ctx.drain).await;
                } => {}
            }
        };
        let outcome = tokio::select! {
            o = send(&mut sender, ctx.target, ctx.tls.as_ref(), &head) => o,
            () = cut_off => {
                sender = None; // closed: the proxy sees the cancel
                Outcome::bare(0, ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION)
            }
        };
        let latency = Nanos(intended.elapsed().as_nanos() as u64);
        {
            let mut s = crate::lock(&ctx.shared);
            s.totals.record(&outcome, latency);
            s.series.record(due, &outcome, latency);
            s.lateness.saturating_record(late.max(1));
        }
        {
            let mut pool = crate::lock(&ctx.pool);
            let reusable = sender.as_ref().is_some_and(|s| !s.is_ended());
            match sender {
                Some(s) if reusable => pool.idle.push(s),
                _ => pool.open -= 1,
            }
        }
        ctx.progress.done.fetch_add(1, Ordering::Relaxed);
        if !outcome.is_success() {
            ctx.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// How long a connect may take before the request counts as `UF`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest answer body read (longer fails the request as `UC`).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// One request on the connection (reconnecting if needed); its outcome.
async fn send(
    sender: &mut Option<H1Conn>,
    target: SocketAddr,
    tls: Option<&crate::origination::Originate>,
    head: &RequestHead,
) -> Outcome {
    let broken = Outcome::bare(0, ResponseFlags::UPSTREAM_CONNECTION_TERMINATION);
    if sender.as_mut().is_none_or(|s| s.is_closed()) {
        match H1Conn::connect(target, CONNECT_TIMEOUT, tls).await {
            Ok(s) => *sender = Some(s),
            Err(_) => return Outcome::bare(0, ResponseFlags::UPSTREAM_CONNECTION_FAILURE),
        }
    }
    let Some(s) = sender.as_mut() else {
        return broken;
    };
    let Some(req) = h1client::render(head) else {
        return broken;
    };
    match s.exchange(&req, &*head.method == "HEAD", MAX_BODY).await {
        Ok(status) => Outcome::bare(status, ResponseFlags::NONE),
        Err(_) => broken,
    }
}
