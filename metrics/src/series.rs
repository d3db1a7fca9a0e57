//! Per-window time series of a run: end-to-end outcomes bucketed by request start time,
//! resilience events by the time they happened, hops per destination by their start.

use crate::record::{bump, EventCounts};
use proxy_engine::time::{Nanos, Time};
use proxy_engine::types::{EngineEvent, Outcome, ResponseFlags};

/// One time-series window.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Requests started in the window (and completed, possibly later).
    pub requests: u64,
    /// Of those, the ones that did not succeed.
    pub errors: u64,
    /// Their latency, nanoseconds, 2 significant digits (stored compactly: see `window`).
    pub latency: crate::latency::WindowLatency,
    /// Resilience events that happened in the window (any proxy).
    pub events: EventCounts,
    /// Those requests per final status, sorted by status (0 = no response).
    pub by_status: Vec<(u16, u64)>,
    /// Those requests per response flag, as (index in `ResponseFlags::ALL`, count), sorted;
    /// only flags that occurred.
    pub by_flag: Vec<(u8, u64)>,
    /// Hops (at any proxy) that started in the window, per destination: (index into
    /// `TimeSeries::destinations`, count), sorted; only destinations reached.
    pub by_destination: Vec<(u32, u64)>,
}

/// Per-window series of end-to-end outcomes, bucketed by request start time.
#[derive(Clone, Debug)]
pub struct TimeSeries {
    /// Window length.
    pub window: Nanos,
    /// Windows from time zero; window `i` covers `[i·window, (i+1)·window)`.
    pub windows: Vec<Window>,
    /// The names (`service/version`) of the destinations `Window::by_destination` counts, by
    /// index. While recording the index is the mesh's `DestinationId`; `Recorder::finish`
    /// names them.
    pub destinations: Vec<String>,
    /// Whether records are kept. A long-running proxy keeps none: its windows would grow with
    /// its uptime (a latency histogram per window), and nothing reports them.
    recording: bool,
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
            destinations: Vec::new(),
            recording: true,
        }
    }

    /// A series that records nothing (stays empty).
    pub fn off() -> TimeSeries {
        TimeSeries {
            recording: false,
            ..TimeSeries::new(Nanos::from_secs(1))
        }
    }

    /// The window holding time `t`, created (with the ones before it) if needed.
    fn window_at(&mut self, t: Time) -> &mut Window {
        let i = (t.0 / self.window.0) as usize;
        if self.windows.len() <= i {
            self.windows.resize_with(i + 1, Window::default);
        }
        &mut self.windows[i]
    }

    /// Records a resilience event that happened at `at`.
    pub fn record_event(&mut self, at: Time, event: &EngineEvent) {
        if self.recording {
            self.window_at(at).events.record(event);
        }
    }

    /// Records an outcome of a request that started at `start`.
    pub fn record(&mut self, start: Time, outcome: &Outcome, latency: Nanos) {
        if !self.recording {
            return;
        }
        let w = self.window_at(start);
        w.requests += 1;
        if !outcome.is_success() {
            w.errors += 1;
        }
        w.latency.record(latency.0);
        bump(&mut w.by_status, outcome.status, 1);
        if !outcome.flags.is_empty() {
            for (i, (flag, _)) in ResponseFlags::ALL.iter().enumerate() {
                if outcome.flags.contains(*flag) {
                    bump(&mut w.by_flag, i as u8, 1);
                }
            }
        }
    }

    /// Counts a hop (at any proxy) to its destination, by the hop's `start`.
    pub fn record_hop(&mut self, start: Time, outcome: &Outcome) {
        if !self.recording {
            return;
        }
        if let Some(d) = outcome.destination {
            bump(&mut self.window_at(start).by_destination, d.0, 1);
        }
    }

    /// Adds the hop parts of `other`'s windows (resilience events and hops per destination),
    /// recorded against the same mesh, to these.
    pub fn merge_hops(&mut self, other: &TimeSeries) {
        for (i, w) in other.windows.iter().enumerate() {
            let mine = self.window_at(Time(i as u64 * self.window.0));
            mine.events.merge(&w.events);
            for &(d, n) in &w.by_destination {
                bump(&mut mine.by_destination, d, n);
            }
        }
    }

    /// Adds `other`'s windows (same window length) to these, matching destinations by name.
    pub fn merge(&mut self, other: &TimeSeries) {
        let ids: Vec<u32> = (other.destinations.iter())
            .map(
                |name| match self.destinations.iter().position(|n| n == name) {
                    Some(i) => i as u32,
                    None => {
                        self.destinations.push(name.clone());
                        (self.destinations.len() - 1) as u32
                    }
                },
            )
            .collect();
        for (i, w) in other.windows.iter().enumerate() {
            let mine = self.window_at(Time(i as u64 * self.window.0));
            mine.requests += w.requests;
            mine.errors += w.errors;
            mine.events.merge(&w.events);
            mine.latency.merge(&w.latency);
            for &(status, n) in &w.by_status {
                bump(&mut mine.by_status, status, n);
            }
            for &(flag, n) in &w.by_flag {
                bump(&mut mine.by_flag, flag, n);
            }
            for &(d, n) in &w.by_destination {
                if let Some(&id) = ids.get(d as usize) {
                    bump(&mut mine.by_destination, id, n);
                }
            }
        }
    }
}
