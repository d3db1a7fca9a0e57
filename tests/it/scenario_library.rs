//! Every scenario in `scenarios/` validates, runs (shortened), accounts for every request, and
//! is deterministic: the same seed gives a byte-identical JSON report, another seed does not.

use proxy_engine::Nanos;
use reports::{Report, RunInfo};
use std::path::{Path, PathBuf};

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    files.sort();
    files
}

/// Runs `file` for at most `cap` of load with `seed`; returns the JSON report.
fn report(file: &Path, seed: u64, cap: Nanos) -> (String, u64, u64) {
    let mut s = sim_core::load(file).unwrap_or_else(|e| panic!("{e}"));
    s.duration = s.duration.min(cap);
    let m = sim_core::run(&s, seed, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: seed {seed}: {e}", file.display()));
    let info = RunInfo {
        scenario: s.name.clone().unwrap_or_default(),
        seed,
        duration_ns: s.duration.0,
        mode: "sim",
    };
    (
        Report::new(&info, &m).to_json(),
        m.generated,
        m.totals.count,
    )
}

#[test]
fn library_has_the_required_scenarios() {
    let names: Vec<String> = scenario_files()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for required in [
        "basic.ron",
        "mm1.ron",
        "bench-1hop.ron",
        "retry-storm.ron",
        "retry-storm-budget.ron",
        "breaker-protects.ron",
        "outlier-ejection.ron",
        "timeout-vs-retry.ron",
        "rate-limit.ron",
        "istio-circuit-breaking.ron",
    ] {
        assert!(names.iter().any(|n| n == required), "missing {required}");
    }
}

#[test]
fn every_scenario_runs_and_accounts_for_every_request() {
    for file in scenario_files() {
        let (json, generated, outcomes) = report(&file, 1, Nanos::from_secs(5));
        assert!(generated > 0, "{}: generated no load", file.display());
        assert_eq!(
            generated,
            outcomes,
            "{}: requests lost or double counted",
            file.display()
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        let by_status: u64 = v["totals"]["by_status"]
            .as_object()
            .expect("by_status")
            .values()
            .map(|n| n.as_u64().expect("count"))
            .sum();
        assert_eq!(by_status, generated, "{}: report totals", file.display());
        assert_eq!(v["generated"].as_u64(), Some(generated));
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for file in scenario_files() {
        let cap = Nanos::from_secs(3);
        let (a, _, _) = report(&file, 42, cap);
        let (b, _, _) = report(&file, 42, cap);
        let (c, _, _) = report(&file, 43, cap);
        assert!(a == b, "{}: seed 42 twice differs", file.display());
        assert_ne!(a, c, "{}: seeds 42 and 43 agree", file.display());
    }
}
