//! The sweep page (`sweep.html`): for each metric, its mean against the first swept setting
//! with the spread across seeds (a band from the lowest to the highest run, and each run as a
//! dot), one line per combination of the other settings; then the figures in a table.

use super::chart::{colour, trim};
use super::{escape, legend, page_start, section, tables, PAGE_END};
use crate::sweep::{Spread, Sweep};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write;

/// One line of a spread chart: a combination of the other settings.
struct Line {
    name: String,
    colour: usize,
    /// Per value of the first setting: (x, spread, each run's value).
    points: Vec<(f64, Spread, Vec<f64>)>,
}

/// The sweep page.
pub fn render_sweep(sweep: &Sweep) -> String {
    let plan = &sweep.plan;
    let title = format!("meshtwin sweep: {}", plan.scenario);
    let mut page = page_start(&title);
    let axes: Vec<String> = plan
        .axes
        .iter()
        .map(|a| format!("{} = {}", a.path, a.values.join(", ")))
        .collect();
    let _ = write!(
        page,
        "<h1>{}</h1>\n<p class=\"run\">{} point(s) × {} seed(s) = {} simulated runs · seeds {} · \
         {}</p>\n",
        escape(&title),
        plan.points(),
        plan.seeds.len(),
        plan.runs(),
        escape(&seed_list(&plan.seeds)),
        escape(&axes.join(" · "))
    );
    for (i, metric) in plan.metrics.iter().enumerate() {
        let body = metric_section(sweep, metric);
        section(&mut page, &format!("metric-{i}"), metric, &body);
    }
    page.push_str(PAGE_END);
    page
}

/// `1–10` for consecutive seeds, else the list.
fn seed_list(seeds: &[u64]) -> String {
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if seeds.windows(2).all(|w| w[1] == w[0] + 1) && a != b => {
            format!("{a}–{b}")
        }
        _ => seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A metric's chart and table.
fn metric_section(sweep: &Sweep, metric: &str) -> String {
    let plan = &sweep.plan;
    let Some(first) = plan.axes.first() else {
        return "<p class=\"empty\">No setting swept.</p>\n".into();
    };
    let numeric: Option<Vec<f64>> = first.values.iter().map(|v| v.parse().ok()).collect();
    let x_of = |i: usize| numeric.as_ref().map_or(i as f64, |xs| xs[i]);
    let mut lines: Vec<Line> = Vec::new();
    for p in &sweep.points {
        let (Some(spread), Some(x_value)) = (p.metrics.get(metric), p.values.first()) else {
            continue;
        };
        let Some(x_index) = first.values.iter().position(|v| v == x_value) else {
            continue;
        };
        let rest: Vec<String> = (plan.axes.iter().zip(&p.values))
            .skip(1)
            .filter(|(a, _)| a.values.len() > 1)
            .map(|(a, v)| format!("{} = {v}", short(&a.path)))
            .collect();
        let name = if rest.is_empty() {
            metric.to_owned()
        } else {
            rest.join(", ")
        };
        let runs: Vec<f64> = (sweep.runs.iter())
            .filter(|r| r.point == p.point)
            .filter_map(|r| r.metrics.get(metric).copied().flatten())
            .collect();
        let at = match lines.iter().position(|l| l.name == name) {
            Some(at) => at,
            None => {
                lines.push(Line {
                    name,
                    colour: lines.len(),
                    points: Vec::new(),
                });
                lines.len() - 1
            }
        };
        if spread.mean.is_some() {
            lines[at].points.push((x_of(x_index), spread.clone(), runs));
        }
    }
    let labels = numeric.is_none().then_some(first.values.as_slice());
    let mut out = format!(
        "<figure>\n<figcaption>{} against {} (mean; band: lowest to highest of the seeds; \
         dots: each run)</figcaption>\n",
        escape(metric),
        escape(&first.path)
    );
    out.push_str(&svg(&first.path, metric, labels, &lines));
    out.push_str(&legend(
        lines.iter().map(|l| (l.name.as_str(), l.colour, false)),
    ));
    out.push_str("</figure>\n");
    out.push_str(&table(sweep, metric));
    out
}

/// The last two steps of a path, enough to tell settings apart in a legend.
fn short(path: &str) -> String {
    let parts: Vec<&str> = path.rsplitn(3, '.').collect();
    match parts.as_slice() {
        [last, before, _] => format!("{before}.{last}"),
        _ => path.to_owned(),
    }
}

/// The metric's figures per point.
fn table(sweep: &Sweep, metric: &str) -> String {
    let mut header: Vec<&str> = sweep.plan.axes.iter().map(|a| a.path.as_str()).collect();
    header.extend(["runs", "mean", "sd", "min", "median", "max"]);
    let cell = |v: Option<f64>| v.map_or("–".to_owned(), trim);
    let rows: Vec<Vec<String>> = (sweep.points.iter())
        .filter_map(|p| {
            let s = p.metrics.get(metric)?;
            let mut row: Vec<String> = p.values.iter().map(|v| escape(v)).collect();
            row.push(s.n.to_string());
            row.extend([s.mean, s.sd, s.min, s.median, s.max].map(cell));
            Some(row)
        })
        .collect();
    tables::table(&header, &rows, &[])
}

/// The chart as inline SVG; `labels` names the x positions 0, 1… of a setting whose values
/// are not numbers.
fn svg(x_desc: &str, y_desc: &str, labels: Option<&[String]>, lines: &[Line]) -> String {
    if lines.iter().all(|l| l.points.is_empty()) {
        return "<p class=\"empty\">No run has this metric.</p>".to_owned();
    }
    super::chart::render(|root| draw(root, x_desc, y_desc, labels, lines))
}

/// A range around `lo..hi` with a margin, so points do not sit on the frame.
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.08
    } else {
        (hi.abs() * 0.05).max(0.5)
    };
    (lo - pad)..(hi + pad)
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    x_desc: &str,
    y_desc: &str,
    labels: Option<&[String]>,
    lines: &[Line],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let points = || lines.iter().flat_map(|l| l.points.iter());
    let xs = || points().map(|p| p.0);
    let lows = points().filter_map(|p| p.1.min);
    let highs = points().filter_map(|p| p.1.max);
    let y = padded(
        lows.fold(f64::MAX, f64::min),
        highs.fold(f64::MIN, f64::max),
    );
    let x = match labels {
        Some(l) => -0.5..(l.len() as f64 - 0.5),
        None => padded(xs().fold(f64::MAX, f64::min), xs().fold(f64::MIN, f64::max)),
    };
    // Whole-number settings (instances, attempts) get ticks at whole numbers only.
    let whole = labels.is_none() && xs().all(|x| x.fract() == 0.0);
    let is_whole = |v: &f64| (v - v.round()).abs() < 1e-6;
    let label = |v: &f64| match labels {
        Some(l) if is_whole(v) && *v >= 0.0 => {
            l.get(v.round() as usize).cloned().unwrap_or_default()
        }
        Some(_) => String::new(),
        None if whole && !is_whole(v) => String::new(),
        None => trim(*v),
    };
    let mut c = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    let mut mesh = c.configure_mesh();
    if let Some(l) = labels {
        mesh.x_labels(l.len() + 1);
    } else if whole {
        let span = xs().fold(f64::MIN, f64::max) - xs().fold(f64::MAX, f64::min);
        mesh.x_labels((span as usize + 1).clamp(2, 12));
    }
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&label)
        .y_label_formatter(&|v: &f64| trim(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    for l in lines {
        let col = colour(l.colour);
        let band: Vec<(f64, f64)> = (l.points.iter())
            .filter_map(|(x, s, _)| Some((*x, s.max?)))
            .chain((l.points.iter().rev()).filter_map(|(x, s, _)| Some((*x, s.min?))))
            .collect();
        c.draw_series(std::iter::once(Polygon::new(band, col.mix(0.15))))
            .map_err(|e| e.to_string())?;
        let runs = (l.points.iter()).flat_map(|(x, _, runs)| runs.iter().map(move |v| (*x, *v)));
        c.draw_series(runs.map(|p| Circle::new(p, 2, col.mix(0.55).filled())))
            .map_err(|e| e.to_string())?;
        let means: Vec<(f64, f64)> = (l.points.iter())
            .filter_map(|(x, s, _)| Some((*x, s.mean?)))
            .collect();
        c.draw_series(LineSeries::new(means.iter().copied(), col.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        c.draw_series(means.iter().map(|p| Circle::new(*p, 4, col.filled())))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
