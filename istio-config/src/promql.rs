//! The PromQL of analysis templates (Argo's `AnalysisTemplate`, Flagger's `MetricTemplate`)
//! recognised as the twin query that measures the same thing. The twin runs no Prometheus:
//! a query is read with a PromQL parser and matched against the forms users write over
//! Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! <https://istio.io/latest/docs/reference/config/metrics/>):
//!
//! - `sum(rate(istio_requests_total{…, response_code!~"5.*"}[W])) / sum(rate(istio_requests_total{…}[W]))`
//!   — the success ratio (`* 100`: Flagger's success rate in percent); `=~"5.*"` gives the
//!   error ratio, `="503"` one status's ratio;
//! - `histogram_quantile(q, sum(rate(istio_request_duration_milliseconds_bucket{…}[W])) by (le))`
//!   — a latency quantile in ms;
//! - `sum(rate(istio_requests_total{…}[W]))` — the request rate.
//!
//! `rate`, `irate` and `increase` are read alike (a ratio of increases is a ratio of rates).
//! `reporter="source"` reads the callers' side (the hops their proxies routed), anything else
//! the destination side (what the version's instances answered). The labels that name a
//! workload, service or version decide which version is measured; a label the twin has no
//! counterpart for is ignored and reported.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};
use proxy_engine::Nanos;
use rollout::spec::{Query, Side};

/// The names that identify each version in Istio's metric labels, label by label.
#[derive(Clone, Debug, Default)]
pub(crate) struct Names {
    /// `destination_workload`: the workload names of (stable, canary, both).
    pub(crate) workload: [Vec<String>; 3],
    /// `destination_service`, `destination_service_name`: service names (short and FQDN).
    pub(crate) service: [Vec<String>; 3],
    /// `destination_version`, `destination_canonical_revision`: version labels and subsets.
    pub(crate) version: [Vec<String>; 3],
    /// `destination_app`, `destination_canonical_service`: the app (both versions).
    pub(crate) app: Vec<String>,
}

/// A recognised query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Recognised {
    /// What it measures.
    pub(crate) query: Query,
    /// The range it reads (`[5m]`).
    pub(crate) window: Nanos,
    /// Which version.
    pub(crate) version: Side,
    /// Label matchers the twin ignored (`source_workload="…"`), as written.
    pub(crate) ignored: Vec<String>,
}

/// The forms recognised, for messages.
pub(crate) const FORMS: &str = "sum(rate(istio_requests_total{…,response_code!~\"5.*\"}[W])) / \
     sum(rate(istio_requests_total{…}[W])) (also =~\"5.*\", =\"503\", * 100), \
     histogram_quantile(q, sum(rate(istio_request_duration_milliseconds_bucket{…}[W])) by (le)), \
     sum(rate(istio_requests_total{…}[W]))";

const REQUESTS: &str = "istio_requests_total";
const DURATION: &str = "istio_request_duration_milliseconds_bucket";

/// Labels that only narrow to the namespace or mesh, which the twin's one mesh already is.
const SCOPE_LABELS: [&str; 6] = [
    "destination_workload_namespace",
    "destination_service_namespace",
    "source_workload_namespace",
    "destination_cluster",
    "source_cluster",
    "mesh_id",
];

/// What `text` measures, or why the twin cannot say.
pub(crate) fn recognise(text: &str, names: &Names) -> Result<Recognised, String> {
    let expr = parser::parse(text).map_err(|e| format!("PromQL: {}", e.trim()))?;
    let unsupported = || {
        format!("the twin runs no Prometheus and does not recognise this query; it reads: {FORMS}")
    };
    let expr = unparen(&expr);
    // `N / D * 100`, or `100 * N / D` (which PromQL reads as `(100 * N) / D`).
    let (outer, inner) = scaled(expr).unwrap_or((1.0, expr));
    let scaled_ratio = ratio(inner).filter(|r| outer * r.2 != 1.0);
    if let Some((form, series, inner_factor)) = scaled_ratio {
        let factor = outer * inner_factor;
        if factor != 100.0 || form != Form::Success {
            return Err(format!(
                "only a success ratio is read scaled (`* 100`, Flagger's success rate in \
                 percent); {}",
                unsupported()
            ));
        }
        let (version, ignored, source) = selection(&series.matchers, names)?;
        if source {
            return Err("a success rate in percent is read on the destination side \
                 (reporter=\"destination\"); drop `* 100` to read the callers' side"
                .into());
        }
        return Ok(Recognised {
            query: Query::SuccessRate,
            window: series.window,
            version,
            ignored,
        });
    }
    if let Some((form, series, _)) = ratio(expr) {
        let (version, ignored, source) = selection(&series.matchers, names)?;
        let query = match (form, source) {
            (Form::Success, false) => Query::SuccessRatio,
            (Form::Success, true) => Query::HopSuccessRatio,
            (Form::Errors, false) => Query::ErrorRatio,
            (Form::Errors, true) => Query::HopErrorRatio,
            (Form::Status(s), true) => Query::StatusRatio(s),
            (Form::Status(_), false) => {
                return Err("one status's ratio is counted on the callers' side: write \
                     reporter=\"source\""
                    .into())
            }
        };
        return Ok(Recognised {
            query,
            window: series.window,
            version,
            ignored,
        });
    }
    if let Some((q, series)) = quantile(expr) {
        let (version, ignored, source) = selection(&series.matchers, names)?;
        return Ok(Recognised {
            query: if source {
                Query::HopLatencyMs(q)
            } else {
                Query::LatencyMs(q)
            },
            window: series.window,
            version,
            ignored,
        });
    }
    if let Some(series) = summed(expr, REQUESTS) {
        let (version, ignored, source) = selection(&series.matchers, names)?;
        if source {
            return Err("the request rate is read on the destination side \
                 (reporter=\"destination\")"
                .into());
        }
        return Ok(Recognised {
            query: Query::RequestRate,
            window: series.window,
            version,
            ignored,
        });
    }
    Err(unsupported())
}

/// A counter's series: its matchers and range.
#[derive(Debug)]
struct Series {
    matchers: Vec<Matcher>,
    window: Nanos,
}

/// What a ratio's numerator keeps of its denominator's responses.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    /// Not 5xx.
    Success,
    /// 5xx.
    Errors,
    /// One status.
    Status(u16),
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// `scalar(e)` or `e` with its parentheses.
fn unwrap(e: &Expr) -> &Expr {
    match unparen(e) {
        Expr::Call(c) if c.func.name == "scalar" && c.args.args.len() == 1 => {
            unparen(&c.args.args[0])
        }
        other => other,
    }
}

/// `e * k` or `k * e`.
fn scaled(e: &Expr) -> Option<(f64, &Expr)> {
    let Expr::Binary(b) = e else { return None };
    if b.op.to_string() != "*" {
        return None;
    }
    match (unparen(&b.lhs), unparen(&b.rhs)) {
        (Expr::NumberLiteral(n), other) | (other, Expr::NumberLiteral(n)) => Some((n.val, other)),
        _ => None,
    }
}

/// `N / D` over `istio_requests_total`, N being D with one more `response_code` matcher, and
/// the factor N carries (`100 * N / D`).
fn ratio(e: &Expr) -> Option<(Form, Series, f64)> {
    let Expr::Binary(b) = e else { return None };
    if b.op.to_string() != "/" {
        return None;
    }
    let (factor, lhs) = scaled(unwrap(&b.lhs)).unwrap_or((1.0, &b.lhs));
    let num = summed(unwrap(lhs), REQUESTS)?;
    let den = summed(unwrap(&b.rhs), REQUESTS)?;
    if num.window != den.window {
        return None;
    }
    let is_code = |m: &Matcher| m.name == "response_code";
    let extra: Vec<&Matcher> = (num.matchers.iter())
        .filter(|m| !den.matchers.contains(m))
        .collect();
    let missing = den.matchers.iter().any(|m| !num.matchers.contains(m));
    let ([code], false) = (extra.as_slice(), missing) else {
        return None;
    };
    if !is_code(code) {
        return None;
    }
    let fives = matches!(
        code.value.as_str(),
        "5.*" | "5.." | "5[0-9][0-9]" | "5\\d\\d"
    );
    let form = match &code.op {
        MatchOp::NotRe(_) if fives => Form::Success,
        MatchOp::Re(_) if fives => Form::Errors,
        MatchOp::Equal => Form::Status(code.value.parse().ok()?),
        MatchOp::Re(_) if code.value.len() == 3 => Form::Status(code.value.parse().ok()?),
        _ => return None,
    };
    Some((form, den, factor))
}

/// `sum(rate(name{…}[W]))` (also `irate`, `increase`, and `sum by (…)`).
fn summed(e: &Expr, name: &str) -> Option<Series> {
    let Expr::Aggregate(a) = unparen(e) else {
        return None;
    };
    if a.op.to_string() != "sum" || a.param.is_some() {
        return None;
    }
    counter(unparen(&a.expr), name)
}

/// `rate(name{…}[W])`.
fn counter(e: &Expr, name: &str) -> Option<Series> {
    let Expr::Call(c) = e else { return None };
    if !matches!(c.func.name, "rate" | "irate" | "increase") || c.args.args.len() != 1 {
        return None;
    }
    let Expr::MatrixSelector(m) = unparen(&c.args.args[0]) else {
        return None;
    };
    let vs = &m.vs;
    let named = vs.name.as_deref() == Some(name)
        || (vs.matchers.matchers.iter())
            .any(|m| m.name == "__name__" && m.op == MatchOp::Equal && m.value == name);
    if !named || vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    let matchers = (vs.matchers.matchers.iter())
        .filter(|m| m.name != "__name__")
        .cloned()
        .collect();
    Some(Series {
        matchers,
        window: Nanos(u64::try_from(m.range.as_nanos()).ok()?),
    })
}

/// `histogram_quantile(q, sum(rate(…_bucket{…}[W])) by (le))`.
fn quantile(e: &Expr) -> Option<(f64, Series)> {
    let Expr::Call(c) = e else { return None };
    let [q, inner] = c.args.args.as_slice() else {
        return None;
    };
    if c.func.name != "histogram_quantile" {
        return None;
    }
    let Expr::NumberLiteral(q) = unparen(q) else {
        return None;
    };
    let Expr::Aggregate(a) = unparen(inner) else {
        return None;
    };
    let by_le = a.modifier.as_ref().is_some_and(|m| {
        matches!(m, promql_parser::parser::LabelModifier::Include(_))
            && m.labels().labels.iter().any(|l| l == "le")
    });
    if a.op.to_string() != "sum" || !by_le || !(0.0..=1.0).contains(&q.val) {
        return None;
    }
    Some((q.val, counter(unparen(&a.expr), DURATION)?))
}

/// Which version the matchers select, the matchers ignored, and whether they read the
/// callers' side (`reporter="source"`).
fn selection(matchers: &[Matcher], names: &Names) -> Result<(Side, Vec<String>, bool), String> {
    // Stable, canary: still selected.
    let mut selected = [true, true];
    let mut ignored = Vec::new();
    let mut source = false;
    for m in matchers {
        let ids: Option<[&[String]; 3]> = match m.name.as_str() {
            "destination_workload" => Some(each(&names.workload)),
            "destination_service" | "destination_service_name" => Some(each(&names.service)),
            "destination_version" | "destination_canonical_revision" => Some(each(&names.version)),
            "destination_app" | "destination_canonical_service" => {
                Some([&[], &[], names.app.as_slice()])
            }
            _ => None,
        };
        if let Some([stable, canary, both]) = ids {
            let hits = |list: &[String]| list.iter().any(|n| m.is_match(n));
            let picks = [hits(stable) || hits(both), hits(canary) || hits(both)];
            if picks == [false, false] {
                let mut known: Vec<&str> = [stable, canary, both]
                    .iter()
                    .flat_map(|l| l.iter().map(String::as_str))
                    .collect();
                known.dedup();
                return Err(format!(
                    "`{m}` selects neither version of the rollout (known for {}: {})",
                    m.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            selected = [selected[0] && picks[0], selected[1] && picks[1]];
        } else if m.name == "reporter" {
            source = m.is_match("source") && !m.is_match("destination");
        } else if !SCOPE_LABELS.contains(&m.name.as_str()) {
            ignored.push(m.to_string());
        }
    }
    let version = match selected {
        [true, true] => Side::Both,
        [false, true] => Side::Canary,
        [true, false] => Side::Stable,
        [false, false] => {
            return Err(
                "the label matchers select no version (one names the stable \
                 version, another the canary)"
                    .into(),
            )
        }
    };
    Ok((version, ignored, source))
}

fn each(lists: &[Vec<String>; 3]) -> [&[String]; 3] {
    [&lists[0], &lists[1], &lists[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Names {
            workload: [v(&["reviews-primary"]), v(&["reviews"]), v(&[])],
            service: [
                v(&[
                    "reviews-primary",
                    "reviews-primary.default.svc.cluster.local",
                ]),
                v(&["reviews-canary", "reviews-canary.default.svc.cluster.local"]),
                v(&["reviews", "reviews.default.svc.cluster.local"]),
            ],
            version: [v(&["v1", "primary"]), v(&["v2", "canary"]), v(&[])],
            app: v(&["reviews"]),
        }
    }

    #[test]
    fn flaggers_built_in_success_rate_is_the_canarys_success_rate() {
        // Flagger's request-success-rate for Istio (pkg/metrics/providers/prometheus.go).
        let q = r#"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="default",destination_workload=~"reviews",response_code!~"5.*"}[1m]))
            / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="default",destination_workload=~"reviews"}[1m])) * 100"#;
        let r = recognise(q, &names()).expect("recognised");
        assert_eq!(r.query, Query::SuccessRate);
        assert_eq!(r.version, Side::Canary);
        assert_eq!(r.window, Nanos::from_secs(60));
        assert!(r.ignored.is_empty());
        // `100 * N / D` reads as `(100 * N) / D`: the same percentage.
        let q = r#"100 * sum(rate(istio_requests_total{destination_workload="reviews",response_code!~"5.."}[30s])) / sum(rate(istio_requests_total{destination_workload="reviews"}[30s]))"#;
        let r = recognise(q, &names()).expect("recognised");
        assert_eq!(
            (r.query, r.window),
            (Query::SuccessRate, Nanos::from_secs(30))
        );
    }

    #[test]
    fn argos_istio_success_rate_reads_the_callers_side_of_the_host() {
        // Argo Rollouts' analysis.md background-analysis example.
        let q = r#"sum(irate(istio_requests_total{reporter="source",destination_service=~"reviews.default.svc.cluster.local",response_code!~"5.*"}[5m])) /
            sum(irate(istio_requests_total{reporter="source",destination_service=~"reviews.default.svc.cluster.local"}[5m]))"#;
        let r = recognise(q, &names()).expect("recognised");
        assert_eq!(r.query, Query::HopSuccessRatio);
        assert_eq!(r.version, Side::Both, "the service names both versions");
        assert_eq!(r.window, Nanos::from_secs(300));
    }

    #[test]
    fn errors_statuses_latency_and_rate_are_read() {
        let n = names();
        let q = |text: &str| recognise(text, &n);
        let r = q(r#"sum(rate(istio_requests_total{destination_version="v2",response_code=~"5.*"}[30s])) / sum(rate(istio_requests_total{destination_version="v2"}[30s]))"#)
            .expect("error ratio");
        assert_eq!((r.query, r.version), (Query::ErrorRatio, Side::Canary));
        let r = q(r#"sum(rate(istio_requests_total{reporter="source",destination_version="v1",response_code="503"}[1m])) / sum(rate(istio_requests_total{reporter="source",destination_version="v1"}[1m]))"#)
            .expect("status ratio");
        assert_eq!(
            (r.query, r.version),
            (Query::StatusRatio(503), Side::Stable)
        );
        let r = q(r#"histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",destination_workload=~"reviews"}[1m])) by (le))"#)
            .expect("latency");
        assert_eq!((r.query, r.version), (Query::LatencyMs(0.99), Side::Canary));
        let r = q(r#"histogram_quantile(0.5, sum by (le) (irate(istio_request_duration_milliseconds_bucket{reporter="source",destination_app="reviews",source_workload="productpage-v1"}[2m])))"#)
            .expect("hop latency");
        assert_eq!((r.query, r.version), (Query::HopLatencyMs(0.5), Side::Both));
        assert_eq!(
            r.ignored,
            vec![r#"source_workload="productpage-v1""#.to_owned()]
        );
        let r =
            q(r#"sum(rate(istio_requests_total{destination_service_name="reviews-primary"}[1m]))"#)
                .expect("rate");
        assert_eq!((r.query, r.version), (Query::RequestRate, Side::Stable));
    }

    #[test]
    fn what_the_twin_cannot_measure_is_refused_with_the_forms_it_reads() {
        let n = names();
        for bad in [
            "up",
            r#"avg(rate(istio_requests_total[1m]))"#,
            r#"sum(rate(istio_requests_total{response_code!~"5.*"}[1m])) / sum(rate(istio_requests_total[5m]))"#,
            r#"histogram_quantile(0.9, sum(rate(istio_request_duration_milliseconds_bucket[1m])))"#,
            r#"sum(rate(container_cpu_usage_seconds_total[1m]))"#,
        ] {
            let e = recognise(bad, &n).expect_err(bad);
            assert!(e.contains("istio_requests_total{"), "{bad}: {e}");
        }
        let e = recognise("sum(rate(", &n).expect_err("syntax");
        assert!(e.starts_with("PromQL:"), "{e}");
        let e = recognise(
            r#"sum(rate(istio_requests_total{destination_version="v9"}[1m]))"#,
            &n,
        )
        .expect_err("unknown version");
        assert!(e.contains("v1, primary, v2, canary"), "{e}");
    }
}
