//! A parameter sweep's plan and results: the grid of settings × seeds, one row of metrics per
//! run, and per point (one combination of settings) each metric's spread across seeds. The
//! files a sweep writes (`sweep.json`, `runs.csv`, `summary.csv`, `sweep.html`) are made from
//! a [`Sweep`] alone, so a sweep run on one machine and one merged from shards give the same
//! bytes.
//!
//! Run numbering: points in grid order (the first axis varies slowest), and within a point the
//! seeds in order; run `r` is point `r / seeds`, seed index `r % seeds`. Shard `k` of `n`
//! (1-based) holds the runs with `r % n == k - 1`, so every shard gets a share of every point.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use thiserror::Error;

/// Version of the `sweep.json` layout.
pub const SWEEP_SCHEMA: u32 = 1;

/// One swept setting: a scenario path and the values it takes (RON text, as written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// The scenario path (`services.backend.versions.v1.instances`).
    pub path: String,
    /// Its values in order.
    pub values: Vec<String>,
}

/// What a sweep runs. Two shards belong to one sweep when their plans are equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The scenario's name.
    pub scenario: String,
    /// FNV-1a (64 bit, hex) of the scenario file's text: shards of a changed file do not merge.
    pub scenario_digest: String,
    /// The swept settings; the grid is their product.
    pub axes: Vec<Axis>,
    /// The seeds every point runs with.
    pub seeds: Vec<u64>,
    /// The metrics recorded per run (gate queries: `p99_ms`, `success_rate{route=api}`…).
    pub metrics: Vec<String>,
}

/// One run of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Run number.
    pub run: usize,
    /// Point number.
    pub point: usize,
    /// The seed.
    pub seed: u64,
    /// The point's value of each axis.
    pub values: Vec<String>,
}

/// A shard: part `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Which part, from 1.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl Shard {
    /// Parses `K/N` (1 ≤ K ≤ N).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text}: expected K/N with 1 <= K <= N, e.g. 1/4");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether run `run` belongs to this shard.
    pub fn holds(&self, run: usize) -> bool {
        run % self.count == self.index - 1
    }
}

impl Plan {
    /// Number of points (combinations of axis values).
    pub fn points(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.points() * self.seeds.len()
    }

    /// The axis values of point `point` (the first axis varies slowest).
    pub fn point_values(&self, point: usize) -> Vec<String> {
        let mut rest = point;
        let mut values = vec![String::new(); self.axes.len()];
        for (slot, axis) in values.iter_mut().zip(&self.axes).rev() {
            let n = axis.values.len().max(1);
            *slot = axis.values.get(rest % n).cloned().unwrap_or_default();
            rest /= n;
        }
        values
    }

    /// Run `run`.
    pub fn run(&self, run: usize) -> RunSpec {
        let n = self.seeds.len().max(1);
        let point = run / n;
        RunSpec {
            run,
            point,
            seed: self.seeds.get(run % n).copied().unwrap_or_default(),
            values: self.point_values(point),
        }
    }

    /// The runs of `shard` (all of them for `None`), in order.
    pub fn runs_of(&self, shard: Option<Shard>) -> Vec<RunSpec> {
        (0..self.runs())
            .filter(|r| shard.is_none_or(|s| s.holds(*r)))
            .map(|r| self.run(r))
            .collect()
    }
}

/// One run's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    /// Run number.
    pub run: usize,
    /// Point number.
    pub point: usize,
    /// The seed.
    pub seed: u64,
    /// The point's value of each axis.
    pub values: Vec<String>,
    /// Each metric of the plan; `null` where the run has none (no request on that route).
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// A metric's spread across a point's seeds (`null`s left out; every figure `None` when none
/// is left).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    /// Runs with a value.
    pub n: usize,
    /// Mean.
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1 in the denominator; 0 for one run).
    pub sd: Option<f64>,
    /// Smallest.
    pub min: Option<f64>,
    /// Median (the mean of the middle two for an even count).
    pub median: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Spread {
    /// The spread of `values`, in the order given (sums run in that order: same input, same
    /// bits).
    pub fn of(values: &[f64]) -> Spread {
        let n = values.len();
        if n == 0 {
            return Spread {
                n,
                mean: None,
                sd: None,
                min: None,
                median: None,
                max: None,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Spread {
            n,
            mean: Some(mean),
            sd: Some(sd),
            min: sorted.first().copied(),
            median: Some(median),
            max: sorted.last().copied(),
        }
    }
}

/// One point's summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSummary {
    /// Point number.
    pub point: usize,
    /// Its value of each axis.
    pub values: Vec<String>,
    /// Each metric's spread across the seeds.
    pub metrics: BTreeMap<String, Spread>,
}

/// A sweep's results (`sweep.json`): the plan, the runs done, and (when every run is there)
/// the per-point summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// `SWEEP_SCHEMA`.
    pub schema: u32,
    /// What was run.
    pub plan: Plan,
    /// The shard these runs are, or `None` for a whole sweep.
    pub shard: Option<Shard>,
    /// The runs, by run number.
    pub runs: Vec<RunResult>,
    /// Per point, when the sweep is whole; empty for a shard.
    pub points: Vec<PointSummary>,
}

/// Shards that cannot be merged, or a file that is not a sweep.
#[derive(Debug, Error, PartialEq)]
pub enum SweepError {
    /// The shards come from different plans.
    #[error("{0}")]
    Mismatch(String),
    /// Runs are missing or given twice.
    #[error("{0}")]
    Coverage(String),
}

impl Sweep {
    /// A whole sweep from all its runs (any order), with the per-point summary.
    pub fn whole(plan: Plan, mut runs: Vec<RunResult>) -> Result<Sweep, SweepError> {
        runs.sort_by_key(|r| r.run);
        check_coverage(&plan, &runs, None)?;
        let points = summarize(&plan, &runs);
        Ok(Sweep {
            schema: SWEEP_SCHEMA,
            plan,
            shard: None,
            runs,
            points,
        })
    }

    /// The results of one shard.
    pub fn shard(plan: Plan, shard: Shard, mut runs: Vec<RunResult>) -> Result<Sweep, SweepError> {
        runs.sort_by_key(|r| r.run);
        check_coverage(&plan, &runs, Some(shard))?;
        Ok(Sweep {
            schema: SWEEP_SCHEMA,
            plan,
            shard: Some(shard),
            runs,
            points: Vec::new(),
        })
    }

    /// Joins shards (or whole sweeps) of one plan into the whole sweep.
    pub fn merge(parts: Vec<Sweep>) -> Result<Sweep, SweepError> {
        let mut parts = parts.into_iter();
        let first = parts
            .next()
            .ok_or_else(|| SweepError::Coverage("nothing to merge".into()))?;
        let plan = first.plan;
        let mut runs = first.runs;
        for part in parts {
            if part.plan != plan {
                return Err(SweepError::Mismatch(plan_difference(&plan, &part.plan)));
            }
            runs.extend(part.runs);
        }
        Sweep::whole(plan, runs)
    }

    /// `sweep.json`.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// `runs.csv`: one row per run (run, point, seed, each axis, each metric).
    pub fn runs_csv(&self) -> String {
        let mut out = String::new();
        let mut header = vec!["run".to_owned(), "point".into(), "seed".into()];
        header.extend(self.plan.axes.iter().map(|a| a.path.clone()));
        header.extend(self.plan.metrics.iter().cloned());
        csv_row(&mut out, &header);
        for r in &self.runs {
            let mut row = vec![r.run.to_string(), r.point.to_string(), r.seed.to_string()];
            row.extend(r.values.iter().cloned());
            for m in &self.plan.metrics {
                row.push(number(r.metrics.get(m).copied().flatten()));
            }
            csv_row(&mut out, &row);
        }
        out
    }

    /// `summary.csv`: one row per point and metric (the spread across seeds).
    pub fn summary_csv(&self) -> String {
        let mut out = String::new();
        let mut header = vec!["point".to_owned()];
        header.extend(self.plan.axes.iter().map(|a| a.path.clone()));
        header.extend(["metric", "n", "mean", "sd", "min", "median", "max"].map(String::from));
        csv_row(&mut out, &header);
        for p in &self.points {
            for m in &self.plan.metrics {
                let Some(s) = p.metrics.get(m) else { continue };
                let mut row = vec![p.point.to_string()];
                row.extend(p.values.iter().cloned());
                row.push(m.clone());
                row.push(s.n.to_string());
                row.extend([s.mean, s.sd, s.min, s.median, s.max].map(number));
                csv_row(&mut out, &row);
            }
        }
        out
    }
}

/// Every run of the plan (or of the shard) present once, and nothing else.
fn check_coverage(plan: &Plan, runs: &[RunResult], shard: Option<Shard>) -> Result<(), SweepError> {
    let expected = plan.runs_of(shard);
    for pair in runs.windows(2) {
        if pair[0].run == pair[1].run {
            return Err(SweepError::Coverage(format!(
                "run {} is given twice (two shards overlap?)",
                pair[0].run
            )));
        }
    }
    let have: Vec<usize> = runs.iter().map(|r| r.run).collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|s| have.binary_search(&s.run).is_err())
        .map(|s| s.run.to_string())
        .collect();
    if !missing.is_empty() {
        let shown = missing
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = missing.len().saturating_sub(10);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(SweepError::Coverage(format!(
            "{} of {} runs missing (runs {shown}{more}): is a shard's directory left out?",
            missing.len(),
            expected.len()
        )));
    }
    if let Some(extra) = runs
        .iter()
        .find(|r| expected.binary_search_by_key(&r.run, |s| s.run).is_err())
    {
        return Err(SweepError::Coverage(format!(
            "run {} is not part of the plan",
            extra.run
        )));
    }
    for (r, spec) in runs.iter().zip(&expected) {
        if r.point != spec.point || r.seed != spec.seed || r.values != spec.values {
            return Err(SweepError::Mismatch(format!(
                "run {} does not match the plan (point {}, seed {})",
                r.run, spec.point, spec.seed
            )));
        }
    }
    Ok(())
}

/// Each point's spread of each metric, over its runs in seed order.
fn summarize(plan: &Plan, runs: &[RunResult]) -> Vec<PointSummary> {
    (0..plan.points())
        .map(|point| {
            let of_point: Vec<&RunResult> = runs.iter().filter(|r| r.point == point).collect();
            let metrics = plan
                .metrics
                .iter()
                .map(|m| {
                    let values: Vec<f64> = of_point
                        .iter()
                        .filter_map(|r| r.metrics.get(m).copied().flatten())
                        .collect();
                    (m.clone(), Spread::of(&values))
                })
                .collect();
            PointSummary {
                point,
                values: plan.point_values(point),
                metrics,
            }
        })
        .collect()
}

/// Says how two plans differ.
fn plan_difference(a: &Plan, b: &Plan) -> String {
    let what = if a.scenario_digest != b.scenario_digest {
        "the scenario file differs"
    } else if a.axes != b.axes {
        "the --set values differ"
    } else if a.seeds != b.seeds {
        "the seeds differ"
    } else if a.metrics != b.metrics {
        "the metrics differ"
    } else {
        "the scenario name differs"
    };
    format!("the shards are not of one sweep: {what}")
}

/// A CSV field list, RFC 4180 quoting where needed.
fn csv_row(out: &mut String, fields: &[String]) {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect();
    let _ = writeln!(out, "{}", quoted.join(","));
}

/// A number as CSV writes it (shortest form that reads back the same; empty for none).
fn number(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// The hex digest of a scenario file's text.
pub fn digest(text: &str) -> String {
    format!("{:016x}", proxy_engine::hash::fnv1a(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            scenario: "s".into(),
            scenario_digest: digest("x"),
            axes: vec![
                Axis {
                    path: "a".into(),
                    values: vec!["1".into(), "2".into()],
                },
                Axis {
                    path: "b".into(),
                    values: vec!["x".into(), "y".into(), "z".into()],
                },
            ],
            seeds: vec![7, 8],
            metrics: vec!["m".into()],
        }
    }

    #[test]
    fn runs_enumerate_the_grid_first_axis_slowest() {
        let p = plan();
        assert_eq!((p.points(), p.runs()), (6, 12));
        assert_eq!(p.point_values(0), ["1", "x"]);
        assert_eq!(p.point_values(2), ["1", "z"]);
        assert_eq!(p.point_values(3), ["2", "x"]);
        let r = p.run(7);
        assert_eq!((r.point, r.seed), (3, 8));
    }

    #[test]
    fn shards_partition_the_runs() {
        let p = plan();
        let mut all: Vec<usize> = (1..=5)
            .flat_map(|k| p.runs_of(Some(Shard { index: k, count: 5 })))
            .map(|r| r.run)
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..12).collect::<Vec<_>>());
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "4", "a/b", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spread_is_the_sample_statistics() {
        let s = Spread::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, Some(5.0));
        // Sum of squared deviations 32 over n - 1 = 7.
        assert_eq!(s.sd, Some((32.0f64 / 7.0).sqrt()));
        assert_eq!((s.min, s.median, s.max), (Some(2.0), Some(4.5), Some(9.0)));
        assert_eq!(Spread::of(&[3.0]).sd, Some(0.0));
        assert_eq!(Spread::of(&[]).mean, None);
    }

    #[test]
    fn merge_needs_every_run_once() {
        let p = plan();
        let result = |spec: RunSpec| RunResult {
            run: spec.run,
            point: spec.point,
            seed: spec.seed,
            values: spec.values,
            metrics: BTreeMap::from([("m".to_owned(), Some(spec.run as f64))]),
        };
        let shard = |k| {
            let s = Shard { index: k, count: 2 };
            Sweep::shard(
                p.clone(),
                s,
                p.runs_of(Some(s)).into_iter().map(result).collect(),
            )
            .expect("shard")
        };
        let whole = Sweep::whole(p.clone(), p.runs_of(None).into_iter().map(result).collect())
            .expect("whole");
        assert_eq!(
            Sweep::merge(vec![shard(2), shard(1)]).expect("merges"),
            whole
        );
        assert!(Sweep::merge(vec![shard(1)]).is_err());
        assert!(Sweep::merge(vec![shard(1), shard(1), shard(2)]).is_err());
        let mut other = shard(2);
        other.plan.seeds = vec![1, 2];
        assert!(matches!(
            Sweep::merge(vec![shard(1), other]),
            Err(SweepError::Mismatch(_))
        ));
        assert_eq!(whole.points[3].metrics["m"].mean, Some(6.5));
    }
}
