//! `meshtwin analyze [--istio FILES|DIRS…] [SCENARIO]`: `istioctl analyze`-style diagnostics.
//! Output, thresholds and exit codes follow istioctl (`istioctl/pkg/analyze`,
//! `istioctl/cmd/sysexits.go`): exit 79 when a message reaches `--failure-threshold`, 65 when
//! an input cannot be read.

use super::istio::IstioArgs;
use clap::{Args, ValueEnum};
use istio_config::analyze::{self, Diagnostic, Input, Level};
use std::path::PathBuf;

/// istioctl's `ExitAnalyzerFoundIssues`.
const EXIT_ISSUES: i32 = 79;
/// istioctl's `ExitDataError`: an input that cannot be parsed.
const EXIT_DATA: i32 = 65;

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// One line per message: `Level [CODE] (Kind ns/name file:line) message`.
    Log,
    /// A JSON list of {code, documentationUrl, level, message, origin, reference}.
    Json,
}

/// Arguments of `meshtwin analyze`.
#[derive(Debug, Args)]
pub(super) struct AnalyzeArgs {
    /// A scenario (RON): its mesh, or the --istio config checked against its services,
    /// instances, gateways, calls and timeline.
    scenario: Option<PathBuf>,
    #[command(flatten)]
    istio: IstioArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "log")]
    output: Format,
    /// The level (Error, Warning, Info) at which messages make the exit status 79.
    #[arg(long, default_value = "Error", value_parser = parse_level)]
    failure_threshold: Level,
    /// The lowest level (Error, Warning, Info) printed.
    #[arg(long, default_value = "Info", value_parser = parse_level)]
    output_threshold: Level,
    /// Suppress messages: CODE=RESOURCE, RESOURCE as `Kind name.namespace` with `*`
    /// wildcards (istioctl's -S), e.g. 'IST0131=VirtualService *.default'. Repeatable.
    #[arg(short = 'S', long = "suppress", value_name = "CODE=RESOURCE")]
    suppress: Vec<String>,
}

fn parse_level(s: &str) -> Result<Level, String> {
    Level::parse(s).ok_or_else(|| format!("`{s}`: expected Error, Warning or Info"))
}

fn data_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(super::Exit {
        code: EXIT_DATA,
        message: Some(e.to_string()),
    })
}

/// The diagnostics of a scenario and/or imported config.
pub(super) fn diagnostics(
    scenario: Option<(&std::path::Path, &sim_core::Scenario)>,
    imported: Option<&istio_config::Imported>,
) -> Vec<Diagnostic> {
    let file = scenario.map(|(p, _)| p.display().to_string());
    // With a scenario, its mesh is the one to check (the imported one, hosts shortened, when
    // --istio is given).
    let Some(mesh) = scenario.map(|(_, s)| &s.mesh).or(imported.map(|i| &i.mesh)) else {
        return Vec::new();
    };
    let empty = Vec::new();
    analyze::analyze(Input {
        mesh,
        origins: imported.map(|i| &i.origins),
        scenario: scenario.map(|(_, s)| s),
        file: file.as_deref(),
        kubernetes_services: imported.map_or(&empty, |i| &i.kubernetes_services),
    })
}

/// Runs the analysis and prints it.
pub(super) fn analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.scenario.is_some() || !args.istio.istio.is_empty(),
        "nothing to analyze: give a scenario, --istio FILES|DIRS, or both"
    );
    let suppress: Vec<(String, String)> = (args.suppress.iter())
        .map(|s| {
            s.split_once('=')
                .map(|(c, r)| (c.to_owned(), r.to_owned()))
                .ok_or_else(|| anyhow::anyhow!("-S {s}: expected CODE=RESOURCE"))
        })
        .collect::<anyhow::Result<_>>()?;
    let imported = match args.istio.import(true) {
        Ok(i) => i,
        Err(e) => return Err(data_error(format!("{e:#}"))),
    };
    let mut scenario = None;
    if let Some(path) = &args.scenario {
        let mut s = sim_core::load(path).map_err(data_error)?;
        if let Some(i) = &imported {
            super::istio::into_scenario(path, &mut s, i).map_err(data_error)?;
        }
        scenario = Some(s);
    }
    let all = diagnostics(
        args.scenario.as_deref().zip(scenario.as_ref()),
        imported.as_ref(),
    );
    let shown: Vec<&Diagnostic> = (all.iter())
        .filter(|d| d.level <= args.output_threshold)
        .filter(|d| !suppress.iter().any(|(c, r)| suppressed(d, c, r)))
        .collect();
    match args.output {
        Format::Log => {
            let mut text = String::new();
            for d in &shown {
                text.push_str(&format!("{d}\n"));
            }
            super::run::to_stdout(&text)?;
        }
        Format::Json => {
            let list: Vec<serde_json::Value> = shown.iter().map(|d| d.to_json()).collect();
            super::run::to_stdout(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        }
    }
    if shown.is_empty() {
        let target = match &args.scenario {
            Some(p) => p.display().to_string(),
            None => "the --istio files".into(),
        };
        eprintln!("✔ No validation issues found when analyzing {target}.");
    }
    let failing = shown
        .iter()
        .filter(|d| d.level <= args.failure_threshold)
        .count();
    if failing > 0 {
        return Err(anyhow::Error::new(super::Exit {
            code: EXIT_ISSUES,
            message: Some(format!(
                "Analyzers found issues when analyzing {}.",
                args.scenario
                    .as_ref()
                    .map_or("the --istio files".into(), |p| p.display().to_string())
            )),
        }));
    }
    Ok(())
}

/// Whether `-S code=resource` silences `d`. The resource is matched as istioctl writes it:
/// `Kind name.namespace`, `*` matching any run of characters.
fn suppressed(d: &Diagnostic, code: &str, resource: &str) -> bool {
    if code != "*" && code != d.code {
        return false;
    }
    let (kind, rest) = d.origin.split_once(' ').unwrap_or((d.origin.as_str(), ""));
    let name = match rest.split_once('/') {
        Some((ns, name)) => format!("{kind} {name}.{ns}"),
        None => d.origin.clone(),
    };
    glob(resource, &name)
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
        }
    }
}
