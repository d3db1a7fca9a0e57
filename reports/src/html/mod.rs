//! The HTML report: one self-contained page made from a JSON `Report` — inline CSS and SVG
//! charts (`chart`), no script, no external URL — so it opens anywhere, offline, and the same
//! report gives the same bytes.

mod chart;
mod compare;
mod rollout;
mod sweep;
mod tables;

pub use compare::render_compare;
pub use sweep::render_sweep;

use crate::json::{Report, WindowReport};
use chart::{Chart, Series, Style};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Most points a time chart draws; longer runs merge neighbouring windows (counts summed,
/// latency percentiles the worst window's), keeping the page small.
pub const MAX_POINTS: usize = 600;

/// Most series a chart draws by name; the rest are summed into `other`.
const MAX_SERIES: usize = 9;

/// The page up to its body's content: doctype, title, the inline style.
pub(super) fn page_start(title: &str) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
        escape(title),
        STYLE
    );
    page
}

/// The end of every page.
pub(super) const PAGE_END: &str = "</main>\n</body>\n</html>\n";

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let title = format!("meshtwin: {}", report.scenario);
    let mut page = page_start(&title);
    let _ = write!(
        page,
        "<h1>{}</h1>\n{}",
        escape(&title),
        tables::run_line(report)
    );
    section(&mut page, "summary", "Summary", &tables::summary(report));
    let series = Windows::of(report);
    if let Some(r) = &report.rollout {
        section(
            &mut page,
            "rollout",
            "Rollout",
            &rollout::section(report, r, &series),
        );
    }
    section(&mut page, "latency", "Latency over time", &latency(&series));
    section(
        &mut page,
        "split",
        "Requests per second by destination",
        &split(&series),
    );
    section(&mut page, "errors", "Errors over time", &errors(&series));
    section(
        &mut page,
        "resilience",
        "Retries, overflows and ejections over time",
        &resilience(&series),
    );
    section(
        &mut page,
        "distribution",
        "Latency distribution",
        &spectrum(report),
    );
    section(
        &mut page,
        "instances",
        "Instances",
        &tables::instances(report),
    );
    section(
        &mut page,
        "tables",
        "Routes, destinations and clusters",
        &tables::breakdowns(report),
    );
    page.push_str(PAGE_END);
    page
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#222;background:#fafafa}\
main{max-width:1100px;margin:0 auto;padding:16px 20px 48px}\
h1{font-size:1.5rem;margin:8px 0 4px}h2{font-size:1.2rem;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}\
h3{font-size:1rem;margin:18px 0 6px}\
p.run{color:#555;margin:0 0 8px}p.note{color:#555;font-size:.9rem;margin:4px 0}p.empty{color:#777;font-style:italic}\
figure{margin:8px 0 16px;background:#fff;border:1px solid #e3e3e3;border-radius:4px;padding:8px}\
figure svg{width:100%;height:auto;display:block}figcaption{font-size:.95rem;font-weight:600;margin:0 0 4px}\
ul.legend{list-style:none;padding:0;margin:6px 0 0;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:.9rem}\
ul.legend li{display:flex;align-items:center;gap:6px}ul.legend span{display:inline-block;width:14px;height:10px;border-radius:2px}\
ul.legend span.dashed{height:0;border-top:3px dashed}\
table{border-collapse:collapse;font-size:.88rem;background:#fff;margin:4px 0 12px;width:100%}\
th,td{border:1px solid #e3e3e3;padding:3px 8px;text-align:right;white-space:nowrap}\
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left;white-space:normal;overflow-wrap:anywhere;min-width:10em}\
td.list{text-align:left;white-space:normal;min-width:9em}\
.scroll{overflow-x:auto}";

pub(super) fn section(page: &mut String, id: &str, title: &str, body: &str) {
    let _ = write!(
        page,
        "<section id=\"{id}\">\n<h2>{}</h2>\n{body}</section>\n",
        escape(title)
    );
}

/// `s` with `&`, `<`, `>` and `"` escaped, for text and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A chart in a figure, with its caption and an HTML legend below it; `empty` in its place
/// when every value is zero.
fn figure(caption: &str, chart: &Chart, empty: &str) -> String {
    let mut out = format!("<figure>\n<figcaption>{}</figcaption>\n", escape(caption));
    if chart
        .series
        .iter()
        .all(|s| s.points.iter().all(|p| p.1 == 0.0))
    {
        let _ = write!(out, "<p class=\"empty\">{}</p>\n</figure>\n", escape(empty));
        return out;
    }
    out.push_str(&chart::svg(chart));
    let entries = chart
        .series
        .iter()
        .map(|s| (s.name.as_str(), s.colour, s.dashed));
    out.push_str(&legend(entries));
    out.push_str("</figure>\n");
    out
}

/// A chart's legend in HTML: (name, palette index, dashed) per series.
fn legend<'a>(entries: impl Iterator<Item = (&'a str, usize, bool)>) -> String {
    let mut out = String::from("\n<ul class=\"legend\">");
    for (name, colour, dashed) in entries {
        let class = if dashed { " class=\"dashed\"" } else { "" };
        let colour = chart::css_colour(colour);
        let swatch = if dashed {
            format!("border-color:{colour}")
        } else {
            format!("background:{colour}")
        };
        let _ = write!(
            out,
            "<li><span{class} style=\"{swatch}\"></span>{}</li>",
            escape(name)
        );
    }
    out.push_str("</ul>\n");
    out
}

/// The report's windows, merged in groups of `group` when there are more than `MAX_POINTS`.
struct Windows<'a> {
    report: &'a Report,
    /// Windows per point.
    group: usize,
}

impl<'a> Windows<'a> {
    fn of(report: &'a Report) -> Windows<'a> {
        let n = report.timeseries.len();
        Windows {
            report,
            group: n.div_ceil(MAX_POINTS).max(1),
        }
    }

    /// Seconds a point covers.
    fn span_s(&self) -> f64 {
        self.report.window_s * self.group as f64
    }

    fn chunks(&self) -> impl Iterator<Item = &'a [WindowReport]> {
        self.report.timeseries.chunks(self.group)
    }

    /// One point per group: its start time and `f` of its windows.
    fn points(&self, f: impl Fn(&[WindowReport]) -> f64) -> Vec<(f64, f64)> {
        self.chunks().map(|c| (c[0].start_s, f(c))).collect()
    }

    /// A latency percentile per group that had requests (a window without any has no
    /// latency, not a latency of 0): the worst of its windows'.
    fn latency(&self, f: fn(&WindowReport) -> f64) -> Vec<(f64, f64)> {
        self.chunks()
            .filter(|c| c.iter().any(|w| w.requests > 0))
            .map(|c| {
                let busy = c.iter().filter(|w| w.requests > 0);
                (c[0].start_s, busy.map(f).fold(0.0, f64::max))
            })
            .collect()
    }

    /// A per-second rate of a count per group.
    fn rate(&self, count: impl Fn(&WindowReport) -> u64) -> Vec<(f64, f64)> {
        let span = self.span_s();
        self.points(|c| c.iter().map(&count).sum::<u64>() as f64 / span)
    }

    /// A note saying how many seconds a point covers, when windows were merged.
    fn note(&self) -> String {
        if self.group == 1 {
            format!(
                "<p class=\"note\">One point per {} s window.</p>\n",
                chart::trim(self.report.window_s)
            )
        } else {
            format!(
                "<p class=\"note\">One point per {} s ({} windows of {} s merged: counts \
                 summed, latency the worst window's).</p>\n",
                chart::trim(self.span_s()),
                self.group,
                chart::trim(self.report.window_s)
            )
        }
    }
}

fn series(name: &str, colour: usize, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.to_owned(),
        points,
        dashed: false,
        colour,
    }
}

fn time_chart(y_desc: &str, style: Style, series: Vec<Series>) -> Chart {
    Chart {
        x_desc: "time since start (s)".into(),
        y_desc: y_desc.into(),
        style,
        series,
        percentile_axis: false,
        y_top: None,
    }
}

/// A line chart over time in a figure, after the note on what a point covers.
fn time_figure(
    w: &Windows<'_>,
    y_desc: &str,
    lines: Vec<Series>,
    caption: &str,
    empty: &str,
) -> String {
    let mut out = w.note();
    out.push_str(&figure(
        caption,
        &time_chart(y_desc, Style::Lines, lines),
        empty,
    ));
    out
}

fn latency(w: &Windows<'_>) -> String {
    let lines = vec![
        series("p50", 0, w.latency(|x| x.p50_ms)),
        series("p90", 1, w.latency(|x| x.p90_ms)),
        series("p99", 3, w.latency(|x| x.p99_ms)),
    ];
    let caption = "End-to-end latency percentiles of the requests started in each window";
    time_figure(w, "latency (ms)", lines, caption, "No request completed.")
}

/// Named counts per window as stacked or line series: the `MAX_SERIES` largest by total,
/// the rest summed into `other`.
fn named_series(
    w: &Windows<'_>,
    counts: impl Fn(&WindowReport) -> &BTreeMap<String, u64>,
    keep: impl Fn(&str) -> bool,
) -> Vec<Series> {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for win in &w.report.timeseries {
        for (name, n) in counts(win) {
            if keep(name) {
                *totals.entry(name.as_str()).or_default() += n;
            }
        }
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = {
        let mut v: Vec<&str> = ranked.iter().take(MAX_SERIES).map(|r| r.0).collect();
        v.sort_unstable();
        v
    };
    let mut out: Vec<Series> = shown
        .iter()
        .enumerate()
        .map(|(i, name)| {
            series(
                name,
                i,
                w.rate(|x| counts(x).get(*name).copied().unwrap_or(0)),
            )
        })
        .collect();
    if ranked.len() > MAX_SERIES {
        let rest = w.rate(|x| {
            counts(x)
                .iter()
                .filter(|(n, _)| keep(n) && !shown.contains(&n.as_str()))
                .map(|(_, c)| c)
                .sum()
        });
        out.push(series("other", 7, rest));
    }
    out
}

fn split(w: &Windows<'_>) -> String {
    let chart = time_chart(
        "requests/s (hops)",
        Style::Stacked,
        named_series(w, |x| &x.by_destination, |_| true),
    );
    let mut out = w.note();
    out.push_str(
        "<p class=\"note\">Every hop counts, at any proxy, by the time it started: \
        each band is one destination's share of the traffic.</p>\n",
    );
    out.push_str(&figure(
        "Requests per second by destination (stacked)",
        &chart,
        "No request reached a destination.",
    ));
    out
}

fn errors(w: &Windows<'_>) -> String {
    let failed =
        |status: &str| status == "0" || status.as_bytes().first().is_some_and(|b| *b >= b'4');
    let by_status = time_chart(
        "responses/s",
        Style::Lines,
        named_series(w, |x| &x.by_status, failed),
    );
    let by_flag = time_chart(
        "responses/s",
        Style::Lines,
        named_series(w, |x| &x.by_flag, |_| true),
    );
    let mut out = w.note();
    out.push_str(&figure(
        "End-to-end responses by status, 4xx, 5xx and no response (0)",
        &by_status,
        "No request failed.",
    ));
    out.push_str(&figure(
        "End-to-end responses by Envoy response flag",
        &by_flag,
        "No response carried a flag.",
    ));
    out
}

fn resilience(w: &Windows<'_>) -> String {
    let lines = vec![
        series("retries", 0, w.rate(|x| x.retries)),
        series("retry overflows", 1, w.rate(|x| x.retry_overflows)),
        series("breaker overflows (503 UO)", 3, w.rate(|x| x.overflows)),
        series("ejections", 4, w.rate(|x| x.ejections)),
    ];
    let caption = "Resilience events at every proxy, by the time they happened";
    time_figure(
        w,
        "events/s",
        lines,
        caption,
        "No retry, overflow or ejection in this run.",
    )
}

/// The report's percentile spectrum as points on the `1/(1-p)` axis (100 % has no place on it).
fn spectrum_points(report: &Report) -> Vec<(f64, f64)> {
    report
        .latency_spectrum
        .iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| (1.0 / (1.0 - p.percentile / 100.0), p.value_ms))
        .collect()
}

/// A latency-by-percentile chart of `series`.
fn spectrum_chart(series: Vec<Series>) -> Chart {
    Chart {
        x_desc: "percentile (log scale of 1/(1-p))".into(),
        y_desc: "latency (ms)".into(),
        style: Style::Lines,
        series,
        percentile_axis: true,
        y_top: None,
    }
}

fn spectrum(report: &Report) -> String {
    let chart = spectrum_chart(vec![series(
        "end-to-end latency",
        0,
        spectrum_points(report),
    )]);
    let mut out = String::from(
        "<p class=\"note\">HdrHistogram's percentile spectrum of every end-to-end request: \
         the tail spreads out to the right.</p>\n",
    );
    out.push_str(&figure(
        "Latency by percentile",
        &chart,
        "No request completed.",
    ));
    out
}
