//! Argo Rollouts' blue/green strategy (`rollout/bluegreen.go`, docs/features/bluegreen.md):
//! the new version comes up behind the preview Service while the active Service keeps
//! serving the old one; a pre-promotion analysis may gate the switch, `auto_promotion_enabled:
//! false` pauses before it, `auto_promotion_seconds` forces it after a delay; the switch moves
//! the active Service to the new version at once, and a post-promotion analysis that fails
//! switches back and aborts. The old version stays up `scale_down_delay` after the switch
//! (30 s) — in the twin it simply stays, so proxies that receive the switch late still reach
//! it.

use crate::analysis::{AnalysisRun, Phase as RunPhase};
use crate::decision::{Check, Decision, Outcome, Routing};
use crate::probe::MetricSource;
use crate::spec::ArgoBlueGreen;
use proxy_engine::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Pending,
    /// The preview is up; waiting for the pre-promotion analysis or the auto-promotion delay.
    Preview,
    Paused,
    /// Switched; the post-promotion analysis runs.
    Switched,
    Healthy,
    Degraded,
}

/// One Argo `Rollout` (blue/green strategy) in progress.
#[derive(Clone, Debug)]
pub struct BlueGreen {
    spec: ArgoBlueGreen,
    start: Time,
    phase: Phase,
    run: Option<AnalysisRun>,
    /// When `auto_promotion_seconds` forces the switch.
    forced: Option<Time>,
}

impl BlueGreen {
    /// A rollout of a new revision applied at `start`.
    pub fn new(spec: &ArgoBlueGreen, start: Time) -> BlueGreen {
        BlueGreen {
            spec: spec.clone(),
            start,
            phase: Phase::Pending,
            run: None,
            forced: None,
        }
    }

    /// When something is due next.
    pub fn next_tick(&self) -> Option<Time> {
        match self.phase {
            Phase::Pending => Some(self.start),
            Phase::Preview | Phase::Switched => [
                self.run.as_ref().and_then(AnalysisRun::next_due),
                self.forced,
            ]
            .into_iter()
            .flatten()
            .min(),
            _ => None,
        }
    }

    /// How the run stands.
    pub fn outcome(&self) -> Outcome {
        match self.phase {
            Phase::Healthy => Outcome::Promoted,
            Phase::Degraded => Outcome::RolledBack,
            Phase::Paused => Outcome::Paused,
            _ => Outcome::Running,
        }
    }

    /// What the twin routes now: before the switch the preview's requests (only) reach the new
    /// version; after it, everything.
    pub fn routing(&self) -> Routing {
        match self.phase {
            Phase::Switched | Phase::Healthy => Routing {
                canary_weight: 100,
                mirror: None,
                matched_only: false,
            },
            Phase::Preview | Phase::Paused if !self.spec.preview_match.is_empty() => Routing {
                canary_weight: 100,
                mirror: None,
                matched_only: true,
            },
            _ => Routing::default(),
        }
    }

    fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Pending => "Pending",
            Phase::Preview | Phase::Switched => "Progressing",
            Phase::Paused => "Paused",
            Phase::Healthy => "Healthy",
            Phase::Degraded => "Degraded",
        }
    }

    /// Does what is due at `now`.
    pub fn tick(&mut self, now: Time, source: &dyn MetricSource) -> Decision {
        let mut checks: Vec<Check> = Vec::new();
        let mut messages: Vec<String> = Vec::new();
        if self.phase == Phase::Pending {
            self.phase = Phase::Preview;
            messages.push("New revision: preview up behind the preview Service".into());
            self.forced = self.spec.auto_promotion_seconds.map(|d| now + d);
            self.run = (self.spec.pre_promotion_analysis.as_ref())
                .map(|a| AnalysisRun::start(&a.metrics, now));
            if self.run.is_some() {
                messages.push("Pre-promotion analysis started".into());
            }
        }
        if let Some(run) = self.run.as_mut() {
            checks.extend(run.measure(now, source));
        }
        match self.phase {
            Phase::Preview => self.preview(now, &mut messages),
            Phase::Switched => self.switched(&mut messages),
            _ => {}
        }
        Decision {
            at: now,
            phase: self.phase_name(),
            // Argo has no weight here: the active Service is on the old version or the new.
            canary_weight: match self.phase {
                Phase::Switched | Phase::Healthy => 100,
                _ => 0,
            },
            counter: 0,
            iterations: 0,
            checks,
            routing: self.routing(),
            message: messages.join("; "),
        }
    }

    /// The analysis run's phase and why it ended (no run counts as Successful).
    fn run_state(&self) -> (RunPhase, String) {
        (self.run.as_ref()).map_or((RunPhase::Successful, String::new()), |r| {
            (r.phase(), r.reason())
        })
    }

    /// The rollout stops in `phase` (paused or aborted), saying why.
    fn settle(&mut self, phase: Phase, why: String, messages: &mut Vec<String>) {
        self.phase = phase;
        self.run = None;
        messages.push(why);
    }

    fn preview(&mut self, now: Time, messages: &mut Vec<String>) {
        let (phase, reason) = self.run_state();
        let forced = self.forced.is_some_and(|t| t <= now);
        match phase {
            RunPhase::Failed | RunPhase::Error => {
                let why = format!(
                    "Pre-promotion analysis {reason}; rollout aborted: the active Service stays \
                     on the stable version (Degraded)"
                );
                return self.settle(Phase::Degraded, why, messages);
            }
            RunPhase::Inconclusive => {
                let why = "Paused: InconclusiveAnalysis".into();
                return self.settle(Phase::Paused, why, messages);
            }
            RunPhase::Running if !forced => return,
            _ => {}
        }
        if let Some(run) = self.run.as_mut() {
            run.terminate(); // auto_promotion_seconds elapsed: marked Successful
        }
        if !self.spec.auto_promotion_enabled {
            let why = "Paused before the switch: auto_promotion_enabled is false (BlueGreenPause)";
            return self.settle(Phase::Paused, why.into(), messages);
        }
        self.phase = Phase::Switched;
        messages.push("Switched the active Service to the new version".into());
        self.run = (self.spec.post_promotion_analysis.as_ref())
            .map(|a| AnalysisRun::start(&a.metrics, now));
        match self.run {
            Some(_) => messages.push("Post-promotion analysis started".into()),
            None => self.promoted(messages),
        }
    }

    fn switched(&mut self, messages: &mut Vec<String>) {
        let (phase, reason) = self.run_state();
        match phase {
            RunPhase::Running => {}
            RunPhase::Successful => self.promoted(messages),
            RunPhase::Inconclusive => self.settle(
                Phase::Paused,
                "Paused: InconclusiveAnalysis".into(),
                messages,
            ),
            RunPhase::Failed | RunPhase::Error => {
                let why = format!(
                    "Post-promotion analysis {reason}; switched back to the stable version \
                     (Degraded)"
                );
                self.settle(Phase::Degraded, why, messages);
            }
        }
    }

    fn promoted(&mut self, messages: &mut Vec<String>) {
        self.phase = Phase::Healthy;
        self.run = None;
        messages.push(format!(
            "Fully promoted; the old version scales down after {}",
            self.spec.scale_down_delay
        ));
    }
}
