//! Compiled resilience policies: retries, circuit-breaker limits, outlier detection, retry
//! budgets and local rate limits, with Istio's defaults applied once at compile time (Istio
//! `pilot/pkg/networking/core/route/retry/retry.go` and `cluster_traffic_policy.go`; Envoy
//! `source/common/router/retry_state_impl.cc`, `source/common/upstream/resource_manager_impl.h`,
//! `source/extensions/filters/http/local_ratelimit/`).

use crate::config::{
    ConnectionPoolSettings, HttpRetry, LocalRateLimit, OutlierDetection, RetryBudget,
};
use crate::error::ConfigError;
use crate::time::Nanos;

/// Istio's "unset" circuit-breaker threshold: 2³²−1.
pub const UNLIMITED: u32 = u32::MAX;

/// Retry conditions (Envoy `retry_on` tokens) as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: any 5xx response, reset, connect failure or per-try timeout.
    pub const FIVE_XX: RetryOn = RetryOn(1);
    /// `gateway-error`: 502, 503, 504, and resets (connect failures, per-try timeouts).
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    /// `reset`: the upstream reset or disconnected with no response (per-try timeouts too).
    pub const RESET: RetryOn = RetryOn(1 << 2);
    /// `connect-failure`: the connection could not be established (refused or timed out).
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    /// `refused-stream`: HTTP/2 `REFUSED_STREAM`.
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 4);
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 5);
    /// `retriable-status-codes`: a status in the policy's list.
    pub const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    /// `reset-before-request`: a reset before any request byte was sent.
    pub const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 7);
    /// gRPC conditions (`cancelled`, `unavailable`, …): they look at `grpc-status` response
    /// headers, which the modeled upstreams never send; accepted and never triggered.
    pub const GRPC: RetryOn = RetryOn(1 << 8);

    /// Whether any condition of `other` is set.
    pub fn any(self, other: RetryOn) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;
    fn bitor(self, rhs: RetryOn) -> RetryOn {
        RetryOn(self.0 | rhs.0)
    }
}

/// Why an attempt failed, as the retry policy and the outlier detector see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection could not be established.
    ConnectFailure,
    /// The stream or connection was reset before a response head.
    Reset,
    /// The per-try timeout expired.
    PerTryTimeout,
    /// The upstream answered with this status.
    Status(u16),
}

/// A compiled retry policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries allowed (tries = 1 + this).
    pub num_retries: u32,
    /// Conditions.
    pub retry_on: RetryOn,
    /// Statuses retried under `retriable-status-codes`.
    pub retriable_status_codes: Vec<u16>,
    /// Per-try timeout (already dropped when ≥ a non-zero route timeout).
    pub per_try_timeout: Option<Nanos>,
    /// Backoff base interval.
    pub backoff_base: Nanos,
    /// Backoff cap (10 × base).
    pub backoff_max: Nanos,
    /// Apply the `previous_hosts` predicate.
    pub previous_hosts: bool,
    /// Host re-picks allowed by the predicate (Istio: 5).
    pub host_selection_max_attempts: u32,
}

/// Envoy's default base backoff, 25 ms.
pub const DEFAULT_BACKOFF: Nanos = Nanos(25_000_000);

impl RetryPolicy {
    /// Istio's policy for a route without `retries`: 2 retries on `connect-failure`,
    /// `refused-stream`, `unavailable`, `cancelled`, `retriable-status-codes` (no codes since
    /// Istio 1.24), previous-hosts predicate, no per-try timeout.
    pub fn istio_default() -> RetryPolicy {
        RetryPolicy {
            num_retries: 2,
            retry_on: RetryOn::CONNECT_FAILURE
                | RetryOn::REFUSED_STREAM
                | RetryOn::GRPC
                | RetryOn::RETRIABLE_STATUS_CODES,
            retriable_status_codes: Vec::new(),
            per_try_timeout: None,
            backoff_base: DEFAULT_BACKOFF,
            backoff_max: Nanos(DEFAULT_BACKOFF.0 * 10),
            previous_hosts: true,
            host_selection_max_attempts: 5,
        }
    }

    /// Compiles a route's `retries` (`None` → Istio's default). `Ok(None)`: retries are off.
    pub fn compile(
        at: &str,
        retries: Option<&HttpRetry>,
        route_timeout: Option<Nanos>,
    ) -> Result<Option<RetryPolicy>, ConfigError> {
        let Some(r) = retries else {
            return Ok(Some(RetryPolicy::istio_default()));
        };
        if r.attempts == 0 {
            return Ok(None);
        }
        let mut policy = RetryPolicy::istio_default();
        policy.num_retries = r.attempts;
        if let Some(on) = &r.retry_on {
            let (retry_on, codes) = parse_retry_on(&format!("{at}.retry_on"), on)?;
            policy.retry_on = retry_on;
            policy.retriable_status_codes = codes;
        }
        if let Some(t) = r.per_try_timeout {
            if t.0 == 0 {
                return Err(invalid(
                    format!("{at}.per_try_timeout"),
                    "a timeout above 0 is expected, found 0s".into(),
                ));
            }
            // Envoy ignores a per-try timeout that is not below a set route timeout.
            policy.per_try_timeout = match route_timeout {
                Some(route) if t >= route => None,
                _ => Some(t),
            };
        }
        if let Some(b) = r.backoff {
            if b.0 < 1_000_000 {
                return Err(invalid(
                    format!("{at}.backoff"),
                    format!("a backoff of at least 1ms is expected, found {b}"),
                ));
            }
            policy.backoff_base = b;
            policy.backoff_max = Nanos(b.0.saturating_mul(10));
        }
        // Envoy's `retry_back_off.max_interval` must be at least the base interval
        // (`api/envoy/config/route/v3/route_components.proto`).
        if let Some(max) = r.max_backoff {
            if max < policy.backoff_base {
                return Err(invalid(
                    format!("{at}.max_backoff"),
                    format!(
                        "a cap of at least the backoff ({}) is expected, found {max}",
                        policy.backoff_base
                    ),
                ));
            }
            policy.backoff_max = max;
        }
        policy.previous_hosts = r.retry_ignore_previous_hosts.unwrap_or(true);
        Ok(Some(policy))
    }

    /// Whether an attempt that failed this way may be retried (Envoy's `wouldRetryFromHeaders`
    /// and `wouldRetryFromReset`). Circuit-breaker overflows are never retried and never get
    /// here.
    pub fn would_retry(&self, failure: AttemptFailure) -> bool {
        let on = self.retry_on;
        let reset_like = RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET;
        match failure {
            AttemptFailure::ConnectFailure => {
                on.any(reset_like | RetryOn::CONNECT_FAILURE | RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptFailure::Reset | AttemptFailure::PerTryTimeout => on.any(reset_like),
            AttemptFailure::Status(s) => {
                (on.any(RetryOn::FIVE_XX) && s >= 500)
                    || (on.any(RetryOn::GATEWAY_ERROR) && matches!(s, 502..=504))
                    || (on.any(RetryOn::RETRIABLE_4XX) && s == 409)
                    || (on.any(RetryOn::RETRIABLE_STATUS_CODES)
                        && self.retriable_status_codes.contains(&s))
            }
        }
    }

    /// The backoff interval after `interval`: doubles until it reaches half the cap, then
    /// the cap (Envoy's `JitteredExponentialBackOffStrategy`).
    pub fn next_interval(&self, interval: Nanos) -> Nanos {
        if interval.0 < self.backoff_max.0 / 2 {
            Nanos(interval.0 * 2)
        } else {
            self.backoff_max
        }
    }
}

/// Parses an Envoy/Istio `retry_on` list: condition names and numeric status codes (which imply
/// `retriable-status-codes`, as Istio's `parseRetryOn` does).
pub fn parse_retry_on(field: &str, list: &str) -> Result<(RetryOn, Vec<u16>), ConfigError> {
    let mut on = RetryOn::default();
    let mut codes = Vec::new();
    for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let bit = match token {
            "5xx" => RetryOn::FIVE_XX,
            "gateway-error" => RetryOn::GATEWAY_ERROR,
            "reset" => RetryOn::RESET,
            "reset-before-request" => RetryOn::RESET_BEFORE_REQUEST,
            "connect-failure" => RetryOn::CONNECT_FAILURE,
            "refused-stream" => RetryOn::REFUSED_STREAM,
            "retriable-4xx" => RetryOn::RETRIABLE_4XX,
            "retriable-status-codes" => RetryOn::RETRIABLE_STATUS_CODES,
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted"
            | "unavailable" => RetryOn::GRPC,
            t => match t.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => {
                    codes.push(code);
                    RetryOn::RETRIABLE_STATUS_CODES
                }
                _ => {
                    return Err(invalid(
                        field.to_owned(),
                        format!(
                            "unknown retry condition `{t}` (expected 5xx, gateway-error, reset, \
                             reset-before-request, connect-failure, refused-stream, \
                             retriable-4xx, retriable-status-codes, a gRPC condition or an HTTP \
                             status code)"
                        ),
                    ))
                }
            },
        };
        on = on | bit;
    }
    Ok((on, codes))
}

/// Circuit-breaker limits and connection settings of one cluster (per client proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `tcp.maxConnections` (soft: each host gets at least one).
    pub max_connections: u32,
    /// `http.http1MaxPendingRequests`.
    pub max_pending: u32,
    /// `http.http2MaxRequests`.
    pub max_requests: u32,
    /// `http.maxRetries` (unless a retry budget replaces it).
    pub max_retries: u32,
    /// `http.maxRequestsPerConnection`; 0 = unlimited.
    pub max_requests_per_connection: u32,
    /// `tcp.connectTimeout`.
    pub connect_timeout: Nanos,
    /// Idle connection lifetime when set explicitly (Istio's 1 h default is never reached in a
    /// run, so it arms no timers).
    pub idle_timeout: Option<Nanos>,
}

/// Istio's mesh-wide connect timeout, 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Nanos = Nanos(10_000_000_000);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: UNLIMITED,
            max_pending: UNLIMITED,
            max_requests: UNLIMITED,
            max_retries: UNLIMITED,
            max_requests_per_connection: 0,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: None,
        }
    }
}

impl Limits {
    /// Compiles `connectionPool`; unset and 0 both mean unlimited, as Istio writes them.
    pub fn compile(at: &str, pool: Option<&ConnectionPoolSettings>) -> Result<Limits, ConfigError> {
        let mut l = Limits::default();
        let Some(pool) = pool else {
            return Ok(l);
        };
        let limit = |v: Option<u32>| v.filter(|v| *v > 0).unwrap_or(UNLIMITED);
        if let Some(tcp) = &pool.tcp {
            l.max_connections = limit(tcp.max_connections);
            if let Some(t) = tcp.connect_timeout {
                if t.0 == 0 {
                    return Err(invalid(
                        format!("{at}.tcp.connect_timeout"),
                        "a timeout above 0 is expected, found 0s".into(),
                    ));
                }
                l.connect_timeout = t;
            }
            l.idle_timeout = tcp.idle_timeout.filter(|t| t.0 > 0);
        }
        if let Some(http) = &pool.http {
            l.max_pending = limit(http.http1_max_pending_requests);
            l.max_requests = limit(http.http2_max_requests);
            l.max_retries = limit(http.max_retries);
            l.max_requests_per_connection = http.max_requests_per_connection.unwrap_or(0);
            if let Some(t) = http.idle_timeout {
                l.idle_timeout = Some(t).filter(|t| t.0 > 0);
            }
        }
        Ok(l)
    }
}

/// A compiled retry budget.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Fraction (0–1) of active plus pending requests.
    pub fraction: f64,
    /// Retries always allowed.
    pub min_concurrency: u32,
}

impl Budget {
    /// Compiles a `retry_budget` block.
    pub fn compile(at: &str, b: &RetryBudget) -> Result<Budget, ConfigError> {
        let percent = b.percent.unwrap_or(20.0);
        if !(0.0..=100.0).contains(&percent) {
            return Err(invalid(
                format!("{at}.percent"),
                format!("a percentage between 0 and 100 is expected, found {percent}"),
            ));
        }
        Ok(Budget {
            fraction: percent / 100.0,
            min_concurrency: b.min_retry_concurrency.unwrap_or(3),
        })
    }

    /// Outstanding retries allowed with `active` requests in flight or waiting.
    pub fn allowed(&self, active: u32) -> u32 {
        let share = (self.fraction * f64::from(active)) as u32;
        share.max(self.min_concurrency)
    }
}

/// A compiled outlier detector configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierSpec {
    /// Consecutive 5xx that eject; 0 = off.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors that eject; 0 = off.
    pub consecutive_gateway: u32,
    /// Sweep interval.
    pub interval: Nanos,
    /// Base ejection time.
    pub base_ejection: Nanos,
    /// Ejection cap: max(300 s, base).
    pub max_ejection: Nanos,
    /// Max ejected percent.
    pub max_ejection_percent: u32,
    /// Panic threshold, percent (0 = never panic).
    pub min_health_percent: u32,
}

impl OutlierSpec {
    /// Compiles an `outlier_detection` block with Istio's effective defaults.
    pub fn compile(at: &str, o: &OutlierDetection) -> Result<OutlierSpec, ConfigError> {
        let positive = |field: &str, v: Option<Nanos>, default: u64| -> Result<Nanos, _> {
            match v {
                Some(n) if n.0 == 0 => Err(invalid(
                    format!("{at}.{field}"),
                    "a duration above 0 is expected, found 0s".into(),
                )),
                Some(n) => Ok(n),
                None => Ok(Nanos::from_secs(default)),
            }
        };
        let percent = |field: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
            p @ 0..=100 => Ok(p),
            p => Err(invalid(
                format!("{at}.{field}"),
                format!("a percentage between 0 and 100 is expected, found {p}"),
            )),
        };
        let base = positive("base_ejection_time", o.base_ejection_time, 30)?;
        Ok(OutlierSpec {
            consecutive_5xx: o.consecutive_5xx_errors.unwrap_or(5),
            consecutive_gateway: o.consecutive_gateway_errors.unwrap_or(0),
            interval: positive("interval", o.interval, 10)?,
            base_ejection: base,
            max_ejection: Nanos(base.0.max(300_000_000_000)),
            max_ejection_percent: percent("max_ejection_percent", o.max_ejection_percent, 10)?,
            min_health_percent: percent("min_health_percent", o.min_health_percent, 0)?,
        })
    }
}

/// A compiled local rate limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenBucketSpec {
    /// Capacity; the bucket starts full.
    pub max_tokens: f64,
    /// Tokens per nanosecond.
    pub rate_per_ns: f64,
    /// Status of a limited request.
    pub status: u16,
}

impl TokenBucketSpec {
    /// Compiles a `local_rate_limit` block.
    pub fn compile(at: &str, l: &LocalRateLimit) -> Result<TokenBucketSpec, ConfigError> {
        if l.max_tokens == 0 {
            return Err(invalid(
                format!("{at}.max_tokens"),
                "a bucket of at least 1 token is expected, found 0".into(),
            ));
        }
        if l.fill_interval.0 < 50_000_000 {
            return Err(invalid(
                format!("{at}.fill_interval"),
                format!(
                    "a fill interval of at least 50ms is expected (Envoy's minimum), found {}",
                    l.fill_interval
                ),
            ));
        }
        let per_fill = l.tokens_per_fill.unwrap_or(1);
        if per_fill == 0 {
            return Err(invalid(
                format!("{at}.tokens_per_fill"),
                "at least 1 token per fill is expected, found 0".into(),
            ));
        }
        let status = match l.status.unwrap_or(429) {
            s @ 400..=599 => s,
            s if s < 400 => 429,
            s => {
                return Err(invalid(
                    format!("{at}.status"),
                    format!("an HTTP status below 600 is expected, found {s}"),
                ))
            }
        };
        Ok(TokenBucketSpec {
            max_tokens: f64::from(l.max_tokens),
            rate_per_ns: f64::from(per_fill) / l.fill_interval.0 as f64,
            status,
        })
    }
}

fn invalid(field: String, message: String) -> ConfigError {
    ConfigError::Invalid { field, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_parses_names_and_codes() {
        let (on, codes) = parse_retry_on("f", "5xx, 503,retriable-4xx").expect("parses");
        assert!(on.any(RetryOn::FIVE_XX));
        assert!(on.any(RetryOn::RETRIABLE_STATUS_CODES));
        assert_eq!(codes, vec![503]);
        let err = parse_retry_on("x.retry_on", "5xx,bogus").expect_err("unknown");
        assert_eq!(err.field(), "x.retry_on");
        assert!(err.to_string().contains("unknown retry condition `bogus`"));
    }

    #[test]
    fn istio_default_retries_connect_failures_only() {
        let p = RetryPolicy::istio_default();
        assert_eq!(p.num_retries, 2);
        assert!(p.would_retry(AttemptFailure::ConnectFailure));
        assert!(!p.would_retry(AttemptFailure::Status(503)), "Istio ≥ 1.24");
        assert!(!p.would_retry(AttemptFailure::PerTryTimeout));
        assert!(!p.would_retry(AttemptFailure::Reset));
    }

    #[test]
    fn conditions_follow_envoy() {
        let policy = |on: &str| {
            let r = HttpRetry {
                attempts: 1,
                retry_on: Some(on.into()),
                ..Default::default()
            };
            RetryPolicy::compile("r", Some(&r), None)
                .expect("compiles")
                .expect("on")
        };
        let gw = policy("gateway-error");
        assert!(gw.would_retry(AttemptFailure::Status(503)));
        assert!(!gw.would_retry(AttemptFailure::Status(500)));
        assert!(gw.would_retry(AttemptFailure::PerTryTimeout));
        let cf = policy("connect-failure");
        assert!(!cf.would_retry(AttemptFailure::PerTryTimeout));
        assert!(policy("retriable-4xx").would_retry(AttemptFailure::Status(409)));
        assert!(policy("5xx").would_retry(AttemptFailure::Reset));
    }

    #[test]
    fn per_try_timeout_at_or_above_route_timeout_is_ignored() {
        let r = HttpRetry {
            attempts: 2,
            per_try_timeout: Some(Nanos::from_secs(2)),
            ..Default::default()
        };
        let p = |route| {
            RetryPolicy::compile("r", Some(&r), route)
                .expect("ok")
                .expect("on")
        };
        assert_eq!(p(Some(Nanos::from_secs(1))).per_try_timeout, None);
        assert_eq!(
            p(Some(Nanos::from_secs(5))).per_try_timeout,
            Some(Nanos::from_secs(2))
        );
        assert_eq!(p(None).per_try_timeout, Some(Nanos::from_secs(2)));
        let off = HttpRetry::default();
        assert_eq!(RetryPolicy::compile("r", Some(&off), None), Ok(None));
    }

    #[test]
    fn backoff_intervals_double_to_the_cap() {
        let p = RetryPolicy::istio_default();
        let mut i = p.backoff_base;
        let mut seen = vec![i.0 / 1_000_000];
        for _ in 0..5 {
            i = p.next_interval(i);
            seen.push(i.0 / 1_000_000);
        }
        assert_eq!(seen, vec![25, 50, 100, 200, 250, 250]);
    }

    #[test]
    fn max_backoff_caps_the_interval_and_must_reach_the_base() {
        let retry = |backoff: Option<u64>, max: Option<u64>| HttpRetry {
            attempts: 3,
            backoff: backoff.map(Nanos::from_millis),
            max_backoff: max.map(Nanos::from_millis),
            ..HttpRetry::default()
        };
        let compile = |r: &HttpRetry| RetryPolicy::compile("r", Some(r), None);
        let p = compile(&retry(Some(10), Some(35)))
            .expect("valid")
            .expect("retries on");
        let mut i = p.backoff_base;
        let mut seen = vec![i.0 / 1_000_000];
        for _ in 0..4 {
            i = p.next_interval(i);
            seen.push(i.0 / 1_000_000);
        }
        assert_eq!(seen, vec![10, 20, 35, 35, 35]);
        // Without a cap: 10 × base, as Envoy defaults it.
        let p = compile(&retry(Some(10), None)).expect("valid").expect("on");
        assert_eq!(p.backoff_max, Nanos::from_millis(100));
        // A cap alone applies to the default 25 ms base.
        let p = compile(&retry(None, Some(40))).expect("valid").expect("on");
        assert_eq!(
            (p.backoff_base, p.backoff_max),
            (Nanos::from_millis(25), Nanos::from_millis(40))
        );
        let err = compile(&retry(Some(50), Some(20))).expect_err("cap below base");
        assert!(err.to_string().contains("r.max_backoff"), "{err}");
    }

    #[test]
    fn budget_is_a_share_with_a_floor() {
        let b = Budget {
            fraction: 0.2,
            min_concurrency: 3,
        };
        assert_eq!(b.allowed(0), 3);
        assert_eq!(b.allowed(100), 20);
    }
}
