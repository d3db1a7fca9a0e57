//! The scenario's rollout in virtual time: the controller ticks when it asks to, reading the
//! probe the instances feed (each response a version's instance gives, as Istio's
//! destination-side telemetry counts it); a tick that changes the routing makes a new config
//! generation, which reaches each proxy after its push delay like any other.

use super::{Event, Simulation};
use crate::scenario::Scenario;
use crate::topology::Topology;
use proxy_engine::{CompiledMesh, MeshConfig, Nanos, Time};
use rollout::{Controller, Decision, Generation, Log, Probe, RolloutSpec, Routing, Side};
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
        let side = (topology.instances.iter())
            .map(|i| crate::delivery::side_of(s, i.service, i.version))
            .collect();
        Some(Box::new(RolloutRun {
            probe: Probe::of(&spec),
            routing: controller.routing(),
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
        run.decisions.push(decision);
        let next = run.controller.next_tick();
        if routing != run.routing {
            run.routing = routing;
            let config = crate::delivery::render(&run.base, &run.spec, &routing);
            let number = self.generations.meshes.len() as u32;
            run.generations.push(Generation {
                number,
                at: self.now,
                routing,
            });
            self.add_generation(&config);
        }
        if let Some(at) = next {
            self.schedule_tick(at);
        }
    }

    /// Compiles `config` as the next generation and pushes it to every proxy.
    fn add_generation(&mut self, config: &MeshConfig) {
        let Some(previous) = self.generations.meshes.last() else {
            return;
        };
        // The scenario check compiled the widest routing; every other one compiles too.
        let next = match CompiledMesh::compile_next(config, &self.registry, previous) {
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
