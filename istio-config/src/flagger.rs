//! Flagger `Canary` documents (`flagger.app/v1beta1`) imported into a scenario's rollout
//! block, so a user can rehearse the rollout they are about to apply. Field meanings and
//! defaults are Flagger's (`pkg/apis/flagger/v1beta1/canary.go`); meshtwin's rollout block
//! mirrors `spec.analysis` field for field. Flagger routes to the Deployments
//! `<target>-primary` and `<target>` through generated services; meshtwin routes to subsets
//! of the target's DestinationRule, named by the annotations `meshtwin.io/stable-subset`
//! (default `primary`) and `meshtwin.io/canary-subset` (default `canary`);
//! `meshtwin.io/start` sets when the new revision is applied (default 0).

use crate::error::ImportError;
use crate::schema::{self, Message};
use crate::walk::Walk;
use crate::yaml::{Node, Value};
use crate::Imported;
use rollout::spec::{FlaggerAnalysis, RolloutSpec, Strategy};
use serde_json::{Map, Value as Json};

/// Flagger's API group.
pub const GROUP: &str = "flagger.app";

/// The Canary fields (`CanarySpec`).
static CANARY: Message = Message {
    name: "CanarySpec",
    fields: &[
        schema::special("targetRef", "target_ref"),
        schema::special("service", "service"),
        schema::special("analysis", "analysis"),
        schema::special("canaryAnalysis", "canary_analysis"),
        schema::special("provider", "provider"),
        schema::special("skipAnalysis", "skip_analysis"),
        schema::skip(
            "autoscalerRef",
            "autoscaler_ref",
            "instances are the scenario's",
        ),
        schema::skip(
            "ingressRef",
            "ingress_ref",
            "meshtwin models the Istio provider",
        ),
        schema::skip(
            "upstreamRef",
            "upstream_ref",
            "meshtwin models the Istio provider",
        ),
        schema::skip(
            "progressDeadlineSeconds",
            "progress_deadline_seconds",
            "instances start as the scenario says",
        ),
        schema::skip(
            "revertOnDeletion",
            "revert_on_deletion",
            "nothing is deleted in a run",
        ),
        schema::skip("suspend", "suspend", "a run is not suspended"),
        schema::skip(
            "metricsServer",
            "metrics_server",
            "metrics come from the twin",
        ),
    ],
};

/// `CanaryAnalysis`.
static ANALYSIS: Message = Message {
    name: "CanaryAnalysis",
    fields: &[
        schema::plain("interval", "interval"),
        schema::plain("threshold", "threshold"),
        schema::plain("maxWeight", "max_weight"),
        schema::plain("stepWeight", "step_weight"),
        schema::plain("stepWeights", "step_weights"),
        schema::plain("stepWeightPromotion", "step_weight_promotion"),
        schema::plain("iterations", "iterations"),
        schema::matches("match", "match"),
        schema::plain("mirror", "mirror"),
        schema::plain("mirrorWeight", "mirror_weight"),
        schema::special("metrics", "metrics"),
        schema::skip("webhooks", "webhooks", "webhooks are not called"),
        schema::skip("alerts", "alerts", "alerts are not sent"),
        schema::skip(
            "sessionAffinity",
            "session_affinity",
            "cookie session affinity is not modeled",
        ),
        schema::skip(
            "primaryReadyThreshold",
            "primary_ready_threshold",
            "instances are ready as the scenario says",
        ),
        schema::skip(
            "canaryReadyThreshold",
            "canary_ready_threshold",
            "instances are ready as the scenario says",
        ),
    ],
};

/// `CanaryMetric`.
static METRIC: Message = Message {
    name: "CanaryMetric",
    fields: &[
        schema::plain("name", "name"),
        schema::plain("interval", "interval"),
        schema::plain("thresholdRange", "threshold_range"),
        schema::special("threshold", "threshold"),
        schema::special("templateRef", "template_ref"),
        schema::special("query", "query"),
        schema::skip(
            "templateVariables",
            "template_variables",
            "metric templates are not read",
        ),
    ],
};

/// Imports the Canary `doc` (named `name` in `namespace`) into `imported.rollout`.
pub(crate) fn canary(
    imported: &mut Imported,
    file: &str,
    doc: &Node,
    origin: crate::Origin,
    strict: bool,
) -> Result<(), ImportError> {
    let empty = Node {
        value: Value::Map(Vec::new()),
        at: doc.at,
    };
    let spec = doc.get("spec").unwrap_or(&empty);
    let mut walk = Walk::new(file, origin.resource(), strict, &mut imported.notes);
    walk.object(spec, &CANARY, "spec", "")?;
    if let Some(p) = spec.get("provider").and_then(Node::as_str) {
        if p != "istio" {
            return Err(walk.error(
                spec.get("provider").map_or(spec.at, |n| n.at),
                "spec.provider",
                format!("provider `{p}`: meshtwin models the `istio` provider"),
            ));
        }
    }
    if let Some(n) = spec.get("skipAnalysis") {
        if n.value == Value::Bool(true) {
            return Err(walk.error(
                n.at,
                "spec.skipAnalysis",
                "skipAnalysis: true promotes without a rollout to rehearse; remove it",
            ));
        }
    }
    let target = spec.get("targetRef").and_then(|t| t.get("name"));
    let service = spec.get("service").and_then(|s| s.get("name"));
    let Some(host) = service.or(target).and_then(Node::as_str) else {
        return Err(walk.error(
            spec.at,
            "spec.targetRef.name",
            "missing field `targetRef.name`",
        ));
    };
    if let Some(Value::Map(entries)) = spec.get("service").map(|s| &s.value) {
        for (key, _) in entries {
            if !matches!(
                key.name.as_str(),
                "name" | "port" | "portName" | "targetPort" | "portDiscovery" | "appProtocol"
            ) {
                let field = format!("spec.service.{}", key.name);
                walk.unmodeled(
                    key.at,
                    &field,
                    "Flagger writes it into the VirtualService it generates; meshtwin patches the \
                     mesh config's own routes for the host",
                )?;
            }
        }
    }
    let (analysis_field, analysis) = match (spec.get("analysis"), spec.get("canaryAnalysis")) {
        (Some(a), _) => ("spec.analysis", a),
        (None, Some(a)) => ("spec.canaryAnalysis", a),
        (None, None) => {
            return Err(walk.error(spec.at, "spec.analysis", "missing field `analysis`"))
        }
    };
    let mut json = walk.object(analysis, &ANALYSIS, analysis_field, "")?;
    if let Some(metrics) = analysis.get("metrics") {
        json.insert(
            "metrics".into(),
            Json::Array(metrics_json(&mut walk, metrics, analysis_field)?),
        );
    }
    let flagger: FlaggerAnalysis = walk.finish(json, analysis.at, analysis_field)?;
    let annotation = |key: &str| {
        doc.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Node::as_str)
    };
    let start = start(file, doc)?;
    let spec = RolloutSpec {
        host: host.to_owned(),
        stable: annotation("meshtwin.io/stable-subset")
            .unwrap_or("primary")
            .to_owned(),
        canary: annotation("meshtwin.io/canary-subset")
            .unwrap_or("canary")
            .to_owned(),
        start,
        strategy: Strategy::Flagger(flagger),
    };
    spec.validate()
        .map_err(|e| walk.error(analysis.at, analysis_field, e.to_string()))?;
    keep(imported, file, doc, spec, origin)
}

/// The `meshtwin.io/start` annotation of `doc`: when the new revision is applied (default 0).
pub(crate) fn start(file: &str, doc: &Node) -> Result<proxy_engine::Nanos, ImportError> {
    let value = doc
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("meshtwin.io/start"));
    match value {
        None => Ok(proxy_engine::Nanos::ZERO),
        Some(n) => n
            .as_str()
            .ok_or_else(|| "expected a duration such as `1m`".to_owned())
            .and_then(|s| proxy_engine::Nanos::parse(s).map_err(|e| e.to_string()))
            .map_err(|e| {
                crate::import::invalid(file, n.at, "metadata.annotations.meshtwin.io/start", e)
            }),
    }
}

/// Keeps `spec` as the import's rollout; a second one is an error (a scenario has one).
pub(crate) fn keep(
    imported: &mut Imported,
    file: &str,
    doc: &Node,
    spec: RolloutSpec,
    origin: crate::Origin,
) -> Result<(), ImportError> {
    if let Some((_, first)) = &imported.rollout {
        return Err(crate::import::invalid(
            file,
            doc.at,
            "kind",
            format!(
                "a second rollout; a scenario has one, and {} ({}:{}) is already imported",
                first.resource(),
                first.file,
                first.line
            ),
        ));
    }
    imported.rollout = Some((spec, origin));
    Ok(())
}

/// `analysis.metrics`: each metric's table fields, its legacy `threshold` read as Flagger
/// reads it (a minimum for `request-success-rate`, a maximum for `request-duration`), and the
/// PromQL forms (`templateRef`, `query`) refused: the twin cannot run PromQL.
fn metrics_json(
    walk: &mut Walk<'_>,
    node: &Node,
    analysis: &str,
) -> Result<Vec<Json>, ImportError> {
    let Value::Seq(items) = &node.value else {
        return Err(walk.error(
            node.at,
            &format!("{analysis}.metrics"),
            format!("expected a list of CanaryMetric, found {}", node.kind()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{analysis}.metrics[{i}]");
        let mut m: Map<String, Json> = walk.object(item, &METRIC, &path, "")?;
        for key in ["templateRef", "query"] {
            if let Some(at) = item.key_at(key) {
                return Err(walk.error(
                    at,
                    &format!("{path}.{key}"),
                    "a PromQL metric cannot run in the twin; write it in the scenario's rollout \
                     block with a `query` (SuccessRate, ErrorRatio, LatencyMs(q)…)",
                ));
            }
        }
        if let Some(n) = item.get("threshold") {
            let name = item.get("name").and_then(Node::as_str).unwrap_or("");
            let bound = match name {
                "request-success-rate" => "min",
                "request-duration" => "max",
                _ => {
                    return Err(walk.error(
                        n.at,
                        &format!("{path}.threshold"),
                        "the legacy `threshold` is read for the built-in metrics only; use \
                         thresholdRange",
                    ))
                }
            };
            let range = m
                .entry("threshold_range")
                .or_insert_with(|| Json::Object(Map::new()));
            if let Json::Object(r) = range {
                r.entry(bound).or_insert(crate::walk::plain(n));
            }
        }
        out.push(Json::Object(m));
    }
    Ok(out)
}
