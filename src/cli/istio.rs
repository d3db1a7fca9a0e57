//! `--istio FILES|DIRS` (on `run`, `validate` and `proxy`): the mesh config taken from Istio
//! YAML instead of the RON file's `mesh`, and `meshtwin import`, which writes it as RON.

use clap::Args;
use istio_config::{Imported, Options};
use std::path::{Path, PathBuf};

/// The `--istio` flags.
#[derive(Debug, Args, Default)]
pub(super) struct IstioArgs {
    /// Take the mesh config from Istio YAML (VirtualService, DestinationRule, Gateway,
    /// ServiceEntry, Sidecar; a Flagger Canary as the rollout; files or directories, searched
    /// for *.yaml and *.yml) instead of the file's `mesh`. Repeat the flag or list several
    /// after it (after the positional arguments).
    #[arg(long = "istio", value_name = "FILES|DIRS", num_args = 1..)]
    pub(super) istio: Vec<PathBuf>,
    /// With --istio: Istio fields meshtwin does not model are errors, not warnings.
    #[arg(long, requires = "istio")]
    pub(super) strict: bool,
}

impl IstioArgs {
    /// The imported config, its warnings printed (unless `quiet`); `None` without `--istio`.
    pub(super) fn import(&self, quiet: bool) -> anyhow::Result<Option<Imported>> {
        if self.istio.is_empty() {
            return Ok(None);
        }
        let imported = import(&self.istio, self.strict, quiet)?;
        Ok(Some(imported))
    }
}

/// Imports `paths`, printing the warnings (not the notes on skipped documents) unless
/// `quiet`.
pub(super) fn import(paths: &[PathBuf], strict: bool, quiet: bool) -> anyhow::Result<Imported> {
    let imported = istio_config::import_paths(paths, Options { strict })?;
    if !quiet {
        for n in &imported.notes {
            if n.level == istio_config::Level::Warning {
                super::look::warn(&n.to_string());
            }
        }
    }
    Ok(imported)
}

/// A mesh error's field (`virtual_services[2].http[0].route[0].destination.host`) told as the
/// YAML object it came from: `file:line: VirtualService ns/name: spec.http[0]...: message`.
pub(super) fn locate(imported: &Imported, field: &str, message: &str) -> String {
    let field = field.strip_prefix("mesh.").unwrap_or(field);
    let o = &imported.origins;
    let lists = [
        ("virtual_services", &o.virtual_services),
        ("destination_rules", &o.destination_rules),
        ("gateways", &o.gateways),
        ("service_entries", &o.service_entries),
    ];
    for (list, origins) in lists {
        let Some(rest) = field.strip_prefix(list).and_then(|r| r.strip_prefix('[')) else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(']') else {
            continue;
        };
        let Some(origin) = index.parse::<usize>().ok().and_then(|i| origins.get(i)) else {
            continue;
        };
        let path = camel(rest.strip_prefix('.').unwrap_or(rest));
        let message = message
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(message);
        let at = if path.is_empty() {
            String::new()
        } else {
            format!(" spec.{path}:")
        };
        return format!(
            "{}:{}: {}:{at} {message}",
            origin.file,
            origin.line,
            origin.resource()
        );
    }
    format!("--istio: mesh.{field}: {message}")
}

/// `traffic_policy.connection_pool` → `trafficPolicy.connectionPool` (Istio's spelling).
fn camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut up = false;
    for c in path.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Puts the imported mesh into a loaded scenario and checks it again; a mesh error names the
/// YAML object it came from.
pub(super) fn into_scenario(
    file: &Path,
    scenario: &mut sim_core::Scenario,
    imported: &Imported,
) -> anyhow::Result<()> {
    let text = sim_core::load::read_text(file, "scenario")?;
    let name = file.display().to_string();
    if let Some((rollout, origin)) = &imported.rollout {
        anyhow::ensure!(
            scenario.timeline.is_empty(),
            "{}:{}: {}: the scenario has a timeline, and a rollout and a timeline cannot be combined",
            origin.file,
            origin.line,
            origin.resource()
        );
        scenario.rollout = Some(rollout.clone());
    }
    match sim_core::load::replace_mesh(&name, &text, scenario, imported.mesh.clone()) {
        Ok(()) => Ok(()),
        Err(sim_core::ScenarioError::Invalid { field, message, .. })
            if field.starts_with("mesh.") =>
        {
            anyhow::bail!("{}", locate(imported, &field, &message))
        }
        Err(e) => Err(e.into()),
    }
}

/// Puts the imported mesh into a proxy config (its hosts shortened against the endpoints) and
/// compiles it; a mesh error names the YAML object it came from.
pub(super) fn into_proxy(
    file: &Path,
    config: &mut live::config::ProxyConfig,
    imported: &Imported,
) -> anyhow::Result<()> {
    if let Some((_, origin)) = &imported.rollout {
        super::look::warn(&format!(
            "{}:{}: {}: the proxy does not run rollouts; ignored (rehearse it with `meshtwin run \
             SCENARIO --istio …`)",
            origin.file,
            origin.line,
            origin.resource()
        ));
    }
    config.mesh = imported.mesh.clone();
    let services: Vec<String> = config.endpoints.keys().cloned().collect();
    proxy_engine::hosts::shorten(&mut config.mesh, &|h| services.iter().any(|s| s == h));
    match config.compile(&file.display().to_string(), None) {
        Ok(_) => Ok(()),
        Err(live::config::ConfigFileError::Mesh(e, _)) => {
            anyhow::bail!("{}", locate(imported, e.field(), &e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Arguments of `meshtwin import`.
#[derive(Debug, Args)]
pub(super) struct ImportArgs {
    /// Istio YAML files or directories (searched for *.yaml and *.yml).
    #[arg(required = true, value_name = "FILES|DIRS")]
    paths: Vec<PathBuf>,
    /// Write the mesh config (RON `Mesh(...)`) here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Istio fields meshtwin does not model are errors, not warnings.
    #[arg(long)]
    strict: bool,
    /// Write a starting scenario instead of the mesh alone: the Deployments' `app` and
    /// `version` labels and replicas as its services (latency, calls and load left to fill).
    #[arg(long)]
    services: bool,
    /// Do not print the warnings and notes.
    #[arg(short, long)]
    quiet: bool,
}

/// `meshtwin import`: Istio YAML → a RON mesh config, with a warning per unmodeled field and
/// a note per skipped document on standard error.
pub(super) fn run_import(args: ImportArgs) -> anyhow::Result<()> {
    let imported = istio_config::import_paths(
        &args.paths,
        Options {
            strict: args.strict,
        },
    )?;
    if !args.quiet {
        for n in &imported.notes {
            match n.level {
                istio_config::Level::Warning => super::look::warn(&n.to_string()),
                istio_config::Level::Info => eprintln!("note: {n}"),
            }
        }
    }
    if let Some((_, origin)) = &imported.rollout {
        eprintln!(
            "note: {}:{}: {} is a rollout, not mesh config: it is not written here; it becomes \
             a scenario's rollout block with --istio on run or validate",
            origin.file,
            origin.line,
            origin.resource()
        );
    }
    let ron = match args.services {
        true => {
            anyhow::ensure!(
                !imported.deployments.is_empty(),
                "--services: no apps/v1 Deployment among the files, so no service to model"
            );
            istio_config::to_ron::scenario(&imported)?
        }
        false => istio_config::to_ron::mesh(&imported.mesh)?,
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &ron)
                .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
            let m = &imported.mesh;
            let services = match args.services {
                true => format!("{} Deployments as services, ", imported.deployments.len()),
                false => String::new(),
            };
            eprintln!(
                "wrote {} ({services}{} VirtualServices, {} DestinationRules, {} Gateways, {} ServiceEntries)",
                path.display(),
                m.virtual_services.len(),
                m.destination_rules.len(),
                m.gateways.len(),
                m.service_entries.len()
            );
        }
        None => super::run::to_stdout(&ron)?,
    }
    Ok(())
}
