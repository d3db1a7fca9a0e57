//! Progressive delivery as sans-IO state machines: Flagger's canary scheduler
//! ([`flagger::Canary`]) and Argo Rollouts' canary steps with analysis runs
//! ([`argo::Rollout`]), behind one [`Controller`].
//!
//! No clock, IO or randomness: a driver asks [`Controller::next_tick`] when it is due, calls
//! [`Controller::tick`] then with a [`MetricSource`] (the run's [`Probe`]), applies the
//! returned [`Routing`] to the mesh config and keeps the [`Decision`]. The simulator drives it
//! in virtual time and `run --live` in real time, so both reach the same decisions from the
//! same measurements.

pub mod analysis;
pub mod argo;
pub mod bluegreen;
pub mod condition;
pub mod decision;
pub mod flagger;
pub mod probe;
pub mod spec;

pub use decision::{Check, Decision, Generation, Log, Outcome, Routing, ScaleDown};
pub use probe::{MetricSource, Probe, WindowStats};
pub use spec::{RolloutSpec, Side, SpecError, Strategy};

use proxy_engine::Time;

/// A rollout's controller, by tool.
#[derive(Clone, Debug)]
pub enum Controller {
    /// Flagger's scheduler.
    Flagger(flagger::Canary),
    /// Argo Rollouts' canary.
    Argo(argo::Rollout),
    /// Argo Rollouts' blue/green.
    ArgoBlueGreen(bluegreen::BlueGreen),
}

impl Controller {
    /// The controller for `spec` (validated by [`RolloutSpec::validate`]).
    pub fn new(spec: &RolloutSpec) -> Controller {
        let start = Time(spec.start.0);
        match &spec.strategy {
            Strategy::Flagger(a) => Controller::Flagger(flagger::Canary::new(a, &spec.host, start)),
            Strategy::ArgoCanary(c) => Controller::Argo(argo::Rollout::new(c, start)),
            Strategy::ArgoBlueGreen(b) => {
                Controller::ArgoBlueGreen(bluegreen::BlueGreen::new(b, start))
            }
        }
    }

    /// The tool's name, for reports.
    pub fn tool(&self) -> &'static str {
        match self {
            Controller::Flagger(_) => "flagger",
            Controller::Argo(_) | Controller::ArgoBlueGreen(_) => "argo-rollouts",
        }
    }

    /// When the next tick is due (`None`: nothing more will happen).
    pub fn next_tick(&self) -> Option<Time> {
        match self {
            Controller::Flagger(c) => c.next_tick(),
            Controller::Argo(r) => r.next_tick(),
            Controller::ArgoBlueGreen(b) => b.next_tick(),
        }
    }

    /// What the twin routes now.
    pub fn routing(&self) -> Routing {
        match self {
            Controller::Flagger(c) => c.routing(),
            Controller::Argo(r) => r.routing(),
            Controller::ArgoBlueGreen(b) => b.routing(),
        }
    }

    /// How the rollout stands.
    pub fn outcome(&self) -> Outcome {
        match self {
            Controller::Flagger(c) => c.outcome(),
            Controller::Argo(r) => r.outcome(),
            Controller::ArgoBlueGreen(b) => b.outcome(),
        }
    }

    /// The tick due at `now`, reading metrics from `source`.
    pub fn tick(&mut self, now: Time, source: &dyn MetricSource) -> Decision {
        match self {
            Controller::Flagger(c) => c.tick(now, source),
            Controller::Argo(r) => r.tick(now, source),
            Controller::ArgoBlueGreen(b) => b.tick(now, source),
        }
    }
}

#[cfg(test)]
mod tests;
