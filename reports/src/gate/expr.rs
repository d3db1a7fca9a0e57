//! Threshold expressions, in k6's grammar where it fits (`metrics/thresholds_parser.go`):
//!
//! ```text
//! METRIC[{TAG=VALUE,...}] OP NUMBER[%]            p99_ms{destination=reviews/v2} < 250
//! K6METRIC[{TAG:VALUE,...}]: AGG OP NUMBER[%]     http_req_duration: p(95) < 200
//! ```
//!
//! Tags are written `k=v` or, as in k6, `k:v`. Operators are tried in k6's order
//! (`<=`, `<`, `>=`, `>`, `===`, `==`, `!=`). A trailing `%` divides the number by 100
//! (`error_rate < 1%`).
//!
//! Options follow the number, comma-separated, named as k6's threshold object names them
//! (`thresholds.go`: `abortOnFail`, `delayAbortEval`; snake_case accepted too):
//!
//! ```text
//! error_rate < 1%, abort_on_fail                      stop a live run when breached
//! p99_ms < 250, abort_on_fail, delay_abort_eval=30s   …but not in its first 30 s
//! ```

use super::GateError;
use proxy_engine::Nanos;
use std::fmt;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==` (or k6's `===`)
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Whether `observed OP limit` holds.
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => observed == limit,
            Op::Ne => observed != limit,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// What a threshold measures: a metric of the report, over the slice its tags select.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The metric (after k6 names are mapped: `http_req_duration: p(95)` is `p95_ms`).
    pub metric: String,
    /// The tags, in the order written.
    pub tags: Vec<(String, String)>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, "{{{}}}", tags.join(","))?;
        }
        Ok(())
    }
}

impl Query {
    /// Parses a metric with optional tags, as on a threshold's left side: `p99_ms`,
    /// `success_rate{route=api}`.
    pub fn parse(text: &str) -> Result<Query, GateError> {
        let (metric, tags) = query_parts(text.trim()).map_err(|message| GateError::Query {
            query: text.trim().to_owned(),
            message,
        })?;
        Ok(Query { metric, tags })
    }
}

/// One parsed threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The expression as written (what reports and JUnit name it by).
    pub source: String,
    /// What it measures.
    pub query: Query,
    /// The comparison.
    pub op: Op,
    /// The limit.
    pub limit: f64,
    /// k6's `abortOnFail`: a breach seen while a live run goes on stops it (exit 99).
    pub abort_on_fail: bool,
    /// k6's `delayAbortEval`: no abort before this much of the run has passed.
    pub delay_abort_eval: Nanos,
}

impl Threshold {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Threshold, GateError> {
        let bad = |message: String| GateError::Expression {
            expression: text.to_owned(),
            message,
        };
        let (left, op, right) = split_op(text).ok_or_else(|| {
            bad("expected a comparison: one of <, <=, >, >=, ==, != and a number".into())
        })?;
        let mut parts = right.split(',');
        let limit = number(parts.next().unwrap_or_default().trim()).map_err(bad)?;
        let (mut abort_on_fail, mut delay_abort_eval) = (false, None);
        for option in parts.map(str::trim) {
            let (name, value) = match option.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (option, None),
            };
            match (name, value) {
                ("abort_on_fail" | "abortOnFail", None | Some("true")) => abort_on_fail = true,
                ("abort_on_fail" | "abortOnFail", Some("false")) => abort_on_fail = false,
                ("delay_abort_eval" | "delayAbortEval", Some(v)) => {
                    let d =
                        Nanos::parse(v).map_err(|e| bad(format!("delay_abort_eval `{v}`: {e}")))?;
                    delay_abort_eval = Some(d);
                }
                _ => {
                    return Err(bad(format!(
                        "unknown option `{option}` after the number (expected abort_on_fail, \
                         abort_on_fail=true|false or delay_abort_eval=DURATION)"
                    )))
                }
            }
        }
        if delay_abort_eval.is_some() && !abort_on_fail {
            return Err(bad(
                "delay_abort_eval only applies with abort_on_fail".into()
            ));
        }
        // A `:` after the tags (`k:v` inside them is a tag) starts k6's aggregate
        // (`http_req_duration{route:a}: p(95)`).
        let tags_end = left.find('}').map_or(0, |i| i + 1);
        let (query, aggregate) = match left[tags_end..].find(':') {
            Some(i) => (&left[..tags_end + i], Some(left[tags_end + i + 1..].trim())),
            None => (left, None),
        };
        let (name, tags) = query_parts(query.trim()).map_err(bad)?;
        let metric = match aggregate {
            None => name,
            Some(agg) => k6_metric(&name, agg).map_err(bad)?,
        };
        Ok(Threshold {
            source: text.trim().to_owned(),
            query: Query { metric, tags },
            op,
            limit,
            abort_on_fail,
            delay_abort_eval: delay_abort_eval.unwrap_or(Nanos::ZERO),
        })
    }

    /// The operator as written in reports (`<`, `<=`…).
    pub fn op_text(&self) -> &'static str {
        self.op.text()
    }
}

/// Splits at the first operator found, trying them in k6's order.
fn split_op(text: &str) -> Option<(&str, Op, &str)> {
    const OPS: [(&str, Op); 7] = [
        ("<=", Op::Le),
        ("<", Op::Lt),
        (">=", Op::Ge),
        (">", Op::Gt),
        ("===", Op::Eq),
        ("==", Op::Eq),
        ("!=", Op::Ne),
    ];
    OPS.iter().find_map(|(token, op)| {
        let at = text.find(token)?;
        Some((&text[..at], *op, &text[at + token.len()..]))
    })
}

fn number(s: &str) -> Result<f64, String> {
    let (digits, scale) = match s.strip_suffix('%') {
        Some(d) => (d.trim_end(), 0.01),
        None => (s, 1.0),
    };
    match digits.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v * scale),
        _ => Err(format!("expected a number after the operator, found `{s}`")),
    }
}

/// `name{k=v,k:v}` into the name and its tags.
fn query_parts(q: &str) -> Result<(String, Vec<(String, String)>), String> {
    let (name, rest) = match q.find('{') {
        Some(i) => (&q[..i], Some(&q[i + 1..])),
        None => (q, None),
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "expected a metric name (letters, digits, _), found `{name}`"
        ));
    }
    let mut tags = Vec::new();
    if let Some(rest) = rest {
        let inner = rest
            .strip_suffix('}')
            .ok_or_else(|| "expected `}` closing the tags".to_owned())?;
        for tag in inner.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, v) = tag
                .split_once('=')
                .or_else(|| tag.split_once(':'))
                .ok_or_else(|| format!("expected a tag `name=value`, found `{tag}`"))?;
            tags.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok((name.to_owned(), tags))
}

/// A k6 metric and aggregate as meshtwin's metric.
fn k6_metric(name: &str, agg: &str) -> Result<String, String> {
    let agg = agg.trim();
    let percentile = agg
        .strip_prefix("p(")
        .and_then(|p| p.strip_suffix(')'))
        .map(|p| p.trim().parse::<f64>());
    let metric = match (name, agg, percentile) {
        ("http_req_duration", _, Some(Ok(p))) if (0.0..=100.0).contains(&p) => {
            format!("p{}_ms", super::trim_number(p).replace('.', ""))
        }
        ("http_req_duration", _, Some(_)) => {
            return Err(format!("`{agg}`: a percentile is a number from 0 to 100"))
        }
        ("http_req_duration", "avg", _) => "mean_ms".into(),
        ("http_req_duration", "med", _) => "p50_ms".into(),
        ("http_req_duration", "max", _) => "max_ms".into(),
        ("http_req_failed", "rate", _) => "error_rate".into(),
        ("http_reqs", "count", _) => "requests".into(),
        ("http_reqs", "rate", _) => "rps".into(),
        ("http_req_duration" | "http_req_failed" | "http_reqs", _, _) => {
            return Err(format!(
                "`{name}` has no aggregate `{agg}` (http_req_duration: avg, med, max, p(N); \
                 http_req_failed: rate; http_reqs: count, rate)"
            ))
        }
        _ => {
            return Err(format!(
                "`{name}: {agg}`: the k6 form `metric: aggregate` takes http_req_duration, \
                 http_req_failed or http_reqs; meshtwin metrics carry their aggregate in the \
                 name (p99_ms, error_rate, rps…)"
            ))
        }
    };
    Ok(metric)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let t = Threshold::parse("p99_ms{destination=reviews/v2} < 250").expect("parses");
        assert_eq!(t.query.metric, "p99_ms");
        assert_eq!(
            t.query.tags,
            vec![("destination".into(), "reviews/v2".into())]
        );
        assert_eq!((t.op, t.limit), (Op::Lt, 250.0));
        let k6 = Threshold::parse("http_req_duration{route:web/api}: p(95)<200").expect("k6");
        assert_eq!(k6.query.to_string(), "p95_ms{route=web/api}");
        assert_eq!(
            Threshold::parse("http_req_failed: rate<=1%").map(|t| (t.query.metric, t.op, t.limit)),
            Ok(("error_rate".into(), Op::Le, 0.01))
        );
        assert_eq!(
            Threshold::parse("http_req_duration: p(99.9) < 5").map(|t| t.query.metric),
            Ok("p999_ms".into())
        );
        assert_eq!(Threshold::parse("retries === 0").map(|t| t.op), Ok(Op::Eq));
        assert!(Threshold::parse("p99_ms 250").is_err());
        assert!(Threshold::parse("p99_ms < fast").is_err());
        assert!(Threshold::parse("http_req_duration: p(101) < 5").is_err());
        assert!(Threshold::parse("p99 ms < 5").is_err());
        assert!(Threshold::parse("p99_ms{route=a < 5").is_err());
    }

    #[test]
    fn abort_options_parse_as_k6_names_them() {
        let plain = Threshold::parse("p99_ms{route=a,destination=b/v1} < 5").expect("plain");
        assert!(!plain.abort_on_fail);
        assert_eq!(plain.query.tags.len(), 2, "commas in tags are not options");
        let t = Threshold::parse("error_rate < 1%, abort_on_fail").expect("abort");
        assert!(t.abort_on_fail);
        assert_eq!((t.limit, t.delay_abort_eval), (0.01, Nanos::ZERO));
        let k6 =
            Threshold::parse("http_req_failed: rate<0.01, abortOnFail=true, delayAbortEval=10s")
                .expect("k6 names");
        assert!(k6.abort_on_fail);
        assert_eq!(k6.delay_abort_eval, Nanos::from_secs(10));
        assert!(Threshold::parse("p99_ms < 5, abort").is_err());
        assert!(Threshold::parse("p99_ms < 5, delay_abort_eval=10s").is_err());
        assert!(Threshold::parse("p99_ms < 5, abort_on_fail, delay_abort_eval=soon").is_err());
    }
}
