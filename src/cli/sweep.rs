//! `meshtwin sweep SCENARIO --set PATH=V1,V2 … --seeds N -o DIR`: the grid of settings × seeds
//! simulated on all cores (each run single-threaded and deterministic), and
//! `meshtwin sweep merge DIR… -o DIR` for shards run apart (`--shard K/N`).

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reports::gate::{self, Query};
use reports::sweep::{Axis, Plan, RunResult, RunSpec, Shard, Sweep, SWEEP_SCHEMA};
use reports::{Report, RunInfo};
use sim_core::setting::{split_assignment, split_values};
use sim_core::{Scenario, Setting};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The metrics a sweep records when no `--metric` is given.
pub(super) const DEFAULT_METRICS: [&str; 10] = [
    "success_rate",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "rps",
    "attempts_per_request",
    "retries",
    "retry_overflows",
    "overflows",
    "ejections",
];

/// Arguments of `meshtwin sweep`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(super) struct SweepArgs {
    #[command(subcommand)]
    command: Option<SweepCommand>,
    /// Scenario file (RON).
    #[arg(required = true)]
    scenario: Option<PathBuf>,
    /// A setting to sweep, PATH=V1,V2,…: a scenario path (`workload[0].rate`,
    /// `services.backend.versions.v1.instances`) and RON values (commas inside brackets or
    /// quotes belong to a value; a bare word such as 100ms is read as a string). Repeat for a
    /// grid: every combination runs.
    #[arg(long = "set", value_name = "PATH=V1,V2,…", required = true)]
    set: Vec<String>,
    /// Seeds per point: the first seed and the ones after it.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// The first seed (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// A metric to record per run, as a threshold names it (`p99_ms`,
    /// `success_rate{route=api}`). Repeatable; default: success_rate, p50_ms, p99_ms, max_ms,
    /// rps, attempts_per_request, retries, retry_overflows, overflows, ejections.
    #[arg(long = "metric", value_name = "METRIC")]
    metrics: Vec<String>,
    /// Runs at once (default: one per core).
    #[arg(long, short)]
    jobs: Option<usize>,
    /// Directory for sweep.json, runs.csv, summary.csv and sweep.html (a shard writes
    /// sweep.json and runs.csv).
    #[arg(long, short = 'o', value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the runs (number, point, seed, values) and exit without running.
    #[arg(long)]
    plan: bool,
    /// Run only shard K of N (1 ≤ K ≤ N): runs r with r mod N = K - 1. Join the shards'
    /// directories with `meshtwin sweep merge`.
    #[arg(long, value_name = "K/N", value_parser = Shard::parse)]
    shard: Option<Shard>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum SweepCommand {
    /// Join the directories of a sweep's shards into the files one machine would write.
    ///
    /// Example: meshtwin sweep merge shard-1 shard-2 -o sweep
    Merge {
        /// The shards' output directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where the whole sweep's files go.
        #[arg(long, short = 'o', value_name = "DIR")]
        out: PathBuf,
        /// Print nothing but errors.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// A sweep ready to run: the plan and each point's scenario.
struct Prepared {
    plan: Plan,
    scenarios: Vec<Scenario>,
}

/// Runs `meshtwin sweep`.
pub(super) fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    if let Some(SweepCommand::Merge { dirs, out, quiet }) = args.command {
        return merge(&dirs, &out, quiet);
    }
    let Some(path) = args.scenario.as_deref() else {
        anyhow::bail!("a scenario file is required");
    };
    let prepared = prepare(path, &args)?;
    let specs = prepared.plan.runs_of(args.shard);
    if args.plan {
        return super::run::to_stdout(&plan_text(&prepared.plan, args.shard, &specs));
    }
    let Some(out) = args.out.as_deref() else {
        anyhow::bail!(
            "-o DIR is required: where the sweep's files go (or --plan to list the runs)"
        );
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let results = execute(&prepared, &specs, jobs, args.quiet)?;
    let sweep = match args.shard {
        Some(shard) => Sweep::shard(prepared.plan, shard, results)?,
        None => Sweep::whole(prepared.plan, results)?,
    };
    let written = write(&sweep, out)?;
    if !args.quiet {
        let mut text = if sweep.shard.is_none() {
            summary_text(&sweep)
        } else {
            String::new()
        };
        text.push_str(&format!("wrote {}\n", written.join(", ")));
        super::run::to_stdout(&text)?;
    }
    Ok(())
}

/// Parses the settings and metrics, and checks every point's scenario before any run.
fn prepare(path: &Path, args: &SweepArgs) -> anyhow::Result<Prepared> {
    let file = path.display().to_string();
    let text = sim_core::load::read_text(path, "scenario")?;
    let mut axes: Vec<Axis> = Vec::new();
    for set in &args.set {
        let (p, values) = split_assignment(set)?;
        let values = split_values(values);
        for v in &values {
            Setting::new(p, v)?;
        }
        let p = p.trim().to_owned();
        anyhow::ensure!(
            axes.iter().all(|a| a.path != p),
            "--set {p} is given twice: list all its values in one --set"
        );
        axes.push(Axis { path: p, values });
    }
    let metrics = if args.metrics.is_empty() {
        DEFAULT_METRICS.map(String::from).to_vec()
    } else {
        args.metrics.clone()
    };
    for m in &metrics {
        Query::parse(m)
            .and_then(|q| gate::validate(&q))
            .map_err(|e| super::gate::invalid(format!("--metric {e}")))?;
    }
    anyhow::ensure!(args.seeds > 0, "--seeds must be at least 1");
    let base: Scenario = sim_core::load::parse_with(&file, &text, &[])?;
    let first = args.seed.unwrap_or(base.seed);
    let seeds: Vec<u64> = (0..args.seeds)
        .map(|i| first.checked_add(i))
        .collect::<Option<_>>()
        .context("--seed + --seeds goes past the largest seed")?;
    let name = path
        .file_stem()
        .map_or("scenario".into(), |s| s.to_string_lossy().into_owned());
    let plan = Plan {
        scenario: base.name.clone().unwrap_or(name),
        scenario_digest: reports::sweep::digest(&text),
        axes,
        seeds,
        metrics,
    };
    let scenarios = (0..plan.points())
        .map(|point| {
            let values = plan.point_values(point);
            let settings = settings(&plan, &values)?;
            let mut s: Scenario = sim_core::load::parse_with(&file, &text, &settings)?;
            s.name = Some(plan.scenario.clone());
            sim_core::load::validate(&file, &text, &s)?;
            Ok(s)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Prepared { plan, scenarios })
}

/// A point's settings.
fn settings(
    plan: &Plan,
    values: &[String],
) -> Result<Vec<Setting>, sim_core::setting::SettingError> {
    (plan.axes.iter().zip(values))
        .map(|(a, v)| Setting::new(&a.path, v))
        .collect()
}

/// The plan as a table.
fn plan_text(plan: &Plan, shard: Option<Shard>, specs: &[RunSpec]) -> String {
    let mut out = format!(
        "sweep of {}: {} point(s) × {} seed(s) = {} runs",
        plan.scenario,
        plan.points(),
        plan.seeds.len(),
        plan.runs()
    );
    if let Some(s) = shard {
        out.push_str(&format!(
            "; shard {}/{}: {} runs",
            s.index,
            s.count,
            specs.len()
        ));
    }
    out.push('\n');
    let mut rows = vec![["run", "point", "seed"].map(String::from).to_vec()];
    rows[0].extend(plan.axes.iter().map(|a| a.path.clone()));
    for s in specs {
        let mut row = vec![s.run.to_string(), s.point.to_string(), s.seed.to_string()];
        row.extend(s.values.iter().cloned());
        rows.push(row);
    }
    out.push_str(&columns(&rows));
    out
}

/// Rows (the first: headings) as left-aligned columns two spaces apart, fitted to stdout.
fn columns(rows: &[Vec<String>]) -> String {
    let Some((head, body)) = rows.split_first() else {
        return String::new();
    };
    let mut table = head.iter().fold(reports::table::Table::new(2), |t, h| {
        t.column(h, reports::table::Align::Left, 0)
    });
    for row in body {
        table.row(row.iter().cloned());
    }
    table.render(&super::look::of(super::look::Stream::Stdout))
}

/// Runs `specs` on `jobs` threads, each run single-threaded; results in any order.
fn execute(
    prepared: &Prepared,
    specs: &[RunSpec],
    jobs: usize,
    quiet: bool,
) -> anyhow::Result<Vec<RunResult>> {
    let queries: Vec<Query> = (prepared.plan.metrics.iter())
        .map(|m| Query::parse(m))
        .collect::<Result<_, _>>()?;
    let bar = progress_bar(quiet, specs.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results = Mutex::new(Vec::with_capacity(specs.len()));
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(specs.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(spec) = specs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match run_one(prepared, spec, &queries) {
                        Ok(r) => {
                            if let Ok(mut v) = results.lock() {
                                v.push(r);
                            }
                            bar.inc(1);
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a sweep worker panicked"))
}

/// One run: simulate, then read the plan's metrics off its report.
fn run_one(prepared: &Prepared, spec: &RunSpec, queries: &[Query]) -> anyhow::Result<RunResult> {
    let scenario = prepared
        .scenarios
        .get(spec.point)
        .context("a run's point is outside the plan")?;
    let metrics = sim_core::run(scenario, spec.seed, &mut |_| {}).with_context(|| {
        format!(
            "run {} (seed {}, {})",
            spec.run,
            spec.seed,
            spec.values.join(", ")
        )
    })?;
    let info = RunInfo {
        scenario: prepared.plan.scenario.clone(),
        seed: spec.seed,
        duration_ns: scenario.duration.0,
        mode: "sim",
    };
    let report = Report::new(&info, &metrics);
    let values: BTreeMap<String, Option<f64>> = (prepared.plan.metrics.iter().zip(queries))
        .map(|(m, q)| {
            (
                m.clone(),
                gate::value(&report, q).ok().filter(|v| v.is_finite()),
            )
        })
        .collect();
    Ok(RunResult {
        run: spec.run,
        point: spec.point,
        seed: spec.seed,
        values: spec.values.clone(),
        metrics: values,
    })
}

/// A bar over runs on stderr, hidden when quiet or not a terminal.
fn progress_bar(quiet: bool, runs: usize) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(runs as u64), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} {pos}/{len} runs [{bar:30}] {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Writes the sweep's files into `dir`; returns their paths.
fn write(sweep: &Sweep, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let mut files = vec![
        ("sweep.json", sweep.to_json()),
        ("runs.csv", sweep.runs_csv()),
    ];
    if sweep.shard.is_none() {
        files.push(("summary.csv", sweep.summary_csv()));
        files.push(("sweep.html", reports::html::render_sweep(sweep)));
    }
    let mut written = Vec::new();
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// The per-point means of the first metrics, for the terminal.
fn summary_text(sweep: &Sweep) -> String {
    let plan = &sweep.plan;
    let shown: Vec<&String> = plan.metrics.iter().take(4).collect();
    let mut rows = vec![plan.axes.iter().map(|a| a.path.clone()).collect::<Vec<_>>()];
    rows[0].extend(shown.iter().map(|m| format!("{m} (mean ± sd)")));
    for p in &sweep.points {
        let mut row = p.values.clone();
        for m in &shown {
            let cell = match p.metrics.get(*m).and_then(|s| Some((s.mean?, s.sd?))) {
                Some((mean, sd)) => format!("{} ± {}", figure(mean), figure(sd)),
                None => "–".into(),
            };
            row.push(cell);
        }
        rows.push(row);
    }
    let mut out = format!(
        "{}: {} runs ({} point(s) × {} seed(s))\n",
        plan.scenario,
        plan.runs(),
        plan.points(),
        plan.seeds.len()
    );
    out.push_str(&columns(&rows));
    for m in &plan.metrics {
        if sweep
            .runs
            .iter()
            .all(|r| r.metrics.get(m).copied().flatten().is_none())
        {
            out.push_str(&format!(
                "note: no run has a value for {m} (does the route or destination it names exist?)\n"
            ));
        }
    }
    out
}

/// A figure with four significant digits at most.
fn figure(v: f64) -> String {
    let digits = if v.abs() >= 1000.0 {
        0
    } else if v.abs() >= 1.0 {
        3 - (v.abs().log10().floor() as usize).min(3)
    } else {
        4
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// `meshtwin sweep merge`.
fn merge(dirs: &[PathBuf], out: &Path, quiet: bool) -> anyhow::Result<()> {
    let parts = dirs
        .iter()
        .map(|d| read_sweep(&d.join("sweep.json")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sweep = Sweep::merge(parts)?;
    let written = write(&sweep, out)?;
    if !quiet {
        let mut text = summary_text(&sweep);
        text.push_str(&format!("wrote {}\n", written.join(", ")));
        super::run::to_stdout(&text)?;
    }
    Ok(())
}

/// Reads a `sweep.json` (exit 65 when it is not one).
fn read_sweep(path: &Path) -> anyhow::Result<Sweep> {
    let bad = |m: String| super::gate::bad_data(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let sweep: Sweep =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a meshtwin sweep.json: {e}")))?;
    if sweep.schema != SWEEP_SCHEMA {
        return Err(bad(format!(
            "sweep schema {} (this meshtwin reads {SWEEP_SCHEMA})",
            sweep.schema
        )));
    }
    Ok(sweep)
}
