//! `meshtwin run --live`: a scenario on loopback. Every instance becomes a live modeled service
//! with its own sidecar (an engine driver and a listener), every open-loop workload a client
//! proxy fed by the load generator; after the run everything is stopped and the same report as a
//! simulation comes out: totals and time series from the load generators (what users saw),
//! routes, destinations, clusters and mirrors from every proxy's hop records.

use crate::config::Limits;
use crate::delivery::{LiveProbe, LiveRollout, Targets};
use crate::driver::{self, DriverOptions, Generation, ProxyHandle};
use crate::lab_gateways::{self, GatewayServer};
use crate::loadgen::{self, LoadOptions, Progress};
use crate::server::{self, Listener};
use crate::service::{Instance, InstanceModel};
use metrics::{Recorder, RunMetrics};
use proxy_engine::Time;
use sim_core::scenario::{FaultKind, Scenario, Workload};
use sim_core::timeline::Generations;
use sim_core::topology::{ProxySpec, Topology};
use sim_core::workload::Mix;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Why a live run could not happen.
#[derive(Debug, Error)]
pub enum LabError {
    /// A socket could not be bound.
    #[error("cannot bind a loopback socket: {0}")]
    Bind(#[from] std::io::Error),
    /// The mesh does not compile against the live endpoints.
    #[error("mesh config: {0}")]
    Mesh(#[from] proxy_engine::ConfigError),
    /// The scenario uses something live mode does not run.
    #[error("{0}")]
    Unsupported(String),
    /// A file the live proxies need cannot be used (a TLS origination PEM file).
    #[error("mesh config: {0}")]
    Files(String),
    /// The timeline does not apply (checked when the scenario is loaded).
    #[error("{0}")]
    Timeline(#[from] sim_core::timeline::TimelineError),
    /// The load generator failed (a task panicked).
    #[error("load generator: {0}")]
    Load(#[from] crate::loadgen::LoadError),
}

/// How the lab's load generators connect.
#[derive(Clone, Copy, Debug)]
pub struct Connections {
    /// Opened per workload before the first send.
    pub initial: usize,
    /// Most open at once per workload; past that, requests are dropped and counted.
    pub max: usize,
}

/// The scenario's services running live, each instance with its sidecar, and its gateway
/// proxies' server ports.
pub struct Services {
    /// The instances, in the simulator's order.
    pub instances: Vec<Arc<Instance>>,
    sidecars: Vec<(ProxyHandle, Listener)>,
    /// The gateway proxies' server ports the run uses.
    gateways: Vec<GatewayServer>,
    /// The compiled mesh over the live endpoints, and their addresses.
    pub generation: Generation,
    /// The timeline's later generations, each with when it is made.
    timeline: Vec<(Generation, Time)>,
    /// Every generation after the first as the report lists them (the rollout's come later).
    made: Vec<metrics::GenerationMade>,
    /// Tasks that crash and restart instances on schedule.
    crashes: Vec<tokio::task::JoinHandle<()>>,
    /// What the rollout's versions record into, when the scenario has a rollout.
    probe: Option<Arc<LiveProbe>>,
    /// The registry every generation is compiled against.
    registry: proxy_engine::Registry,
}

fn driver_options(
    proxy: &ProxySpec,
    seed: u64,
    s: &Scenario,
    probe: Option<Arc<LiveProbe>>,
) -> DriverOptions {
    DriverOptions {
        name: proxy.name.clone(),
        seed: proxy.seed(seed),
        max_response_bytes: Limits::default().max_response_bytes,
        access_log: false,
        window: Some(s.window),
        probe,
        listener: None,
    }
}

/// Starts every instance of `s` and its sidecar on loopback; the scenario's faults are timed
/// from now (crashes by a task that kills and restarts the instance). Partitions are
/// simulation-only.
pub async fn start_services(s: &Scenario, seed: u64) -> Result<Services, LabError> {
    if let Some(i) = s
        .faults
        .iter()
        .position(|f| matches!(f.kind, FaultKind::Partition { .. }))
    {
        return Err(LabError::Unsupported(format!(
            "faults[{i}]: network partitions are simulation-only for now (live mode runs \
             errors, latency, crash, hang and slow-start faults)"
        )));
    }
    let epoch = std::time::Instant::now();
    let topology = Topology::of(s);
    let mut instances = Vec::new();
    let mut faults = sim_core::model::instance_faults(s).into_iter();
    let probe = (s.rollout.as_ref()).map(|r| Arc::new(LiveProbe::new(r)));
    for spec in &topology.instances {
        let side = sim_core::delivery::side_of(s, spec.service, spec.version);
        let model = InstanceModel {
            name: spec.name(),
            version: spec.model.clone(),
            steps: sim_core::model::call_steps(s, spec.service, spec.version),
            faults: faults.next().unwrap_or_default(),
            probe: side.zip(probe.clone()),
        };
        instances.push(Instance::start(model, seed, epoch).await?);
    }
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.addr).collect();
    // Every generation of the timeline, compiled as the simulator compiles them; endpoint ids
    // are stable across them, so one address map serves all.
    let registry = topology.registry();
    let built = Generations::build(s, seed)?;
    // The last generation's ids cover every endpoint of the lineage.
    let last = &built.meshes[built.meshes.len() - 1];
    let endpoints = topology.endpoint_map(last);
    // The gateways start first: sidecars reach a gateway's service at its listener. A gateway
    // has no route to itself, so its own generation leaves its address out.
    let partial = Generation {
        mesh: built.meshes[0].clone(),
        addrs: endpoints.map(|&i| addrs.get(i as usize).copied()),
    };
    let gateways = lab_gateways::start(s, &topology, &partial, |p| {
        driver_options(p, seed, s, probe.clone())
    })
    .await?;
    let service_addr: BTreeMap<u32, SocketAddr> = (s.gateway_proxies.iter().enumerate())
        .filter_map(|(g, (name, gw))| {
            let port = gw.service.as_ref()?.port;
            let server = lab_gateways::find(&gateways, name, port)?;
            Some((g as u32, server.listener.addr))
        })
        .collect();
    let endpoint_addrs = endpoints.map(|&i| match topology.gateway_target(i) {
        Some(g) => service_addr.get(&g).copied(),
        None => addrs.get(i as usize).copied(),
    });
    let generations: Vec<Generation> = (built.meshes.iter())
        .map(|mesh| Generation {
            mesh: mesh.clone(),
            addrs: endpoint_addrs.clone(),
        })
        .collect();
    for g in &generations {
        crate::origination::check(&g.mesh).map_err(LabError::Files)?;
    }
    let generation = generations[0].clone();
    if let Some(p) = &probe {
        p.set_destinations(sim_core::delivery::destination_sides(s, &built.meshes[0]));
    }
    let mut sidecars = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        let Some(proxy) = topology.sidecar(i) else {
            return Err(LabError::Unsupported(format!(
                "instance {i} has no sidecar"
            )));
        };
        let options = driver_options(proxy, seed, s, probe.clone());
        let handle = driver::spawn(generation.clone(), proxy.role.clone(), options);
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = server::listen(any, handle.clone(), Limits::default(), None).await?;
        inst.set_sidecar(listener.addr);
        sidecars.push((handle, listener));
    }
    let instances: Vec<Arc<Instance>> = instances.into_iter().map(Arc::new).collect();
    let crashes = instances
        .iter()
        .flat_map(|inst| {
            inst.faults()
                .iter()
                .filter(|f| matches!(f.kind, FaultKind::Crash))
                .map(|f| crash(inst.clone(), epoch, f.start, f.end))
                .collect::<Vec<_>>()
        })
        .map(tokio::spawn)
        .collect();
    Ok(Services {
        instances,
        sidecars,
        gateways,
        generation,
        made: built.made(false),
        timeline: (generations.into_iter().zip(built.at)).skip(1).collect(),
        crashes,
        probe,
        registry,
    })
}

/// Kills `inst` at `start` and restarts it at `end` (times from `epoch`).
async fn crash(inst: Arc<Instance>, epoch: std::time::Instant, start: Time, end: Time) {
    tokio::time::sleep_until((epoch + Duration::from_nanos(start.0)).into()).await;
    inst.kill();
    if end.0 == u64::MAX {
        return;
    }
    tokio::time::sleep_until((epoch + Duration::from_nanos(end.0)).into()).await;
    // The port was just freed; if rebinding fails the instance stays down (and is counted so).
    let _ = inst.restart().await;
}

impl Services {
    /// Every sidecar's and gateway's hop records, merged.
    pub fn hops(&self, into: &mut Recorder) {
        for (h, _) in &self.sidecars {
            into.merge_hops(&h.snapshot());
        }
        for g in &self.gateways {
            into.merge_hops(&g.handle.snapshot());
        }
    }

    /// The driver of gateway `name`'s server `port`, and where it listens.
    fn gateway(&self, name: &str, port: u16) -> Option<&GatewayServer> {
        lab_gateways::find(&self.gateways, name, port)
    }

    /// Stops the sidecars (gracefully) and the instances.
    pub async fn stop(self) {
        for c in &self.crashes {
            c.abort();
        }
        for g in self.gateways {
            g.listener.shutdown().await;
        }
        for (_, l) in self.sidecars {
            l.shutdown().await;
        }
        for inst in &self.instances {
            inst.kill();
        }
        drop(self.instances);
    }
}

/// A workload's client proxy (none for a workload entering through a gateway: its load goes to
/// the gateway's listener), the load, and that load's own progress.
struct Client {
    own: Option<(ProxyHandle, Listener)>,
    load: LoadOptions,
    progress: Arc<Progress>,
}

/// How often a [`Watch`] sees the figures so far: every 2 s, as k6 evaluates thresholds
/// while a test runs (`thresholdsRate` in k6's `engine.go`).
pub const WATCH_PERIOD: Duration = Duration::from_secs(2);

/// Called every [`WATCH_PERIOD`] while a live run sends, with the figures so far (the same
/// assembly as the final report's) and the time since the load started; returning `true`
/// stops the load early, as [`Progress::stop`] does.
pub type Watch = Box<dyn FnMut(&RunMetrics, Duration) -> bool + Send>;

/// Runs scenario `s` live with `seed` and returns the metrics (the report's content).
pub async fn run(
    s: &Scenario,
    seed: u64,
    connections: Connections,
    progress: Arc<Progress>,
) -> Result<RunMetrics, LabError> {
    run_watched(s, seed, connections, progress, None).await
}

/// [`run`], with a [`Watch`] over the figures while the load runs. `progress` shows the sums
/// over every workload; calling its [`Progress::stop`] stops every workload's load.
pub async fn run_watched(
    s: &Scenario,
    seed: u64,
    connections: Connections,
    progress: Arc<Progress>,
    mut watch: Option<Watch>,
) -> Result<RunMetrics, LabError> {
    let services = start_services(s, seed).await?;
    let topology = Topology::of(s);
    let mut clients = Vec::new();
    for (i, w) in s.workload.iter().enumerate() {
        let Workload::OpenLoop(o) = w else {
            return Err(LabError::Unsupported(format!(
                "workload[{i}]: live mode runs open-loop workloads only (closed-loop users are simulation-only for now)"
            )));
        };
        let Some(proxy) = topology.client(i) else {
            return Err(LabError::Unsupported(format!(
                "workload[{i}] has no client proxy"
            )));
        };
        let name = proxy.name.clone();
        let (own, target, tls) = match &o.via {
            Some(via) => match services.gateway(&via.gateway, via.port) {
                Some(g) => {
                    let tls = match via.tls {
                        true => Some(lab_gateways::client_tls(&o.host)?),
                        false => None,
                    };
                    (None, g.listener.addr, tls)
                }
                None => {
                    return Err(LabError::Unsupported(format!(
                        "workload[{i}].via: gateway `{}` port {} is not running",
                        via.gateway, via.port
                    )))
                }
            },
            None => {
                let options = driver_options(proxy, seed, s, services.probe.clone());
                let handle =
                    driver::spawn(services.generation.clone(), proxy.role.clone(), options);
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                let listener = server::listen(any, handle.clone(), Limits::default(), None).await?;
                let addr = listener.addr;
                (Some((handle, listener)), addr, None)
            }
        };
        let load = LoadOptions {
            target,
            tls,
            mix: match o.via.as_ref().is_some_and(|v| v.tls) {
                true => Mix::new(&o.host, &name, &o.requests).with_scheme("https"),
                false => Mix::new(&o.host, &name, &o.requests),
            },
            rate: o.rate,
            schedule: o.schedule.clone(),
            arrivals: o.arrivals,
            duration: Duration::from_nanos(s.duration.0),
            drain: Duration::from_nanos(s.drain.0),
            connections: connections.initial,
            max_connections: connections.max,
            seed: sim_core::rng::derive_seed(seed, &format!("workload/{name}")),
            window: s.window,
        };
        clients.push(Client {
            own,
            load,
            progress: Arc::new(Progress::default()),
        });
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let run = loadgen::run(c.load.clone(), c.progress.clone());
        set.spawn(async move { (i, run.await) });
    }
    let started = std::time::Instant::now();
    let pushes = push_timeline(s, seed, &services, &clients, started);
    let rollout = services.probe.clone().and_then(|probe| {
        let targets = Targets {
            proxies: proxy_handles(&topology, &services, &clients),
            first: services.generation.clone(),
            registry: services.registry.clone(),
            scaled: sim_core::delivery::scaled_registries(s, &topology),
            instances: (sim_core::delivery::instance_sides(s, &topology).into_iter())
                .zip(services.instances.iter().cloned())
                .collect(),
        };
        LiveRollout::start(s, seed, probe, targets, started)
    });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_watch = started + WATCH_PERIOD;
    // Each workload's load result, in the scenario's order.
    let mut results: Vec<(usize, RunMetrics)> = Vec::new();
    let mut failure = None;
    loop {
        tokio::select! {
            r = set.join_next() => match r {
                None => break,
                Some(Ok((i, Ok(run)))) => results.push((i, run.metrics)),
                Some(Ok((_, Err(e)))) => failure = failure.or(Some(e)),
                Some(Err(e)) => {
                    failure = failure.or(Some(crate::loadgen::LoadError::Task(e.to_string())));
                }
            },
            _ = tick.tick() => {
                sum_progress(&clients, &progress);
                let now = std::time::Instant::now();
                if let Some(w) = watch.as_mut().filter(|_| now >= next_watch && !progress.stopped()) {
                    next_watch += WATCH_PERIOD;
                    let figures: Vec<(usize, RunMetrics)> = (clients.iter().enumerate())
                        .map(|(i, c)| (i, c.progress.snapshot().into_metrics()))
                        .collect();
                    let m = assemble(s, &clients, &services, figures, rollout.as_ref());
                    if w(&m, now - started) {
                        progress.stop();
                    }
                }
                if progress.stopped() {
                    for c in &clients {
                        c.progress.stop();
                    }
                }
            }
        }
    }
    sum_progress(&clients, &progress);
    // Requests the clients cut off at the drain deadline closed their connections; give the
    // client proxies a moment to record those cancels (`DC`) so the route tables count them.
    results.sort_by_key(|r| r.0);
    let generated: u64 = results.iter().map(|(_, m)| m.generated).sum();
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let seen: u64 = (clients.iter().filter_map(|c| c.own.as_ref()))
            .map(|(h, _)| h)
            .chain(services.gateways.iter().map(|g| &g.handle))
            .map(|h| h.snapshot().finish().totals.count)
            .sum();
        if seen >= generated || tokio::time::Instant::now() >= settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in &pushes {
        p.abort();
    }
    let mut m = assemble(s, &clients, &services, results, rollout.as_ref());
    m.rollout = rollout.map(LiveRollout::finish);
    for (_, listener) in clients.into_iter().filter_map(|c| c.own) {
        listener.shutdown().await;
    }
    services.stop().await;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(m)
}

/// Pushes the timeline's generations to every proxy (sidecars, then clients, as the
/// simulator orders them) after each proxy's own `push_delay` draws, from the same streams
/// as the simulator's (`push/<proxy>`), timed from `epoch`. A proxy already holding a later
/// generation skips an earlier one arriving late.
fn push_timeline(
    s: &Scenario,
    seed: u64,
    services: &Services,
    clients: &[Client],
    epoch: std::time::Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    if services.timeline.is_empty() {
        return Vec::new();
    }
    let topology = Topology::of(s);
    let mut tasks = Vec::new();
    for (name, handle) in proxy_handles(&topology, services, clients) {
        let mut rng = sim_core::rng::stream(seed, &format!("push/{name}"));
        let mut due: Vec<(std::time::Instant, Generation)> = (services.timeline.iter())
            .map(|(g, at)| {
                let delay = s.push_delay.sample(&mut rng);
                (epoch + Duration::from_nanos((*at + delay).0), g.clone())
            })
            .collect();
        due.sort_by_key(|(t, _)| *t);
        tasks.push(tokio::spawn(async move {
            for (t, g) in due {
                tokio::time::sleep_until(t.into()).await;
                if handle.mesh().generation() < g.mesh.generation() {
                    // A later generation of the same lineage: the driver takes it.
                    let _ = handle.reload(g);
                }
            }
        }));
    }
    tasks
}

/// Every running proxy driver with its proxy's name, in the simulator's order (sidecars,
/// clients, gateways); a gateway proxy running several server ports is listed once per port,
/// each drawing the proxy's own push delays.
fn proxy_handles(
    topology: &Topology,
    services: &Services,
    clients: &[Client],
) -> Vec<(String, ProxyHandle)> {
    let sidecars = (services.sidecars.iter().enumerate())
        .filter_map(|(i, (h, _))| Some((topology.sidecar(i)?.name.clone(), h.clone())));
    let clients = (clients.iter().enumerate()).filter_map(|(i, c)| {
        let (h, _) = c.own.as_ref()?;
        Some((topology.client(i)?.name.clone(), h.clone()))
    });
    let gateways = (services.gateways.iter()).map(|g| (g.name.clone(), g.handle.clone()));
    sidecars.chain(clients).chain(gateways).collect()
}

/// The caller's progress: the sums of the workloads' own.
fn sum_progress(clients: &[Client], into: &Progress) {
    use std::sync::atomic::Ordering::Relaxed;
    let sum = |f: &dyn Fn(&Progress) -> u64| clients.iter().map(|c| f(&c.progress)).sum::<u64>();
    into.sent.store(sum(&|p| p.sent.load(Relaxed)), Relaxed);
    into.done.store(sum(&|p| p.done.load(Relaxed)), Relaxed);
    into.errors.store(sum(&|p| p.errors.load(Relaxed)), Relaxed);
    into.dropped
        .store(sum(&|p| p.dropped.load(Relaxed)), Relaxed);
}

/// The report's content: totals, workloads and end-to-end series from the load generators
/// (`loads`, each workload's figures by index), routes, destinations, clusters and events
/// from every proxy's hop records.
fn assemble(
    s: &Scenario,
    clients: &[Client],
    services: &Services,
    mut loads: Vec<(usize, RunMetrics)>,
    rollout: Option<&LiveRollout>,
) -> RunMetrics {
    loads.sort_by_key(|r| r.0);
    let mut hops = Recorder::new(services.generation.mesh.clone(), s.window);
    let made = rollout.map(|r| crate::lock(&r.record).meshes.clone());
    let meshes =
        (services.timeline.iter().map(|(g, _)| g.mesh.clone())).chain(made.into_iter().flatten());
    for mesh in meshes {
        // Compiled each from the one before (`Generations::build`, the rollout's task).
        let added = hops.add_generation(mesh);
        debug_assert!(added.is_ok(), "{added:?}");
    }
    for (h, _) in clients.iter().filter_map(|c| c.own.as_ref()) {
        hops.merge_hops(&h.snapshot());
    }
    services.hops(&mut hops);
    let mut m = hops.finish();
    m.generations = services.made.clone();
    if let Some(r) = rollout {
        let record = crate::lock(&r.record);
        m.generations
            .extend(record.generations.iter().map(|g| metrics::GenerationMade {
                number: g.number,
                at: g.at,
                cause: "rollout".into(),
            }));
    }
    m.workloads = loads
        .iter()
        .map(|(i, r)| (s.workload[*i].name(*i), r.totals.clone()))
        .collect();
    let mut load = loads.into_iter().map(|(_, r)| r);
    if let Some(first) = load.next() {
        m.generated = first.generated;
        m.dropped = first.dropped;
        m.totals = first.totals;
        // End-to-end windows from the load generators; events and hops per destination from
        // the proxies (whose clocks started when they did, a moment before the load).
        m.series.merge(&first.series);
        for other in load {
            m.generated += other.generated;
            m.dropped += other.dropped;
            m.totals.merge(&other.totals);
            m.series.merge(&other.series);
        }
    }
    m
}
