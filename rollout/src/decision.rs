//! The decision log: one record per controller tick that did something, in the words of the
//! tool being modeled (Flagger's events, Argo's step and analysis messages).

use proxy_engine::Time;
use serde::Serialize;

/// What the twin routes for the rollout's host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Routing {
    /// Percent of the (matched) traffic sent to the canary subset; the rest goes to stable.
    pub canary_weight: u32,
    /// Percent of requests mirrored to the canary subset, while mirroring.
    pub mirror: Option<u32>,
    /// A/B testing: `canary_weight` applies only to requests matching the analysis' `match`;
    /// the rest go to stable.
    pub matched_only: bool,
}

/// One check of a tick: a metric's value against its threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// The metric's name.
    pub metric: String,
    /// Its value (`None`: no data in the window).
    pub value: Option<f64>,
    /// What it is compared with (`min 99`, `max 500`, `result[0] >= 0.95`).
    pub against: String,
    /// The verdict: `pass`/`fail` (Flagger), or Argo's measurement phase (`Successful`,
    /// `Failed`, `Inconclusive`, `Error`).
    pub verdict: String,
}

/// One tick's record.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// When.
    pub at: Time,
    /// The phase after the tick (Flagger's `Progressing`, `Promoting`…, Argo's `Progressing`,
    /// `Paused`, `Healthy`, `Degraded`).
    pub phase: &'static str,
    /// The tool's own canary weight after the tick (Flagger's `status.canaryWeight`, Argo's
    /// current `setWeight`).
    pub canary_weight: u32,
    /// Flagger: failed checks so far; Argo: the step index.
    pub counter: u32,
    /// Flagger: iterations (A/B, blue/green); Argo: 0.
    pub iterations: u32,
    /// The checks made.
    pub checks: Vec<Check>,
    /// What the twin routes after the tick.
    pub routing: Routing,
    /// What happened, as the tool logs it.
    pub message: String,
    /// Instances the tick scales down (Argo blue/green's old version after
    /// `scale_down_delay`).
    pub scale_down: Option<ScaleDown>,
}

/// A side's instances scaled to zero: they leave the endpoints at once and serve what still
/// reaches them for `grace`, then stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleDown {
    /// Whose instances.
    pub side: crate::Side,
    /// How long they still serve (the pods' termination grace period).
    pub grace: proxy_engine::Nanos,
}

/// Whether the rollout has ended, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Still running at the end of the run.
    Running,
    /// Paused, waiting for a human (Argo's indefinite pause or inconclusive analysis).
    Paused,
    /// The new version serves all traffic.
    Promoted,
    /// Rolled back (Flagger `Failed`, Argo aborted: `Degraded`).
    RolledBack,
}

/// A config generation the rollout made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Generation {
    /// Its number in the run's lineage.
    pub number: u32,
    /// When it was made (each proxy receives it after its own push delay).
    pub at: Time,
    /// The routing it stands for.
    pub routing: Routing,
}

/// A rollout's record over a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Log {
    /// `flagger` or `argo-rollouts`.
    pub tool: &'static str,
    /// The service rolled out.
    pub host: String,
    /// The stable subset.
    pub stable: String,
    /// The canary subset.
    pub canary: String,
    /// Every tick's decision, in time order.
    pub decisions: Vec<Decision>,
    /// The generations made, in order.
    pub generations: Vec<Generation>,
    /// How it stood when the run ended.
    pub outcome: Outcome,
}
