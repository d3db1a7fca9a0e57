//! Importing Istio's own samples (copied in `tests/samples`, Apache-2.0, see SOURCE.md there).

use istio_config::{import_paths, Level, Options};
use std::path::PathBuf;

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/samples")
}

#[test]
fn every_sample_imports_and_the_kubernetes_kinds_are_skipped_with_notes() {
    let imported = import_paths(&[samples()], Options::default()).expect("imports");
    for n in &imported.notes {
        println!("{n}");
    }
    assert_eq!(imported.mesh.virtual_services.len(), 17);
    assert_eq!(imported.mesh.destination_rules.len(), 5);
    assert_eq!(imported.mesh.gateways.len(), 3);
    let skipped = imported
        .notes
        .iter()
        .filter(|n| n.level == Level::Info)
        .count();
    assert_eq!(skipped, 6 + 4 + 4, "Deployments, Services, ServiceAccounts");
}

/// The repository's scenario directory.
fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name)
}

#[test]
fn imported_bookinfo_config_is_the_hand_written_bookinfo_mesh() {
    let path = scenario("bookinfo.ron");
    let written = sim_core::load::load(&path).expect("bookinfo.ron loads");
    let imported = import_paths(
        &[
            samples().join("bookinfo-gateway.yaml"),
            samples().join("destination-rule-all.yaml"),
        ],
        Options::default(),
    )
    .expect("imports");
    assert!(imported.notes.is_empty(), "{:?}", imported.notes);
    let text = std::fs::read_to_string(&path).expect("reads");
    let mut from_yaml = written.clone();
    sim_core::load::replace_mesh(
        &path.display().to_string(),
        &text,
        &mut from_yaml,
        imported.mesh,
    )
    .expect("the imported mesh fits the scenario");
    assert_eq!(from_yaml.mesh, written.mesh);
}

#[test]
fn the_ron_written_by_import_reads_back_to_the_same_config() {
    let imported = import_paths(&[samples()], Options::default()).expect("imports");
    let text = istio_config::to_ron::mesh(&imported.mesh).expect("serializes");
    assert!(!text.contains("None"), "defaults are left out");
    let back: proxy_engine::config::MeshConfig =
        sim_core::load::parse_as("mesh.ron", &text).expect("reads back");
    assert_eq!(back, imported.mesh);
}

#[test]
fn hosts_are_expanded_with_the_object_namespace_as_istio_does() {
    let mut imported = istio_config::Imported::default();
    let yaml = "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec:\n  hosts: [reviews, reviews.prod, '*.example.com']\n  http:\n  - mirror: {host: ratings}\n    route:\n    - destination: {host: reviews}\n---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n";
    istio_config::import_text(&mut imported, "t.yaml", yaml, Options::default()).expect("imports");
    let vs = &imported.mesh.virtual_services[0];
    assert_eq!(
        vs.hosts,
        [
            "reviews.shop.svc.cluster.local",
            "reviews.prod",
            "*.example.com"
        ]
    );
    assert_eq!(
        vs.http[0].route[0].destination.host,
        "reviews.shop.svc.cluster.local"
    );
    assert_eq!(
        vs.http[0].mirror.as_ref().map(|m| m.host.as_str()),
        Some("ratings.shop.svc.cluster.local")
    );
    assert_eq!(
        imported.mesh.destination_rules[0].host,
        "reviews.default.svc.cluster.local"
    );
    assert_eq!(
        imported.origins.virtual_services[0].resource(),
        "VirtualService shop/r"
    );
    assert_eq!(imported.origins.destination_rules[0].line, 11);
}

#[test]
fn bad_documents_are_errors_with_their_position() {
    let cases = [
        ("apiVersion: networking.istio.io/v1\nkind: Telemetry\nmetadata: {name: x}\n", "2:7", "unknown kind `Telemetry`"),
        ("apiVersion: networking.istio.io/v2\nkind: VirtualService\n", "1:13", "unknown version"),
        ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: reviews\n", "5:10", "expected a sequence"),
        ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: x}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n    hosts: ['a']\n", "8:5", "duplicate key `hosts`"),
        ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n", "7:24", "exactly one"),
        ("a: [1,\n", "2:1", "YAML syntax"),
        ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec:\n  hosts: [r]\n  http:\n  - timeout: soon\n    route: [{destination: {host: r}}]\n", "7:14", "invalid duration"),
    ];
    for (yaml, at, what) in cases {
        let mut imported = istio_config::Imported::default();
        let err = istio_config::import_text(&mut imported, "t.yaml", yaml, Options::default())
            .expect_err(yaml);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("t.yaml:{at}")),
            "{text} (want {at})"
        );
        assert!(text.contains(what), "{text} (want {what})");
    }
}

#[test]
fn port_level_tls_becomes_the_policy_tls_with_a_warning() {
    let mut imported = istio_config::Imported::default();
    let yaml = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cnn}\nspec:\n  host: edition.cnn.com\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 443}\n      tls: {mode: SIMPLE, sni: edition.cnn.com}\n";
    istio_config::import_text(&mut imported, "t.yaml", yaml, Options::default()).expect("imports");
    let tls = imported.mesh.destination_rules[0]
        .traffic_policy
        .as_ref()
        .and_then(|p| p.tls.as_ref())
        .expect("tls");
    assert_eq!(tls.mode.as_deref(), Some("SIMPLE"));
    assert_eq!(tls.sni.as_deref(), Some("edition.cnn.com"));
    assert_eq!(imported.notes.len(), 1);
    assert!(
        imported.notes[0].message.contains("port 443"),
        "{}",
        imported.notes[0]
    );
}
