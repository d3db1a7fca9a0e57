//! The per-proxy state machine (one per sidecar, gateway or load-generator client).
//!
//! # Driver contract
//!
//! * Inputs are `handle_*` calls, each with `now`, which must never go backwards.
//! * After **every** input, drain `poll_action` until it returns `None` and perform the actions
//!   in order; then (re)arm a single timer at `poll_timeout` and call `handle_timeout` when it
//!   fires (a late or spurious call is harmless).
//! * Every `handle_request` ends in exactly one `Action::Complete` for that request, possibly
//!   within the same call.
//! * `Connect` is answered by `handle_connected` or `handle_connect_failed` (unless the engine
//!   gives up first — connect timeout — and sends `CloseConnection`; a late answer is then
//!   ignored). A `Send` is answered by at most one `handle_response_head` and exactly one
//!   `handle_attempt_end`, unless the engine cancels the attempt first (`CancelAttempt`), after
//!   which reports on that attempt are ignored. `Mirror` copies are fire-and-forget.
//!
//! # Request path
//!
//! match route (none → 404 `NR`) → local rate limits, proxy then route (429 `RL`) → fault
//! injection (delay `DI`, then abort `FI`, drawn independently) → redirect / direct response,
//! or: weighted cluster pick (undefined subset → 503 `NC`) → rewrites and header operations →
//! mirrors → route timeout starts → load balancer over non-ejected hosts (none → 503 `UH`) →
//! connection pool and circuit breakers (overflow → 503 `UO`, never retried) → send → on a
//! failure (connect failure `UF`, reset `UR`, per-try timeout `UT`, retriable status) the retry
//! policy decides: backoff and a new try on another host, or the failure is final (`URX` when
//! retries ran out) → forward the response. The route timeout (504 `UT`) ends the request
//! wherever it is. Every upstream result feeds the cluster's outlier detector.
//!
//! The proxy owns its state and a ChaCha RNG seeded by the driver; it never reads a clock,
//! spawns, or touches a socket.

use crate::idmap::IdMap;
use crate::lb::LbPolicy;
use crate::matching::MatchInput;
use crate::mesh::{Cluster, ClusterId, CompiledMesh, Mirror, RouteAction, RouteId};
use crate::outlier::{Detector, OutlierChange};
use crate::policy::{AttemptFailure, RetryPolicy};
use crate::pool::{Pool, PoolEvent};
use crate::ratelimit::TokenBucket;
use crate::registry::EndpointId;
use crate::rewrite::{forwarded_head, redirect_location};
use crate::time::{Nanos, Time};
use crate::timers::Timers;
use crate::types::{
    Action, AttemptEnd, AttemptId, ConnId, ConnectFailure, EngineEvent, Outcome, RequestHead,
    RequestId, ResponseFlags, ResponseHead,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

/// Salt of the mirror stream's seed.
const MIRROR_STREAM: u64 = 0x6d69_7272_6f72; // "mirror"
/// Salt of the retry stream's seed (backoff jitter).
const RETRY_STREAM: u64 = 0x0072_6574_7279; // "retry"

/// What kind of proxy this is; informs defaults and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyRole {
    /// The outbound side of a service's sidecar.
    Sidecar {
        /// The service the sidecar belongs to.
        service: String,
    },
    /// A gateway: the mesh's entry (ingress) or exit (egress) point.
    Gateway {
        /// The gateway's name.
        name: String,
    },
    /// The client side of a load generator (a workload's own outbound proxy).
    Client {
        /// The workload's name.
        name: String,
    },
}

/// Where a request would be sent (see `Proxy::decide`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No route matches: 404 `NR`.
    NoRoute,
    /// The route answers itself (redirect or direct response).
    LocalReply {
        /// The matched route.
        route: RouteId,
    },
    /// The weighted pick landed on an undefined subset: 503 `NC`.
    NoCluster {
        /// The matched route.
        route: RouteId,
    },
    /// The cluster has no endpoint: 503 `UH`.
    NoEndpoint {
        /// The matched route.
        route: RouteId,
        /// The picked cluster.
        cluster: ClusterId,
    },
    /// Forwarded to this endpoint.
    Endpoint {
        /// The matched route.
        route: RouteId,
        /// The picked cluster.
        cluster: ClusterId,
        /// The picked endpoint.
        endpoint: EndpointId,
    },
}

/// A request in flight.
#[derive(Debug)]
struct Request {
    /// The mesh the request was matched under: its route and cluster ids are this mesh's, so
    /// a reload never changes what an in-flight request does.
    config: Arc<CompiledMesh>,
    /// The request as received, then (once routed) as forwarded.
    head: RequestHead,
    route: Option<RouteId>,
    /// Which match block of the route matched (for prefix rewrites).
    block: Option<u32>,
    cluster: Option<ClusterId>,
    endpoint: Option<EndpointId>,
    attempts: u32,
    /// The attempt in flight, if any.
    attempt: Option<AttemptId>,
    status: Option<u16>,
    /// Flags gathered on the way (`DI`, `URX`).
    flags: ResponseFlags,
    /// Held by a fault delay; `Some(abort)` says what to do when it ends.
    delayed: Option<Option<u16>>,
    /// The route's retry policy (set at dispatch).
    retry: Option<Arc<RetryPolicy>>,
    retries_left: u32,
    /// Current backoff interval.
    interval: Nanos,
    /// Hosts already tried (filled only when a retry happens).
    tried: Vec<EndpointId>,
    /// Holds one of the cluster's outstanding-retry slots (from the retry decision until the
    /// next decision or the end of the request, as Envoy holds its retry resource).
    retry_held: bool,
    /// Waiting for a backoff timer.
    backing_off: bool,
    /// When the route timeout fires (drivers may reuse a finished request's id, so a timer
    /// checks that it is this request's).
    deadline: Option<Time>,
}

/// An attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    req: RequestId,
    cluster: ClusterId,
    endpoint: EndpointId,
    /// The connection, once the pool has put the attempt on one.
    conn: Option<ConnId>,
    /// A retriable response head arrived and a retry is scheduled: the rest is discarded.
    discard: bool,
}

/// What a timer is for. Timers are never removed; a stale one finds its subject gone or
/// changed and does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    FaultDelay(RequestId),
    RouteTimeout(RequestId),
    Backoff(RequestId),
    PerTry(AttemptId),
    ConnectTimeout(ConnId),
    IdleTimeout(ConnId, u32),
    Outlier(ClusterId),
}

/// What the retry policy made of a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// A retry is scheduled.
    Retry,
    /// The failure is final.
    Final {
        /// Retries ran out (`URX`).
        exhausted: bool,
    },
}

/// The sans-IO proxy engine. See the module documentation for the driver contract.
pub struct Proxy {
    config: Arc<CompiledMesh>,
    role: ProxyRole,
    rng: ChaCha8Rng,
    /// Mirror decisions and mirror endpoint picks draw from their own stream, so adding or
    /// removing a mirror never changes the primary traffic's draws.
    mirror_rng: ChaCha8Rng,
    /// Backoff jitter draws from its own stream too.
    retry_rng: ChaCha8Rng,
    now: Time,
    requests: IdMap<RequestId, Request>,
    attempts: IdMap<AttemptId, Attempt>,
    pool: Pool,
    /// Connection → (cluster, endpoint), for connect timeouts and outlier accounting.
    conns: IdMap<ConnId, (ClusterId, EndpointId)>,
    /// Active attempts per endpoint (indexed by `EndpointId`), for least-request balancing.
    active: Vec<u32>,
    /// Round-robin cursor per cluster (indexed by `ClusterId`); `None` until first use.
    rr: Vec<Option<u32>>,
    /// Outstanding retries per cluster.
    retries_active: Vec<u32>,
    /// Outlier detector per cluster with `outlier_detection`.
    outliers: Vec<Option<Detector>>,
    /// The proxy-wide local rate limit bucket.
    bucket: Option<TokenBucket>,
    /// Per-route buckets (indexed by `RouteId`), created on first use.
    route_buckets: Vec<Option<TokenBucket>>,
    timers: Timers<Timer>,
    next_attempt: u64,
    actions: VecDeque<Action>,
}

/// Why a proxy refused a new mesh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The mesh is not a later generation of the one the proxy runs.
    #[error(
        "the new mesh (generation {new}) is not a later generation of the running one \
         (generation {current}); compile it with `CompiledMesh::compile_next` from the running mesh"
    )]
    NotASuccessor {
        /// The running mesh's generation.
        current: u64,
        /// The refused mesh's generation.
        new: u64,
    },
}

impl Proxy {
    /// A proxy running `config`, drawing randomness from a ChaCha stream seeded with `seed`.
    pub fn new(config: Arc<CompiledMesh>, role: ProxyRole, seed: u64) -> Proxy {
        let mut p = Proxy {
            config,
            role,
            rng: ChaCha8Rng::seed_from_u64(seed),
            mirror_rng: ChaCha8Rng::seed_from_u64(crate::hash::mix64(seed ^ MIRROR_STREAM)),
            retry_rng: ChaCha8Rng::seed_from_u64(crate::hash::mix64(seed ^ RETRY_STREAM)),
            now: Time::ZERO,
            requests: IdMap::default(),
            attempts: IdMap::default(),
            pool: Pool::default(),
            conns: IdMap::default(),
            active: Vec::new(),
            rr: Vec::new(),
            retries_active: Vec::new(),
            outliers: Vec::new(),
            bucket: None,
            route_buckets: Vec::new(),
            timers: Timers::default(),
            next_attempt: 0,
            actions: VecDeque::new(),
        };
        p.size_tables(None);
        p
    }

    /// The proxy's role.
    pub fn role(&self) -> &ProxyRole {
        &self.role
    }

    /// The mesh this proxy runs.
    pub fn config(&self) -> &Arc<CompiledMesh> {
        &self.config
    }

    /// Number of downstream requests not yet completed.
    pub fn open_requests(&self) -> usize {
        self.requests.len()
    }

    /// Number of upstream connections (connecting, busy or idle).
    pub fn open_connections(&self) -> usize {
        self.pool.len()
    }

    /// Checks the engine's invariants (pool counters and limits, outlier ejection limits);
    /// returns the first violation. For tests and property tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.pool.check()?;
        for (i, d) in self.outliers.iter().enumerate() {
            let Some(d) = d else { continue };
            let hosts = self
                .config
                .clusters()
                .get(i)
                .map_or(0, |c| c.endpoints.len() as u64);
            if !d.within_limit() {
                return Err(format!(
                    "cluster {i}: {} of {hosts} hosts ejected, over {}%",
                    d.ejected(),
                    d.spec().max_ejection_percent
                ));
            }
        }
        let attempts = self.attempts.len();
        let held: u32 = self.retries_active.iter().sum();
        let holders = self.requests.values().filter(|r| r.retry_held).count() as u32;
        if held != holders {
            return Err(format!(
                "{held} retry slots held by {holders} requests ({attempts} attempts)"
            ));
        }
        Ok(())
    }

    /// Sizes the per-cluster and per-endpoint state for the current mesh. With `previous` (the
    /// mesh it replaced, of the same lineage: ids mean the same things), state carries over:
    /// active counts, retry slots and pools by id; a cluster's round-robin cursor when its
    /// hosts are unchanged; its outlier detector, host by host, when its settings are.
    fn size_tables(&mut self, previous: Option<&CompiledMesh>) {
        // Per-endpoint and per-cluster counters never shrink: requests that started under an
        // earlier mesh still count against them until they end.
        let endpoints = self.config.endpoints().len();
        if self.active.len() < endpoints {
            self.active.resize(endpoints, 0);
        }
        let clusters = self.config.clusters();
        let before = |i: usize| previous.and_then(|p| p.clusters().get(i));
        let old_rr = std::mem::take(&mut self.rr);
        self.rr = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| match before(i) {
                Some(b) if b.endpoints == c.endpoints => old_rr.get(i).copied().flatten(),
                _ => None,
            })
            .collect();
        if self.retries_active.len() < clusters.len() {
            self.retries_active.resize(clusters.len(), 0);
        }
        self.pool
            .configure(clusters.iter().map(|c| (c.limits, c.http2)));
        let old = std::mem::take(&mut self.outliers);
        self.outliers = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let spec = c.outlier?;
                match (old.get(i).and_then(Option::as_ref), before(i)) {
                    (Some(d), Some(b)) if *d.spec() == spec => {
                        Some(d.remap(&b.endpoints, &c.endpoints))
                    }
                    _ => Some(Detector::new(spec, c.endpoints.len())),
                }
            })
            .collect();
        for (i, d) in self.outliers.iter().enumerate() {
            if let Some(at) = d.as_ref().and_then(Detector::next_tick) {
                self.timers.at(at, Timer::Outlier(ClusterId(i as u32)));
            }
        }
        let now = self.now;
        self.bucket = self
            .config
            .rate_limit()
            .map(|spec| match self.bucket.take() {
                Some(b) if b.spec() == spec => b,
                _ => TokenBucket::new(*spec, now),
            });
        self.route_buckets = vec![None; self.config.routes().len()];
    }

    fn advance(&mut self, now: Time) {
        debug_assert!(
            now >= self.now,
            "time went backwards: {now:?} < {:?}",
            self.now
        );
        self.now = self.now.max(now);
    }

    /// Swaps in a new mesh, a later generation of the current one's lineage
    /// (`CompiledMesh::compile_next`), so every id means what it meant: per-cluster and
    /// per-endpoint state (pools, ejections, balancing, retry slots) carries over for what
    /// stayed. Requests in flight finish under the routes they already chose. A mesh of
    /// another lineage is refused and the current one kept.
    pub fn apply_config(&mut self, now: Time, config: Arc<CompiledMesh>) -> Result<(), ApplyError> {
        self.advance(now);
        if !config.succeeds(&self.config) {
            return Err(ApplyError::NotASuccessor {
                current: self.config.generation(),
                new: config.generation(),
            });
        }
        let previous = std::mem::replace(&mut self.config, config);
        self.size_tables(Some(&previous));
        Ok(())
    }

    /// A new downstream request `req` (an id not already open on this proxy).
    pub fn handle_request(&mut self, now: Time, req: RequestId, mut head: RequestHead) {
        self.advance(now);
        debug_assert!(
            !self.requests.contains_key(&req),
            "request id reused: {req:?}"
        );
        // Routed and forwarded with the path normalized, as Istio's default asks (see `path`).
        if let Cow::Owned(normal) = crate::path::normalize(&head.path) {
            head.path = Arc::from(normal);
        }
        let matched = self.match_route(&head);
        // A request that matches nothing is still reported under a route, its host's
        // `(no route)` one, so a 404 `NR` at any hop shows in the route table.
        let reported = match matched {
            Some((route, _)) => Some(route),
            None => self.config.unmatched_route(head.host()),
        };
        self.requests.insert(
            req,
            Request {
                config: self.config.clone(),
                head,
                route: reported,
                block: matched.and_then(|m| m.1),
                cluster: None,
                endpoint: None,
                attempts: 0,
                attempt: None,
                status: None,
                flags: ResponseFlags::NONE,
                delayed: None,
                retry: None,
                retries_left: 0,
                interval: Nanos::ZERO,
                tried: Vec::new(),
                retry_held: false,
                backing_off: false,
                deadline: None,
            },
        );
        let Some((route, _)) = matched else {
            return self.local_reply(req, 404, ResponseFlags::NO_ROUTE_FOUND, Vec::new(), None);
        };
        if let Some(status) = self.rate_limited(route) {
            let headers = vec![(Arc::from("x-envoy-ratelimited"), Arc::from("true"))];
            let body = Some(Arc::from("local_rate_limited"));
            return self.local_reply(req, status, ResponseFlags::RATE_LIMITED, headers, body);
        }
        let Some(fault) = self.config.route(route).fault else {
            return self.dispatch(req);
        };
        // Envoy's fault filter: the delay and the abort are decided independently.
        let delay = fault.delay.filter(|(_, ppm)| self.draw(*ppm));
        let abort = fault
            .abort
            .filter(|(_, ppm)| self.draw(*ppm))
            .map(|(s, _)| s);
        match (delay, abort) {
            (Some((d, _)), abort) => {
                if let Some(r) = self.requests.get_mut(&req) {
                    r.flags |= ResponseFlags::DELAY_INJECTED;
                    r.delayed = Some(abort);
                }
                self.timers.after(now, d, Timer::FaultDelay(req));
            }
            (None, Some(status)) => {
                self.local_reply(req, status, ResponseFlags::FAULT_INJECTED, Vec::new(), None)
            }
            (None, None) => self.dispatch(req),
        }
    }

    /// The local rate limits (the proxy's, then the route's): `Some(status)` when a bucket is
    /// empty.
    fn rate_limited(&mut self, route: RouteId) -> Option<u16> {
        let now = self.now;
        if let Some(b) = &mut self.bucket {
            if !b.try_take(now) {
                return Some(b.spec().status);
            }
        }
        let spec = self.config.route(route).rate_limit?;
        let slot = self.route_buckets.get_mut(route.0 as usize)?;
        let b = slot.get_or_insert_with(|| TokenBucket::new(spec, now));
        (!b.try_take(now)).then_some(spec.status)
    }

    /// True with probability `ppm` / 1 000 000; no draw for 0 % or 100 %.
    fn draw(&mut self, ppm: u32) -> bool {
        chance(&mut self.rng, ppm)
    }

    /// Where `head` would go, without sending anything: the matched route, the weighted
    /// cluster pick and the load balancer's endpoint pick — the same functions the request
    /// path uses (fault injection and mirrors aside). Like a real pick it advances the
    /// balancer's state (round-robin cursor, RNG).
    pub fn decide(&mut self, head: &RequestHead) -> Decision {
        let mut normal = Cow::Borrowed(head);
        if let Cow::Owned(path) = crate::path::normalize(&head.path) {
            normal.to_mut().path = Arc::from(path);
        }
        let head = &*normal;
        let Some((route, block)) = self.match_route(head) else {
            return Decision::NoRoute;
        };
        let config = self.config.clone();
        let compiled = config.route(route);
        let RouteAction::Forward(clusters) = &compiled.action else {
            return Decision::LocalReply { route };
        };
        let Some(cluster) = self.pick_cluster(clusters) else {
            return Decision::NoCluster { route };
        };
        let block = block.and_then(|b| compiled.matches.get(b as usize));
        let forwarded = forwarded_head(head, compiled, block);
        match self.pick_endpoint(&config, cluster, &forwarded) {
            Some(endpoint) => Decision::Endpoint {
                route,
                cluster,
                endpoint,
            },
            None => Decision::NoEndpoint { route, cluster },
        }
    }

    /// First route (in order) of the request's host with a matching block, and that block.
    fn match_route(&self, head: &RequestHead) -> Option<(RouteId, Option<u32>)> {
        let table = self.config.host_table(head.host())?;
        table.find(&MatchInput::new(head))
    }

    /// Carries out the matched route's action for `req` (after any fault delay).
    fn dispatch(&mut self, req: RequestId) {
        let Some((config, route_id, block, head)) = self
            .requests
            .get(&req)
            .and_then(|r| Some((r.config.clone(), r.route?, r.block, r.head.clone())))
        else {
            return;
        };
        let route = config.route(route_id);
        let clusters = match &route.action {
            RouteAction::Redirect(redirect) => {
                let location = redirect_location(&head, redirect);
                let headers = vec![(Arc::from("location"), Arc::from(location))];
                return self.local_reply(req, redirect.status, ResponseFlags::NONE, headers, None);
            }
            RouteAction::Direct { status, body } => {
                return self.local_reply(
                    req,
                    *status,
                    ResponseFlags::NONE,
                    Vec::new(),
                    body.clone(),
                );
            }
            RouteAction::Forward(clusters) => clusters,
        };
        let Some(cluster) = self.pick_cluster(clusters) else {
            return self.local_reply(req, 503, ResponseFlags::NO_CLUSTER_FOUND, Vec::new(), None);
        };
        let block = block.and_then(|b| route.matches.get(b as usize));
        let head = forwarded_head(&head, route, block).into_owned();
        for mirror in &route.mirrors {
            if let Some(endpoint) = self.pick_mirror(mirror, &head) {
                self.actions.push_back(Action::Mirror {
                    req,
                    endpoint,
                    head: head.clone(),
                });
            }
        }
        let endpoint = self.pick_endpoint(&config, cluster, &head);
        if let Some(r) = self.requests.get_mut(&req) {
            r.cluster = Some(cluster);
            r.head = head;
            if let Some(policy) = &route.retry {
                r.retries_left = policy.num_retries;
                r.interval = policy.backoff_base;
                r.retry = Some(policy.clone());
            }
        }
        // The route timeout starts once the request is routed: fault delays do not count.
        if let Some(t) = route.timeout {
            self.timers.after(self.now, t, Timer::RouteTimeout(req));
            if let Some(r) = self.requests.get_mut(&req) {
                r.deadline = Some(self.now + t);
            }
        }
        match endpoint {
            Some(endpoint) => self.start_attempt(req, cluster, endpoint),
            None => self.local_reply(
                req,
                503,
                ResponseFlags::NO_HEALTHY_UPSTREAM,
                Vec::new(),
                None,
            ),
        }
    }

    /// Weighted pick: `rand % total` over the cumulative list, as Envoy does. `None` is an
    /// undefined subset.
    fn pick_cluster(&mut self, clusters: &[crate::mesh::WeightedCluster]) -> Option<ClusterId> {
        if let [only] = clusters {
            return only.cluster;
        }
        // Compilation guarantees a non-empty list with a positive total.
        let total = clusters.last().map_or(1, |c| c.cumulative);
        let draw = self.rng.gen_range(0..total);
        let i = clusters.partition_point(|c| c.cumulative <= draw);
        clusters.get(i).and_then(|c| c.cluster)
    }

    /// The cluster's load balancer picks an endpoint among hosts not ejected (all hosts in
    /// panic); `None` when there is none.
    fn pick_endpoint(
        &mut self,
        config: &CompiledMesh,
        cluster: ClusterId,
        head: &RequestHead,
    ) -> Option<EndpointId> {
        let c = config.clusters().get(cluster.0 as usize)?;
        let active = &self.active;
        let load = |e: EndpointId| active.get(e.0 as usize).copied().unwrap_or(0);
        let mut spare = None;
        let rr = self.rr.get_mut(cluster.0 as usize).unwrap_or(&mut spare);
        // A detector is only consulted while the cluster is the same in the current mesh.
        let same = std::ptr::eq(config, &*self.config);
        let detector = self
            .outliers
            .get(cluster.0 as usize)
            .and_then(Option::as_ref)
            .filter(|d| same && d.ejected() > 0 && !d.panic());
        let Some(d) = detector else {
            return pick(c, head, &mut self.rng, rr, load);
        };
        if matches!(c.lb, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }) {
            // The hash picks on the full ring; an ejected host passes to the next healthy one.
            let n = c.endpoints.len();
            let first = c.lb.pick(n, head, &mut self.rng, rr, |_| 0);
            return (0..n)
                .map(|k| (first + k) % n)
                .find(|&i| !d.is_ejected(i))
                .map(|i| c.endpoints[i]);
        }
        let healthy: Vec<EndpointId> = c
            .endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| !d.is_ejected(*i))
            .map(|(_, e)| *e)
            .collect();
        if healthy.is_empty() {
            return None;
        }
        let i =
            c.lb.pick(healthy.len(), head, &mut self.rng, rr, |i| load(healthy[i]));
        Some(healthy[i])
    }

    /// Whether `mirror` takes a copy of this request, and where it goes. Uses the mirror
    /// stream and a throwaway round-robin cursor, so the primary's picks are untouched.
    fn pick_mirror(&mut self, mirror: &Mirror, head: &RequestHead) -> Option<EndpointId> {
        let cluster = mirror.cluster?;
        if !chance(&mut self.mirror_rng, mirror.ppm) {
            return None;
        }
        let c = self.config.clusters().get(cluster.0 as usize)?;
        let active = &self.active;
        pick(c, head, &mut self.mirror_rng, &mut None, |e| {
            active.get(e.0 as usize).copied().unwrap_or(0)
        })
    }

    fn start_attempt(&mut self, req: RequestId, cluster: ClusterId, endpoint: EndpointId) {
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        self.attempts.insert(
            attempt,
            Attempt {
                req,
                cluster,
                endpoint,
                conn: None,
                discard: false,
            },
        );
        if let Some(n) = self.active.get_mut(endpoint.0 as usize) {
            *n += 1;
        }
        let mut per_try = None;
        if let Some(r) = self.requests.get_mut(&req) {
            r.attempts += 1;
            r.attempt = Some(attempt);
            r.endpoint = Some(endpoint);
            per_try = r.retry.as_ref().and_then(|p| p.per_try_timeout);
        }
        if let Some(t) = per_try {
            self.timers.after(self.now, t, Timer::PerTry(attempt));
        }
        self.pool.place(cluster, endpoint, attempt);
        self.pool_events();
    }

    /// Turns what the pool asked for into actions and failures.
    fn pool_events(&mut self) {
        while let Some(event) = self.pool.poll_event() {
            match event {
                PoolEvent::Connect {
                    conn,
                    cluster,
                    endpoint,
                    http2,
                } => {
                    self.conns.insert(conn, (cluster, endpoint));
                    let timeout = self
                        .config
                        .clusters()
                        .get(cluster.0 as usize)
                        .map_or(crate::policy::DEFAULT_CONNECT_TIMEOUT, |c| {
                            c.limits.connect_timeout
                        });
                    self.timers
                        .after(self.now, timeout, Timer::ConnectTimeout(conn));
                    self.actions.push_back(Action::Connect {
                        conn,
                        endpoint,
                        http2,
                    });
                }
                PoolEvent::Send { attempt, conn } => self.send(attempt, conn),
                PoolEvent::Close { conn } => {
                    self.conns.remove(&conn);
                    self.actions.push_back(Action::CloseConnection { conn });
                }
                PoolEvent::Overflow { attempt } => {
                    let Some(a) = self.end_attempt(attempt) else {
                        continue;
                    };
                    let cluster = a.cluster;
                    self.actions
                        .push_back(Action::Event(EngineEvent::Overflow { cluster }));
                    let headers = vec![(Arc::from("x-envoy-overloaded"), Arc::from("true"))];
                    let flags = ResponseFlags::UPSTREAM_OVERFLOW;
                    self.local_reply(a.req, 503, flags, headers, None);
                }
                PoolEvent::ConnectFailed { attempt } => {
                    if let Some(a) = self.end_attempt(attempt) {
                        self.attempt_failed(a, AttemptFailure::ConnectFailure);
                    }
                }
            }
        }
    }

    fn send(&mut self, attempt: AttemptId, conn: ConnId) {
        let Some(a) = self.attempts.get_mut(&attempt) else {
            return;
        };
        a.conn = Some(conn);
        let (req, endpoint) = (a.req, a.endpoint);
        let Some(r) = self.requests.get(&req) else {
            return;
        };
        let head = r.head.clone();
        self.actions.push_back(Action::Send {
            req,
            attempt,
            conn,
            endpoint,
            head,
            try_number: r.attempts,
        });
    }

    /// Forgets an attempt and its share of the endpoint's active count; the request no longer
    /// has an attempt in flight.
    fn end_attempt(&mut self, attempt: AttemptId) -> Option<Attempt> {
        let a = self.attempts.remove(&attempt)?;
        if let Some(active) = self.active.get_mut(a.endpoint.0 as usize) {
            debug_assert!(*active > 0, "active count underflow");
            *active = active.saturating_sub(1);
        }
        if let Some(r) = self.requests.get_mut(&a.req) {
            if r.attempt == Some(attempt) {
                r.attempt = None;
            }
        }
        Some(a)
    }

    /// Feeds an upstream result of `endpoint` to its cluster's outlier detector.
    fn outlier_result(&mut self, cluster: ClusterId, endpoint: EndpointId, status: u16) {
        let Some(d) = self
            .outliers
            .get_mut(cluster.0 as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        let Some(c) = self.config.clusters().get(cluster.0 as usize) else {
            return;
        };
        let Ok(i) = c.endpoints.binary_search(&endpoint) else {
            return;
        };
        let (change, armed) = d.record(self.now, i, status);
        if armed {
            if let Some(at) = d.next_tick() {
                self.timers.at(at, Timer::Outlier(cluster));
            }
        }
        if let Some(change) = change {
            self.outlier_event(cluster, change);
        }
    }

    fn outlier_event(&mut self, cluster: ClusterId, change: OutlierChange) {
        let Some(c) = self.config.clusters().get(cluster.0 as usize) else {
            return;
        };
        let host = |i: usize| c.endpoints.get(i).copied();
        let event = match change {
            OutlierChange::Ejected(i) => {
                host(i).map(|endpoint| EngineEvent::Ejected { cluster, endpoint })
            }
            OutlierChange::Unejected(i) => {
                host(i).map(|endpoint| EngineEvent::Unejected { cluster, endpoint })
            }
            OutlierChange::Blocked(i) => {
                host(i).map(|endpoint| EngineEvent::EjectionOverflow { cluster, endpoint })
            }
        };
        let Some(event) = event else { return };
        self.actions.push_back(Action::Event(event));
    }

    /// An attempt failed without a usable response: retry, or answer with the failure.
    fn attempt_failed(&mut self, a: Attempt, failure: AttemptFailure) {
        match self.should_retry(a.req, a.cluster, a.endpoint, failure) {
            Verdict::Retry => {}
            Verdict::Final { exhausted } => {
                let (status, mut flags) = match failure {
                    AttemptFailure::ConnectFailure => {
                        (503, ResponseFlags::UPSTREAM_CONNECTION_FAILURE)
                    }
                    AttemptFailure::Reset => (503, ResponseFlags::UPSTREAM_REMOTE_RESET),
                    AttemptFailure::PerTryTimeout => (504, ResponseFlags::UPSTREAM_REQUEST_TIMEOUT),
                    AttemptFailure::Status(s) => (s, ResponseFlags::NONE),
                };
                if exhausted {
                    flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
                }
                self.local_reply(a.req, status, flags, Vec::new(), None);
            }
        }
    }

    /// Envoy's `shouldRetry`: release the previous retry slot; not retriable → final; no
    /// retries left → final with `URX`; the retry breaker (`maxRetries` or the budget) full →
    /// final, counted as a retry overflow; else take a slot and arm the jittered backoff.
    fn should_retry(
        &mut self,
        req: RequestId,
        cluster: ClusterId,
        endpoint: EndpointId,
        failure: AttemptFailure,
    ) -> Verdict {
        self.release_retry(req, cluster);
        let Some(r) = self.requests.get_mut(&req) else {
            return Verdict::Final { exhausted: false };
        };
        let Some(policy) = r.retry.clone().filter(|p| p.would_retry(failure)) else {
            return Verdict::Final { exhausted: false };
        };
        if r.retries_left == 0 {
            return Verdict::Final { exhausted: true };
        }
        r.retries_left -= 1;
        let config = r.config.clone();
        let Some(c) = config.clusters().get(cluster.0 as usize) else {
            return Verdict::Final { exhausted: false };
        };
        let counts = self.pool.counts(cluster);
        let allowed = match c.budget {
            Some(b) => b.allowed(counts.active + counts.pending),
            None => c.limits.max_retries,
        };
        let i = cluster.0 as usize;
        if self.retries_active.len() <= i {
            self.retries_active.resize(i + 1, 0);
        }
        let slots = &mut self.retries_active[i];
        if *slots >= allowed {
            self.actions
                .push_back(Action::Event(EngineEvent::RetryOverflow { cluster }));
            return Verdict::Final { exhausted: false };
        }
        *slots += 1;
        let Some(r) = self.requests.get_mut(&req) else {
            return Verdict::Final { exhausted: false };
        };
        r.retry_held = true;
        r.backing_off = true;
        if policy.previous_hosts {
            r.tried.push(endpoint);
        }
        let interval = r.interval;
        r.interval = policy.next_interval(interval);
        let delay = Nanos(self.retry_rng.gen_range(0..interval.0.max(1)));
        self.timers.at(self.now + delay, Timer::Backoff(req));
        self.actions
            .push_back(Action::Event(EngineEvent::Retry { cluster }));
        Verdict::Retry
    }

    /// Gives back `req`'s outstanding-retry slot, if it holds one.
    fn release_retry(&mut self, req: RequestId, cluster: ClusterId) {
        if let Some(r) = self.requests.get_mut(&req) {
            if std::mem::take(&mut r.retry_held) {
                if let Some(slots) = self.retries_active.get_mut(cluster.0 as usize) {
                    debug_assert!(*slots > 0, "retry slot underflow");
                    *slots = slots.saturating_sub(1);
                }
            }
        }
    }

    /// A backoff ended: a new try, preferring hosts not tried before (up to the policy's
    /// re-pick limit; not under consistent hashing).
    fn retry_now(&mut self, req: RequestId) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        if !std::mem::take(&mut r.backing_off) {
            return;
        }
        let (Some(cluster), head, config) = (r.cluster, r.head.clone(), r.config.clone()) else {
            return;
        };
        let repicks = r
            .retry
            .as_ref()
            .filter(|p| p.previous_hosts)
            .map_or(0, |p| p.host_selection_max_attempts);
        let hashing = config
            .clusters()
            .get(cluster.0 as usize)
            .is_some_and(|c| matches!(c.lb, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }));
        let mut endpoint = self.pick_endpoint(&config, cluster, &head);
        if !hashing {
            for _ in 0..repicks {
                let tried = self
                    .requests
                    .get(&req)
                    .is_some_and(|r| endpoint.is_some_and(|e| r.tried.contains(&e)));
                if !tried {
                    break;
                }
                endpoint = self.pick_endpoint(&config, cluster, &head);
            }
        }
        match endpoint {
            Some(endpoint) => self.start_attempt(req, cluster, endpoint),
            None => {
                let flags = ResponseFlags::NO_HEALTHY_UPSTREAM;
                self.local_reply(req, 503, flags, Vec::new(), None)
            }
        }
    }

    /// The connection `conn` from an earlier `Action::Connect` is established.
    pub fn handle_connected(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        self.pool.connected(conn);
        self.pool_events();
    }

    /// The connection `conn` could not be established (refused or timed out: both are
    /// Envoy's connect-failure, flag `UF`). Every attempt waiting on its host pool fails.
    pub fn handle_connect_failed(&mut self, now: Time, conn: ConnId, _why: ConnectFailure) {
        self.advance(now);
        let Some((cluster, endpoint)) = self.conns.remove(&conn) else {
            return; // already given up on (connect timeout)
        };
        // A local-origin connect failure counts as a 503 for outlier detection.
        self.outlier_result(cluster, endpoint, 503);
        self.pool.connect_failed(conn);
        self.pool_events();
    }

    /// The upstream closed `conn` (or it broke) outside any attempt's report: it is not used
    /// again. Attempts still on it are reported by the driver as ended (`Reset`).
    pub fn handle_connection_closed(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        self.conns.remove(&conn);
        self.pool.closed(conn);
        self.pool_events();
    }

    /// The connection `attempt` was sent on turned out to be closed before any byte of the
    /// request went out (an idle keep-alive connection the upstream had closed): the connection
    /// is forgotten and the attempt placed again, as if the pool had seen the close first. Not a
    /// try of its own, not a failure.
    pub fn handle_connection_stale(&mut self, now: Time, conn: ConnId, attempt: AttemptId) {
        self.advance(now);
        self.conns.remove(&conn);
        self.pool.closed(conn);
        self.pool.finished(attempt, false);
        if let Some(a) = self.attempts.get_mut(&attempt) {
            a.conn = None;
            let (cluster, endpoint) = (a.cluster, a.endpoint);
            self.pool.place(cluster, endpoint, attempt);
        }
        self.pool_events();
    }

    /// The response head for `attempt` arrived. A status the retry policy retries (with
    /// retries and retry budget left) is discarded and a retry scheduled; otherwise the
    /// response is streamed downstream at once.
    pub fn handle_response_head(&mut self, now: Time, attempt: AttemptId, head: ResponseHead) {
        self.advance(now);
        let Some(a) = self.attempts.get(&attempt).copied() else {
            return;
        };
        self.outlier_result(a.cluster, a.endpoint, head.status);
        let failure = AttemptFailure::Status(head.status);
        let retriable = self
            .requests
            .get(&a.req)
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|p| p.would_retry(failure));
        if retriable {
            match self.should_retry(a.req, a.cluster, a.endpoint, failure) {
                Verdict::Retry => {
                    if let Some(a) = self.attempts.get_mut(&attempt) {
                        a.discard = true;
                    }
                    if let Some(r) = self.requests.get_mut(&a.req) {
                        r.attempt = None;
                    }
                    return;
                }
                Verdict::Final { exhausted: true } => {
                    if let Some(r) = self.requests.get_mut(&a.req) {
                        r.flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
                    }
                }
                Verdict::Final { exhausted: false } => {}
            }
        } else {
            self.release_retry(a.req, a.cluster);
        }
        if let Some(r) = self.requests.get_mut(&a.req) {
            r.status = Some(head.status);
            let response_headers = r
                .route
                .and_then(|id| r.config.routes().get(id.0 as usize))
                .and_then(|route| route.response_headers.clone());
            self.actions.push_back(Action::Forward {
                req: a.req,
                attempt,
                response_headers,
            });
        }
    }

    /// The attempt's response ended (or the stream broke).
    pub fn handle_attempt_end(&mut self, now: Time, attempt: AttemptId, end: AttemptEnd) {
        self.advance(now);
        let Some(a) = self.end_attempt(attempt) else {
            return;
        };
        self.release_conn(&a, attempt, end == AttemptEnd::Done);
        if !a.discard {
            let status = self.requests.get(&a.req).and_then(|r| r.status);
            match (end, status) {
                (AttemptEnd::Done | AttemptEnd::DoneAndClosed, Some(status)) => {
                    self.complete(a.req, status, ResponseFlags::NONE)
                }
                (AttemptEnd::Reset, Some(status)) => {
                    self.complete(a.req, status, ResponseFlags::UPSTREAM_REMOTE_RESET)
                }
                // Ended without a response head: the upstream reset or closed on us.
                (_, None) => {
                    self.outlier_result(a.cluster, a.endpoint, 503);
                    self.attempt_failed(a, AttemptFailure::Reset);
                }
            }
        }
        self.pool_events();
    }

    /// Returns a finished attempt's connection to the pool (closing it if it cannot carry
    /// another request) and arms an explicit idle timeout.
    fn release_conn(&mut self, a: &Attempt, attempt: AttemptId, reusable: bool) {
        self.pool.finished(attempt, reusable);
        let Some(conn) = a.conn else { return };
        let idle = self
            .config
            .clusters()
            .get(a.cluster.0 as usize)
            .and_then(|c| c.limits.idle_timeout);
        let Some(idle) = idle else {
            return;
        };
        if let Some(served) = self.pool.idle_served(conn) {
            self.timers
                .after(self.now, idle, Timer::IdleTimeout(conn, served));
        }
    }

    /// Resets the attempt in flight of `req` (timeouts, downstream cancel): the driver resets
    /// the stream; an HTTP/1.1 connection mid-request cannot be reused. A local-origin timeout
    /// counts as a 504 for outlier detection when `timed_out`.
    fn cancel_attempt(&mut self, attempt: AttemptId, timed_out: bool) -> Option<Attempt> {
        let a = self.end_attempt(attempt)?;
        self.actions.push_back(Action::CancelAttempt { attempt });
        self.release_conn(&a, attempt, false);
        if timed_out && a.conn.is_some() {
            self.outlier_result(a.cluster, a.endpoint, 504);
        }
        Some(a)
    }

    /// The downstream client went away: abandon the request (flag `DC`).
    pub fn handle_downstream_cancel(&mut self, now: Time, req: RequestId) {
        self.advance(now);
        let Some((attempt, status)) = self.requests.get(&req).map(|r| (r.attempt, r.status)) else {
            return;
        };
        if let Some(attempt) = attempt {
            self.cancel_attempt(attempt, false);
        }
        let flags = ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
        self.complete(req, status.unwrap_or(0), flags);
        self.pool_events();
    }

    /// A timer armed at `poll_timeout` fired: everything due runs, in time order.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        while let Some((at, timer)) = self.timers.pop_due(now) {
            self.fire(at, timer);
        }
    }

    fn fire(&mut self, at: Time, timer: Timer) {
        match timer {
            Timer::FaultDelay(req) => {
                let Some(abort) = self.requests.get_mut(&req).and_then(|r| r.delayed.take()) else {
                    return; // the request was cancelled while delayed
                };
                match abort {
                    Some(status) => {
                        let flags = ResponseFlags::FAULT_INJECTED;
                        self.local_reply(req, status, flags, Vec::new(), None)
                    }
                    None => self.dispatch(req),
                }
            }
            Timer::RouteTimeout(req) => {
                if self
                    .requests
                    .get(&req)
                    .is_some_and(|r| r.deadline == Some(at))
                {
                    self.route_timeout(req);
                }
            }
            Timer::Backoff(req) => self.retry_now(req),
            Timer::PerTry(attempt) => {
                let waiting = self.attempts.get(&attempt).is_some_and(|a| {
                    !a.discard
                        && self
                            .requests
                            .get(&a.req)
                            .is_some_and(|r| r.status.is_none())
                });
                if waiting {
                    if let Some(a) = self.cancel_attempt(attempt, true) {
                        self.attempt_failed(a, AttemptFailure::PerTryTimeout);
                    }
                    self.pool_events();
                }
            }
            Timer::ConnectTimeout(conn) => {
                if self.pool.is_connecting(conn) {
                    self.actions.push_back(Action::CloseConnection { conn });
                    self.handle_connect_failed(at.max(self.now), conn, ConnectFailure::Timeout);
                }
            }
            Timer::IdleTimeout(conn, served) => {
                self.pool.close_if_idle(conn, served);
                self.pool_events();
            }
            Timer::Outlier(cluster) => {
                let Some(d) = self
                    .outliers
                    .get_mut(cluster.0 as usize)
                    .and_then(Option::as_mut)
                    .filter(|d| d.next_tick() == Some(at))
                else {
                    return; // stale: a duplicate or a detector replaced by a reload
                };
                let changes = d.tick(at);
                if let Some(next) = d.next_tick() {
                    self.timers.at(next, Timer::Outlier(cluster));
                }
                for change in changes {
                    self.outlier_event(cluster, change);
                }
            }
        }
    }

    /// The route timeout: whatever the request is doing (waiting for a connection or a
    /// response, backing off), it ends with 504 `UT`, never retried.
    fn route_timeout(&mut self, req: RequestId) {
        let Some(r) = self.requests.get(&req) else {
            return;
        };
        if r.status.is_some() {
            return; // the response is already on its way downstream
        }
        let (attempt, cluster) = (r.attempt, r.cluster);
        if let Some(attempt) = attempt {
            self.cancel_attempt(attempt, true);
        }
        if let Some(r) = self.requests.get_mut(&req) {
            r.backing_off = false;
        }
        if let Some(cluster) = cluster {
            self.release_retry(req, cluster);
        }
        let flags = ResponseFlags::UPSTREAM_REQUEST_TIMEOUT;
        self.local_reply(req, 504, flags, Vec::new(), None);
        self.pool_events();
    }

    /// The next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must call `handle_timeout` next, if ever. Timers that no longer
    /// matter (their request, attempt or connection is gone) are dropped first, so they cause
    /// no wake-up.
    pub fn poll_timeout(&mut self) -> Option<Time> {
        let (requests, attempts, pool) = (&self.requests, &self.attempts, &self.pool);
        self.timers.prune(|t| match *t {
            Timer::FaultDelay(req) => requests.get(&req).is_none_or(|r| r.delayed.is_none()),
            Timer::RouteTimeout(req) => requests.get(&req).is_none_or(|r| r.deadline.is_none()),
            Timer::Backoff(req) => requests.get(&req).is_none_or(|r| !r.backing_off),
            Timer::PerTry(attempt) => !attempts.contains_key(&attempt),
            Timer::ConnectTimeout(conn) => !pool.is_connecting(conn),
            Timer::IdleTimeout(..) | Timer::Outlier(_) => false,
        });
        self.timers.peek().map(|(at, _)| at)
    }

    /// Answers `req` locally, then completes it.
    fn local_reply(
        &mut self,
        req: RequestId,
        status: u16,
        flags: ResponseFlags,
        headers: Vec<(Arc<str>, Arc<str>)>,
        body: Option<Arc<str>>,
    ) {
        let all = flags
            | self
                .requests
                .get(&req)
                .map_or(ResponseFlags::NONE, |r| r.flags);
        self.actions.push_back(Action::LocalReply {
            req,
            status,
            flags: all,
            headers,
            body,
        });
        self.complete(req, status, flags);
    }

    /// Emits the one `Complete` for `req` and forgets it (releasing any retry slot).
    fn complete(&mut self, req: RequestId, status: u16, flags: ResponseFlags) {
        let Some(r) = self.requests.remove(&req) else {
            debug_assert!(false, "completing unknown request {req:?}");
            return;
        };
        if r.retry_held {
            if let Some(slots) = r
                .cluster
                .and_then(|c| self.retries_active.get_mut(c.0 as usize))
            {
                *slots = slots.saturating_sub(1);
            }
        }
        let outcome = Outcome {
            status,
            flags: flags | r.flags,
            attempts: r.attempts,
            route: r.route,
            cluster: r.cluster,
            destination: r
                .endpoint
                .and_then(|e| r.config.endpoints().get(e.0 as usize))
                .map(|e| e.destination),
            endpoint: r.endpoint,
        };
        self.actions.push_back(Action::Complete { req, outcome });
    }
}

/// True with probability `ppm` / 1 000 000; no draw for 0 % or 100 %.
fn chance(rng: &mut ChaCha8Rng, ppm: u32) -> bool {
    match ppm {
        0 => false,
        1_000_000.. => true,
        p => rng.gen_range(0..1_000_000) < p,
    }
}

/// The cluster's load balancer picks an endpoint; `None` when the cluster is empty.
fn pick(
    c: &Cluster,
    head: &RequestHead,
    rng: &mut ChaCha8Rng,
    rr: &mut Option<u32>,
    active: impl Fn(EndpointId) -> u32,
) -> Option<EndpointId> {
    if c.endpoints.is_empty() {
        return None;
    }
    let i =
        c.lb.pick(c.endpoints.len(), head, rng, rr, |i| active(c.endpoints[i]));
    Some(c.endpoints[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        DestinationRule, LoadBalancerSettings, MeshConfig, SimpleLb, TrafficPolicy,
    };
    use crate::registry::{Endpoint, EndpointAddr, Registry};
    use std::collections::BTreeMap;

    /// A client proxy for service `backend` with `endpoints` endpoints, round robin.
    fn proxy(endpoints: u32) -> Proxy {
        let mut reg = Registry::default();
        let eps = (0..endpoints)
            .map(|i| Endpoint {
                name: format!("backend/-/{i}"),
                addr: EndpointAddr::Sim(i),
                labels: BTreeMap::new(),
            })
            .collect();
        reg.add_service("backend", eps);
        let config = MeshConfig {
            destination_rules: vec![DestinationRule {
                host: "backend".into(),
                traffic_policy: Some(TrafficPolicy {
                    load_balancer: Some(LoadBalancerSettings {
                        simple: Some(SimpleLb::RoundRobin),
                        consistent_hash: None,
                    }),
                    ..Default::default()
                }),
                subsets: Vec::new(),
            }],
            ..Default::default()
        };
        let mesh = CompiledMesh::compile(&config, &reg).expect("compiles");
        let role = ProxyRole::Client {
            name: "test".into(),
        };
        Proxy::new(Arc::new(mesh), role, 7)
    }

    fn drain(p: &mut Proxy) -> Vec<Action> {
        std::iter::from_fn(|| p.poll_action()).collect()
    }

    fn completed(actions: &[Action]) -> Vec<Outcome> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Complete { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    /// Runs one request to completion against an upstream answering `status`; returns the
    /// endpoint chosen, the outcome, and whether a new connection was opened.
    fn round_trip(p: &mut Proxy, id: u64, status: u16) -> (EndpointId, Outcome, bool) {
        let now = Time(id);
        p.handle_request(now, RequestId(id), RequestHead::get("backend", "/"));
        let mut actions = drain(p);
        let mut opened = false;
        if let Some(Action::Connect { conn, .. }) = actions.first().cloned() {
            opened = true;
            p.handle_connected(now, conn);
            actions = drain(p);
        }
        let Some(Action::Send { attempt, .. }) = actions.first().cloned() else {
            panic!("expected a send, got {actions:?}");
        };
        p.handle_response_head(now, attempt, ResponseHead { status });
        p.handle_attempt_end(now, attempt, AttemptEnd::Done);
        let actions = drain(p);
        assert!(matches!(actions[0], Action::Forward { .. }));
        let outcomes = completed(&actions);
        assert_eq!(outcomes.len(), 1);
        let endpoint = outcomes[0].endpoint.expect("an endpoint was used");
        (endpoint, outcomes[0], opened)
    }

    #[test]
    fn unknown_host_is_404_nr() {
        let mut p = proxy(1);
        p.handle_request(Time(0), RequestId(1), RequestHead::get("nosuch", "/"));
        let actions = drain(&mut p);
        let outcome = completed(&actions)[0];
        assert_eq!(outcome.status, 404);
        assert_eq!(outcome.flags, ResponseFlags::NO_ROUTE_FOUND);
        assert_eq!(outcome.attempts, 0);
        assert_eq!(p.open_requests(), 0);
    }

    #[test]
    fn no_endpoints_is_503_uh() {
        let mut p = proxy(0);
        p.handle_request(Time(0), RequestId(1), RequestHead::get("backend", "/"));
        let outcome = completed(&drain(&mut p))[0];
        assert_eq!(
            (outcome.status, outcome.flags.to_string().as_str()),
            (503, "UH")
        );
    }

    #[test]
    fn round_robin_cycles_and_reuses_connections() {
        let mut p = proxy(3);
        let picks: Vec<(EndpointId, bool)> = (0..6)
            .map(|i| {
                let (ep, outcome, opened) = round_trip(&mut p, i, 200);
                assert_eq!((outcome.status, outcome.attempts), (200, 1));
                assert!(outcome.flags.is_empty());
                (ep, opened)
            })
            .collect();
        for i in 0..3 {
            assert_eq!(picks[i].0, picks[i + 3].0, "period 3");
            assert!(
                picks[i].1 && !picks[i + 3].1,
                "second lap reuses connections"
            );
        }
        let distinct: std::collections::BTreeSet<_> = picks.iter().map(|p| p.0).collect();
        assert_eq!(distinct.len(), 3);
        assert_eq!(p.open_connections(), 3);
    }

    #[test]
    fn connect_failure_is_retried_twice_then_503_uf_urx() {
        // Istio's default policy: 2 retries on connect-failure, jittered backoff in between.
        let mut p = proxy(1);
        p.handle_request(Time(0), RequestId(1), RequestHead::get("backend", "/"));
        let mut now = Time(0);
        let mut connects = 0;
        let outcome = loop {
            let actions = drain(&mut p);
            if let Some(o) = completed(&actions).first() {
                break *o;
            }
            if let Some(Action::Connect { conn, .. }) = actions.first().cloned() {
                connects += 1;
                p.handle_connect_failed(now, conn, ConnectFailure::Refused);
                continue;
            }
            let at = p.poll_timeout().expect("a backoff timer");
            assert!(
                at.since(now) < Nanos::from_millis(50),
                "backoff within [0, 50ms)"
            );
            now = at;
            p.handle_timeout(now);
        };
        assert_eq!(connects, 3);
        assert_eq!(
            (
                outcome.status,
                outcome.flags.to_string().as_str(),
                outcome.attempts
            ),
            (503, "UF,URX", 3)
        );
        assert_eq!(p.open_connections(), 0);
        p.check_invariants().expect("invariants");
    }

    #[test]
    fn a_reload_that_removes_routes_and_clusters_leaves_requests_in_flight_alone() {
        let mut reg = Registry::default();
        let ep = |i: u32, v: &str| Endpoint {
            name: format!("backend/{v}/{i}"),
            addr: EndpointAddr::Sim(i),
            labels: BTreeMap::from([("version".to_owned(), v.to_owned())]),
        };
        reg.add_service("backend", vec![ep(0, "v1"), ep(1, "v2")]);
        let text = r#"Mesh(
            virtual_services: [VirtualService(hosts: ["backend"], http: [
                HttpRoute(name: "slow", match: [(uri: Prefix("/slow"))],
                    route: [(destination: (host: "backend", subset: "v2"))],
                    fault: (delay: (fixed_delay: "1s", percentage: 100))),
                HttpRoute(name: "rest", route: [(destination: (host: "backend", subset: "v1"))],
                    retries: (attempts: 2, retry_on: "5xx")),
            ])],
            destination_rules: [DestinationRule(host: "backend", subsets: [
                (name: "v1", labels: {"version": "v1"}), (name: "v2", labels: {"version": "v2"})])],
        )"#;
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let config: MeshConfig = options.from_str(text).expect("parses");
        let before = CompiledMesh::compile(&config, &reg).expect("compiles");
        let after =
            CompiledMesh::compile_next(&MeshConfig::default(), &reg, &before).expect("compiles");
        // Removed clusters keep their slots as tombstones (no endpoints).
        let live = |m: &CompiledMesh| {
            m.clusters()
                .iter()
                .filter(|c| !c.endpoints.is_empty())
                .count()
        };
        assert!(live(&after) < live(&before));
        let role = ProxyRole::Client {
            name: "test".into(),
        };
        let mut p = Proxy::new(Arc::new(before), role, 1);
        p.handle_request(Time(0), RequestId(1), RequestHead::get("backend", "/slow"));
        p.handle_request(Time(0), RequestId(2), RequestHead::get("backend", "/"));
        let actions = drain(&mut p);
        let Some(Action::Connect { conn, .. }) = actions.first().cloned() else {
            panic!("{actions:?}")
        };
        p.apply_config(Time(1), Arc::new(after))
            .expect("a later generation");
        p.handle_connected(Time(2), conn);
        let Some(Action::Send { attempt, .. }) = drain(&mut p).first().cloned() else {
            panic!("send")
        };
        // A retriable answer: the retry still follows the old route's policy.
        p.handle_response_head(Time(3), attempt, ResponseHead { status: 503 });
        p.handle_attempt_end(Time(3), attempt, AttemptEnd::Done);
        let mut outcomes = Vec::new();
        let mut now = Time(3);
        for _ in 0..20 {
            let actions = drain(&mut p);
            outcomes.extend(completed(&actions));
            for a in &actions {
                match a {
                    Action::Connect { conn, .. } => p.handle_connected(now, *conn),
                    Action::Send { attempt, .. } => {
                        p.handle_response_head(now, *attempt, ResponseHead { status: 200 });
                        p.handle_attempt_end(now, *attempt, AttemptEnd::Done);
                    }
                    _ => {}
                }
            }
            if let Some(at) = p.poll_timeout() {
                now = now.max(at);
                p.handle_timeout(now);
            }
        }
        outcomes.extend(completed(&drain(&mut p)));
        assert_eq!(
            outcomes.len(),
            2,
            "each request completes once: {outcomes:?}"
        );
        assert!(outcomes.iter().all(|o| o.status == 200));
        let retried = outcomes.iter().find(|o| o.attempts == 2).expect("retried");
        assert_eq!(
            retried.route,
            Some(RouteId(1)),
            "the old route id, of the old mesh"
        );
        p.check_invariants().expect("invariants");
    }

    #[test]
    fn explicit_idle_timeout_closes_idle_connections() {
        let mut p = proxy(1);
        let mut mesh = (**p.config()).clone();
        mesh.clusters[0].limits.idle_timeout = Some(Nanos::from_secs(1));
        mesh.generation += 1;
        p.apply_config(Time(0), Arc::new(mesh))
            .expect("a later generation");
        let (_, _, opened) = round_trip(&mut p, 0, 200);
        assert!(opened);
        assert_eq!(p.open_connections(), 1, "idle, kept");
        let at = p.poll_timeout().expect("idle timer");
        assert_eq!(at, Time(0) + Nanos::from_secs(1));
        p.handle_timeout(at);
        assert!(matches!(
            drain(&mut p).as_slice(),
            [Action::CloseConnection { .. }]
        ));
        assert_eq!(p.open_connections(), 0);
    }

    #[test]
    fn downstream_cancel_completes_once_with_dc() {
        let mut p = proxy(1);
        let (_, _, _) = round_trip(&mut p, 0, 200);
        p.handle_request(Time(10), RequestId(1), RequestHead::get("backend", "/"));
        let Some(Action::Send { attempt, .. }) = drain(&mut p).first().cloned() else {
            panic!("expected send on the idle connection");
        };
        p.handle_downstream_cancel(Time(20), RequestId(1));
        let actions = drain(&mut p);
        assert!(actions.contains(&Action::CancelAttempt { attempt }));
        let outcome = completed(&actions)[0];
        assert_eq!(
            (outcome.status, outcome.flags.to_string().as_str()),
            (0, "DC")
        );
        // A late report on the cancelled attempt is ignored: still exactly one outcome.
        p.handle_attempt_end(Time(30), attempt, AttemptEnd::Done);
        assert!(completed(&drain(&mut p)).is_empty());
        assert_eq!(
            p.open_connections(),
            0,
            "mid-request HTTP/1.1 connection is closed"
        );
    }

    #[test]
    fn reset_before_headers_is_503_ur() {
        let mut p = proxy(1);
        p.handle_request(Time(0), RequestId(1), RequestHead::get("backend", "/"));
        let Some(Action::Connect { conn, .. }) = drain(&mut p).first().cloned() else {
            panic!("expected connect");
        };
        p.handle_connected(Time(1), conn);
        let Some(Action::Send { attempt, .. }) = drain(&mut p).first().cloned() else {
            panic!("expected send");
        };
        p.handle_attempt_end(Time(2), attempt, AttemptEnd::Reset);
        let outcome = completed(&drain(&mut p))[0];
        assert_eq!(
            (outcome.status, outcome.flags.to_string().as_str()),
            (503, "UR")
        );
    }
}
