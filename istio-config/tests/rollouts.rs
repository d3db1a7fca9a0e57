//! Flagger `Canary` and Argo `Rollout` documents imported into the rollout block.

use istio_config::{import_paths, import_text, Imported, Level, Options};
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn the_canary_yaml_is_the_rollout_written_in_ron() {
    let ron = sim_core::load::load(&repo("scenarios/canary-rollback.ron")).expect("loads");
    let imported = import_paths(
        &[repo("scenarios/istio/canary-rollback")],
        Options::default(),
    )
    .expect("imports");
    let (spec, origin) = imported.rollout.expect("a rollout");
    assert_eq!(Some(spec), ron.rollout);
    assert_eq!(origin.resource(), "Canary default/reviews");
    // `service.port` is how Flagger names the port, nothing to warn about.
    assert!(
        imported.notes.iter().all(|n| n.level == Level::Info),
        "{:?}",
        imported.notes
    );
}

fn import(text: &str) -> Result<Imported, String> {
    let mut imported = Imported::default();
    import_text(&mut imported, "canary.yaml", text, Options::default())
        .map_err(|e| e.to_string())?;
    Ok(imported)
}

const CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  analysis:
    interval: 30s
    stepWeights: [5, 20, 50]
    metrics:
    - name: request-success-rate
      threshold: 99
";

#[test]
fn flagger_defaults_and_names_carry_over() {
    let imported = import(CANARY).expect("imports");
    let (spec, _) = imported.rollout.expect("a rollout");
    assert_eq!(spec.host, "podinfo");
    assert_eq!(
        (spec.stable.as_str(), spec.canary.as_str()),
        ("primary", "canary")
    );
    let rollout::spec::Strategy::Flagger(a) = spec.strategy else {
        panic!("a Flagger strategy");
    };
    assert_eq!(a.interval, proxy_engine::Nanos::from_secs(30));
    assert_eq!(a.step_weights, vec![5, 20, 50]);
    assert_eq!(
        a.threshold, 0,
        "unset: the controller reads 0 as Flagger's 1"
    );
    // The legacy `threshold` of request-success-rate is a minimum.
    assert_eq!(a.metrics[0].threshold_range.min, Some(99.0));
    assert_eq!(a.metrics[0].threshold_range.max, None);
    assert_eq!(a.metrics[0].interval, proxy_engine::Nanos::from_secs(60));
}

#[test]
fn what_the_twin_cannot_rehearse_is_refused_or_warned_about() {
    let e = import(&CANARY.replace(
        "      threshold: 99\n",
        "      templateRef: {name: latency}\n",
    ))
    .expect_err("no template");
    assert!(
        e.starts_with("canary.yaml:11:20: spec.analysis.metrics[0].templateRef: no MetricTemplate default/latency among the documents read"),
        "{e}"
    );
    let e =
        import(&CANARY.replace("spec:\n", "spec:\n  provider: linkerd\n")).expect_err("provider");
    assert!(e.contains("spec.provider: provider `linkerd`"), "{e}");
    let e =
        import(&CANARY.replace("    interval: 30s\n", "    intervall: 30s\n")).expect_err("typo");
    assert!(
        e.starts_with(
            "canary.yaml:7:5: spec.analysis.intervall: unknown field `intervall` of CanaryAnalysis"
        ),
        "{e}"
    );
    let e = import(&CANARY.replace("[5, 20, 50]", "[5, 20, 150]")).expect_err("weights");
    assert!(e.contains("spec.analysis"), "{e}");
    let e = import(&format!("{CANARY}---\n{CANARY}")).expect_err("two rollouts");
    assert!(e.contains("a second rollout"), "{e}");
    let hooks = CANARY.replace(
        "    metrics:\n",
        "    webhooks:\n    - {name: load-test, url: http://flagger-loadtester/}\n    metrics:\n",
    );
    let imported = import(&hooks).expect("warns");
    let warning = imported
        .notes
        .iter()
        .find(|n| n.level == Level::Warning)
        .expect("a warning");
    assert_eq!(warning.field, "spec.analysis.webhooks");
    assert!(warning.message.contains("webhooks are not called"));
}

const RULE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: rollout-destrule}
spec:
  host: reviews
  subsets:
  - {name: stable, labels: {version: v1}}
  - {name: canary, labels: {version: v2}}
---
";

const ROLLOUT: &str = "apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: reviews
  annotations: {meshtwin.io/start: 1m}
spec:
  replicas: 4
  strategy:
    canary:
      canaryService: reviews-canary
      steps:
      - setWeight: 20
      - pause: {duration: 1m}
      - setWeight: 40
      - pause: {duration: 90}
      - setWeight: 60
      - pause: {}
      trafficRouting:
        istio:
          virtualService: {name: reviews-vsvc, routes: [primary]}
          destinationRule:
            name: rollout-destrule
            stableSubsetName: stable
            canarySubsetName: canary
";

#[test]
fn an_argo_canary_is_its_steps_over_the_destination_rule_subsets() {
    let imported = import(&format!("{RULE}{ROLLOUT}")).expect("imports");
    let (spec, origin) = imported.rollout.expect("a rollout");
    assert_eq!(origin.resource(), "Rollout default/reviews");
    // As a scenario file writes it.
    let options = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
    let written: rollout::spec::RolloutSpec = options
        .from_str(
            r#"(host: "reviews", stable: "stable", canary: "canary", start: "1m",
            strategy: ArgoCanary(steps: [
                SetWeight(20), Pause(duration: "1m"), SetWeight(40),
                Pause(duration: "90s"), SetWeight(60), Pause(),
            ]))"#,
        )
        .expect("RON");
    assert_eq!(spec, written);
}

#[test]
fn argo_missing_templates_two_strategies_and_unknown_steps_are_refused_clearly() {
    let e = import(ROLLOUT).expect_err("no rule");
    assert!(
        e.contains("no DestinationRule default/rollout-destrule among the documents read"),
        "{e}"
    );
    let with = |from: &str, to: &str| import(&format!("{RULE}{}", ROLLOUT.replace(from, to)));
    let e = with(
        "      - setWeight: 60\n",
        "      - analysis: {templates: [{templateName: ok}]}\n",
    )
    .expect_err("analysis");
    assert!(
        e.contains("steps[4].analysis.templates: no AnalysisTemplate ok in namespace default"),
        "{e}"
    );
    let e = with(
        "      - setWeight: 60\n",
        "      - setCanaryScale: {replicas: 1}\n",
    )
    .expect_err("scale");
    assert!(e.contains("step `setCanaryScale` is not modeled"), "{e}");
    let e = with(
        "    canary:\n",
        "    blueGreen: {activeService: a}\n    canary:\n",
    )
    .expect_err("two strategies");
    assert!(
        e.contains("spec.strategy: a Rollout has one strategy"),
        "{e}"
    );
    let e = with("setWeight: 40", "setWeight: 140").expect_err("weight");
    assert!(
        e.contains("steps[2].setWeight: expected a percentage from 0 to 100"),
        "{e}"
    );
}
