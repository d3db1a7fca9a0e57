//! Argo Rollouts' blue/green strategy (`rollout/bluegreen.go`, docs/features/bluegreen.md):
//! the new version comes up behind the preview Service while the active Service keeps
//! serving the old one; a pre-promotion analysis may gate the switch, `auto_promotion_enabled:
//! false` pauses before it, `auto_promotion_seconds` forces it after a delay; the switch moves
//! the active Service to the new version at once, and a post-promotion analysis that fails
//! switches back and aborts. The old version stays up `scale_down_delay` after the switch
//! (30 s), and until a post-promotion analysis succeeded; then it scales down (its instances
//! leave the endpoints and serve what still reaches them for `termination_grace`). A proxy
//! that receives the switch later than that sends to instances that are gone: the hazard the
//! delay exists for ("to give nodes enough time to broadcast the IP table changes", Argo's
//! docs/features/bluegreen.md). After an abort the new version stays up (Argo scales it down
//! after `abortScaleDownDelaySeconds`; nothing routes to it then).

use crate::analysis::{AnalysisRun, Phase as RunPhase};
use crate::argo::Phase;
use crate::decision::{Check, Decision, Outcome, Routing, ScaleDown};
use crate::probe::MetricSource;
use crate::spec::{ArgoBlueGreen, Side};
use proxy_engine::Time;

/// One Argo `Rollout` (blue/green strategy) in progress.
#[derive(Clone, Debug)]
pub struct BlueGreen {
    spec: ArgoBlueGreen,
    start: Time,
    /// `Progressing` covers the preview (before the switch) and the post-promotion analysis
    /// (after it).
    phase: Phase,
    run: Option<AnalysisRun>,
    /// When `auto_promotion_seconds` forces the switch.
    forced: Option<Time>,
    /// When the active Service moved to the new version (`None`: it is on the old one).
    switched_at: Option<Time>,
    /// When the old version scales down (set at full promotion, cleared when done).
    scale_down_at: Option<Time>,
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
            switched_at: None,
            scale_down_at: None,
        }
    }

    /// When something is due next.
    pub fn next_tick(&self) -> Option<Time> {
        match self.phase {
            Phase::Pending => Some(self.start),
            Phase::Progressing => [
                self.run.as_ref().and_then(AnalysisRun::next_due),
                self.forced,
            ]
            .into_iter()
            .flatten()
            .min(),
            Phase::Healthy => self.scale_down_at,
            _ => None,
        }
    }

    /// How the run stands.
    pub fn outcome(&self) -> Outcome {
        self.phase.outcome()
    }

    /// What the twin routes now: before the switch the preview's requests (only) reach the new
    /// version; after it, everything.
    pub fn routing(&self) -> Routing {
        match self.phase {
            _ if self.switched_at.is_some() => Routing {
                canary_weight: 100,
                mirror: None,
                matched_only: false,
            },
            Phase::Progressing | Phase::Paused if !self.spec.preview_match.is_empty() => Routing {
                canary_weight: 100,
                mirror: None,
                matched_only: true,
            },
            _ => Routing::default(),
        }
    }

    /// Does what is due at `now`.
    pub fn tick(&mut self, now: Time, source: &dyn MetricSource) -> Decision {
        let mut checks: Vec<Check> = Vec::new();
        let mut messages: Vec<String> = Vec::new();
        if self.phase == Phase::Pending {
            self.phase = Phase::Progressing;
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
            Phase::Progressing if self.switched_at.is_some() => {
                self.post_promotion(now, &mut messages)
            }
            Phase::Progressing => self.preview(now, &mut messages),
            _ => {}
        }
        let scale_down = self.scale_down(now, &mut messages);
        Decision {
            at: now,
            phase: self.phase.name(),
            // Argo has no weight here: the active Service is on the old version or the new.
            canary_weight: match self.phase {
                _ if self.switched_at.is_some() => 100,
                _ => 0,
            },
            counter: 0,
            iterations: 0,
            checks,
            routing: self.routing(),
            message: messages.join("; "),
            scale_down,
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
        self.switched_at = Some(now);
        messages.push("Switched the active Service to the new version".into());
        self.run = (self.spec.post_promotion_analysis.as_ref())
            .map(|a| AnalysisRun::start(&a.metrics, now));
        match self.run {
            Some(_) => messages.push("Post-promotion analysis started".into()),
            None => self.promoted(now, messages),
        }
    }

    fn post_promotion(&mut self, now: Time, messages: &mut Vec<String>) {
        let (phase, reason) = self.run_state();
        match phase {
            RunPhase::Running => {}
            RunPhase::Successful => self.promoted(now, messages),
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
                self.switched_at = None;
                self.settle(Phase::Degraded, why, messages);
            }
        }
    }

    /// Fully promoted at `now`: the old version scales down `scale_down_delay` after the
    /// switch, or now if that has passed (a post-promotion analysis outlasted it).
    fn promoted(&mut self, now: Time, messages: &mut Vec<String>) {
        self.phase = Phase::Healthy;
        self.run = None;
        let due = self
            .switched_at
            .map_or(now, |t| t + self.spec.scale_down_delay);
        self.scale_down_at = Some(due.max(now));
        messages.push(match due > now {
            true => format!(
                "Fully promoted; the old version scales down {} after the switch",
                self.spec.scale_down_delay
            ),
            false => "Fully promoted".into(),
        });
    }

    /// The old version's scale-down, when it is due at `now`.
    fn scale_down(&mut self, now: Time, messages: &mut Vec<String>) -> Option<ScaleDown> {
        if self.phase != Phase::Healthy || self.scale_down_at.is_none_or(|t| t > now) {
            return None;
        }
        self.scale_down_at = None;
        messages.push("Scaled down the old version".into());
        Some(ScaleDown {
            side: Side::Stable,
            grace: self.spec.termination_grace,
        })
    }
}
