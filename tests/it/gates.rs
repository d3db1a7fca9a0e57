//! `meshtwin check` and `--threshold`: exit 0 when every gate holds, 99 on a breach, 104 for a
//! gate that cannot be evaluated, 65 for a report that cannot be read; the JUnit file has one
//! test case per gate and a failure per breach. Reports are made by hand: a real report's
//! figures replaced by round numbers, so each verdict is known in advance.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshtwin"))
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshtwin-gates-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A report with p99 100 ms, p90 50 ms, success 99 % of 1000 requests over 10 s (10 × 503),
/// 30 retries on cluster `api`, destination `api/v2` with p99 200 ms.
fn report(p99: f64, success: u64) -> Value {
    let stats = |count: u64, success: u64, p99: f64| {
        json!({
            "count": count, "success": success, "success_rate": success as f64 / count as f64,
            "by_status": {"200": success, "503": count - success},
            "by_flag": if count > success { json!({"UH": count - success}) } else { json!({}) },
            "latency_ms": {"mean": p99 / 4.0, "p50": p99 / 5.0, "p90": p99 / 2.0, "p99": p99,
                "p999": p99 * 1.5, "max": p99 * 2.0},
            "attempts": count, "attempts_per_request": 1.0, "by_attempts": {"1": count}
        })
    };
    let named = |name: &str, share: f64, s: Value| {
        let mut v = s;
        v["name"] = json!(name);
        v["share"] = json!(share);
        v
    };
    json!({
        "schema_version": 1, "scenario": "handmade", "mode": "sim", "seed": 1, "duration_s": 10.0,
        "generated": 1000, "dropped": 0, "absorbed_failures": 0,
        "totals": stats(1000, success, p99),
        "latency_spectrum": [{"percentile": 0.0, "value_ms": 1.0},
            {"percentile": 95.0, "value_ms": p99 * 0.8}, {"percentile": 100.0, "value_ms": p99 * 2.0}],
        "workloads": [named("load-0", 1.0, stats(1000, success, p99))],
        "routes": [named("api/default", 1.0, stats(1000, success, p99))],
        "destinations": [named("api/v1", 0.8, stats(800, 800, p99 / 2.0)),
            named("api/v2", 0.2, stats(200, 200 - (1000 - success), p99 * 2.0))],
        "clusters": [named("api", 1.0, stats(1000, success, p99))],
        "mirrors": [], "window_s": 1.0, "timeseries": [],
        "resilience": [{"name": "api", "retries": 30, "retry_overflows": 0, "overflows": 0,
            "ejections": 0, "unejections": 0, "ejection_overflows": 0}],
        "instances": []
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).expect("write");
    p
}

fn code(cmd: &mut Command) -> i32 {
    let out = cmd.output().expect("runs");
    out.status.code().expect("exited")
}

#[test]
fn each_kind_of_threshold_holds_or_breaches_as_computed() {
    let d = dir("thresholds");
    let r = write(&d, "r.json", &report(100.0, 990));
    let cases: [(&str, i32); 20] = [
        ("p99_ms < 101", 0),
        ("p99_ms < 100", 99),
        ("p99_ms <= 100", 0),
        ("p90_ms{route=api/default} == 50", 0),
        ("p99_ms{destination=api/v2} > 199", 0),
        ("p99_ms{destination=api/v2} < 200", 99),
        ("error_rate < 1.1%", 0),
        ("error_rate < 1%", 99),
        ("success_rate >= 0.99", 0),
        ("requests{status=503} == 10", 0),
        ("requests{flag=UH} != 10", 99),
        ("rps > 99.9", 0),
        ("rps > 100", 99),
        ("retries{cluster=api} <= 30", 0),
        ("retries < 30", 99),
        ("p95_ms < 81", 0),
        ("http_req_duration: p(95) < 80", 99),
        ("http_req_failed: rate < 0.02", 0),
        ("http_reqs: count > 1000", 99),
        ("http_req_duration{workload:load-0}: max <= 200", 0),
    ];
    for (expr, want) in cases {
        let got = code(bin().arg("check").arg(&r).args(["--threshold", expr]));
        assert_eq!(got, want, "{expr}");
    }
    for bad in [
        "p99_ms < ",
        "latency < 3",
        "p99_ms{destination=api/v9} < 3",
        "p99_ms{zone=a} < 3",
    ] {
        assert_eq!(
            code(bin().arg("check").arg(&r).args(["--threshold", bad])),
            104,
            "{bad}"
        );
    }
    let junk = d.join("junk.json");
    std::fs::write(&junk, "{\"schema_version\": 1,").expect("write");
    assert_eq!(
        code(
            bin()
                .arg("check")
                .arg(&junk)
                .args(["--threshold", "p99_ms<1"])
        ),
        65
    );
    assert_eq!(
        code(
            bin()
                .arg("check")
                .arg(d.join("missing.json"))
                .args(["--threshold", "p99_ms<1"])
        ),
        65
    );
    assert_eq!(code(bin().arg("check").arg(&r)), 2, "nothing to check");
}

#[test]
fn baseline_rules_bound_relative_points_and_absolute_moves() {
    let d = dir("baseline");
    let base = write(&d, "base.json", &report(100.0, 990));
    // p99 +6 ms (+6 %), success 99.0 % → 98.8 % (-0.2 pp).
    let new = write(&d, "new.json", &report(106.0, 988));
    let cases: [(&str, &str, i32); 8] = [
        ("--max-increase", "p99_ms=6%", 0),
        ("--max-increase", "p99_ms=5%", 99),
        ("--max-increase", "p99_ms=6", 0),
        ("--max-increase", "p99_ms=5.9", 99),
        ("--max-decrease", "success_rate=0.2pp", 0),
        ("--max-decrease", "success_rate=0.1pp", 99),
        ("--max-increase", "error_rate=0.2pp", 0),
        ("--max-decrease", "p99_ms=0", 0),
    ];
    for (flag, rule, want) in cases {
        let got = code(
            bin()
                .arg("check")
                .arg(&new)
                .arg("--baseline")
                .arg(&base)
                .args([flag, rule]),
        );
        assert_eq!(got, want, "{flag} {rule}");
    }
    assert_eq!(
        code(
            bin()
                .arg("check")
                .arg(&new)
                .arg("--baseline")
                .arg(&base)
                .args(["--max-increase", "p99_ms=fast"])
        ),
        104
    );
}

#[test]
fn junit_has_a_case_per_gate_and_a_failure_per_breach() {
    let d = dir("junit");
    let base = write(&d, "base.json", &report(100.0, 990));
    let new = write(&d, "new.json", &report(106.0, 988));
    let junit = d.join("junit.xml");
    let got = code(
        bin()
            .arg("check")
            .arg(&new)
            .args([
                "--threshold",
                "p99_ms < 200",
                "--threshold",
                "error_rate < 1%",
            ])
            .arg("--baseline")
            .arg(&base)
            .args(["--max-increase", "p99_ms=5%", "--junit"])
            .arg(&junit),
    );
    assert_eq!(got, 99);
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        xml.contains("<testsuite name=\"handmade\" tests=\"3\" failures=\"2\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 2, "{xml}");
    assert!(xml.contains("name=\"error_rate &lt; 1%\""), "{xml}");
    assert!(xml.contains("name=\"max-increase p99_ms=5%\""), "{xml}");
}

#[test]
fn a_run_exits_99_when_its_scenario_threshold_breaches() {
    let d = dir("run");
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/split-80-20.ron");
    let text = std::fs::read_to_string(&scenario).expect("scenario");
    // The bundled scenario with thresholds: every request succeeds, so `error_rate == 0` holds
    // and `requests < 10` cannot.
    let with = text.replacen(
        "workload:",
        "thresholds: [\"error_rate == 0\"],\n    workload:",
        1,
    );
    let s = d.join("gated.ron");
    std::fs::write(&s, &with).expect("write");
    let run = |extra: &[&str]| {
        code(
            bin()
                .arg("run")
                .arg(&s)
                .args(["--quiet", "--duration", "5s"])
                .args(extra),
        )
    };
    assert_eq!(run(&[]), 0);
    assert_eq!(run(&["--threshold", "requests < 10"]), 99);
    assert_eq!(run(&["--threshold", "requests <"]), 104);
    // Metric and tag names are checked before the run: no report is written.
    let never = d.join("never.json");
    let never_arg = never.display().to_string();
    assert_eq!(
        run(&["--threshold", "latency_p99 < 3", "--json", &never_arg]),
        104
    );
    assert!(!never.exists(), "the run went ahead");
    // `meshtwin validate` checks a scenario's thresholds.
    let bad = d.join("bad.ron");
    std::fs::write(
        &bad,
        text.replacen(
            "workload:",
            "thresholds: [\"p99_ms{zone=a} < 3\"],\n    workload:",
            1,
        ),
    )
    .expect("write");
    let out = bin().arg("validate").arg(&bad).output().expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("thresholds[0]") && err.contains("unknown tag `zone`"),
        "{err}"
    );
    assert!(bin()
        .arg("validate")
        .arg(&s)
        .output()
        .expect("runs")
        .status
        .success());
}

/// Runs `cmd` with `--json` into `dir`; its exit code, stderr and report.
fn run_with_report(cmd: &mut Command, dir: &Path) -> (i32, String, Value) {
    let json = dir.join("report.json");
    let out = cmd.arg("--json").arg(&json).output().expect("runs");
    let report = std::fs::read_to_string(&json).expect("the report is written");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        serde_json::from_str(&report).expect("json"),
    )
}

/// Every request sent has one outcome in the report.
fn assert_counted(report: &Value) {
    assert_eq!(
        report["generated"], report["totals"]["count"],
        "sent and recorded differ: {report}"
    );
}

#[test]
fn abort_on_fail_stops_a_load_test_early_and_exits_99() {
    let d = dir("abort-load");
    // Nothing listens on port 1: every request fails to connect (UF), so the error rate is
    // 100 % from the first check on, 2 s in (k6 checks every 2 s).
    let (code, err, report) = run_with_report(
        bin()
            .args([
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "20",
                "--duration",
                "60s",
            ])
            .args(["--drain", "1s", "--quiet"])
            .args(["--threshold", "error_rate < 1%, abort_on_fail"]),
        &d,
    );
    assert_eq!(code, 99, "{err}");
    assert!(
        err.contains("thresholds on metrics 'error_rate' were crossed"),
        "{err}"
    );
    let ran = report["duration_s"].as_f64().expect("duration");
    // Stopped at the first check whose figures breach: 2 s, or 4 s on a loaded machine.
    assert!((2.0..=6.5).contains(&ran), "ran {ran} s of 60");
    assert_counted(&report);
    assert!(report["generated"].as_u64().expect("count") > 0);
}

#[test]
fn abort_on_fail_stops_a_live_run_but_not_before_delay_abort_eval() {
    let d = dir("abort-live");
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/fault-abort.ron");
    // jason's requests (10 %) are all aborted and 5 % of the rest: about 14.5 % fail.
    let live = |duration: &str, threshold: &str| {
        let mut cmd = bin();
        cmd.arg("run").arg(&scenario).args([
            "--live",
            "--quiet",
            "--duration",
            duration,
            "--threshold",
            threshold,
        ]);
        run_with_report(&mut cmd, &d)
    };
    let (code, err, report) = live("60s", "error_rate < 1%, abort_on_fail");
    assert_eq!(code, 99, "{err}");
    assert!(err.contains("stopping the run at"), "{err}");
    let ran = report["duration_s"].as_f64().expect("duration");
    assert!((2.0..=6.5).contains(&ran), "ran {ran} s of 60");
    assert_counted(&report);
    // Held back by delay_abort_eval past the run's end: the run goes its whole length, and
    // the breach still fails it at the end.
    let (code, err, report) = live("3s", "error_rate < 1%, abort_on_fail, delay_abort_eval=1m");
    assert_eq!(code, 99, "{err}");
    assert!(!err.contains("were crossed"), "{err}");
    assert_eq!(report["duration_s"].as_f64(), Some(3.0));
    assert_counted(&report);
    // A threshold that holds never stops the run.
    let (code, err, report) = live("3s", "error_rate < 50%, abort_on_fail");
    assert_eq!(code, 0, "{err}");
    assert_eq!(report["duration_s"].as_f64(), Some(3.0));
}
