//! What the controllers measure: each version's responses as Istio's destination-side
//! telemetry records them (`istio_requests_total` and `istio_request_duration_milliseconds`
//! with `reporter="destination"`: every request that reaches one of the version's instances,
//! mirrored copies and retried attempts included), and the hops callers routed to it as
//! their proxies saw them (status, response flags, tries, latency), kept in 100 ms slots so
//! a metric can be read over any recent window the way PromQL's `rate(…[1m])` reads it.

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Responses.
    pub requests: u64,
    /// Responses that were not 5xx.
    pub non_5xx: u64,
    /// Responses by duration bucket ([`DURATION_BUCKETS_MS`], then `+Inf`).
    pub buckets: [u64; 20],
    /// The window's length.
    pub span: Nanos,
    /// The callers' side: hops to the version.
    pub hops: HopStats,
}

/// The hops callers' proxies routed to a version, as they saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HopStats {
    /// Hops.
    pub count: u64,
    /// Of those, 5xx or no response.
    pub failed: u64,
    /// Tries they took.
    pub attempts: u64,
    /// Hops per response flag, by the flag's bit.
    pub flags: [u64; 32],
    /// Hops per final status, sorted by status.
    pub statuses: Vec<(u16, u64)>,
    /// Hops by latency bucket, as `WindowStats::buckets`.
    pub buckets: [u64; 20],
}

impl HopStats {
    fn add(&mut self, other: &HopStats) {
        self.count += other.count;
        self.failed += other.failed;
        self.attempts += other.attempts;
        for (a, b) in self.flags.iter_mut().zip(other.flags.iter()) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        for (status, n) in &other.statuses {
            add_status(&mut self.statuses, *status, *n);
        }
    }
}

fn add_status(statuses: &mut Vec<(u16, u64)>, status: u16, n: u64) {
    match statuses.binary_search_by_key(&status, |s| s.0) {
        Ok(i) => statuses[i].1 += n,
        Err(i) => statuses.insert(i, (status, n)),
    }
}

/// The bit of the Envoy response flag named `name` (`UO`), if there is one.
pub fn flag_bit(name: &str) -> Option<u32> {
    (proxy_engine::ResponseFlags::ALL.iter())
        .find(|(_, n)| *n == name)
        .map(|(f, _)| f.0.trailing_zeros())
}

fn bucket_of(duration: Nanos) -> usize {
    let ms = duration.as_millis_f64();
    DURATION_BUCKETS_MS
        .iter()
        .position(|upper| ms <= *upper)
        .unwrap_or(DURATION_BUCKETS_MS.len())
}

impl WindowStats {
    fn add(&mut self, other: &WindowStats) {
        self.requests += other.requests;
        self.non_5xx += other.non_5xx;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.hops.add(&other.hops);
    }

    /// `query`'s value, `None` when the window holds no response (Prometheus returns no value,
    /// or NaN, for a ratio over no traffic).
    pub fn value(&self, query: &Query) -> Option<f64> {
        let h = &self.hops;
        let hops = h.count as f64;
        match query {
            Query::HopErrorRatio => return (h.count > 0).then(|| h.failed as f64 / hops),
            Query::HopSuccessRatio => {
                let non_5xx: u64 = (h.statuses.iter())
                    .filter(|s| !(500..600).contains(&s.0))
                    .map(|s| s.1)
                    .sum();
                return (h.count > 0).then(|| non_5xx as f64 / hops);
            }
            Query::StatusRatio(status) => {
                let n = (h.statuses.iter())
                    .find(|s| s.0 == *status)
                    .map_or(0, |s| s.1);
                return (h.count > 0).then(|| n as f64 / hops);
            }
            Query::FlagRatio(flag) => {
                let n = flag_bit(flag).map_or(0, |b| h.flags[b as usize]);
                return (h.count > 0).then(|| n as f64 / hops);
            }
            Query::RetryAmplification => return (h.count > 0).then(|| h.attempts as f64 / hops),
            Query::HopLatencyMs(q) => {
                return (h.count > 0).then(|| quantile(&h.buckets, h.count, *q));
            }
            _ => {}
        }
        if self.requests == 0 {
            return None;
        }
        let n = self.requests as f64;
        Some(match query {
            Query::SuccessRate => self.non_5xx as f64 / n * 100.0,
            Query::SuccessRatio => self.non_5xx as f64 / n,
            Query::ErrorRatio => (self.requests - self.non_5xx) as f64 / n,
            Query::RequestRate => n / self.span.as_secs_f64().max(1e-9),
            Query::LatencyMs(q) => self.quantile_ms(*q),
            _ => return None,
        })
    }

    /// Prometheus' `histogram_quantile(q, …)` over the buckets: the bucket holding rank
    /// `q × count`, linearly interpolated from its lower bound (0 for the first); a rank in
    /// the `+Inf` bucket gives the highest finite bound.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile(&self.buckets, self.requests, q)
    }
}

/// `histogram_quantile(q, …)` over `buckets` holding `count` values.
fn quantile(buckets: &[u64; 20], count: u64, q: f64) -> f64 {
    {
        let total = count as f64;
        let rank = q.clamp(0.0, 1.0) * total;
        let mut below = 0.0;
        for (i, count) in buckets.iter().enumerate() {
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
    /// `side`'s responses in `[now - over, now)`; with a `route`, only the hops of that route
    /// (the callers' side).
    fn window(&self, side: Side, route: Option<&str>, now: Time, over: Nanos) -> WindowStats;
}

/// Slots per side (stable, canary): (slot number, counts), oldest first.
type Slots = [VecDeque<(u64, WindowStats)>; 2];

/// The slot width.
const SLOT: u64 = 100_000_000;

/// Each version's responses in 100 ms slots, for the last `keep` (the longest window read),
/// and the hops of each route a metric is scoped to. Drivers feed it; it is the
/// [`MetricSource`] of the run.
#[derive(Clone, Debug)]
pub struct Probe {
    keep_slots: u64,
    slots: Slots,
    /// The routes watched, sorted (`RolloutSpec::routes`).
    routes: Vec<String>,
    /// Per watched route, its hops.
    route_slots: Vec<Slots>,
}

impl Probe {
    /// A probe that can answer windows up to `keep` long, keeping the hops of `routes` apart.
    pub fn new(keep: Nanos, mut routes: Vec<String>) -> Probe {
        routes.sort();
        routes.dedup();
        Probe {
            keep_slots: keep.0.div_ceil(SLOT) + 1,
            slots: Default::default(),
            route_slots: vec![Default::default(); routes.len()],
            routes,
        }
    }

    /// The probe of `spec`'s metrics.
    pub fn of(spec: &crate::RolloutSpec) -> Probe {
        Probe::new(spec.longest_window(), spec.routes())
    }

    /// Whether a metric reads a route (drivers name each hop's route only then).
    pub fn watches_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// A response of `side` with `status`, `duration` after it arrived, at `at`. Times go
    /// forward; a response a little out of order (live, across threads) is counted in the
    /// latest slot.
    pub fn record(&mut self, side: Side, at: Time, status: u16, duration: Nanos) {
        let Some(s) = slot(&mut self.slots, self.keep_slots, side, at) else {
            return;
        };
        s.requests += 1;
        if !(500..600).contains(&status) {
            s.non_5xx += 1;
        }
        s.buckets[bucket_of(duration)] += 1;
    }

    /// A hop a caller's proxy routed to `side` by `route`, completed at `at`: its final
    /// status, response flags (bits), tries and latency.
    pub fn record_hop(&mut self, side: Side, route: Option<&str>, at: Time, hop: Hop) {
        let watched = route.and_then(|r| self.routes.binary_search_by(|w| w.as_str().cmp(r)).ok());
        let keep = self.keep_slots;
        if let Some(i) = watched {
            if let Some(s) = slot(&mut self.route_slots[i], keep, side, at) {
                s.hops.count(&hop);
            }
        }
        if let Some(s) = slot(&mut self.slots, keep, side, at) {
            s.hops.count(&hop);
        }
    }
}

/// The hop of `outcome`, `latency` long.
pub fn hop(outcome: &proxy_engine::Outcome, latency: Nanos) -> Hop {
    Hop {
        status: outcome.status,
        flags: outcome.flags.0,
        attempts: outcome.attempts,
        latency,
    }
}

/// One hop as its caller's proxy saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The final status (0: no response).
    pub status: u16,
    /// Envoy response flags (bits).
    pub flags: u32,
    /// Tries taken.
    pub attempts: u32,
    /// From the hop's start to its end.
    pub latency: Nanos,
}

impl HopStats {
    /// Counts one hop.
    fn count(&mut self, hop: &Hop) {
        let Hop {
            status,
            flags,
            attempts,
            latency,
        } = *hop;
        let h = self;
        h.count += 1;
        if status == 0 || status >= 500 {
            h.failed += 1;
        }
        h.attempts += u64::from(attempts);
        for bit in 0..32 {
            if flags & (1 << bit) != 0 {
                h.flags[bit] += 1;
            }
        }
        add_status(&mut h.statuses, status, 1);
        h.buckets[bucket_of(latency)] += 1;
    }
}

/// The slot of `side` that `at` falls in (the latest, for a time a little out of order),
/// dropping slots older than `keep` slots.
fn slot(slots: &mut Slots, keep: u64, side: Side, at: Time) -> Option<&mut WindowStats> {
    let n = at.0 / SLOT;
    let slots = slots.get_mut(side as usize)?; // `Both` is read, never recorded
    if slots.back().is_none_or(|(last, _)| *last < n) {
        slots.push_back((n, WindowStats::default()));
        while slots.front().is_some_and(|(first, _)| first + keep < n) {
            slots.pop_front();
        }
    }
    slots.back_mut().map(|(_, s)| s)
}

impl MetricSource for Probe {
    fn window(&self, side: Side, route: Option<&str>, now: Time, over: Nanos) -> WindowStats {
        let from = now.0.saturating_sub(over.0) / SLOT;
        let to = now.0 / SLOT; // exclusive: the slot `now` opens
        let mut out = WindowStats {
            span: over,
            ..WindowStats::default()
        };
        let all = match route {
            None => &self.slots,
            Some(r) => match self.routes.binary_search_by(|w| w.as_str().cmp(r)) {
                Ok(i) => &self.route_slots[i],
                Err(_) => return out, // not watched: no hop of it was kept
            },
        };
        let sides = match side {
            Side::Both => &all[..],
            one => &all[one as usize..=one as usize],
        };
        for slots in sides {
            for (n, s) in slots.iter().rev() {
                if *n < from {
                    break;
                }
                if *n < to {
                    out.add(s);
                }
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

    fn hop(status: u16, flags: u32, attempts: u32, latency: Nanos) -> Hop {
        Hop {
            status,
            flags,
            attempts,
            latency,
        }
    }

    #[test]
    fn a_window_counts_what_arrived_in_it() {
        let mut p = Probe::new(Nanos::from_secs(60), Vec::new());
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
        let w = p.window(Side::Canary, None, at_ms(3000), Nanos::from_secs(60));
        assert_eq!((w.requests, w.non_5xx), (100, 90));
        assert_eq!(w.value(&Query::SuccessRate), Some(90.0));
        assert_eq!(w.value(&Query::ErrorRatio), Some(0.1));
        // Only the last second: what arrived from 1.5 s on.
        let w = p.window(Side::Canary, None, at_ms(2500), Nanos::from_secs(1));
        assert_eq!(w.requests, 50);
        let empty = p.window(Side::Canary, None, at_ms(200_000), Nanos::from_secs(60));
        assert_eq!(
            empty.value(&Query::SuccessRate),
            None,
            "no traffic: no value"
        );
    }

    #[test]
    fn the_callers_side_counts_hops_statuses_flags_and_tries() {
        let mut p = Probe::new(Nanos::from_secs(60), Vec::new());
        let uo = flag_bit("UO").expect("UO is a flag");
        for i in 0..200u64 {
            let (status, flags, tries) = match i % 10 {
                0 => (503, 1 << uo, 1),
                1 => (200, 0, 3),
                _ => (200, 0, 1),
            };
            let latency = Nanos::from_millis(7);
            p.record_hop(
                Side::Canary,
                None,
                at_ms(i * 10),
                hop(status, flags, tries, latency),
            );
        }
        let w = p.window(Side::Canary, None, at_ms(2000), Nanos::from_secs(60));
        assert_eq!(w.value(&Query::HopErrorRatio), Some(0.1));
        assert_eq!(w.value(&Query::StatusRatio(503)), Some(0.1));
        assert_eq!(w.value(&Query::FlagRatio("UO".into())), Some(0.1));
        assert_eq!(w.value(&Query::FlagRatio("UF".into())), Some(0.0));
        // Of every 10 hops, 9 took 1 try and 1 took 3: 12 / 10.
        assert!((w.value(&Query::RetryAmplification).expect("hops") - 1.2).abs() < 1e-12);
        // Every hop took 7 ms: in (5, 10], interpolated at rank 0.5 → 7.5 ms.
        assert_eq!(w.value(&Query::HopLatencyMs(0.5)), Some(7.5));
        assert_eq!(
            w.value(&Query::SuccessRate),
            None,
            "no destination-side data"
        );
        let other = p.window(Side::Stable, None, at_ms(2000), Nanos::from_secs(60));
        assert_eq!(other.value(&Query::HopErrorRatio), None);
        // A hop with no response (status 0) is not a 5xx: PromQL's `!~"5.*"` counts it.
        p.record_hop(
            Side::Canary,
            None,
            at_ms(2000),
            hop(0, 0, 1, Nanos::from_millis(7)),
        );
        let w = p.window(Side::Canary, None, at_ms(2100), Nanos::from_secs(60));
        assert!((w.value(&Query::HopSuccessRatio).expect("hops") - 181.0 / 201.0).abs() < 1e-12);
        assert!((w.value(&Query::HopErrorRatio).expect("hops") - 21.0 / 201.0).abs() < 1e-12);
        // Both versions: the stable hops join the canary's.
        for i in 0..100 {
            p.record_hop(
                Side::Stable,
                None,
                at_ms(2000 + i),
                hop(200, 0, 1, Nanos::from_millis(1)),
            );
        }
        let both = p.window(Side::Both, None, at_ms(2200), Nanos::from_secs(60));
        assert_eq!(both.hops.count, 301);
        assert!((both.value(&Query::HopSuccessRatio).expect("hops") - 281.0 / 301.0).abs() < 1e-12);
    }

    #[test]
    fn a_watched_route_keeps_its_hops_apart() {
        let mut p = Probe::new(Nanos::from_secs(60), vec!["reviews/insiders".into()]);
        assert!(p.watches_routes());
        for i in 0..100u64 {
            let (route, status) = if i % 4 == 0 {
                ("reviews/insiders", 503)
            } else {
                ("reviews/0", 200)
            };
            let h = hop(status, 0, 1, Nanos::from_millis(2));
            p.record_hop(Side::Canary, Some(route), at_ms(i * 10), h);
        }
        let at = at_ms(2000);
        let over = Nanos::from_secs(60);
        let insiders = p.window(Side::Canary, Some("reviews/insiders"), at, over);
        assert_eq!(insiders.value(&Query::HopErrorRatio), Some(1.0));
        assert_eq!(insiders.hops.count, 25);
        let all = p.window(Side::Canary, None, at, over);
        assert_eq!(all.value(&Query::HopErrorRatio), Some(0.25));
        // A route no metric watches was not kept: no data.
        let other = p.window(Side::Canary, Some("reviews/0"), at, over);
        assert_eq!(other.value(&Query::HopErrorRatio), None);
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
