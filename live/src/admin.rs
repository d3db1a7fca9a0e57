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
    /// The admin listener's failed accepts (`meshtwin_admin_accept_errors_total`).
    pub accept_errors: Arc<std::sync::atomic::AtomicU64>,
}

/// Admin connections served at once; more are closed as they are accepted (Envoy's admin
/// has no cap, but it is not meant to face many clients either).
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send a request head (Envoy's edge recommendation for
/// `request_headers_timeout`), idle keep-alive connections included.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The pause after a failed accept (out of file descriptors) before accepting again, so the
/// loop neither spins nor ends.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves the admin endpoint on `addr` until the task is dropped; returns the bound address.
/// At most `MAX_CONNECTIONS` at once, each with `HEADER_TIMEOUT` to send a head; an accept
/// error (such as `EMFILE`) pauses the loop for `ACCEPT_BACKOFF` instead of ending it.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    state.accept_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| route(req, state.clone()));
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                drop(slot);
            });
        }
    });
    Ok((bound, task))
}

/// Whether a request's `Host` may be served: an IP address or `localhost` (with any port), or
/// none given. A page that rebinds its own DNS name to 127.0.0.1 still sends its name, so it
/// is refused (421) and cannot read the admin endpoint.
fn host_allowed<B>(req: &Request<B>) -> bool {
    let host = match req.headers().get(header::HOST) {
        Some(v) => match v.to_str() {
            Ok(h) => h,
            Err(_) => return false,
        },
        None => match req.uri().host() {
            Some(h) => h,
            None => return true,
        },
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    name.parse::<std::net::IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
}

/// Header names whose values `/config` does not show.
fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["token", "secret", "password", "api-key", "apikey", "auth"]
        .iter()
        .any(|w| n.contains(w))
}

/// `json` with the values of secret headers (in match blocks and header operations)
/// replaced by `<redacted>`.
pub fn redact(json: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match json {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let header_map =
                        matches!(k.as_str(), "headers" | "without_headers" | "set" | "add");
                    let v = match (header_map, v) {
                        (true, Value::Object(headers)) => Value::Object(
                            headers
                                .iter()
                                .map(|(name, value)| match secret_header(name) {
                                    true => (name.clone(), Value::from("<redacted>")),
                                    false => (name.clone(), redact(value)),
                                })
                                .collect(),
                        ),
                        _ => redact(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

async fn route(req: Request<Incoming>, state: AdminState) -> Result<Response<Body>, Infallible> {
    if !host_allowed(&req) {
        return Ok(http_util::text(
            StatusCode::MISDIRECTED_REQUEST,
            "the admin endpoint answers Host: localhost or an IP address only\n",
        ));
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        let mut resp = http_util::text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(resp);
    }
    Ok(match req.uri().path() {
        "/ready" => http_util::text(StatusCode::OK, "LIVE\n"),
        "/metrics" => {
            let mut text = prometheus(&state.proxies);
            let errors = state.accept_errors.load(Ordering::Relaxed);
            let _ = writeln!(
                text,
                "# TYPE meshtwin_admin_accept_errors_total counter\n\
                 meshtwin_admin_accept_errors_total {errors}"
            );
            let mut resp = http_util::text(StatusCode::OK, text);
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
                .map(|c| serde_json::to_string_pretty(&redact(&c)).unwrap_or_default())
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

/// A label value as the Prometheus text format escapes it: backslash, double quote and line
/// feed, so no name (a route's, a listener's) can end a line or a label early.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
    let gauges: [(&str, &str, Gauge); 8] = [
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
        ("meshtwin_downstream_accept_errors_total", "counter", |g| {
            g.accept_errors_total.load(Ordering::Relaxed)
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

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_escape_what_would_break_a_line() {
        assert_eq!(
            super::escape("a\\b\"c\nd"),
            "a\\\\b\\\"c\\nd",
            "backslash, quote and newline, as the text format asks"
        );
    }
}
