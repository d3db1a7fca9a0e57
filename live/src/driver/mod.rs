//! The engine driver: one `proxy_engine::Proxy` behind a mutex, driven by whichever task has
//! news for it. A downstream request's own task feeds the engine, takes the I/O the engine asks
//! for (connect, send), performs it *inline* — awaiting the upstream without a hop through
//! another task — and feeds the result back, until the engine completes the request. Work that
//! belongs to no waiting task (a fault delay ending, a mirror) runs on a spawned task. The lock
//! is never held across an await.
//!
//! The engine makes every decision; this module only moves bytes and time: it stamps inputs with
//! the clock, turns `Action`s into socket work, answers the downstream, records outcomes.
//! This module holds the state, the handle and the socket work; `drain` turns the engine's
//! actions into work and replies and records each outcome.
//!
//! **Invariant:** every request handed to `ProxyHandle::request` ends in exactly one engine
//! `Complete`, which is recorded (metrics, access log) before the request is forgotten. A
//! downstream that goes away calls `cancel`, which the engine completes with `DC`.

use crate::clock::Clock;
use crate::http_util::{self, Body};
use crate::upstream::{self, Answer, AttemptFailure, Sender};
use bytes::Bytes;
use http::Response;
use metrics::{Recorder, RunMetrics};
use proxy_engine::idmap::IdMap;
use proxy_engine::tls::UpstreamTls;
use proxy_engine::{
    Action, AttemptEnd, AttemptId, CompiledMesh, ConnId, ConnectFailure, EndpointId, EndpointMap,
    Outcome, Proxy, ProxyRole, RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};

/// Live gauges (read by the admin endpoint).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Downstream requests not yet completed.
    pub active_requests: AtomicU64,
    /// Upstream connections (connecting, busy or idle).
    pub upstream_connections: AtomicU64,
    /// Downstream connections open (maintained by the server).
    pub downstream_connections: AtomicU64,
    /// Requests received.
    pub requests_total: AtomicU64,
    /// Downstream connections that ended in a protocol error (hyper answered 400 or 431, or the
    /// header read timeout cut the client off).
    pub protocol_errors_total: AtomicU64,
    /// Requests the listener refused before the engine saw them (413 body too large, 400
    /// missing or invalid Host).
    pub rejected_total: AtomicU64,
    /// Accepts that failed (out of file descriptors, mostly); each paused the listener's
    /// accept loop for its backoff.
    pub accept_errors_total: AtomicU64,
}

/// One config generation as a driver runs it: the compiled mesh, and the socket address of each
/// of its endpoints (the engine knows endpoints by id and name only).
///
/// **Invariant:** `addrs` was built for `mesh` (`CompiledMesh::endpoint_map`), so every endpoint
/// id the engine hands out under this generation is looked up in the right table.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The compiled mesh.
    pub mesh: Arc<CompiledMesh>,
    /// Where each endpoint of `mesh` listens.
    pub addrs: EndpointMap<SocketAddr>,
}

/// What a proxy holds open at one moment (see `ProxyHandle::open`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Open {
    /// Downstream requests the engine has not completed.
    pub requests: usize,
    /// Mirrored copies not yet done.
    pub mirrors: usize,
    /// Upstream connections (connecting, busy or idle).
    pub connections: usize,
    /// Connects and exchanges under way (each is a task or part of one).
    pub exchanges: usize,
    /// Requests (and copies) whose body the driver keeps.
    pub bodies: usize,
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// Name (access log, metrics).
    pub name: String,
    /// Seed of the engine's RNG.
    pub seed: u64,
    /// Largest upstream response body.
    pub max_response_bytes: usize,
    /// Print an access log line per request.
    pub access_log: bool,
    /// Time-series window of the metrics; `None` keeps no time series (a proxy that runs
    /// indefinitely: a series grows with uptime, and `/metrics` does not use it).
    pub window: Option<proxy_engine::Nanos>,
    /// Where a rollout reads the hops this proxy completes (`run --live` with a rollout).
    pub probe: Option<Arc<crate::delivery::LiveProbe>>,
    /// The gateway server this proxy's listener is (a gateway proxy: every request is routed
    /// as arriving on it, `Proxy::handle_gateway_request`); `None` for other proxies.
    pub listener: Option<proxy_engine::gateway::Listener>,
}

/// Envoy's header telling the upstream which try this is (1 for the first).
const ATTEMPT_COUNT: http::HeaderName = http::HeaderName::from_static("x-envoy-attempt-count");

/// The `x-envoy-attempt-count` value for try `n`: the usual small counts are static values,
/// which costs no allocation per attempt.
fn attempt_count(n: u32) -> http::HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(n as usize) {
        Some(s) => http::HeaderValue::from_static(s),
        None => http::HeaderValue::from(n),
    }
}

/// Socket work the engine asked for, to be performed outside the lock.
enum Work {
    Connect {
        conn: ConnId,
        addr: SocketAddr,
        http2: bool,
        /// The TLS to originate, if the cluster's destination rule asks for it.
        tls: Option<crate::origination::Originate>,
        /// Fires (or is dropped) when the engine gives up on the connection.
        abort: tokio::sync::oneshot::Receiver<()>,
    },
    /// Boxed: a `Work` moves several times between the drain and the exchange, and an
    /// exchange (with its request) is most of its size.
    Exchange(Box<Exchange>),
}

/// The socket work one drain produced. Nearly always a single item, so the first is held
/// inline: a drain then allocates nothing.
#[derive(Default)]
struct Todo {
    first: Option<Work>,
    rest: Vec<Work>,
}

impl Todo {
    fn push(&mut self, w: Work) {
        match self.first {
            None => self.first = Some(w),
            Some(_) => self.rest.push(w),
        }
    }

    /// The last item pushed.
    fn pop(&mut self) -> Option<Work> {
        self.rest.pop().or_else(|| self.first.take())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn into_vec(self) -> Vec<Work> {
        self.first.into_iter().chain(self.rest).collect()
    }
}

/// An attempt to send on an open connection.
struct Exchange {
    attempt: AttemptId,
    conn: ConnId,
    sender: Sender,
    request: http::Request<Body>,
}

/// A request the driver is handling.
struct Pending {
    body: Bytes,
    start: Time,
    /// Wall-clock start, only taken when the access log is on.
    start_wall: Option<std::time::SystemTime>,
    /// The head handed to the engine (the access log's method and path).
    head: RequestHead,
    /// The downstream parts the head was made from, if any: a first attempt whose head the
    /// engine did not change forwards these parts (taken) rather than rebuilding the request
    /// from the head.
    parts: Option<http::request::Parts>,
}

/// A downstream response on its way to the request's task. The task performs the request's
/// first work inline, so the response is usually there when that returns (`Ready`, taken
/// without a channel); a task that must wait leaves a channel (`Waiting`).
///
/// **Invariant:** an entry (in `State::replies`, or the one in `State::ready`) exists only for
/// a request still in `reqs` or whose task has not yet taken its response; `cancel` (the task
/// is gone) removes it. A request has at most one entry.
enum Reply {
    Ready(Response<Body>),
    Waiting(oneshot::Sender<Response<Body>>),
}

/// Everything behind the lock.
struct State {
    engine: Proxy,
    conns: IdMap<ConnId, Option<Sender>>,
    /// Connections being opened, with the handle that aborts the connect: the engine alone
    /// decides when a connect has taken too long (`CloseConnection`).
    connecting: IdMap<ConnId, tokio::sync::oneshot::Sender<()>>,
    /// Attempts whose exchange is under way, with the handle that aborts it. Removed when
    /// answered or cancelled: an exchange that reports back for an attempt no longer here
    /// was cancelled.
    attempts: IdMap<AttemptId, upstream::Cancel>,
    reqs: IdMap<RequestId, Pending>,
    /// Downstream responses not yet taken by their request's task (see `Reply`), and the
    /// tasks waiting for theirs.
    replies: IdMap<RequestId, Reply>,
    /// A ready response, held here rather than in `replies` when the slot is free (nearly
    /// always: the task takes it as soon as its inline work returns), which spares two map
    /// operations per request.
    ready: Option<(RequestId, Response<Body>)>,
    /// Records outcomes against every generation the proxy has run (a request routed before
    /// a reload is named by its own generation: `Outcome::generation`).
    metrics: Recorder,
    /// The deadline the timer task sleeps towards.
    armed: Option<Time>,
    /// Where the current generation's endpoints listen.
    addrs: EndpointMap<SocketAddr>,
    /// TLS origination setups built so far, by settings and HTTP/2 (an error is kept too, so
    /// a bad file is read and warned about once).
    originate: BTreeMap<(UpstreamTls, bool), Option<crate::origination::Originate>>,
}

struct Shared {
    state: Mutex<State>,
    clock: Clock,
    opts: DriverOptions,
    gauges: Arc<Gauges>,
    next: AtomicU64,
    /// Wakes the timer task when the engine's deadline changes.
    timer: Notify,
}

/// A cloneable handle to a running driver.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    /// Live gauges.
    pub gauges: Arc<Gauges>,
}

/// Starts a driver for generation `generation` (and its timer task) on the current tokio
/// runtime.
pub fn spawn(generation: Generation, role: ProxyRole, opts: DriverOptions) -> ProxyHandle {
    let Generation { mesh, addrs } = generation;
    let gauges = Arc::new(Gauges::default());
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            engine: Proxy::new(mesh.clone(), role, opts.seed),
            conns: IdMap::default(),
            connecting: IdMap::default(),
            attempts: IdMap::default(),
            reqs: IdMap::default(),
            replies: IdMap::default(),
            ready: None,
            metrics: recorder(mesh, opts.window),
            armed: None,
            addrs,
            originate: std::collections::BTreeMap::new(),
        }),
        clock: Clock::new(),
        opts,
        gauges: gauges.clone(),
        next: AtomicU64::new(0),
        timer: Notify::new(),
    });
    tokio::spawn(timer_task(shared.clone()));
    ProxyHandle { shared, gauges }
}

impl ProxyHandle {
    /// A fresh request id.
    pub fn next_id(&self) -> RequestId {
        RequestId(self.shared.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs one request through the proxy and waits for its response.
    pub async fn request(&self, head: RequestHead, body: Bytes) -> Option<Response<Body>> {
        let req = self.next_id();
        self.request_with_id(req, head, body).await
    }

    /// Like `request`, with an id from `next_id` (so the caller can `cancel` it).
    pub async fn request_with_id(
        &self,
        req: RequestId,
        head: RequestHead,
        body: Bytes,
    ) -> Option<Response<Body>> {
        let work = self.start(req, head, None, body);
        self.finish(req, work).await
    }

    /// Like `request_with_id`, for a downstream request whose parts `head` was made from: if
    /// the engine sends the head unchanged, the upstream request reuses these parts.
    pub async fn forward(
        &self,
        req: RequestId,
        head: RequestHead,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Option<Response<Body>> {
        let work = self.start(req, head, Some(parts), body);
        self.finish(req, work).await
    }

    /// Hands a request to the engine; returns the socket work that leads to. Not an `async
    /// fn`: the request's parts are moved once, into `Pending`, not through a chain of
    /// futures (which hyper moves per request).
    fn start(
        &self,
        req: RequestId,
        head: RequestHead,
        parts: Option<http::request::Parts>,
        body: Bytes,
    ) -> Todo {
        {
            let mut st = self.shared.lock();
            let now = self.shared.clock.now();
            self.gauges.requests_total.fetch_add(1, Ordering::Relaxed);
            st.reqs.insert(
                req,
                Pending {
                    body,
                    start: now,
                    start_wall: self.shared.opts.access_log.then(std::time::SystemTime::now),
                    head: head.clone(),
                    parts,
                },
            );
            match self.shared.opts.listener {
                Some(l) => st.engine.handle_gateway_request(now, req, head, l),
                None => st.engine.handle_request(now, req, head),
            }
            self.shared.drain(&mut st, now, None)
        }
    }

    /// Performs a started request's work and waits for its response.
    async fn finish(&self, req: RequestId, work: Todo) -> Option<Response<Body>> {
        self.shared.perform_inline(work).await;
        // Usually the inline work ended the request; otherwise a timer or another task will.
        let rx = {
            let mut st = self.shared.lock();
            if st.ready.as_ref().is_some_and(|(r, _)| *r == req) {
                return st.ready.take().map(|(_, resp)| resp);
            }
            if let Some(Reply::Ready(resp)) = st.replies.remove(&req) {
                return Some(resp);
            }
            let (tx, rx) = oneshot::channel();
            st.replies.insert(req, Reply::Waiting(tx));
            rx
        };
        rx.await.ok()
    }

    /// The downstream of `req` went away: the engine completes it with `DC`.
    pub fn cancel(&self, req: RequestId) {
        let work = {
            let mut st = self.shared.lock();
            st.replies.remove(&req);
            st.ready.take_if(|(r, _)| *r == req);
            if !st.reqs.contains_key(&req) {
                return;
            }
            let now = self.shared.clock.now();
            st.engine.handle_downstream_cancel(now, req);
            self.shared.drain(&mut st, now, None)
        };
        self.shared.clone().spawn_all(work);
    }

    /// Swaps in a new generation, a later one of the running mesh
    /// (`CompiledMesh::compile_next`): requests in flight finish on the routes they chose, and
    /// every cluster's and endpoint's state (pools, ejections, balancing) carries over for what
    /// stayed. A mesh of another lineage is refused and the running one kept.
    pub fn reload(&self, generation: Generation) -> Result<(), proxy_engine::ApplyError> {
        let Generation { mesh, addrs } = generation;
        let mut st = self.shared.lock();
        let now = self.shared.clock.now();
        st.engine.apply_config(now, mesh.clone())?;
        st.addrs = addrs;
        // The engine took it, so it succeeds the recorder's latest too.
        let added = st.metrics.add_generation(mesh);
        debug_assert!(added.is_ok(), "{added:?}");
        let work = self.shared.drain(&mut st, now, None);
        drop(st);
        self.shared.clone().spawn_all(work);
        Ok(())
    }

    /// What the proxy holds open now: (downstream requests, mirrored copies, upstream
    /// connections, request bodies kept). After traffic stops, each falls to zero (an idle
    /// pooled connection aside) by the last deadline.
    pub fn open(&self) -> Open {
        let st = self.shared.lock();
        Open {
            requests: st.engine.open_requests(),
            mirrors: st.engine.open_mirrors(),
            connections: st.engine.open_connections(),
            exchanges: st.attempts.len() + st.connecting.len(),
            bodies: st.reqs.len(),
        }
    }

    /// The mesh the proxy runs (the one to compile the next generation from).
    pub fn mesh(&self) -> Arc<CompiledMesh> {
        self.shared.lock().engine.config().clone()
    }

    /// A snapshot of what the proxy measured under its current mesh: every outcome is a hop
    /// record and a proxy-observed end-to-end record. See `metrics` for all meshes.
    pub fn snapshot(&self) -> Recorder {
        self.shared.lock().metrics.clone()
    }

    /// Everything the proxy measured, across reloads, named and merged by name.
    pub fn metrics(&self) -> RunMetrics {
        let current = self.shared.lock().metrics.clone();
        current.finish()
    }
}

/// Sleeps towards the engine's next deadline and fires `handle_timeout`; re-arms whenever a
/// drain changes the deadline. Ends when every `ProxyHandle` is gone.
async fn timer_task(shared: Arc<Shared>) {
    loop {
        if Arc::strong_count(&shared) == 1 {
            return; // only this task is left
        }
        let notified = shared.timer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let armed = shared.lock().armed;
        let sleep = match armed {
            Some(t) => tokio::time::sleep_until(shared.clock.instant_of(t).into()),
            // Nothing armed: look again in a while (and notice when the proxy is dropped).
            None => tokio::time::sleep(Duration::from_secs(1)),
        };
        tokio::select! {
            _ = sleep => {
                if armed.is_none() {
                    continue;
                }
                let work = {
                    let mut st = shared.lock();
                    let now = shared.clock.now();
                    st.engine.handle_timeout(now);
                    shared.drain(&mut st, now, None)
                };
                shared.clone().spawn_all(work);
            }
            _ = &mut notified => {}
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    /// Performs `work`: the first item inline (this task waits for it anyway), the rest on
    /// spawned tasks; then whatever the results lead to, the same way.
    ///
    /// An exchange is awaited directly and anything else boxed: this future is part of every
    /// proxied request's, which hyper moves once per request, and each nested `async fn` adds
    /// its own copy of its arguments.
    async fn perform_inline(self: &Arc<Self>, mut work: Todo) {
        while let Some(first) = work.pop() {
            if !work.is_empty() {
                self.clone().spawn_all(std::mem::take(&mut work));
            }
            work = match first {
                Work::Exchange(x) => self.exchange(x).await,
                other => Box::pin(self.clone().perform(other)).await,
            };
        }
    }

    fn spawn_all(self: Arc<Self>, work: Todo) {
        for w in work.into_vec() {
            let s = self.clone();
            tokio::spawn(async move {
                let more = s.clone().perform(w).await;
                s.perform_inline(more).await;
            });
        }
    }

    /// One piece of socket work; returns the work its result leads to.
    ///
    /// Connects are boxed: they are rare next to exchanges, and unboxed their futures would
    /// size every request's future (which hyper moves per request) to theirs.
    async fn perform(self: Arc<Self>, work: Work) -> Todo {
        match work {
            Work::Connect {
                conn,
                addr,
                http2,
                tls,
                abort,
            } => {
                let connect = upstream::connect_untimed(addr, http2, tls.as_ref());
                let result = tokio::select! {
                    r = Box::pin(connect) => r,
                    // The engine closed the connection (its connect timeout): nothing to report.
                    _ = abort => return Todo::default(),
                };
                let mut st = self.lock();
                let now = self.clock.now();
                if st.connecting.remove(&conn).is_none() {
                    return Todo::default(); // closed by the engine meanwhile
                }
                match result {
                    Ok(sender) => {
                        if let Some(slot) = st.conns.get_mut(&conn) {
                            *slot = Some(sender);
                        }
                        st.engine.handle_connected(now, conn);
                    }
                    Err(why) => {
                        st.conns.remove(&conn);
                        st.engine.handle_connect_failed(now, conn, why);
                    }
                }
                self.drain(&mut st, now, None)
            }
            Work::Exchange(x) => self.exchange(x).await,
        }
    }

    /// Sends an attempt and feeds the engine its answer; returns the work that leads to.
    async fn exchange(&self, x: Box<Exchange>) -> Todo {
        let Exchange {
            attempt,
            conn,
            mut sender,
            request,
        } = *x;
        // A cancelled exchange (the engine gave up on the attempt: timeout, downstream gone)
        // ends with `Cancelled`, its request dropped, which resets the stream (HTTP/1.1:
        // closes the connection); `answered` then finds the attempt gone.
        let max = self.opts.max_response_bytes;
        let result = upstream::exchange(&mut sender, request, max).await;
        let mut st = self.lock();
        let now = self.clock.now();
        let answer = self.answered(&mut st, attempt, conn, sender, result, now);
        // A response the engine does not forward (a retriable status it retried) is dropped
        // with the drain; a forwarded one is taken by it.
        self.drain(&mut st, now, answer)
    }

    fn answered(
        &self,
        st: &mut State,
        attempt: AttemptId,
        conn: ConnId,
        mut sender: Sender,
        result: Result<Answer, AttemptFailure>,
        now: Time,
    ) -> Option<(AttemptId, Answer)> {
        // Gone if cancelled: the engine no longer wants it.
        st.attempts.remove(&attempt)?;
        let h1 = matches!(sender, Sender::H1(_));
        if !h1 && sender.is_closed() {
            // The HTTP/2 connection itself is gone, not just this stream.
            st.conns.remove(&conn);
            st.engine.handle_connection_closed(now, conn);
        }
        match result {
            Ok(answer) => {
                let end = if upstream::closes(&answer.0) {
                    AttemptEnd::DoneAndClosed
                } else {
                    if h1 {
                        if let Some(slot) = st.conns.get_mut(&conn) {
                            *slot = Some(sender);
                        }
                    }
                    AttemptEnd::Done
                };
                let status = answer.0.status.as_u16();
                st.engine
                    .handle_response_head(now, attempt, ResponseHead { status });
                st.engine.handle_attempt_end(now, attempt, end);
                Some((attempt, answer))
            }
            Err(_) => {
                st.engine
                    .handle_attempt_end(now, attempt, AttemptEnd::Reset);
                None
            }
        }
    }

    fn addr(st: &State, endpoint: EndpointId) -> Option<SocketAddr> {
        st.addrs.get(endpoint).copied()
    }

    /// The TLS origination setup for `tls`, built on first use; `None` when it cannot be
    /// (a missing or bad PEM file: warned about once, on stderr, and every such connect
    /// fails as a failed handshake would).
    fn originate(
        &self,
        st: &mut State,
        tls: &proxy_engine::tls::UpstreamTls,
        http2: bool,
    ) -> Option<crate::origination::Originate> {
        let key = (tls.clone(), http2);
        if let Some(built) = st.originate.get(&key) {
            return built.clone();
        }
        let built = match crate::origination::originate(tls, http2) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!(
                    "meshtwin: proxy {}: TLS origination to `{}` cannot start: {e}",
                    self.opts.name, tls.sni
                );
                None
            }
        };
        st.originate.insert(key, built.clone());
        built
    }
}

/// A recorder for `mesh`, with or without a time series.
fn recorder(mesh: Arc<CompiledMesh>, window: Option<proxy_engine::Nanos>) -> Recorder {
    match window {
        Some(w) => Recorder::new(mesh, w),
        None => Recorder::without_series(mesh),
    }
}

mod drain;
