//! The rollout section of the HTML report: the canary's weight over time as the controller
//! set it (with the mirror percentage while mirroring), each of the host's versions' share of
//! its traffic as it actually moved (after the push delays), and the decision log.

use super::chart::{Chart, Series, Style};
use super::{escape, figure, series, tables, Windows};
use crate::json::Report;
use crate::rollout::RolloutReport;

/// The section's body.
pub(super) fn section(report: &Report, r: &RolloutReport, w: &Windows<'_>) -> String {
    let mut out = format!(
        "<p class=\"note\">{} rollout of <b>{}</b> from subset <b>{}</b> to <b>{}</b>: \
         <b>{}</b>. Each decision is made at a controller tick; each proxy receives the \
         config it implies after its own push delay. Mirrored copies are not traffic \
         shares: the mirror table counts them.</p>\n",
        escape(&r.tool),
        escape(&r.host),
        escape(&r.stable),
        escape(&r.canary),
        escape(&r.outcome.replace('_', " "))
    );
    out.push_str(&figure(
        "Canary weight set by the controller",
        &weights(report, r),
        "The controller never routed to the canary.",
    ));
    out.push_str(&figure(
        &format!(
            "Share of {}'s traffic by version, as it reached the instances",
            r.host
        ),
        &shares(w, &r.host),
        "No request reached the host.",
    ));
    out.push_str(&decisions(r));
    out
}

/// Step lines from (time, value) changes, held from 0 to `end`.
fn steps(changes: impl Iterator<Item = (f64, f64)>, end: f64) -> Vec<(f64, f64)> {
    let mut points = vec![(0.0, 0.0)];
    for (t, v) in changes {
        let held = points.last().map_or(0.0, |p| p.1);
        if v != held {
            points.push((t, held));
            points.push((t, v));
        }
    }
    let last = points.last().map_or(0.0, |p| p.1);
    points.push((end, last));
    points
}

fn weights(report: &Report, r: &RolloutReport) -> Chart {
    let end = report.duration_s;
    let routed = steps(
        (r.decisions.iter()).map(|d| (d.at_s, f64::from(d.routing.canary_weight))),
        end,
    );
    let name = match r.decisions.iter().any(|d| d.routing.matched_only) {
        true => "routed to the canary subset (% of the matched requests)",
        false => "routed to the canary subset (%)",
    };
    let mut lines = vec![series(name, 0, routed)];
    let status = steps(
        (r.decisions.iter()).map(|d| (d.at_s, f64::from(d.canary_weight))),
        end,
    );
    if status != lines[0].points {
        let mut s = series(&format!("{}'s own canary weight (%)", r.tool), 1, status);
        s.dashed = true;
        lines.push(s);
    }
    if r.decisions.iter().any(|d| d.routing.mirror.is_some()) {
        let mirror = steps(
            (r.decisions.iter()).map(|d| (d.at_s, f64::from(d.routing.mirror.unwrap_or(0)))),
            end,
        );
        let mut s = series("mirrored to the canary (%)", 2, mirror);
        s.dashed = true;
        lines.push(s);
    }
    Chart {
        x_desc: "time since start (s)".into(),
        y_desc: "weight (%)".into(),
        style: Style::Lines,
        series: lines,
        percentile_axis: false,
        y_top: Some(100.0),
    }
}

/// Each `host/version`'s percent of the host's hops per point, stacked.
fn shares(w: &Windows<'_>, host: &str) -> Chart {
    let prefix = format!("{host}/");
    let mut versions: Vec<&str> = (w.report.timeseries.iter())
        .flat_map(|x| x.by_destination.keys())
        .filter(|d| d.starts_with(&prefix))
        .map(String::as_str)
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let total = |c: &[crate::json::WindowReport]| -> u64 {
        (c.iter().flat_map(|x| x.by_destination.iter()))
            .filter(|(d, _)| d.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum()
    };
    let lines: Vec<Series> = (versions.iter().enumerate())
        .map(|(i, v)| {
            let points = w.points(|c| {
                let mine: u64 = c.iter().filter_map(|x| x.by_destination.get(*v)).sum();
                100.0 * mine as f64 / total(c).max(1) as f64
            });
            series(v, i, points)
        })
        .collect();
    Chart {
        x_desc: "time since start (s)".into(),
        y_desc: "share of the host's hops (%)".into(),
        style: Style::Stacked,
        series: lines,
        percentile_axis: false,
        y_top: Some(100.0),
    }
}

fn decisions(r: &RolloutReport) -> String {
    let flagger = r.tool == "flagger";
    let header = [
        "time (s)",
        "phase",
        "canary weight",
        "routed",
        if flagger { "failed checks" } else { "step" },
        "checks",
        "event",
    ];
    let rows: Vec<Vec<String>> = (r.decisions.iter())
        .map(|d| {
            let checks: Vec<String> = (d.checks.iter())
                .map(|c| {
                    let value = c.value.map_or("no data".into(), super::chart::trim);
                    format!(
                        "{}: {} ({}) {}",
                        escape(&c.metric),
                        value,
                        escape(&c.against),
                        escape(&c.verdict)
                    )
                })
                .collect();
            let mut routed = format!("{} %", d.routing.canary_weight);
            if let Some(m) = d.routing.mirror {
                routed.push_str(&format!(", mirror {m} %"));
            }
            if d.routing.matched_only {
                routed.push_str(" of matched");
            }
            vec![
                super::chart::trim(d.at_s),
                escape(&d.phase),
                d.canary_weight.to_string(),
                routed,
                d.failed_checks.or(d.step).unwrap_or(0).to_string(),
                checks.join("<br>"),
                escape(&d.message),
            ]
        })
        .collect();
    format!(
        "<h3>Decisions</h3>\n{}",
        tables::table(&header, &rows, &[1, 5, 6])
    )
}
