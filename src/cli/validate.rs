//! `meshtwin validate FILE`.

use clap::Args;
use std::path::PathBuf;

/// Arguments of `meshtwin validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Scenario file (RON) to check.
    file: PathBuf,
}

/// Loads and checks the scenario; prints a one-line summary when it is valid.
pub fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let s = sim_core::load(&args.file)?;
    let instances: u32 = s
        .services
        .values()
        .flat_map(|svc| svc.versions.values())
        .map(|v| v.instances)
        .sum();
    println!(
        "{}: ok ({} services, {} instances, {} workloads, duration {})",
        args.file.display(),
        s.services.len(),
        instances,
        s.workload.len(),
        s.duration
    );
    Ok(())
}
