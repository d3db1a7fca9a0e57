//! CI gates at the command line: `--threshold` and `--junit` on `run` and `load`, and
//! `meshtwin check REPORT.json` (thresholds and regression rules against a baseline report).
//!
//! Exit codes: 0 every gate holds; 99 a gate is breached (k6's code); 104 a gate cannot be
//! evaluated (bad expression, unknown metric or tag, a name the report lacks: k6's invalid
//! config); 65 a report cannot be read; 2 bad usage (clap).

use clap::Args;
use reports::gate::{self, Rule, Threshold, Verdict};
use reports::{Report, RunInfo};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A process exit with a given code; `main` prints the message (if any) and exits with it.
#[derive(Debug)]
pub(crate) struct Exit {
    /// The exit code.
    pub(crate) code: i32,
    /// Printed on stderr as `error: …`, when there is one.
    pub(crate) message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

fn exit(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        message: Some(message.into()),
    })
}

/// Exit 104: a gate or metric that cannot be evaluated.
pub(super) fn invalid(message: impl Into<String>) -> anyhow::Error {
    exit(gate::EXIT_INVALID, message)
}

/// Exit 65: a file that is not the report it should be.
pub(super) fn bad_data(message: impl Into<String>) -> anyhow::Error {
    exit(gate::EXIT_BAD_DATA, message)
}

/// The gate flags of `run` and `load`.
#[derive(Debug, Args)]
pub(super) struct GateArgs {
    /// A threshold the run must meet, k6-style: `p99_ms < 250`,
    /// `error_rate{destination=reviews/v2} < 1%`, `http_req_duration: p(95) < 200`.
    /// Repeatable; adds to the scenario's `thresholds`. A breach exits 99. With
    /// `, abort_on_fail[, delay_abort_eval=10s]` after the number, a breach stops a live run
    /// (`run --live`, `load`) early, checked every 2 s as k6 does.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// Write the thresholds' verdicts as JUnit XML (one test case each) to this path.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
}

/// Parses `texts` and checks their metrics and tags; an expression that fails exits 104,
/// naming where it came from.
fn parse_all(texts: &[(String, String)]) -> anyhow::Result<Vec<Threshold>> {
    texts
        .iter()
        .map(|(origin, t)| {
            Threshold::parse(t)
                .and_then(|t| gate::validate(&t.query).map(|()| t))
                .map_err(|e| exit(gate::EXIT_INVALID, format!("{origin}: {e}")))
        })
        .collect()
}

/// Checks the scenario's `thresholds` (parsed before the run, so a typo fails fast).
pub(super) fn prepare(
    scenario_file: Option<&Path>,
    scenario: &[String],
    args: &GateArgs,
) -> anyhow::Result<Vec<Threshold>> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for (i, t) in scenario.iter().enumerate() {
        let file = scenario_file.map_or_else(|| "scenario".into(), |f| f.display().to_string());
        texts.push((format!("{file}: thresholds[{i}]"), t.clone()));
    }
    for t in &args.thresholds {
        texts.push(("--threshold".into(), t.clone()));
    }
    parse_all(&texts)
}

/// Why a live run stopped early: a threshold marked `abort_on_fail` was breached.
#[derive(Clone, Debug)]
pub(super) struct Abort {
    /// How long the load had run when it stopped.
    pub(super) after: Duration,
    /// The message, as k6 words it.
    pub(super) message: String,
}

/// The thresholds marked `abort_on_fail`, checked on the figures so far while a live run
/// goes on (every 2 s, as k6 does). A threshold whose slice has no data yet (a destination
/// not reached) is not breached.
pub(super) struct AbortWatch {
    thresholds: Vec<Threshold>,
    info: RunInfo,
    /// Set once, when the run is stopped.
    pub(super) fired: Arc<Mutex<Option<Abort>>>,
}

impl AbortWatch {
    /// A watch over the `abort_on_fail` thresholds of `all`; `None` when there are none.
    pub(super) fn new(all: &[Threshold], info: RunInfo) -> Option<AbortWatch> {
        let thresholds: Vec<Threshold> = all.iter().filter(|t| t.abort_on_fail).cloned().collect();
        (!thresholds.is_empty()).then(|| AbortWatch {
            thresholds,
            info,
            fired: Arc::new(Mutex::new(None)),
        })
    }

    /// Whether the run must stop, given the figures after `elapsed`; the first time it must,
    /// records k6's message in `fired` (printed when the run ends, with exit 99).
    pub(super) fn check(&self, metrics: &metrics::RunMetrics, elapsed: Duration) -> bool {
        let info = RunInfo {
            duration_ns: elapsed.as_nanos() as u64,
            ..self.info.clone()
        };
        let report = Report::new(&info, metrics);
        let crossed: Vec<String> = (self.thresholds.iter())
            // k6 (`thresholds.go` `runAll`): abort only once `delayAbortEval < elapsed`.
            .filter(|t| elapsed.as_nanos() as u64 > t.delay_abort_eval.0)
            .filter(|t| gate::value(&report, &t.query).is_ok_and(|v| !t.op.holds(v, t.limit)))
            .map(|t| t.query.to_string())
            .collect();
        if crossed.is_empty() {
            return false;
        }
        let message = format!(
            "thresholds on metrics '{}' were crossed; at least one has abort_on_fail enabled, \
             stopping the run at {:.1} s",
            crossed.join("', '"),
            elapsed.as_secs_f64()
        );
        let mut fired = self
            .fired
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if fired.is_none() {
            *fired = Some(Abort {
                after: elapsed,
                message,
            });
        }
        true
    }
}

/// Evaluates `thresholds` on `report`, prints the verdicts (stdout, or stderr when stdout
/// carries the JSON), writes the JUnit file, and exits 99 on a breach.
pub(super) fn enforce(
    report: &Report,
    thresholds: &[Threshold],
    args: &GateArgs,
    json_on_stdout: bool,
    aborted: Option<&Abort>,
) -> anyhow::Result<()> {
    if thresholds.is_empty() && args.junit.is_none() {
        return Ok(());
    }
    let verdicts = gate::check_thresholds(report, thresholds)
        .map_err(|e| exit(gate::EXIT_INVALID, e.to_string()))?;
    let verdict = finish(
        &report.scenario,
        &verdicts,
        args.junit.as_deref(),
        json_on_stdout,
    );
    let breach = |e: &anyhow::Error| {
        e.downcast_ref::<Exit>()
            .is_some_and(|x| x.code == gate::EXIT_BREACHED && x.message.is_none())
    };
    match (aborted, verdict) {
        // As k6: a run stopped by a threshold exits 99 with its message, even if every
        // threshold holds over the shortened run.
        (Some(a), Ok(())) => Err(exit(gate::EXIT_BREACHED, a.message.clone())),
        (Some(a), Err(e)) if breach(&e) => Err(exit(gate::EXIT_BREACHED, a.message.clone())),
        (_, verdict) => verdict,
    }
}

fn finish(
    suite: &str,
    verdicts: &[Verdict],
    junit: Option<&Path>,
    to_stderr: bool,
) -> anyhow::Result<()> {
    let look = super::look::of(match to_stderr {
        true => super::look::Stream::Stderr,
        false => super::look::Stream::Stdout,
    });
    let text = gate::summary(verdicts, &look);
    if to_stderr {
        eprint!("{text}");
    } else {
        super::run::to_stdout(&text)?;
    }
    if let Some(path) = junit {
        std::fs::write(path, gate::junit(suite, verdicts))
            .map_err(|e| anyhow::anyhow!("cannot write the JUnit file {}: {e}", path.display()))?;
    }
    if verdicts.iter().any(|v| !v.passed) {
        return Err(anyhow::Error::new(Exit {
            code: gate::EXIT_BREACHED,
            message: None,
        }));
    }
    Ok(())
}

/// Arguments of `meshtwin check`.
#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The JSON report to check (from `run --json` or `load --json`).
    report: PathBuf,
    /// A threshold, as on `run` (repeatable).
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// A stored report to compare against, for `--max-increase` and `--max-decrease`.
    #[arg(long, value_name = "BASE.json")]
    baseline: Option<PathBuf>,
    /// A metric may not rise by more than this since the baseline: `p99_ms=5%` (of the
    /// baseline), `error_rate=0.1pp` (percentage points), `p99_ms=3` (ms). Repeatable.
    #[arg(
        long = "max-increase",
        value_name = "METRIC=BOUND",
        requires = "baseline"
    )]
    max_increase: Vec<String>,
    /// A metric may not fall by more than this since the baseline: `success_rate=0.1pp`.
    #[arg(
        long = "max-decrease",
        value_name = "METRIC=BOUND",
        requires = "baseline"
    )]
    max_decrease: Vec<String>,
    /// Write the verdicts as JUnit XML to this path.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
}

/// Reads a JSON report; exits 65 when it cannot.
pub(super) fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| exit(gate::EXIT_BAD_DATA, format!("{}: {e}", path.display())))?;
    let report: Report = serde_json::from_str(&text).map_err(|e| {
        exit(
            gate::EXIT_BAD_DATA,
            format!(
                "{}:{}:{}: not a meshtwin JSON report: {e}",
                path.display(),
                e.line(),
                e.column()
            ),
        )
    })?;
    if report.schema_version != reports::SCHEMA_VERSION {
        return Err(exit(
            gate::EXIT_BAD_DATA,
            format!(
                "{}: schema_version {} (this meshtwin reads {})",
                path.display(),
                report.schema_version,
                reports::SCHEMA_VERSION
            ),
        ));
    }
    Ok(report)
}

/// `meshtwin check`.
pub(super) fn check(args: CheckArgs) -> anyhow::Result<()> {
    let texts: Vec<(String, String)> = (args.thresholds.iter())
        .map(|t| ("--threshold".to_owned(), t.clone()))
        .collect();
    let thresholds = parse_all(&texts)?;
    let rules: Vec<Rule> = (args.max_increase.iter().map(|r| Rule::parse(r, true)))
        .chain(args.max_decrease.iter().map(|r| Rule::parse(r, false)))
        .collect::<Result<_, _>>()
        .map_err(|e| exit(gate::EXIT_INVALID, e.to_string()))?;
    if thresholds.is_empty() && rules.is_empty() {
        return Err(exit(
            2,
            "nothing to check: give --threshold, or --baseline with --max-increase/--max-decrease",
        ));
    }
    let report = read_report(&args.report)?;
    let mut verdicts = gate::check_thresholds(&report, &thresholds)
        .map_err(|e| exit(gate::EXIT_INVALID, e.to_string()))?;
    if let Some(base) = &args.baseline {
        let baseline = read_report(base)?;
        for rule in &rules {
            let v = rule
                .check(&report, &baseline)
                .map_err(|e| exit(gate::EXIT_INVALID, e.to_string()))?;
            verdicts.push(v);
        }
    }
    finish(&report.scenario, &verdicts, args.junit.as_deref(), false)
}
