//! Flagger's scheduler (`pkg/controller/scheduler.go`, `advanceCanary`), one tick per
//! `analysis.interval`, for the Istio provider: canary (linear `step_weight` or explicit
//! `step_weights`, optionally a mirror tick first), A/B testing and blue/green.
//!
//! Followed as the code does it, quirks included:
//! - the first tick after the new revision only sets `Progressing`; the next one runs no
//!   metric check (pre-rollout hooks only) and makes the first weight step;
//! - a failing check holds the weight and adds to `failed_checks`, which is never reset during
//!   a run: rollback comes when it reaches `threshold`, consecutive or not;
//! - a metric with no data fails its check;
//! - the weight may overshoot `max_weight` (the test is `weight < max_weight` before adding);
//! - promotion copies the canary to the primary: from then on the twin routes everything to
//!   the new version (the canary subset stands for the updated primary), while the log shows
//!   Flagger's own primary/canary weights.

use crate::decision::{Check, Decision, Outcome, Routing};
use crate::probe::MetricSource;
use crate::spec::{FlaggerAnalysis, FlaggerMetric, Query, Side};
use proxy_engine::{Nanos, Time};

/// Flagger's canary phases (`pkg/apis/flagger/v1beta1/status.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Initialized,
    Progressing,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Initialized => "Initialized",
            Phase::Progressing => "Progressing",
            Phase::Promoting => "Promoting",
            Phase::Finalising => "Finalising",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// One Flagger `Canary` in progress.
#[derive(Clone, Debug)]
pub struct Canary {
    a: FlaggerAnalysis,
    target: String,
    interval: Nanos,
    threshold: u32,
    max_weight: u32,
    phase: Phase,
    canary_weight: u32,
    primary_weight: u32,
    mirrored: bool,
    iterations: u32,
    failed_checks: u32,
    /// The canary's spec was copied to the primary: the new version serves the primary's share.
    promoted: bool,
    next: Option<Time>,
}

/// Flagger's strategy choice (`Canary.DeploymentStrategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Canary,
    AbTesting,
    BlueGreen,
}

impl Canary {
    /// A canary of `target` whose new revision is detected at `start`.
    pub fn new(a: &FlaggerAnalysis, target: &str, start: Time) -> Canary {
        // `GetAnalysisInterval`: under 10 s counts as 10 s.
        let interval = a.interval.max(Nanos::from_secs(10));
        let max_weight = match (a.step_weights.last(), a.max_weight) {
            (Some(last), _) => (*last).min(100),
            (None, w) if w > 0 => w,
            _ => 100,
        };
        Canary {
            a: a.clone(),
            target: target.to_owned(),
            interval,
            threshold: a.threshold.max(1),
            max_weight,
            phase: Phase::Initialized,
            canary_weight: 0,
            primary_weight: 100,
            mirrored: false,
            iterations: 0,
            failed_checks: 0,
            promoted: false,
            next: Some(start),
        }
    }

    fn kind(&self) -> Kind {
        match (self.a.matches.is_empty(), self.a.iterations > 0) {
            (false, true) => Kind::AbTesting,
            (_, true) => Kind::BlueGreen,
            _ => Kind::Canary,
        }
    }

    /// When the next tick is due (`None`: the run is over).
    pub fn next_tick(&self) -> Option<Time> {
        self.next
    }

    /// How the run stands.
    pub fn outcome(&self) -> Outcome {
        match self.phase {
            Phase::Succeeded => Outcome::Promoted,
            Phase::Failed => Outcome::RolledBack,
            _ => Outcome::Running,
        }
    }

    /// What the twin routes now.
    pub fn routing(&self) -> Routing {
        let matched_only = self.kind() == Kind::AbTesting && !self.promoted;
        Routing {
            canary_weight: if self.promoted {
                100
            } else {
                self.canary_weight
            },
            mirror: (self.mirrored && !self.promoted)
                .then_some(self.a.mirror_weight.unwrap_or(100)),
            matched_only,
        }
    }

    /// One scheduler tick at `now`.
    pub fn tick(&mut self, now: Time, source: &dyn MetricSource) -> Decision {
        self.next = Some(now + self.interval);
        let mut checks = Vec::new();
        let message = self.advance(now, source, &mut checks);
        if matches!(self.phase, Phase::Succeeded | Phase::Failed) {
            self.next = None;
        }
        Decision {
            at: now,
            phase: self.phase.name(),
            canary_weight: self.canary_weight,
            counter: self.failed_checks,
            iterations: self.iterations,
            checks,
            routing: self.routing(),
            message,
            scale_down: None,
        }
    }

    fn advance(&mut self, now: Time, source: &dyn MetricSource, checks: &mut Vec<Check>) -> String {
        let name = &self.target;
        match self.phase {
            Phase::Initialized => {
                // `checkCanaryStatus`: a new revision; the tick ends here.
                self.phase = Phase::Progressing;
                return format!("New revision detected! Scaling up {name}");
            }
            Phase::Promoting => return self.promotion_traffic_shift(),
            Phase::Finalising => {
                self.phase = Phase::Succeeded;
                return format!("Promotion completed! Scaling down {name}");
            }
            Phase::Succeeded | Phase::Failed => return String::new(),
            Phase::Progressing => {}
        }
        if self.failed_checks >= self.threshold {
            return self.rollback();
        }
        if self.canary_weight == 0 && self.iterations == 0 && !(self.a.mirror && self.mirrored) {
            // Pre-rollout hooks only (none in a twin): no metric check on this tick.
            let started = format!("Starting canary analysis for {name}");
            return match self.strategy_step() {
                Some(step) => format!("{started}; {step}"),
                None => started,
            };
        }
        if let Some(halt) = self.analysis(now, source, checks) {
            self.failed_checks += 1;
            return halt;
        }
        self.strategy_step().unwrap_or_default()
    }

    /// The strategy's move after a passing (or skipped) analysis.
    fn strategy_step(&mut self) -> Option<String> {
        let name = self.target.clone();
        match self.kind() {
            Kind::AbTesting => {
                if self.a.iterations > self.iterations {
                    self.set_weights(0, 100, false);
                    self.iterations += 1;
                    return Some(format!(
                        "Advance {name} canary iteration {}/{}",
                        self.iterations, self.a.iterations
                    ));
                }
                Some(self.promote())
            }
            Kind::BlueGreen => {
                if self.a.iterations > self.iterations {
                    let mut m = String::new();
                    if self.a.mirror && !self.mirrored {
                        self.set_weights(100, 0, true);
                        m = "Start traffic mirroring; ".into();
                    }
                    self.iterations += 1;
                    return Some(format!(
                        "{m}Advance {name} canary iteration {}/{}",
                        self.iterations, self.a.iterations
                    ));
                }
                if self.a.iterations == self.iterations {
                    self.set_weights(0, 100, false);
                    self.iterations += 1;
                    return Some(match self.a.mirror {
                        true => "Stop traffic mirroring and route all traffic to canary".into(),
                        false => "Routing all traffic to canary".into(),
                    });
                }
                Some(self.promote())
            }
            Kind::Canary => {
                let step = self.next_step_weight();
                if step == 0 {
                    return None;
                }
                if self.canary_weight < self.max_weight {
                    if self.a.mirror && self.canary_weight == 0 {
                        if !self.mirrored {
                            self.set_weights(100, 0, true);
                            return Some(format!("Running mirror step 100/0/true for {name}"));
                        }
                        self.set_weights(100 - step, step, false);
                    } else {
                        let primary = self.primary_weight.saturating_sub(step);
                        let canary = (self.canary_weight + step).min(100);
                        self.set_weights(primary, canary, false);
                    }
                    return Some(format!(
                        "Advance {name} canary weight {}",
                        self.canary_weight
                    ));
                }
                Some(self.promote())
            }
        }
    }

    /// `nextStepWeight`.
    fn next_step_weight(&self) -> u32 {
        let steps = &self.a.step_weights;
        if self.a.step_weight > 0 || steps.is_empty() {
            return self.a.step_weight;
        }
        let max_step = 100 - self.canary_weight.min(100);
        if max_step == 0 {
            return 1;
        }
        if self.canary_weight == 0 {
            return max_step.min(steps[0]);
        }
        for pair in steps.windows(2) {
            if pair[0] == self.canary_weight {
                return max_step.min(pair[1] - self.canary_weight);
            }
        }
        max_step
    }

    fn set_weights(&mut self, primary: u32, canary: u32, mirrored: bool) {
        self.primary_weight = primary;
        self.canary_weight = canary;
        self.mirrored = mirrored;
    }

    fn promote(&mut self) -> String {
        self.promoted = true;
        self.phase = Phase::Promoting;
        format!(
            "Copying {0} template spec to {0}-primary; phase Promoting",
            self.target
        )
    }

    /// `runPromotionTrafficShift`.
    fn promotion_traffic_shift(&mut self) -> String {
        let step = self.a.step_weight_promotion;
        if step == 0 {
            self.set_weights(100, 0, false);
            self.phase = Phase::Finalising;
            return "Routing all traffic to primary".into();
        }
        if self.canary_weight > 0 {
            let primary = (self.primary_weight + step).min(100);
            let canary = self.canary_weight.saturating_sub(step);
            self.set_weights(primary, canary, false);
            if primary == 100 {
                self.phase = Phase::Finalising;
            }
            return format!("Advance {} primary weight {primary}", self.target);
        }
        String::new()
    }

    fn rollback(&mut self) -> String {
        self.set_weights(100, 0, false);
        self.phase = Phase::Failed;
        format!(
            "Rolling back {} failed checks threshold reached {}",
            self.target, self.failed_checks
        )
    }

    /// `runAnalysis`: built-in metrics, then custom ones, each in order; the first failure
    /// halts advancement (its message returned).
    fn analysis(
        &self,
        now: Time,
        source: &dyn MetricSource,
        checks: &mut Vec<Check>,
    ) -> Option<String> {
        let builtin = |m: &&FlaggerMetric| builtin_query(&m.name).is_some();
        let ordered = (self.a.metrics.iter().filter(builtin))
            .chain(self.a.metrics.iter().filter(|m| !builtin(m)));
        for m in ordered {
            let Some(query) = builtin_query(&m.name).or(m.query.clone()) else {
                continue; // validated: a custom metric has a query
            };
            let window = source.window(Side::Canary, m.route.as_deref(), now, m.interval);
            let mut value = window.value(&query);
            if m.name == "request-duration" {
                // `time.Duration(int64(value)) * time.Millisecond`: whole milliseconds.
                value = value.map(f64::trunc);
            }
            let range = m.threshold_range;
            let against = match (range.min, range.max) {
                (Some(lo), Some(hi)) => format!("min {lo} max {hi}"),
                (Some(lo), None) => format!("min {lo}"),
                (None, Some(hi)) => format!("max {hi}"),
                (None, None) => String::new(),
            };
            let failed =
                match value {
                    None => {
                        Some(format!(
                    "Halt advancement no values found for {} metric {}: probably {} is not \
                     receiving traffic",
                    if builtin_query(&m.name).is_some() { "istio" } else { "custom" },
                    m.name,
                    self.target
                ))
                    }
                    Some(v) if range.min.is_some_and(|lo| v < lo) => Some(format!(
                        "Halt {} advancement {} {v:.2} < {}",
                        self.target,
                        m.name,
                        range.min.unwrap_or_default()
                    )),
                    Some(v) if range.max.is_some_and(|hi| v > hi) => Some(format!(
                        "Halt {} advancement {} {v:.2} > {}",
                        self.target,
                        m.name,
                        range.max.unwrap_or_default()
                    )),
                    Some(_) => None,
                };
            checks.push(Check {
                metric: m.name.clone(),
                value,
                against,
                verdict: if failed.is_some() { "fail" } else { "pass" }.into(),
            });
            if failed.is_some() {
                return failed;
            }
        }
        None
    }
}

fn builtin_query(name: &str) -> Option<Query> {
    match name {
        "request-success-rate" => Some(Query::SuccessRate),
        "request-duration" => Some(Query::LatencyMs(0.99)),
        _ => None,
    }
}
