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
//! * `Connect` is answered by `handle_connected` or `handle_connect_failed`; a `Send` is answered
//!   by at most one `handle_response_head` and exactly one `handle_attempt_end`, unless the
//!   engine cancels the attempt first (`CancelAttempt`), after which reports on that attempt are
//!   ignored. `Mirror` copies are fire-and-forget: nothing is reported back.
//!
//! # Request path
//!
//! match route (first match wins; none → 404 `NR`) → fault injection (delay `DI`, then abort
//! `FI`, drawn independently) → redirect / direct response, or: weighted cluster pick (undefined
//! subset → 503 `NC`) → rewrites and header operations → mirrors → load balancer (no endpoint →
//! 503 `UH`) → connection (reuse an idle one or connect; failure → 503 `UF`) → send → forward the
//! response.
//!
//! The proxy owns its state and a ChaCha RNG seeded by the driver; it never reads a clock,
//! spawns, or touches a socket.

use crate::idmap::IdMap;
use crate::matching::MatchInput;
use crate::mesh::{Cluster, ClusterId, CompiledMesh, Mirror, RouteAction, RouteId};
use crate::pool::{Placement, Pool};
use crate::registry::EndpointId;
use crate::rewrite::{forwarded_head, redirect_location};
use crate::time::Time;
use crate::types::{
    Action, AttemptEnd, AttemptId, ConnId, ConnectFailure, Outcome, RequestHead, RequestId,
    ResponseFlags, ResponseHead,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

/// Salt of the mirror stream's seed.
const MIRROR_STREAM: u64 = 0x6d69_7272_6f72; // "mirror"

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
    /// The request as received, then (once routed) as forwarded.
    head: RequestHead,
    route: Option<RouteId>,
    /// Which match block of the route matched (for prefix rewrites).
    block: Option<u32>,
    cluster: Option<ClusterId>,
    endpoint: Option<EndpointId>,
    attempts: u32,
    attempt: Option<AttemptId>,
    status: Option<u16>,
    /// Flags gathered on the way (`DI`).
    flags: ResponseFlags,
    /// Held by a fault delay; `Some(abort)` says what to do when it ends.
    delayed: Option<Option<u16>>,
}

/// An attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    req: RequestId,
    conn: ConnId,
    endpoint: EndpointId,
}

/// The sans-IO proxy engine. See the module documentation for the driver contract.
pub struct Proxy {
    config: Arc<CompiledMesh>,
    role: ProxyRole,
    rng: ChaCha8Rng,
    /// Mirror decisions and mirror endpoint picks draw from their own stream, so adding or
    /// removing a mirror never changes the primary traffic's draws.
    mirror_rng: ChaCha8Rng,
    now: Time,
    requests: IdMap<RequestId, Request>,
    attempts: IdMap<AttemptId, Attempt>,
    pool: Pool,
    /// Active attempts per endpoint (indexed by `EndpointId`), for least-request balancing.
    active: Vec<u32>,
    /// Round-robin cursor per cluster (indexed by `ClusterId`); `None` until first use.
    rr: Vec<Option<u32>>,
    /// Fault-delay deadlines; stale entries (request gone) are skipped when they fire.
    timers: BinaryHeap<Reverse<(Time, RequestId)>>,
    next_attempt: u64,
    actions: VecDeque<Action>,
}

impl Proxy {
    /// A proxy running `config`, drawing randomness from a ChaCha stream seeded with `seed`.
    pub fn new(config: Arc<CompiledMesh>, role: ProxyRole, seed: u64) -> Proxy {
        let mut p = Proxy {
            config,
            role,
            rng: ChaCha8Rng::seed_from_u64(seed),
            mirror_rng: ChaCha8Rng::seed_from_u64(crate::hash::mix64(seed ^ MIRROR_STREAM)),
            now: Time::ZERO,
            requests: IdMap::default(),
            attempts: IdMap::default(),
            pool: Pool::default(),
            active: Vec::new(),
            rr: Vec::new(),
            timers: BinaryHeap::new(),
            next_attempt: 0,
            actions: VecDeque::new(),
        };
        p.size_tables();
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

    fn size_tables(&mut self) {
        let endpoints = self.config.endpoints().len();
        self.pool.resize(endpoints);
        self.active.resize(endpoints, 0);
        self.rr = vec![None; self.config.clusters().len()];
    }

    fn advance(&mut self, now: Time) {
        debug_assert!(
            now >= self.now,
            "time went backwards: {now:?} < {:?}",
            self.now
        );
        self.now = self.now.max(now);
    }

    /// Swaps in a new mesh. Requests in flight finish under the routes they already chose;
    /// the endpoint set must be the same registry (connections are kept per endpoint).
    pub fn apply_config(&mut self, now: Time, config: Arc<CompiledMesh>) {
        self.advance(now);
        self.config = config;
        self.size_tables();
    }

    /// A new downstream request `req` (an id not already open on this proxy).
    pub fn handle_request(&mut self, now: Time, req: RequestId, head: RequestHead) {
        self.advance(now);
        debug_assert!(
            !self.requests.contains_key(&req),
            "request id reused: {req:?}"
        );
        let matched = self.match_route(&head);
        self.requests.insert(
            req,
            Request {
                head,
                route: matched.map(|m| m.0),
                block: matched.and_then(|m| m.1),
                cluster: None,
                endpoint: None,
                attempts: 0,
                attempt: None,
                status: None,
                flags: ResponseFlags::NONE,
                delayed: None,
            },
        );
        let Some((route, _)) = matched else {
            return self.local_reply(req, 404, ResponseFlags::NO_ROUTE_FOUND, Vec::new(), None);
        };
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
                self.timers.push(Reverse((now + d, req)));
            }
            (None, Some(status)) => {
                self.local_reply(req, status, ResponseFlags::FAULT_INJECTED, Vec::new(), None)
            }
            (None, None) => self.dispatch(req),
        }
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
        match self.pick_endpoint(cluster, &forwarded) {
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
        let config = self.config.clone();
        let Some((route_id, block, head)) = self
            .requests
            .get(&req)
            .and_then(|r| Some((r.route?, r.block, r.head.clone())))
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
        let endpoint = self.pick_endpoint(cluster, &head);
        if let Some(r) = self.requests.get_mut(&req) {
            r.cluster = Some(cluster);
            r.head = head;
        }
        match endpoint {
            Some(endpoint) => self.start_attempt(req, endpoint),
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

    /// The cluster's load balancer picks an endpoint; `None` when the cluster is empty.
    fn pick_endpoint(&mut self, cluster: ClusterId, head: &RequestHead) -> Option<EndpointId> {
        let c = self.config.cluster(cluster);
        let active = &self.active;
        let rr = &mut self.rr[cluster.0 as usize];
        pick(c, head, &mut self.rng, rr, |e| active[e.0 as usize])
    }

    /// Whether `mirror` takes a copy of this request, and where it goes. Uses the mirror
    /// stream and a throwaway round-robin cursor, so the primary's picks are untouched.
    fn pick_mirror(&mut self, mirror: &Mirror, head: &RequestHead) -> Option<EndpointId> {
        let cluster = mirror.cluster?;
        if !chance(&mut self.mirror_rng, mirror.ppm) {
            return None;
        }
        let c = self.config.cluster(cluster);
        let active = &self.active;
        pick(c, head, &mut self.mirror_rng, &mut None, |e| {
            active[e.0 as usize]
        })
    }

    fn start_attempt(&mut self, req: RequestId, endpoint: EndpointId) {
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        let http2 = self
            .requests
            .get(&req)
            .and_then(|r| r.cluster)
            .is_some_and(|c| self.config.cluster(c).http2);
        let placement = self.pool.place(endpoint, attempt, http2);
        let conn = match placement {
            Placement::Ready(c) | Placement::Pending(c) | Placement::Opened(c) => c,
        };
        self.attempts.insert(
            attempt,
            Attempt {
                req,
                conn,
                endpoint,
            },
        );
        self.active[endpoint.0 as usize] += 1;
        if let Some(r) = self.requests.get_mut(&req) {
            r.attempts += 1;
            r.attempt = Some(attempt);
            r.endpoint = Some(endpoint);
        }
        match placement {
            Placement::Ready(conn) => self.send(attempt, conn),
            Placement::Pending(_) => {}
            Placement::Opened(conn) => self.actions.push_back(Action::Connect {
                conn,
                endpoint,
                http2,
            }),
        }
    }

    fn send(&mut self, attempt: AttemptId, conn: ConnId) {
        let Some(a) = self.attempts.get(&attempt) else {
            return;
        };
        let Some(r) = self.requests.get(&a.req) else {
            return;
        };
        let head = r.head.clone();
        self.actions.push_back(Action::Send {
            req: a.req,
            attempt,
            conn,
            head,
        });
    }

    /// Forgets an attempt and its share of the endpoint's active count.
    fn end_attempt(&mut self, attempt: AttemptId) -> Option<Attempt> {
        let a = self.attempts.remove(&attempt)?;
        let active = &mut self.active[a.endpoint.0 as usize];
        debug_assert!(*active > 0, "active count underflow");
        *active = active.saturating_sub(1);
        Some(a)
    }

    /// The connection `conn` from an earlier `Action::Connect` is established.
    pub fn handle_connected(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        for attempt in self.pool.connected(conn) {
            self.send(attempt, conn);
        }
    }

    /// The connection `conn` could not be established (refused or timed out: both are
    /// Envoy's connect-failure, flag `UF`).
    pub fn handle_connect_failed(&mut self, now: Time, conn: ConnId, _why: ConnectFailure) {
        self.advance(now);
        for attempt in self.pool.connect_failed(conn) {
            if let Some(a) = self.end_attempt(attempt) {
                let flags = ResponseFlags::UPSTREAM_CONNECTION_FAILURE;
                self.local_reply(a.req, 503, flags, Vec::new(), None);
            }
        }
    }

    /// The upstream closed `conn` (or it broke) outside any attempt's report: it is not used
    /// again. Attempts still on it are reported by the driver as ended (`Reset`).
    pub fn handle_connection_closed(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        self.pool.closed(conn);
    }

    /// The response head for `attempt` arrived; it is streamed downstream at once.
    pub fn handle_response_head(&mut self, now: Time, attempt: AttemptId, head: ResponseHead) {
        self.advance(now);
        let Some(a) = self.attempts.get(&attempt) else {
            return;
        };
        let req = a.req;
        if let Some(r) = self.requests.get_mut(&req) {
            r.status = Some(head.status);
            let response_headers = r
                .route
                .and_then(|id| self.config.route(id).response_headers.clone());
            self.actions.push_back(Action::Forward {
                req,
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
        self.release_conn(a.conn, attempt, end == AttemptEnd::Done);
        let status = self.requests.get(&a.req).and_then(|r| r.status);
        match (end, status) {
            (AttemptEnd::Done | AttemptEnd::DoneAndClosed, Some(status)) => {
                self.complete(a.req, status, ResponseFlags::NONE)
            }
            (AttemptEnd::Reset, Some(status)) => {
                self.complete(a.req, status, ResponseFlags::UPSTREAM_REMOTE_RESET)
            }
            // Ended without a response head: the upstream closed on us.
            (_, None) => {
                let flags = ResponseFlags::UPSTREAM_REMOTE_RESET;
                self.local_reply(a.req, 503, flags, Vec::new(), None)
            }
        }
    }

    /// The downstream client went away: abandon the request (flag `DC`).
    pub fn handle_downstream_cancel(&mut self, now: Time, req: RequestId) {
        self.advance(now);
        let Some((attempt, status)) = self.requests.get(&req).map(|r| (r.attempt, r.status)) else {
            return;
        };
        if let Some(attempt) = attempt {
            if let Some(a) = self.end_attempt(attempt) {
                self.actions.push_back(Action::CancelAttempt { attempt });
                // An HTTP/1.1 connection mid-request cannot be reused (HTTP/2: only the
                // stream is reset).
                self.release_conn(a.conn, attempt, false);
            }
        }
        let flags = ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
        self.complete(req, status.unwrap_or(0), flags);
    }

    /// A timer armed at `poll_timeout` fired: fault delays that are due end.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
        while let Some(&Reverse((at, req))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(abort) = self.requests.get_mut(&req).and_then(|r| r.delayed.take()) else {
                continue; // the request was cancelled while delayed
            };
            match abort {
                Some(status) => {
                    let flags = ResponseFlags::FAULT_INJECTED;
                    self.local_reply(req, status, flags, Vec::new(), None)
                }
                None => self.dispatch(req),
            }
        }
    }

    /// The next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must call `handle_timeout` next, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Returns a finished attempt's connection to the pool, closing it if the pool says so.
    /// `reusable`: the response completed and the connection stays open.
    fn release_conn(&mut self, conn: ConnId, attempt: AttemptId, reusable: bool) {
        if self.pool.finished(conn, attempt, reusable) {
            self.actions.push_back(Action::CloseConnection { conn });
        }
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

    /// Emits the one `Complete` for `req` and forgets it.
    fn complete(&mut self, req: RequestId, status: u16, flags: ResponseFlags) {
        let Some(r) = self.requests.remove(&req) else {
            debug_assert!(false, "completing unknown request {req:?}");
            return;
        };
        let outcome = Outcome {
            status,
            flags: flags | r.flags,
            attempts: r.attempts,
            route: r.route,
            cluster: r.cluster,
            destination: r.endpoint.map(|e| self.config.endpoint(e).destination),
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
                    connection_pool: None,
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
    fn connect_failure_is_503_uf() {
        let mut p = proxy(1);
        p.handle_request(Time(0), RequestId(1), RequestHead::get("backend", "/"));
        let Some(Action::Connect { conn, .. }) = drain(&mut p).first().cloned() else {
            panic!("expected connect");
        };
        p.handle_connect_failed(Time(5), conn, ConnectFailure::Refused);
        let outcome = completed(&drain(&mut p))[0];
        assert_eq!(
            (outcome.status, outcome.flags.to_string().as_str()),
            (503, "UF")
        );
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
