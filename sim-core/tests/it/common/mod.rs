//! Helpers shared by the simulator's integration tests.

#![allow(dead_code, missing_docs)]

use metrics::RunMetrics;
use sim_core::Scenario;

/// Parses and validates scenario text; panics with the error (tests only).
pub(crate) fn scenario(text: &str) -> Scenario {
    let s = sim_core::load::parse("test.ron", text).unwrap_or_else(|e| panic!("{e}"));
    sim_core::load::validate("test.ron", text, &s).unwrap_or_else(|e| panic!("{e}"));
    s
}

/// The validation error of scenario text that parses but is invalid (tests only).
pub(crate) fn invalid(text: &str) -> String {
    let s = sim_core::load::parse("t.ron", text).expect("parses");
    sim_core::load::validate("t.ron", text, &s)
        .expect_err("invalid")
        .to_string()
}

/// Runs a scenario with its own seed; asserts nothing was lost.
pub(crate) fn run(s: &Scenario) -> RunMetrics {
    let m =
        sim_core::run(s, s.seed, &mut |_| {}).unwrap_or_else(|e| panic!("seed {}: {e}", s.seed));
    assert_eq!(
        m.generated, m.totals.count,
        "seed {}: every request has one outcome",
        s.seed
    );
    let by_status: u64 = m.totals.by_status.iter().map(|(_, n)| n).sum();
    assert_eq!(by_status, m.totals.count);
    m
}

/// Count of outcomes with `status`.
pub(crate) fn status_count(m: &RunMetrics, status: u16) -> u64 {
    m.totals
        .by_status
        .iter()
        .find(|(s, _)| *s == status)
        .map_or(0, |(_, n)| *n)
}

/// Count of outcomes carrying the flag with this short name.
pub(crate) fn flag_count(m: &RunMetrics, flag: &str) -> u64 {
    m.totals
        .flags()
        .find(|(f, _)| *f == flag)
        .map_or(0, |(_, n)| n)
}
