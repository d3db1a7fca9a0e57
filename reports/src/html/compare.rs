//! The comparison page (`meshtwin compare A.json B.json --html`): the delta table, then both
//! runs' curves overlaid on shared axes — A solid, B dashed, one colour per series.

use super::chart::{Chart, Series, Style};
use super::{escape, figure, page_start, section, spectrum_chart, spectrum_points, Windows};
use crate::compare::{cells, label, rows};
use crate::json::Report;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The comparison page of `a` and `b`.
pub fn render_compare(a: &Report, b: &Report) -> String {
    let title = format!("meshtwin compare: {} vs {}", a.scenario, b.scenario);
    let mut page = page_start(&title);
    let _ = write!(
        page,
        "<h1>{}</h1>\n<p class=\"run\">A (solid lines): {} · B (dashed): {}</p>\n",
        escape(&title),
        escape(&label(a)),
        escape(&label(b))
    );
    section(&mut page, "deltas", "Key figures, A → B", &table(a, b));
    let (wa, wb) = (Windows::of(a), Windows::of(b));
    let latency = overlay(
        "latency (ms)",
        vec![
            ("p50", 0, wa.latency(|x| x.p50_ms), wb.latency(|x| x.p50_ms)),
            ("p99", 3, wa.latency(|x| x.p99_ms), wb.latency(|x| x.p99_ms)),
        ],
        false,
    );
    section(
        &mut page,
        "latency",
        "Latency over time",
        &figure(
            "End-to-end latency percentiles, A and B",
            &latency,
            "No request completed.",
        ),
    );
    let names: BTreeSet<&String> = (a.destinations.iter().chain(&b.destinations))
        .map(|d| &d.name)
        .collect();
    let rate =
        |w: &Windows<'_>, name: &str| w.rate(|x| x.by_destination.get(name).copied().unwrap_or(0));
    let split = overlay(
        "requests/s (hops)",
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i, rate(&wa, n), rate(&wb, n)))
            .collect(),
        false,
    );
    section(
        &mut page,
        "split",
        "Requests per second by destination",
        &figure(
            "Hops per second to each destination, A and B",
            &split,
            "No request reached a destination.",
        ),
    );
    let spectrum = overlay(
        "",
        vec![(
            "end-to-end latency",
            0,
            spectrum_points(a),
            spectrum_points(b),
        )],
        true,
    );
    section(
        &mut page,
        "distribution",
        "Latency distribution",
        &figure(
            "Latency by percentile, A and B",
            &spectrum,
            "No request completed.",
        ),
    );
    page.push_str(super::PAGE_END);
    page
}

/// One overlaid quantity: its name, colour, and A's and B's points.
type Pair<'a> = (&'a str, usize, Vec<(f64, f64)>, Vec<(f64, f64)>);

/// A and B series for each `(name, colour, A points, B points)`, on shared axes.
fn overlay(y_desc: &str, parts: Vec<Pair<'_>>, spectrum: bool) -> Chart {
    let mut series = Vec::new();
    for (name, colour, pa, pb) in parts {
        series.push(Series {
            name: format!("{name} (A)"),
            points: pa,
            dashed: false,
            colour,
        });
        series.push(Series {
            name: format!("{name} (B)"),
            points: pb,
            dashed: true,
            colour,
        });
    }
    if spectrum {
        return spectrum_chart(series);
    }
    Chart {
        x_desc: "time since start (s)".into(),
        y_desc: y_desc.into(),
        style: Style::Lines,
        series,
        percentile_axis: false,
        y_top: None,
    }
}

fn table(a: &Report, b: &Report) -> String {
    let mut out = String::from("<div class=\"scroll\"><table>\n<thead><tr>");
    for h in ["section", "name", "metric", "A", "B", "Δ", "Δ%"] {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows(a, b) {
        out.push_str("<tr>");
        for c in cells(&row) {
            let _ = write!(out, "<td>{}</td>", escape(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
    out
}
