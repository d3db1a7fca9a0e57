//! Streaming run metrics shared by both drivers: counts by status and flag, hdrhistogram
//! latencies, and per-window time series. Nothing is stored per request, so memory does not
//! grow with the number of requests.

use crate::time::{Nanos, Time};
use crate::types::{Outcome, ResponseFlags};
use hdrhistogram::Histogram;

/// Largest latency a histogram tracks exactly: one hour. Larger values are clamped to it.
pub const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

fn histogram(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low 1 ≥ 1, high ≥ 2·low, sigfig ≤ 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, sigfig).expect("valid histogram bounds")
}

/// Outcome counts and a latency histogram for one slice of traffic.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Requests completed.
    pub count: u64,
    /// Requests that succeeded (see `Outcome::is_success`).
    pub success: u64,
    /// Count per final status code (0 = no response), sorted by status.
    pub by_status: Vec<(u16, u64)>,
    /// Count per response flag bit, indexed like `ResponseFlags::ALL`.
    pub by_flag: Vec<u64>,
    /// Latency in nanoseconds, 3 significant digits.
    pub latency: Histogram<u64>,
    /// Exact sum of latencies, nanoseconds (the histogram's mean is only approximate).
    pub latency_sum_ns: u128,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            count: 0,
            success: 0,
            by_status: Vec::new(),
            by_flag: vec![0; ResponseFlags::ALL.len()],
            latency: histogram(3),
            latency_sum_ns: 0,
        }
    }
}

impl Stats {
    /// Records one outcome with its latency.
    pub fn record(&mut self, outcome: &Outcome, latency: Nanos) {
        self.count += 1;
        if outcome.is_success() {
            self.success += 1;
        }
        match self
            .by_status
            .binary_search_by_key(&outcome.status, |e| e.0)
        {
            Ok(i) => self.by_status[i].1 += 1,
            Err(i) => self.by_status.insert(i, (outcome.status, 1)),
        }
        if !outcome.flags.is_empty() {
            for (i, (flag, _)) in ResponseFlags::ALL.iter().enumerate() {
                if outcome.flags.contains(*flag) {
                    self.by_flag[i] += 1;
                }
            }
        }
        self.latency
            .saturating_record(latency.0.clamp(1, LATENCY_MAX_NS));
        self.latency_sum_ns += u128::from(latency.0);
    }

    /// Exact mean latency, nanoseconds (0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.latency_sum_ns as f64 / self.count as f64
        }
    }

    /// Flags with a non-zero count, as (short name, count), in flag order.
    pub fn flags(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ResponseFlags::ALL
            .iter()
            .zip(&self.by_flag)
            .filter(|(_, n)| **n > 0)
            .map(|((_, name), n)| (*name, *n))
    }
}

/// One time-series window.
#[derive(Clone, Debug)]
pub struct Window {
    /// Requests started in the window (and completed, possibly later).
    pub requests: u64,
    /// Of those, the ones that did not succeed.
    pub errors: u64,
    /// Their latency, nanoseconds, 2 significant digits.
    pub latency: Histogram<u64>,
}

/// Per-window series of end-to-end outcomes, bucketed by request start time.
#[derive(Clone, Debug)]
pub struct TimeSeries {
    /// Window length.
    pub window: Nanos,
    /// Windows from time zero; window `i` covers `[i·window, (i+1)·window)`.
    pub windows: Vec<Window>,
}

impl TimeSeries {
    /// An empty series with `window`-long buckets (a zero window is treated as 1 s).
    pub fn new(window: Nanos) -> TimeSeries {
        let window = if window.0 == 0 {
            Nanos::from_secs(1)
        } else {
            window
        };
        TimeSeries {
            window,
            windows: Vec::new(),
        }
    }

    /// Records an outcome of a request that started at `start`.
    pub fn record(&mut self, start: Time, outcome: &Outcome, latency: Nanos) {
        let i = (start.0 / self.window.0) as usize;
        while self.windows.len() <= i {
            self.windows.push(Window {
                requests: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        let w = &mut self.windows[i];
        w.requests += 1;
        if !outcome.is_success() {
            w.errors += 1;
        }
        w.latency
            .saturating_record(latency.0.clamp(1, LATENCY_MAX_NS));
    }
}

impl TimeSeries {
    /// Adds `other`'s windows (same window length) to these.
    pub fn merge(&mut self, other: &TimeSeries) {
        for (i, w) in other.windows.iter().enumerate() {
            while self.windows.len() <= i {
                self.windows.push(Window {
                    requests: 0,
                    errors: 0,
                    latency: histogram(2),
                });
            }
            let mine = &mut self.windows[i];
            mine.requests += w.requests;
            mine.errors += w.errors;
            // Same bounds on both sides, so adding cannot fail.
            let _ = mine.latency.add(&w.latency);
        }
    }
}

/// Everything a run measured: what reports are made from.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    /// Requests the workload generated.
    pub generated: u64,
    /// End-to-end outcomes as the clients saw them.
    pub totals: Stats,
    /// Per route (name → stats) at every hop, sorted by name.
    pub routes: Vec<(String, Stats)>,
    /// Per destination (`service/version` → stats) at every hop, sorted by name; latency is
    /// the hop's, as the calling proxy saw it.
    pub destinations: Vec<(String, Stats)>,
    /// Per cluster (`service` or `service|subset` → stats) at every hop, sorted by name.
    pub clusters: Vec<(String, Stats)>,
    /// Mirrored copies per destination (`service/version`), sorted by name: what the mirror
    /// target answered and how long it took. Never part of `totals`.
    pub mirrors: Vec<(String, Stats)>,
    /// End-to-end time series.
    pub series: TimeSeries,
}

/// Records outcomes against one compiled mesh, by id (no string work per request), and names
/// them at the end. Both drivers use it: every proxy's outcomes are hop records (routes,
/// destinations, clusters); the client's are also end-to-end records (totals, time series).
#[derive(Clone, Debug)]
pub struct Recorder {
    mesh: std::sync::Arc<crate::mesh::CompiledMesh>,
    /// Requests generated (counted by the load source).
    pub generated: u64,
    totals: Stats,
    routes: Vec<Option<Stats>>,
    destinations: Vec<Option<Stats>>,
    clusters: Vec<Option<Stats>>,
    mirrors: Vec<Option<Stats>>,
    series: TimeSeries,
}

impl Recorder {
    /// A recorder for outcomes of `mesh`, with time-series windows of `window`.
    pub fn new(mesh: std::sync::Arc<crate::mesh::CompiledMesh>, window: Nanos) -> Recorder {
        Recorder {
            generated: 0,
            totals: Stats::default(),
            routes: vec![None; mesh.routes().len()],
            destinations: vec![None; mesh.destinations().len()],
            clusters: vec![None; mesh.clusters().len()],
            mirrors: vec![None; mesh.destinations().len()],
            series: TimeSeries::new(window),
            mesh,
        }
    }

    /// One hop's outcome, as the proxy that handled it saw it.
    pub fn record_hop(&mut self, outcome: &Outcome, latency: Nanos) {
        let slots = [
            (&mut self.routes, outcome.route.map(|r| r.0)),
            (&mut self.destinations, outcome.destination.map(|d| d.0)),
            (&mut self.clusters, outcome.cluster.map(|c| c.0)),
        ];
        for (table, id) in slots {
            if let Some(slot) = id.and_then(|i| table.get_mut(i as usize)) {
                slot.get_or_insert_with(Stats::default)
                    .record(outcome, latency);
            }
        }
    }

    /// A client's end-to-end outcome of a request started at `start`.
    pub fn record_end_to_end(&mut self, start: Time, outcome: &Outcome, latency: Nanos) {
        self.totals.record(outcome, latency);
        self.series.record(start, outcome, latency);
    }

    /// A mirrored copy's answer from `destination`.
    pub fn record_mirror(
        &mut self,
        destination: crate::mesh::DestinationId,
        status: u16,
        latency: Nanos,
    ) {
        if let Some(slot) = self.mirrors.get_mut(destination.0 as usize) {
            let outcome = Outcome::bare(status, ResponseFlags::NONE);
            slot.get_or_insert_with(Stats::default)
                .record(&outcome, latency);
        }
    }

    /// Adds `other`'s hop and mirror records (same mesh) to these.
    pub fn merge_hops(&mut self, other: &Recorder) {
        let pairs = [
            (&mut self.routes, &other.routes),
            (&mut self.destinations, &other.destinations),
            (&mut self.clusters, &other.clusters),
            (&mut self.mirrors, &other.mirrors),
        ];
        for (mine, theirs) in pairs {
            for (m, t) in mine.iter_mut().zip(theirs) {
                if let Some(t) = t {
                    m.get_or_insert_with(Stats::default).merge(t);
                }
            }
        }
    }

    /// The named, sorted metrics.
    pub fn finish(self) -> RunMetrics {
        fn named(
            stats: Vec<Option<Stats>>,
            name: &dyn Fn(usize) -> String,
        ) -> Vec<(String, Stats)> {
            let mut v: Vec<(String, Stats)> = stats
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|s| (name(i), s)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        let mesh = self.mesh;
        let destination = |i: usize| {
            let d = &mesh.destinations()[i];
            format!("{}/{}", d.service, d.version)
        };
        RunMetrics {
            generated: self.generated,
            totals: self.totals,
            routes: named(self.routes, &|i| mesh.routes()[i].name.clone()),
            destinations: named(self.destinations, &destination),
            clusters: named(self.clusters, &|i| mesh.clusters()[i].name.clone()),
            mirrors: named(self.mirrors, &destination),
            series: self.series,
        }
    }
}

impl Stats {
    /// Adds `other`'s counts and latencies to these.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.success += other.success;
        for &(status, n) in &other.by_status {
            match self.by_status.binary_search_by_key(&status, |e| e.0) {
                Ok(i) => self.by_status[i].1 += n,
                Err(i) => self.by_status.insert(i, (status, n)),
            }
        }
        for (mine, theirs) in self.by_flag.iter_mut().zip(&other.by_flag) {
            *mine += theirs;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.latency_sum_ns += other.latency_sum_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, flags: ResponseFlags) -> Outcome {
        Outcome::bare(status, flags)
    }

    #[test]
    fn stats_count_status_flags_and_latency() {
        let mut s = Stats::default();
        s.record(&outcome(200, ResponseFlags::NONE), Nanos::from_millis(10));
        s.record(
            &outcome(503, ResponseFlags::NO_HEALTHY_UPSTREAM),
            Nanos::from_millis(30),
        );
        s.record(&outcome(200, ResponseFlags::NONE), Nanos::from_millis(20));
        assert_eq!((s.count, s.success), (3, 2));
        assert_eq!(s.by_status, vec![(200, 2), (503, 1)]);
        assert_eq!(s.flags().collect::<Vec<_>>(), vec![("UH", 1)]);
        assert_eq!(s.mean_ns(), 20e6);
    }

    #[test]
    fn series_buckets_by_start_time() {
        let mut ts = TimeSeries::new(Nanos::from_secs(1));
        ts.record(
            Time(1_500_000_000),
            &outcome(500, ResponseFlags::NONE),
            Nanos(5),
        );
        ts.record(Time(100), &outcome(200, ResponseFlags::NONE), Nanos(5));
        assert_eq!(ts.windows.len(), 2);
        assert_eq!((ts.windows[0].requests, ts.windows[0].errors), (1, 0));
        assert_eq!((ts.windows[1].requests, ts.windows[1].errors), (1, 1));
    }
}
