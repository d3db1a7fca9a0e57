//! The modeled deployment: which instances a scenario's services have, in one stable order
//! (services by name, versions by name, then instance index) shared by the registry the engine
//! sees and the simulator's instance table.

use crate::scenario::{CallStep, FaultKind, Scenario, Version};
use proxy_engine::{Nanos, Time};
use rand::Rng;

/// One modeled instance of a service version, with its life over the run.
pub type InstanceSpec<'a> = crate::lifecycle::Life<'a>;

/// Every instance of the scenario — those the timeline creates included — in the stable
/// order; position = simulator instance index.
pub fn instances(s: &Scenario) -> Vec<InstanceSpec<'_>> {
    crate::lifecycle::lives(s)
}

/// The status a modeled handler answers with, once its calls and service time are done: 500 if
/// an outbound call failed (5xx or no response), else `error_status` with probability `errors`,
/// else 200. Shared by the simulator and live modeled services, so both run one model.
pub fn handler_status(call_failed: bool, model: &Version, rng: &mut impl Rng) -> u16 {
    if call_failed {
        500
    } else if model.errors > 0.0 && rng.gen::<f64>() < model.errors {
        model.error_status
    } else {
        200
    }
}

/// A version's handler steps (see `Service::steps_of`), shared by the simulator and the live
/// modeled services so both run one model.
pub fn call_steps(s: &Scenario, service: &str, version: &str) -> Vec<CallStep> {
    (s.services.get(service))
        .map(|svc| svc.steps_of(version).to_vec())
        .unwrap_or_default()
}

/// Whether a call's answer counts as a failure for its caller: no response or a 5xx.
pub fn call_failed(status: u16) -> bool {
    status == 0 || status >= 500
}

/// A fault as one instance sees it: its window and what goes wrong. Shared by the simulator
/// and live modeled services, so both apply faults the same way.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// Start, from the run's start.
    pub start: Time,
    /// End (exclusive); `Time(u64::MAX)` when it lasts to the end.
    pub end: Time,
    /// What goes wrong.
    pub kind: FaultKind,
}

impl FaultWindow {
    /// Whether the fault is in force at `now`.
    pub fn active(&self, now: Time) -> bool {
        self.start <= now && now < self.end
    }
}

/// The faults of every instance, indexed like `instances`.
pub fn instance_faults(s: &Scenario) -> Vec<Vec<FaultWindow>> {
    let specs = instances(s);
    let mut out = vec![Vec::new(); specs.len()];
    // A removed instance stops at the end of its drain, as a crash does: connections refused,
    // what it still holds reset.
    for (i, life) in specs.iter().enumerate() {
        if let Some(stops) = life.stops() {
            out[i].push(FaultWindow {
                start: stops,
                end: Time(u64::MAX),
                kind: FaultKind::Crash,
            });
        }
    }
    for f in &s.faults {
        let start = Time(f.start.0);
        let window = FaultWindow {
            start,
            end: f.length.map_or(Time(u64::MAX), |l| start + l),
            kind: f.kind.clone(),
        };
        let t = &f.target;
        let mut nth = 0u32;
        for (idx, spec) in specs.iter().enumerate() {
            if spec.service != t.service || t.version.as_deref().is_some_and(|v| v != spec.version)
            {
                continue;
            }
            // Index within the version, or within the service in version order.
            let index = if t.version.is_some() { spec.index } else { nth };
            nth += 1;
            if t.instance.is_none_or(|n| n == index) {
                out[idx].push(window.clone());
            }
        }
    }
    out
}

/// The status an error burst answers a request with at `now`, if one hits it.
pub fn error_burst(faults: &[FaultWindow], now: Time, rng: &mut impl Rng) -> Option<u16> {
    faults
        .iter()
        .filter(|f| f.active(now))
        .find_map(|f| match f.kind {
            FaultKind::Errors {
                probability,
                status,
            } => (rng.gen::<f64>() < probability).then_some(status),
            _ => None,
        })
}

/// A service time with the active latency and slow-start faults applied: slow start multiplies
/// it by a factor falling linearly from `factor` to 1 over the fault, added latency is drawn
/// and added.
pub fn slowed(faults: &[FaultWindow], now: Time, service: Nanos, rng: &mut impl Rng) -> Nanos {
    let mut out = service;
    for f in faults.iter().filter(|f| f.active(now)) {
        match &f.kind {
            FaultKind::SlowStart { factor } => {
                let span = f.end.since(f.start).0.max(1) as f64;
                let done = (now.since(f.start).0 as f64 / span).min(1.0);
                out = Nanos((out.0 as f64 * (factor - (factor - 1.0) * done)) as u64);
            }
            FaultKind::Latency(d) => out = out + d.sample(rng),
            _ => {}
        }
    }
    out
}

/// Whether a fault of this kind is active at `now`.
pub fn has_active(faults: &[FaultWindow], now: Time, kind: impl Fn(&FaultKind) -> bool) -> bool {
    faults.iter().any(|f| f.active(now) && kind(&f.kind))
}
