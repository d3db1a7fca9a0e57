//! The per-proxy state machine (one per sidecar, gateway or load-generator client).
//!
//! # Driver contract
//!
//! * Inputs are `handle_*` calls, each with `now`, which must never go backwards.
//! * After **every** input, drain `poll_action` until it returns `None` and perform the actions
//!   in order; then (re)arm a single timer at `poll_timeout` and call `handle_timeout` when it
//!   fires.
//! * Every `handle_request` ends in exactly one `Action::Complete` for that request, possibly
//!   within the same call.
//! * `Connect` is answered by `handle_connected` or `handle_connect_failed`; a `Send` is answered
//!   by at most one `handle_response_head` and exactly one `handle_attempt_end`, unless the
//!   engine cancels the attempt first (`CancelAttempt`), after which the driver must not report
//!   on that attempt again.
//!
//! The proxy owns its state and a ChaCha RNG seeded by the driver; it never reads a clock,
//! spawns, or touches a socket.

use crate::idmap::IdMap;
use crate::mesh::{ClusterId, CompiledMesh, RouteId};
use crate::registry::EndpointId;
use crate::time::Time;
use crate::types::{
    Action, AttemptEnd, AttemptId, ConnId, ConnectFailure, Outcome, RequestHead, RequestId,
    ResponseFlags, ResponseHead,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::sync::Arc;

/// What kind of proxy this is; informs defaults and reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyRole {
    /// The outbound side of a service's sidecar.
    Sidecar {
        /// The service the sidecar belongs to.
        service: String,
    },
    /// The client side of a load generator (a workload's own outbound proxy).
    Client {
        /// The workload's name.
        name: String,
    },
}

/// A request in flight.
#[derive(Debug)]
struct Request {
    head: RequestHead,
    route: Option<RouteId>,
    cluster: Option<ClusterId>,
    endpoint: Option<EndpointId>,
    attempts: u32,
    attempt: Option<AttemptId>,
    status: Option<u16>,
}

/// An attempt in flight.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    req: RequestId,
    conn: ConnId,
}

/// State of one upstream connection (HTTP/1.1: one request at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Connect requested; the attempt waits for it, if it is still wanted.
    Connecting(Option<AttemptId>),
    /// Carrying this attempt.
    Busy(AttemptId),
    /// Open and unused, listed in `idle` for its endpoint.
    Idle,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    endpoint: EndpointId,
    state: ConnState,
}

/// The sans-IO proxy engine. See the module documentation for the driver contract.
pub struct Proxy {
    config: Arc<CompiledMesh>,
    role: ProxyRole,
    rng: ChaCha8Rng,
    now: Time,
    requests: IdMap<RequestId, Request>,
    attempts: IdMap<AttemptId, Attempt>,
    conns: IdMap<ConnId, Conn>,
    /// Idle connections per endpoint (indexed by `EndpointId`), most recently used last.
    idle: Vec<Vec<ConnId>>,
    /// Round-robin cursor per cluster (indexed by `ClusterId`); `None` until first use, then
    /// started at a random offset as Envoy seeds each LB.
    rr: Vec<Option<u32>>,
    next_attempt: u64,
    next_conn: u64,
    actions: VecDeque<Action>,
}

impl Proxy {
    /// A proxy running `config`, drawing randomness from a ChaCha stream seeded with `seed`.
    pub fn new(config: Arc<CompiledMesh>, role: ProxyRole, seed: u64) -> Proxy {
        let mut p = Proxy {
            config,
            role,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Time::ZERO,
            requests: IdMap::default(),
            attempts: IdMap::default(),
            conns: IdMap::default(),
            idle: Vec::new(),
            rr: Vec::new(),
            next_attempt: 0,
            next_conn: 0,
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
        self.conns.len()
    }

    fn size_tables(&mut self) {
        self.idle
            .resize_with(self.config.endpoints().len(), Vec::new);
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
        let mut r = Request {
            head,
            route: None,
            cluster: None,
            endpoint: None,
            attempts: 0,
            attempt: None,
            status: None,
        };
        let Some(route) = self
            .config
            .routes_for_host(r.head.host())
            .and_then(|rs| rs.first())
        else {
            return self.local_reply(req, r, 404, ResponseFlags::NO_ROUTE_FOUND);
        };
        r.route = Some(*route);
        let cluster = self.pick_cluster(*route);
        r.cluster = Some(cluster);
        let Some(endpoint) = self.pick_endpoint(cluster) else {
            return self.local_reply(req, r, 503, ResponseFlags::NO_HEALTHY_UPSTREAM);
        };
        self.requests.insert(req, r);
        self.start_attempt(req, endpoint);
    }

    /// Weighted pick: `rand % total` over the cumulative list, as Envoy does.
    fn pick_cluster(&mut self, route: RouteId) -> ClusterId {
        let clusters = &self.config.route(route).clusters;
        if let [only] = clusters.as_slice() {
            return only.cluster;
        }
        // Compilation guarantees a non-empty list with a positive total.
        let total = clusters.last().map_or(1, |c| c.cumulative);
        let draw = self.rng.gen_range(0..total);
        clusters
            .iter()
            .find(|c| draw < c.cumulative)
            .unwrap_or(&clusters[clusters.len() - 1])
            .cluster
    }

    /// Round robin with a random starting offset per cluster.
    fn pick_endpoint(&mut self, cluster: ClusterId) -> Option<EndpointId> {
        let endpoints = &self.config.cluster(cluster).endpoints;
        let n = endpoints.len() as u32;
        if n == 0 {
            return None;
        }
        let slot = &mut self.rr[cluster.0 as usize];
        let idx = match *slot {
            Some(i) => i,
            None => self.rng.gen_range(0..n),
        };
        *slot = Some(idx.wrapping_add(1) % n);
        Some(endpoints[(idx % n) as usize])
    }

    fn start_attempt(&mut self, req: RequestId, endpoint: EndpointId) {
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        let conn = match self.idle[endpoint.0 as usize].pop() {
            Some(conn) => conn,
            None => {
                let conn = ConnId(self.next_conn);
                self.next_conn += 1;
                self.conns.insert(
                    conn,
                    Conn {
                        endpoint,
                        state: ConnState::Connecting(None),
                    },
                );
                self.actions.push_back(Action::Connect { conn, endpoint });
                conn
            }
        };
        self.attempts.insert(attempt, Attempt { req, conn });
        if let Some(r) = self.requests.get_mut(&req) {
            r.attempts += 1;
            r.attempt = Some(attempt);
            r.endpoint = Some(endpoint);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            debug_assert!(false, "connection {conn:?} vanished");
            return;
        };
        match c.state {
            ConnState::Idle => {
                c.state = ConnState::Busy(attempt);
                self.send(attempt, conn);
            }
            ConnState::Connecting(_) => c.state = ConnState::Connecting(Some(attempt)),
            ConnState::Busy(other) => {
                debug_assert!(false, "idle list held busy {conn:?} ({other:?})")
            }
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
            attempt,
            conn,
            head,
        });
    }

    /// The connection `conn` from an earlier `Action::Connect` is established.
    pub fn handle_connected(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.state {
            ConnState::Connecting(Some(attempt)) => {
                c.state = ConnState::Busy(attempt);
                self.send(attempt, conn);
            }
            ConnState::Connecting(None) => {
                c.state = ConnState::Idle;
                self.idle[c.endpoint.0 as usize].push(conn);
            }
            ConnState::Busy(_) | ConnState::Idle => {}
        }
    }

    /// The connection `conn` could not be established.
    pub fn handle_connect_failed(&mut self, now: Time, conn: ConnId, why: ConnectFailure) {
        self.advance(now);
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let ConnState::Connecting(Some(attempt)) = c.state {
            let _ = why; // Both refusal and timeout are Envoy's `UF` (connect-failure).
            self.fail_attempt(attempt, 503, ResponseFlags::UPSTREAM_CONNECTION_FAILURE);
        }
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
            self.actions.push_back(Action::Forward { req, attempt });
        }
    }

    /// The attempt's response ended (or the stream broke).
    pub fn handle_attempt_end(&mut self, now: Time, attempt: AttemptId, end: AttemptEnd) {
        self.advance(now);
        let Some(a) = self.attempts.remove(&attempt) else {
            return;
        };
        self.release_conn(a.conn, end == AttemptEnd::Done);
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
                if let Some(r) = self.requests.remove(&a.req) {
                    self.local_reply(a.req, r, 503, flags);
                }
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
            if let Some(a) = self.attempts.remove(&attempt) {
                self.actions.push_back(Action::CancelAttempt { attempt });
                // An HTTP/1.1 connection mid-request cannot be reused.
                self.release_conn(a.conn, false);
            }
        }
        let status = status.unwrap_or(0);
        self.complete(
            req,
            status,
            ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION,
        );
    }

    /// A timer armed at `poll_timeout` fired.
    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now);
    }

    /// The next action for the driver, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must call `handle_timeout` next, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        None
    }

    /// Puts a finished connection back in the idle list, or forgets (and closes) it.
    fn release_conn(&mut self, conn: ConnId, reusable: bool) {
        if reusable {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.state = ConnState::Idle;
                self.idle[c.endpoint.0 as usize].push(conn);
            }
        } else if let Some(c) = self.conns.remove(&conn) {
            if c.state != ConnState::Connecting(None) {
                self.actions.push_back(Action::CloseConnection { conn });
            }
        }
    }

    fn fail_attempt(&mut self, attempt: AttemptId, status: u16, flags: ResponseFlags) {
        let Some(a) = self.attempts.remove(&attempt) else {
            return;
        };
        if let Some(r) = self.requests.remove(&a.req) {
            self.local_reply(a.req, r, status, flags);
        }
    }

    fn local_reply(&mut self, req: RequestId, r: Request, status: u16, flags: ResponseFlags) {
        self.actions
            .push_back(Action::LocalReply { req, status, flags });
        self.requests.insert(req, r);
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
            flags,
            attempts: r.attempts,
            route: r.route,
            cluster: r.cluster,
            destination: r.endpoint.map(|e| self.config.endpoint(e).destination),
            endpoint: r.endpoint,
        };
        self.actions.push_back(Action::Complete { req, outcome });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;
    use crate::registry::{Endpoint, EndpointAddr, Registry};
    use std::collections::BTreeMap;

    fn proxy(endpoints: u32) -> Proxy {
        let mut reg = Registry::default();
        let eps = (0..endpoints)
            .map(|i| Endpoint {
                addr: EndpointAddr::Sim(i),
                labels: BTreeMap::new(),
            })
            .collect();
        reg.add_service("backend", eps);
        let mesh = CompiledMesh::compile(&MeshConfig::default(), &reg).expect("compiles");
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
        let Some(Action::Send { attempt, conn, .. }) = actions.first().cloned() else {
            panic!("expected a send, got {actions:?}");
        };
        let endpoint = p.conns[&conn].endpoint;
        p.handle_response_head(now, attempt, ResponseHead { status });
        p.handle_attempt_end(now, attempt, AttemptEnd::Done);
        let actions = drain(p);
        assert!(matches!(actions[0], Action::Forward { .. }));
        let outcomes = completed(&actions);
        assert_eq!(outcomes.len(), 1);
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
