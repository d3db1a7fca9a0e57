//! The results of a route test run, and how they are printed: one line per case (`PASS` or
//! `FAIL` and each failing request), then route coverage as Envoy's `router_check_tool`
//! prints it (`Current route coverage: 75%`) with the rules no case reached.

use super::{Target, TestCase};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeSet;
use std::fmt::Write;

/// The results of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How many requests it unfolded into.
    pub requests: usize,
    /// One line per failing request.
    pub failures: Vec<String>,
}

/// The results of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Per case, in order.
    pub outcomes: Vec<Outcome>,
    /// The config rules (`(virtual service, http index)`) some request matched.
    pub covered: BTreeSet<(usize, usize)>,
    /// The config rules in the context tested (sidecar or gateway).
    pub rules: BTreeSet<(usize, usize)>,
}

impl Report {
    /// Cases with a failing request.
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| !o.failures.is_empty())
            .count()
    }

    /// Percentage of the context's rules some request matched (100 when there are none).
    pub fn coverage(&self) -> f64 {
        if self.rules.is_empty() {
            return 100.0;
        }
        let hit = self.rules.intersection(&self.covered).count();
        100.0 * hit as f64 / self.rules.len() as f64
    }

    /// The report as printed: cases, then coverage and the rules no request matched.
    pub fn render(&self, tests: &[TestCase], target: &Target) -> String {
        let mut out = String::new();
        for (case, outcome) in tests.iter().zip(&self.outcomes) {
            let verdict = if outcome.failures.is_empty() {
                "PASS"
            } else {
                "FAIL"
            };
            let requests = match outcome.requests {
                1 => "1 request".to_owned(),
                n => format!("{n} requests"),
            };
            let _ = writeln!(
                out,
                "{verdict}  {} ({}:{}, {requests})",
                if case.description.is_empty() {
                    "(no description)"
                } else {
                    &case.description
                },
                case.file,
                case.at.line
            );
            for f in &outcome.failures {
                let _ = writeln!(out, "      {f}");
            }
        }
        let failed = self.failed();
        let _ = writeln!(
            out,
            "\n{} cases: {} passed, {failed} failed",
            self.outcomes.len(),
            self.outcomes.len() - failed
        );
        let _ = writeln!(out, "Current route coverage: {}%", g6(self.coverage()));
        if self.rules.is_empty() {
            let place = match &target.gateway {
                Some(g) => format!("at Gateway {}", g.name),
                None => "at a sidecar (gateway routes need --gateway NS/NAME)".to_owned(),
            };
            let _ = writeln!(out, "  no VirtualService rule applies {place}");
        }
        for &(v, r) in self.rules.difference(&self.covered) {
            let name = target.rule_name(v, r);
            let rule = target
                .mesh
                .virtual_services
                .get(v)
                .and_then(|vs| vs.http.get(r));
            let label = rule
                .and_then(|h| h.name.as_deref())
                .map_or(String::new(), |n| format!(" `{n}`"));
            let _ = writeln!(out, "  not reached: {name}{label}");
        }
        out
    }
}

/// `x` as C++ streams print a double by default (6 significant digits, no trailing zeros):
/// `50`, `66.6667`, `7.44863`.
pub(super) fn g6(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = 6 - 1 - x.abs().log10().floor() as i32;
    let s = format!("{x:.prec$}", prec = digits.max(0) as usize);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A config value as compact JSON, unset fields and empty collections left out, so an
/// expectation and a rule that say the same thing print (and compare) the same.
pub(super) fn show<T: Serialize>(value: &T) -> String {
    let mut json = serde_json::to_value(value).unwrap_or(Json::Null);
    prune(&mut json);
    json.to_string()
}

fn prune(v: &mut Json) {
    match v {
        Json::Object(map) => {
            map.values_mut().for_each(prune);
            map.retain(|_, x| !is_empty(x));
        }
        Json::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Object(m) => m.is_empty(),
        Json::Array(a) => a.is_empty(),
        _ => false,
    }
}
