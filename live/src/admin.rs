//! The admin endpoint (bound to loopback by default): `/metrics` in Prometheus text format,
//! `/ready`, `/config` (the active configuration as JSON).

use crate::driver::ProxyHandle;
use crate::http_util::{self, Body};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics::{EventCounts, RunMetrics, Stats};
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What the admin endpoint shows.
#[derive(Clone)]
pub struct AdminState {
    /// The proxies, by listener name (metrics and gauges).
    pub proxies: Vec<(String, ProxyHandle)>,
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
            let mut resp = http_util::text(StatusCode::OK, prometheus(&state.proxies));
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

/// One proxy's metrics, named by its listener.
struct Snapshot<'a> {
    listener: &'a str,
    metrics: RunMetrics,
    gauges: &'a crate::driver::Gauges,
}

type Section = fn(&RunMetrics) -> &[(String, Stats)];

fn family(out: &mut String, snaps: &[Snapshot<'_>], metric: &str, label: &str, rows: Section) {
    let _ = writeln!(out, "# TYPE {metric}_requests_total counter");
    for s in snaps {
        let l = escape(s.listener);
        for (name, st) in rows(&s.metrics) {
            for (code, n) in &st.by_status {
                let _ = writeln!(out, "{metric}_requests_total{{listener=\"{l}\",{label}=\"{}\",code=\"{code}\"}} {n}", escape(name));
            }
        }
    }
    let _ = writeln!(out, "# TYPE {metric}_flags_total counter");
    for s in snaps {
        let l = escape(s.listener);
        for (name, st) in rows(&s.metrics) {
            for (flag, n) in st.flags() {
                let _ = writeln!(
                    out,
                    "{metric}_flags_total{{listener=\"{l}\",{label}=\"{}\",flag=\"{flag}\"}} {n}",
                    escape(name)
                );
            }
        }
    }
    let _ = writeln!(out, "# TYPE {metric}_latency_seconds histogram");
    for s in snaps {
        let l = escape(s.listener);
        for (name, st) in rows(&s.metrics) {
            let key = format!("listener=\"{l}\",{label}=\"{}\"", escape(name));
            for le in BUCKETS_S {
                let n = st.latency.count_between(0, (le * 1e9) as u64);
                let _ = writeln!(
                    out,
                    "{metric}_latency_seconds_bucket{{{key},le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "{metric}_latency_seconds_bucket{{{key},le=\"+Inf\"}} {}",
                st.count
            );
            let _ = writeln!(
                out,
                "{metric}_latency_seconds_sum{{{key}}} {}",
                st.latency_sum_ns as f64 / 1e9
            );
            let _ = writeln!(out, "{metric}_latency_seconds_count{{{key}}} {}", st.count);
        }
    }
}

/// Per-cluster resilience counters, named after the Envoy stats they mirror.
fn resilience(out: &mut String, snaps: &[Snapshot<'_>]) {
    type Read = fn(&EventCounts) -> u64;
    let counters: [(&str, Read); 6] = [
        ("meshtwin_cluster_upstream_rq_retry_total", |e| e.retries),
        ("meshtwin_cluster_upstream_rq_retry_overflow_total", |e| {
            e.retry_overflows
        }),
        ("meshtwin_cluster_upstream_rq_pending_overflow_total", |e| {
            e.overflows
        }),
        ("meshtwin_cluster_outlier_ejections_total", |e| e.ejections),
        ("meshtwin_cluster_outlier_unejections_total", |e| {
            e.unejections
        }),
        ("meshtwin_cluster_outlier_ejections_overflow_total", |e| {
            e.ejection_overflows
        }),
    ];
    for (name, read) in counters {
        let _ = writeln!(out, "# TYPE {name} counter");
        for s in snaps {
            for (cluster, e) in &s.metrics.events {
                let _ = writeln!(
                    out,
                    "{name}{{listener=\"{}\",cluster=\"{}\"}} {}",
                    escape(s.listener),
                    escape(cluster),
                    read(e)
                );
            }
        }
    }
}

/// The Prometheus text exposition of the proxies' metrics and gauges, labelled by listener.
pub fn prometheus(proxies: &[(String, ProxyHandle)]) -> String {
    let snaps: Vec<Snapshot<'_>> = proxies
        .iter()
        .map(|(name, h)| Snapshot {
            listener: name,
            metrics: h.metrics(),
            gauges: &h.gauges,
        })
        .collect();
    let mut out = String::new();
    family(&mut out, &snaps, "meshtwin_route", "route", |m| &m.routes);
    family(
        &mut out,
        &snaps,
        "meshtwin_destination",
        "destination",
        |m| &m.destinations,
    );
    family(&mut out, &snaps, "meshtwin_cluster", "cluster", |m| {
        &m.clusters
    });
    resilience(&mut out, &snaps);
    type Gauge = fn(&crate::driver::Gauges) -> u64;
    let gauges: [(&str, &str, Gauge); 7] = [
        ("meshtwin_active_requests", "gauge", |g| {
            g.active_requests.load(Ordering::Relaxed)
        }),
        ("meshtwin_upstream_connections", "gauge", |g| {
            g.upstream_connections.load(Ordering::Relaxed)
        }),
        ("meshtwin_downstream_connections", "gauge", |g| {
            g.downstream_connections.load(Ordering::Relaxed)
        }),
        ("meshtwin_downstream_requests_total", "counter", |g| {
            g.requests_total.load(Ordering::Relaxed)
        }),
        (
            "meshtwin_downstream_protocol_errors_total",
            "counter",
            |g| g.protocol_errors_total.load(Ordering::Relaxed),
        ),
        ("meshtwin_downstream_rejected_total", "counter", |g| {
            g.rejected_total.load(Ordering::Relaxed)
        }),
        ("meshtwin_listener_up", "gauge", |_| 1),
    ];
    for (name, kind, read) in gauges {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in &snaps {
            let _ = writeln!(
                out,
                "{name}{{listener=\"{}\"}} {}",
                escape(s.listener),
                read(s.gauges)
            );
        }
    }
    out
}
