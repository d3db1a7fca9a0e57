//! `--istio` and `meshtwin import` end to end, on Istio's Bookinfo samples (copied in
//! `istio-config/tests/samples`, Apache-2.0, see SOURCE.md there).

use crate::common::{meshtwin, scratch};
use std::path::PathBuf;

fn sample(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    root.join("istio-config/tests/samples")
        .join(name)
        .display()
        .to_string()
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `base` (a `run` command line) written, then with `--istio istio…`, and asserts the
/// two JSON reports are byte for byte the same; returns the written report's path.
fn same_report(test: &str, base: &[&str], istio: &[&str]) -> PathBuf {
    let dir = scratch("istio", test);
    let written = dir.join("written.json");
    let imported = dir.join("imported.json");
    let out = meshtwin(&[base, &["--json", &written.display().to_string()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let imported_path = imported.display().to_string();
    let args = [base, &["--json", &imported_path, "--istio"], istio].concat();
    let out = meshtwin(&args);
    assert!(out.status.success(), "{:?}", text(&out));
    let a = std::fs::read(&written).expect("written report");
    let b = std::fs::read(&imported).expect("imported report");
    assert!(a == b, "the two reports differ");
    written
}

#[test]
fn imported_bookinfo_yaml_gives_the_same_report_as_the_hand_written_mesh() {
    let base = [
        "run",
        "scenarios/bookinfo.ron",
        "--duration",
        "10s",
        "--quiet",
    ];
    let gateway = sample("bookinfo-gateway.yaml");
    let rules = sample("destination-rule-all.yaml");
    same_report("bookinfo-report", &base, &[&gateway, &rules]);
}

#[test]
fn a_routing_task_from_yaml_routes_as_it_says() {
    let dir = scratch("istio", "jason");
    let json = dir.join("r.json");
    let out = meshtwin(&[
        "run",
        "scenarios/bookinfo.ron",
        "--duration",
        "20s",
        "--quiet",
        "--json",
        &json.display().to_string(),
        "--istio",
        &sample("bookinfo-gateway.yaml"),
        &sample("destination-rule-all.yaml"),
        &sample("virtual-service-reviews-jason-v2-v3.yaml"),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    let count = |name: &str| {
        report["destinations"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == name))
            .and_then(|x| x["count"].as_u64())
            .unwrap_or(0)
    };
    // jason (5/s of 25/s) goes to v2, everyone else to v3, none to v1.
    let (v2, v3) = (count("reviews/v2"), count("reviews/v3"));
    assert_eq!(count("reviews/v1"), 0);
    let n = (v2 + v3) as f64;
    let share = v2 as f64 / n;
    let sd = (0.2 * 0.8 / n).sqrt();
    assert!(
        (share - 0.2).abs() < 4.0 * sd,
        "jason's share {share} of {n}"
    );
}

#[test]
fn a_bad_field_is_an_error_with_file_line_and_column() {
    let dir = scratch("istio", "bad");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n      wieght: 10\n",
    )
    .expect("write");
    let out = meshtwin(&["import", &file.display().to_string()]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("bad.yaml:11:7"), "{err}");
    assert!(err.contains("spec.http[0].route[0].wieght"), "{err}");
    assert!(err.contains("unknown field `wieght`"), "{err}");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n      weight: lots\n",
    )
    .expect("write");
    let out = meshtwin(&["import", &file.display().to_string()]);
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("bad.yaml:11:15"), "{err}");
    assert!(err.contains("spec.http[0].route[0].weight"), "{err}");
}

#[test]
fn unmodeled_fields_warn_and_strict_makes_them_errors() {
    let dir = scratch("istio", "strict");
    let file = dir.join("cors.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata:\n  name: r\n  namespace: shop\nspec:\n  hosts: [reviews]\n  http:\n  - corsPolicy:\n      allowOrigins: [{exact: https://example.com}]\n    route:\n    - destination: {host: reviews}\n",
    )
    .expect("write");
    let out = meshtwin(&["import", &file.display().to_string()]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("cors.yaml:9:5"), "{err}");
    assert!(
        err.contains("VirtualService shop/r: spec.http[0].corsPolicy"),
        "{err}"
    );
    assert!(
        stdout.contains("reviews.shop.svc.cluster.local"),
        "{stdout}"
    );
    let out = meshtwin(&["import", "--strict", &file.display().to_string()]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--strict"));
}

#[test]
fn a_mesh_error_in_imported_yaml_names_the_yaml_object() {
    let out = meshtwin(&[
        "validate",
        "scenarios/bookinfo.ron",
        "--istio",
        &sample("bookinfo-gateway.yaml"),
        &sample("virtual-service-all-v1.yaml"),
    ]);
    let (_, err) = text(&out);
    // No DestinationRule defines the subsets the routes name.
    assert!(!out.status.success());
    assert!(err.contains("virtual-service-all-v1.yaml:"), "{err}");
    assert!(err.contains("VirtualService default/"), "{err}");
    let out = meshtwin(&[
        "validate",
        "scenarios/bookinfo.ron",
        "--istio",
        &sample("bookinfo-gateway.yaml"),
        &sample("virtual-service-all-v1.yaml"),
        &sample("destination-rule-all.yaml"),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn a_flagger_canary_from_yaml_makes_the_same_decisions_as_the_rollout_in_ron() {
    let base = ["run", "scenarios/canary-rollback.ron", "--quiet"];
    let written = same_report("flagger", &base, &["scenarios/istio/canary-rollback/"]);
    let dir = scratch("istio", "flagger");
    // And the YAML is what decides: with a threshold of 5 the two failed checks do not roll
    // the canary back.
    let yaml = std::fs::read_to_string("scenarios/istio/canary-rollback/reviews-canary.yaml")
        .expect("canary yaml");
    let lenient = dir.join("lenient");
    std::fs::create_dir_all(&lenient).expect("dir");
    std::fs::write(
        lenient.join("canary.yaml"),
        yaml.replace("threshold: 2", "threshold: 5"),
    )
    .expect("write");
    std::fs::copy(
        "scenarios/istio/canary-rollback/reviews-destination-rule.yaml",
        lenient.join("dr.yaml"),
    )
    .expect("copy");
    let json = dir.join("lenient.json").display().to_string();
    let lenient = lenient.display().to_string();
    let out = meshtwin(&[&base[..], &["--json", &json, "--istio", &lenient]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let outcome = |path: &str| {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("report")).expect("json");
        v["rollout"]["outcome"].as_str().map(str::to_owned)
    };
    assert_eq!(
        outcome(&written.display().to_string()).as_deref(),
        Some("rolled_back")
    );
    assert_eq!(outcome(&json).as_deref(), Some("running"));
}

#[test]
fn an_argo_rollout_with_analysis_templates_from_yaml_makes_the_same_decisions_as_in_ron() {
    let base = ["run", "scenarios/argo-canary-steps.ron", "--quiet"];
    let written = same_report("argo", &base, &["scenarios/istio/argo-canary-steps/"]);
    // The template's PromQL is what is measured: with a P99 bound of 5 ms (v2 answers in
    // ~30 ms), every background measurement fails and the 4th exceeds failureLimit 3.
    let dir = scratch("istio", "argo");
    let strict = dir.join("strict");
    std::fs::create_dir_all(&strict).expect("dir");
    let from = PathBuf::from("scenarios/istio/argo-canary-steps");
    for name in ["reviews-routing.yaml", "reviews-rollout.yaml"] {
        std::fs::copy(from.join(name), strict.join(name)).expect("copy");
    }
    let templates =
        std::fs::read_to_string(from.join("analysis-templates.yaml")).expect("templates");
    assert!(templates.contains("result < 250"));
    std::fs::write(
        strict.join("analysis-templates.yaml"),
        templates.replace("result < 250", "result < 5"),
    )
    .expect("write");
    let json = dir.join("strict.json").display().to_string();
    let strict = strict.display().to_string();
    let out = meshtwin(&[&base[..], &["--json", &json, "--istio", &strict]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let report = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("report")).expect("json")
    };
    let (ok, bad) = (report(&written.display().to_string()), report(&json));
    assert_eq!(ok["rollout"]["outcome"], "promoted");
    assert_eq!(bad["rollout"]["outcome"], "rolled_back");
    let decisions = bad["rollout"]["decisions"].as_array().expect("decisions");
    let failed: Vec<&serde_json::Value> = decisions
        .iter()
        .flat_map(|d| d["checks"].as_array().into_iter().flatten())
        .filter(|c| c["metric"] == "p99-latency" && c["verdict"] == "Failed")
        .collect();
    assert_eq!(failed.len(), 4, "failureLimit 3 fails on the 4th failure");
    let last = decisions.last().expect("a decision");
    assert_eq!(last["canary_weight"], 0);
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("failed (4) > failureLimit (3)")),
        "{last}"
    );
}

#[test]
fn import_services_turns_the_deployments_into_a_starting_scenario_that_validates() {
    let dir = scratch("istio", "services");
    let out_path = dir.join("bookinfo.ron").display().to_string();
    let out = meshtwin(&[
        "import",
        &sample("bookinfo.yaml"),
        &sample("destination-rule-reviews.yaml"),
        "--services",
        "-o",
        &out_path,
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let s = sim_core::load::load(std::path::Path::new(&out_path)).expect("the scenario loads");
    let versions = |svc: &str| -> Vec<(String, u32)> {
        s.services[svc]
            .versions
            .iter()
            .map(|(v, spec)| (v.clone(), spec.instances))
            .collect()
    };
    assert_eq!(s.services.len(), 4);
    assert_eq!(
        versions("reviews"),
        [("v1".into(), 1), ("v2".into(), 1), ("v3".into(), 1)]
    );
    assert_eq!(versions("details"), [("v1".into(), 1)]);
    assert_eq!(s.mesh.destination_rules[0].host, "reviews");
    let out = meshtwin(&["validate", &out_path]);
    assert!(out.status.success(), "{:?}", text(&out));
    // Without Deployments there is nothing to model.
    let out = meshtwin(&["import", &sample("bookinfo-gateway.yaml"), "--services"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("no apps/v1 Deployment"),
        "{:?}",
        text(&out)
    );
}
