//! What the controllers measure: each version's responses as Istio's destination-side
//! telemetry records them (`istio_requests_total` and `istio_request_duration_milliseconds`
//! with `reporter="destination"`: every request that reaches one of the version's instances,
//! mirrored copies and retried attempts included), kept in 100 ms slots so a metric can be
//! read over any recent window the way PromQL's `rate(…[1m])` reads it.

use crate::spec::{Query, Side};
use proxy_engine::{Nanos, Time};
use std::collections::VecDeque;

/// Istio's default buckets for `istio_request_duration_milliseconds` (upper bounds, ms);
/// a last, unbounded bucket (`+Inf`) follows.
pub const DURATION_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Counts over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Responses.
    pub requests: u64,
    /// Responses that were not 5xx.
    pub non_5xx: u64,
    /// Responses by duration bucket ([`DURATION_BUCKETS_MS`], then `+Inf`).
    pub buckets: [u64; 20],
    /// The window's length.
    pub span: Nanos,
}

impl WindowStats {
    fn add(&mut self, other: &WindowStats) {
        self.requests += other.requests;
        self.non_5xx += other.non_5xx;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
    }

    /// `query`'s value, `None` when the window holds no response (Prometheus returns no value,
    /// or NaN, for a ratio over no traffic).
    pub fn value(&self, query: Query) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        let n = self.requests as f64;
        Some(match query {
            Query::SuccessRate => self.non_5xx as f64 / n * 100.0,
            Query::SuccessRatio => self.non_5xx as f64 / n,
            Query::ErrorRatio => (self.requests - self.non_5xx) as f64 / n,
            Query::RequestRate => n / self.span.as_secs_f64().max(1e-9),
            Query::LatencyMs(q) => self.quantile_ms(q),
        })
    }

    /// Prometheus' `histogram_quantile(q, …)` over the buckets: the bucket holding rank
    /// `q × count`, linearly interpolated from its lower bound (0 for the first); a rank in
    /// the `+Inf` bucket gives the highest finite bound.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let total = self.requests as f64;
        let rank = q.clamp(0.0, 1.0) * total;
        let mut below = 0.0;
        for (i, count) in self.buckets.iter().enumerate() {
            let count = *count as f64;
            if below + count >= rank && count > 0.0 {
                let Some(&upper) = DURATION_BUCKETS_MS.get(i) else {
                    return DURATION_BUCKETS_MS[DURATION_BUCKETS_MS.len() - 1];
                };
                let lower = if i == 0 {
                    0.0
                } else {
                    DURATION_BUCKETS_MS[i - 1]
                };
                return lower + (upper - lower) * ((rank - below) / count);
            }
            below += count;
        }
        0.0
    }
}

/// Where the controllers read metrics from: the driver's measurements.
pub trait MetricSource {
    /// `side`'s responses in `[now - over, now)`.
    fn window(&self, side: Side, now: Time, over: Nanos) -> WindowStats;
}

/// The slot width.
const SLOT: u64 = 100_000_000;

/// Each version's responses in 100 ms slots, for the last `keep` (the longest window read).
/// Drivers feed it; it is the [`MetricSource`] of the run.
#[derive(Clone, Debug)]
pub struct Probe {
    keep_slots: u64,
    /// Per side: (slot number, counts), oldest first.
    slots: [VecDeque<(u64, WindowStats)>; 2],
}

impl Probe {
    /// A probe that can answer windows up to `keep` long.
    pub fn new(keep: Nanos) -> Probe {
        Probe {
            keep_slots: keep.0.div_ceil(SLOT) + 1,
            slots: [VecDeque::new(), VecDeque::new()],
        }
    }

    /// A response of `side` with `status`, `duration` after it arrived, at `at`. Times go
    /// forward; a response a little out of order (live, across threads) is counted in the
    /// latest slot.
    pub fn record(&mut self, side: Side, at: Time, status: u16, duration: Nanos) {
        let n = at.0 / SLOT;
        let slots = &mut self.slots[side as usize];
        if slots.back().is_none_or(|(last, _)| *last < n) {
            slots.push_back((n, WindowStats::default()));
            while slots
                .front()
                .is_some_and(|(first, _)| first + self.keep_slots < n)
            {
                slots.pop_front();
            }
        }
        let Some((_, s)) = slots.back_mut() else {
            return;
        };
        s.requests += 1;
        if !(500..600).contains(&status) {
            s.non_5xx += 1;
        }
        let ms = duration.as_millis_f64();
        let bucket = DURATION_BUCKETS_MS
            .iter()
            .position(|upper| ms <= *upper)
            .unwrap_or(DURATION_BUCKETS_MS.len());
        s.buckets[bucket] += 1;
    }
}

impl MetricSource for Probe {
    fn window(&self, side: Side, now: Time, over: Nanos) -> WindowStats {
        let from = now.0.saturating_sub(over.0) / SLOT;
        let to = now.0 / SLOT; // exclusive: the slot `now` opens
        let mut out = WindowStats {
            span: over,
            ..WindowStats::default()
        };
        for (n, s) in self.slots[side as usize].iter().rev() {
            if *n < from {
                break;
            }
            if *n < to {
                out.add(s);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Time {
        Time(ms * 1_000_000)
    }

    #[test]
    fn a_window_counts_what_arrived_in_it() {
        let mut p = Probe::new(Nanos::from_secs(60));
        for i in 0..100 {
            let status = if i % 10 == 0 { 503 } else { 200 };
            p.record(
                Side::Canary,
                at_ms(1000 + i * 10),
                status,
                Nanos::from_millis(3),
            );
        }
        p.record(Side::Stable, at_ms(1500), 200, Nanos::from_millis(1));
        let w = p.window(Side::Canary, at_ms(3000), Nanos::from_secs(60));
        assert_eq!((w.requests, w.non_5xx), (100, 90));
        assert_eq!(w.value(Query::SuccessRate), Some(90.0));
        assert_eq!(w.value(Query::ErrorRatio), Some(0.1));
        // Only the last second: what arrived from 1.5 s on.
        let w = p.window(Side::Canary, at_ms(2500), Nanos::from_secs(1));
        assert_eq!(w.requests, 50);
        let empty = p.window(Side::Canary, at_ms(200_000), Nanos::from_secs(60));
        assert_eq!(
            empty.value(Query::SuccessRate),
            None,
            "no traffic: no value"
        );
    }

    #[test]
    fn quantiles_interpolate_within_istio_buckets_as_prometheus_does() {
        let mut w = WindowStats {
            requests: 100,
            ..WindowStats::default()
        };
        // 50 in (10, 25] ms, 50 in (25, 50] ms.
        w.buckets[4] = 50;
        w.buckets[5] = 50;
        // Rank 99 is the 49th of 50 in (25, 50]: 25 + 25 × 49/50.
        assert!((w.quantile_ms(0.99) - 49.5).abs() < 1e-9);
        // Rank 50 ends the first bucket: its upper bound.
        assert!((w.quantile_ms(0.5) - 25.0).abs() < 1e-9);
        // Beyond the last finite bound: that bound.
        let mut slow = WindowStats {
            requests: 10,
            ..WindowStats::default()
        };
        slow.buckets[19] = 10;
        assert_eq!(slow.quantile_ms(0.99), 3_600_000.0);
    }
}
