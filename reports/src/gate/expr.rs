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

use super::GateError;
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
        let limit = number(right.trim()).map_err(bad)?;
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
}
