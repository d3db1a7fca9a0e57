//! The HTML report (`--html`): parsed with an HTML parser, it is one self-contained page (no
//! script, no external URL), has a chart in every chart section with axes described in units
//! and a legend naming the series, tables that agree with the JSON, and the same bytes for the
//! same seed.

use proxy_engine::Nanos;
use reports::{Report, RunInfo};
use scraper::{Html, Selector};
use std::path::PathBuf;

fn report(name: &str, seed: u64) -> Report {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let mut s = sim_core::load(&file).unwrap_or_else(|e| panic!("{e}"));
    s.duration = s.duration.min(Nanos::from_secs(20));
    let m = sim_core::run(&s, seed, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let info = RunInfo {
        scenario: s.name.clone().unwrap_or_default(),
        seed,
        duration_ns: s.duration.0,
        mode: "sim",
    };
    Report::new(&info, &m)
}

fn select(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn texts(doc: &Html, selector: &str) -> Vec<String> {
    doc.select(&select(selector))
        .map(|e| e.text().collect::<String>())
        .collect()
}

#[test]
fn the_page_is_self_contained_with_a_chart_per_section() {
    // retry-storm has errors, retries and overflows from 10 s on, so every chart has data.
    let r = report("retry-storm.ron", 1);
    let page = reports::html::render(&r);
    let doc = Html::parse_document(&page);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    for tag in ["script", "link", "img", "iframe", "object", "embed"] {
        assert_eq!(doc.select(&select(tag)).count(), 0, "a <{tag}> in the page");
    }
    assert!(!page.contains("http:") && !page.contains("https:") && !page.contains("url("));
    let charts = [
        ("latency", 1, "latency (ms)"),
        ("split", 1, "requests/s (hops)"),
        ("errors", 2, "responses/s"),
        ("resilience", 1, "events/s"),
        ("distribution", 1, "latency (ms)"),
    ];
    for (section, count, y_desc) in charts {
        let svgs = select(&format!("section#{section} figure svg"));
        let found: Vec<_> = doc.select(&svgs).collect();
        assert_eq!(found.len(), count, "charts in section {section}");
        for svg in found {
            let labels: String = svg.text().collect::<Vec<_>>().join("|");
            assert!(
                labels.contains(y_desc),
                "{section}: y axis {y_desc} in {labels}"
            );
            let x_desc = if section == "distribution" {
                "percentile"
            } else {
                "time since start (s)"
            };
            assert!(labels.contains(x_desc), "{section}: x axis in {labels}");
        }
    }
    // Legends name the series drawn.
    let legend = texts(&doc, "section#split ul.legend li");
    let destinations: Vec<String> = r.destinations.iter().map(|d| d.name.clone()).collect();
    assert_eq!(legend, destinations);
    let flags = texts(&doc, "section#errors figure:nth-of-type(2) ul.legend li");
    let mut seen: Vec<String> = r.totals.by_flag.keys().cloned().collect();
    seen.sort();
    assert_eq!(flags, seen);
    // The summary's first row is the JSON's totals; one instance row per instance.
    let first = texts(&doc, "section#summary tbody tr:first-child td");
    assert_eq!(first[2], r.totals.count.to_string());
    assert_eq!(
        doc.select(&select("section#instances tbody tr")).count(),
        r.instances.len()
    );
}

#[test]
fn same_seed_same_bytes_another_seed_other_bytes() {
    let a = reports::html::render(&report("split-80-20.ron", 4));
    let b = reports::html::render(&report("split-80-20.ron", 4));
    let c = reports::html::render(&report("split-80-20.ron", 5));
    assert!(a == b, "same seed, different HTML");
    assert!(a != c, "another seed, same HTML");
}

#[test]
fn a_quiet_run_says_so_instead_of_drawing_empty_charts() {
    // split-80-20 has no failure and no resilience event.
    let page = reports::html::render(&report("split-80-20.ron", 1));
    let doc = Html::parse_document(&page);
    let empty = texts(&doc, "p.empty");
    assert!(empty.iter().any(|t| t == "No request failed."), "{empty:?}");
    assert!(
        empty
            .iter()
            .any(|t| t.starts_with("No retry, overflow or ejection")),
        "{empty:?}"
    );
    assert_eq!(doc.select(&select("section#latency svg")).count(), 1);
}

#[test]
fn a_rollout_gets_its_section_with_two_charts_and_the_decisions() {
    // Run whole: the rollout starts at 1 m.
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/canary-mirror.ron");
    let s = sim_core::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let m = sim_core::run(&s, s.seed, &mut |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let info = RunInfo {
        scenario: "canary-mirror".into(),
        seed: s.seed,
        duration_ns: s.duration.0,
        mode: "sim",
    };
    let r = Report::new(&info, &m);
    let doc = Html::parse_document(&reports::html::render(&r));
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    let svgs: Vec<_> = doc.select(&select("section#rollout figure svg")).collect();
    assert_eq!(svgs.len(), 2, "weights and shares");
    let axes: String = svgs[0].text().collect::<Vec<_>>().join("|");
    assert!(
        axes.contains("weight (%)") && axes.contains("time since start (s)"),
        "{axes}"
    );
    let legend = texts(&doc, "section#rollout figure:nth-of-type(1) ul.legend li");
    assert!(
        legend
            .iter()
            .any(|l| l.starts_with("mirrored to the canary")),
        "{legend:?}"
    );
    // One table row per decision, as in the JSON.
    let rows = doc.select(&select("section#rollout tbody tr")).count();
    let decisions = r.rollout.as_ref().map_or(0, |x| x.decisions.len());
    assert_eq!(rows, decisions);
    assert!(decisions >= 4);
}
