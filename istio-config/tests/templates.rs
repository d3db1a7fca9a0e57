//! Analysis templates read with the rollout that names them: Argo's AnalysisTemplate and
//! ClusterAnalysisTemplate metrics, Flagger's MetricTemplate queries, and blue/green Rollouts.

use istio_config::{import_text, Imported, Level, Options};
use rollout::spec::{Query, RolloutSpec, Side, Strategy};

fn import(text: &str) -> Result<Imported, String> {
    let mut imported = Imported::default();
    import_text(&mut imported, "rollout.yaml", text, Options::default())
        .map_err(|e| e.to_string())?;
    Ok(imported)
}

/// A rollout block as a scenario file writes it.
fn ron(text: &str) -> RolloutSpec {
    ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES)
        .from_str(text)
        .expect("RON")
}

const RULE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

/// Written before the templates it names: a rollout is read once every document is.
const BLUE_GREEN: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: reviews
  annotations:
    meshtwin.io/stable-subset: v1
    meshtwin.io/canary-subset: v2
    meshtwin.io/preview-match: '[(headers: {"x-preview": Exact("1")})]'
spec:
  template:
    spec: {terminationGracePeriodSeconds: 10}
  strategy:
    blueGreen:
      activeService: reviews
      previewService: reviews-preview
      autoPromotionSeconds: 120
      scaleDownDelaySeconds: 60
      previewReplicaCount: 1
      prePromotionAnalysis:
        templates: [{templateName: preview-errors}]
        args: [{name: preview, value: reviews-preview}]
      postPromotionAnalysis:
        templates: [{templateName: latency, clusterScope: true}]
"#;

const TEMPLATES: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: preview-errors}
spec:
  args: [{name: preview}]
  metrics:
  - name: preview-503s
    interval: 30s
    count: "4"
    failureCondition: result > 0.01
    failureLimit: 0
    consecutiveErrorLimit: 2
    provider:
      prometheus:
        query: >-
          sum(rate(istio_requests_total{reporter="source",destination_service_name="{{args.preview}}",response_code="503"}[30s]))
          / sum(rate(istio_requests_total{reporter="source",destination_service_name="{{args.preview}}"}[30s]))
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: latency}
spec:
  metrics:
  - name: p95
    initialDelay: 1m30s
    interval: 1m
    successCondition: result < 100
    provider:
      prometheus:
        query: histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{destination_app="reviews"}[2m])) by (le))
"#;

#[test]
fn an_argo_blue_green_with_analyses_is_the_ron_block() {
    let imported = import(&format!("{BLUE_GREEN}---\n{RULE}---\n{TEMPLATES}")).expect("imports");
    let (spec, _) = imported.rollout.clone().expect("a rollout");
    let written = ron(r#"(host: "reviews", stable: "v1", canary: "v2",
        strategy: ArgoBlueGreen(
            preview_match: [(headers: {"x-preview": Exact("1")})],
            auto_promotion_seconds: "2m",
            scale_down_delay: "1m",
            termination_grace: "10s",
            pre_promotion_analysis: (metrics: [(
                name: "preview-503s", query: StatusRatio(503), version: Canary, window: "30s",
                interval: "30s", count: 4, failure_condition: "result > 0.01",
                failure_limit: 0, consecutive_error_limit: 2,
            )]),
            post_promotion_analysis: (metrics: [(
                name: "p95", query: LatencyMs(0.95), version: Both, window: "2m",
                interval: "1m", initial_delay: "90s", success_condition: "result < 100",
            )]),
        ))"#);
    assert_eq!(spec, written);
    let warned: Vec<&str> = (imported.notes.iter())
        .filter(|n| n.level == Level::Warning)
        .map(|n| n.field.as_str())
        .collect();
    assert_eq!(warned, ["spec.strategy.blueGreen.previewReplicaCount"]);
    let said = (imported.notes.iter())
        .find(|n| n.field == "spec.strategy.blueGreen")
        .expect("the subsets are said");
    assert!(said.message.contains("subset `v1`"), "{}", said.message);
}

#[test]
fn an_argo_templates_mistakes_point_at_the_template() {
    let all = |templates: &str| import(&format!("{BLUE_GREEN}---\n{RULE}---\n{templates}"));
    // The error is where the query's folded text (`>-`) starts: the next line, at its
    // indentation, in the template's document.
    let whole = format!("{BLUE_GREEN}---\n{RULE}---\n{TEMPLATES}");
    let key = whole.find("query: >-").expect("the query");
    let line = whole[..key].matches('\n').count() + 2;
    let text = whole[key..].lines().nth(1).expect("the query text");
    let col = text.len() - text.trim_start().len() + 1;
    let e = all(&TEMPLATES.replace(
        "response_code=\"503\"",
        "response_code=\"503\",le=\"1\"}[30s])) + up{x=\"",
    ))
    .expect_err("PromQL");
    assert!(
        e.starts_with(&format!("rollout.yaml:{line}:{col}: ")),
        "{e}"
    );
    assert!(
        e.contains("spec.metrics[0].provider.prometheus.query"),
        "{e}"
    );
    assert!(e.contains("meshtwin.io/query.preview-503s"), "{e}");
    // A run arg the template does not declare still reaches `{{args.preview}}`.
    all(&TEMPLATES.replace("  args: [{name: preview}]\n", "")).expect("a run arg is enough");
    let e = import(&format!(
        "{}---\n{RULE}---\n{TEMPLATES}",
        BLUE_GREEN.replace(
            "        args: [{name: preview, value: reviews-preview}]\n",
            ""
        )
    ))
    .expect_err("no value");
    assert!(e.contains("`{{args.preview}}` has no value"), "{e}");
    let e = all(&TEMPLATES.replace(
        "      prometheus:\n        query: histogram",
        "      datadog:\n        query: histogram",
    ))
    .expect_err("datadog");
    assert!(e.contains("provider `datadog`"), "{e}");
    assert!(e.contains("meshtwin.io/query.p95"), "{e}");
    // The annotation names the twin query for a provider the twin cannot read.
    let named = TEMPLATES
        .replace("      prometheus:\n        query: histogram", "      datadog:\n        query: histogram")
        .replace(
            "metadata: {name: latency}",
            "metadata:\n  name: latency\n  annotations: {meshtwin.io/query.p95: \"HopLatencyMs(0.95)\"}",
        );
    let imported = all(&named).expect("annotated");
    let Some((spec, _)) = imported.rollout else {
        panic!("a rollout")
    };
    let Strategy::ArgoBlueGreen(bg) = spec.strategy else {
        panic!("blue/green")
    };
    let post = bg.post_promotion_analysis.expect("post-promotion");
    assert_eq!(post.metrics[0].query, Query::HopLatencyMs(0.95));
    let e = all(&TEMPLATES.replace("destination_app=\"reviews\"", "destination_app=\"ratings\""))
        .expect_err("another service");
    assert!(e.contains("selects neither version"), "{e}");
    let e = import(&format!(
        "{}---\n{RULE}---\n{TEMPLATES}",
        BLUE_GREEN.replace(
            "value: reviews-preview",
            "valueFrom: {podTemplateHashValue: Latest}"
        )
    ))
    .expect_err("valueFrom");
    assert!(e.contains("give the arg a `value`"), "{e}");
    let e = all(&TEMPLATES.replace("    count: \"4\"\n", "    count: four\n")).expect_err("count");
    assert!(
        e.contains("spec.metrics[0].count: `four`: expected a whole number"),
        "{e}"
    );
    let e =
        all(&TEMPLATES.replace("    interval: 30s\n", "    intervall: 30s\n")).expect_err("typo");
    assert!(e.contains("unknown field `intervall` of Metric"), "{e}");
    let e = all(&TEMPLATES.replace("kind: ClusterAnalysisTemplate", "kind: AnalysisTemplate"))
        .expect_err("scope");
    assert!(
        e.contains("no ClusterAnalysisTemplate latency among the documents read"),
        "{e}"
    );
}

const CANARY: &str = r#"apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  analysis:
    interval: 30s
    stepWeight: 10
    metrics:
    - name: latency
      templateRef: {name: latency, namespace: istio-system}
      interval: 2m
      thresholdRange: {max: 500}
    - name: not-found
      interval: 1m
      thresholdRange: {max: 5}
      templateRef: {name: not-found-percentage}
      templateVariables: {code: "404"}
"#;

/// Flagger's documented `MetricTemplate` examples (docs/gitbook/usage/metrics.md).
const METRIC_TEMPLATES: &str = r#"apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: latency, namespace: istio-system}
spec:
  provider: {type: prometheus, address: "http://prometheus.istio-system:9090"}
  query: |
    histogram_quantile(0.99,
      sum(rate(istio_request_duration_milliseconds_bucket{
        reporter="destination",
        destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}"
      }[{{ interval }}])) by (le))
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: not-found-percentage, namespace: test}
spec:
  provider: {type: prometheus}
  query: |
    100 * sum(rate(istio_requests_total{reporter="source",destination_workload="{{ target }}",response_code="{{ variables.code }}"}[{{ interval }}]))
    / sum(rate(istio_requests_total{reporter="source",destination_workload="{{ target }}"}[{{ interval }}]))
"#;

#[test]
fn flagger_metric_templates_read_with_flaggers_variables() {
    let imported = import(&format!("{CANARY}---\n{METRIC_TEMPLATES}"))
        .expect_err("a percentage of a status is not a twin query");
    assert!(
        imported.contains("only a success ratio is read scaled"),
        "{imported}"
    );
    let fixed = METRIC_TEMPLATES.replace("    100 * sum", "    sum");
    let imported = import(&format!("{CANARY}---\n{fixed}")).expect("imports");
    let (spec, _) = imported.rollout.expect("a rollout");
    let Strategy::Flagger(a) = spec.strategy else {
        panic!("Flagger")
    };
    assert_eq!(a.metrics[0].query, Some(Query::LatencyMs(0.99)));
    assert_eq!(a.metrics[0].interval, proxy_engine::Nanos::from_secs(120));
    assert_eq!(a.metrics[1].query, Some(Query::StatusRatio(404)));
    assert_eq!(a.metrics[1].interval, proxy_engine::Nanos::from_secs(60));
    // `{{ target }}-primary` is the primary: not what a Flagger check measures.
    let primary = fixed.replace(
        "destination_workload=~\"{{ target }}\"",
        "destination_workload=~\"{{ target }}-primary\"",
    );
    let e = import(&format!("{CANARY}---\n{primary}")).expect_err("primary");
    assert!(e.contains("the query measures the primary"), "{e}");
    let e = import(&format!(
        "{CANARY}---\n{}",
        fixed.replace("variables.code", "variables.status")
    ))
    .expect_err("no variable");
    assert!(e.contains("`{{variables.status}}` has no value"), "{e}");
    let e = import(&CANARY.replace(
        "{name: latency, namespace: istio-system}",
        "{name: latency}",
    ))
    .expect_err("namespace");
    assert!(e.contains("no MetricTemplate test/latency"), "{e}");
}

#[test]
fn an_argo_canarys_ignored_labels_are_warnings() {
    let yaml = r#"apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  strategy:
    canary:
      trafficRouting:
        istio:
          destinationRule: {name: reviews, stableSubsetName: v1, canarySubsetName: v2}
      steps:
      - setWeight: 50
      - analysis: {templates: [{templateName: errors}]}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: errors}
spec:
  metrics:
  - name: errors
    provider:
      prometheus:
        query: sum(increase(istio_requests_total{reporter="source",source_workload="productpage-v1",destination_version="v2",response_code=~"5.*"}[1m])) / sum(increase(istio_requests_total{reporter="source",source_workload="productpage-v1",destination_version="v2"}[1m]))
"#;
    let imported = import(&format!("{yaml}---\n{RULE}")).expect("imports");
    let warning = (imported.notes.iter())
        .find(|n| n.level == Level::Warning)
        .expect("a warning");
    assert_eq!(warning.object, "AnalysisTemplate default/errors");
    assert!(
        warning
            .message
            .contains(r#"source_workload="productpage-v1" ignored"#),
        "{}",
        warning.message
    );
    let (spec, _) = imported.rollout.expect("a rollout");
    let Strategy::ArgoCanary(c) = spec.strategy else {
        panic!("canary")
    };
    let rollout::spec::ArgoStep::Analysis(a) = &c.steps[1] else {
        panic!("an analysis step")
    };
    assert_eq!(
        (a.metrics[0].query.clone(), a.metrics[0].version),
        (Query::HopErrorRatio, Side::Canary)
    );
}
