//! The terminal summary: totals, per-route and per-destination tables, and (passed in by the
//! caller, never stored in the JSON) wall-clock figures.

use crate::json::{Named, Report, StatsReport};
use crate::table::{Align, Look, Table, Tone};
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

/// The success rate's colour: green when every request succeeded, yellow down to 99 %, red
/// below.
fn success_tone(rate: f64) -> Tone {
    match rate {
        r if r >= 1.0 => Tone::Good,
        r if r >= 0.99 => Tone::Warn,
        _ => Tone::Bad,
    }
}

fn table(out: &mut String, look: &Look, title: &str, rows: &[Named]) {
    let mut t = Table::new(1)
        .column(title, Align::Left, 0)
        .column("requests", Align::Right, 9)
        .column("share", Align::Right, 7)
        .column("success", Align::Right, 8)
        .column("p50 ms", Align::Right, 9)
        .column("p99 ms", Align::Right, 9)
        .column("max ms", Align::Right, 9)
        .column("flags", Align::Left, 0);
    for r in rows {
        let s = &r.stats;
        let flags = flags(s);
        let flag_tone = if s.by_flag.is_empty() {
            Tone::Plain
        } else {
            Tone::Warn
        };
        t.toned_row([
            (r.name.clone(), Tone::Plain),
            (s.count.to_string(), Tone::Plain),
            (format!("{:.1}%", r.share * 100.0), Tone::Plain),
            (
                format!("{:.2}%", s.success_rate * 100.0),
                success_tone(s.success_rate),
            ),
            (format!("{:.3}", s.latency_ms.p50), Tone::Plain),
            (format!("{:.3}", s.latency_ms.p99), Tone::Plain),
            (format!("{:.3}", s.latency_ms.max), Tone::Plain),
            (flags, flag_tone),
        ]);
    }
    if !t.is_empty() {
        out.push('\n');
        out.push_str(&t.render(look));
    }
}

/// A `warning:` line, the word in yellow, wrapped to the width.
fn warning(out: &mut String, look: &Look, text: &str) {
    let _ = writeln!(out, "{}", look.warning(text));
}

/// Renders the summary; `wall` adds run time and simulated requests per second; `look` fits
/// it to a terminal and colours it (`Look::default()`: plain, full width).
pub fn summary(r: &Report, wall: Option<WallClock>, look: &Look) -> String {
    let mut out = String::new();
    let t = &r.totals;
    let title = format!(
        "scenario {} ({}), seed {}, {} s of load",
        r.scenario,
        r.mode,
        r.seed,
        crate::json::trim_decimals(r.duration_s, 3)
    );
    let _ = writeln!(out, "{}", look.paint(&title, Tone::Strong));
    let _ = writeln!(
        out,
        "requests {}  success {}  rate {:.1} req/s",
        t.count,
        look.paint(
            &format!("{:.3}%", t.success_rate * 100.0),
            success_tone(t.success_rate)
        ),
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
        let text = format!(
            "{} requests dropped, not sent: every connection was busy and the connection \
             limit reached (raise --max-connections)",
            r.dropped
        );
        warning(&mut out, look, &text);
    }
    if let Some(n) = r.absorbed_failures.filter(|n| *n > 0) {
        let text = format!(
            "{n} requests succeeded for the client although a hop inside the mesh failed \
             (4xx, 5xx or no answer, absorbed by a retry or ignored by the caller); the route \
             table shows each hop"
        );
        warning(&mut out, look, &text);
    }
    if r.workloads.len() > 1 {
        table(&mut out, look, "workload", &r.workloads);
    }
    table(&mut out, look, "route", &r.routes);
    table(&mut out, look, "destination", &r.destinations);
    if r.clusters.iter().any(|c| c.name.contains('|')) {
        table(&mut out, look, "cluster", &r.clusters);
    }
    table(&mut out, look, "mirror", &r.mirrors);
    events(&mut out, look, r);
    instances(&mut out, look, r);
    if r.rollout.is_none() && !r.generations.is_empty() {
        let made: Vec<String> = (r.generations.iter().take(8))
            .map(|g| {
                let at = crate::json::trim_decimals(g.at_s, 3);
                format!("{} at {at} s ({})", g.number, g.cause)
            })
            .collect();
        let more = r.generations.len().saturating_sub(8);
        let more = if more > 0 {
            format!(", {more} more")
        } else {
            String::new()
        };
        let line = format!("\nconfig generations: {}{more}", made.join(", "));
        let _ = writeln!(out, "{}", look.wrap(&line));
    }
    if let Some(rollout) = &r.rollout {
        out.push_str(&crate::rollout::text(rollout, look));
    }
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
fn events(out: &mut String, look: &Look, r: &Report) {
    let mut t = Table::new(1).column("cluster", Align::Left, 0);
    for head in [
        "retries",
        "retry-ovfl",
        "UO ovfl",
        "ejected",
        "returned",
        "eject-ovfl",
    ] {
        t = t.column(head, Align::Right, 9);
    }
    for e in &r.resilience {
        t.row(std::iter::once(e.name.clone()).chain(e.counts().map(|n| n.to_string())));
    }
    if !t.is_empty() {
        out.push('\n');
        out.push_str(&t.render(look));
    }
}

/// Instances shown in the terminal at most; past that, the worst by success rate.
const INSTANCES_SHOWN: usize = 20;

/// The per-instance table: all instances when they are few, else the worst by success rate
/// (the JSON has them all).
fn instances(out: &mut String, look: &Look, r: &Report) {
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
    let mut t = Table::new(1)
        .column("instance", Align::Left, 0)
        .column("requests", Align::Right, 9)
        .column("success", Align::Right, 8);
    for head in ["p50 ms", "p99 ms", "ejected", "ejected s"] {
        t = t.column(head, Align::Right, 9);
    }
    for i in rows {
        t.toned_row([
            (i.name.clone(), Tone::Plain),
            (i.requests.to_string(), Tone::Plain),
            (
                format!("{:.2}%", i.success_rate * 100.0),
                success_tone(i.success_rate),
            ),
            (format!("{:.2}", i.latency_ms.p50), Tone::Plain),
            (format!("{:.2}", i.latency_ms.p99), Tone::Plain),
            (i.ejections.to_string(), Tone::Plain),
            (format!("{:.1}", i.ejected_s), Tone::Plain),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render(look));
    if hidden > 0 {
        let _ = writeln!(
            out,
            "({hidden} more instances, lowest success rate shown first; all are in the JSON)"
        );
    }
}
