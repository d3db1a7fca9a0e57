//! `meshtwin serve SCENARIO`.

use clap::Args;
use std::path::PathBuf;

/// Arguments of `meshtwin serve`.
#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Scenario whose services to run.
    scenario: PathBuf,
    /// Seed (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
}

/// Starts every instance behind its sidecar, prints where, runs until ctrl-c.
pub(super) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let s = sim_core::load(&args.scenario)?;
    let seed = args.seed.unwrap_or(s.seed);
    super::runtime(0)?.block_on(async {
        let services = live::lab::start_services(&s, seed).await?;
        for inst in &services.instances {
            println!("{:<32} http://{}", inst.name(), inst.addr);
        }
        eprintln!(
            "serving {} instances; ctrl-c to stop",
            services.instances.len()
        );
        super::shutdown_signal().await;
        services.stop().await;
        Ok(())
    })
}
