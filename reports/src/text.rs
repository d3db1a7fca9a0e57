//! The terminal summary: totals, per-route and per-destination tables, and (passed in by the
//! caller, never stored in the JSON) wall-clock figures.

use crate::json::{Named, Report, StatsReport};
use std::fmt::Write;

/// Wall-clock facts about a run, shown in the terminal only.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Seconds of wall time the run took.
    pub elapsed_s: f64,
}

fn flags(s: &StatsReport) -> String {
    if s.by_flag.is_empty() {
        return "-".into();
    }
    s.by_flag
        .iter()
        .map(|(f, n)| format!("{f}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn table(out: &mut String, title: &str, rows: &[Named]) {
    if rows.is_empty() {
        return;
    }
    let width = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max(title.len());
    let _ = writeln!(
        out,
        "\n{title:<width$} {:>9} {:>7} {:>8} {:>9} {:>9} {:>9}  flags",
        "requests", "share", "success", "p50 ms", "p99 ms", "max ms"
    );
    for r in rows {
        let s = &r.stats;
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>6.1}% {:>7.2}% {:>9.3} {:>9.3} {:>9.3}  {}",
            r.name,
            s.count,
            r.share * 100.0,
            s.success_rate * 100.0,
            s.latency_ms.p50,
            s.latency_ms.p99,
            s.latency_ms.max,
            flags(s)
        );
    }
}

/// Renders the summary; `wall` adds run time and simulated requests per second.
pub fn summary(r: &Report, wall: Option<WallClock>) -> String {
    let mut out = String::new();
    let t = &r.totals;
    let _ = writeln!(
        out,
        "scenario {} ({}), seed {}, {} s of load",
        r.scenario, r.mode, r.seed, r.duration_s
    );
    let _ = writeln!(
        out,
        "requests {}  success {:.3}%  rate {:.1} req/s",
        t.count,
        t.success_rate * 100.0,
        if r.duration_s > 0.0 {
            t.count as f64 / r.duration_s
        } else {
            0.0
        }
    );
    let l = &t.latency_ms;
    let _ = writeln!(
        out,
        "latency ms  mean {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.mean, l.p50, l.p90, l.p99, l.p999, l.max
    );
    let statuses: Vec<String> = t
        .by_status
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect();
    let _ = writeln!(out, "status {}  flags {}", statuses.join(" "), flags(t));
    if t.attempts > t.count {
        let tries: Vec<String> = t
            .by_attempts
            .iter()
            .map(|(k, n)| format!("{k}:{n}"))
            .collect();
        let _ = writeln!(
            out,
            "attempts {}  per request {:.3}  by tries {}",
            t.attempts,
            t.attempts_per_request,
            tries.join(" ")
        );
    }
    if r.dropped > 0 {
        let _ = writeln!(
            out,
            "warning: {} requests dropped, not sent: every connection was busy and the \
             connection limit reached (raise --max-connections)",
            r.dropped
        );
    }
    if let Some(n) = r.absorbed_failures.filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "warning: {n} requests succeeded for the client although a hop inside the mesh \
             failed (4xx, 5xx or no answer, absorbed by a retry or ignored by the caller); \
             the route table shows each hop"
        );
    }
    if r.workloads.len() > 1 {
        table(&mut out, "workload", &r.workloads);
    }
    table(&mut out, "route", &r.routes);
    table(&mut out, "destination", &r.destinations);
    if r.clusters.iter().any(|c| c.name.contains('|')) {
        table(&mut out, "cluster", &r.clusters);
    }
    table(&mut out, "mirror", &r.mirrors);
    events(&mut out, r);
    instances(&mut out, r);
    match wall {
        Some(w) if r.mode == "sim" => {
            let per_s = if w.elapsed_s > 0.0 {
                r.generated as f64 / w.elapsed_s
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "\nwall time {:.3} s, {:.0} simulated requests/s",
                w.elapsed_s, per_s
            );
        }
        Some(w) => {
            let _ = writeln!(out, "\nwall time {:.3} s", w.elapsed_s);
        }
        None => {}
    }
    out
}

/// The resilience table: retries, breaker overflows and ejections per cluster.
fn events(out: &mut String, r: &Report) {
    if r.resilience.is_empty() {
        return;
    }
    let width = r
        .resilience
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0)
        .max("cluster".len());
    let _ = writeln!(
        out,
        "\n{:<width$} {:>9} {:>11} {:>9} {:>9} {:>9} {:>11}",
        "cluster", "retries", "retry-ovfl", "UO ovfl", "ejected", "returned", "eject-ovfl"
    );
    for e in &r.resilience {
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>11} {:>9} {:>9} {:>9} {:>11}",
            e.name,
            e.retries,
            e.retry_overflows,
            e.overflows,
            e.ejections,
            e.unejections,
            e.ejection_overflows
        );
    }
}

/// Instances shown in the terminal at most; past that, the worst by success rate.
const INSTANCES_SHOWN: usize = 20;

/// The per-instance table: all instances when they are few, else the worst by success rate
/// (the JSON has them all).
fn instances(out: &mut String, r: &Report) {
    if r.instances.len() < 2 {
        return;
    }
    let mut rows: Vec<&crate::json::InstanceReport> = r.instances.iter().collect();
    let hidden = rows.len().saturating_sub(INSTANCES_SHOWN);
    if hidden > 0 {
        // Stable order for equal rates: by name, as listed.
        rows.sort_by(|a, b| a.success_rate.total_cmp(&b.success_rate));
        rows.truncate(INSTANCES_SHOWN);
    }
    let width = rows
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0)
        .max("instance".len());
    let _ = writeln!(
        out,
        "\n{:<width$} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "instance", "requests", "success", "p50 ms", "p99 ms", "ejected", "ejected s"
    );
    for i in rows {
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>7.2}% {:>9.2} {:>9.2} {:>9} {:>9.1}",
            i.name,
            i.requests,
            i.success_rate * 100.0,
            i.latency_ms.p50,
            i.latency_ms.p99,
            i.ejections,
            i.ejected_s
        );
    }
    if hidden > 0 {
        let _ = writeln!(
            out,
            "({hidden} more instances, lowest success rate shown first; all are in the JSON)"
        );
    }
}
