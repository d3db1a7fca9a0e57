//! Two reports side by side (`meshtwin compare A.json B.json`): the key figures of the totals,
//! each route and each destination, with the change from A to B, absolute and relative. A
//! route or destination only one report has shows `–` on the other side.

use crate::gate::{self, Query};
use crate::json::{trim_decimals, Report};
use crate::table::{Align, Look, Table};
use std::collections::BTreeSet;

/// The figures compared for every slice, as `gate` metrics.
pub const METRICS: [&str; 8] = [
    "requests",
    "success_rate",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "attempts_per_request",
];

/// One compared figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `totals`, `route` or `destination`.
    pub section: &'static str,
    /// The slice's name (`all requests` for the totals).
    pub name: String,
    /// The metric (one of `METRICS`).
    pub metric: &'static str,
    /// A's value, if A has the slice.
    pub a: Option<f64>,
    /// B's value, if B has the slice.
    pub b: Option<f64>,
}

impl Row {
    /// `b - a`, when both have the slice.
    pub fn delta(&self) -> Option<f64> {
        Some(self.b? - self.a?)
    }

    /// `(b - a) / a`, when both have it and `a` is not 0.
    pub fn relative(&self) -> Option<f64> {
        let (a, b) = (self.a?, self.b?);
        (a != 0.0).then(|| (b - a) / a)
    }
}

/// Every compared figure: the totals, then each route and each destination either report has
/// (sorted by name), `METRICS` for each.
pub fn rows(a: &Report, b: &Report) -> Vec<Row> {
    let mut out = Vec::new();
    let mut push = |section: &'static str, name: &str, tag: Option<&str>| {
        for metric in METRICS {
            let query = Query {
                metric: metric.to_owned(),
                tags: tag
                    .map(|t| vec![(t.to_owned(), name.to_owned())])
                    .unwrap_or_default(),
            };
            out.push(Row {
                section,
                name: name.to_owned(),
                metric,
                a: gate::value(a, &query).ok(),
                b: gate::value(b, &query).ok(),
            });
        }
    };
    push("totals", "all requests", None);
    let names = |f: fn(&Report) -> &Vec<crate::json::Named>| -> BTreeSet<String> {
        f(a).iter().chain(f(b)).map(|n| n.name.clone()).collect()
    };
    for name in names(|r| &r.routes) {
        push("route", &name, Some("route"));
    }
    for name in names(|r| &r.destinations) {
        push("destination", &name, Some("destination"));
    }
    out
}

/// Who a report is: `scenario (mode, seed N)`.
pub fn label(r: &Report) -> String {
    format!("{} ({}, seed {})", r.scenario, r.mode, r.seed)
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| trim_decimals(v, 3))
}

fn signed(v: Option<f64>, percent: bool) -> String {
    match v {
        None => "–".to_owned(),
        Some(v) if percent => format!(
            "{}{}%",
            if v >= 0.0 { "+" } else { "" },
            trim_decimals(v * 100.0, 2)
        ),
        Some(v) => format!("{}{}", if v >= 0.0 { "+" } else { "" }, trim_decimals(v, 3)),
    }
}

/// The cells of a row: section, name, metric, A, B, Δ, Δ%.
pub fn cells(r: &Row) -> [String; 7] {
    [
        r.section.to_owned(),
        r.name.clone(),
        r.metric.to_owned(),
        cell(r.a),
        cell(r.b),
        signed(r.delta(), false),
        signed(r.relative(), true),
    ]
}

/// The comparison as an aligned text table, fitted to `look`.
pub fn text(a: &Report, b: &Report, look: &Look) -> String {
    let mut t = Table::new(2);
    for head in ["section", "name", "metric"] {
        t = t.column(head, Align::Left, 0);
    }
    for head in ["A", "B", "Δ", "Δ%"] {
        t = t.column(head, Align::Right, 0);
    }
    for row in rows(a, b) {
        t.row(cells(&row));
    }
    format!("A: {}\nB: {}\n\n{}", label(a), label(b), t.render(look))
}
