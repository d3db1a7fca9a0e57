//! `meshtwin test TESTS… (--istio FILES|DIRS | --scenario FILE)`: route unit tests in the
//! istio-config-validator format, run against the engine's route matching, with route
//! coverage as Envoy's `router_check_tool` reports it. Exit 0 when every case passes and
//! coverage reaches `--fail-under`; 1 when a case fails or coverage is under (as
//! `router_check_tool`); 65 when a test or config file cannot be read or compiled.

use super::istio::IstioArgs;
use clap::Args;
use istio_config::routetest::{self, Target};
use std::path::PathBuf;

/// `EX_DATAERR`: an input that cannot be read.
const EXIT_DATA: i32 = 65;
/// A failing case or coverage under `--fail-under` (`router_check_tool`'s `EXIT_FAILURE`).
const EXIT_FAILED: i32 = 1;

/// Arguments of `meshtwin test`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("config").required(true).multiple(true).args(["istio", "scenario"])))]
pub(super) struct TestArgs {
    /// Route test files or directories (YAML with `testCases`; directories are searched
    /// for *.yaml and *.yml).
    #[arg(required = true, value_name = "TESTS")]
    tests: Vec<PathBuf>,
    #[command(flatten)]
    istio: IstioArgs,
    /// A scenario (RON): its mesh (or the --istio config) over its services.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Run the requests at this Gateway (`namespace/name`, or `name` in `default`) instead
    /// of at a sidecar: on the port of the request's authority, else the first server's.
    #[arg(long, value_name = "NS/NAME")]
    gateway: Option<String>,
    /// Fail (exit 1) when route coverage is under PCT percent.
    #[arg(short = 'f', long, value_name = "PCT", value_parser = parse_percent)]
    fail_under: Option<f64>,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}`: expected a percentage from 0 to 100")),
    }
}

fn data_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(super::Exit {
        code: EXIT_DATA,
        message: Some(e.to_string()),
    })
}

/// The mesh the tests run against.
fn target(args: &TestArgs) -> anyhow::Result<Target> {
    let imported = args.istio.import(false)?;
    let names: Vec<(String, String)> = imported.as_ref().map_or(Vec::new(), |i| {
        (i.origins.virtual_services.iter())
            .map(|o| (o.resource(), format!("{}:{}", o.file, o.line)))
            .collect()
    });
    let mut target = match (&args.scenario, &imported) {
        (Some(path), imported) => {
            let mut s = sim_core::load(path)?;
            if let Some(i) = imported {
                super::istio::into_scenario(path, &mut s, i)?;
            }
            let registry = sim_core::topology::Topology::of(&s).registry();
            let mesh = sim_core::delivery::initial_config(&s);
            Target::new(mesh, &registry, names)?
        }
        (None, Some(i)) => {
            let mut mesh = i.mesh.clone();
            let registry = routetest::registry_for(&mut mesh);
            Target::new(mesh, &registry, names).map_err(|e| {
                anyhow::anyhow!("{}", super::istio::locate(i, e.field(), &e.to_string()))
            })?
        }
        (None, None) => {
            anyhow::bail!("no config to test: give --istio FILES|DIRS, --scenario FILE, or both")
        }
    };
    if let Some(g) = &args.gateway {
        target
            .at_gateway(g)
            .map_err(|e| anyhow::anyhow!("--gateway {g}: {e}"))?;
    }
    Ok(target)
}

/// Runs the tests and prints the results.
pub(super) fn test(args: TestArgs) -> anyhow::Result<()> {
    let target = target(&args).map_err(|e| data_error(format!("{e:#}")))?;
    let mut cases = Vec::new();
    let files = istio_config::import::files(&args.tests).map_err(data_error)?;
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| data_error(format!("{name}: cannot read: {e}")))?;
        cases.extend(routetest::parse(&name, &text).map_err(data_error)?);
    }
    if cases.is_empty() {
        return Err(data_error("no test cases found in the TESTS given"));
    }
    let report = routetest::run(&cases, &target);
    super::run::to_stdout(&report.render(&cases, &target))?;
    let failed = report.failed();
    if failed > 0 {
        return Err(anyhow::Error::new(super::Exit {
            code: EXIT_FAILED,
            message: Some(format!(
                "{failed} of {} route test cases failed",
                cases.len()
            )),
        }));
    }
    if let Some(pct) = args.fail_under {
        if report.coverage() < pct {
            return Err(anyhow::Error::new(super::Exit {
                code: EXIT_FAILED,
                message: Some(format!("Failed to meet coverage requirement: {pct}%")),
            }));
        }
    }
    Ok(())
}
