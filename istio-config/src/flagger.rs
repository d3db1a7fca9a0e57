//! Flagger `Canary` documents (`flagger.app/v1beta1`) imported into a scenario's rollout
//! block, so a user can rehearse the rollout they are about to apply. Field meanings and
//! defaults are Flagger's (`pkg/apis/flagger/v1beta1/canary.go`); meshtwin's rollout block
//! mirrors `spec.analysis` field for field. Flagger routes to the Deployments
//! `<target>-primary` and `<target>` through generated services; meshtwin routes to subsets
//! of the target's DestinationRule, named by the annotations `meshtwin.io/stable-subset`
//! (default `primary`) and `meshtwin.io/canary-subset` (default `canary`);
//! `meshtwin.io/start` sets when the new revision is applied (default 0).

use crate::analysis::FlaggerVars;
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
        schema::special("templateVariables", "template_variables"),
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
    let mut queries = Vec::new();
    if let Some(metrics) = analysis.get("metrics") {
        let (list, pending) = metrics_json(&mut walk, metrics, analysis_field)?;
        json.insert("metrics".into(), Json::Array(list));
        queries = pending;
    }
    let mut flagger: FlaggerAnalysis = walk.finish(json, analysis.at, analysis_field)?;
    let annotation = |key: &str| {
        doc.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Node::as_str)
    };
    let stable = annotation("meshtwin.io/stable-subset").unwrap_or("primary");
    let canary_subset = annotation("meshtwin.io/canary-subset").unwrap_or("canary");
    let target = target.and_then(Node::as_str).unwrap_or(host);
    let names = crate::analysis::names(
        imported,
        host,
        &origin.namespace,
        [stable, canary_subset],
        [
            vec![format!("{target}-primary")],
            vec![target.to_owned()],
            Vec::new(),
        ],
        [
            vec![format!("{host}-primary")],
            vec![format!("{host}-canary")],
            vec![host.to_owned()],
        ],
    );
    for q in queries {
        let metric = &mut flagger.metrics[q.index];
        let vars = FlaggerVars {
            namespace: &origin.namespace,
            name: &origin.name,
            target,
            service: host,
            interval: q.interval.clone(),
            variables: q.variables.clone(),
            names: &names,
        };
        let (query, window) = if q.template {
            crate::analysis::flagger_template(
                imported,
                file,
                q.node,
                &q.path,
                &vars,
                &metric.name,
                strict,
            )?
        } else {
            let mut walk = Walk::new(file, origin.resource(), strict, &mut imported.notes);
            let raw = q.node.as_str().ok_or_else(|| {
                walk.error(q.node.at, &format!("{}.query", q.path), "expected a string")
            })?;
            let field = format!("{}.query", q.path);
            let r = crate::analysis::flagger_query(
                &mut walk,
                q.node.at,
                &field,
                raw,
                &vars,
                &metric.name,
            )?;
            (r.query, r.window)
        };
        metric.query = Some(query);
        metric.interval = window;
    }
    let start = start(file, doc)?;
    let spec = RolloutSpec {
        host: host.to_owned(),
        stable: stable.to_owned(),
        canary: canary_subset.to_owned(),
        start,
        strategy: Strategy::Flagger(flagger),
    };
    spec.validate()
        .map_err(|e| crate::import::invalid(file, analysis.at, analysis_field, e.to_string()))?;
    keep(imported, file, doc, spec, origin)
}

/// A custom metric's PromQL, resolved once the Canary's names are known.
struct Pending<'n> {
    /// The metric's index.
    index: usize,
    /// Its `templateRef`, or its inline `query`.
    node: &'n Node,
    template: bool,
    /// The metric's path.
    path: String,
    /// Its `interval` as written (Flagger's `{{ interval }}`).
    interval: String,
    /// Its `templateVariables`.
    variables: Vec<(String, String)>,
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
/// PromQL forms (`templateRef`, `query`) left to resolve.
fn metrics_json<'n>(
    walk: &mut Walk<'_>,
    node: &'n Node,
    analysis: &str,
) -> Result<(Vec<Json>, Vec<Pending<'n>>), ImportError> {
    let Value::Seq(items) = &node.value else {
        return Err(walk.error(
            node.at,
            &format!("{analysis}.metrics"),
            format!("expected a list of CanaryMetric, found {}", node.kind()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{analysis}.metrics[{i}]");
        let mut m: Map<String, Json> = walk.object(item, &METRIC, &path, "")?;
        let reference = match (item.get("templateRef"), item.get("query")) {
            (Some(t), _) => Some((t, true)),
            (None, Some(q)) => Some((q, false)),
            (None, None) => None,
        };
        if let Some((node, template)) = reference {
            let mut variables = Vec::new();
            if let Some(Value::Map(entries)) = item.get("templateVariables").map(|v| &v.value) {
                for (k, v) in entries {
                    let Some(text) = crate::walk::scalar_text(v) else {
                        return Err(walk.error(
                            v.at,
                            &format!("{path}.templateVariables.{}", k.name),
                            "expected a string",
                        ));
                    };
                    variables.push((k.name.clone(), text));
                }
            }
            pending.push(Pending {
                index: i,
                node,
                template,
                path: path.clone(),
                interval: item
                    .get("interval")
                    .and_then(Node::as_str)
                    .unwrap_or("1m")
                    .to_owned(),
                variables,
            });
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
    Ok((out, pending))
}
