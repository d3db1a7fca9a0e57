//! The report's tables: the run line, the summary, per-instance figures and the route,
//! destination, cluster, mirror and resilience breakdowns.

use super::escape;
use crate::json::{Named, Report, StatsReport};
use std::collections::BTreeMap;
use std::fmt::Write;

/// What was run, in one line.
pub(super) fn run_line(r: &Report) -> String {
    let mode = if r.mode == "live" {
        "live (real sockets on loopback)"
    } else {
        "simulation"
    };
    format!(
        "<p class=\"run\">Mode: {} · seed {} · {} s of load · {} requests generated{}</p>\n",
        escape(mode),
        r.seed,
        num(r.duration_s),
        r.generated,
        if r.dropped > 0 {
            format!(" · {} dropped by the load generator", r.dropped)
        } else {
            String::new()
        }
    )
}

/// A table from a header row and body rows (cells already escaped); the columns in `lists`
/// hold lists that wrap.
pub(super) fn table(header: &[&str], rows: &[Vec<String>], lists: &[usize]) -> String {
    let mut out = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if lists.contains(&i) {
                " class=\"list\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{cell}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}

/// A number with at most three decimals and no trailing zeros.
fn num(v: f64) -> String {
    super::chart::trim(v)
}

fn percent(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "–".to_owned();
    }
    let parts: Vec<String> = m
        .iter()
        .map(|(k, n)| format!("{}: {n}", escape(k)))
        .collect();
    parts.join(", ")
}

const STATS_HEADER: [&str; 13] = [
    "name",
    "share",
    "requests",
    "success",
    "mean ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "tries/req",
    "statuses",
    "flags",
];

/// The statuses and flags columns.
const STATS_LISTS: [usize; 2] = [11, 12];

fn stats_row(name: &str, share: Option<f64>, s: &StatsReport) -> Vec<String> {
    let l = &s.latency_ms;
    vec![
        escape(name),
        share.map_or_else(|| "–".to_owned(), percent),
        s.count.to_string(),
        percent(s.success_rate),
        num(l.mean),
        num(l.p50),
        num(l.p90),
        num(l.p99),
        num(l.p999),
        num(l.max),
        num(s.attempts_per_request),
        counts(&s.by_status),
        counts(&s.by_flag),
    ]
}

fn named_table(rows: &[Named]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|n| stats_row(&n.name, Some(n.share), &n.stats))
        .collect();
    table(&STATS_HEADER, &rows, &STATS_LISTS)
}

/// The end-to-end totals and the workloads.
pub(super) fn summary(r: &Report) -> String {
    let mut out = String::from("<h3>End to end, as the clients saw it</h3>\n");
    let mut rows = vec![stats_row("all requests", None, &r.totals)];
    rows.extend(
        r.workloads
            .iter()
            .map(|w| stats_row(&w.name, Some(w.share), &w.stats)),
    );
    out.push_str(&table(&STATS_HEADER, &rows, &STATS_LISTS));
    let absorbed = match r.absorbed_failures {
        Some(n) => format!("{n} client requests succeeded although a hop inside the mesh failed"),
        None => "Absorbed failures are not measured live".to_owned(),
    };
    let _ = writeln!(
        out,
        "<p class=\"note\">Success: a status below 500 (Istio's request success rate). Latency \
         from an HdrHistogram of 3 significant digits. {}.</p>",
        escape(&absorbed)
    );
    out
}

/// The per-instance table.
pub(super) fn instances(r: &Report) -> String {
    if r.instances.is_empty() {
        return "<p class=\"empty\">No instance was reached.</p>\n".to_owned();
    }
    let rows: Vec<Vec<String>> = r
        .instances
        .iter()
        .map(|i| {
            vec![
                escape(&i.name),
                i.requests.to_string(),
                percent(i.success_rate),
                num(i.latency_ms.p50),
                num(i.latency_ms.p99),
                num(i.latency_ms.max),
                i.ejections.to_string(),
                num(i.ejected_s),
            ]
        })
        .collect();
    let mut out = String::from(
        "<p class=\"note\">Hops whose last attempt each instance answered; latency as the \
         calling proxy measured it (2 significant digits).</p>\n",
    );
    out.push_str(&table(
        &[
            "instance",
            "requests",
            "success",
            "p50 ms",
            "p99 ms",
            "max ms",
            "ejections",
            "ejected s",
        ],
        &rows,
        &[],
    ));
    out
}

/// Routes, destinations, clusters, mirrors and resilience events.
pub(super) fn breakdowns(r: &Report) -> String {
    let mut out = String::new();
    let parts: [(&str, &[Named]); 4] = [
        ("Routes (every hop that took the route)", &r.routes),
        ("Destinations (service/version, every hop)", &r.destinations),
        ("Clusters", &r.clusters),
        (
            "Mirrored copies (not part of the figures above)",
            &r.mirrors,
        ),
    ];
    for (title, rows) in parts {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "<h3>{}</h3>", escape(title));
        out.push_str(&named_table(rows));
    }
    if !r.resilience.is_empty() {
        out.push_str("<h3>Resilience events per cluster (Envoy's cluster stats)</h3>\n");
        let rows: Vec<Vec<String>> = r
            .resilience
            .iter()
            .map(|e| {
                std::iter::once(escape(&e.name))
                    .chain(e.counts().map(|n| n.to_string()))
                    .collect()
            })
            .collect();
        out.push_str(&table(
            &[
                "cluster",
                "retries",
                "retry overflows",
                "overflows (UO)",
                "ejections",
                "returned",
                "ejection overflows",
            ],
            &rows,
            &[],
        ));
    }
    out
}
