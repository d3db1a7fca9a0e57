//! The scenario's rollout in virtual time: the controller ticks when it asks to, reading the
//! probe the instances feed (each response a version's instance gives, as Istio's
//! destination-side telemetry counts it); a tick that changes the routing makes a new config
//! generation, which reaches each proxy after its push delay like any other. A scale-down
//! (Argo blue/green's old version) is a generation without that side's instances, which stop
//! serving once their termination grace has passed.

use super::{Event, Simulation};
use crate::model::FaultWindow;
use crate::scenario::FaultKind;
use crate::scenario::Scenario;
use crate::topology::Topology;
use proxy_engine::{CompiledMesh, MeshConfig, Nanos, Registry, Time};
use rollout::{
    Controller, Decision, Generation, Log, Probe, RolloutSpec, Routing, ScaleDown, Side,
};
use std::sync::Arc;

/// A rollout in progress.
pub(super) struct RolloutRun {
    spec: RolloutSpec,
    controller: Controller,
    /// What the controllers read.
    pub(super) probe: Probe,
    /// The scenario's own mesh, every generation's starting point.
    base: MeshConfig,
    /// Each instance's side (by instance number); `None` for the other services and versions.
    pub(super) side: Vec<Option<Side>>,
    /// Each destination's side (by destination id, stable over the generations).
    destination_side: Vec<Option<Side>>,
    routing: Routing,
    /// The registry generations are compiled against: the scenario's, until a side scales
    /// down.
    registry: Registry,
    /// The registry once each side has scaled down (`delivery::scaled_registries`).
    scaled: [Registry; 3],
    decisions: Vec<Decision>,
    generations: Vec<Generation>,
}

impl RolloutRun {
    /// The run of `s`'s rollout, if it has one.
    pub(super) fn of(
        s: &Scenario,
        topology: &Topology,
        mesh: &CompiledMesh,
    ) -> Option<Box<RolloutRun>> {
        let spec = s.rollout.clone()?;
        let controller = Controller::new(&spec);
        let side = crate::delivery::instance_sides(s, topology);
        Some(Box::new(RolloutRun {
            probe: Probe::of(&spec),
            routing: controller.routing(),
            scaled: crate::delivery::scaled_registries(s, topology),
            registry: topology.registry(),
            spec,
            controller,
            base: s.mesh.clone(),
            side,
            destination_side: crate::delivery::destination_sides(s, mesh),
            decisions: Vec::new(),
            generations: Vec::new(),
        }))
    }

    /// The record of the run.
    pub(super) fn log(self) -> Log {
        Log {
            tool: self.controller.tool(),
            outcome: self.controller.outcome(),
            host: self.spec.host,
            stable: self.spec.stable,
            canary: self.spec.canary,
            decisions: self.decisions,
            generations: self.generations,
        }
    }
}

impl Simulation {
    /// Schedules the controller's first tick.
    pub(super) fn build_rollout(&mut self) {
        if let Some(at) = self.rollout.as_ref().and_then(|r| r.controller.next_tick()) {
            self.schedule_tick(at);
        }
    }

    /// Ticks happen during the load phase only: the rollout stands as it is when the load
    /// ends.
    fn schedule_tick(&mut self, at: Time) {
        if at < self.end {
            self.queue.push(at, Event::RolloutTick);
        }
    }

    /// The controller's tick.
    pub(super) fn rollout_tick(&mut self) {
        let Some(run) = self.rollout.as_mut() else {
            return;
        };
        let decision = run.controller.tick(self.now, &run.probe);
        let routing = decision.routing;
        let scale_down = decision.scale_down;
        run.decisions.push(decision);
        let next = run.controller.next_tick();
        if let Some(ScaleDown { side, .. }) = scale_down {
            run.registry = run.scaled[crate::delivery::scaled_index(side)].clone();
        }
        if routing != run.routing || scale_down.is_some() {
            run.routing = routing;
            let config = crate::delivery::render(&run.base, &run.spec, &routing);
            let registry = run.registry.clone();
            let number = self.generations.meshes.len() as u32;
            run.generations.push(Generation {
                number,
                at: self.now,
                routing,
            });
            self.add_generation(&config, &registry);
        }
        if let Some(down) = scale_down {
            self.stop_side(down);
        }
        if let Some(at) = next {
            self.schedule_tick(at);
        }
    }

    /// The instances of a scaled-down side stop (as a crash: connections refused, what they
    /// hold reset) once their grace has passed; until then they serve what still reaches
    /// them.
    fn stop_side(&mut self, down: ScaleDown) {
        let Some(run) = self.rollout.as_ref() else {
            return;
        };
        let at = self.now + down.grace;
        let gone: Vec<usize> = (run.side.iter().enumerate())
            .filter(|(_, s)| s.is_some_and(|s| down.side.holds(s)))
            .map(|(i, _)| i)
            .collect();
        for i in gone {
            self.instances[i].faults.push(FaultWindow {
                start: at,
                end: Time(u64::MAX),
                kind: FaultKind::Crash,
            });
            if at <= self.deadline {
                let (instance, crash) = (i as u32, true);
                self.queue.push(at, Event::FaultStart { instance, crash });
            }
        }
    }

    /// Compiles `config` over `registry` as the next generation and pushes it to every proxy.
    fn add_generation(&mut self, config: &MeshConfig, registry: &Registry) {
        let Some(previous) = self.generations.meshes.last() else {
            return;
        };
        // The scenario check compiled the widest routing; every other one compiles too.
        let next = match CompiledMesh::compile_next(config, registry, previous) {
            Ok(mesh) => Arc::new(mesh),
            Err(e) => {
                debug_assert!(false, "a rollout generation does not compile: {e}");
                return;
            }
        };
        let added = self.metrics.add_generation(next.clone());
        debug_assert!(added.is_ok(), "{added:?}");
        self.generations.meshes.push(next);
        self.generations.at.push(self.now);
        self.generations.entry.push(None);
        self.schedule_pushes(self.generations.meshes.len() - 1);
    }

    /// A hop a caller's proxy completed, for the callers' side of the probe.
    pub(super) fn probe_hop(&mut self, outcome: &proxy_engine::Outcome, latency: Nanos) {
        let Some(run) = self.rollout.as_mut() else {
            return;
        };
        let side = (outcome.destination).and_then(|d| run.destination_side.get(d.0 as usize));
        if let Some(Some(side)) = side {
            let route = (outcome.route)
                .filter(|_| run.probe.watches_routes())
                .and_then(|r| self.metrics.route_name(outcome.generation, r.0));
            run.probe.record_hop(
                *side,
                route,
                self.now,
                rollout::probe::hop(outcome, latency),
            );
        }
    }

    /// A response of `instance` with `status`, for the probe.
    pub(super) fn probe(&mut self, instance: u32, arrived: Time, status: u16) {
        if let Some(run) = self.rollout.as_mut() {
            if let Some(Some(side)) = run.side.get(instance as usize) {
                let took: Nanos = self.now.since(arrived);
                run.probe.record(*side, self.now, status, took);
            }
        }
    }
}
