//! Argo Rollouts `Rollout` documents (`argoproj.io/v1alpha1`), imported into a scenario's
//! rollout block as Argo runs them (`pkg/apis/rollouts/v1alpha1/types.go`):
//!
//! - a canary over Istio subsets (`trafficRouting.istio.destinationRule`): the steps
//!   `setWeight`, `pause` and `analysis`, and a background `analysis` from `startingStep`;
//! - a blue/green: `activeService` is the stable subset and `previewService` the new one,
//!   named by the annotations `meshtwin.io/stable-subset` (default `stable`) and
//!   `meshtwin.io/canary-subset` (default `canary`) since the twin switches subsets where
//!   Argo switches a Service's selector; `meshtwin.io/host` names the host (default the
//!   active Service) and `meshtwin.io/preview-match` (a RON list of `HttpMatchRequest`) the
//!   requests that reach the preview.
//!
//! Analyses read their AnalysisTemplates (see [`crate::analysis`]). `meshtwin.io/start` sets
//! when the new revision is applied (default 0).

use crate::analysis::{self, ArgoRun};
use crate::error::ImportError;
use crate::import::invalid;
use crate::promql::Names;
use crate::walk::Walk;
use crate::yaml::{Node, Value};
use crate::{Imported, Level, Note, Origin};
use proxy_engine::config::HttpMatchRequest;
use proxy_engine::Nanos;
use rollout::spec::{
    AnalysisSpec, ArgoBlueGreen, ArgoCanary, ArgoStep, BackgroundAnalysis, Pause, RolloutSpec,
    Strategy,
};

/// Argo's API group.
pub const GROUP: &str = "argoproj.io";

/// What the parts of one Rollout's import share.
struct Ctx<'a> {
    file: &'a str,
    origin: &'a Origin,
    names: Names,
    strict: bool,
}

impl<'a> Ctx<'a> {
    /// The context of Rollout `origin` over `host`'s `subsets` (stable, canary), whose
    /// versions Argo also names by `services` (stable, canary): the Rollout's name is the
    /// workload of both versions, the host names both.
    fn new(
        imported: &Imported,
        file: &'a str,
        origin: &'a Origin,
        host: &str,
        subsets: [&str; 2],
        services: [Vec<String>; 2],
        strict: bool,
    ) -> Ctx<'a> {
        let [stable, canary] = services;
        Ctx {
            file,
            names: analysis::names(
                imported,
                host,
                &origin.namespace,
                subsets,
                [Vec::new(), Vec::new(), vec![origin.name.clone()]],
                [stable, canary, vec![host.to_owned()]],
            ),
            origin,
            strict,
        }
    }

    /// The metrics of the analysis block `node` at `path`.
    fn analysis(
        &self,
        imported: &mut Imported,
        node: &Node,
        path: String,
        extra: &[&str],
    ) -> Result<Vec<rollout::spec::ArgoMetric>, ImportError> {
        analysis::argo_metrics(
            imported,
            &ArgoRun {
                file: self.file,
                node,
                path,
                object: self.origin.resource(),
                namespace: &self.origin.namespace,
                names: &self.names,
                extra,
                strict: self.strict,
            },
        )
    }
}

/// Imports the Rollout `doc` into `imported.rollout`.
pub(crate) fn rollout(
    imported: &mut Imported,
    file: &str,
    doc: &Node,
    origin: Origin,
    start: Nanos,
    strict: bool,
) -> Result<(), ImportError> {
    let spec = doc.get("spec").unwrap_or(doc);
    let strategy = spec.get("strategy");
    let bg = strategy.and_then(|s| s.get("blueGreen"));
    if let (Some(bg), Some(_)) = (bg, strategy.and_then(|s| s.get("canary"))) {
        return Err(invalid(
            file,
            bg.at,
            "spec.strategy",
            "a Rollout has one strategy: `canary` or `blueGreen`, not both",
        ));
    }
    if let Some(bg) = bg {
        return blue_green(imported, file, doc, bg, origin, start, strict);
    }
    let Some(canary) = strategy.and_then(|s| s.get("canary")) else {
        return Err(invalid(
            file,
            spec.at,
            "spec.strategy",
            "missing field `canary` or `blueGreen`",
        ));
    };
    let at = |key: &str| canary.key_at(key).unwrap_or(canary.at);
    let rule = canary
        .get("trafficRouting")
        .and_then(|t| t.get("istio"))
        .and_then(|i| i.get("destinationRule"));
    let Some(rule) = rule else {
        return Err(invalid(
            file,
            canary.at,
            "spec.strategy.canary.trafficRouting.istio.destinationRule",
            "missing: meshtwin shifts traffic between the subsets of a DestinationRule \
             (`destinationRule: {name, stableSubsetName, canarySubsetName}`)",
        ));
    };
    let field = |key: &str| -> Result<&str, ImportError> {
        rule.get(key).and_then(Node::as_str).ok_or_else(|| {
            invalid(
                file,
                rule.at,
                &format!("spec.strategy.canary.trafficRouting.istio.destinationRule.{key}"),
                format!("missing field `{key}` (a string)"),
            )
        })
    };
    let (name, stable, canary_subset) = (
        field("name")?,
        field("stableSubsetName")?,
        field("canarySubsetName")?,
    );
    let found = (imported.origins.destination_rules.iter())
        .position(|o| o.name == name && o.namespace == origin.namespace);
    let Some(index) = found else {
        return Err(invalid(
            file,
            rule.at,
            "spec.strategy.canary.trafficRouting.istio.destinationRule.name",
            format!(
                "no DestinationRule {}/{name} among the documents read",
                origin.namespace
            ),
        ));
    };
    let host = short(&imported.mesh.destination_rules[index].host);
    let service = |key: &str| {
        (canary.get(key).and_then(Node::as_str))
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default()
    };
    let services = [service("stableService"), service("canaryService")];
    let ctx = Ctx::new(
        imported,
        file,
        &origin,
        &host,
        [stable, canary_subset],
        services,
        strict,
    );
    let steps = steps(imported, &ctx, canary.get("steps"))?;
    let background = match canary.get("analysis") {
        None => None,
        Some(node) => {
            let path = "spec.strategy.canary.analysis".to_owned();
            let starting_step = match node.get("startingStep").map(|n| &n.value) {
                None => 0,
                Some(Value::Int(n)) if *n >= 0 => *n as usize,
                Some(_) => {
                    return Err(invalid(
                        file,
                        node.key_at("startingStep").unwrap_or(node.at),
                        &format!("{path}.startingStep"),
                        "expected a step index ≥ 0",
                    ))
                }
            };
            let metrics = ctx.analysis(imported, node, path, &["startingStep"])?;
            Some(BackgroundAnalysis {
                starting_step,
                metrics,
            })
        }
    };
    for key in [
        "canaryService",
        "stableService",
        "maxSurge",
        "maxUnavailable",
    ] {
        if canary.get(key).is_some() {
            imported.notes.push(Note {
                level: Level::Info,
                file: file.to_owned(),
                at: at(key),
                object: origin.resource(),
                field: format!("spec.strategy.canary.{key}"),
                message: "not needed: the twin routes by subset and keeps the instances the \
                          scenario declares"
                    .into(),
            });
        }
    }
    let spec = RolloutSpec {
        host,
        stable: stable.to_owned(),
        canary: canary_subset.to_owned(),
        start,
        strategy: Strategy::ArgoCanary(ArgoCanary {
            steps,
            analysis: background,
        }),
    };
    spec.validate()
        .map_err(|e| invalid(file, canary.at, "spec.strategy.canary", e.to_string()))?;
    crate::flagger::keep(imported, file, doc, spec, origin)
}

/// The service name of a host (`reviews.default.svc.cluster.local` → `reviews`).
fn short(host: &str) -> String {
    host.strip_suffix(proxy_engine::hosts::CLUSTER_SUFFIX)
        .and_then(|stem| stem.split_once('.'))
        .map_or(host, |(service, _)| service)
        .to_owned()
}

/// `canary.steps`: `setWeight`, `pause` (`duration` as Argo writes it: a number of seconds or
/// a string with units) and `analysis`; anything else is refused.
fn steps(
    imported: &mut Imported,
    ctx: &Ctx<'_>,
    node: Option<&Node>,
) -> Result<Vec<ArgoStep>, ImportError> {
    let file = ctx.file;
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let Value::Seq(items) = &node.value else {
        return Err(invalid(
            file,
            node.at,
            "spec.strategy.canary.steps",
            format!("expected a list of steps, found {}", node.kind()),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.strategy.canary.steps[{i}]");
        let Value::Map(entries) = &item.value else {
            return Err(invalid(file, item.at, &path, "expected a step (a mapping)"));
        };
        let [(key, value)] = entries.as_slice() else {
            return Err(invalid(
                file,
                item.at,
                &path,
                "expected exactly one step kind",
            ));
        };
        let path = format!("{path}.{}", key.name);
        let step = match (key.name.as_str(), &value.value) {
            ("setWeight", Value::Int(w)) if (0..=100).contains(w) => ArgoStep::SetWeight(*w as u32),
            ("setWeight", _) => {
                return Err(invalid(
                    file,
                    value.at,
                    &path,
                    "expected a percentage from 0 to 100",
                ))
            }
            ("pause", Value::Map(_) | Value::Null) => {
                let duration = match value.get("duration") {
                    None
                    | Some(Node {
                        value: Value::Null, ..
                    }) => None,
                    Some(d) => {
                        let text = match &d.value {
                            Value::Int(s) if *s >= 0 => s.to_string(),
                            Value::Str(s) => s.clone(),
                            _ => String::new(),
                        };
                        Some(
                            analysis::go_duration(&text)
                                .map_err(|e| invalid(file, d.at, &format!("{path}.duration"), e))?,
                        )
                    }
                };
                ArgoStep::Pause(Pause { duration })
            }
            ("analysis", _) => ArgoStep::Analysis(AnalysisSpec {
                metrics: ctx.analysis(imported, value, path.clone(), &[])?,
            }),
            (other, _) => {
                return Err(invalid(
                    file,
                    key.at,
                    &path,
                    format!(
                        "step `{other}` is not modeled (meshtwin runs setWeight, pause and \
                         analysis)"
                    ),
                ))
            }
        };
        out.push(step);
    }
    Ok(out)
}

/// A blue/green Rollout.
fn blue_green(
    imported: &mut Imported,
    file: &str,
    doc: &Node,
    bg: &Node,
    origin: Origin,
    start: Nanos,
    strict: bool,
) -> Result<(), ImportError> {
    let path = "spec.strategy.blueGreen";
    let annotation = |key: &str| {
        doc.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
    };
    let text = |key: &str| annotation(key).and_then(Node::as_str);
    let active = bg
        .get("activeService")
        .and_then(Node::as_str)
        .ok_or_else(|| {
            invalid(
                file,
                bg.at,
                &format!("{path}.activeService"),
                "missing field `activeService` (a string)",
            )
        })?;
    let preview = bg.get("previewService").and_then(Node::as_str);
    let host = text("meshtwin.io/host").unwrap_or(active).to_owned();
    let stable = text("meshtwin.io/stable-subset").unwrap_or("stable");
    let canary = text("meshtwin.io/canary-subset").unwrap_or("canary");
    let preview_match: Vec<HttpMatchRequest> = match annotation("meshtwin.io/preview-match") {
        None => Vec::new(),
        Some(n) => n
            .as_str()
            .ok_or_else(|| "expected a string".to_owned())
            .and_then(|t| ron::from_str(t).map_err(|e| e.to_string()))
            .map_err(|e| {
                invalid(
                    file,
                    n.at,
                    "metadata.annotations.meshtwin.io/preview-match",
                    format!("a RON list of HttpMatchRequest, e.g. `[(headers: {{\"x-preview\": Exact(\"1\")}})]`: {e}"),
                )
            })?,
    };
    let services = [
        vec![active.to_owned()],
        preview.map(|p| vec![p.to_owned()]).unwrap_or_default(),
    ];
    let ctx = Ctx::new(
        imported,
        file,
        &origin,
        &host,
        [stable, canary],
        services,
        strict,
    );
    let mut spec = ArgoBlueGreen {
        preview_match,
        auto_promotion_enabled: true,
        auto_promotion_seconds: None,
        scale_down_delay: Nanos::from_secs(30),
        termination_grace: Nanos::from_secs(30),
        pre_promotion_analysis: None,
        post_promotion_analysis: None,
    };
    let Value::Map(entries) = &bg.value else {
        return Err(invalid(
            file,
            bg.at,
            path,
            "expected a mapping (BlueGreenStrategy)",
        ));
    };
    for (key, value) in entries {
        let field = format!("{path}.{}", key.name);
        let seconds = || match value.value {
            Value::Int(s) if s >= 0 => Ok(Nanos::from_secs(s as u64)),
            _ => Err(invalid(
                file,
                value.at,
                &field,
                "expected seconds (a whole number ≥ 0)",
            )),
        };
        match key.name.as_str() {
            "activeService" | "previewService" => {}
            "autoPromotionEnabled" => match value.value {
                Value::Bool(b) => spec.auto_promotion_enabled = b,
                _ => return Err(invalid(file, value.at, &field, "expected true or false")),
            },
            "autoPromotionSeconds" => spec.auto_promotion_seconds = Some(seconds()?),
            "scaleDownDelaySeconds" => spec.scale_down_delay = seconds()?,
            "prePromotionAnalysis" => {
                spec.pre_promotion_analysis = Some(AnalysisSpec {
                    metrics: ctx.analysis(imported, value, field, &[])?,
                })
            }
            "postPromotionAnalysis" => {
                spec.post_promotion_analysis = Some(AnalysisSpec {
                    metrics: ctx.analysis(imported, value, field, &[])?,
                })
            }
            "previewReplicaCount"
            | "scaleDownDelayRevisionLimit"
            | "abortScaleDownDelaySeconds"
            | "antiAffinity"
            | "activeMetadata"
            | "previewMetadata" => Walk::new(file, origin.resource(), strict, &mut imported.notes)
                .unmodeled(key.at, &field, "instances are the scenario's")?,
            other => {
                return Err(invalid(
                    file,
                    key.at,
                    &field,
                    format!(
                        "unknown field `{other}` of BlueGreenStrategy, expected one of: \
                         activeService, previewService, autoPromotionEnabled, \
                         autoPromotionSeconds, scaleDownDelaySeconds, prePromotionAnalysis, \
                         postPromotionAnalysis, previewReplicaCount, \
                         scaleDownDelayRevisionLimit, abortScaleDownDelaySeconds, \
                         antiAffinity, activeMetadata, previewMetadata"
                    ),
                ))
            }
        }
    }
    // The old version's pods drain for their own grace period once scaled down.
    let grace = ["spec", "template", "spec", "terminationGracePeriodSeconds"]
        .iter()
        .try_fold(doc, |n, key| n.get(key));
    if let Some(g) = grace {
        spec.termination_grace = match g.value {
            Value::Int(s) if s >= 0 => Nanos::from_secs(s as u64),
            _ => {
                return Err(invalid(
                    file,
                    g.at,
                    "spec.template.spec.terminationGracePeriodSeconds",
                    "expected seconds (a whole number ≥ 0)",
                ))
            }
        };
    }
    imported.notes.push(Note {
        level: Level::Info,
        file: file.to_owned(),
        at: bg.at,
        object: origin.resource(),
        field: path.to_owned(),
        message: format!(
            "the active Service is subset `{stable}` and the preview subset `{canary}` of \
             {host} (annotations meshtwin.io/stable-subset, meshtwin.io/canary-subset); {}",
            if spec.preview_match.is_empty() {
                "no request reaches the preview before the switch (annotation \
                 meshtwin.io/preview-match)"
            } else {
                "the requests of meshtwin.io/preview-match reach the preview"
            }
        ),
    });
    let spec = RolloutSpec {
        host,
        stable: stable.to_owned(),
        canary: canary.to_owned(),
        start,
        strategy: Strategy::ArgoBlueGreen(spec),
    };
    spec.validate()
        .map_err(|e| invalid(file, bg.at, path, e.to_string()))?;
    crate::flagger::keep(imported, file, doc, spec, origin)
}
