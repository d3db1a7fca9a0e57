//! The scenario file format (RON): one `Scenario` holds the seed, run length, modeled services,
//! the mesh config (proxy-engine's types), the workload, faults over time, and a timeline of
//! mesh config changes. Every struct denies unknown fields; durations are strings such as `"250ms"`.

use crate::dist::Dist;
use proxy_engine::{MeshConfig, Nanos};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole simulation scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports; defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    /// The seed every random stream derives from (`--seed` overrides it).
    #[serde(default)]
    pub seed: u64,
    /// How long the workload generates requests.
    pub duration: Nanos,
    /// After `duration`, how long in-flight requests may take to finish before they are
    /// cancelled (recorded with flag `DC`). Default 30 s.
    #[serde(default = "default_drain")]
    pub drain: Nanos,
    /// Time-series window length. Default 1 s.
    #[serde(default = "default_window")]
    pub window: Nanos,
    /// Network between hops.
    #[serde(default)]
    pub network: Network,
    /// Modeled services by name.
    #[serde(deserialize_with = "proxy_engine::unique::deserialize")]
    pub services: BTreeMap<String, Service>,
    /// Traffic policy.
    #[serde(default)]
    pub mesh: MeshConfig,
    /// Gateway proxies (Istio's `istio-ingressgateway` deployment) by name, each a proxy of
    /// its own that the mesh's `Gateway` objects select by label; workloads enter through one
    /// with `via`.
    #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
    pub gateway_proxies: BTreeMap<String, GatewayProxy>,
    /// Load sources.
    pub workload: Vec<Workload>,
    /// Faults over time, applied by the modeled instances.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// CI gates checked against the run's report, k6-style expressions such as
    /// `"p99_ms{destination=reviews/v2} < 250"` (the grammar is `reports::gate`'s); a breach
    /// makes `meshtwin run` exit 99.
    #[serde(default)]
    pub thresholds: Vec<String>,
    /// Mesh config changes at set times, in order (see [`TimelineEntry`]).
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// How long each proxy takes to receive a config change (istiod pushing to a sidecar),
    /// drawn per proxy and change. Default 0: every proxy at once.
    #[serde(default)]
    pub push_delay: Dist,
    /// A progressive delivery of one service's new version, driven by a Flagger or Argo
    /// Rollouts controller in the run (see the `rollout` crate).
    #[serde(default)]
    pub rollout: Option<rollout::RolloutSpec>,
}

/// One config change at a simulated time. Every change makes a new config generation
/// (the previous one with the change applied); each proxy receives it after its own draw of
/// `push_delay`, and a proxy that already holds a later generation ignores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    /// When the change is made (before `push_delay`).
    pub at: Nanos,
    /// What changes.
    pub change: Change,
}

/// A mesh config change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A host's route weights by subset, as Flagger and Argo Rollouts patch them: the routes
    /// (all of the host's VirtualService, or the one named `route`) get one destination per
    /// subset listed, weighted as given (a weight may be 0). With no VirtualService for the
    /// host, one is made with a single route.
    SetWeights {
        /// The service whose traffic is split.
        host: String,
        /// Only the route of this name (`HttpRoute.name`). Default: every route.
        #[serde(default)]
        route: Option<String>,
        /// Weight by subset name; they must add up to 100.
        #[serde(deserialize_with = "proxy_engine::unique::deserialize")]
        weights: BTreeMap<String, u32>,
    },
    /// Adds a config object, or replaces the one with its identity (a VirtualService by its
    /// `name`, else its first host; a DestinationRule by its `host`).
    Apply(MeshObject),
    /// Removes a config object, named as `Apply` identifies it.
    Remove(MeshObjectRef),
    /// Sets a version's instance count, as a Deployment's replicas. New instances join the
    /// service's endpoints once ready (after their own draw of `startup`); removed ones (the
    /// newest first) leave the endpoints at once and drain: they serve what reaches them for
    /// `grace`, then stop (connections refused, requests still held reset).
    Scale {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// Instances from now on.
        instances: u32,
        /// Each new instance's time to become ready. Default 0.
        #[serde(default)]
        startup: Dist,
        /// How long a removed instance drains (Kubernetes' `terminationGracePeriodSeconds`).
        /// Default 30 s.
        #[serde(default = "default_grace")]
        grace: Nanos,
    },
    /// Deploys a new version of a service; its instances join the endpoints once ready.
    AddVersion {
        /// The service.
        service: String,
        /// The new version's name (its `version` label).
        version: String,
        /// Its model, `instances` included.
        spec: Version,
        /// Each instance's time to become ready. Default 0.
        #[serde(default)]
        startup: Dist,
    },
    /// Removes a version: all its instances leave the endpoints and drain, as `Scale` to 0.
    RemoveVersion {
        /// The service.
        service: String,
        /// The version.
        version: String,
        /// How long its instances drain. Default 30 s.
        #[serde(default = "default_grace")]
        grace: Nanos,
    },
}

fn default_grace() -> Nanos {
    Nanos::from_secs(30)
}

/// A config object a timeline applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MeshObject {
    /// A VirtualService.
    VirtualService(proxy_engine::config::VirtualService),
    /// A DestinationRule.
    DestinationRule(Box<proxy_engine::config::DestinationRule>),
}

/// A config object by identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MeshObjectRef {
    /// The VirtualService of this name (or, unnamed, first host).
    VirtualService(String),
    /// The DestinationRule of this host.
    DestinationRule(String),
}

impl Scenario {
    /// Modeled instances in all services and versions.
    pub fn instance_count(&self) -> u64 {
        self.services
            .values()
            .flat_map(|svc| svc.versions.values())
            .map(|v| u64::from(v.instances))
            .sum()
    }
}

fn default_drain() -> Nanos {
    Nanos::from_secs(30)
}

fn default_window() -> Nanos {
    Nanos::from_secs(1)
}

/// The network between a proxy and the instance it sends to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency of each leg (request out, response back; a new connection costs one
    /// round trip). Default 0.
    #[serde(default)]
    pub latency: Dist,
}

/// A modeled service: its versions and what its handler calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Versions by name (the `version` label of their instances).
    #[serde(deserialize_with = "proxy_engine::unique::deserialize")]
    pub versions: BTreeMap<String, Version>,
    /// What the handler does, in order, before its own service time (`latency`): outbound
    /// calls, each through the calling instance's sidecar, and its own work between them.
    /// A version's `calls` replaces this.
    #[serde(default)]
    pub calls: Vec<CallStep>,
    /// Outside the mesh (Istio `MESH_EXTERNAL`: an external API): no sidecar, so it makes no
    /// calls; sidecars reach it as the outbound traffic policy and ServiceEntries say.
    /// Default false.
    #[serde(default)]
    pub external: bool,
}

/// One version of a service: identical instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Number of instances (endpoints).
    pub instances: u32,
    /// Requests an instance serves at once; a worker is held for the whole handler, calls
    /// included. Default 1.
    #[serde(default = "one")]
    pub workers: u32,
    /// Requests an instance queues (FIFO) when all workers are busy; beyond that it answers
    /// 503 at once. Default 1000.
    #[serde(default = "default_queue")]
    pub queue: u32,
    /// Service time of the handler's own work.
    pub latency: Dist,
    /// Probability that a handled request answers `error_status` instead of 200. Default 0.
    #[serde(default)]
    pub errors: f64,
    /// Status of a modeled error. Default 500.
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// This version's own call steps, replacing the service's (Bookinfo's reviews v1 calls
    /// nothing, v2 and v3 call ratings). Default: the service's.
    #[serde(default)]
    pub calls: Option<Vec<CallStep>>,
}

fn one() -> u32 {
    1
}

fn default_queue() -> u32 {
    1000
}

fn default_error_status() -> u16 {
    500
}

/// One step of a handler's outbound calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum CallStep {
    /// One call, waited for before the next step.
    Call(Call),
    /// Several calls issued together; the step ends when all have answered.
    Parallel(Vec<Call>),
    /// The handler's own work for a time drawn from the distribution (holding its worker),
    /// before, between or after calls.
    Work(Dist),
}

impl CallStep {
    /// The calls the step makes (none for `Work`).
    pub fn calls(&self) -> &[Call] {
        match self {
            CallStep::Call(c) => std::slice::from_ref(c),
            CallStep::Parallel(cs) => cs,
            CallStep::Work(_) => &[],
        }
    }
}

impl Service {
    /// The steps `version`'s handler runs: its own `calls`, else the service's.
    pub fn steps_of(&self, version: &str) -> &[CallStep] {
        (self.versions.get(version))
            .and_then(|v| v.calls.as_deref())
            .unwrap_or(&self.calls)
    }

    /// Every step any version runs: the service's, then each version's own.
    pub fn all_steps(&self) -> impl Iterator<Item = &CallStep> {
        (self.calls.iter()).chain(
            self.versions
                .values()
                .flat_map(|v| v.calls.iter().flatten()),
        )
    }
}

/// An outbound call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// Service to call.
    pub host: String,
    /// Request path. Default `/`.
    #[serde(default = "root_path")]
    pub path: String,
    /// Request method. Default `GET`.
    #[serde(default = "get")]
    pub method: String,
    /// Extra headers.
    #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
    pub headers: BTreeMap<String, String>,
    /// Probability (0–1) that the handler makes the call at all. Default 1.
    #[serde(default = "certain")]
    pub probability: f64,
    /// The application's own timeout for one try of the call (its HTTP client's, as
    /// Bookinfo's productpage gives reviews 3 s): a try still unanswered then is abandoned
    /// (its sidecar sees the client go, `DC`) and counts as failed. Default none.
    #[serde(default)]
    pub timeout: Option<Nanos>,
    /// The application's own retries of a failed try (no response, a 5xx, or its timeout);
    /// they come on top of any the mesh makes. Default 0.
    #[serde(default)]
    pub retries: u32,
    /// What the handler does when the call still fails after its retries. Default `Fail`.
    #[serde(default)]
    pub on_failure: OnFailure,
}

fn certain() -> f64 {
    1.0
}

/// What a handler does when an outbound call fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OnFailure {
    /// Answer 500 once its steps are done.
    #[default]
    Fail,
    /// Carry on and answer as if the call had succeeded (a page with a part missing, as
    /// Bookinfo's productpage shows "reviews unavailable").
    Degrade,
}

fn root_path() -> String {
    "/".into()
}

fn get() -> String {
    "GET".into()
}

/// A gateway proxy: one Envoy in gateway mode, with the labels `Gateway` selectors pick it
/// by (for example `{"istio": "ingressgateway"}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayProxy {
    /// Its labels.
    #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
    pub labels: BTreeMap<String, String>,
    /// The mesh service in front of it, for a gateway that sidecars send to (an egress
    /// gateway, as `istio-egressgateway` is): routes name it as a destination host.
    #[serde(default)]
    pub service: Option<GatewayService>,
}

impl GatewayProxy {
    /// The `Gateway` server of this proxy on `port` in `mesh`: the first server on that port
    /// of a `Gateway` whose selector its labels satisfy.
    pub fn server<'a>(
        &self,
        mesh: &'a proxy_engine::MeshConfig,
        port: u16,
    ) -> Option<&'a proxy_engine::config::Server> {
        let selects = |gw: &&proxy_engine::config::Gateway| {
            gw.selector
                .iter()
                .all(|(k, v)| self.labels.get(k) == Some(v))
        };
        (mesh.gateways.iter().filter(selects))
            .flat_map(|gw| gw.servers.iter())
            .find(|sv| sv.port.number == port)
    }
}

/// The mesh service of a gateway proxy: sidecars reach the gateway's server on `port` by this
/// name (a Kubernetes Service in front of the gateway pod, as Istio installs
/// `istio-egressgateway`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayService {
    /// The service name (unique among the scenario's services).
    pub name: String,
    /// The `Gateway` server port its requests arrive on. Default 80.
    #[serde(default = "default_port")]
    pub port: u16,
}

/// Where a workload's requests enter the mesh when they come from outside it: a gateway
/// proxy's server port. The client sits next to the gateway (no network leg, no sidecar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The gateway proxy (a key of `gateway_proxies`).
    pub gateway: String,
    /// The server port, as the `Gateway` writes it. Default 80.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The client speaks TLS (an `HTTPS` server; requests have scheme `https`). Default false.
    #[serde(default)]
    pub tls: bool,
}

fn default_port() -> u16 {
    80
}

/// A load source. Each workload has its own client proxy (named after the workload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Workload {
    /// Requests arrive on their own schedule, whatever the response times (like wrk2/Fortio
    /// with a fixed rate).
    OpenLoop(OpenLoop),
    /// A fixed number of users, each sending, waiting for the answer, thinking, and sending
    /// again.
    ClosedLoop(ClosedLoop),
}

/// An open-loop workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLoop {
    /// Name (client proxy and RNG stream); default `load-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Service the requests are for (the `Host` header; at a gateway, any name).
    pub host: String,
    /// Enter through a gateway proxy instead of the workload's own client proxy.
    #[serde(default)]
    pub via: Option<Entry>,
    /// Requests per second at time 0.
    pub rate: f64,
    /// Changes of rate over time, in time order.
    #[serde(default)]
    pub schedule: Vec<RateChange>,
    /// How arrivals are spaced. Default `Poisson`.
    #[serde(default)]
    pub arrivals: Arrivals,
    /// Weighted request mix. Default: `GET /`.
    #[serde(default)]
    pub requests: Vec<RequestSpec>,
}

/// A closed-loop workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedLoop {
    /// Name (client proxy and RNG stream); default `load-<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Service the requests are for (the `Host` header; at a gateway, any name).
    pub host: String,
    /// Enter through a gateway proxy instead of the workload's own client proxy.
    #[serde(default)]
    pub via: Option<Entry>,
    /// Concurrent users; all start at `start`.
    pub users: u32,
    /// When the users send their first requests. Default 0.
    #[serde(default)]
    pub start: Nanos,
    /// Requests each user sends before it stops, as fortio's `-n` split over its `-c`
    /// connections or k6's `per-vu-iterations` executor. Default: no limit (users send until
    /// the load phase ends).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Pause between an answer and the user's next request. Default 0.
    #[serde(default)]
    pub think: Dist,
    /// Weighted request mix. Default: `GET /`.
    #[serde(default)]
    pub requests: Vec<RequestSpec>,
}

/// How open-loop arrivals are spaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process).
    #[default]
    Poisson,
    /// Evenly spaced at 1/rate.
    Constant,
}

/// A change of an open-loop rate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum RateChange {
    /// Jump to `rate` at `at`.
    Step {
        /// When.
        at: Nanos,
        /// New requests per second.
        rate: f64,
    },
    /// Change linearly from the rate in force at `from` to `rate` at `to`.
    Ramp {
        /// Start of the ramp.
        from: Nanos,
        /// End of the ramp.
        to: Nanos,
        /// Requests per second reached at `to`.
        rate: f64,
    },
}

/// One entry of a request mix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Relative weight in the mix. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Method. Default `GET`.
    #[serde(default = "get")]
    pub method: String,
    /// Path (with any query string). Default `/`.
    #[serde(default = "root_path")]
    pub path: String,
    /// Headers.
    #[serde(default, deserialize_with = "proxy_engine::unique::deserialize")]
    pub headers: BTreeMap<String, String>,
}

impl Workload {
    /// The workload's name, given its index in the scenario.
    pub fn name(&self, index: usize) -> String {
        let name = match self {
            Workload::OpenLoop(w) => &w.name,
            Workload::ClosedLoop(w) => &w.name,
        };
        name.clone().unwrap_or_else(|| format!("load-{index}"))
    }

    /// The service the workload targets.
    pub fn host(&self) -> &str {
        match self {
            Workload::OpenLoop(w) => &w.host,
            Workload::ClosedLoop(w) => &w.host,
        }
    }

    /// The gateway the workload enters through, if any.
    pub fn via(&self) -> Option<&Entry> {
        match self {
            Workload::OpenLoop(w) => w.via.as_ref(),
            Workload::ClosedLoop(w) => w.via.as_ref(),
        }
    }

    /// The request mix as written (possibly empty, meaning `GET /`).
    pub fn requests(&self) -> &[RequestSpec] {
        match self {
            Workload::OpenLoop(w) => &w.requests,
            Workload::ClosedLoop(w) => &w.requests,
        }
    }
}

/// A fault over time: what goes wrong, where, from when and for how long. Faults are data the
/// model applies to its instances; the engine only sees their effects (errors, slowness,
/// refused or silent connections).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// The instances it hits.
    pub target: FaultTarget,
    /// When it starts. Default 0.
    #[serde(default)]
    pub start: Nanos,
    /// How long it lasts. Default: to the end of the run.
    #[serde(default)]
    pub length: Option<Nanos>,
    /// What goes wrong.
    pub kind: FaultKind,
}

/// Which instances a fault hits: a service, one version of it, or one instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultTarget {
    /// The service.
    pub service: String,
    /// Only this version. Default: all versions.
    #[serde(default)]
    pub version: Option<String>,
    /// Only this instance index (within the version, or within the service's instances in
    /// version order when no version is given). Default: all instances.
    #[serde(default)]
    pub instance: Option<u32>,
}

/// What goes wrong during a fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultKind {
    /// Each request reaching the instance is answered `status` at once with this probability
    /// (an error burst: a bad deploy, a failing dependency).
    Errors {
        /// Probability (0–1).
        probability: f64,
        /// Status answered. Default 503.
        #[serde(default = "default_fault_status")]
        status: u16,
    },
    /// Extra service time added to every request the instance finishes.
    Latency(Dist),
    /// The instance is down: new connections are refused (connect-failure, `UF`), requests on
    /// open connections and those in its queue are reset.
    Crash,
    /// The instance accepts connections and requests but never answers while the fault lasts;
    /// what it held when the fault started is never answered either.
    Hang,
    /// The network between the calling service or workload `from` and the target drops
    /// everything: connects time out, requests and responses are lost.
    Partition {
        /// Calling service or workload name.
        from: String,
    },
    /// The instance starts slow: service time × `factor` at the fault's start, falling
    /// linearly to × 1 at its end (JIT warm-up, cold caches).
    SlowStart {
        /// Slowdown at the start (≥ 1).
        factor: f64,
    },
}

fn default_fault_status() -> u16 {
    503
}
