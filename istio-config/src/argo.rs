//! Argo Rollouts `Rollout` documents (`argoproj.io/v1alpha1`) with a canary strategy over
//! Istio subsets (`trafficRouting.istio.destinationRule`), imported into a scenario's rollout
//! block: the steps `setWeight` and `pause` as Argo runs them
//! (`pkg/apis/rollouts/v1alpha1/types.go`). Analysis runs read AnalysisTemplates' PromQL,
//! which the twin cannot run, so `analysis` steps and background analysis are refused with a
//! pointer to the RON rollout block, where the same metrics are written as twin queries.

use crate::error::ImportError;
use crate::import::invalid;
use crate::yaml::{Node, Value};
use crate::{Imported, Level, Note, Origin};
use proxy_engine::Nanos;
use rollout::spec::{ArgoCanary, ArgoStep, Pause, RolloutSpec, Strategy};

/// Argo's API group.
pub const GROUP: &str = "argoproj.io";

/// Imports the Rollout `doc` into `imported.rollout`.
pub(crate) fn rollout(
    imported: &mut Imported,
    file: &str,
    doc: &Node,
    origin: Origin,
    start: Nanos,
) -> Result<(), ImportError> {
    let spec = doc.get("spec").unwrap_or(doc);
    let strategy = spec.get("strategy");
    if strategy.and_then(|s| s.get("blueGreen")).is_some() {
        return Err(invalid(
            file,
            strategy
                .and_then(|s| s.key_at("blueGreen"))
                .unwrap_or(spec.at),
            "spec.strategy.blueGreen",
            "a blue/green Rollout switches Services, which the twin models as subsets: write it \
             as an ArgoBlueGreen rollout block in the scenario",
        ));
    }
    let Some(canary) = strategy.and_then(|s| s.get("canary")) else {
        return Err(invalid(
            file,
            spec.at,
            "spec.strategy.canary",
            "missing field `canary`",
        ));
    };
    let at = |key: &str| canary.key_at(key).unwrap_or(canary.at);
    if canary.get("analysis").is_some() {
        return Err(invalid(
            file,
            at("analysis"),
            "spec.strategy.canary.analysis",
            "background analysis runs AnalysisTemplates' PromQL, which the twin cannot run: \
             write the rollout block in the scenario with twin queries (SuccessRatio, \
             LatencyMs(q)…)",
        ));
    }
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
                "no DestinationRule {}/{name} among the documents read before this Rollout \
                 (list its file first)",
                origin.namespace
            ),
        ));
    };
    let host = &imported.mesh.destination_rules[index].host;
    let host = host
        .strip_suffix(proxy_engine::hosts::CLUSTER_SUFFIX)
        .and_then(|stem| stem.split_once('.'))
        .map_or(host.as_str(), |(service, _)| service)
        .to_owned();
    let steps = steps(file, canary.get("steps"))?;
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
            analysis: None,
        }),
    };
    spec.validate()
        .map_err(|e| invalid(file, canary.at, "spec.strategy.canary", e.to_string()))?;
    crate::flagger::keep(imported, file, doc, spec, origin)
}

/// `canary.steps`: `setWeight` and `pause` (`duration` as Argo writes it: a number of seconds
/// or a string with a unit); anything else is refused.
fn steps(file: &str, node: Option<&Node>) -> Result<Vec<ArgoStep>, ImportError> {
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
                let duration = match value.get("duration").map(|d| &d.value) {
                    None | Some(Value::Null) => None,
                    Some(Value::Int(s)) if *s >= 0 => Some(Nanos::from_secs(*s as u64)),
                    Some(Value::Str(s)) => {
                        let d = s
                            .parse::<u64>()
                            .map(Nanos::from_secs)
                            .or_else(|_| Nanos::parse(s).map_err(|e| e.to_string()));
                        Some(
                            d.map_err(|e| invalid(file, value.at, &format!("{path}.duration"), e))?,
                        )
                    }
                    Some(_) => {
                        return Err(invalid(
                            file,
                            value.at,
                            &format!("{path}.duration"),
                            "expected seconds or a duration such as `10m`",
                        ))
                    }
                };
                ArgoStep::Pause(Pause { duration })
            }
            ("analysis", _) => {
                return Err(invalid(
                    file,
                    key.at,
                    &path,
                    "an analysis step runs AnalysisTemplates' PromQL, which the twin cannot run: \
                     write the rollout block in the scenario with twin queries",
                ))
            }
            (other, _) => {
                return Err(invalid(
                    file,
                    key.at,
                    &path,
                    format!("step `{other}` is not modeled (meshtwin runs setWeight and pause)"),
                ))
            }
        };
        out.push(step);
    }
    Ok(out)
}
