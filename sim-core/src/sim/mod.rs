//! The discrete-event simulation: virtual time, the event queue, modeled instances (workers,
//! bounded FIFO queue, service time, errors, outbound calls through their sidecar), workloads,
//! and the drivers' side of the engine contract. All traffic decisions are the engine's; this
//! module only moves time and requests.
//!
//! **Invariant:** every request a workload generates ends in exactly one recorded outcome:
//! those still open when the drain period ends are cancelled through the engine (flag `DC`).
//!
//! Layout: this module builds the simulation (proxies, instances, workloads) and runs the
//! event loop; `traffic` moves requests between workloads, proxies and instances (action
//! draining); `jobs` is the instance model; `faults` applies faults over time.

use crate::admission::{Admission, Admit};
use crate::dist::Dist;
use crate::model;
use crate::queue::EventQueue;
use crate::rng::{stream, Stream};
use crate::scenario::{CallStep, FaultKind, OnFailure, Scenario, Version, Workload};
use crate::timeline::{Generations, TimelineError};
use crate::topology::{Owner, ProxySpec, Topology};
use crate::workload::{head, ArrivalProcess, Mix, RateSchedule};
use metrics::{Recorder, RunMetrics};
use proxy_engine::gateway::Listener;
use proxy_engine::idmap::IdMap;
use proxy_engine::types::Headers;
use proxy_engine::{
    Action, AttemptEnd, AttemptId, CompiledMesh, ConfigError, ConnId, ConnectFailure, EndpointMap,
    Outcome, Proxy, RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Where the simulation stands, for progress display.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Current virtual time.
    pub now: Time,
    /// End of the load phase (`duration`).
    pub end: Time,
    /// Requests generated so far.
    pub generated: u64,
}

/// Runs `scenario` with `seed` to completion and returns what it measured. `progress` is
/// called every few hundred thousand events.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunMetrics, ConfigError> {
    let mut sim = Simulation::new(scenario, seed)?;
    sim.run(progress);
    Ok(sim.finish())
}

/// Like `run`, checking every proxy's invariants (`Proxy::check_invariants`: pool limits,
/// ejection limits, retry accounting) after every step: the first violation is returned as an
/// error. Slow; for tests.
pub fn run_checked(scenario: &Scenario, seed: u64) -> Result<RunMetrics, String> {
    let mut sim = Simulation::new(scenario, seed).map_err(|e| e.to_string())?;
    sim.checks = Some(None);
    sim.run(&mut |_| {});
    match sim.checks.take().flatten() {
        Some(violation) => Err(violation),
        None => Ok(sim.finish()),
    }
}

/// The least time a closed-loop user takes between an instant answer and its next request.
const MIN_CLIENT_TURN_NS: u64 = 1_000;

#[derive(Debug, Clone, Copy)]
enum Event {
    /// An open-loop workload's next request.
    Arrival { workload: u32 },
    /// A closed-loop user sends its next request.
    UserSend { workload: u32, user: u32 },
    /// A connection a proxy asked for is up.
    Connected { proxy: u32, conn: ConnId },
    /// A request reaches its instance.
    Deliver { job: u32 },
    /// An instance finished handling a request.
    Finish { job: u32 },
    /// A handler's own work step is done.
    Resume { job: u32 },
    /// An application's timeout for one try of a call: abandon it if still open.
    CallTimeout { proxy: u32, req: RequestId },
    /// A response reaches the proxy that sent the attempt.
    Respond {
        proxy: u32,
        attempt: AttemptId,
        status: u16,
    },
    /// A connection a proxy asked for was refused (the instance is down).
    ConnectFailed { proxy: u32, conn: ConnId },
    /// An attempt's stream was reset by the instance (it crashed).
    Reset { proxy: u32, attempt: AttemptId },
    /// A crash (or hang) fault begins on an instance.
    FaultStart { instance: u32, crash: bool },
    /// A proxy's timer fires.
    Timer { proxy: u32, at: Time },
    /// A config generation reaches a proxy (after its push delay).
    Push { proxy: u32, generation: u32 },
    /// The rollout controller's tick is due.
    RolloutTick,
}

/// A request a proxy is handling for its owner.
#[derive(Debug, Clone, Copy)]
struct Open {
    start: Time,
    /// Closed-loop user index, or the job waiting for this call; unused for open loops.
    parent: u32,
    /// The client request this request serves (itself at a client; `None` inside a mirrored
    /// copy, whose failures the client never sees).
    root: Option<RequestId>,
    /// The workload whose own request this is, at a gateway proxy it entered through.
    workload: Option<u32>,
    /// For a handler's call: its index in the step, and the tries made before this one.
    call: (u16, u16),
}

struct ProxySlot {
    proxy: Proxy,
    owner: Owner,
    /// The calling service or workload (network partitions are between callers and targets).
    caller: Arc<str>,
    /// Connection → instance it goes to.
    conns: IdMap<ConnId, u32>,
    open: IdMap<RequestId, Open>,
    /// Its attempts that a gateway proxy is relaying: attempt → (gateway proxy, the request
    /// there), so cancelling the attempt resets the gateway's request as a stream reset does.
    relayed: IdMap<AttemptId, (u32, RequestId)>,
    armed: Option<Time>,
}

/// The model of one service version, shared by its instances.
struct VersionModel {
    /// The scenario's model of the version (workers, queue, latency, errors).
    spec: Version,
    /// The handler's steps: calls issued together, or its own work.
    steps: Arc<Vec<Step>>,
}

/// One step of a modeled handler.
enum Step {
    /// Calls issued together; the step ends when all have answered.
    Calls(Vec<CallModel>),
    /// The handler's own work for a drawn time.
    Work(Dist),
}

/// One outbound call of a handler, as the application makes it.
struct CallModel {
    head: RequestHead,
    /// Chance the call is made (1: always, no draw).
    probability: f64,
    /// The application's timeout for one try.
    timeout: Option<proxy_engine::Nanos>,
    /// The application's retries of a failed try.
    retries: u32,
    /// A final failure does not fail the handler.
    degrade: bool,
}

struct Instance {
    model: u32,
    /// Its model's call heads with their `source` set to this instance's name
    /// (`service/version/index`, the source of its sidecar's requests), by step and call
    /// (empty for a work step): made once, so a call does not copy a head to set its source.
    heads: Vec<Vec<RequestHead>>,
    sidecar: u32,
    /// Workers and the bounded queue (of job ids), as live modeled services admit.
    admission: Admission<u32>,
    /// Jobs holding a worker.
    working: Vec<u32>,
    rng: Stream,
    /// Faults that target it.
    faults: Vec<model::FaultWindow>,
}

/// Where an instance's answer goes: back to the proxy that sent the attempt.
#[derive(Clone, Copy)]
struct ReplyTo {
    proxy: u32,
    attempt: AttemptId,
    /// The attempt serves a mirrored copy: its network legs draw from the mirror stream, so
    /// mirrors never move the primary traffic's draws.
    mirror: bool,
}

/// Which client request a new request serves.
#[derive(Clone, Copy)]
enum Serves {
    /// None: it is a client's own request.
    Itself,
    /// A handler's call made for this client request (`None` inside a mirrored copy).
    Root(Option<RequestId>),
}

/// A request at (or travelling to) an instance.
struct Job {
    reply_to: ReplyTo,
    instance: u32,
    /// The request (its headers are propagated to the handler's outbound calls).
    head: RequestHead,
    step: u32,
    pending: u32,
    failed: bool,
    /// The client request this work serves (`None` for a mirrored copy).
    root: Option<RequestId>,
    /// When it reached the instance (the destination side's start, for the rollout probe).
    arrived: Time,
    /// The instance crashed or hung while working on it: nothing it does is answered, and the
    /// job is freed once nothing refers to it any more.
    dead: bool,
}

enum Load {
    Open(ArrivalProcess),
    Closed {
        think: Dist,
        /// Requests each user may still send (`None`: no limit).
        left: Option<Vec<u64>>,
    },
}

struct WorkloadState {
    /// The proxy its requests go to: its client proxy, or the gateway proxy it enters by.
    proxy: u32,
    /// The gateway listener it enters on, if it comes through a gateway.
    entry: Option<Listener>,
    mix: Mix,
    rng: Stream,
    load: Load,
}

/// A simulation in progress.
struct Simulation {
    now: Time,
    end: Time,
    deadline: Time,
    stopped: bool,
    queue: EventQueue<Event>,
    /// The first config generation, which every proxy starts with.
    mesh: Arc<CompiledMesh>,
    /// Every config generation (the timeline's or the rollout's), by number; the first is
    /// `mesh`.
    generations: Generations,
    /// Each proxy's push-delay stream (empty when nothing is ever pushed).
    push_rngs: Vec<Stream>,
    push_delay: Dist,
    /// The rollout, when the scenario has one.
    rollout: Option<Box<delivery::RolloutRun>>,
    /// The instance number of each endpoint of `mesh`; numbers past the instances are
    /// gateway proxies serving as a service (`Topology::endpoint_map`).
    instance_of: EndpointMap<u32>,
    /// By gateway number: its proxy and the server port its service's requests arrive on
    /// (`None` for a gateway that is no service's).
    gateway_entry: Vec<Option<(u32, u16)>>,
    proxies: Vec<ProxySlot>,
    models: Vec<VersionModel>,
    instances: Vec<Instance>,
    jobs: Vec<Option<Job>>,
    free_jobs: Vec<u32>,
    workloads: Vec<WorkloadState>,
    net: Dist,
    net_rng: Stream,
    /// Network draws of mirrored copies: a stream of their own, so mirrors never shift the
    /// primary traffic's latencies.
    mirror_net_rng: Stream,
    next_req: u64,
    /// Client requests some inner hop of which failed, 4xx, 5xx or no answer (looked up, never
    /// iterated): a client success among them hid that failure.
    inner_failed: IdMap<RequestId, ()>,
    metrics: Recorder,
    /// Draws of fault effects (error bursts, added latency): a stream of their own, so a
    /// fault never shifts the draws of traffic it does not touch.
    fault_rng: Stream,
    /// `Some` when invariants are checked after every step, holding the first violation.
    checks: Option<Option<String>>,
}

impl Simulation {
    fn new(s: &Scenario, seed: u64) -> Result<Simulation, ConfigError> {
        let topology = Topology::of(s);
        let generations = Generations::build(s, seed).map_err(|e| match e {
            TimelineError::Compile { error, .. } => error,
            // Checked when the scenario is loaded; reported as the engine would.
            TimelineError::Change { index, message } => ConfigError::Invalid {
                field: format!("timeline[{index}].change"),
                message,
            },
        })?;
        let mesh = generations.meshes[0].clone();
        let mut metrics = Recorder::new(mesh.clone(), s.window)
            .tracking_absorbed()
            .with_workloads(s.workload.iter().enumerate().map(|(i, w)| w.name(i)));
        for next in generations.meshes.iter().skip(1) {
            // `Generations::build` compiles each from the one before.
            let added = metrics.add_generation(next.clone());
            debug_assert!(added.is_ok(), "{added:?}");
        }
        let rollout = delivery::RolloutRun::of(s, &topology, &mesh);
        let end = Time(s.duration.0);
        let mut sim = Simulation {
            now: Time::ZERO,
            end,
            deadline: end + s.drain,
            stopped: false,
            queue: EventQueue::default(),
            proxies: Vec::new(),
            models: Vec::new(),
            instances: Vec::new(),
            jobs: Vec::new(),
            free_jobs: Vec::new(),
            workloads: Vec::new(),
            net: s.network.latency.clone(),
            net_rng: stream(seed, "network"),
            mirror_net_rng: stream(seed, "network/mirror"),
            next_req: 0,
            inner_failed: IdMap::default(),
            metrics,
            // The last generation's ids cover every endpoint of the lineage.
            instance_of: topology.endpoint_map(&generations.meshes[generations.meshes.len() - 1]),
            mesh,
            generations,
            push_rngs: Vec::new(),
            push_delay: Dist::default(),
            rollout,
            fault_rng: stream(seed, "faults"),
            checks: None,
            gateway_entry: Vec::new(),
        };
        sim.build_instances(s, &topology, seed);
        sim.build_workloads(s, &topology, seed);
        for spec in &topology.proxies {
            if matches!(spec.owner, Owner::Gateway { .. }) {
                let proxy = sim.add_proxy(spec, seed);
                let port = (s.gateway_proxies.get(&spec.name))
                    .and_then(|g| g.service.as_ref())
                    .map(|service| (proxy, service.port));
                sim.gateway_entry.push(port);
            }
        }
        sim.build_faults(s);
        sim.build_pushes(s, &topology, seed);
        sim.build_rollout();
        Ok(sim)
    }

    /// Adds the proxy `spec` describes; its number.
    fn add_proxy(&mut self, spec: &ProxySpec, seed: u64) -> u32 {
        let proxy = Proxy::new(self.mesh.clone(), spec.role.clone(), spec.seed(seed));
        self.proxies.push(ProxySlot {
            proxy,
            owner: spec.owner,
            caller: Arc::from(spec.caller()),
            conns: IdMap::default(),
            open: IdMap::default(),
            relayed: IdMap::default(),
            armed: None,
        });
        (self.proxies.len() - 1) as u32
    }

    fn build_instances(&mut self, s: &Scenario, topology: &Topology, seed: u64) {
        let mut model_ids: HashMap<(&str, &str), u32> = HashMap::new();
        for (i, spec) in topology.instances.iter().enumerate() {
            let next_model = self.models.len() as u32;
            let model = *model_ids
                .entry((spec.service, spec.version))
                .or_insert_with(|| {
                    let steps = (s.services[spec.service].steps_of(spec.version).iter())
                        .map(|step| match step {
                            CallStep::Work(d) => Step::Work(d.clone()),
                            step => Step::Calls(
                                (step.calls().iter())
                                    .map(|c| CallModel {
                                        head: head(&c.host, &c.method, &c.path, &c.headers, ""),
                                        probability: c.probability,
                                        timeout: c.timeout.filter(|t| t.0 > 0),
                                        retries: c.retries,
                                        degrade: c.on_failure == OnFailure::Degrade,
                                    })
                                    .collect(),
                            ),
                        })
                        .collect();
                    self.models.push(VersionModel {
                        spec: spec.model.clone(),
                        steps: Arc::new(steps),
                    });
                    next_model
                });
            let name = spec.name();
            let Some(proxy) = topology.sidecar(i) else {
                debug_assert!(false, "every instance has a sidecar");
                continue;
            };
            let sidecar = self.add_proxy(proxy, seed);
            let name: Arc<str> = Arc::from(name.as_str());
            let heads = (self.models[model as usize].steps.iter())
                .map(|step| match step {
                    Step::Work(_) => Vec::new(),
                    Step::Calls(calls) => (calls.iter())
                        .map(|c| {
                            let mut head = c.head.clone();
                            head.source = name.clone();
                            head
                        })
                        .collect(),
                })
                .collect();
            self.instances.push(Instance {
                rng: stream(seed, &format!("instance/{name}")),
                model,
                heads,
                sidecar,
                admission: Admission::new(spec.model.workers, spec.model.queue),
                working: Vec::new(),
                faults: Vec::new(),
            });
        }
    }

    fn build_workloads(&mut self, s: &Scenario, topology: &Topology, seed: u64) {
        for (i, w) in s.workload.iter().enumerate() {
            let name = w.name(i);
            let workload = i as u32;
            let Some(client) = topology.client(i) else {
                debug_assert!(false, "every workload has a client proxy");
                continue;
            };
            let mut proxy = self.add_proxy(client, seed);
            let entry = w.via().and_then(|v| {
                let (number, _) = topology.gateway(&v.gateway)?;
                proxy = number as u32;
                Some(Listener {
                    port: v.port,
                    tls: v.tls,
                })
            });
            let load = match w {
                Workload::OpenLoop(o) => Load::Open(ArrivalProcess::new(
                    RateSchedule::new(o.rate, &o.schedule),
                    o.arrivals,
                    self.end,
                )),
                Workload::ClosedLoop(c) => {
                    for user in 0..c.users {
                        self.queue
                            .push(Time(c.start.0), Event::UserSend { workload, user });
                    }
                    Load::Closed {
                        think: c.think.clone(),
                        left: c.iterations.map(|n| vec![n; c.users as usize]),
                    }
                }
            };
            let mut state = WorkloadState {
                proxy,
                entry,
                mix: match entry {
                    Some(Listener { tls: true, .. }) => {
                        Mix::new(w.host(), &name, w.requests()).with_scheme("https")
                    }
                    _ => Mix::new(w.host(), &name, w.requests()),
                },
                rng: stream(seed, &format!("workload/{name}")),
                load,
            };
            if let Load::Open(p) = &mut state.load {
                if let Some(t) = p.next(Time::ZERO, &mut state.rng) {
                    self.queue.push(t, Event::Arrival { workload });
                }
            }
            self.workloads.push(state);
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut(Progress)) {
        let mut events: u64 = 0;
        while let Some(t) = self.queue.peek_time() {
            if t > self.deadline {
                break;
            }
            let Some((t, event)) = self.queue.pop() else {
                break;
            };
            debug_assert!(t >= self.now, "event queue went back in time");
            self.now = t;
            self.dispatch(event);
            events += 1;
            if events % (1 << 18) == 0 {
                progress(self.progress());
            }
        }
        self.cancel_open();
        progress(self.progress());
    }

    fn progress(&self) -> Progress {
        Progress {
            now: self.now,
            end: self.end,
            generated: self.metrics.generated,
        }
    }

    /// Ends the run: requests still open at the deadline are cancelled through their proxies,
    /// so each still gets exactly one outcome (flag `DC`).
    fn cancel_open(&mut self) {
        if !self.queue.is_empty() {
            self.now = self.now.max(self.deadline);
        }
        self.stopped = true;
        for p in 0..self.proxies.len() {
            let mut open: Vec<RequestId> = self.proxies[p].open.keys().copied().collect();
            open.sort_unstable();
            for req in open {
                self.proxies[p]
                    .proxy
                    .handle_downstream_cancel(self.now, req);
                self.drain(p as u32);
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Arrival { workload } => self.arrival(workload),
            Event::UserSend { workload, user } => {
                if self.now < self.end {
                    if let Load::Closed {
                        left: Some(left), ..
                    } = &mut self.workloads[workload as usize].load
                    {
                        if let Some(n) = left.get_mut(user as usize) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    self.send_from_workload(workload, user);
                }
            }
            Event::Connected { proxy, conn } => {
                let instance = self.proxies[proxy as usize].conns.get(&conn).copied();
                let refused = instance.is_some_and(|i| self.crashed(i));
                let slot = &mut self.proxies[proxy as usize];
                // The instance crashed during the handshake: refused after all.
                if refused {
                    slot.conns.remove(&conn);
                    slot.proxy
                        .handle_connect_failed(self.now, conn, ConnectFailure::Refused);
                } else {
                    slot.proxy.handle_connected(self.now, conn);
                }
                self.drain(proxy);
            }
            Event::Deliver { job } => self.deliver(job),
            Event::Finish { job } => self.finish_job(job),
            Event::Resume { job } => self.advance_job(job),
            Event::CallTimeout { proxy, req } => self.call_timeout(proxy, req),
            Event::Respond {
                proxy,
                attempt,
                status,
            } => {
                let p = &mut self.proxies[proxy as usize].proxy;
                p.handle_response_head(self.now, attempt, ResponseHead { status });
                p.handle_attempt_end(self.now, attempt, AttemptEnd::Done);
                self.drain(proxy);
            }
            Event::ConnectFailed { proxy, conn } => {
                let p = &mut self.proxies[proxy as usize];
                p.conns.remove(&conn);
                p.proxy
                    .handle_connect_failed(self.now, conn, ConnectFailure::Refused);
                self.drain(proxy);
            }
            Event::Reset { proxy, attempt } => {
                let p = &mut self.proxies[proxy as usize].proxy;
                p.handle_attempt_end(self.now, attempt, AttemptEnd::Reset);
                self.drain(proxy);
            }
            Event::FaultStart { instance, crash } => self.fault_start(instance, crash),
            Event::Timer { proxy, at } => {
                let slot = &mut self.proxies[proxy as usize];
                if slot.armed == Some(at) {
                    slot.armed = None;
                    slot.proxy.handle_timeout(self.now);
                    self.drain(proxy);
                }
            }
            Event::Push { proxy, generation } => self.push(proxy, generation),
            Event::RolloutTick => self.rollout_tick(),
        }
    }

    fn finish(mut self) -> RunMetrics {
        self.metrics.end_at(self.now);
        let rollout = self.rollout.take().map(|r| r.log());
        let mut m = self.metrics.finish();
        m.generations = self.generations.made(rollout.is_some());
        m.rollout = rollout;
        m
    }
}

mod delivery;
mod faults;
mod jobs;
mod pushes;
mod traffic;
