//! The rollout part of a report: the controller's decision log (every tick: phase, weights,
//! each check's value against its threshold, the tool's message) and the config generations
//! it made, in the JSON and as the terminal's decision table.

use crate::table::{Align, Look, Table, Tone};
use rollout::{Log, Outcome};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A rollout over the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutReport {
    /// `flagger` or `argo-rollouts`.
    pub tool: String,
    /// The service rolled out.
    pub host: String,
    /// The stable subset.
    pub stable: String,
    /// The canary subset.
    pub canary: String,
    /// `running`, `paused`, `promoted` or `rolled_back`, when the load ended.
    pub outcome: String,
    /// Every tick, in time order.
    pub decisions: Vec<DecisionReport>,
    /// The config generations the rollout made, in order.
    pub generations: Vec<GenerationReport>,
}

/// One tick.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionReport {
    /// When, seconds from the run start.
    pub at_s: f64,
    /// The phase after the tick, the tool's name for it.
    pub phase: String,
    /// The tool's canary weight after the tick (Flagger's `status.canaryWeight`, Argo's
    /// current `setWeight`).
    pub canary_weight: u32,
    /// Flagger: failed checks so far in the run (`null` for Argo).
    pub failed_checks: Option<u32>,
    /// Argo: the index of the current step (`null` for Flagger).
    pub step: Option<u32>,
    /// Flagger: A/B or blue/green iterations so far (`null` for Argo).
    pub iterations: Option<u32>,
    /// Each check made on the tick.
    pub checks: Vec<CheckReport>,
    /// What the twin routes after the tick.
    pub routing: RoutingReport,
    /// What happened, as the tool logs it.
    pub message: String,
}

/// One metric's check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckReport {
    /// The metric.
    pub metric: String,
    /// Its value; `null` when the window held no traffic.
    pub value: Option<f64>,
    /// The threshold (`min 99`, `result[0] >= 0.95`).
    pub against: String,
    /// `pass` / `fail` (Flagger) or the measurement's phase (Argo).
    pub verdict: String,
}

/// A routing of the host's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingReport {
    /// Percent to the canary subset (of the matched requests, with `matched_only`).
    pub canary_weight: u32,
    /// Percent mirrored to the canary subset, or `null`.
    pub mirror: Option<u32>,
    /// A/B testing: only requests matching the analysis' `match` are split.
    pub matched_only: bool,
}

/// A config generation the rollout made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationReport {
    /// Its number (0 is the scenario's mesh).
    pub number: u32,
    /// When it was made, seconds (each proxy receives it after its push delay).
    pub at_s: f64,
    /// The routing it stands for.
    pub routing: RoutingReport,
}

fn routing(r: &rollout::Routing) -> RoutingReport {
    RoutingReport {
        canary_weight: r.canary_weight,
        mirror: r.mirror,
        matched_only: r.matched_only,
    }
}

impl RolloutReport {
    /// The report of `log`.
    pub fn new(log: &Log) -> RolloutReport {
        let flagger = log.tool == "flagger";
        RolloutReport {
            tool: log.tool.to_owned(),
            host: log.host.clone(),
            stable: log.stable.clone(),
            canary: log.canary.clone(),
            outcome: match log.outcome {
                Outcome::Running => "running",
                Outcome::Paused => "paused",
                Outcome::Promoted => "promoted",
                Outcome::RolledBack => "rolled_back",
            }
            .to_owned(),
            decisions: (log.decisions.iter())
                .map(|d| DecisionReport {
                    at_s: d.at.0 as f64 / 1e9,
                    phase: d.phase.to_owned(),
                    canary_weight: d.canary_weight,
                    failed_checks: flagger.then_some(d.counter),
                    step: (!flagger).then_some(d.counter),
                    iterations: flagger.then_some(d.iterations),
                    checks: (d.checks.iter())
                        .map(|c| CheckReport {
                            metric: c.metric.clone(),
                            // Rounded so the text form stays short and stable.
                            value: c.value.map(|v| (v * 1e6).round() / 1e6),
                            against: c.against.clone(),
                            verdict: c.verdict.clone(),
                        })
                        .collect(),
                    routing: routing(&d.routing),
                    message: d.message.clone(),
                })
                .collect(),
            generations: (log.generations.iter())
                .map(|g| GenerationReport {
                    number: g.number,
                    at_s: g.at.0 as f64 / 1e9,
                    routing: routing(&g.routing),
                })
                .collect(),
        }
    }
}

/// The terminal's decision table.
pub fn text(r: &RolloutReport, look: &Look) -> String {
    let mut out = String::new();
    let outcome = match r.outcome.as_str() {
        "promoted" => look.paint("promoted", Tone::Good),
        "rolled_back" => look.paint("rolled back", Tone::Bad),
        other => look.paint(other, Tone::Warn),
    };
    let title = format!(
        "rollout ({}) of {}: {} → {}",
        r.tool, r.host, r.stable, r.canary
    );
    let _ = writeln!(out, "\n{}: {outcome}", look.paint(&title, Tone::Strong));
    let flagger = r.tool == "flagger";
    let mut t = Table::new(1)
        .column("time s", Align::Right, 6)
        .column("phase", Align::Left, 0)
        .column("canary", Align::Right, 6)
        .column(if flagger { "failed" } else { "step" }, Align::Right, 6)
        .column("checks", Align::Left, 0)
        .column("event", Align::Left, 0);
    for d in &r.decisions {
        let checks: Vec<String> = (d.checks.iter())
            .map(|c| {
                let value = c.value.map_or("no data".to_owned(), |v| format!("{v:.2}"));
                let mark = match c.verdict.as_str() {
                    "pass" | "Successful" => "✓",
                    _ => "✗",
                };
                format!("{} {value} {mark}", c.metric)
            })
            .collect();
        let failing =
            (d.checks.iter()).any(|c| !matches!(c.verdict.as_str(), "pass" | "Successful"));
        let phase_tone = match d.phase.as_str() {
            "Failed" | "Degraded" => Tone::Bad,
            "Succeeded" | "Healthy" => Tone::Good,
            "Paused" => Tone::Warn,
            _ => Tone::Plain,
        };
        let mut weight = format!("{}%", d.routing.canary_weight);
        if let Some(m) = d.routing.mirror {
            weight = format!("{weight}+m{m}");
        }
        if d.routing.matched_only {
            weight = format!("{weight} matched");
        }
        t.toned_row([
            (crate::json::trim_decimals(d.at_s, 3), Tone::Plain),
            (d.phase.clone(), phase_tone),
            (weight, Tone::Plain),
            (
                d.failed_checks.or(d.step).unwrap_or(0).to_string(),
                Tone::Plain,
            ),
            (
                checks.join(", "),
                if failing { Tone::Bad } else { Tone::Plain },
            ),
            (d.message.clone(), Tone::Plain),
        ]);
    }
    out.push_str(&t.render(look));
    out
}
