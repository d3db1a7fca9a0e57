//! The JSON report: schema version 1, documented field by field in `reports/SCHEMA.md`.

use metrics::{EventCounts, RunMetrics, Stats, TimeSeries};
use proxy_engine::ResponseFlags;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the JSON schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What was run (everything here is determined by the scenario and seed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// Scenario name.
    pub scenario: String,
    /// Seed the run used.
    pub seed: u64,
    /// Load phase length, nanoseconds.
    pub duration_ns: u64,
    /// `sim` or `live`.
    pub mode: &'static str,
}

/// Latency summary in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Exact mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
}

/// Outcome statistics of one slice of traffic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsReport {
    /// Requests completed.
    pub count: u64,
    /// Requests that succeeded (a response below 500).
    pub success: u64,
    /// `success / count` (0 when empty).
    pub success_rate: f64,
    /// Count per final status code; `"0"` means no response was sent.
    pub by_status: BTreeMap<String, u64>,
    /// Count per Envoy response flag, only flags that occurred.
    pub by_flag: BTreeMap<String, u64>,
    /// Latency, milliseconds.
    pub latency_ms: Latency,
    /// Upstream attempts made for these requests (tries, retries included).
    pub attempts: u64,
    /// `attempts / count`: retry amplification (1.0 = no retries; 0 when empty).
    pub attempts_per_request: f64,
    /// Requests per number of attempts (`"0"`: answered without an upstream attempt).
    pub by_attempts: BTreeMap<String, u64>,
}

/// One instance's figures (hops whose last attempt it answered; see `instances` in
/// `SCHEMA.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceReport {
    /// Stable instance name, `service/version/k`.
    pub name: String,
    /// Hops whose last attempt went to it.
    pub requests: u64,
    /// Of those, successes (status below 500).
    pub success: u64,
    /// `success / requests` (0 when none).
    pub success_rate: f64,
    /// Latency of those hops, milliseconds: `p50`, `p99`, `max` (2 significant digits).
    pub latency_ms: InstanceLatency,
    /// Times a proxy ejected it (outlier detection).
    pub ejections: u64,
    /// Seconds it spent ejected, summed over the proxies that ejected it.
    pub ejected_s: f64,
}

/// An instance's latency summary, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceLatency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest (the top of its histogram class).
    pub max: f64,
}

impl InstanceReport {
    fn new(name: &str, s: &metrics::instances::InstanceStats) -> InstanceReport {
        let q = |p: f64| {
            if s.requests == 0 {
                0.0
            } else {
                ms(s.latency.value_at_quantile(p))
            }
        };
        InstanceReport {
            name: name.to_owned(),
            requests: s.requests,
            success: s.success,
            success_rate: ratio(s.success, s.requests),
            latency_ms: InstanceLatency {
                p50: q(0.5),
                p99: q(0.99),
                max: q(1.0),
            },
            ejections: s.ejections,
            ejected_s: s.ejected_ns as f64 / 1e9,
        }
    }
}

/// Resilience events of one cluster, as Envoy's cluster stats count them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsReport {
    /// Cluster name (`service` or `service|subset`).
    pub name: String,
    /// Retries scheduled (`upstream_rq_retry`).
    pub retries: u64,
    /// Retries refused by `max_retries` or the retry budget (`upstream_rq_retry_overflow`).
    pub retry_overflows: u64,
    /// Circuit-breaker overflows, answered 503 `UO` (`upstream_rq_pending_overflow`).
    pub overflows: u64,
    /// Hosts ejected by outlier detection.
    pub ejections: u64,
    /// Ejected hosts that returned.
    pub unejections: u64,
    /// Ejections blocked by `max_ejection_percent` (`ejections_overflow`).
    pub ejection_overflows: u64,
}

impl EventsReport {
    /// The counts in table order: retries, retry overflows, `UO` overflows, ejections,
    /// returns, ejection overflows (the terminal and HTML tables' columns).
    pub fn counts(&self) -> [u64; 6] {
        [
            self.retries,
            self.retry_overflows,
            self.overflows,
            self.ejections,
            self.unejections,
            self.ejection_overflows,
        ]
    }

    fn new(name: &str, e: &EventCounts) -> EventsReport {
        EventsReport {
            name: name.to_owned(),
            retries: e.retries,
            retry_overflows: e.retry_overflows,
            overflows: e.overflows,
            ejections: e.ejections,
            unejections: e.unejections,
            ejection_overflows: e.ejection_overflows,
        }
    }
}

/// A named slice: one route or one destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Named {
    /// Route name (`host/route`) or destination (`service/version`).
    pub name: String,
    /// Share of the outcomes of its group that fell here: a route's share among the routes of
    /// its host, a destination's (or cluster's) share among those of its service (the part of
    /// `name` before `/` or `|`).
    pub share: f64,
    /// Its statistics.
    #[serde(flatten)]
    pub stats: StatsReport,
}

/// One time-series window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowReport {
    /// Window start, seconds from the run start.
    pub start_s: f64,
    /// Requests that started in the window.
    pub requests: u64,
    /// Of those, the ones that did not succeed.
    pub errors: u64,
    /// Their median latency, milliseconds.
    pub p50_ms: f64,
    /// Their 90th-percentile latency, milliseconds.
    #[serde(default)]
    pub p90_ms: f64,
    /// Their 99th-percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Those requests per final status (`"0"`: no response).
    #[serde(default)]
    pub by_status: BTreeMap<String, u64>,
    /// Those requests per Envoy response flag, only flags that occurred.
    #[serde(default)]
    pub by_flag: BTreeMap<String, u64>,
    /// Hops (at any proxy) that started in the window, per destination `service/version`.
    #[serde(default)]
    pub by_destination: BTreeMap<String, u64>,
    /// Retries scheduled in the window (any proxy).
    pub retries: u64,
    /// Circuit-breaker overflows (503 `UO`) in the window.
    pub overflows: u64,
    /// Retries refused by `max_retries` or a retry budget in the window.
    pub retry_overflows: u64,
    /// Hosts ejected in the window.
    pub ejections: u64,
    /// Ejected hosts returned in the window.
    pub unejections: u64,
}

/// One step of a percentile spectrum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpectrumPoint {
    /// Percentile, 0–100.
    pub percentile: f64,
    /// Latency at that percentile, milliseconds.
    pub value_ms: f64,
}

/// HdrHistogram's percentile iteration of `s`' latency (empty when `s` is).
fn spectrum(s: &Stats) -> Vec<SpectrumPoint> {
    if s.count == 0 {
        return Vec::new();
    }
    let h = s.latency.histogram();
    let mut points: Vec<SpectrumPoint> = Vec::new();
    for v in h.iter_quantiles(5) {
        let point = SpectrumPoint {
            // Rounded to 1e-9 %, so `30%` does not print as `30.000000000000004`.
            percentile: (v.quantile_iterated_to() * 1e11).round() / 1e9,
            value_ms: ms(h.highest_equivalent(v.value_iterated_to())),
        };
        if points.last() != Some(&point) {
            points.push(point);
        }
    }
    points
}

/// The whole JSON report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// `SCHEMA_VERSION`.
    pub schema_version: u32,
    /// Scenario name.
    pub scenario: String,
    /// `sim` or `live`.
    pub mode: String,
    /// Seed used.
    pub seed: u64,
    /// Load phase length, seconds.
    pub duration_s: f64,
    /// Requests the workload generated (equals `totals.count`: nothing is lost).
    pub generated: u64,
    /// Requests a live load generator had to drop (every connection busy, its limit reached;
    /// k6's `dropped_iterations`); not part of `generated`. 0 in the simulator.
    pub dropped: u64,
    /// Client requests that succeeded although a hop inside the mesh failed on their way
    /// (answered 4xx, 5xx or not at all: a retry absorbed it or the caller ignored it); `null`
    /// in live mode, which cannot follow a request across hops.
    pub absorbed_failures: Option<u64>,
    /// End-to-end outcomes as clients saw them.
    pub totals: StatsReport,
    /// `totals`' latency distribution as HdrHistogram's percentile spectrum (5 ticks per
    /// half distance to 100 %), for plotting on a `1/(1-p)` axis.
    #[serde(default)]
    pub latency_spectrum: Vec<SpectrumPoint>,
    /// End-to-end outcomes per workload, in the scenario's order; `share` is the workload's
    /// part of `totals`.
    pub workloads: Vec<Named>,
    /// Per route, at every hop, sorted by name.
    pub routes: Vec<Named>,
    /// Per destination `service/version`, at every hop, sorted by name.
    pub destinations: Vec<Named>,
    /// Per cluster (`service` or `service|subset`), at every hop, sorted by name.
    pub clusters: Vec<Named>,
    /// Mirrored copies per destination `service/version` (not part of `totals`).
    pub mirrors: Vec<Named>,
    /// Window length of `timeseries`, seconds.
    pub window_s: f64,
    /// End-to-end outcomes per window, by request start time; resilience events by the
    /// window they happened in.
    pub timeseries: Vec<WindowReport>,
    /// Resilience events per cluster (clusters with any), sorted by name.
    pub resilience: Vec<EventsReport>,
    /// Per instance that traffic reached, sorted by name.
    pub instances: Vec<InstanceReport>,
    /// The config generations made after the first (timeline changes, instances becoming
    /// ready, rollout steps), in order.
    #[serde(default)]
    pub generations: Vec<GenerationMade>,
    /// The rollout's decision log and generations; `null` without a rollout.
    #[serde(default)]
    pub rollout: Option<crate::rollout::RolloutReport>,
}

/// A config generation made during the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationMade {
    /// Its number (0 is the scenario's mesh).
    pub number: u32,
    /// When it was made, seconds; each proxy receives it after its own push delay.
    pub at_s: f64,
    /// `timeline[i]`, `instances ready` or `rollout`.
    pub cause: String,
}

fn ms(ns: u64) -> f64 {
    // Rounded to the nanosecond so the text form stays short and stable.
    ns as f64 / 1e6
}

/// `v` with at most `places` decimals and no trailing zeros (`2`, `2.5`, `0.25`), as the HTML
/// report and the gate verdicts print numbers.
pub(crate) fn trim_decimals(v: f64, places: usize) -> String {
    let s = format!("{v:.places$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl StatsReport {
    /// Summarises `s`.
    pub fn from_stats(s: &Stats) -> StatsReport {
        let h = &s.latency;
        let q = |p: f64| {
            if s.count == 0 {
                0.0
            } else {
                ms(h.value_at_quantile(p))
            }
        };
        StatsReport {
            count: s.count,
            success: s.success,
            success_rate: ratio(s.success, s.count),
            by_status: s
                .by_status
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            by_flag: s.flags().map(|(f, n)| (f.to_owned(), n)).collect(),
            latency_ms: Latency {
                mean: s.mean_ns() / 1e6,
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: if s.count == 0 { 0.0 } else { ms(h.max()) },
            },
            attempts: s.attempts,
            attempts_per_request: s.amplification(),
            by_attempts: s
                .by_attempts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
        }
    }
}

fn group(name: &str) -> &str {
    name.split(['/', '|']).next().unwrap_or(name)
}

fn named(section: &[(String, Stats)]) -> Vec<Named> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (name, s) in section {
        *totals.entry(group(name)).or_default() += s.count;
    }
    section
        .iter()
        .map(|(name, s)| Named {
            name: name.clone(),
            share: ratio(s.count, totals.get(group(name)).copied().unwrap_or(0)),
            stats: StatsReport::from_stats(s),
        })
        .collect()
}

fn series(ts: &TimeSeries) -> Vec<WindowReport> {
    ts.windows
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let q = |p: f64| {
                if w.requests == 0 {
                    0.0
                } else {
                    ms(w.latency.value_at_quantile(p))
                }
            };
            WindowReport {
                start_s: (i as u64 * ts.window.0) as f64 / 1e9,
                requests: w.requests,
                errors: w.errors,
                p50_ms: q(0.5),
                p90_ms: q(0.9),
                p99_ms: q(0.99),
                by_status: (w.by_status.iter())
                    .map(|(code, n)| (code.to_string(), *n))
                    .collect(),
                by_flag: (w.by_flag.iter())
                    .filter_map(|&(i, n)| {
                        Some((ResponseFlags::ALL.get(i as usize)?.1.to_owned(), n))
                    })
                    .collect(),
                by_destination: (w.by_destination.iter())
                    .filter_map(|&(d, n)| Some((ts.destinations.get(d as usize)?.clone(), n)))
                    .collect(),
                retries: w.events.retries,
                overflows: w.events.overflows,
                retry_overflows: w.events.retry_overflows,
                ejections: w.events.ejections,
                unejections: w.events.unejections,
            }
        })
        .collect()
}

impl Report {
    /// Builds the report of a run.
    pub fn new(info: &RunInfo, m: &RunMetrics) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            scenario: info.scenario.clone(),
            mode: info.mode.to_owned(),
            seed: info.seed,
            duration_s: info.duration_ns as f64 / 1e9,
            generated: m.generated,
            dropped: m.dropped,
            absorbed_failures: m.absorbed,
            totals: StatsReport::from_stats(&m.totals),
            latency_spectrum: spectrum(&m.totals),
            workloads: m
                .workloads
                .iter()
                .map(|(name, s)| Named {
                    name: name.clone(),
                    share: ratio(s.count, m.totals.count),
                    stats: StatsReport::from_stats(s),
                })
                .collect(),
            routes: named(&m.routes),
            destinations: named(&m.destinations),
            clusters: named(&m.clusters),
            mirrors: named(&m.mirrors),
            window_s: m.series.window.as_secs_f64(),
            timeseries: series(&m.series),
            resilience: m
                .events
                .iter()
                .map(|(name, e)| EventsReport::new(name, e))
                .collect(),
            instances: m
                .instances
                .iter()
                .map(|(name, s)| InstanceReport::new(name, s))
                .collect(),
            generations: (m.generations.iter())
                .map(|g| GenerationMade {
                    number: g.number,
                    at_s: g.at.0 as f64 / 1e9,
                    cause: g.cause.clone(),
                })
                .collect(),
            rollout: m.rollout.as_ref().map(crate::rollout::RolloutReport::new),
        }
    }

    /// Pretty-printed JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // Serialising plain structs, maps with string keys and finite floats cannot fail.
        let mut s = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{Stats, TimeSeries};
    use proxy_engine::{Nanos, Outcome, ResponseFlags, Time};

    fn outcome(status: u16, flags: ResponseFlags) -> Outcome {
        Outcome::bare(status, flags)
    }

    fn metrics() -> RunMetrics {
        let mut totals = Stats::default();
        let mut v1 = Stats::default();
        let mut v2 = Stats::default();
        let mut series = TimeSeries::new(Nanos::from_secs(1));
        for i in 1..=100u64 {
            let o = if i % 10 == 0 {
                outcome(503, ResponseFlags::NO_HEALTHY_UPSTREAM)
            } else {
                outcome(200, ResponseFlags::NONE)
            };
            let latency = Nanos::from_millis(i);
            totals.record(&o, latency);
            if i % 4 == 0 { &mut v2 } else { &mut v1 }.record(&o, latency);
            series.record(Time(i * 20_000_000), &o, latency);
        }
        RunMetrics {
            generated: 100,
            dropped: 0,
            absorbed: Some(0),
            totals: totals.clone(),
            workloads: vec![("load-0".into(), totals)],
            routes: Vec::new(),
            destinations: vec![("svc/v1".into(), v1), ("svc/v2".into(), v2)],
            clusters: Vec::new(),
            mirrors: Vec::new(),
            series,
            events: Vec::new(),
            instances: Vec::new(),
            rollout: None,
            generations: Vec::new(),
        }
    }

    #[test]
    fn report_follows_the_documented_schema() {
        let info = RunInfo {
            scenario: "t".into(),
            seed: 3,
            duration_ns: 2_000_000_000,
            mode: "sim",
        };
        let r = Report::new(&info, &metrics());
        let t = &r.totals;
        assert_eq!((t.count, t.success), (100, 90));
        assert_eq!(t.by_status.get("503"), Some(&10));
        assert_eq!(t.by_flag.get("UH"), Some(&10));
        assert_eq!(t.latency_ms.mean, 50.5);
        // hdrhistogram, 3 significant digits: within 0.1 % of the exact rank statistic.
        assert!(
            (t.latency_ms.p50 - 50.0).abs() <= 0.05,
            "{}",
            t.latency_ms.p50
        );
        assert!(
            (t.latency_ms.p99 - 99.0).abs() <= 0.1,
            "{}",
            t.latency_ms.p99
        );
        assert_eq!(r.destinations[1].share, 0.25);
        assert_eq!(r.timeseries.len(), 3, "starts up to 2 s in 1 s windows");
        assert_eq!(r.timeseries.iter().map(|w| w.requests).sum::<u64>(), 100);
        for w in &r.timeseries {
            assert_eq!(w.by_status.values().sum::<u64>(), w.requests);
            assert_eq!(w.by_flag.get("UH").copied().unwrap_or(0), w.errors);
        }
        // The spectrum climbs to 100 % at the largest value, never going down.
        let spectrum = &r.latency_spectrum;
        assert!(spectrum
            .windows(2)
            .all(|p| p[0].percentile <= p[1].percentile && p[0].value_ms <= p[1].value_ms));
        assert_eq!(
            spectrum.last().map(|p| (p.percentile, p.value_ms)),
            Some((100.0, t.latency_ms.max))
        );
        let json = r.to_json();
        let back: Report = serde_json::from_str(&json).expect("a report reads back");
        assert_eq!(back, r);
        let keys: Vec<&str> = json
            .lines()
            .filter(|l| l.starts_with("  \""))
            .filter_map(|l| l.trim().split('"').nth(1))
            .collect();
        assert_eq!(
            keys,
            [
                "schema_version",
                "scenario",
                "mode",
                "seed",
                "duration_s",
                "generated",
                "dropped",
                "absorbed_failures",
                "totals",
                "latency_spectrum",
                "workloads",
                "routes",
                "destinations",
                "clusters",
                "mirrors",
                "window_s",
                "timeseries",
                "resilience",
                "instances",
                "generations",
                "rollout"
            ]
        );
        let text = crate::text::summary(&r, None, &crate::table::Look::default());
        assert!(text.contains("requests 100  success 90.000%"), "{text}");
        assert!(text.contains("svc/v2"), "{text}");
        assert!(!text.contains("wall time"), "no wall clock unless given");
    }
}
