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
//!   which reports on that attempt are ignored.
//! * A `Mirror` names a copy the engine made of a request; the copy's attempts are ordinary
//!   `Send`s (with `req` the copy's id) and it ends in exactly one `MirrorDone`, by its
//!   deadline at the latest. Driver request ids stay below `RequestId::MIRROR_COPY`.
//!
//! # Request path
//!
//! match route (none → 404 `NR`) → local rate limits, proxy then route (429 `RL`) → fault
//! injection (delay `DI`, then abort `FI`, drawn independently) → redirect / direct response,
//! or: weighted cluster pick (undefined subset → 503 `NC`) → rewrites and header operations →
//! mirrors (copies through the mirror cluster's pool, with a deadline) → route timeout starts → load balancer over non-ejected hosts (none → 503 `UH`) →
//! connection pool and circuit breakers (overflow → 503 `UO`, never retried) → send → on a
//! failure (connect failure `UF`, reset `UR`, per-try timeout `UT`, retriable status) the retry
//! policy decides: backoff and a new try on another host, or the failure is final (`URX` when
//! retries ran out) → forward the response. The route timeout (504 `UT`) ends the request
//! wherever it is. Every upstream result feeds the cluster's outlier detector.
//!
//! The proxy owns its state and a ChaCha RNG seeded by the driver; it never reads a clock,
//! spawns, or touches a socket.
//!
//! # Layout
//!
//! This module holds the state (`Proxy`, its requests and attempts), reloads
//! (`apply_config`), timers and the action queue; `request` a request's path up to dispatch and
//! its completion; `balance` cluster and host picks and outlier detection; `upstream` attempts
//! on the pool and the driver's connection and attempt reports; `retry` the retry decision;
//! `mirror` mirrored copies.

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

pub use mirror::MIRROR_TIMEOUT;

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
        /// Its labels, which `Gateway` selectors pick gateway proxies by (Istio's
        /// `istio: ingressgateway`).
        labels: std::collections::BTreeMap<String, String>,
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

/// Where a request is in its life: exactly one phase at a time. Each transition is made where
/// the event that causes it is handled.
///
/// ```text
/// Matched ──fault delay──▶ Delayed ──delay ends──▶ Matched
/// Matched ──dispatch────▶ Trying ──response head──▶ Responding ──attempt end──▶ (complete)
///                          │  ▲
///          attempt failed, │  │ backoff ends
///          retry allowed   ▼  │
///                        BackingOff
/// ```
///
/// Any phase may end in a completion (a local reply, the route timeout, a downstream cancel),
/// which removes the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Matched to a route and not waiting for anything: being dispatched, retried or answered
    /// within the current call.
    Matched,
    /// Held by an injected fault delay; `abort` is the status to answer with when it ends
    /// (`None`: dispatch).
    Delayed {
        /// The abort decided together with the delay.
        abort: Option<u16>,
    },
    /// This attempt is in flight (queued in the pool, connecting, or sent) and no response
    /// head has come back.
    Trying(AttemptId),
    /// Waiting for the backoff timer before the next try.
    BackingOff,
    /// `attempt`'s response head (`status`) came back and the response is streaming
    /// downstream (for a mirrored copy: being discarded); the request completes when the
    /// attempt ends.
    Responding {
        /// The attempt whose response this is.
        attempt: AttemptId,
        /// Its status.
        status: u16,
    },
}

impl Phase {
    /// The attempt in flight for the request, if any.
    fn attempt(self) -> Option<AttemptId> {
        match self {
            Phase::Trying(a) | Phase::Responding { attempt: a, .. } => Some(a),
            Phase::Matched | Phase::Delayed { .. } | Phase::BackingOff => None,
        }
    }

    /// The response status, once a response head came back.
    fn status(self) -> Option<u16> {
        match self {
            Phase::Responding { status, .. } => Some(status),
            _ => None,
        }
    }
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
    /// Where the request is in its life.
    phase: Phase,
    /// Flags gathered on the way (`DI`, `URX`).
    flags: ResponseFlags,
    /// The route's retry policy (set at dispatch).
    retry: Option<Arc<RetryPolicy>>,
    retries_left: u32,
    /// Current backoff interval.
    interval: Nanos,
    /// Hosts already tried (filled only when a retry happens).
    tried: Vec<EndpointId>,
    /// The cluster one of whose outstanding-retry slots the request holds: from the retry
    /// decision until the next decision or the end of the request (as Envoy holds its retry
    /// resource), so across `BackingOff` and the retry's `Trying`. A resource, not a phase.
    retry_slot: Option<ClusterId>,
    /// When the route timeout fires (drivers may reuse a finished request's id, so a timer
    /// checks that it is this request's).
    deadline: Option<Time>,
    /// For a mirrored copy, when it was made (its latency runs from there); `None` for a
    /// driver's request.
    mirror: Option<Time>,
}

impl Request {
    /// A request for `head` under `config`, matched to `route` (and its match `block`), not
    /// yet dispatched.
    #[inline]
    fn new(
        config: Arc<CompiledMesh>,
        head: RequestHead,
        route: Option<RouteId>,
        block: Option<u32>,
    ) -> Request {
        Request {
            config,
            head,
            route,
            block,
            cluster: None,
            endpoint: None,
            attempts: 0,
            phase: Phase::Matched,
            flags: ResponseFlags::NONE,
            retry: None,
            retries_left: 0,
            interval: Nanos::ZERO,
            tried: Vec::new(),
            retry_slot: None,
            deadline: None,
            mirror: None,
        }
    }
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
    // Per-endpoint and per-cluster state is made when the proxy first uses the endpoint or
    // cluster: tables indexed by id grow to the highest id used (a sidecar that calls one
    // service of thousands holds state for that one), and outlier detectors are boxed.
    /// Active attempts per endpoint (indexed by `EndpointId`), for least-request balancing.
    active: Vec<u32>,
    /// Round-robin cursor per cluster (indexed by `ClusterId`); `None` until first use.
    rr: Vec<Option<u32>>,
    /// Outstanding retries per cluster.
    retries_active: Vec<u32>,
    /// Outlier detector per cluster with `outlier_detection`, made at its first result.
    outliers: Vec<Option<Box<Detector>>>,
    /// The proxy-wide local rate limit bucket.
    bucket: Option<TokenBucket>,
    /// Buckets of the routes with a local rate limit, made at first use.
    route_buckets: IdMap<RouteId, TokenBucket>,
    timers: Timers<Timer>,
    next_attempt: u64,
    /// Mirrored copies made so far (their ids count up from `RequestId::MIRROR_COPY`).
    next_mirror: u64,
    /// Mirrored copies not yet done (they are in `requests` too).
    mirrors_open: usize,
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
            route_buckets: IdMap::default(),
            timers: Timers::default(),
            next_attempt: 0,
            next_mirror: 0,
            mirrors_open: 0,
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
        self.requests.len() - self.mirrors_open
    }

    /// Number of mirrored copies not yet done.
    pub fn open_mirrors(&self) -> usize {
        self.mirrors_open
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
        let holders = (self.requests.values())
            .filter(|r| r.retry_slot.is_some())
            .count() as u32;
        if held != holders {
            return Err(format!(
                "{held} retry slots held by {holders} requests ({attempts} attempts)"
            ));
        }
        Ok(())
    }

    /// Fits the per-cluster and per-endpoint state to the current mesh. With `previous` (the
    /// mesh it replaced, of the same lineage: ids mean the same things), state carries over:
    /// active counts, retry slots and pools by id; a cluster's round-robin cursor when its
    /// hosts are unchanged; its outlier detector, host by host, when its settings are. State
    /// of clusters and endpoints the proxy has not used is made at first use.
    fn size_tables(&mut self, previous: Option<&CompiledMesh>) {
        // Per-endpoint and per-cluster counters never shrink: requests that started under an
        // earlier mesh still count against them until they end.
        let clusters = self.config.clusters();
        let before = |i: usize| previous.and_then(|p| p.clusters().get(i));
        for (i, rr) in self.rr.iter_mut().enumerate() {
            let same = matches!((before(i), clusters.get(i)), (Some(b), Some(c)) if b.endpoints == c.endpoints);
            if !same {
                *rr = None;
            }
        }
        self.pool.configure(self.config.pool_settings().clone());
        for (i, slot) in self.outliers.iter_mut().enumerate() {
            let Some(d) = slot.take() else { continue };
            let (Some(c), Some(b)) = (clusters.get(i), before(i)) else {
                continue;
            };
            // A detector whose settings changed starts over (at its next result).
            if c.outlier.as_ref() == Some(d.spec()) {
                *slot = Some(Box::new(d.remap(&b.endpoints, &c.endpoints)));
            }
        }
        for (i, d) in self.outliers.iter().enumerate() {
            if let Some(at) = d.as_ref().and_then(|d| d.next_tick()) {
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
        self.route_buckets.clear();
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
                let Some(r) = self.requests.get_mut(&req) else {
                    return; // the request was cancelled while delayed
                };
                let Phase::Delayed { abort } = r.phase else {
                    debug_assert!(false, "a fault delay ended for a request not delayed");
                    return;
                };
                r.phase = Phase::Matched;
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
                // Only while no response head came back: a streaming response is not cut.
                let waiting = (self.attempts.get(&attempt))
                    .and_then(|a| self.requests.get(&a.req))
                    .is_some_and(|r| r.phase == Phase::Trying(attempt));
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
            Timer::FaultDelay(req) => requests
                .get(&req)
                .is_none_or(|r| !matches!(r.phase, Phase::Delayed { .. })),
            Timer::RouteTimeout(req) => requests.get(&req).is_none_or(|r| r.deadline.is_none()),
            Timer::Backoff(req) => requests
                .get(&req)
                .is_none_or(|r| r.phase != Phase::BackingOff),
            Timer::PerTry(attempt) => !attempts.contains_key(&attempt),
            Timer::ConnectTimeout(conn) => !pool.is_connecting(conn),
            Timer::IdleTimeout(..) | Timer::Outlier(_) => false,
        });
        self.timers.peek().map(|(at, _)| at)
    }
}

mod balance;
mod mirror;
mod request;
mod retry;
mod upstream;

#[cfg(test)]
mod tests;
