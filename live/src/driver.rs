//! The engine driver: one task owns one `proxy_engine::Proxy` and is the only code that calls
//! it. Everything else talks to it through `ProxyHandle` commands; it stamps each input with the
//! clock, drains the engine's actions and performs them (spawning connect and send tasks whose
//! results come back as commands), and arms the engine's one timer.
//!
//! **Invariant:** every `Command::Request` ends in exactly one engine `Complete`, which the
//! driver records (metrics and access log) before forgetting the request. A downstream that
//! goes away sends `Cancel` (see `server`), which the engine completes with `DC`.

use crate::clock::Clock;
use crate::http_util::{self, Body};
use crate::upstream::{self, Answer, AttemptFailure, Sender};
use bytes::Bytes;
use http::Response;
use proxy_engine::metrics::Recorder;
use proxy_engine::{
    Action, AttemptEnd, AttemptId, CompiledMesh, ConnId, ConnectFailure, EndpointAddr, EndpointId,
    Outcome, Proxy, ProxyRole, RequestHead, RequestId, ResponseHead, Time,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Inputs to a driver.
pub enum Command {
    /// A new downstream request; the response goes to `reply`.
    Request {
        /// Unique id (from `ProxyHandle::next_id`).
        req: RequestId,
        /// The request head.
        head: RequestHead,
        /// The whole request body.
        body: Bytes,
        /// Where the response goes.
        reply: oneshot::Sender<Response<Body>>,
    },
    /// The downstream went away before its response.
    Cancel {
        /// The request.
        req: RequestId,
    },
    /// An upstream connection is up.
    Connected {
        /// The engine's connection.
        conn: ConnId,
        /// Its sender.
        sender: Sender,
    },
    /// An upstream connection could not be made.
    ConnectFailed {
        /// The engine's connection.
        conn: ConnId,
        /// Why.
        why: ConnectFailure,
    },
    /// An attempt finished (or failed); the sender comes back for reuse.
    Answered {
        /// The attempt.
        attempt: AttemptId,
        /// Its connection.
        conn: ConnId,
        /// The connection's sender, to be reused if the engine keeps the connection.
        sender: Sender,
        /// The response, or why there is none.
        result: Result<Answer, AttemptFailure>,
    },
    /// A mirrored copy was answered (or failed: status 0).
    Mirrored {
        /// Where the copy went.
        endpoint: EndpointId,
        /// Status, 0 if it failed.
        status: u16,
        /// How long it took.
        latency: Duration,
    },
    /// Swap in a new mesh (config reload).
    Reload(Arc<CompiledMesh>),
}

/// Live gauges a driver publishes after every input (read by the admin endpoint).
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
}

/// A cloneable handle to a running driver.
#[derive(Clone)]
pub struct ProxyHandle {
    tx: mpsc::UnboundedSender<Command>,
    next: Arc<AtomicU64>,
    /// What the proxy measured: every outcome is a hop record and a proxy-observed
    /// end-to-end record.
    pub metrics: Arc<Mutex<Recorder>>,
    /// Live gauges.
    pub gauges: Arc<Gauges>,
    /// The mesh currently applied (for `/config`).
    pub mesh: Arc<Mutex<Arc<CompiledMesh>>>,
}

impl ProxyHandle {
    /// A fresh request id.
    pub fn next_id(&self) -> RequestId {
        RequestId(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a command; false when the driver has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// Runs one request through the proxy and waits for its response.
    pub async fn request(&self, head: RequestHead, body: Bytes) -> Option<Response<Body>> {
        let (reply, rx) = oneshot::channel();
        let req = self.next_id();
        if !self.send(Command::Request {
            req,
            head,
            body,
            reply,
        }) {
            return None;
        }
        rx.await.ok()
    }

    /// A snapshot of the metrics.
    pub fn snapshot(&self) -> Recorder {
        self.metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

/// Driver settings.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// Name (access log, metrics).
    pub name: String,
    /// Seed of the engine's RNG.
    pub seed: u64,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Largest upstream response body.
    pub max_response_bytes: usize,
    /// Print an access log line per request.
    pub access_log: bool,
    /// Time-series window of the metrics.
    pub window: proxy_engine::Nanos,
}

/// A request the driver is handling.
struct Pending {
    reply: Option<oneshot::Sender<Response<Body>>>,
    body: Bytes,
    start: Time,
    start_wall: std::time::SystemTime,
    method: Arc<str>,
    path: Arc<str>,
}

struct Driver {
    engine: Proxy,
    clock: Clock,
    tx: mpsc::UnboundedSender<Command>,
    opts: DriverOptions,
    conns: HashMap<ConnId, Option<Sender>>,
    attempts: HashMap<AttemptId, AbortHandle>,
    answers: HashMap<AttemptId, Answer>,
    reqs: HashMap<RequestId, Pending>,
    metrics: Arc<Mutex<Recorder>>,
    gauges: Arc<Gauges>,
    mesh: Arc<Mutex<Arc<CompiledMesh>>>,
}

/// Starts a driver task for `mesh` on the current tokio runtime.
pub fn spawn(mesh: Arc<CompiledMesh>, role: ProxyRole, opts: DriverOptions) -> ProxyHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Mutex::new(Recorder::new(mesh.clone(), opts.window)));
    let gauges = Arc::new(Gauges::default());
    let shared_mesh = Arc::new(Mutex::new(mesh.clone()));
    let driver = Driver {
        engine: Proxy::new(mesh, role, opts.seed),
        clock: Clock::new(),
        tx: tx.clone(),
        opts,
        conns: HashMap::new(),
        attempts: HashMap::new(),
        answers: HashMap::new(),
        reqs: HashMap::new(),
        metrics: metrics.clone(),
        gauges: gauges.clone(),
        mesh: shared_mesh.clone(),
    };
    tokio::spawn(driver.run(rx));
    ProxyHandle {
        tx,
        next: Arc::new(AtomicU64::new(0)),
        metrics,
        gauges,
        mesh: shared_mesh,
    }
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let deadline = self.engine.poll_timeout().map(|t| self.clock.instant_of(t));
            let cmd = match deadline {
                Some(at) => tokio::select! {
                    cmd = rx.recv() => cmd,
                    _ = tokio::time::sleep_until(at.into()) => {
                        let now = self.clock.now();
                        self.engine.handle_timeout(now);
                        self.drain();
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(cmd) = cmd else {
                break; // every handle is gone
            };
            self.handle(cmd);
            // Take whatever else is queued before publishing gauges.
            while let Ok(cmd) = rx.try_recv() {
                self.handle(cmd);
            }
            self.publish();
        }
    }

    fn publish(&self) {
        let g = &self.gauges;
        g.active_requests
            .store(self.engine.open_requests() as u64, Ordering::Relaxed);
        g.upstream_connections
            .store(self.engine.open_connections() as u64, Ordering::Relaxed);
    }

    fn handle(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Request {
                req,
                head,
                body,
                reply,
            } => {
                self.gauges.requests_total.fetch_add(1, Ordering::Relaxed);
                self.reqs.insert(
                    req,
                    Pending {
                        reply: Some(reply),
                        body,
                        start: now,
                        start_wall: std::time::SystemTime::now(),
                        method: head.method.clone(),
                        path: head.path.clone(),
                    },
                );
                self.engine.handle_request(now, req, head);
            }
            Command::Cancel { req } => self.engine.handle_downstream_cancel(now, req),
            Command::Connected { conn, sender } => {
                if let Some(slot) = self.conns.get_mut(&conn) {
                    *slot = Some(sender);
                }
                self.engine.handle_connected(now, conn);
            }
            Command::ConnectFailed { conn, why } => {
                self.conns.remove(&conn);
                self.engine.handle_connect_failed(now, conn, why);
            }
            Command::Answered {
                attempt,
                conn,
                sender,
                result,
            } => {
                if self.attempts.remove(&attempt).is_none() {
                    return; // cancelled: the engine no longer wants it
                }
                match result {
                    Ok(answer) => {
                        let end = if upstream::closes(&answer.0) {
                            AttemptEnd::DoneAndClosed
                        } else {
                            if let Some(slot) = self.conns.get_mut(&conn) {
                                *slot = Some(sender);
                            }
                            AttemptEnd::Done
                        };
                        let status = answer.0.status.as_u16();
                        self.answers.insert(attempt, answer);
                        self.engine
                            .handle_response_head(now, attempt, ResponseHead { status });
                        self.engine.handle_attempt_end(now, attempt, end);
                    }
                    Err(_) => self
                        .engine
                        .handle_attempt_end(now, attempt, AttemptEnd::Reset),
                }
            }
            Command::Mirrored {
                endpoint,
                status,
                latency,
            } => {
                let dest = self.engine.config().endpoint(endpoint).destination;
                let latency = proxy_engine::Nanos(latency.as_nanos() as u64);
                self.with_metrics(|m| m.record_mirror(dest, status, latency));
            }
            Command::Reload(mesh) => {
                if let Ok(mut m) = self.mesh.lock() {
                    *m = mesh.clone();
                }
                self.engine.apply_config(now, mesh);
            }
        }
        self.drain();
    }

    fn with_metrics(&self, f: impl FnOnce(&mut Recorder)) {
        match self.metrics.lock() {
            Ok(mut m) => f(&mut m),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn addr(&self, endpoint: EndpointId) -> Option<std::net::SocketAddr> {
        match self.engine.config().endpoint(endpoint).addr {
            EndpointAddr::Socket(a) => Some(a),
            EndpointAddr::Sim(_) => None,
        }
    }

    /// Performs every queued engine action.
    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Connect { conn, endpoint } => self.connect(conn, endpoint),
                Action::Send {
                    req,
                    attempt,
                    conn,
                    head,
                } => self.send(req, attempt, conn, &head),
                Action::Mirror {
                    req,
                    endpoint,
                    head,
                } => self.mirror(req, endpoint, &head),
                Action::CancelAttempt { attempt } => {
                    if let Some(h) = self.attempts.remove(&attempt) {
                        h.abort();
                    }
                    self.answers.remove(&attempt);
                }
                Action::CloseConnection { conn } => {
                    self.conns.remove(&conn);
                }
                Action::Forward {
                    req,
                    attempt,
                    response_headers,
                } => {
                    if let Some((parts, body)) = self.answers.remove(&attempt) {
                        let resp =
                            http_util::forward_response(&parts, body, response_headers.as_deref());
                        self.reply(req, resp);
                    }
                }
                Action::LocalReply {
                    req,
                    status,
                    flags,
                    headers,
                    body,
                } => {
                    let resp = http_util::local_reply(status, flags, &headers, body.as_deref());
                    self.reply(req, resp);
                }
                Action::Complete { req, outcome } => self.complete(req, outcome),
            }
        }
    }

    fn reply(&mut self, req: RequestId, resp: Response<Body>) {
        if let Some(reply) = self.reqs.get_mut(&req).and_then(|p| p.reply.take()) {
            let _ = reply.send(resp); // the downstream may have gone
        }
    }

    fn connect(&mut self, conn: ConnId, endpoint: EndpointId) {
        let tx = self.tx.clone();
        let Some(addr) = self.addr(endpoint) else {
            let _ = tx.send(Command::ConnectFailed {
                conn,
                why: ConnectFailure::Refused,
            });
            return;
        };
        self.conns.insert(conn, None);
        let timeout = self.opts.connect_timeout;
        tokio::spawn(async move {
            let cmd = match upstream::connect(addr, timeout).await {
                Ok(sender) => Command::Connected { conn, sender },
                Err(why) => Command::ConnectFailed { conn, why },
            };
            let _ = tx.send(cmd);
        });
    }

    fn send(&mut self, req: RequestId, attempt: AttemptId, conn: ConnId, head: &RequestHead) {
        let body = self
            .reqs
            .get(&req)
            .map(|p| p.body.clone())
            .unwrap_or_default();
        let sender = self.conns.get_mut(&conn).and_then(Option::take);
        let request = upstream_or_none(head, body);
        let tx = self.tx.clone();
        let (Some(mut sender), Some(request)) = (sender, request) else {
            // No usable connection or an unsendable head: report a reset so the engine
            // completes the request (503 UR) rather than waiting forever.
            let now = self.clock.now();
            self.engine
                .handle_attempt_end(now, attempt, AttemptEnd::Reset);
            return;
        };
        let max = self.opts.max_response_bytes;
        let task = tokio::spawn(async move {
            let result = upstream::exchange(&mut sender, request, max).await;
            let _ = tx.send(Command::Answered {
                attempt,
                conn,
                sender,
                result,
            });
        });
        self.attempts.insert(attempt, task.abort_handle());
    }

    fn mirror(&mut self, req: RequestId, endpoint: EndpointId, head: &RequestHead) {
        let body = self
            .reqs
            .get(&req)
            .map(|p| p.body.clone())
            .unwrap_or_default();
        let (Some(addr), Some(request)) = (self.addr(endpoint), upstream_or_none(head, body))
        else {
            return;
        };
        let tx = self.tx.clone();
        let (timeout, max) = (self.opts.connect_timeout, self.opts.max_response_bytes);
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let status = match upstream::connect(addr, timeout).await {
                Ok(mut sender) => match upstream::exchange(&mut sender, request, max).await {
                    Ok((parts, _)) => parts.status.as_u16(),
                    Err(_) => 0,
                },
                Err(_) => 0,
            };
            let latency = started.elapsed();
            let _ = tx.send(Command::Mirrored {
                endpoint,
                status,
                latency,
            });
        });
    }

    fn complete(&mut self, req: RequestId, outcome: Outcome) {
        let Some(p) = self.reqs.remove(&req) else {
            return;
        };
        let now = self.clock.now();
        let latency = now.since(p.start);
        self.with_metrics(|m| {
            m.record_hop(&outcome, latency);
            m.record_end_to_end(p.start, &outcome, latency);
        });
        if self.opts.access_log {
            println!("{}", self.log_line(&p, &outcome, latency));
        }
    }

    /// An Envoy-style access log line: start time, method, path, status, flags, upstream
    /// host, duration in ms.
    fn log_line(&self, p: &Pending, o: &Outcome, latency: proxy_engine::Nanos) -> String {
        let start = p
            .start_wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let upstream = o
            .endpoint
            .and_then(|e| self.addr(e))
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        format!(
            "[{start:.3}] \"{} {}\" {} {} {} {} {}",
            p.method,
            p.path,
            o.status,
            o.flags,
            upstream,
            latency.0 / 1_000_000,
            self.opts.name
        )
    }
}

/// `x-envoy-attempt-count` is added by the engine's caller in Envoy when Istio asks; live mode
/// sends the head as the engine left it.
fn upstream_or_none(head: &RequestHead, body: Bytes) -> Option<http::Request<Body>> {
    http_util::upstream_request(head, body, &[])
}
