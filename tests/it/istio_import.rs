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

#[test]
fn imported_bookinfo_yaml_gives_the_same_report_as_the_hand_written_mesh() {
    let dir = scratch("istio", "bookinfo-report");
    let written = dir.join("written.json");
    let imported = dir.join("imported.json");
    let base = [
        "run",
        "scenarios/bookinfo.ron",
        "--duration",
        "10s",
        "--quiet",
    ];
    let out = meshtwin(&[&base[..], &["--json", &written.display().to_string()]].concat());
    assert!(out.status.success(), "{:?}", text(&out));
    let gateway = sample("bookinfo-gateway.yaml");
    let rules = sample("destination-rule-all.yaml");
    let imported_path = imported.display().to_string();
    let args = [
        &base[..],
        &["--json", &imported_path, "--istio", &gateway, &rules],
    ]
    .concat();
    let out = meshtwin(&args);
    assert!(out.status.success(), "{:?}", text(&out));
    let a = std::fs::read(&written).expect("written report");
    let b = std::fs::read(&imported).expect("imported report");
    assert!(a == b, "the two reports differ");
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
