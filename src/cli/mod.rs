//! Argument parsing (clap derive) and one module per subcommand.

mod run;
mod validate;

use clap::{Parser, Subcommand};

/// meshtwin: a deterministic digital twin of a service mesh, and a load-testing lab.
///
/// Describe services, their versions, the traffic policy (Istio-style virtual services and
/// destination rules) and the load in a scenario file (RON); meshtwin simulates it with a seeded
/// discrete-event simulator driving the real proxy engine and reports what users would see.
#[derive(Debug, Parser)]
#[command(name = "meshtwin", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a scenario and print a summary (optionally write the JSON report).
    ///
    /// Example: meshtwin run scenarios/basic.ron --json report.json
    Run(run::RunArgs),
    /// Check a scenario file (syntax, types, references, mesh config) without running it.
    ///
    /// Example: meshtwin validate scenarios/basic.ron
    Validate(validate::ValidateArgs),
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(args),
    }
}
