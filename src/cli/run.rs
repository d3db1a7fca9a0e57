//! `meshtwin run SCENARIO`.

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use istio_config::analyze::Level;
use proxy_engine::Nanos;
use reports::text::{summary, WallClock};
use reports::{Report, RunInfo};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `meshtwin run`.
#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// Scenario file (RON), e.g. scenarios/basic.ron.
    scenario: PathBuf,
    /// Seed for every random stream (default: the scenario's `seed`). Same seed, same report.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the scenario's load duration, e.g. 10s or 5m.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Nanos>,
    /// Set a scenario field for this run, PATH=VALUE (RON): `workload[0].rate=800`,
    /// `services.backend.versions.v1.instances=3`, `mesh.virtual_services[0].http[0].timeout=2s`.
    /// Repeatable; checked as the file is.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Write the JSON report (schema: reports/SCHEMA.md) to this path; `-` for stdout.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Write the HTML report (one self-contained file with charts) to this path.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// Print nothing but errors (and the JSON if `--json -`).
    #[arg(long, short)]
    quiet: bool,
    /// Run it for real on loopback: every instance a live HTTP server behind its own sidecar
    /// proxy, the load from the open-loop generator; same report schema (mode `live`).
    #[arg(long)]
    live: bool,
    /// With --live: load-generator connections opened per workload before the first send.
    /// Each carries one request at a time; when all are busy another is opened.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// With --live: most load-generator connections per workload; a request due when all are
    /// busy is then dropped and counted (`dropped`, as k6's `dropped_iterations`).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    #[command(flatten)]
    istio: super::istio::IstioArgs,
    #[command(flatten)]
    gates: super::gate::GateArgs,
}

fn parse_duration(s: &str) -> Result<Nanos, String> {
    super::parse_duration(s)
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the output quietly, never a panic.
pub(super) fn to_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

/// Where the terminal summary goes: stdout, or stderr when the JSON goes to stdout
/// (`--json -`), so `| jq` reads JSON only.
pub(super) fn summary_stream(json: Option<&std::path::Path>) -> super::look::Stream {
    match json.is_some_and(|p| p.as_os_str() == "-") {
        true => super::look::Stream::Stderr,
        false => super::look::Stream::Stdout,
    }
}

/// Prints the terminal summary on its [`summary_stream`].
pub(super) fn print_summary(text: &str, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    match summary_stream(json) {
        super::look::Stream::Stderr => {
            eprint!("{text}");
            Ok(())
        }
        super::look::Stream::Stdout => to_stdout(text),
    }
}

/// Writes the report's JSON to `path` (`-` = stdout), if given.
fn write_json(report: &Report, path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = report.to_json();
    if path.as_os_str() == "-" {
        to_stdout(&json)?;
    } else {
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
    }
    Ok(())
}

/// Writes the report's HTML page to `path`, if given, and says where it went (unless quiet).
fn write_html(report: &Report, path: Option<&std::path::Path>, quiet: bool) -> anyhow::Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    std::fs::write(path, reports::html::render(report))
        .with_context(|| format!("cannot write the HTML report to {}", path.display()))?;
    if !quiet {
        eprintln!("HTML report: {}", path.display());
    }
    Ok(())
}

/// Parses `--set PATH=VALUE` flags.
pub(super) fn parse_settings(texts: &[String]) -> anyhow::Result<Vec<sim_core::Setting>> {
    texts
        .iter()
        .map(|t| sim_core::Setting::parse(t).map_err(anyhow::Error::from))
        .collect()
}

/// Loads, simulates and reports.
pub(super) fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = parse_settings(&args.set)?;
    let mut scenario = sim_core::load_with(&args.scenario, &settings)?;
    let imported = args.istio.import(args.quiet)?;
    if let Some(imported) = &imported {
        super::istio::into_scenario(&args.scenario, &mut scenario, imported)?;
    }
    if !args.quiet {
        // The analyzer's warnings and errors (the timeline's MT0004 is printed just below).
        let found =
            super::analyze::diagnostics(Some((&args.scenario, &scenario)), imported.as_ref());
        for d in found
            .iter()
            .filter(|d| d.level <= Level::Warning && d.code != "MT0004")
        {
            eprintln!("{d}");
        }
        for w in sim_core::timeline::warnings(&scenario) {
            super::look::warn(&format!("{}: {w}", args.scenario.display()));
        }
    }
    if let Some(d) = args.duration {
        anyhow::ensure!(d.0 > 0, "--duration must be above 0");
        scenario.duration = d;
    }
    let seed = args.seed.unwrap_or(scenario.seed);
    let thresholds = super::gate::prepare(Some(&args.scenario), &scenario.thresholds, &args.gates)?;
    let bar = progress_bar(args.quiet, scenario.duration);
    let started = Instant::now();
    let mut info = RunInfo {
        scenario: scenario.name.clone().unwrap_or_else(|| "scenario".into()),
        seed,
        duration_ns: scenario.duration.0,
        mode: if args.live { "live" } else { "sim" },
    };
    let mut aborted = None;
    let metrics = if args.live {
        let connections = live::lab::Connections {
            initial: args.connections,
            max: args.max_connections.max(1),
        };
        let watch = super::gate::AbortWatch::new(&thresholds, info.clone());
        let fired = watch.as_ref().map(|w| w.fired.clone());
        let metrics = live_run(&scenario, seed, connections, &bar, watch)?;
        aborted = fired.and_then(|f| f.lock().ok().and_then(|a| a.clone()));
        metrics
    } else {
        // The simulator runs the whole scenario (it takes seconds): `abort_on_fail` stops
        // only live runs, as k6's does a real test.
        sim_core::run(&scenario, seed, &mut |p| {
            bar.set_position(p.now.0.min(p.end.0) / 1_000_000);
            bar.set_message(format!("{} requests", p.generated));
        })
        .with_context(|| format!("{}: mesh config", args.scenario.display()))?
    };
    let elapsed_s = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(a) = &aborted {
        // The load ran this long: rates are over it.
        info.duration_ns = a.after.as_nanos() as u64;
    }
    let report = Report::new(&info, &metrics);
    if !args.quiet {
        let look = super::look::of(summary_stream(args.json.as_deref()));
        let text = summary(&report, Some(WallClock { elapsed_s }), &look);
        print_summary(&text, args.json.as_deref())?;
    }
    let outputs = Outputs {
        json: args.json.as_deref(),
        html: args.html.as_deref(),
        quiet: args.quiet,
        aborted,
    };
    outputs.write(&report, &thresholds, &args.gates)
}

/// Where a run's reports go, and whether to print.
pub(super) struct Outputs<'a> {
    /// `--json` (`-`: stdout).
    pub(super) json: Option<&'a std::path::Path>,
    /// `--html`.
    pub(super) html: Option<&'a std::path::Path>,
    /// `--quiet`.
    pub(super) quiet: bool,
    /// Set when a threshold marked `abort_on_fail` stopped the run.
    pub(super) aborted: Option<super::gate::Abort>,
}

impl Outputs<'_> {
    /// Writes the JSON and HTML reports, then checks the thresholds (exit 99 on a breach).
    pub(super) fn write(
        &self,
        report: &Report,
        thresholds: &[reports::gate::Threshold],
        gates: &super::gate::GateArgs,
    ) -> anyhow::Result<()> {
        write_json(report, self.json)?;
        write_html(report, self.html, self.quiet)?;
        let json_on_stdout = self.json.is_some_and(|p| p.as_os_str() == "-");
        super::gate::enforce(
            report,
            thresholds,
            gates,
            json_on_stdout || self.quiet,
            self.aborted.as_ref(),
        )
    }
}

/// Runs the scenario live on loopback, showing progress in wall-clock milliseconds; `watch`
/// stops it early when an `abort_on_fail` threshold is crossed.
fn live_run(
    scenario: &sim_core::Scenario,
    seed: u64,
    connections: live::lab::Connections,
    bar: &ProgressBar,
    watch: Option<super::gate::AbortWatch>,
) -> anyhow::Result<metrics::RunMetrics> {
    let progress = std::sync::Arc::new(live::loadgen::Progress::default());
    let watch = watch.map(|w| -> live::lab::Watch { Box::new(move |m, t| w.check(m, t)) });
    super::runtime(0)?.block_on(async {
        let run = tokio::spawn({
            let (s, p) = (scenario.clone(), progress.clone());
            async move { live::lab::run_watched(&s, seed, connections, p, watch).await }
        });
        tokio::pin!(run);
        let started = Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                r = &mut run => break Ok(r??),
                _ = tick.tick() => {
                    bar.set_position(started.elapsed().as_millis() as u64);
                    let sent = progress.sent.load(std::sync::atomic::Ordering::Relaxed);
                    let stopping = if progress.stopped() { ", stopping: a threshold was crossed" } else { "" };
                    bar.set_message(format!("{sent} requests (live){stopping}"));
                }
            }
        }
    })
}

/// A progress bar over virtual time (ms) on stderr, hidden when quiet or not a terminal.
/// indicatif only draws after its first tick delay, so short runs show nothing.
fn progress_bar(quiet: bool, duration: Nanos) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar =
        ProgressBar::with_draw_target(Some(duration.0 / 1_000_000), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} simulated {pos}/{len} ms [{bar:30}] {msg} ({elapsed})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
