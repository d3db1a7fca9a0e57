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
