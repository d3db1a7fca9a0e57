//! Argo Rollouts' analysis runs (`analysis/analysis.go`, `utils/evaluate/evaluate.go`): each
//! metric takes measurements on its own schedule, each measurement gets a verdict from the
//! conditions, and the metric's phase is assessed after every one.
//!
//! Followed as the code does it (where the docs' prose differs, the code wins):
//! - a metric with neither condition is Successful (the docs say Inconclusive);
//! - `failure_limit` is compared strictly: `failure_limit: 3` fails on the 4th failure;
//! - the failure, inconclusive and consecutive-error limits are checked in that order and a
//!   later one overrides: Error beats Inconclusive beats Failed;
//! - a measurement over no traffic is an Error (the query's empty result makes `result[0]`
//!   fail to evaluate), and only `consecutive_error_limit` (default 4) of those in a row end
//!   the metric;
//! - an unbounded metric runs until the run is terminated, which makes it Successful.

use crate::decision::Check;
use crate::probe::MetricSource;
use crate::spec::ArgoMetric;
use proxy_engine::Time;

/// A metric's or a run's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Done, passed.
    Successful,
    /// Still measuring.
    Running,
    /// Ended inconclusive (a human decides).
    Inconclusive,
    /// Ended by errors.
    Error,
    /// Ended failed.
    Failed,
}

impl Phase {
    /// Argo's name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Successful => "Successful",
            Phase::Running => "Running",
            Phase::Inconclusive => "Inconclusive",
            Phase::Error => "Error",
            Phase::Failed => "Failed",
        }
    }

    /// Done, one way or another.
    pub fn completed(self) -> bool {
        self != Phase::Running
    }
}

#[derive(Clone, Debug)]
struct MetricRun {
    spec: ArgoMetric,
    /// When the next measurement is due.
    next: Option<Time>,
    taken: u32,
    failed: u32,
    inconclusive: u32,
    consecutive_error: u32,
    consecutive_success: u32,
    phase: Phase,
    /// Why it ended.
    reason: String,
}

/// An analysis run in progress.
#[derive(Clone, Debug)]
pub struct AnalysisRun {
    metrics: Vec<MetricRun>,
}

impl AnalysisRun {
    /// A run started at `now`.
    pub fn start(metrics: &[ArgoMetric], now: Time) -> AnalysisRun {
        let metrics = (metrics.iter())
            .map(|m| {
                // An explicit `count: 0` never measures.
                let never = m.count == Some(0);
                MetricRun {
                    spec: m.clone(),
                    next: (!never).then_some(now + m.initial_delay),
                    taken: 0,
                    failed: 0,
                    inconclusive: 0,
                    consecutive_error: 0,
                    consecutive_success: 0,
                    phase: if never {
                        Phase::Successful
                    } else {
                        Phase::Running
                    },
                    reason: String::new(),
                }
            })
            .collect();
        AnalysisRun { metrics }
    }

    /// When the next measurement is due.
    pub fn next_due(&self) -> Option<Time> {
        (self.metrics.iter())
            .filter(|m| !m.phase.completed())
            .filter_map(|m| m.next)
            .min()
    }

    /// Takes the measurements due at `now`; returns them as checks.
    pub fn measure(&mut self, now: Time, source: &dyn MetricSource) -> Vec<Check> {
        let mut checks = Vec::new();
        for m in &mut self.metrics {
            if m.phase.completed() || m.next.is_none_or(|t| t > now) {
                continue;
            }
            checks.push(m.measure(now, source));
        }
        if self.terminating() {
            // Another metric ended the run: the unbounded ones are done.
            for m in &mut self.metrics {
                if !m.phase.completed() && m.spec.count.is_none() {
                    m.phase = Phase::Successful;
                    m.reason = "run terminated".into();
                }
            }
        }
        checks
    }

    /// A metric ended Failed, Error or Inconclusive (`IsTerminating`).
    fn terminating(&self) -> bool {
        (self.metrics.iter()).any(|m| m.phase.completed() && m.phase != Phase::Successful)
    }

    /// The run's phase: Running while a metric is (unless terminating), else the worst.
    pub fn phase(&self) -> Phase {
        let worst = (self.metrics.iter())
            .filter(|m| m.phase.completed())
            .map(|m| m.phase)
            .max()
            .unwrap_or(Phase::Running);
        if self.terminating() || self.metrics.iter().all(|m| m.phase.completed()) {
            worst
        } else {
            Phase::Running
        }
    }

    /// Ends the run from outside (full promotion, abort): running metrics are Successful.
    pub fn terminate(&mut self) {
        for m in &mut self.metrics {
            if !m.phase.completed() {
                m.phase = Phase::Successful;
                m.reason = "run terminated".into();
            }
        }
    }

    /// Why the run ended as it did: the worst metric's reason.
    pub fn reason(&self) -> String {
        let phase = self.phase();
        (self.metrics.iter())
            .find(|m| m.phase == phase)
            .map(|m| {
                format!(
                    "metric \"{}\" assessed {}: {}",
                    m.spec.name,
                    phase.name(),
                    m.reason
                )
            })
            .unwrap_or_default()
    }
}

impl MetricRun {
    fn measure(&mut self, now: Time, source: &dyn MetricSource) -> Check {
        let spec = &self.spec;
        let value = source
            .window(spec.version, spec.route.as_deref(), now, spec.window())
            .value(&spec.query);
        let verdict = match value {
            None => Phase::Error,
            Some(v) => evaluate(spec, v),
        };
        self.taken += 1;
        match verdict {
            Phase::Error => {
                self.consecutive_error += 1;
                self.consecutive_success = 0;
            }
            Phase::Failed => {
                self.failed += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            Phase::Inconclusive => {
                self.inconclusive += 1;
                self.consecutive_error = 0;
                self.consecutive_success = 0;
            }
            _ => {
                self.consecutive_error = 0;
                self.consecutive_success += 1;
            }
        }
        let against = match (&spec.success_condition, &spec.failure_condition) {
            (Some(s), Some(f)) => format!("success {s}; failure {f}"),
            (Some(s), None) => s.to_string(),
            (None, Some(f)) => format!("failure {f}"),
            (None, None) => "no condition".into(),
        };
        let metric = spec.name.clone();
        self.next = match (spec.interval, spec.count) {
            (_, Some(c)) if self.taken >= c => None,
            (Some(i), _) => Some(now + i),
            (None, _) => None,
        };
        self.assess();
        Check {
            metric,
            value,
            against,
            verdict: verdict.name().into(),
        }
    }

    /// `assessMetricStatus` after a completed measurement.
    fn assess(&mut self) {
        let s = &self.spec;
        let failure_limit = s.failure_limit.unwrap_or(0);
        let inconclusive_limit = s.inconclusive_limit.unwrap_or(0);
        let error_limit = s.consecutive_error_limit.unwrap_or(4);
        let mut phase = None;
        if failure_limit >= 0 && i64::from(self.failed) > i64::from(failure_limit) {
            phase = Some(Phase::Failed);
            self.reason = format!("failed ({}) > failureLimit ({failure_limit})", self.failed);
        }
        if self.inconclusive > inconclusive_limit {
            phase = Some(Phase::Inconclusive);
            self.reason = format!(
                "inconclusive ({}) > inconclusiveLimit ({inconclusive_limit})",
                self.inconclusive
            );
        }
        if self.consecutive_error > error_limit {
            phase = Some(Phase::Error);
            self.reason = format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({error_limit})",
                self.consecutive_error
            );
        }
        if let Some(p) = phase {
            self.phase = p;
            return;
        }
        let success_limit = s.consecutive_success_limit.unwrap_or(0);
        if success_limit > 0 && self.consecutive_success >= success_limit {
            self.phase = Phase::Successful;
            self.reason = format!(
                "consecutiveSuccesses ({}) reached",
                self.consecutive_success
            );
            return;
        }
        let count = match (s.count, s.interval) {
            (Some(c), _) => Some(c),
            (None, None) => Some(1),
            (None, Some(_)) => None, // unbounded
        };
        if count.is_some_and(|c| self.taken >= c) {
            self.phase = match (s.failure_limit.is_some(), success_limit > 0) {
                (true, true) => Phase::Inconclusive,
                (false, true) => Phase::Failed,
                _ => Phase::Successful,
            };
            self.reason = format!("count ({}) reached", self.taken);
        }
    }
}

/// `EvaluateResult`: one measurement's verdict from the conditions.
fn evaluate(spec: &ArgoMetric, v: f64) -> Phase {
    match (&spec.success_condition, &spec.failure_condition) {
        (None, None) => Phase::Successful,
        (Some(s), None) => match s.holds(v) {
            true => Phase::Successful,
            false => Phase::Failed,
        },
        (None, Some(f)) => match f.holds(v) {
            true => Phase::Failed,
            false => Phase::Successful,
        },
        (Some(s), Some(f)) => match (f.holds(v), s.holds(v)) {
            (true, _) => Phase::Failed,
            (false, true) => Phase::Successful,
            (false, false) => Phase::Inconclusive,
        },
    }
}
