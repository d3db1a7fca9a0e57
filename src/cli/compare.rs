//! `meshtwin compare A.json B.json [--html PATH]`.

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `meshtwin compare`.
#[derive(Debug, Args)]
pub(super) struct CompareArgs {
    /// The first report (A), e.g. a simulation.
    a: PathBuf,
    /// The second report (B), e.g. the same scenario live, or another seed or policy.
    b: PathBuf,
    /// Also write an HTML page overlaying both runs' curves.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
}

/// Prints the side-by-side table; writes the HTML page if asked.
pub(super) fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let a = super::gate::read_report(&args.a)?;
    let b = super::gate::read_report(&args.b)?;
    let look = super::look::of(super::look::Stream::Stdout);
    super::run::to_stdout(&reports::compare::text(&a, &b, &look))?;
    if let Some(path) = &args.html {
        std::fs::write(path, reports::html::render_compare(&a, &b))
            .with_context(|| format!("cannot write the HTML page to {}", path.display()))?;
        eprintln!("HTML comparison: {}", path.display());
    }
    Ok(())
}
