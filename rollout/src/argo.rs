//! Argo Rollouts' canary strategy with Istio traffic routing (`rollout/canary.go`,
//! `rollout/analysis.go`): the steps in order — `setWeight` takes effect at once, a `pause`
//! with a duration waits, one without waits for a human (forever, in a twin), an inline
//! `analysis` blocks until its run completes — and an optional background analysis from
//! `starting_step`. A Failed or Error run aborts (canary weight 0, phase `Degraded`); an
//! Inconclusive one pauses. After the last step the rollout is fully promoted: the stable
//! subset's traffic goes to the new version, which the twin routes to the canary subset.

use crate::analysis::{AnalysisRun, Phase as RunPhase};
use crate::decision::{Check, Decision, Outcome, Routing};
use crate::probe::MetricSource;
use crate::spec::{ArgoCanary, ArgoStep};
use proxy_engine::Time;

/// An Argo `Rollout`'s phase (both strategies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Progressing,
    Paused,
    Healthy,
    Degraded,
}

impl Phase {
    /// How a rollout in this phase stands.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Phase::Healthy => Outcome::Promoted,
            Phase::Degraded => Outcome::RolledBack,
            Phase::Paused => Outcome::Paused,
            _ => Outcome::Running,
        }
    }

    /// Argo's name for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Healthy => "Healthy",
            Phase::Degraded => "Degraded",
        }
    }
}

/// One Argo `Rollout` (canary strategy) in progress.
#[derive(Clone, Debug)]
pub struct Rollout {
    spec: ArgoCanary,
    start: Time,
    phase: Phase,
    step: usize,
    weight: u32,
    /// The current pause step ends then.
    pause_until: Option<Time>,
    inline: Option<AnalysisRun>,
    background: Option<AnalysisRun>,
}

impl Rollout {
    /// A rollout of a new revision applied at `start`.
    pub fn new(spec: &ArgoCanary, start: Time) -> Rollout {
        Rollout {
            spec: spec.clone(),
            start,
            phase: Phase::Pending,
            step: 0,
            weight: 0,
            pause_until: None,
            inline: None,
            background: None,
        }
    }

    /// When something is due next (`None`: nothing will happen without a human).
    pub fn next_tick(&self) -> Option<Time> {
        match self.phase {
            Phase::Pending => Some(self.start),
            Phase::Progressing => [
                self.pause_until,
                self.inline.as_ref().and_then(AnalysisRun::next_due),
                self.background.as_ref().and_then(AnalysisRun::next_due),
            ]
            .into_iter()
            .flatten()
            .min(),
            _ => None,
        }
    }

    /// How the run stands.
    pub fn outcome(&self) -> Outcome {
        self.phase.outcome()
    }

    /// What the twin routes now.
    pub fn routing(&self) -> Routing {
        Routing {
            canary_weight: match self.phase {
                Phase::Healthy => 100,
                _ => self.weight,
            },
            mirror: None,
            matched_only: false,
        }
    }

    /// Does what is due at `now`.
    pub fn tick(&mut self, now: Time, source: &dyn MetricSource) -> Decision {
        let mut checks = Vec::new();
        let mut messages = Vec::new();
        if self.phase == Phase::Pending {
            self.phase = Phase::Progressing;
            messages.push("New revision: rollout progressing".to_owned());
        }
        self.run_background(now, source, &mut checks, &mut messages);
        while self.phase == Phase::Progressing {
            if !self.run_step(now, source, &mut checks, &mut messages) {
                break;
            }
        }
        // A background analysis starts as soon as its step is reached.
        if self.phase == Phase::Progressing && self.background.is_none() {
            self.run_background(now, source, &mut checks, &mut messages);
        }
        Decision {
            at: now,
            phase: self.phase.name(),
            canary_weight: self.weight,
            counter: self.step as u32,
            iterations: 0,
            checks,
            routing: self.routing(),
            message: messages.join("; "),
            scale_down: None,
        }
    }

    fn run_background(
        &mut self,
        now: Time,
        source: &dyn MetricSource,
        checks: &mut Vec<Check>,
        messages: &mut Vec<String>,
    ) {
        let Some(spec) = &self.spec.analysis else {
            return;
        };
        if self.background.is_none() && self.step >= spec.starting_step {
            self.background = Some(AnalysisRun::start(&spec.metrics, now));
            messages.push("Background analysis started".into());
        }
        let Some(run) = &mut self.background else {
            return;
        };
        checks.extend(run.measure(now, source));
        match run.phase() {
            RunPhase::Failed | RunPhase::Error => {
                let reason = run.reason();
                self.abort(&format!("Background analysis {}", reason), messages);
            }
            RunPhase::Inconclusive => {
                self.phase = Phase::Paused;
                messages.push(format!("Paused: InconclusiveAnalysis ({})", run.reason()));
            }
            _ => {}
        }
    }

    /// Runs the current step; `true` when it completed and the next may run now.
    fn run_step(
        &mut self,
        now: Time,
        source: &dyn MetricSource,
        checks: &mut Vec<Check>,
        messages: &mut Vec<String>,
    ) -> bool {
        let total = self.spec.steps.len();
        let Some(step) = self.spec.steps.get(self.step).cloned() else {
            if let Some(run) = &mut self.background {
                run.terminate();
            }
            self.phase = Phase::Healthy;
            messages.push(
                "Rollout completed: the stable subset's traffic is on the new version".into(),
            );
            return false;
        };
        let label = format!("Step {}/{total}", self.step + 1);
        match step {
            ArgoStep::SetWeight(w) => {
                self.weight = w;
                messages.push(format!("{label}: setWeight {w}"));
            }
            ArgoStep::Pause(p) => match (p.duration, self.pause_until) {
                (None, _) => {
                    self.phase = Phase::Paused;
                    messages.push(format!("{label}: paused until promoted (CanaryPauseStep)"));
                    return false;
                }
                (Some(d), None) if d.0 > 0 => {
                    self.pause_until = Some(now + d);
                    messages.push(format!("{label}: pause {d}"));
                    return false;
                }
                (Some(_), Some(until)) if until > now => return false,
                _ => self.pause_until = None,
            },
            ArgoStep::Analysis(spec) => {
                if self.inline.is_none() {
                    self.inline = Some(AnalysisRun::start(&spec.metrics, now));
                    messages.push(format!("{label}: analysis run started"));
                }
                let Some(run) = &mut self.inline else {
                    return false;
                };
                checks.extend(run.measure(now, source));
                match run.phase() {
                    RunPhase::Running => return false,
                    RunPhase::Successful => {
                        messages.push(format!("{label}: analysis Successful"));
                        self.inline = None;
                    }
                    RunPhase::Inconclusive => {
                        self.phase = Phase::Paused;
                        messages.push(format!(
                            "{label}: Paused: InconclusiveAnalysis ({})",
                            run.reason()
                        ));
                        return false;
                    }
                    RunPhase::Failed | RunPhase::Error => {
                        let reason = run.reason();
                        self.abort(&format!("{label}: analysis {reason}"), messages);
                        return false;
                    }
                }
            }
        }
        self.step += 1;
        true
    }

    fn abort(&mut self, why: &str, messages: &mut Vec<String>) {
        self.weight = 0;
        self.phase = Phase::Degraded;
        if let Some(run) = &mut self.background {
            run.terminate();
        }
        messages.push(format!(
            "{why}; rollout aborted: canary weight 0 (Degraded)"
        ));
    }
}
