//! `meshtwin sweep`: the same sweep gives the same files (whatever `--jobs`), shards merged
//! give exactly the files of a one-machine sweep, and each point's figures are the statistics
//! of the single runs (`meshtwin run --set … --seed …`), computed here from their JSON.

use scraper::{Html, Selector};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FILES: [&str; 4] = ["sweep.json", "runs.csv", "summary.csv", "sweep.html"];
const ATTEMPTS: &str = "mesh.virtual_services[0].http[0].retries.attempts";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshtwin"))
}

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/retry-storm.ron")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshtwin-sweep-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The sweep of every test: 2 retry settings × 3 seeds of a 2 s retry storm, the slowdown
/// from the start.
fn sweep(extra: &[&str], out: &Path) -> Output {
    let out = bin()
        .arg("sweep")
        .arg(scenario())
        .args([
            "--set",
            "duration=2s",
            "--set",
            "faults[0].start=0s",
            "--set",
        ])
        .arg(format!("{ATTEMPTS}=0,2"))
        .args(["--seeds", "3", "--seed", "11"])
        .args([
            "--metric",
            "p99_ms",
            "--metric",
            "success_rate",
            "--metric",
            "retries",
        ])
        .args(extra)
        .arg("-o")
        .arg(out)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

#[test]
fn same_sweep_same_files_and_shards_merge_to_them() {
    let (a, b) = (temp("a"), temp("b"));
    sweep(&["--jobs", "2"], &a);
    sweep(&["--jobs", "1"], &b);
    for f in FILES {
        assert!(read(&a, f) == read(&b, f), "{f} differs between two sweeps");
    }
    let shards: Vec<PathBuf> = (1..=4).map(|k| temp(&format!("shard{k}"))).collect();
    for (k, dir) in shards.iter().enumerate() {
        sweep(&["--shard", &format!("{}/4", k + 1)], dir);
        assert!(
            !dir.join("summary.csv").exists(),
            "a shard writes no summary"
        );
    }
    let merged = temp("merged");
    let out = bin()
        .args(["sweep", "merge"])
        .args(shards.iter().rev())
        .arg("-o")
        .arg(&merged)
        .output()
        .expect("merges");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in FILES {
        assert!(read(&a, f) == read(&merged, f), "merged {f} differs");
    }
    // A missing shard is an error naming the missing runs.
    let out = bin()
        .args(["sweep", "merge"])
        .args(&shards[..3])
        .arg("-o")
        .arg(temp("partial"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("missing"), "{err}");

    // The page: one chart per metric, nothing fetched from anywhere.
    let html = String::from_utf8(read(&a, "sweep.html")).expect("utf-8");
    let doc = Html::parse_document(&html);
    let figures = Selector::parse("figure svg").expect("selector");
    assert_eq!(doc.select(&figures).count(), 3);
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
}

/// Mean, sample sd, min, max of `v`.
fn stats(v: &[f64]) -> [f64; 4] {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    [mean, sd, min, max]
}

#[test]
fn point_figures_are_the_statistics_of_the_single_runs() {
    let dir = temp("points");
    sweep(&[], &dir);
    let sweep: Value =
        serde_json::from_slice(&read(&dir, "sweep.json")).expect("sweep.json parses");
    for (point, attempts) in ["0", "2"].iter().enumerate() {
        let mut p99 = Vec::new();
        let mut success = Vec::new();
        for seed in ["11", "12", "13"] {
            let out = bin()
                .arg("run")
                .arg(scenario())
                .args([
                    "--quiet",
                    "--set",
                    "duration=2s",
                    "--set",
                    "faults[0].start=0s",
                ])
                .arg("--set")
                .arg(format!("{ATTEMPTS}={attempts}"))
                .args(["--seed", seed, "--json", "-"])
                .output()
                .expect("runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: Value = serde_json::from_slice(&out.stdout).expect("report");
            let totals = &report["totals"];
            p99.push(totals["latency_ms"]["p99"].as_f64().expect("p99"));
            success.push(totals["success_rate"].as_f64().expect("success_rate"));
        }
        let summary = &sweep["points"][point];
        assert_eq!(summary["values"][2], *attempts);
        for (metric, values) in [("p99_ms", &p99), ("success_rate", &success)] {
            let s = &summary["metrics"][metric];
            let got = ["mean", "sd", "min", "max"].map(|k| s[k].as_f64().expect(k));
            let want = stats(values);
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "point {point} {metric}: {got:?} vs single runs {want:?}"
                );
            }
            assert_eq!(s["n"], 3);
        }
    }
    // With no retries configured there are none; with two, the storm retries.
    let retries = |p: usize| sweep["points"][p]["metrics"]["retries"]["mean"].as_f64();
    assert_eq!(retries(0), Some(0.0));
    assert!(retries(1).is_some_and(|r| r > 0.0));
}

#[test]
fn bad_paths_and_metrics_are_clear_errors() {
    let run = |args: &[&str]| {
        bin()
            .arg("sweep")
            .arg(scenario())
            .args(args)
            .args(["--plan"])
            .output()
            .expect("runs")
    };
    let out = run(&["--set", "services.backend.versions.v1.instanses=1,2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("did you mean `instances`"),
        "{err}"
    );
    let out = run(&["--set", "workload[0].rate=100,-5"]);
    assert!(!out.status.success(), "a bad value fails before any run");
    let out = run(&["--set", "workload[0].rate=100", "--metric", "p99_mss"]);
    assert_eq!(out.status.code(), Some(104), "unknown metric exits 104");
    let out = run(&["--set", "workload[0].rate=100,200", "--seeds", "2"]);
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("2 point(s) × 2 seed(s) = 4 runs"), "{plan}");
}
