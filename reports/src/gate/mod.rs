//! CI gates over a JSON `Report`: thresholds (k6's model: every expression must hold, exit 99
//! when one does not) and regression rules against a baseline report. Both read only the
//! report, so a stored report can be checked again (`meshtwin check`) with the same verdict.
//!
//! Metrics (tags select a slice: `route=`, `destination=`, `cluster=` or `workload=` a name
//! from the report, else the end-to-end totals; `status=` and `flag=` narrow `requests`/`rps`):
//! `p50_ms`, `p90_ms`, `p99_ms`, `p999_ms`, `max_ms`, `mean_ms` (and any `pN_ms` on the
//! totals, from the percentile spectrum), `success_rate`, `error_rate`, `requests`, `rps`,
//! `attempts_per_request`; per cluster (or summed): `retries`, `retry_overflows`,
//! `overflows`, `ejections`; run-wide: `dropped`, `absorbed_failures`.

mod expr;
mod junit;
mod rules;

pub use expr::{Op, Query, Threshold};
pub use junit::junit;
pub use rules::{Bound, Rule};

use crate::json::{Report, StatsReport};
use std::fmt::Write;
use thiserror::Error;

/// Exit code when a threshold or rule is breached (k6's `ThresholdsHaveFailed`).
pub const EXIT_BREACHED: i32 = 99;
/// Exit code when a threshold or rule cannot be evaluated: a bad expression, an unknown
/// metric, tag or name (k6's `InvalidConfig`).
pub const EXIT_INVALID: i32 = 104;
/// Exit code when a report cannot be read or is not a meshtwin report (sysexits' `EX_DATAERR`).
pub const EXIT_BAD_DATA: i32 = 65;

/// Why a gate could not be evaluated.
#[derive(Debug, Error, PartialEq)]
pub enum GateError {
    /// The expression does not parse.
    #[error("threshold `{expression}`: {message}")]
    Expression {
        /// As written.
        expression: String,
        /// What was expected.
        message: String,
    },
    /// A regression rule does not parse.
    #[error("rule `{rule}`: {message}")]
    Rule {
        /// As written.
        rule: String,
        /// What was expected.
        message: String,
    },
    /// The metric or a tag is unknown, or the tag names a slice the report lacks.
    #[error("`{query}`: {message}")]
    Query {
        /// The query.
        query: String,
        /// What is wrong, with the valid choices.
        message: String,
    },
}

/// One gate's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The gate as written.
    pub name: String,
    /// The observed value (for a rule: the change from the baseline).
    pub observed: String,
    /// Whether it holds.
    pub passed: bool,
}

/// Evaluates every threshold against `report`.
pub fn check_thresholds(
    report: &Report,
    thresholds: &[Threshold],
) -> Result<Vec<Verdict>, GateError> {
    thresholds
        .iter()
        .map(|t| {
            let v = value(report, &t.query)?;
            Ok(Verdict {
                name: t.source.clone(),
                observed: format!("{}={}", t.query, trim_number(v)),
                passed: t.op.holds(v, t.limit),
            })
        })
        .collect()
}

/// The k6-style block printed after the summary: one line per gate, ✓ (green) or ✗ (red)
/// when `look` colours.
pub fn summary(verdicts: &[Verdict], look: &crate::table::Look) -> String {
    use crate::table::Tone;
    let mut out = format!("\n{}\n", look.paint("THRESHOLDS", Tone::Strong));
    let width = verdicts
        .iter()
        .map(|v| v.name.chars().count())
        .max()
        .unwrap_or(0);
    for v in verdicts {
        let mark = match v.passed {
            true => look.paint("✓", Tone::Good),
            false => look.paint("✗", Tone::Bad),
        };
        let _ = writeln!(out, "  {mark} {:width$}  {}", v.name, v.observed);
    }
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    if failed > 0 {
        let line = format!("{failed} of {} breached", verdicts.len());
        let _ = writeln!(out, "{}", look.paint(&line, Tone::Bad));
    }
    out
}

/// A number with at most six decimals and no trailing zeros.
pub(crate) fn trim_number(v: f64) -> String {
    crate::json::trim_decimals(v, 6)
}

const SLICE_TAGS: [&str; 4] = ["route", "destination", "cluster", "workload"];
const STATS_METRICS: [&str; 11] = [
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "success_rate",
    "error_rate",
    "requests",
    "rps",
    "attempts_per_request",
];
const EVENT_METRICS: [&str; 4] = ["retries", "retry_overflows", "overflows", "ejections"];
const RUN_METRICS: [&str; 2] = ["dropped", "absorbed_failures"];

/// Checks what can be checked without a report: the metric, the tag names and how they
/// combine (so a typo fails before a run, and `meshtwin validate` finds it).
pub fn validate(query: &Query) -> Result<(), GateError> {
    let fail = |message: String| GateError::Query {
        query: query.to_string(),
        message,
    };
    let has = |k: &str| query.tags.iter().any(|(t, _)| t == k);
    let known = |k: &str| SLICE_TAGS.contains(&k) || k == "status" || k == "flag";
    if let Some((k, _)) = query.tags.iter().find(|(k, _)| !known(k)) {
        return Err(fail(format!(
            "unknown tag `{k}` (tags: route, destination, cluster, workload, status, flag)"
        )));
    }
    let metric = query.metric.as_str();
    if EVENT_METRICS.contains(&metric) {
        return match query.tags.iter().find(|(t, _)| t != "cluster") {
            Some(_) => Err(fail(format!("`{metric}` takes only a `cluster` tag"))),
            None => Ok(()),
        };
    }
    if RUN_METRICS.contains(&metric) {
        return match query.tags.is_empty() {
            true => Ok(()),
            false => Err(fail(format!("`{metric}` is run-wide: it takes no tag"))),
        };
    }
    if !STATS_METRICS.contains(&metric) && spectrum_percentile(metric).is_none() {
        return Err(fail(unknown_metric(metric)));
    }
    if SLICE_TAGS.iter().filter(|t| has(t)).count() > 1 {
        return Err(fail(
            "at most one of route, destination, cluster, workload".into(),
        ));
    }
    if (has("status") || has("flag")) && metric != "requests" && metric != "rps" {
        return Err(fail(
            "`status` and `flag` narrow only `requests` and `rps`".into(),
        ));
    }
    Ok(())
}

/// The value `query` names in `report` (after `validate`).
pub fn value(report: &Report, query: &Query) -> Result<f64, GateError> {
    validate(query)?;
    let fail = |message: String| GateError::Query {
        query: query.to_string(),
        message,
    };
    let tag = |k: &str| {
        (query.tags.iter())
            .find(|(t, _)| t == k)
            .map(|(_, v)| v.as_str())
    };
    let metric = query.metric.as_str();
    if EVENT_METRICS.contains(&metric) {
        return events(report, metric, tag("cluster")).map_err(fail);
    }
    if RUN_METRICS.contains(&metric) {
        return Ok(match metric {
            "dropped" => report.dropped as f64,
            _ => report.absorbed_failures.unwrap_or(0) as f64,
        });
    }
    // `validate` allows at most one slice tag.
    let chosen = SLICE_TAGS.iter().find_map(|t| Some((*t, tag(t)?)));
    let stats = match chosen {
        Some((kind, name)) => slice(report, kind, name).map_err(fail)?,
        None => &report.totals,
    };
    stats_value(
        report,
        stats,
        metric,
        chosen.is_none(),
        tag("status"),
        tag("flag"),
    )
    .map_err(fail)
}

fn slice<'a>(report: &'a Report, kind: &str, name: &str) -> Result<&'a StatsReport, String> {
    let rows = match kind {
        "route" => &report.routes,
        "destination" => &report.destinations,
        "cluster" => &report.clusters,
        _ => &report.workloads,
    };
    rows.iter()
        .find(|r| r.name == name)
        .map(|r| &r.stats)
        .ok_or_else(|| {
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            format!(
                "the report has no {kind} `{name}` (it has: {})",
                names.join(", ")
            )
        })
}

fn stats_value(
    report: &Report,
    s: &StatsReport,
    metric: &str,
    whole: bool,
    status: Option<&str>,
    flag: Option<&str>,
) -> Result<f64, String> {
    let filtered = match (status, flag) {
        (Some(code), _) => Some(s.by_status.get(code).copied().unwrap_or(0)),
        (None, Some(f)) => Some(s.by_flag.get(f).copied().unwrap_or(0)),
        (None, None) => None,
    };
    let count = filtered.unwrap_or(s.count) as f64;
    let l = &s.latency_ms;
    Ok(match metric {
        "p50_ms" => l.p50,
        "p90_ms" => l.p90,
        "p99_ms" => l.p99,
        "p999_ms" => l.p999,
        "max_ms" => l.max,
        "mean_ms" => l.mean,
        "success_rate" => s.success_rate,
        "error_rate" if s.count == 0 => 0.0,
        "error_rate" => 1.0 - s.success_rate,
        "requests" => count,
        "rps" if report.duration_s > 0.0 => count / report.duration_s,
        "rps" => 0.0,
        "attempts_per_request" => s.attempts_per_request,
        m => match spectrum_percentile(m) {
            Some(p) if whole => percentile(report, p),
            Some(_) => {
                return Err("a slice has only p50, p90, p99 and p999 (any pN on the totals)".into())
            }
            None => return Err(unknown_metric(m)),
        },
    })
}

/// `p95_ms` → 95, `p999_ms` → 99.9 (digits after the first two are decimals).
fn spectrum_percentile(metric: &str) -> Option<f64> {
    let digits = metric.strip_prefix('p')?.strip_suffix("_ms")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (int, frac) = digits.split_at(digits.len().min(2));
    let p: f64 = format!("{int}.{frac}0").parse().ok()?;
    (p <= 100.0).then_some(if digits == "100" { 100.0 } else { p })
}

/// The totals' latency at percentile `p`, from the spectrum: the first step at or above it.
fn percentile(report: &Report, p: f64) -> f64 {
    let spectrum = &report.latency_spectrum;
    spectrum
        .iter()
        .find(|s| s.percentile >= p)
        .or(spectrum.last())
        .map_or(0.0, |s| s.value_ms)
}

fn events(report: &Report, metric: &str, cluster: Option<&str>) -> Result<f64, String> {
    let rows = report
        .resilience
        .iter()
        .filter(|e| cluster.is_none_or(|c| e.name == c));
    let total: u64 = rows
        .map(|e| match metric {
            "retries" => e.retries,
            "retry_overflows" => e.retry_overflows,
            "overflows" => e.overflows,
            _ => e.ejections,
        })
        .sum();
    // A cluster with no events has no row; one the report does not know is an error.
    if let Some(c) = cluster {
        let known = report.clusters.iter().any(|r| r.name == c)
            || report.resilience.iter().any(|e| e.name == c);
        if !known {
            let names: Vec<&str> = report.clusters.iter().map(|r| r.name.as_str()).collect();
            return Err(format!(
                "the report has no cluster `{c}` (it has: {})",
                names.join(", ")
            ));
        }
    }
    Ok(total as f64)
}

fn unknown_metric(m: &str) -> String {
    let all: Vec<&str> = (STATS_METRICS
        .iter()
        .chain(&EVENT_METRICS)
        .chain(&RUN_METRICS))
    .copied()
    .collect();
    format!(
        "unknown metric `{m}` (metrics: {}, or pN_ms such as p95_ms)",
        all.join(", ")
    )
}
