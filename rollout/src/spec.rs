//! The rollout block of a scenario (RON, snake_case field names after Flagger's `Canary`
//! and Argo Rollouts' `Rollout`). Defaults are the tools' own; [`RolloutSpec::validate`]
//! rejects what the tools would reject or could never progress.

use crate::condition::Condition;
use proxy_engine::config::HttpMatchRequest;
use proxy_engine::Nanos;
use serde::{Deserialize, Serialize};

/// A progressive delivery of one service's new version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// The service whose traffic moves (its VirtualService routes are patched, its
    /// DestinationRule must define both subsets).
    pub host: String,
    /// The subset serving today: Flagger's primary, Argo's stable.
    pub stable: String,
    /// The new version's subset: Flagger's canary, Argo's canary.
    pub canary: String,
    /// When the new revision is applied: the controller's first tick. Default 0.
    #[serde(default)]
    pub start: Nanos,
    /// How the traffic moves.
    pub strategy: Strategy,
}

/// Which tool's semantics drive the rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// Flagger's `Canary.spec.analysis`: canary, A/B testing or blue/green, chosen as Flagger
    /// chooses (`match` and `iterations` → A/B; `iterations` → blue/green; else canary).
    Flagger(FlaggerAnalysis),
    /// Argo Rollouts' `spec.strategy.canary`.
    ArgoCanary(ArgoCanary),
    /// Argo Rollouts' `spec.strategy.blueGreen`.
    ArgoBlueGreen(ArgoBlueGreen),
}

/// Argo Rollouts' blue/green strategy. The active Service is the stable subset until the
/// switch; the preview Service is the canary subset, reached by the requests matching
/// `preview_match` (the testers and smoke tests that call the preview Service).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgoBlueGreen {
    /// Requests that reach the preview (the canary subset) before the switch.
    #[serde(default)]
    pub preview_match: Vec<HttpMatchRequest>,
    /// Switch as soon as the preview is ready (and the pre-promotion analysis passed).
    /// Default true; false pauses before the switch, waiting for a human.
    #[serde(default = "yes")]
    pub auto_promotion_enabled: bool,
    /// Switch this long after the preview is ready, marking a running pre-promotion
    /// analysis Successful.
    #[serde(default)]
    pub auto_promotion_seconds: Option<Nanos>,
    /// How long the old version keeps running after the switch (and after a post-promotion
    /// analysis succeeded): then its instances leave the endpoints. Default 30 s, as Argo's
    /// `scaleDownDelaySeconds`.
    #[serde(default = "thirty_seconds")]
    pub scale_down_delay: Nanos,
    /// How long a scaled-down instance still serves what reaches it before it stops: the
    /// pods' `terminationGracePeriodSeconds`. Default 30 s, as Kubernetes'.
    #[serde(default = "thirty_seconds")]
    pub termination_grace: Nanos,
    /// Runs on the preview before the switch; the switch waits for Successful, Failed or
    /// Error aborts.
    #[serde(default)]
    pub pre_promotion_analysis: Option<AnalysisSpec>,
    /// Runs after the switch; Failed or Error switches back and aborts.
    #[serde(default)]
    pub post_promotion_analysis: Option<AnalysisSpec>,
}

fn yes() -> bool {
    true
}

fn thirty_seconds() -> Nanos {
    Nanos::from_secs(30)
}

/// Flagger's `analysis` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlaggerAnalysis {
    /// The scheduler's tick. Default 60 s; under 10 s it is raised to 10 s, as Flagger does.
    #[serde(default = "default_interval")]
    pub interval: Nanos,
    /// Failed checks (counted over the whole run) that trigger a rollback. Default 1 (0 means 1).
    #[serde(default)]
    pub threshold: u32,
    /// The canary weight at which promotion starts. Default 100 (with `step_weights`: the last
    /// step, at most 100).
    #[serde(default)]
    pub max_weight: u32,
    /// The weight added per successful tick.
    #[serde(default)]
    pub step_weight: u32,
    /// Explicit weights, used when `step_weight` is 0.
    #[serde(default)]
    pub step_weights: Vec<u32>,
    /// The primary weight added per tick while promoting; 0 moves everything at once.
    #[serde(default)]
    pub step_weight_promotion: u32,
    /// Ticks of A/B testing or blue/green.
    #[serde(default)]
    pub iterations: u32,
    /// Requests sent to the canary in A/B testing (with `iterations`).
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Mirror to the canary first (one tick for a canary, the whole run for blue/green).
    #[serde(default)]
    pub mirror: bool,
    /// Percent of requests mirrored (Istio's `mirrorPercentage`). Default 100.
    #[serde(default)]
    pub mirror_weight: Option<u32>,
    /// The checks of each analysis tick, in order.
    #[serde(default)]
    pub metrics: Vec<FlaggerMetric>,
}

fn default_interval() -> Nanos {
    Nanos::from_secs(60)
}

fn default_metric_interval() -> Nanos {
    Nanos::from_secs(60)
}

/// One of Flagger's `analysis.metrics`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlaggerMetric {
    /// `request-success-rate` (percent of non-5xx responses, 0–100) and `request-duration`
    /// (P99 in ms) are Flagger's built-ins; any other name needs a `query`.
    pub name: String,
    /// The range the value is measured over (PromQL's `[1m]`). Default 1 m.
    #[serde(default = "default_metric_interval")]
    pub interval: Nanos,
    /// Bounds the value must stay within.
    #[serde(default)]
    pub threshold_range: ThresholdRange,
    /// What a custom metric measures.
    #[serde(default)]
    pub query: Option<Query>,
    /// Only the hops of this route (as the report names it: `reviews/primary`), for a
    /// callers'-side query; none reads every hop to the canary.
    #[serde(default)]
    pub route: Option<String>,
}

/// Flagger's `thresholdRange`: a value below `min` or above `max` fails the check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRange {
    /// Lowest passing value.
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest passing value.
    #[serde(default)]
    pub max: Option<f64>,
}

/// What a metric measures over the metric's window. The first five read Istio's
/// destination-side telemetry (`reporter="destination"`: what the version's instances
/// answered); the `Hop…`, `Status…`, `Flag…` and `Retry…` ones read the callers' side (the
/// hops their proxies routed to the version, as the report's destination table counts them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Query {
    /// Percent of responses that are not 5xx (0–100), Flagger's `request-success-rate`.
    SuccessRate,
    /// The same as a ratio (0–1), as Argo's Istio examples query it.
    SuccessRatio,
    /// Ratio (0–1) of 5xx responses.
    ErrorRatio,
    /// A latency quantile in ms (`histogram_quantile(q, …)` over Istio's buckets), e.g. 0.99.
    LatencyMs(f64),
    /// Requests per second.
    RequestRate,
    /// Ratio (0–1) of hops to the version that failed (5xx, or no response).
    HopErrorRatio,
    /// Ratio (0–1) of hops to the version whose final status is not 5xx (a hop with no
    /// response counts, as `response_code!~"5.*"` over Istio's source-side metric counts its
    /// `response_code="0"`).
    HopSuccessRatio,
    /// Ratio (0–1) of hops to the version that ended with this status.
    StatusRatio(u16),
    /// Ratio (0–1) of hops to the version that carried this Envoy response flag (`UO`, `UF`,
    /// `URX`…).
    FlagRatio(String),
    /// Tries per hop to the version (retry amplification; 1 without retries).
    RetryAmplification,
    /// A latency quantile (ms) of the hops to the version as their callers saw them.
    HopLatencyMs(f64),
}

impl Query {
    /// Whether it reads the callers' side (the hops their proxies routed), where routes are
    /// seen, rather than the destination's instances.
    pub fn callers_side(&self) -> bool {
        matches!(
            self,
            Query::HopErrorRatio
                | Query::HopSuccessRatio
                | Query::StatusRatio(_)
                | Query::FlagRatio(_)
                | Query::RetryAmplification
                | Query::HopLatencyMs(_)
        )
    }
}

/// Which version a metric measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Side {
    /// The stable (primary) subset.
    Stable,
    /// The canary subset.
    #[default]
    Canary,
    /// Both subsets together: the whole host, as a query that selects the service but no
    /// version reads it. Metrics only; drivers record what each instance is, `Stable` or
    /// `Canary`.
    Both,
}

impl Side {
    /// Whether an instance on side `of` is among this side's (`Both` holds both).
    pub fn holds(self, of: Side) -> bool {
        self == of || self == Side::Both
    }
}

/// Argo Rollouts' canary strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgoCanary {
    /// The steps, in order.
    pub steps: Vec<ArgoStep>,
    /// A background analysis run, from step `starting_step`.
    #[serde(default)]
    pub analysis: Option<BackgroundAnalysis>,
}

/// One of Argo's canary steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ArgoStep {
    /// `setWeight`: the canary's percent of traffic.
    SetWeight(u32),
    /// `pause`: for `duration`, or (none) until promoted by hand — which a twin never does,
    /// so the rollout stays paused.
    Pause(Pause),
    /// An inline analysis run that blocks the steps until it completes: Successful → the next
    /// step, Failed or Error → abort, Inconclusive → paused.
    Analysis(AnalysisSpec),
}

/// A pause step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// How long; none pauses indefinitely.
    #[serde(default)]
    pub duration: Option<Nanos>,
}

/// A background analysis (`strategy.canary.analysis`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackgroundAnalysis {
    /// The step index at which it starts. Default 0.
    #[serde(default)]
    pub starting_step: usize,
    /// Its metrics.
    pub metrics: Vec<ArgoMetric>,
}

/// An analysis run's metrics (an AnalysisTemplate's `metrics`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisSpec {
    /// The metrics, each measured on its own schedule.
    pub metrics: Vec<ArgoMetric>,
}

/// One of an AnalysisTemplate's metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgoMetric {
    /// Its name.
    pub name: String,
    /// What it measures.
    pub query: Query,
    /// Which version. Default the canary.
    #[serde(default)]
    pub version: Side,
    /// Only the hops of this route (as the report names it: `reviews/primary`), for a
    /// callers'-side query; none reads every hop to the version.
    #[serde(default)]
    pub route: Option<String>,
    /// The range each measurement covers (the query's `[5m]`). Default: `interval`, else 1 m.
    #[serde(default)]
    pub window: Option<Nanos>,
    /// Time between measurements; none takes a single measurement.
    #[serde(default)]
    pub interval: Option<Nanos>,
    /// Wait before the first measurement.
    #[serde(default)]
    pub initial_delay: Nanos,
    /// Measurements to take. Unset: 1 without `interval`, unbounded with it.
    #[serde(default)]
    pub count: Option<u32>,
    /// `result OP number` (also `result[0]`), `&&`/`||` of such.
    #[serde(default)]
    pub success_condition: Option<Condition>,
    /// The same grammar; holding means the measurement failed.
    #[serde(default)]
    pub failure_condition: Option<Condition>,
    /// Failed measurements tolerated (the metric fails when there are more). Default 0; -1
    /// disables.
    #[serde(default)]
    pub failure_limit: Option<i32>,
    /// Inconclusive measurements tolerated. Default 0.
    #[serde(default)]
    pub inconclusive_limit: Option<u32>,
    /// Consecutive errors tolerated (a measurement with no data is an error). Default 4.
    #[serde(default)]
    pub consecutive_error_limit: Option<u32>,
    /// Consecutive successes that complete the metric early. Default 0 (off).
    #[serde(default)]
    pub consecutive_success_limit: Option<u32>,
}

/// Why a rollout block cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rollout.{field}: {message}")]
pub struct SpecError {
    /// The field path inside the rollout block.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// Why a destination-side metric cannot have a route.
const ROUTE_NEEDS_HOPS: &str = "a route is seen by the callers' proxies: scope a \
     callers'-side query (HopErrorRatio, HopSuccessRatio, StatusRatio, FlagRatio, \
     RetryAmplification, HopLatencyMs) to it";

/// Flagger's built-in metric names.
pub const FLAGGER_BUILTINS: [&str; 2] = ["request-success-rate", "request-duration"];

impl RolloutSpec {
    /// Checks what the engine-independent parts allow (the mesh-dependent checks — the host,
    /// the subsets — are the scenario checker's).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.stable == self.canary {
            return Err(err("canary", "the canary subset must differ from `stable`"));
        }
        match &self.strategy {
            Strategy::Flagger(a) => a.validate(),
            Strategy::ArgoCanary(c) => c.validate(),
            Strategy::ArgoBlueGreen(b) => {
                let f = "strategy.ArgoBlueGreen";
                for (name, a) in [
                    ("pre_promotion_analysis", &b.pre_promotion_analysis),
                    ("post_promotion_analysis", &b.post_promotion_analysis),
                ] {
                    if let Some(a) = a {
                        validate_metrics(&a.metrics, &format!("{f}.{name}"))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The requests that the routing's `matched_only` applies to: Flagger's A/B `match`, Argo
    /// blue/green's `preview_match`.
    pub fn matches(&self) -> &[HttpMatchRequest] {
        match &self.strategy {
            Strategy::Flagger(a) => &a.matches,
            Strategy::ArgoBlueGreen(b) => &b.preview_match,
            Strategy::ArgoCanary(_) => &[],
        }
    }

    /// The longest window any metric reads (how much history a probe keeps).
    pub fn longest_window(&self) -> Nanos {
        (self.scopes().into_iter())
            .map(|(window, _)| window)
            .max()
            .unwrap_or(Nanos::from_secs(60))
    }

    /// The routes metrics are scoped to, sorted, each once: what the probe keeps apart.
    pub fn routes(&self) -> Vec<String> {
        let mut routes: Vec<String> = (self.scopes().into_iter())
            .filter_map(|(_, route)| route.map(str::to_owned))
            .collect();
        routes.sort();
        routes.dedup();
        routes
    }

    /// Every metric's window and route.
    fn scopes(&self) -> Vec<(Nanos, Option<&str>)> {
        fn argo(m: &ArgoMetric) -> (Nanos, Option<&str>) {
            (m.window(), m.route.as_deref())
        }
        match &self.strategy {
            Strategy::Flagger(a) => (a.metrics.iter())
                .map(|m| (m.interval, m.route.as_deref()))
                .collect(),
            Strategy::ArgoCanary(c) => (c.steps.iter())
                .filter_map(|s| match s {
                    ArgoStep::Analysis(a) => Some(a.metrics.iter()),
                    _ => None,
                })
                .flatten()
                .chain(c.analysis.iter().flat_map(|b| b.metrics.iter()))
                .map(argo)
                .collect(),
            Strategy::ArgoBlueGreen(b) => (b.pre_promotion_analysis.iter())
                .chain(b.post_promotion_analysis.iter())
                .flat_map(|a| a.metrics.iter())
                .map(argo)
                .collect(),
        }
    }
}

impl FlaggerAnalysis {
    fn validate(&self) -> Result<(), SpecError> {
        let f = |name: &str| format!("strategy.Flagger.{name}");
        if self.step_weights.iter().any(|w| *w > 100) || self.max_weight > 100 {
            return Err(err(
                f("step_weights"),
                "weights are percentages: at most 100",
            ));
        }
        if (self.step_weights.windows(2)).any(|w| w[0] >= w[1]) {
            return Err(err(f("step_weights"), "the weights must increase"));
        }
        if self.step_weights.contains(&0) {
            return Err(err(f("step_weights"), "a step weight of 0 never advances"));
        }
        let progressive = self.iterations == 0;
        if progressive && self.step_weight == 0 && self.step_weights.is_empty() {
            return Err(err(
                f("step_weight"),
                "a canary needs `step_weight` or `step_weights` (or `iterations` for A/B \
                 testing and blue/green); with neither Flagger never advances",
            ));
        }
        if self.mirror_weight.is_some_and(|w| w > 100) {
            return Err(err(f("mirror_weight"), "a percentage: at most 100"));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            let builtin = FLAGGER_BUILTINS.contains(&m.name.as_str());
            if !builtin && m.query.is_none() {
                return Err(err(
                    f(&format!("metrics[{i}].query")),
                    format!(
                        "`{}` is not a built-in metric ({}): give it a `query`",
                        m.name,
                        FLAGGER_BUILTINS.join(", ")
                    ),
                ));
            }
            if m.interval == Nanos::ZERO {
                return Err(err(f(&format!("metrics[{i}].interval")), "must be > 0"));
            }
            if let Some(q) = &m.query {
                validate_query(q, &f(&format!("metrics[{i}].query")))?;
            }
            if m.route.is_some() && !m.query.as_ref().is_some_and(Query::callers_side) {
                return Err(err(f(&format!("metrics[{i}].route")), ROUTE_NEEDS_HOPS));
            }
            if m.threshold_range.min.is_none() && m.threshold_range.max.is_none() {
                return Err(err(
                    f(&format!("metrics[{i}].threshold_range")),
                    "give `min`, `max` or both",
                ));
            }
        }
        Ok(())
    }
}

impl ArgoCanary {
    fn validate(&self) -> Result<(), SpecError> {
        for (i, step) in self.steps.iter().enumerate() {
            let field = format!("strategy.ArgoCanary.steps[{i}]");
            match step {
                ArgoStep::SetWeight(w) if *w > 100 => {
                    return Err(err(field, "setWeight is a percentage: at most 100"))
                }
                ArgoStep::Analysis(a) => validate_metrics(&a.metrics, &field)?,
                _ => {}
            }
        }
        if let Some(b) = &self.analysis {
            let field = "strategy.ArgoCanary.analysis";
            if b.starting_step > self.steps.len() {
                return Err(err(
                    format!("{field}.starting_step"),
                    format!("there are {} steps", self.steps.len()),
                ));
            }
            validate_metrics(&b.metrics, field)?;
        }
        Ok(())
    }
}

fn validate_metrics(metrics: &[ArgoMetric], field: &str) -> Result<(), SpecError> {
    if metrics.is_empty() {
        return Err(err(
            format!("{field}.metrics"),
            "an analysis needs a metric",
        ));
    }
    for (i, m) in metrics.iter().enumerate() {
        if m.interval == Some(Nanos::ZERO) {
            return Err(err(format!("{field}.metrics[{i}].interval"), "must be > 0"));
        }
        validate_query(&m.query, &format!("{field}.metrics[{i}].query"))?;
        if m.route.is_some() && !m.query.callers_side() {
            return Err(err(format!("{field}.metrics[{i}].route"), ROUTE_NEEDS_HOPS));
        }
        if let Query::LatencyMs(q) = m.query {
            if !(0.0..=1.0).contains(&q) {
                return Err(err(
                    format!("{field}.metrics[{i}].query"),
                    "the quantile is between 0 and 1 (0.99 for P99)",
                ));
            }
        }
    }
    Ok(())
}

/// A flag name Envoy knows and a quantile within 0–1.
fn validate_query(q: &Query, field: &str) -> Result<(), SpecError> {
    match q {
        Query::FlagRatio(flag) if crate::probe::flag_bit(flag).is_none() => {
            let known: Vec<&str> = (proxy_engine::ResponseFlags::ALL.iter())
                .map(|(_, n)| *n)
                .collect();
            return Err(err(
                field,
                format!(
                    "`{flag}` is not an Envoy response flag ({})",
                    known.join(", ")
                ),
            ));
        }
        Query::LatencyMs(q) | Query::HopLatencyMs(q) if !(0.0..=1.0).contains(q) => {
            return Err(err(field, "the quantile is between 0 and 1 (0.99 for P99)"));
        }
        _ => {}
    }
    Ok(())
}

impl ArgoMetric {
    /// The range each measurement covers.
    pub fn window(&self) -> Nanos {
        self.window
            .or(self.interval)
            .unwrap_or(Nanos::from_secs(60))
    }
}
