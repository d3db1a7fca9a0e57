//! Regression rules against a baseline report: `--max-increase p99_ms=5%` (relative to the
//! baseline), `--max-decrease success_rate=0.1pp` (percentage points, for rates), or a plain
//! number in the metric's unit (`p99_ms=3`: 3 ms).

use super::{trim_number, value, GateError, Query, Verdict};
use crate::json::Report;

/// How far a metric may move.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// A fraction of the baseline value (`5%` is 0.05).
    Relative(f64),
    /// Percentage points of a rate (`0.1pp` is 0.001).
    Points(f64),
    /// In the metric's own unit.
    Absolute(f64),
}

/// One rule: a metric may not rise (or fall) by more than a bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// As written, with its direction (`max-increase p99_ms=5%`).
    pub source: String,
    /// The metric.
    pub query: Query,
    /// `true` for `--max-increase`, `false` for `--max-decrease`.
    pub increase: bool,
    /// The bound.
    pub bound: Bound,
}

impl Rule {
    /// Parses `METRIC[{tags}]=BOUND` for `--max-increase` (`increase`) or `--max-decrease`.
    pub fn parse(text: &str, increase: bool) -> Result<Rule, GateError> {
        let flag = if increase {
            "max-increase"
        } else {
            "max-decrease"
        };
        let bad = |message: String| GateError::Rule {
            rule: format!("--{flag} {text}"),
            message,
        };
        let (metric, bound) = text.rsplit_once('=').ok_or_else(|| {
            bad("expected METRIC=BOUND, e.g. p99_ms=5% or success_rate=0.1pp".into())
        })?;
        let threshold =
            super::Threshold::parse(&format!("{metric} < 0")).map_err(|e| bad(e.to_string()))?;
        let b = bound.trim();
        let parse = |digits: &str| -> Result<f64, GateError> {
            match digits.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(bad(format!(
                    "expected a bound of 0 or more: N% (of the baseline), Npp (rate points) or N, found `{b}`"
                ))),
            }
        };
        let bound = if let Some(d) = b.strip_suffix("pp") {
            Bound::Points(parse(d)? / 100.0)
        } else if let Some(d) = b.strip_suffix('%') {
            Bound::Relative(parse(d)? / 100.0)
        } else {
            Bound::Absolute(parse(b)?)
        };
        Ok(Rule {
            source: format!("{flag} {}", text.trim()),
            query: threshold.query,
            increase,
            bound,
        })
    }

    /// This rule's verdict for `report` against `baseline`.
    pub fn check(&self, report: &Report, baseline: &Report) -> Result<Verdict, GateError> {
        let base = value(baseline, &self.query)?;
        let now = value(report, &self.query)?;
        let change = now - base;
        let allowed = match self.bound {
            Bound::Relative(r) => base.abs() * r,
            Bound::Points(p) | Bound::Absolute(p) => p,
        };
        let moved = if self.increase { change } else { -change };
        // A hair of slack so a change that equals the bound in decimal holds in binary.
        let passed = moved <= allowed + 1e-12 * allowed.abs().max(1.0);
        let relative = if base != 0.0 {
            format!(
                ", {}{}%",
                if change >= 0.0 { "+" } else { "" },
                trim_number(100.0 * change / base)
            )
        } else {
            String::new()
        };
        Ok(Verdict {
            name: self.source.clone(),
            observed: format!(
                "{} {} → {} ({}{}{relative})",
                self.query,
                trim_number(base),
                trim_number(now),
                if change >= 0.0 { "+" } else { "" },
                trim_number(change)
            ),
            passed,
        })
    }
}
