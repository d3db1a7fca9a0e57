//! The admin endpoint (bound to loopback by default): `/metrics` in Prometheus text format,
//! `/ready`, `/config` (the active configuration as JSON).

use crate::driver::ProxyHandle;
use crate::http_util::{self, Body};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_engine::metrics::{RunMetrics, Stats};
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What the admin endpoint shows.
#[derive(Clone)]
pub struct AdminState {
    /// The proxy (metrics and gauges).
    pub proxy: ProxyHandle,
    /// The active configuration, as JSON (replaced on reload).
    pub config: Arc<Mutex<serde_json::Value>>,
}

/// Serves the admin endpoint on `addr` until the task is dropped; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| route(req, state.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

async fn route(req: Request<Incoming>, state: AdminState) -> Result<Response<Body>, Infallible> {
    Ok(match req.uri().path() {
        "/ready" => http_util::text(StatusCode::OK, "LIVE\n"),
        "/metrics" => {
            let mut resp = http_util::text(StatusCode::OK, prometheus(&state.proxy));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        "/config" => {
            let json = state
                .config
                .lock()
                .map(|c| serde_json::to_string_pretty(&*c).unwrap_or_default())
                .unwrap_or_default();
            let mut resp = http_util::text(StatusCode::OK, json + "\n");
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => http_util::text(StatusCode::NOT_FOUND, "try /metrics, /ready or /config\n"),
    })
}

/// Histogram bucket bounds, seconds (Prometheus' defaults).
const BUCKETS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

fn counters(out: &mut String, metric: &str, label: &str, rows: &[(String, Stats)]) {
    let _ = writeln!(out, "# TYPE {metric}_requests_total counter");
    for (name, s) in rows {
        for (code, n) in &s.by_status {
            let _ = writeln!(
                out,
                "{metric}_requests_total{{{label}=\"{}\",code=\"{code}\"}} {n}",
                escape(name)
            );
        }
    }
    let _ = writeln!(out, "# TYPE {metric}_flags_total counter");
    for (name, s) in rows {
        for (flag, n) in s.flags() {
            let _ = writeln!(
                out,
                "{metric}_flags_total{{{label}=\"{}\",flag=\"{flag}\"}} {n}",
                escape(name)
            );
        }
    }
    let _ = writeln!(out, "# TYPE {metric}_latency_seconds histogram");
    for (name, s) in rows {
        let name = escape(name);
        for le in BUCKETS_S {
            let n = s.latency.count_between(0, (le * 1e9) as u64);
            let _ = writeln!(
                out,
                "{metric}_latency_seconds_bucket{{{label}=\"{name}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "{metric}_latency_seconds_bucket{{{label}=\"{name}\",le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(
            out,
            "{metric}_latency_seconds_sum{{{label}=\"{name}\"}} {}",
            s.latency_sum_ns as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "{metric}_latency_seconds_count{{{label}=\"{name}\"}} {}",
            s.count
        );
    }
}

/// The Prometheus text exposition of a proxy's metrics and gauges.
pub fn prometheus(proxy: &ProxyHandle) -> String {
    let m: RunMetrics = proxy.snapshot().finish();
    let mut out = String::new();
    counters(&mut out, "meshtwin_route", "route", &m.routes);
    counters(
        &mut out,
        "meshtwin_destination",
        "destination",
        &m.destinations,
    );
    counters(&mut out, "meshtwin_cluster", "cluster", &m.clusters);
    let g = &proxy.gauges;
    let gauges = [
        (
            "meshtwin_active_requests",
            "gauge",
            g.active_requests.load(Ordering::Relaxed),
        ),
        (
            "meshtwin_upstream_connections",
            "gauge",
            g.upstream_connections.load(Ordering::Relaxed),
        ),
        (
            "meshtwin_downstream_connections",
            "gauge",
            g.downstream_connections.load(Ordering::Relaxed),
        ),
        (
            "meshtwin_downstream_requests_total",
            "counter",
            g.requests_total.load(Ordering::Relaxed),
        ),
        (
            "meshtwin_downstream_protocol_errors_total",
            "counter",
            g.protocol_errors_total.load(Ordering::Relaxed),
        ),
        (
            "meshtwin_downstream_rejected_total",
            "counter",
            g.rejected_total.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, value) in gauges {
        let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {value}");
    }
    out
}
