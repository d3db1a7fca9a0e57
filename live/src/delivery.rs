//! The scenario's rollout in real time (`run --live`): the same controller as the
//! simulator's, ticking on the wall clock from the load's start, reading a probe the live
//! instances feed (each answer a version's instance gives, timed from its arrival, as Istio's
//! destination-side telemetry counts it); each routing change is rendered and compiled as the
//! simulator does it and pushed through every proxy's reload after that proxy's own
//! `push_delay` draw (the same `push/<proxy>` streams). A scale-down pushes a generation
//! without that side's instances and kills them once their termination grace has passed.

use crate::driver::{Generation, ProxyHandle};
use crate::lock;
use proxy_engine::{CompiledMesh, Nanos, Registry, Time};
use rollout::{Controller, Decision, Log, Probe, Routing, Side};
use sim_core::scenario::Scenario;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the live instances of the rollout's versions record into.
#[derive(Debug)]
pub struct LiveProbe {
    probe: Mutex<Probe>,
    /// Each destination's side (by id), for the hops the proxies record.
    destinations: OnceLock<Vec<Option<Side>>>,
    /// The load's start: time zero of the probe and the controller.
    start: OnceLock<Instant>,
}

impl LiveProbe {
    /// A probe for windows up to `keep` long.
    pub fn new(spec: &rollout::RolloutSpec) -> LiveProbe {
        LiveProbe {
            probe: Mutex::new(Probe::of(spec)),
            destinations: OnceLock::new(),
            start: OnceLock::new(),
        }
    }

    /// Time zero: the load starts now. Answers before it are not counted.
    pub fn start(&self, at: Instant) {
        let _ = self.start.set(at);
    }

    /// Which side each destination id is on (ids are stable over the generations).
    pub fn set_destinations(&self, sides: Vec<Option<Side>>) {
        let _ = self.destinations.set(sides);
    }

    /// Whether a metric reads a route (the proxies name each hop's route only then).
    pub fn watches_routes(&self) -> bool {
        lock(&self.probe).watches_routes()
    }

    /// A hop a proxy completed by `route`, `latency` after it started, if it went to a side.
    pub fn record_hop(&self, outcome: &proxy_engine::Outcome, route: Option<&str>, latency: Nanos) {
        let (Some(t0), Some(sides)) = (self.start.get(), self.destinations.get()) else {
            return;
        };
        let side = outcome
            .destination
            .and_then(|d| sides.get(d.0 as usize).copied().flatten());
        let Some(side) = side else {
            return;
        };
        let at = Time(Instant::now().saturating_duration_since(*t0).as_nanos() as u64);
        lock(&self.probe).record_hop(side, route, at, rollout::probe::hop(outcome, latency));
    }

    /// An answer of `side` with `status`, to a request that arrived at `arrived`.
    pub fn record(&self, side: Side, arrived: Instant, status: u16) {
        let Some(t0) = self.start.get() else {
            return;
        };
        let now = Instant::now();
        let at = Time(now.saturating_duration_since(*t0).as_nanos() as u64);
        let took = Nanos(now.saturating_duration_since(arrived).as_nanos() as u64);
        lock(&self.probe).record(side, at, status, took);
    }
}

/// The rollout's record so far, shared with the report's assembly.
#[derive(Debug, Default)]
pub struct Record {
    /// The decisions so far.
    pub decisions: Vec<Decision>,
    /// The generations made, with what they stand for.
    pub generations: Vec<rollout::Generation>,
    /// Their compiled meshes, in order (for the recorders).
    pub meshes: Vec<Arc<CompiledMesh>>,
    /// The controller's outcome so far.
    pub outcome: Option<rollout::Outcome>,
}

/// A rollout running live.
pub struct LiveRollout {
    /// What it decided and made so far.
    pub record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
    tool: &'static str,
    spec: rollout::RolloutSpec,
}

/// What the controller task needs.
pub struct Targets {
    /// Every proxy, in the topology's order (sidecars, then clients), with its name.
    pub proxies: Vec<(String, ProxyHandle)>,
    /// The first generation (its addresses serve every later one: ids are stable).
    pub first: Generation,
    /// The registry generations are compiled against.
    pub registry: Registry,
    /// The registry once each side has scaled down (`sim_core::delivery::scaled_registries`).
    pub scaled: [Registry; 3],
    /// Every instance, with its side of the rollout.
    pub instances: Vec<(Option<Side>, Arc<crate::service::Instance>)>,
}

impl LiveRollout {
    /// Starts `s`'s rollout (if it has one) with the load starting at `started`.
    pub fn start(
        s: &Scenario,
        seed: u64,
        probe: Arc<LiveProbe>,
        targets: Targets,
        started: Instant,
    ) -> Option<LiveRollout> {
        let spec = s.rollout.clone()?;
        probe.start(started);
        let controller = Controller::new(&spec);
        let tool = controller.tool();
        let record = Arc::new(Mutex::new(Record::default()));
        let task = tokio::spawn(drive(
            s.clone(),
            seed,
            controller,
            probe,
            targets,
            record.clone(),
            started,
        ));
        Some(LiveRollout {
            record,
            task,
            tool,
            spec,
        })
    }

    /// Stops the controller (the load ended) and returns its log.
    pub fn finish(self) -> Log {
        self.task.abort();
        let record = lock(&self.record);
        Log {
            tool: self.tool,
            host: self.spec.host.clone(),
            stable: self.spec.stable.clone(),
            canary: self.spec.canary.clone(),
            decisions: record.decisions.clone(),
            generations: record.generations.clone(),
            outcome: record.outcome.unwrap_or(rollout::Outcome::Running),
        }
    }
}

/// The controller's loop: sleep to each tick (during the load only), tick, and push a new
/// generation when the routing changes.
async fn drive(
    s: Scenario,
    seed: u64,
    mut controller: Controller,
    probe: Arc<LiveProbe>,
    targets: Targets,
    record: Arc<Mutex<Record>>,
    started: Instant,
) {
    let Some(spec) = s.rollout.clone() else {
        return;
    };
    let mut rngs: Vec<_> = (targets.proxies.iter())
        .map(|(name, _)| sim_core::rng::stream(seed, &format!("push/{name}")))
        .collect();
    let mut routing: Routing = controller.routing();
    let mut registry = targets.registry.clone();
    let mut latest = targets.first.mesh.clone();
    let mut pushes: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    // Owned here: when the load ends and this task is aborted, kills not yet due are too.
    let mut stops = tokio::task::JoinSet::new();
    while let Some(at) = controller.next_tick() {
        if at.0 >= s.duration.0 {
            break;
        }
        tokio::time::sleep_until((started + Duration::from_nanos(at.0)).into()).await;
        // The tick reads the windows up to its own time, which has passed.
        let decision = {
            let p = lock(&probe.probe);
            controller.tick(at, &*p)
        };
        let next = decision.routing;
        let scale_down = decision.scale_down;
        {
            let mut r = lock(&record);
            r.decisions.push(decision);
            r.outcome = Some(controller.outcome());
        }
        if let Some(down) = scale_down {
            registry = targets.scaled[sim_core::delivery::scaled_index(down.side)].clone();
            let due = started + Duration::from_nanos((at + down.grace).0);
            stop_side(&mut stops, &targets, down.side, due);
        }
        if next == routing && scale_down.is_none() {
            continue;
        }
        routing = next;
        let config = sim_core::delivery::render(&s.mesh, &spec, &routing);
        // The scenario check compiled the widest routing; every other one compiles too.
        let Ok(mesh) = CompiledMesh::compile_next(&config, &registry, &latest) else {
            continue;
        };
        latest = Arc::new(mesh);
        let generation = Generation {
            mesh: latest.clone(),
            addrs: targets.first.addrs.clone(),
        };
        {
            let mut r = lock(&record);
            r.generations.push(rollout::Generation {
                number: latest.generation() as u32,
                at,
                routing,
            });
            r.meshes.push(latest.clone());
        }
        for ((_, handle), rng) in targets.proxies.iter().zip(rngs.iter_mut()) {
            let due = started + Duration::from_nanos((at + s.push_delay.sample(rng)).0);
            let (handle, generation) = (handle.clone(), generation.clone());
            pushes.push(tokio::spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                if handle.mesh().generation() < generation.mesh.generation() {
                    let _ = handle.reload(generation);
                }
            }));
        }
        pushes.retain(|p| !p.is_finished());
    }
    lock(&record).outcome = Some(controller.outcome());
    // Pushes still on their way finish; the lab stops the proxies after the drain.
    for p in pushes {
        let _ = p.await;
    }
    while stops.join_next().await.is_some() {}
}

/// Kills `side`'s instances at `due` (the end of their termination grace), as the simulator
/// stops them: connections refused, requests they hold reset.
fn stop_side(stops: &mut tokio::task::JoinSet<()>, targets: &Targets, side: Side, due: Instant) {
    for (_, inst) in (targets.instances.iter()).filter(|(s, _)| s.is_some_and(|s| side.holds(s))) {
        let inst = inst.clone();
        stops.spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            inst.kill();
        });
    }
}
