//! `meshtwin validate FILE…`: scenarios and proxy configs.

use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `meshtwin validate`.
#[derive(Debug, Args)]
pub(super) struct ValidateArgs {
    /// Scenario or proxy config files (RON) to check; a proxy config is a file whose top-level
    /// value is `Proxy(...)`.
    #[arg(required_unless_present = "istio")]
    files: Vec<PathBuf>,
    /// Check the scenarios with a field set, PATH=VALUE (RON), as `run --set` would.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    istio: super::istio::IstioArgs,
}

/// Checks every file; prints a one-line summary per valid file and fails on the first error.
pub(super) fn validate(args: ValidateArgs) -> anyhow::Result<()> {
    let settings = super::run::parse_settings(&args.set)?;
    let imported = args.istio.import(false)?;
    if let (Some(imported), true) = (&imported, args.files.is_empty()) {
        let m = &imported.mesh;
        let line = format!(
            "--istio: ok ({}, {}, {}, {})\n",
            count(m.virtual_services.len(), "VirtualService"),
            count(m.destination_rules.len(), "DestinationRule"),
            count(m.gateways.len(), "Gateway"),
            count(m.service_entries.len(), "ServiceEntry"),
        );
        return super::run::to_stdout(&line);
    }
    for file in &args.files {
        let line = if is_proxy_config(file) {
            anyhow::ensure!(
                settings.is_empty(),
                "{}: --set applies to scenarios, and this is a proxy config",
                file.display()
            );
            proxy_config(file, imported.as_ref())?
        } else {
            scenario(file, &settings, imported.as_ref())?
        };
        super::run::to_stdout(&format!("{line}\n"))?;
    }
    Ok(())
}

/// `n thing` or `n things`.
fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

fn scenario(
    file: &Path,
    settings: &[sim_core::Setting],
    imported: Option<&istio_config::Imported>,
) -> anyhow::Result<String> {
    let mut s = sim_core::load_with(file, settings)?;
    if let Some(imported) = imported {
        super::istio::into_scenario(file, &mut s, imported)?;
    }
    for (i, t) in s.thresholds.iter().enumerate() {
        reports::gate::Threshold::parse(t)
            .and_then(|t| reports::gate::validate(&t.query))
            .map_err(|e| anyhow::anyhow!("{}: thresholds[{i}]: {e}", file.display()))?;
    }
    for w in sim_core::timeline::warnings(&s) {
        super::look::warn(&format!("{}: {w}", file.display()));
    }
    let instances = s.instance_count();
    let changes = match s.timeline.len() {
        0 => String::new(),
        n => format!(", {}", count(n, "timeline change")),
    };
    Ok(format!(
        "{}: ok ({}, {}, {}, duration {}{changes})",
        file.display(),
        count(s.services.len(), "service"),
        count(instances as usize, "instance"),
        count(s.workload.len(), "workload"),
        s.duration
    ))
}

fn proxy_config(file: &Path, imported: Option<&istio_config::Imported>) -> anyhow::Result<String> {
    let mut c = live::config::ProxyConfig::load(file, None)?;
    if let Some(imported) = imported {
        super::istio::into_proxy(file, &mut c, imported)?;
    }
    let endpoints: usize = c.endpoints.values().map(Vec::len).sum();
    Ok(format!(
        "{}: ok (proxy config: {}, {}, {})",
        file.display(),
        count(c.listeners.len(), "listener"),
        count(c.endpoints.len(), "service"),
        count(endpoints, "endpoint"),
    ))
}

/// Whether the file's top-level RON value is `Proxy(...)` (after comments and attributes).
/// An unreadable file is left to the scenario loader, which reports it.
fn is_proxy_config(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let mut rest = text.as_str();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.split_once('\n').map_or("", |(_, r)| r);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r);
        } else if rest.starts_with("#!") {
            rest = rest.split_once(']').map_or("", |(_, r)| r);
        } else {
            break;
        }
    }
    rest.strip_prefix("Proxy")
        .is_some_and(|r| r.trim_start().starts_with('('))
}
