//! `meshtwin proxy --config FILE [--endpoints FILE]`.

use anyhow::Context;
use clap::Args;
use live::admin::{self, AdminState};
use live::config::{ListenerRole, ProxyConfig};
use live::driver::{self, DriverOptions};
use live::server;
use proxy_engine::ProxyRole;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Arguments of `meshtwin proxy`.
#[derive(Debug, Args)]
pub(super) struct ProxyArgs {
    /// Proxy configuration (RON `Proxy(listeners: [...], mesh: Mesh(...), ...)`).
    #[arg(long)]
    config: PathBuf,
    /// Endpoints file (RON map: service -> [(addr, labels)]), instead of `endpoints` in the config.
    #[arg(long)]
    endpoints: Option<PathBuf>,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Seed of the engine's RNG (splits, random balancing).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    istio: super::istio::IstioArgs,
}

/// Starts listeners and the admin endpoint; reloads on SIGHUP or when a file changes; drains
/// and stops on ctrl-c or SIGTERM.
pub(super) fn proxy(args: ProxyArgs) -> anyhow::Result<()> {
    let config = load(&args, false)?;
    let rt = super::runtime(args.workers)?;
    rt.block_on(run(args, config))
}

/// The proxy config, its mesh taken from `--istio` when given (re-imported on every load, so
/// a reload picks up edited YAML).
fn load(args: &ProxyArgs, quiet: bool) -> anyhow::Result<ProxyConfig> {
    let mut config = ProxyConfig::load(&args.config, args.endpoints.as_deref())?;
    if let Some(imported) = args.istio.import(quiet)? {
        super::istio::into_proxy(&args.config, &mut config, &imported)?;
    }
    Ok(config)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

async fn run(args: ProxyArgs, config: ProxyConfig) -> anyhow::Result<()> {
    let file = args.config.display().to_string();
    let generation = config.compile(&file, None)?;
    let opts = DriverOptions {
        name: "proxy".into(),
        seed: args.seed,
        max_response_bytes: config.limits.max_response_bytes,
        access_log: config.access_log,
        // Runs indefinitely: cumulative metrics only (`/metrics`), no per-second series.
        window: None,
        probe: None,
        listener: None,
    };
    // Each listener runs its own engine, with its own role.
    let mut listeners = Vec::new();
    let mut handles: Vec<(String, driver::ProxyHandle)> = Vec::new();
    for l in &config.listeners {
        let role = match &l.role {
            ListenerRole::Ingress => ProxyRole::Gateway {
                name: l.name.clone(),
                labels: Default::default(),
            },
            ListenerRole::Sidecar { service } => ProxyRole::Sidecar {
                service: service.clone(),
            },
            ListenerRole::Gateway { labels, .. } => ProxyRole::Gateway {
                name: l.name.clone(),
                labels: labels.clone(),
            },
        };
        let listener = match &l.role {
            ListenerRole::Gateway { port, .. } => Some(proxy_engine::gateway::Listener {
                port: *port,
                tls: l.tls.is_some(),
            }),
            _ => None,
        };
        let opts = DriverOptions {
            name: l.name.clone(),
            listener,
            ..opts.clone()
        };
        let handle = driver::spawn(generation.clone(), role, opts);
        let tls = match &l.tls {
            Some(t) => Some(live::tls::server_config(&t.cert, &t.key)?),
            None => None,
        };
        let listener = server::listen(l.bind, handle.clone(), config.limits.clone(), tls)
            .await
            .with_context(|| format!("listener `{}`: cannot bind {}", l.name, l.bind))?;
        let tls_note = if l.tls.is_some() { " (TLS)" } else { "" };
        let role = match &l.role {
            ListenerRole::Ingress => "ingress".to_owned(),
            ListenerRole::Sidecar { service } => format!("sidecar of {service}"),
            ListenerRole::Gateway { port, .. } => format!("gateway server :{port}"),
        };
        eprintln!(
            "listener {} ({role}) on {}{tls_note}",
            l.name, listener.addr
        );
        listeners.push(listener);
        handles.push((l.name.clone(), handle));
    }
    match live::fdlimit::raise() {
        Ok(limit) => {
            if limit.soft > limit.was {
                eprintln!(
                    "open-file limit raised from {} to {}",
                    limit.was, limit.soft
                );
            }
            let listeners = config.listeners.len();
            let max = config.limits.max_connections;
            if let Some(w) = live::fdlimit::warning(&limit, max, listeners) {
                eprintln!("warning: {w}");
            }
        }
        Err(e) => eprintln!("warning: cannot read or raise the open-file limit: {e}"),
    }
    let config_json = Arc::new(Mutex::new(serde_json::to_value(&config)?));
    if let Some(addr) = config.admin {
        let state = AdminState {
            proxies: handles.clone(),
            config: config_json.clone(),
            accept_errors: Default::default(),
        };
        let (bound, _task) = admin::serve(addr, state)
            .await
            .with_context(|| format!("admin: cannot bind {addr}"))?;
        eprintln!("admin on http://{bound} (/metrics /ready /config)");
        if !bound.ip().is_loopback() {
            eprintln!(
                "warning: the admin endpoint listens on {bound}, not a loopback address: \
                 whoever reaches it reads /config and /metrics (Envoy's advice: bind admin to \
                 127.0.0.1)"
            );
        }
    }
    let watched: Vec<PathBuf> = std::iter::once(args.config.clone())
        .chain(args.endpoints.clone())
        .chain(istio_config::import::files(&args.istio.istio)?)
        .collect();
    let mut stamps: Vec<Option<SystemTime>> = watched.iter().map(|p| mtime(p)).collect();
    let mut hup = hangup()?;
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hup.recv() => reload(&args, &handles, &config_json, "SIGHUP"),
            _ = tick.tick() => {
                let now: Vec<Option<SystemTime>> = watched.iter().map(|p| mtime(p)).collect();
                if now != stamps {
                    stamps = now;
                    reload(&args, &handles, &config_json, "file change");
                }
            }
        }
    }
    eprintln!("draining...");
    for l in listeners {
        l.shutdown().await;
    }
    Ok(())
}

/// Re-reads and recompiles the configuration; on success the driver swaps meshes without
/// dropping requests in flight; on failure the old configuration stays and the error is printed.
fn reload(
    args: &ProxyArgs,
    handles: &[(String, driver::ProxyHandle)],
    json: &Mutex<serde_json::Value>,
    why: &str,
) {
    let file = args.config.display().to_string();
    let running = handles.first().map(|(_, h)| h.mesh());
    let loaded = load(args, true).and_then(|c| {
        Ok((
            c.compile(&file, running.as_deref())?,
            serde_json::to_value(&c)?,
        ))
    });
    match loaded {
        Ok((generation, value)) => {
            for (name, h) in handles {
                if let Err(e) = h.reload(generation.clone()) {
                    eprintln!("reload ({why}) of listener {name} refused: {e}");
                    return;
                }
            }
            if let Ok(mut j) = json.lock() {
                *j = applied(&j, value, &file);
            }
            eprintln!("reloaded {file} ({why})");
        }
        Err(e) => eprintln!("reload ({why}) rejected, keeping the running config: {e:#}"),
    }
}

/// What `/config` shows after a reload: the new file's `mesh` and `endpoints` (what a reload
/// applies) over the running config; the other sections (`listeners`, `admin`, `limits`,
/// `access_log`) apply at a restart, and a change to them is reported as not applied.
fn applied(running: &serde_json::Value, new: serde_json::Value, file: &str) -> serde_json::Value {
    let mut shown = running.clone();
    let (Some(shown_map), serde_json::Value::Object(new_map)) = (shown.as_object_mut(), new) else {
        return running.clone();
    };
    for (key, value) in new_map {
        if matches!(key.as_str(), "mesh" | "endpoints") {
            shown_map.insert(key, value);
        } else if shown_map.get(&key) != Some(&value) {
            eprintln!("{file}: `{key}` changed: it applies at a restart, not on reload");
        }
    }
    shown
}

#[cfg(unix)]
fn hangup() -> anyhow::Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::hangup(),
    )?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_reload_shows_the_new_mesh_and_endpoints_and_keeps_what_needs_a_restart() {
        let running = json!({"listeners": [{"bind": "127.0.0.1:8080"}], "mesh": {"a": 1},
            "endpoints": {"svc": []}, "access_log": false});
        let new = json!({"listeners": [{"bind": "127.0.0.1:9090"}], "mesh": {"a": 2},
            "endpoints": {"svc": [1]}, "access_log": true});
        let shown = super::applied(&running, new, "proxy.ron");
        assert_eq!(
            shown,
            json!({"listeners": [{"bind": "127.0.0.1:8080"}], "mesh": {"a": 2},
                "endpoints": {"svc": [1]}, "access_log": false})
        );
    }
}
