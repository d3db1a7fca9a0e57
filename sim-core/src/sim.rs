//! The discrete-event simulation: virtual time, the event queue, modeled instances (workers,
//! bounded FIFO queue, service time, errors, outbound calls through their sidecar), workloads,
//! and the drivers' side of the engine contract. All traffic decisions are the engine's; this
//! module only moves time and requests.
//!
//! **Invariant:** every request a workload generates ends in exactly one recorded outcome:
//! those still open when the drain period ends are cancelled through the engine (flag `DC`).

use crate::dist::Dist;
use crate::model;
use crate::queue::EventQueue;
use crate::rng::{derive_seed, stream, Stream};
use crate::scenario::{CallStep, FaultKind, Scenario, Version, Workload};
use crate::workload::{head, ArrivalProcess, Mix, RateSchedule};
use proxy_engine::idmap::IdMap;
use proxy_engine::metrics::{Recorder, RunMetrics};
use proxy_engine::types::Headers;
use proxy_engine::{
    Action, AttemptEnd, AttemptId, CompiledMesh, ConfigError, ConnId, ConnectFailure,
    DestinationId, EndpointAddr, Outcome, Proxy, ProxyRole, RequestHead, RequestId, ResponseHead,
    Time,
};
use std::collections::{HashMap, VecDeque};
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
}

/// Who owns a proxy.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Client { workload: u32 },
    Sidecar,
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
}

struct ProxySlot {
    proxy: Proxy,
    owner: Owner,
    /// The calling service or workload (network partitions are between callers and targets).
    caller: Arc<str>,
    /// Connection → instance it goes to.
    conns: IdMap<ConnId, u32>,
    open: IdMap<RequestId, Open>,
    armed: Option<Time>,
}

/// The model of one service version, shared by its instances.
struct VersionModel {
    /// The scenario's model of the version (workers, queue, latency, errors).
    spec: Version,
    /// Outbound call steps, each a set of heads issued together.
    steps: Arc<Vec<Vec<RequestHead>>>,
}

struct Instance {
    /// `service/version/index`: the source of its sidecar's requests.
    name: Arc<str>,
    model: u32,
    sidecar: u32,
    busy: u32,
    queue: VecDeque<u32>,
    /// Jobs holding a worker.
    working: Vec<u32>,
    rng: Stream,
    /// Faults that target it.
    faults: Vec<model::FaultWindow>,
}

/// Where an instance's answer goes.
#[derive(Clone, Copy)]
enum ReplyTo {
    /// Back to the proxy that sent the attempt.
    Proxy { proxy: u32, attempt: AttemptId },
    /// A mirrored copy: the answer is only recorded (per destination), never reported.
    Mirror {
        destination: DestinationId,
        sent: Time,
    },
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
    proxy: u32,
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
    mesh: Arc<CompiledMesh>,
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
        let registry = model::registry(s);
        let mesh = Arc::new(CompiledMesh::compile(&s.mesh, &registry)?);
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
            metrics: Recorder::new(mesh.clone(), s.window)
                .tracking_absorbed()
                .with_workloads(s.workload.iter().enumerate().map(|(i, w)| w.name(i))),
            mesh,
            fault_rng: stream(seed, "faults"),
            checks: None,
        };
        sim.build_instances(s, seed);
        sim.build_workloads(s, seed);
        sim.build_faults(s);
        Ok(sim)
    }

    fn add_proxy(
        &mut self,
        name: &str,
        caller: &str,
        role: ProxyRole,
        owner: Owner,
        seed: u64,
    ) -> u32 {
        let proxy = Proxy::new(
            self.mesh.clone(),
            role,
            derive_seed(seed, &format!("proxy/{name}")),
        );
        self.proxies.push(ProxySlot {
            proxy,
            owner,
            caller: Arc::from(caller),
            conns: IdMap::default(),
            open: IdMap::default(),
            armed: None,
        });
        (self.proxies.len() - 1) as u32
    }

    fn build_instances(&mut self, s: &Scenario, seed: u64) {
        let mut model_ids: HashMap<(&str, &str), u32> = HashMap::new();
        for spec in model::instances(s) {
            let next_model = self.models.len() as u32;
            let model = *model_ids
                .entry((spec.service, spec.version))
                .or_insert_with(|| {
                    let steps = s.services[spec.service]
                        .calls
                        .iter()
                        .map(|step| match step {
                            CallStep::Call(c) => vec![c],
                            CallStep::Parallel(cs) => cs.iter().collect(),
                        })
                        .map(|calls| {
                            calls
                                .into_iter()
                                .map(|c| head(&c.host, &c.method, &c.path, &c.headers, ""))
                                .collect()
                        })
                        .collect();
                    self.models.push(VersionModel {
                        spec: spec.model.clone(),
                        steps: Arc::new(steps),
                    });
                    next_model
                });
            let name = spec.name();
            let role = ProxyRole::Sidecar {
                service: spec.service.to_owned(),
            };
            let sidecar = self.add_proxy(&name, spec.service, role, Owner::Sidecar, seed);
            self.instances.push(Instance {
                name: Arc::from(name.as_str()),
                model,
                sidecar,
                busy: 0,
                queue: VecDeque::new(),
                working: Vec::new(),
                rng: stream(seed, &format!("instance/{name}")),
                faults: Vec::new(),
            });
        }
    }

    fn build_workloads(&mut self, s: &Scenario, seed: u64) {
        for (i, w) in s.workload.iter().enumerate() {
            let name = w.name(i);
            let workload = i as u32;
            let role = ProxyRole::Client { name: name.clone() };
            let proxy = self.add_proxy(&name, &name, role, Owner::Client { workload }, seed);
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
                mix: Mix::new(w.host(), &name, w.requests()),
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
        }
    }

    fn arrival(&mut self, workload: u32) {
        self.send_from_workload(workload, 0);
        let w = &mut self.workloads[workload as usize];
        if let Load::Open(p) = &mut w.load {
            if let Some(next) = p.next(self.now, &mut w.rng) {
                self.queue.push(next, Event::Arrival { workload });
            }
        }
    }

    fn send_from_workload(&mut self, workload: u32, parent: u32) {
        let w = &mut self.workloads[workload as usize];
        let head = w.mix.pick(&mut w.rng);
        let proxy = w.proxy;
        self.metrics.generated += 1;
        self.issue(proxy, head, parent, Serves::Itself);
    }

    /// Hands a new request to proxy `p` on behalf of `parent`.
    fn issue(&mut self, p: u32, head: RequestHead, parent: u32, serves: Serves) {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        let slot = &mut self.proxies[p as usize];
        slot.open.insert(
            req,
            Open {
                start: self.now,
                parent,
                root: match serves {
                    Serves::Itself => Some(req),
                    Serves::Root(root) => root,
                },
            },
        );
        slot.proxy.handle_request(self.now, req, head);
        self.drain(p);
    }

    /// One leg of network latency.
    fn leg(&mut self) -> proxy_engine::Nanos {
        if self.net.is_zero() {
            proxy_engine::Nanos::ZERO
        } else {
            self.net.sample(&mut self.net_rng)
        }
    }

    /// One leg of network latency for a mirrored copy.
    fn mirror_leg(&mut self) -> proxy_engine::Nanos {
        if self.net.is_zero() {
            proxy_engine::Nanos::ZERO
        } else {
            self.net.sample(&mut self.mirror_net_rng)
        }
    }

    /// Performs every action proxy `p` has queued, then re-arms its timer.
    fn drain(&mut self, p: u32) {
        while let Some(action) = self.proxies[p as usize].proxy.poll_action() {
            match action {
                Action::Connect { conn, endpoint, .. } => {
                    let EndpointAddr::Sim(instance) = self.mesh.endpoint(endpoint).addr else {
                        debug_assert!(false, "socket endpoint in a simulation");
                        continue;
                    };
                    self.proxies[p as usize].conns.insert(conn, instance);
                    if self.partitioned(p, instance) {
                        continue; // the SYN is lost: the engine's connect timeout decides
                    }
                    // A TCP handshake costs a round trip before the request can go (a refusal
                    // too: the RST comes back).
                    let rtt = self.leg() + self.leg();
                    let event = if self.crashed(instance) {
                        Event::ConnectFailed { proxy: p, conn }
                    } else {
                        Event::Connected { proxy: p, conn }
                    };
                    self.queue.push(self.now + rtt, event);
                }
                Action::Send {
                    req,
                    attempt,
                    conn,
                    head,
                    ..
                } => {
                    let Some(&instance) = self.proxies[p as usize].conns.get(&conn) else {
                        debug_assert!(false, "send on unknown connection {conn:?}");
                        continue;
                    };
                    if self.partitioned(p, instance) {
                        continue; // lost on the way
                    }
                    if self.crashed(instance) {
                        let rtt = self.leg() + self.leg();
                        let reset = Event::Reset { proxy: p, attempt };
                        self.queue.push(self.now + rtt, reset);
                        continue;
                    }
                    let reply_to = ReplyTo::Proxy { proxy: p, attempt };
                    let root = self.proxies[p as usize].open.get(&req).and_then(|o| o.root);
                    self.send_job(reply_to, instance, head, root);
                }
                Action::Mirror { endpoint, head, .. } => {
                    let ep = self.mesh.endpoint(endpoint);
                    let EndpointAddr::Sim(instance) = ep.addr else {
                        debug_assert!(false, "socket endpoint in a simulation");
                        continue;
                    };
                    let reply_to = ReplyTo::Mirror {
                        destination: ep.destination,
                        sent: self.now,
                    };
                    self.send_job(reply_to, instance, head, None);
                }
                Action::CloseConnection { conn } => {
                    self.proxies[p as usize].conns.remove(&conn);
                }
                // The instance keeps working on a cancelled attempt; the engine ignores its
                // late response. Forward and LocalReply carry nothing the model needs: the
                // request's `Complete` follows.
                Action::CancelAttempt { .. }
                | Action::Forward { .. }
                | Action::LocalReply { .. } => {}
                Action::Event(event) => self.metrics.record_event_from(p, self.now, &event),
                Action::Complete { req, outcome } => self.complete(p, req, outcome),
            }
        }
        if let Some(None) = &self.checks {
            if let Err(e) = self.proxies[p as usize].proxy.check_invariants() {
                self.checks = Some(Some(format!("proxy {p} at {:?}: {e}", self.now)));
            }
        }
        let slot = &mut self.proxies[p as usize];
        let want = slot.proxy.poll_timeout();
        if want != slot.armed {
            slot.armed = want;
            if let Some(at) = want {
                self.queue
                    .push(at.max(self.now), Event::Timer { proxy: p, at });
            }
        }
    }

    /// A request travels one network leg to `instance`.
    fn send_job(
        &mut self,
        reply_to: ReplyTo,
        instance: u32,
        head: RequestHead,
        root: Option<RequestId>,
    ) {
        let job = self.alloc_job(Job {
            reply_to,
            instance,
            head,
            step: 0,
            pending: 0,
            failed: false,
            root,
            dead: false,
        });
        let leg = match reply_to {
            ReplyTo::Proxy { .. } => self.leg(),
            ReplyTo::Mirror { .. } => self.mirror_leg(),
        };
        self.queue.push(self.now + leg, Event::Deliver { job });
    }

    fn complete(&mut self, p: u32, req: RequestId, outcome: Outcome) {
        let slot = &mut self.proxies[p as usize];
        let Some(open) = slot.open.remove(&req) else {
            debug_assert!(false, "outcome for unknown request {req:?}");
            return;
        };
        let owner = slot.owner;
        let latency = self.now.since(open.start);
        self.metrics.record_hop(&outcome, latency);
        match owner {
            Owner::Client { workload } => {
                self.metrics
                    .record_end_to_end(open.start, &outcome, latency);
                self.metrics.record_workload(workload, &outcome, latency);
                let inner_failed = self.inner_failed.remove(&req).is_some();
                if inner_failed && outcome.is_success() {
                    self.metrics.absorbed += 1;
                }
                let w = &mut self.workloads[workload as usize];
                if let Load::Closed { think, left } = &w.load {
                    let user = open.parent;
                    let done = left
                        .as_ref()
                        .is_some_and(|l| l.get(user as usize).is_none_or(|&n| n == 0));
                    if !self.stopped && !done {
                        // A user whose request was answered in no time (a local reply of its
                        // own proxy) and who does not think would loop forever at one instant;
                        // like any real client it takes at least a microsecond per request.
                        let mut pause = think.sample(&mut w.rng);
                        if pause.0 == 0 && latency.0 == 0 {
                            pause = proxy_engine::Nanos(MIN_CLIENT_TURN_NS);
                        }
                        self.queue
                            .push(self.now + pause, Event::UserSend { workload, user });
                    }
                }
            }
            Owner::Sidecar => {
                // A 4xx counts here too: a 404 `NR` or 429 `RL` inside the mesh is a failure
                // even when the caller carries on.
                let hop_failed = outcome.status == 0 || outcome.status >= 400;
                if let (true, Some(root)) = (hop_failed, open.root) {
                    self.inner_failed.insert(root, ());
                }
                if self.stopped {
                    return;
                }
                let job = open.parent;
                let Some(j) = self.jobs[job as usize].as_mut() else {
                    debug_assert!(false, "call finished for a freed job");
                    return;
                };
                j.failed |= !outcome.is_success();
                j.pending -= 1;
                if j.pending == 0 {
                    self.advance_job(job);
                }
            }
        }
    }

    fn alloc_job(&mut self, job: Job) -> u32 {
        match self.free_jobs.pop() {
            Some(i) => {
                self.jobs[i as usize] = Some(job);
                i
            }
            None => {
                self.jobs.push(Some(job));
                (self.jobs.len() - 1) as u32
            }
        }
    }

    fn deliver(&mut self, job: u32) {
        let Some(instance) = self.jobs[job as usize].as_ref().map(|j| j.instance) else {
            return;
        };
        if self.crashed(instance) {
            return self.reset_job(job);
        }
        if self.hung(instance) {
            return self.free_job(job); // accepted, never answered
        }
        if let Some(status) = self.error_burst(instance) {
            return self.respond(job, status);
        }
        let inst = &mut self.instances[instance as usize];
        let model = &self.models[inst.model as usize];
        if inst.busy < model.spec.workers {
            inst.busy += 1;
            inst.working.push(job);
            self.advance_job(job);
        } else if inst.queue.len() < model.spec.queue as usize {
            inst.queue.push_back(job);
        } else {
            // Queue full: the instance answers 503 at once.
            self.respond(job, 503);
        }
    }

    /// Runs the job's next call step through the instance's sidecar, or, when all calls are
    /// done, its own service time.
    fn advance_job(&mut self, job: u32) {
        let Some(j) = self.jobs[job as usize].as_mut() else {
            return;
        };
        if j.dead {
            return self.free_job(job); // its calls are done and nothing waits for it
        }
        let instance = j.instance;
        let inst = &mut self.instances[instance as usize];
        let model = &self.models[inst.model as usize];
        if let Some(step) = model.steps.get(j.step as usize) {
            let steps = model.steps.clone();
            let sidecar = inst.sidecar;
            let source = inst.name.clone();
            let incoming = j.head.headers.clone();
            let root = j.root;
            let step_index = j.step as usize;
            j.step += 1;
            // Set before issuing: calls may complete synchronously (e.g. 404 NR).
            j.pending = step.len() as u32;
            for call in &steps[step_index] {
                let mut head = call.clone();
                head.source = source.clone();
                if !incoming.is_empty() {
                    head.headers = propagate(&call.headers, &incoming);
                }
                self.issue(sidecar, head, job, Serves::Root(root));
            }
        } else {
            let service = model.spec.latency.sample(&mut inst.rng);
            let service = self.slowed(instance, service);
            self.queue.push(self.now + service, Event::Finish { job });
        }
    }

    fn finish_job(&mut self, job: u32) {
        let Some(j) = self.jobs[job as usize].as_ref() else {
            return;
        };
        if j.dead {
            return self.free_job(job);
        }
        let failed = j.failed;
        let instance = j.instance as usize;
        let inst = &mut self.instances[instance];
        let model = &self.models[inst.model as usize];
        let status = model::handler_status(failed, &model.spec, &mut inst.rng);
        debug_assert!(inst.busy > 0, "finishing on an idle instance");
        inst.busy -= 1;
        if let Some(i) = inst.working.iter().position(|w| *w == job) {
            inst.working.swap_remove(i);
        }
        let next = inst.queue.pop_front();
        self.respond(job, status);
        if let Some(next) = next {
            let inst = &mut self.instances[instance];
            inst.busy += 1;
            inst.working.push(next);
            self.advance_job(next);
        }
    }

    /// Sends the job's response back to its proxy (or records a mirror's) and frees the job.
    fn respond(&mut self, job: u32, status: u16) {
        let Some(j) = self.jobs[job as usize].take() else {
            return;
        };
        self.free_jobs.push(job);
        match j.reply_to {
            ReplyTo::Proxy { proxy, .. } if self.partitioned(proxy, j.instance) => {}
            ReplyTo::Proxy { proxy, attempt } => {
                let at = self.now + self.leg();
                let respond = Event::Respond {
                    proxy,
                    attempt,
                    status,
                };
                self.queue.push(at, respond);
            }
            ReplyTo::Mirror { destination, sent } => {
                let at = self.now + self.mirror_leg();
                let latency = at.since(sent);
                self.metrics.record_mirror(destination, status, latency);
            }
        }
    }

    /// Gives every instance its faults and schedules the starts of crashes and hangs.
    fn build_faults(&mut self, s: &Scenario) {
        for (i, faults) in model::instance_faults(s).into_iter().enumerate() {
            for f in &faults {
                let crash = matches!(f.kind, FaultKind::Crash);
                if (crash || matches!(f.kind, FaultKind::Hang)) && f.start <= self.deadline {
                    let instance = i as u32;
                    self.queue
                        .push(f.start, Event::FaultStart { instance, crash });
                }
            }
            self.instances[i].faults = faults;
        }
    }

    fn crashed(&self, instance: u32) -> bool {
        let faults = &self.instances[instance as usize].faults;
        model::has_active(faults, self.now, |k| matches!(k, FaultKind::Crash))
    }

    fn hung(&self, instance: u32) -> bool {
        let faults = &self.instances[instance as usize].faults;
        model::has_active(faults, self.now, |k| matches!(k, FaultKind::Hang))
    }

    /// Whether a partition cuts proxy `p`'s caller off from `instance`.
    fn partitioned(&self, p: u32, instance: u32) -> bool {
        let caller = &self.proxies[p as usize].caller;
        let faults = &self.instances[instance as usize].faults;
        model::has_active(
            faults,
            self.now,
            |k| matches!(k, FaultKind::Partition { from } if **from == **caller),
        )
    }

    /// An error burst's answer for a request reaching `instance` now, if one hits it.
    fn error_burst(&mut self, instance: u32) -> Option<u16> {
        let faults = &self.instances[instance as usize].faults;
        if faults.is_empty() {
            return None;
        }
        model::error_burst(faults, self.now, &mut self.fault_rng)
    }

    /// A service time with the instance's active latency and slow-start faults applied.
    fn slowed(&mut self, instance: u32, service: proxy_engine::Nanos) -> proxy_engine::Nanos {
        let faults = &self.instances[instance as usize].faults;
        if faults.is_empty() {
            return service;
        }
        model::slowed(faults, self.now, service, &mut self.fault_rng)
    }

    /// A crash or hang begins on `instance`: what it holds is reset (crash) or never answered
    /// (hang); a crash also closes every connection to it.
    fn fault_start(&mut self, instance: u32, crash: bool) {
        let inst = &mut self.instances[instance as usize];
        let working = std::mem::take(&mut inst.working);
        let queued: Vec<u32> = inst.queue.drain(..).collect();
        inst.busy = 0;
        for job in working {
            if crash {
                self.reset_reply(job);
            }
            if let Some(j) = self.jobs[job as usize].as_mut() {
                j.dead = true;
            }
        }
        for job in queued {
            if crash {
                self.reset_job(job);
            } else {
                self.free_job(job);
            }
        }
        if crash {
            self.close_connections_to(instance);
        }
    }

    /// Every proxy's connections to `instance` are closed by the peer.
    fn close_connections_to(&mut self, instance: u32) {
        for p in 0..self.proxies.len() {
            let slot = &mut self.proxies[p];
            let mut conns: Vec<ConnId> = slot
                .conns
                .iter()
                .filter(|(_, i)| **i == instance)
                .map(|(c, _)| *c)
                .collect();
            if conns.is_empty() {
                continue;
            }
            conns.sort_unstable();
            for conn in conns {
                slot.conns.remove(&conn);
                slot.proxy.handle_connection_closed(self.now, conn);
            }
            self.drain(p as u32);
        }
    }

    /// The job's sender sees its stream reset (after one network leg); a mirrored copy is
    /// dropped. The job itself is left to its owner.
    fn reset_reply(&mut self, job: u32) {
        let Some(j) = self.jobs[job as usize].as_ref() else {
            return;
        };
        if let ReplyTo::Proxy { proxy, attempt } = j.reply_to {
            let at = self.now + self.leg();
            self.queue.push(at, Event::Reset { proxy, attempt });
        }
    }

    /// Resets the job's sender and frees the job.
    fn reset_job(&mut self, job: u32) {
        self.reset_reply(job);
        self.free_job(job);
    }

    fn free_job(&mut self, job: u32) {
        if self.jobs[job as usize].take().is_some() {
            self.free_jobs.push(job);
        }
    }

    fn finish(mut self) -> RunMetrics {
        self.metrics.end_at(self.now);
        self.metrics.finish()
    }
}

/// A call's headers plus the incoming request's headers it does not set itself (the handler
/// propagates what it received, as Bookinfo's services propagate `end-user`).
fn propagate(own: &Headers, incoming: &Headers) -> Headers {
    let mut out: Vec<(Arc<str>, Arc<str>)> = own.to_vec();
    for (name, value) in incoming.iter() {
        if !own.iter().any(|(n, _)| n == name) {
            out.push((name.clone(), value.clone()));
        }
    }
    Arc::from(out)
}
