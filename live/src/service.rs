//! Live modeled services (`meshtwin serve`): every instance of a scenario as a real HTTP server
//! on loopback, running the simulator's model — admission by `sim_core::admission` (`workers`
//! requests at once, a worker held for the whole handler; a bounded FIFO queue, full → 503 at
//! once), the outbound call steps (each
//! call an HTTP request to the instance's sidecar listener, incoming headers propagated), the
//! service-time distribution as a real sleep, and the status rule of
//! `sim_core::model::handler_status`. Each instance draws from the same named stream as in the
//! simulator (`instance/<service>/<version>/<index>`). Scenario faults apply through the same
//! model functions as in the simulator (`sim_core::model::error_burst`, `slowed`), timed from
//! the run's start: an error burst answers at once, a hang never answers, a crash (driven by
//! the lab, `kill` then `restart`) refuses connections and resets what was open.

use crate::http_util::{self, Body};
use crate::lock;
use crate::upstream::{self, Sender};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use sim_core::admission::{Admission, Admit};
use sim_core::model::{self, FaultWindow};
use sim_core::rng::{stream, Stream};
use sim_core::scenario::{Call, CallStep, FaultKind, OnFailure, Version};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One instance's model.
pub struct InstanceModel {
    /// `service/version/index`.
    pub name: String,
    /// The version's parameters.
    pub version: Version,
    /// The handler's steps: calls and its own work.
    pub steps: Vec<CallStep>,
    /// Faults that target this instance.
    pub faults: Vec<FaultWindow>,
    /// Where its answers are counted for a rollout, when it is one of the rollout's versions.
    pub probe: Option<(rollout::Side, Arc<crate::delivery::LiveProbe>)>,
}

struct State {
    model: InstanceModel,
    /// Workers and the bounded queue: a waiting request is woken through its channel when a
    /// worker passes to it.
    admission: Mutex<Admission<oneshot::Sender<()>>>,
    rng: Mutex<Stream>,
    sidecar: OnceLock<SocketAddr>,
    idle: Mutex<Vec<Sender>>,
    /// Time zero of the run (faults are timed from it).
    epoch: std::time::Instant,
    fault_rng: Mutex<Stream>,
}

/// A running instance.
pub struct Instance {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Instance {
    /// Binds a loopback port and starts serving; faults are timed from `epoch`. Outbound
    /// calls go to the sidecar set with `set_sidecar` (calls made before that fail with 503).
    pub async fn start(
        model: InstanceModel,
        seed: u64,
        epoch: std::time::Instant,
    ) -> std::io::Result<Instance> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            admission: Mutex::new(Admission::new(model.version.workers, model.version.queue)),
            rng: Mutex::new(stream(seed, &format!("instance/{}", model.name))),
            sidecar: OnceLock::new(),
            idle: Mutex::new(Vec::new()),
            epoch,
            fault_rng: Mutex::new(stream(seed, &format!("faults/{}", model.name))),
            model,
        });
        let task = tokio::spawn(accept(listener, state.clone()));
        Ok(Instance {
            addr,
            state,
            task: Mutex::new(Some(task)),
        })
    }

    /// Restarts a killed instance on the same address (its queue and workers start empty).
    pub async fn restart(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.addr).await?;
        let task = tokio::spawn(accept(listener, self.state.clone()));
        if let Some(old) = lock(&self.task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    /// Where the instance's outbound calls go.
    pub fn set_sidecar(&self, addr: SocketAddr) {
        let _ = self.state.sidecar.set(addr);
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.state.model.name
    }

    /// Crashes the instance: the listener closes (new connections are refused) and every open
    /// connection is dropped mid-request (resets).
    pub fn kill(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }

    /// The faults that target this instance.
    pub fn faults(&self) -> &[FaultWindow] {
        &self.state.model.faults
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    // Connections live in this set so that aborting the accept task drops them all.
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone()));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let arrived = std::time::Instant::now();
    let status = answer(req, &state).await;
    if let Some((side, probe)) = &state.model.probe {
        probe.record(*side, arrived, status);
    }
    Ok(status_only(status))
}

/// The model's answer to `req`: the status, after the service time.
async fn answer(req: Request<Incoming>, state: &Arc<State>) -> u16 {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    let v = &state.model.version;
    let faults = &state.model.faults;
    let now = proxy_engine::Time(state.epoch.elapsed().as_nanos() as u64);
    if !faults.is_empty() {
        if model::has_active(faults, now, |k| matches!(k, FaultKind::Hang)) {
            // Accepted, never answered: the caller's timeouts decide.
            std::future::pending::<()>().await;
        }
        if let Some(status) = model::error_burst(faults, now, &mut *lock(&state.fault_rng)) {
            return status;
        }
    }
    // Admission: a free worker, or a place in the bounded queue, or 503 at once.
    let (tx, rx) = oneshot::channel();
    let admitted = lock(&state.admission).arrive(tx);
    let mut worker = match admitted {
        Admit::Start => Worker::held(state),
        Admit::Queued => Worker::waiting(state, rx),
        Admit::Refused(_) => return 503,
    };
    if !worker.granted().await {
        return 503; // the queue was reset under it
    }
    let mut failed = false;
    for step in &state.model.steps {
        if let CallStep::Work(d) = step {
            let work = d.sample(&mut *lock(&state.rng));
            let done = std::time::Instant::now() + Duration::from_nanos(work.0);
            crate::clock::sleep_until_precise(done).await;
            continue;
        }
        let made: Vec<&Call> = {
            let mut rng = lock(&state.rng);
            (step.calls().iter())
                .filter(|c| c.probability >= 1.0 || rng.gen::<f64>() < c.probability)
                .collect()
        };
        let calls = made
            .iter()
            .map(|c| call_with_retries(state, c, &parts.headers));
        let statuses = join_all(calls.collect()).await;
        failed |= (made.iter().zip(&statuses))
            .any(|(c, s)| model::call_failed(*s) && c.on_failure == OnFailure::Fail);
    }
    let (service, status) = {
        let mut rng = lock(&state.rng);
        let service = v.latency.sample(&mut *rng);
        let service = if faults.is_empty() {
            service
        } else {
            let now = proxy_engine::Time(state.epoch.elapsed().as_nanos() as u64);
            model::slowed(faults, now, service, &mut *lock(&state.fault_rng))
        };
        (
            service,
            sim_core::model::handler_status(failed, v, &mut *rng),
        )
    };
    let done = std::time::Instant::now() + Duration::from_nanos(service.0);
    crate::clock::sleep_until_precise(done).await;
    status
}

/// A request's claim on a worker: held, or waiting for the worker to pass to it. Dropped (the
/// handler done, or its connection gone), it passes a held worker on to the next waiting request
/// that is still there, so no worker is lost to a request that left.
struct Worker<'a> {
    state: &'a State,
    /// The channel a worker arrives on, while waiting.
    grant: Option<oneshot::Receiver<()>>,
    held: bool,
}

impl<'a> Worker<'a> {
    fn held(state: &'a State) -> Worker<'a> {
        Worker {
            state,
            grant: None,
            held: true,
        }
    }

    fn waiting(state: &'a State, grant: oneshot::Receiver<()>) -> Worker<'a> {
        Worker {
            state,
            grant: Some(grant),
            held: false,
        }
    }

    /// Waits for the worker; false if the request was dropped from the queue instead.
    async fn granted(&mut self) -> bool {
        if let Some(rx) = self.grant.as_mut() {
            self.held = rx.await.is_ok();
            self.grant = None;
        }
        self.held
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.grant.take() {
            // Gone while waiting: closing first means a worker is either already here (taken
            // and passed on below) or can no longer be sent.
            rx.close();
            self.held = rx.try_recv().is_ok();
        }
        if !self.held {
            return;
        }
        let mut admission = lock(&self.state.admission);
        while let Some(next) = admission.finish() {
            if next.send(()).is_ok() {
                break; // the worker passed to the next waiting request
            }
        }
    }
}

fn status_only(status: u16) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    http_util::text(code, Bytes::new())
}

/// Runs futures concurrently on this task and collects their outputs in order (calls borrow
/// the handler's state, so they cannot be spawned).
async fn join_all<F: std::future::Future<Output = u16>>(futs: Vec<F>) -> Vec<u16> {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct JoinAll<F: std::future::Future<Output = u16>> {
        futs: Vec<Option<Pin<Box<F>>>>,
        out: Vec<u16>,
    }
    impl<F: std::future::Future<Output = u16>> std::future::Future for JoinAll<F> {
        type Output = Vec<u16>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<u16>> {
            let this = &mut *self;
            let mut pending = false;
            for (i, slot) in this.futs.iter_mut().enumerate() {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        Poll::Ready(v) => {
                            this.out[i] = v;
                            *slot = None;
                        }
                        Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(std::mem::take(&mut this.out))
            }
        }
    }
    let n = futs.len();
    JoinAll {
        futs: futs.into_iter().map(|f| Some(Box::pin(f))).collect(),
        out: vec![0; n],
    }
    .await
}

/// A call as the application makes it: each try under the call's timeout (a try still open
/// then is dropped, closing its connection: the sidecar sees the client go), retried while it
/// fails and tries are left; the last try's status (0 for no response).
async fn call_with_retries(state: &State, c: &Call, incoming: &http::HeaderMap) -> u16 {
    let mut status = 0;
    for _ in 0..=c.retries {
        status = match c.timeout.filter(|t| t.0 > 0) {
            Some(t) => tokio::time::timeout(Duration::from_nanos(t.0), call(state, c, incoming))
                .await
                .unwrap_or(0),
            None => call(state, c, incoming).await,
        };
        if !model::call_failed(status) {
            break;
        }
    }
    status
}

/// One outbound call through the sidecar; the status, or 0 when it failed outright.
async fn call(state: &State, c: &Call, incoming: &http::HeaderMap) -> u16 {
    let Some(&sidecar) = state.sidecar.get() else {
        return 0;
    };
    let mut b = Request::builder()
        .method(c.method.as_str())
        .uri(c.path.as_str())
        .header(http::header::HOST, c.host.as_str());
    for (k, v) in &c.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    // Propagate what the handler received unless the call sets it itself.
    for (k, v) in incoming {
        let skip = k == http::header::HOST
            || k == http::header::CONTENT_LENGTH
            || k == http::header::CONNECTION
            || c.headers
                .keys()
                .any(|own| own.eq_ignore_ascii_case(k.as_str()));
        if !skip {
            b = b.header(k, v);
        }
    }
    let Ok(req) = b.body(Full::new(Bytes::new())) else {
        return 0;
    };
    let pooled = state.idle.lock().ok().and_then(|mut idle| idle.pop());
    let mut sender = match pooled.and_then(|mut s| (!s.is_closed()).then_some(s)) {
        Some(s) => s,
        _ => match upstream::connect(sidecar, Duration::from_secs(10), false).await {
            Ok(s) => s,
            Err(_) => return 0,
        },
    };
    match upstream::exchange(&mut sender, req, 16 * 1024 * 1024).await {
        Ok((parts, _)) => {
            if !upstream::closes(&parts) {
                if let Ok(mut idle) = state.idle.lock() {
                    idle.push(sender);
                }
            }
            parts.status.as_u16()
        }
        Err(_) => 0,
    }
}
