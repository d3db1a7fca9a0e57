//! `meshtwin compare A.json B.json`: on two reports of different seeds, each delta is what the
//! two JSON files say (computed here from the files, not from the code under test), and the HTML
//! page overlays both runs.

use scraper::{Html, Selector};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshtwin"))
}

#[test]
fn deltas_are_the_differences_of_the_two_reports() {
    let dir = std::env::temp_dir().join(format!("meshtwin-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let scenario = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/split-80-20.ron");
    let mut json = Vec::new();
    for seed in ["1", "2"] {
        let path = dir.join(format!("seed{seed}.json"));
        let ok = bin()
            .arg("run")
            .arg(&scenario)
            .args(["--quiet", "--duration", "10s", "--seed", seed, "--json"])
            .arg(&path)
            .status()
            .expect("runs");
        assert!(ok.success());
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        json.push((path, v));
    }
    let html = dir.join("compare.html");
    let out = bin()
        .arg("compare")
        .arg(&json[0].0)
        .arg(&json[1].0)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (a, b) = (&json[0].1, &json[1].1);
    // The row of (section, name, metric): its A, B, Δ and Δ% cells.
    let row = |section: &str, name: &str, metric: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|c| {
                c.len() >= 7
                    && c[0] == section
                    && c[c.len() - 5] == metric
                    && c[1..c.len() - 5].join(" ") == name
            })
            .unwrap_or_else(|| panic!("no row {section} {name} {metric} in\n{text}"))
    };
    let num = |s: &str| {
        s.trim_end_matches('%')
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    };
    let check = |section: &str, name: &str, metric: &str, va: f64, vb: f64| {
        let r = row(section, name, metric);
        let n = r.len();
        assert!(
            (num(&r[n - 4]) - va).abs() <= 5e-4,
            "A of {metric}: {r:?} vs {va}"
        );
        assert!(
            (num(&r[n - 3]) - vb).abs() <= 5e-4,
            "B of {metric}: {r:?} vs {vb}"
        );
        assert!(
            (num(&r[n - 2]) - (vb - va)).abs() <= 1e-3,
            "Δ of {metric}: {r:?}"
        );
        if va != 0.0 {
            let rel = 100.0 * (vb - va) / va;
            assert!(
                (num(&r[n - 1]) - rel).abs() <= 0.006,
                "Δ% of {metric}: {r:?} vs {rel}"
            );
        }
    };
    let f = |v: &Value| v.as_f64().expect("number");
    check(
        "totals",
        "all requests",
        "requests",
        f(&a["totals"]["count"]),
        f(&b["totals"]["count"]),
    );
    check(
        "totals",
        "all requests",
        "p99_ms",
        f(&a["totals"]["latency_ms"]["p99"]),
        f(&b["totals"]["latency_ms"]["p99"]),
    );
    let dest = |v: &Value, name: &str| -> Value {
        v["destinations"]
            .as_array()
            .expect("array")
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .expect("destination")
    };
    let (da, db) = (dest(a, "reviews/v2"), dest(b, "reviews/v2"));
    check(
        "destination",
        "reviews/v2",
        "requests",
        f(&da["count"]),
        f(&db["count"]),
    );
    check(
        "destination",
        "reviews/v2",
        "mean_ms",
        f(&da["latency_ms"]["mean"]),
        f(&db["latency_ms"]["mean"]),
    );
    assert!(
        text.starts_with("A: split-80-20 (sim, seed 1)\nB: split-80-20 (sim, seed 2)\n"),
        "{text}"
    );

    let page = std::fs::read_to_string(&html).expect("html written");
    let doc = Html::parse_document(&page);
    assert!(doc.errors.is_empty(), "{:?}", doc.errors);
    let sel = |s: &str| Selector::parse(s).expect("selector");
    assert_eq!(doc.select(&sel("figure svg")).count(), 3);
    let legend: Vec<String> = doc
        .select(&sel("section#split li"))
        .map(|e| e.text().collect())
        .collect();
    assert_eq!(
        legend,
        [
            "reviews/v1 (A)",
            "reviews/v1 (B)",
            "reviews/v2 (A)",
            "reviews/v2 (B)"
        ]
    );
    assert!(!page.contains("http:"));
}
