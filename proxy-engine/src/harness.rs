//! An engine test harness: one `Proxy` driven through the sans-IO contract by a scripted
//! upstream, on a virtual clock, so an engine test reads as a short story — a request, how the
//! upstream answers, the outcome:
//!
//! ```
//! use proxy_engine::harness::{registry, Harness, Reply};
//! use proxy_engine::{CompiledMesh, MeshConfig, RequestHead};
//! use std::sync::Arc;
//!
//! let reg = registry(&[("backend", &[("v1", 2)])]);
//! let mesh = CompiledMesh::compile(&MeshConfig::default(), &reg).expect("compiles");
//! let mut h = Harness::new(Arc::new(mesh)).upstream(|_| Reply::Status(503));
//! let outcome = h.request(RequestHead::get("backend", "/"));
//! assert_eq!(outcome.status, 503);
//! ```
//!
//! The upstream answers each connect after `connect_latency` and each attempt after
//! `latency`, as its scripts say (accept, refuse or hang; a status, a reset or a hang). Time
//! moves only to the next scripted answer or the engine's next timer, so timeouts, backoffs
//! and outlier ticks happen as the engine asks. Everything the engine did is kept for the
//! story's assertions (`sent`, `connects`, `events`, `mirrors`).

use crate::gateway::Listener;
use crate::mesh::CompiledMesh;
use crate::proxy::{Proxy, ProxyRole};
use crate::registry::{Endpoint, EndpointId, Registry};
use crate::time::{Nanos, Time};
use crate::types::{
    Action, AttemptEnd, AttemptId, ConnId, ConnectFailure, EngineEvent, Outcome, RequestHead,
    RequestId, ResponseFlags, ResponseHead,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A registry of simulated endpoints: for each service, each `(version, count)` adds `count`
/// instances labelled `version: <version>` and named `service/version/k`.
pub fn registry(services: &[(&str, &[(&str, u32)])]) -> Registry {
    let mut reg = Registry::default();
    for (service, versions) in services {
        let mut eps = Vec::new();
        for (version, count) in versions.iter() {
            for k in 0..*count {
                eps.push(Endpoint {
                    name: format!("{service}/{version}/{k}"),
                    labels: BTreeMap::from([("version".to_owned(), (*version).to_owned())]),
                });
            }
        }
        reg.add_service(*service, eps);
    }
    reg
}

/// How the scripted upstream answers an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A whole response with this status, after `latency`.
    Status(u16),
    /// The stream is reset before any response head, after `latency`.
    Reset,
    /// Never answers.
    Hang,
}

/// How the scripted upstream answers a connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Established after `connect_latency`.
    Yes,
    /// Refused after `connect_latency`.
    Refuse,
    /// Never answers (the SYN is lost).
    Hang,
}

/// An attempt the engine sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// When.
    pub at: Time,
    /// The request it serves (a mirrored copy's id for a copy).
    pub req: RequestId,
    /// Where.
    pub endpoint: EndpointId,
    /// Which try (1 for the first).
    pub try_number: u32,
    /// The head as sent.
    pub head: RequestHead,
}

/// An input the harness will give the engine.
#[derive(Clone, Copy, Debug)]
enum Input {
    Connected(ConnId),
    ConnectFailed(ConnId),
    Answer(AttemptId, u16),
    Reset(AttemptId),
}

type UpstreamScript = Box<dyn FnMut(&Sent) -> Reply>;
/// A local reply's headers, as the engine gave them.
pub type ReplyHeaders = Vec<(Arc<str>, Arc<str>)>;
type ConnectScript = Box<dyn FnMut(EndpointId) -> Accept>;

/// A proxy and its scripted upstream on a virtual clock. See the module documentation.
pub struct Harness {
    /// The engine under test.
    pub proxy: Proxy,
    /// Time from a send to its scripted answer. Default 1 ms.
    pub latency: Nanos,
    /// Time from a connect to its scripted answer. Default 0.
    pub connect_latency: Nanos,
    /// Every attempt sent, in order.
    pub sent: Vec<Sent>,
    /// Every connect asked for: when, and where.
    pub connects: Vec<(Time, EndpointId)>,
    /// Every resilience event, with its time.
    pub events: Vec<(Time, EngineEvent)>,
    /// Every mirrored copy's end: status and flags.
    pub mirrors: Vec<(u16, ResponseFlags)>,
    /// Every local reply's headers (a redirect's `location`), by request.
    pub reply_headers: BTreeMap<RequestId, ReplyHeaders>,
    now: Time,
    upstream: UpstreamScript,
    accept: ConnectScript,
    inputs: BTreeMap<(Time, u64), Input>,
    seq: u64,
    next_req: u64,
    done: BTreeMap<RequestId, Outcome>,
}

impl Harness {
    /// A client proxy on `mesh` (seed 7) whose upstream accepts every connect and answers
    /// every attempt 200.
    pub fn new(mesh: Arc<CompiledMesh>) -> Harness {
        let role = ProxyRole::Client {
            name: "harness".into(),
        };
        Harness::with_proxy(Proxy::new(mesh, role, 7))
    }

    /// The harness around an existing proxy (its clock starts at zero).
    pub fn with_proxy(proxy: Proxy) -> Harness {
        Harness {
            proxy,
            latency: Nanos::from_millis(1),
            connect_latency: Nanos::ZERO,
            sent: Vec::new(),
            connects: Vec::new(),
            events: Vec::new(),
            mirrors: Vec::new(),
            reply_headers: BTreeMap::new(),
            now: Time::ZERO,
            upstream: Box::new(|_| Reply::Status(200)),
            accept: Box::new(|_| Accept::Yes),
            inputs: BTreeMap::new(),
            seq: 0,
            next_req: 1,
            done: BTreeMap::new(),
        }
    }

    /// This harness, with the upstream answering attempts as `script` says.
    pub fn upstream(mut self, script: impl FnMut(&Sent) -> Reply + 'static) -> Harness {
        self.upstream = Box::new(script);
        self
    }

    /// This harness, with connects answered as `script` says.
    pub fn accept(mut self, script: impl FnMut(EndpointId) -> Accept + 'static) -> Harness {
        self.accept = Box::new(script);
        self
    }

    /// The virtual time now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Hands the proxy a new request now; returns its id.
    pub fn send(&mut self, head: RequestHead) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.proxy.handle_request(self.now, req, head);
        self.drain();
        req
    }

    /// Hands the proxy (a gateway) a new request on `listener` now; returns its id.
    pub fn send_on(&mut self, head: RequestHead, listener: Listener) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        self.proxy
            .handle_gateway_request(self.now, req, head, listener);
        self.drain();
        req
    }

    /// Sends a request on a gateway `listener` and runs until it completes; its outcome.
    ///
    /// # Panics
    ///
    /// If the request never completes: a broken engine contract.
    pub fn request_on(&mut self, head: RequestHead, listener: Listener) -> Outcome {
        let req = self.send_on(head, listener);
        self.wait(req)
    }

    fn wait(&mut self, req: RequestId) -> Outcome {
        while !self.done.contains_key(&req) {
            assert!(self.step(), "request {req:?} never completed");
        }
        self.done[&req]
    }

    /// Sends a request and runs until it completes; its outcome.
    ///
    /// # Panics
    ///
    /// If the request never completes (nothing left to happen): a broken engine contract.
    pub fn request(&mut self, head: RequestHead) -> Outcome {
        let req = self.send(head);
        self.wait(req)
    }

    /// The outcome of `req`, once it completed.
    pub fn outcome(&self, req: RequestId) -> Option<Outcome> {
        self.done.get(&req).copied()
    }

    /// Runs everything due up to `at`, then sets the clock to `at`.
    pub fn run_until(&mut self, at: Time) {
        while self.next_due().is_some_and(|t| t <= at) {
            self.step();
        }
        self.now = self.now.max(at);
    }

    /// Runs until nothing is left to happen (no scripted answer pending, no engine timer).
    pub fn run(&mut self) {
        while self.step() {}
    }

    /// When the next input or engine timer is due.
    fn next_due(&mut self) -> Option<Time> {
        let input = self.inputs.keys().next().map(|(t, _)| *t);
        let timer = self.proxy.poll_timeout();
        match (input, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Performs the next input or timer; false when there is none.
    fn step(&mut self) -> bool {
        let Some(due) = self.next_due() else {
            return false;
        };
        self.now = self.now.max(due);
        // Scripted answers due now go first, then the engine's timers.
        let first = self.inputs.keys().next().copied();
        match first.filter(|(t, _)| *t <= due) {
            Some(key) => {
                if let Some(input) = self.inputs.remove(&key) {
                    self.give(input);
                }
            }
            None => self.proxy.handle_timeout(self.now),
        }
        self.drain();
        true
    }

    fn give(&mut self, input: Input) {
        let now = self.now;
        let p = &mut self.proxy;
        match input {
            Input::Connected(conn) => p.handle_connected(now, conn),
            Input::ConnectFailed(conn) => {
                p.handle_connect_failed(now, conn, ConnectFailure::Refused)
            }
            Input::Answer(attempt, status) => {
                p.handle_response_head(now, attempt, ResponseHead { status });
                p.handle_attempt_end(now, attempt, AttemptEnd::Done);
            }
            Input::Reset(attempt) => p.handle_attempt_end(now, attempt, AttemptEnd::Reset),
        }
    }

    fn schedule(&mut self, after: Nanos, input: Input) {
        self.seq += 1;
        self.inputs.insert((self.now + after, self.seq), input);
    }

    /// Performs every action the proxy queued.
    fn drain(&mut self) {
        while let Some(action) = self.proxy.poll_action() {
            match action {
                Action::Connect { conn, endpoint, .. } => {
                    self.connects.push((self.now, endpoint));
                    match (self.accept)(endpoint) {
                        Accept::Yes => self.schedule(self.connect_latency, Input::Connected(conn)),
                        Accept::Refuse => {
                            self.schedule(self.connect_latency, Input::ConnectFailed(conn))
                        }
                        Accept::Hang => {}
                    }
                }
                Action::Send {
                    req,
                    attempt,
                    endpoint,
                    head,
                    try_number,
                    ..
                } => {
                    let sent = Sent {
                        at: self.now,
                        req,
                        endpoint,
                        try_number,
                        head,
                    };
                    let reply = (self.upstream)(&sent);
                    self.sent.push(sent);
                    match reply {
                        Reply::Status(s) => self.schedule(self.latency, Input::Answer(attempt, s)),
                        Reply::Reset => self.schedule(self.latency, Input::Reset(attempt)),
                        Reply::Hang => {}
                    }
                }
                Action::Event(e) => self.events.push((self.now, e)),
                Action::Complete { req, outcome } => {
                    self.done.insert(req, outcome);
                }
                Action::MirrorDone { status, flags, .. } => self.mirrors.push((status, flags)),
                Action::LocalReply { req, headers, .. } => {
                    self.reply_headers.insert(req, headers);
                }
                // Late answers to cancelled attempts and closed connections are ignored by the
                // engine, as the contract says; replies and copies carry nothing to do here.
                Action::CancelAttempt { .. }
                | Action::CloseConnection { .. }
                | Action::Forward { .. }
                | Action::Mirror { .. } => {}
            }
        }
    }
}
