//! Analysis templates resolved for the rollout that names them. Argo's `AnalysisTemplate` and
//! `ClusterAnalysisTemplate` metrics (`pkg/apis/rollouts/v1alpha1/analysis_types.go`) become
//! the rollout block's [`ArgoMetric`]s, with the run's `args` substituted into
//! `{{args.NAME}}` as Argo does; Flagger's `MetricTemplate` query becomes a custom metric's
//! query, with Flagger's template variables (`{{ namespace }}`, `{{ target }}`,
//! `{{ interval }}`…) substituted. Each Prometheus query is recognised by [`crate::promql`];
//! another provider, or a query the twin does not recognise, can name its twin query with the
//! template annotation `meshtwin.io/query.<metric name>` (a RON `Query`, e.g.
//! `LatencyMs(0.99)`).

use crate::error::ImportError;
use crate::promql::{self, Names};
use crate::walk::Walk;
use crate::yaml::{Node, Pos, Value};
use crate::{Imported, Template};
use proxy_engine::Nanos;
use rollout::condition::Condition;
use rollout::spec::{ArgoMetric, Query, Side};

/// The names that select each version of `host` (in `namespace`) in Istio's metric labels:
/// `workloads` and `services` (stable, canary, both) as each tool deploys them, every service
/// also as its FQDN, and the subsets with their label values from the host's DestinationRule.
pub(crate) fn names(
    imported: &Imported,
    host: &str,
    namespace: &str,
    subsets: [&str; 2],
    workload: [Vec<String>; 3],
    services: [Vec<String>; 3],
) -> Names {
    let fqdn = |s: &str| format!("{s}.{namespace}.{}", crate::import::DOMAIN);
    let service = services.map(|list| {
        list.iter()
            .flat_map(|s| [s.clone(), fqdn(s)])
            .collect::<Vec<_>>()
    });
    let rule =
        (imported.mesh.destination_rules.iter()).find(|r| r.host == fqdn(host) || r.host == host);
    let version = [subsets[0], subsets[1]].map(|subset| {
        let mut ids = vec![subset.to_owned()];
        let labels = rule
            .and_then(|r| r.subsets.iter().find(|s| s.name == subset))
            .map(|s| s.labels.values().cloned().collect::<Vec<_>>());
        ids.extend(labels.unwrap_or_default());
        ids
    });
    let [stable, canary] = version;
    Names {
        workload,
        service,
        version: [stable, canary, Vec::new()],
        app: vec![host.to_owned()],
    }
}

/// An analysis template looked up by kind, namespace and name.
fn find(
    imported: &Imported,
    kinds: &[&str],
    namespace: Option<&str>,
    name: &str,
) -> Option<Template> {
    (imported.templates.iter())
        .find(|t| {
            kinds.contains(&t.origin.kind)
                && t.origin.name == name
                && namespace.is_none_or(|ns| t.origin.namespace == ns)
        })
        .cloned()
}

/// An Argo analysis (a step's `analysis`, the background `analysis`, or blue/green's
/// `prePromotionAnalysis` / `postPromotionAnalysis`) as the rollout names it.
pub(crate) struct ArgoRun<'a> {
    /// The Rollout's file.
    pub(crate) file: &'a str,
    /// The analysis block.
    pub(crate) node: &'a Node,
    /// Its path (`spec.strategy.canary.steps[2].analysis`).
    pub(crate) path: String,
    /// The Rollout (`Rollout default/reviews`).
    pub(crate) object: String,
    /// The Rollout's namespace.
    pub(crate) namespace: &'a str,
    /// Which names select which version.
    pub(crate) names: &'a Names,
    /// Extra keys the block may carry (the background analysis' `startingStep`).
    pub(crate) extra: &'a [&'a str],
    /// Unmodeled fields are errors.
    pub(crate) strict: bool,
}

/// The metrics of an Argo analysis: every template's, args substituted.
pub(crate) fn argo_metrics(
    imported: &mut Imported,
    run: &ArgoRun<'_>,
) -> Result<Vec<ArgoMetric>, ImportError> {
    let (file, node, path) = (run.file, run.node, run.path.as_str());
    let mut walk = Walk::new(file, run.object.clone(), run.strict, &mut imported.notes);
    let Value::Map(entries) = &node.value else {
        return Err(walk.error(node.at, path, "expected a mapping (RolloutAnalysis)"));
    };
    let mut args: Vec<(String, String)> = Vec::new();
    let mut refs: Vec<(Pos, String, bool)> = Vec::new();
    for (key, value) in entries {
        let field = format!("{path}.{}", key.name);
        match key.name.as_str() {
            "templates" => {
                for (i, t) in items(&walk, value, &field)?.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    let name = required(&walk, t, "templateName", &f)?;
                    let cluster =
                        t.get("clusterScope").map(|n| &n.value) == Some(&Value::Bool(true));
                    refs.push((t.at, name.to_owned(), cluster));
                }
            }
            "args" => args = run_args(&walk, value, &field)?,
            "dryRun" | "measurementRetention" | "analysisRunMetadata" => walk.unmodeled(
                key.at,
                &field,
                "the analysis acts on every metric; metadata and retention do not change a \
                 verdict",
            )?,
            other if run.extra.contains(&other) => {}
            other => {
                return Err(walk.error(
                    key.at,
                    &field,
                    format!(
                        "unknown field `{other}` of RolloutAnalysis, expected one of: \
                         templates, args, dryRun, measurementRetention, analysisRunMetadata{}",
                        run.extra
                            .iter()
                            .map(|e| format!(", {e}"))
                            .collect::<String>()
                    ),
                ))
            }
        }
    }
    if refs.is_empty() {
        return Err(walk.error(node.at, path, "missing field `templates`"));
    }
    drop(walk);
    let mut metrics: Vec<ArgoMetric> = Vec::new();
    for (at, name, cluster) in refs {
        let (kinds, namespace): (&[&str], _) = if cluster {
            (&["ClusterAnalysisTemplate"], None)
        } else {
            (&["AnalysisTemplate"], Some(run.namespace))
        };
        let Some(template) = find(imported, kinds, namespace, &name) else {
            return Err(crate::import::invalid(
                file,
                at,
                &format!("{path}.templates"),
                format!(
                    "no {} {name}{} among the documents read",
                    kinds[0],
                    namespace.map_or(String::new(), |ns| format!(" in namespace {ns}"))
                ),
            ));
        };
        for m in template_metrics(imported, &template, &args, run.names, run.strict)? {
            if metrics.iter().any(|o| o.name == m.name) {
                return Err(crate::import::invalid(
                    file,
                    at,
                    &format!("{path}.templates"),
                    format!("two templates define the metric `{}`", m.name),
                ));
            }
            metrics.push(m);
        }
    }
    Ok(metrics)
}

fn items<'n>(walk: &Walk<'_>, node: &'n Node, field: &str) -> Result<&'n [Node], ImportError> {
    match &node.value {
        Value::Seq(items) => Ok(items),
        _ => Err(walk.error(
            node.at,
            field,
            format!("expected a list, found {}", node.kind()),
        )),
    }
}

/// `args: [{name, value}]` of a run; `valueFrom` is refused.
fn run_args(
    walk: &Walk<'_>,
    node: &Node,
    field: &str,
) -> Result<Vec<(String, String)>, ImportError> {
    let mut out = Vec::new();
    for (i, a) in items(walk, node, field)?.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let name = required(walk, a, "name", &f)?;
        if let Some(at) = a.key_at("valueFrom") {
            return Err(walk.error(
                at,
                &format!("{f}.valueFrom"),
                "valueFrom reads the live cluster (pod template hashes, field refs): give the \
                 arg a `value`",
            ));
        }
        if let Some(v) = a.get("value") {
            out.push((name.to_owned(), scalar(walk, v, &format!("{f}.value"))?));
        }
    }
    Ok(out)
}

/// The string field `key` of the mapping `node` (at `field`), which must be there.
fn required<'n>(
    walk: &Walk<'_>,
    node: &'n Node,
    key: &str,
    field: &str,
) -> Result<&'n str, ImportError> {
    (node.get(key).and_then(Node::as_str))
        .ok_or_else(|| walk.error(node.at, field, format!("missing field `{key}` (a string)")))
}

fn scalar(walk: &Walk<'_>, node: &Node, field: &str) -> Result<String, ImportError> {
    match &node.value {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(walk.error(
            node.at,
            field,
            format!("expected a string, found {}", node.kind()),
        )),
    }
}

/// `text` with every `{{args.NAME}}` replaced; anything else in braces is an error, as
/// Argo's templating fails on an unresolved argument.
fn substitute(
    text: &str,
    mut value: impl FnMut(&str) -> Option<String>,
    expected: &str,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` at byte {open} is not closed"))?;
        let key = after[..close].trim();
        let key = key.strip_prefix('.').unwrap_or(key);
        out.push_str(&value(key).ok_or_else(|| {
            format!("`{{{{{key}}}}}` has no value (the template reads {expected})")
        })?);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A template's metrics for a run with `args`.
fn template_metrics(
    imported: &mut Imported,
    template: &Template,
    run_args: &[(String, String)],
    names: &Names,
    strict: bool,
) -> Result<Vec<ArgoMetric>, ImportError> {
    let origin = &template.origin;
    let file = origin.file.as_str();
    let mut walk = Walk::new(file, origin.resource(), strict, &mut imported.notes);
    let doc = &template.doc;
    let spec = doc
        .get("spec")
        .ok_or_else(|| walk.error(doc.at, "spec", "missing field `spec`"))?;
    let mut args: Vec<(String, Option<String>)> = Vec::new();
    let mut metrics = None;
    let Value::Map(entries) = &spec.value else {
        return Err(walk.error(spec.at, "spec", "expected a mapping (AnalysisTemplateSpec)"));
    };
    for (key, value) in entries {
        let field = format!("spec.{}", key.name);
        match key.name.as_str() {
            "metrics" => metrics = Some(items(&walk, value, &field)?),
            "args" => {
                for (i, a) in items(&walk, value, &field)?.iter().enumerate() {
                    let f = format!("{field}[{i}]");
                    let name = required(&walk, a, "name", &f)?;
                    let default = match a.get("value") {
                        Some(v) => Some(scalar(&walk, v, &format!("{f}.value"))?),
                        None => None,
                    };
                    args.push((name.to_owned(), default));
                }
            }
            "dryRun" | "measurementRetention" => {
                walk.unmodeled(key.at, &field, "every metric's verdict counts in the twin")?
            }
            "templates" => {
                return Err(walk.error(
                    key.at,
                    &field,
                    "nested templates are not read: list the templates in the Rollout",
                ))
            }
            other => {
                return Err(walk.error(
                    key.at,
                    &field,
                    format!(
                        "unknown field `{other}` of AnalysisTemplateSpec, expected one of: \
                         metrics, args, dryRun, measurementRetention"
                    ),
                ))
            }
        }
    }
    let metrics =
        metrics.ok_or_else(|| walk.error(spec.at, "spec.metrics", "missing field `metrics`"))?;
    let arg = |key: &str| -> Option<String> {
        let name = key.strip_prefix("args.")?;
        run_args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                args.iter()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, v)| v.clone())
            })
    };
    let mut out = Vec::with_capacity(metrics.len());
    for (i, m) in metrics.iter().enumerate() {
        out.push(metric(
            &mut walk,
            doc,
            m,
            &format!("spec.metrics[{i}]"),
            &arg,
            names,
        )?);
    }
    Ok(out)
}

/// One AnalysisTemplate metric.
fn metric(
    walk: &mut Walk<'_>,
    doc: &Node,
    node: &Node,
    path: &str,
    arg: &dyn Fn(&str) -> Option<String>,
    names: &Names,
) -> Result<ArgoMetric, ImportError> {
    let Value::Map(entries) = &node.value else {
        return Err(walk.error(node.at, path, "expected a mapping (Metric)"));
    };
    let name = required(walk, node, "name", path)?.to_owned();
    let mut m = ArgoMetric {
        name: name.clone(),
        query: Query::SuccessRatio,
        version: Side::Canary,
        route: None,
        window: None,
        interval: None,
        initial_delay: Nanos::ZERO,
        count: None,
        success_condition: None,
        failure_condition: None,
        failure_limit: None,
        inconclusive_limit: None,
        consecutive_error_limit: None,
        consecutive_success_limit: None,
    };
    let mut provider = None;
    for (key, value) in entries {
        let field = format!("{path}.{}", key.name);
        let text = |walk: &Walk<'_>| -> Result<String, ImportError> {
            let raw = scalar(walk, value, &field)?;
            substitute(&raw, arg, "{{args.NAME}}").map_err(|e| walk.error(value.at, &field, e))
        };
        let whole = |walk: &Walk<'_>| -> Result<i64, ImportError> {
            let t = text(walk)?;
            t.parse::<i64>().map_err(|_| {
                walk.error(value.at, &field, format!("`{t}`: expected a whole number"))
            })
        };
        let count = |walk: &Walk<'_>| -> Result<u32, ImportError> {
            let n = whole(walk)?;
            u32::try_from(n).map_err(|_| walk.error(value.at, &field, "expected a number ≥ 0"))
        };
        let duration = |walk: &Walk<'_>| -> Result<Nanos, ImportError> {
            let t = text(walk)?;
            go_duration(&t).map_err(|e| walk.error(value.at, &field, e))
        };
        let condition = |walk: &Walk<'_>| -> Result<Condition, ImportError> {
            Condition::parse(&text(walk)?).map_err(|e| walk.error(value.at, &field, e))
        };
        match key.name.as_str() {
            "name" => {}
            "interval" => m.interval = Some(duration(walk)?),
            "initialDelay" => m.initial_delay = duration(walk)?,
            "count" => m.count = Some(count(walk)?),
            "failureLimit" => {
                let n = whole(walk)?;
                m.failure_limit = Some(i32::try_from(n).map_err(|_| {
                    walk.error(value.at, &field, "expected a whole number (-1 disables)")
                })?);
            }
            "inconclusiveLimit" => m.inconclusive_limit = Some(count(walk)?),
            "consecutiveErrorLimit" => m.consecutive_error_limit = Some(count(walk)?),
            "consecutiveSuccessLimit" => m.consecutive_success_limit = Some(count(walk)?),
            "successCondition" => m.success_condition = Some(condition(walk)?),
            "failureCondition" => m.failure_condition = Some(condition(walk)?),
            "provider" => provider = Some(value),
            other => {
                return Err(walk.error(
                    key.at,
                    &field,
                    format!(
                        "unknown field `{other}` of Metric, expected one of: name, interval, \
                         initialDelay, count, successCondition, failureCondition, \
                         failureLimit, inconclusiveLimit, consecutiveErrorLimit, \
                         consecutiveSuccessLimit, provider"
                    ),
                ))
            }
        }
    }
    let annotated = annotation(walk, doc, &name)?;
    let prometheus = provider.and_then(|p| p.get("prometheus"));
    match (annotated, prometheus) {
        (Some(query), _) => m.query = query,
        (None, Some(p)) => {
            let field = format!("{path}.provider.prometheus.query");
            let q = p
                .get("query")
                .ok_or_else(|| walk.error(p.at, &field, "missing field `query`"))?;
            let raw = scalar(walk, q, &field)?;
            let text =
                substitute(&raw, arg, "{{args.NAME}}").map_err(|e| walk.error(q.at, &field, e))?;
            let r = recognised(walk, q.at, &field, &text, names, &name)?;
            (m.query, m.version, m.window) = (r.query, r.version, Some(r.window));
        }
        (None, None) => {
            let at = provider.map_or(node.at, |p| p.at);
            let kind = provider
                .and_then(|p| match &p.value {
                    Value::Map(e) => e.first().map(|(k, _)| k.name.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "none".into());
            return Err(walk.error(
                at,
                &format!("{path}.provider"),
                format!(
                    "provider `{kind}`: the twin reads Prometheus queries over Istio's metrics; \
                     for another provider, name the twin query with the template annotation \
                     `meshtwin.io/query.{name}` (e.g. \"SuccessRatio\")"
                ),
            ));
        }
    }
    Ok(m)
}

/// The twin query of a PromQL text, its ignored labels reported as warnings.
pub(crate) fn recognised(
    walk: &mut Walk<'_>,
    at: Pos,
    field: &str,
    text: &str,
    names: &Names,
    metric: &str,
) -> Result<promql::Recognised, ImportError> {
    let r = promql::recognise(text, names).map_err(|e| {
        walk.error(
            at,
            field,
            format!("{e}; or name the twin query with the annotation `meshtwin.io/query.{metric}`"),
        )
    })?;
    if !r.ignored.is_empty() {
        walk.warn(
            at,
            field,
            format!(
                "the twin measures every caller: {} ignored",
                r.ignored.join(", ")
            ),
        );
    }
    Ok(r)
}

/// The annotation `meshtwin.io/query.<metric>` of `doc`: the twin query a metric stands for.
pub(crate) fn annotation(
    walk: &Walk<'_>,
    doc: &Node,
    metric: &str,
) -> Result<Option<Query>, ImportError> {
    let key = format!("meshtwin.io/query.{metric}");
    let Some(n) = (doc.get("metadata"))
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(&key))
    else {
        return Ok(None);
    };
    let field = format!("metadata.annotations.{key}");
    let text = n.as_str().ok_or_else(|| {
        walk.error(
            n.at,
            &field,
            "expected a twin query such as \"SuccessRatio\"",
        )
    })?;
    ron::from_str::<Query>(text)
        .map(Some)
        .map_err(|e| walk.error(n.at, &field, format!("not a twin query (SuccessRate, SuccessRatio, ErrorRatio, LatencyMs(0.99), RequestRate, HopErrorRatio, HopSuccessRatio, StatusRatio(503), FlagRatio(\"UO\"), RetryAmplification, HopLatencyMs(0.99)): {e}")))
}

/// A Go duration (`90s`, `1m30s`, `1h`), as Argo's `DurationString`; a bare number is seconds,
/// as a Rollout's `pause.duration` allows.
pub(crate) fn go_duration(text: &str) -> Result<Nanos, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Nanos::from_secs(secs));
    }
    let bad = || format!("`{t}`: expected a duration such as `30s`, `5m` or `1m30s`");
    let mut total = 0u64;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (part, tail) = rest.split_at(digits + unit_len);
        total = Nanos::parse(part)
            .map_err(|_| bad())?
            .0
            .checked_add(total)
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(Nanos(total))
}

/// The Flagger variables of a `MetricTemplate` query.
pub(crate) struct FlaggerVars<'a> {
    /// The Canary's namespace.
    pub(crate) namespace: &'a str,
    /// The Canary's name.
    pub(crate) name: &'a str,
    /// `targetRef.name` (the canary Deployment).
    pub(crate) target: &'a str,
    /// The service name.
    pub(crate) service: &'a str,
    /// The metric's `interval` as written (default `1m`).
    pub(crate) interval: String,
    /// `templateVariables`.
    pub(crate) variables: Vec<(String, String)>,
    /// Which names select which version.
    pub(crate) names: &'a Names,
}

/// The query and window of a Flagger metric's `templateRef` (`{name, namespace}`).
pub(crate) fn flagger_template(
    imported: &mut Imported,
    walk_file: &str,
    reference: &Node,
    path: &str,
    vars: &FlaggerVars<'_>,
    metric: &str,
    strict: bool,
) -> Result<(Query, Nanos), ImportError> {
    let field = format!("{path}.templateRef");
    let name = reference
        .get("name")
        .and_then(Node::as_str)
        .ok_or_else(|| {
            crate::import::invalid(
                walk_file,
                reference.at,
                &field,
                "missing field `name` (a string)",
            )
        })?;
    let namespace = (reference.get("namespace").and_then(Node::as_str)).unwrap_or(vars.namespace);
    let Some(template) = find(imported, &["MetricTemplate"], Some(namespace), name) else {
        return Err(crate::import::invalid(
            walk_file,
            reference.at,
            &field,
            format!("no MetricTemplate {namespace}/{name} among the documents read"),
        ));
    };
    let origin = &template.origin;
    let mut walk = Walk::new(&origin.file, origin.resource(), strict, &mut imported.notes);
    let doc = &template.doc;
    if let Some(q) = annotation(&walk, doc, metric)? {
        return Ok((
            q,
            go_duration(&vars.interval).unwrap_or(Nanos::from_secs(60)),
        ));
    }
    let spec = doc.get("spec").unwrap_or(doc);
    let kind = spec
        .get("provider")
        .and_then(|p| p.get("type"))
        .and_then(Node::as_str)
        .unwrap_or("prometheus");
    if kind != "prometheus" {
        return Err(walk.error(
            spec.get("provider").map_or(spec.at, |p| p.at),
            "spec.provider.type",
            format!(
                "provider `{kind}`: the twin reads Prometheus queries over Istio's metrics; name \
                 the twin query with the annotation `meshtwin.io/query.{metric}`"
            ),
        ));
    }
    let q = spec
        .get("query")
        .ok_or_else(|| walk.error(spec.at, "spec.query", "missing field `query`"))?;
    let raw = scalar(&walk, q, "spec.query")?;
    let r = flagger_query(&mut walk, q.at, "spec.query", &raw, vars, metric)?;
    Ok((r.query, r.window))
}

/// A Flagger query (a template's, or a metric's deprecated inline `query`) with the Canary's
/// variables substituted, recognised; it must measure the canary, as Flagger's `{{ target }}`
/// does.
pub(crate) fn flagger_query(
    walk: &mut Walk<'_>,
    at: Pos,
    field: &str,
    raw: &str,
    vars: &FlaggerVars<'_>,
    metric: &str,
) -> Result<promql::Recognised, ImportError> {
    let value = |key: &str| -> Option<String> {
        match key {
            "namespace" => Some(vars.namespace.to_owned()),
            "name" => Some(vars.name.to_owned()),
            "target" => Some(vars.target.to_owned()),
            "service" => Some(vars.service.to_owned()),
            "interval" => Some(vars.interval.clone()),
            other => {
                let v = other.strip_prefix("variables.")?;
                (vars.variables.iter())
                    .find(|(n, _)| n == v)
                    .map(|(_, x)| x.clone())
            }
        }
    };
    let text = substitute(
        raw,
        value,
        "namespace, name, target, service, interval and variables.NAME",
    )
    .map_err(|e| walk.error(at, field, e))?;
    let r = recognised(walk, at, field, &text, vars.names, metric)?;
    if r.version != Side::Canary {
        return Err(walk.error(
            at,
            field,
            format!(
                "the query measures {}; a Flagger metric checks the canary (`{{{{ target }}}}`)",
                if r.version == Side::Both {
                    "both versions"
                } else {
                    "the primary"
                }
            ),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_argo_writes_them() {
        assert_eq!(go_duration("5m"), Ok(Nanos::from_secs(300)));
        assert_eq!(go_duration("1m30s"), Ok(Nanos::from_secs(90)));
        assert_eq!(go_duration("45"), Ok(Nanos::from_secs(45)));
        assert_eq!(go_duration("1h2m3s"), Ok(Nanos::from_secs(3723)));
        assert!(go_duration("5 minutes").is_err());
        assert!(go_duration("").is_err());
    }

    #[test]
    fn args_are_substituted_and_a_missing_one_is_an_error() {
        let v = |k: &str| (k == "args.service").then(|| "reviews".to_owned());
        assert_eq!(
            substitute("a{{args.service}}b{{ args.service }}", v, "x"),
            Ok("areviewsbreviews".into())
        );
        let e = substitute("{{args.other}}", v, "{{args.NAME}}").expect_err("missing");
        assert!(e.contains("`{{args.other}}` has no value"), "{e}");
        assert!(substitute("{{args.service", v, "x").is_err());
    }
}
