//! `meshtwin load URL --rate R --duration D --connections C`.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use live::loadgen::{self, LoadOptions, Progress};
use proxy_engine::Nanos;
use reports::text::{summary, WallClock};
use reports::{Report, RunInfo};
use sim_core::scenario::{Arrivals, RequestSpec};
use sim_core::workload::Mix;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Arrival spacing.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ArrivalsArg {
    /// Evenly spaced (wrk2).
    Constant,
    /// Exponential gaps.
    Poisson,
}

/// Arguments of `meshtwin load`.
#[derive(Debug, Args)]
pub(super) struct LoadArgs {
    /// Target, e.g. http://127.0.0.1:8080/productpage (the authority becomes the Host header).
    url: String,
    /// Requests per second (total over all connections).
    #[arg(long)]
    rate: f64,
    /// How long to send, e.g. 30s.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    duration: Nanos,
    /// Connections opened before the first send; each carries one request at a time, and
    /// another is opened when all are busy (the load stays open loop).
    #[arg(long, short, default_value_t = 8)]
    connections: usize,
    /// Most connections open at once; a request due when all are busy is then dropped and
    /// counted (`dropped`, as k6's `dropped_iterations`).
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Extra header, `name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Host header to send instead of the URL's authority.
    #[arg(long)]
    host: Option<String>,
    /// Arrival spacing.
    #[arg(long, value_enum, default_value = "constant")]
    arrivals: ArrivalsArg,
    /// After the duration, how long to wait for outstanding responses.
    #[arg(long, value_parser = super::parse_duration, default_value = "10s")]
    drain: Nanos,
    /// Write the JSON report here (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the HTML report (one self-contained file with charts) here.
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
    /// No progress line or summary.
    #[arg(long, short)]
    quiet: bool,
    /// Seed of the arrival streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    gates: super::gate::GateArgs,
}

/// Splits `http://host:port/path` into authority and path.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// URLs are supported (expected http://HOST:PORT/PATH)");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        bail!("{url}: missing host");
    }
    Ok((authority.to_owned(), path.to_owned()))
}

/// Runs the load, prints a progress line each second and a summary, writes the JSON report.
pub(super) fn load(args: LoadArgs) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be a number above 0, found {}", args.rate);
    }
    let thresholds = super::gate::prepare(None, &[], &args.gates)?;
    let (authority, path) = split_url(&args.url)?;
    let with_port = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    let target = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {with_port}"))?
        .next()
        .with_context(|| format!("{with_port} resolves to nothing"))?;
    let mut headers = BTreeMap::new();
    let mut host = args.host.clone();
    for h in &args.headers {
        let Some((k, v)) = h.split_once(':') else {
            bail!("--header {h:?}: expected `name: value`");
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("host") {
            // As with wrk, curl and fortio: `-H "Host: x"` replaces the URL's authority.
            if host.as_deref().is_some_and(|h| h != v) {
                bail!(
                    "--header {h:?} contradicts --host {:?}",
                    host.unwrap_or_default()
                );
            }
            host = Some(v.to_owned());
            continue;
        }
        headers.insert(k.to_owned(), v.to_owned());
    }
    let spec = RequestSpec {
        weight: 1,
        method: "GET".into(),
        path,
        headers,
    };
    let host = host.unwrap_or(authority);
    let opts = LoadOptions {
        target,
        tls: None,
        mix: Mix::new(&host, "loadgen", &[spec]),
        rate: args.rate,
        schedule: Vec::new(),
        arrivals: match args.arrivals {
            ArrivalsArg::Constant => Arrivals::Constant,
            ArrivalsArg::Poisson => Arrivals::Poisson,
        },
        duration: Duration::from_nanos(args.duration.0),
        drain: Duration::from_nanos(args.drain.0),
        connections: args.connections,
        max_connections: args.max_connections.max(1),
        seed: args.seed,
        window: Nanos::from_secs(1),
    };
    let progress = Arc::new(Progress::default());
    let show = !args.quiet && std::io::stderr().is_terminal();
    let mut info = RunInfo {
        scenario: args.url.clone(),
        seed: args.seed,
        duration_ns: args.duration.0,
        mode: "live",
    };
    let watch = super::gate::AbortWatch::new(&thresholds, info.clone());
    let started = Instant::now();
    let run = super::runtime(1)?.block_on(async {
        let run = tokio::spawn(loadgen::run(opts, progress.clone()));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut next_watch = started + live::lab::WATCH_PERIOD;
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => break r.map_err(anyhow::Error::from)
                    .and_then(|r| r.map_err(anyhow::Error::from)),
                _ = tick.tick() => {
                    let now = Instant::now();
                    if let Some(w) = watch.as_ref().filter(|_| now >= next_watch && !progress.stopped()) {
                        next_watch += live::lab::WATCH_PERIOD;
                        if w.check(&progress.snapshot().into_metrics(), now - started) {
                            progress.stop();
                        }
                    }
                    if show {
                        let p = &progress;
                        let stopping = if p.stopped() { "  stopping: a threshold was crossed" } else { "" };
                        eprint!("\r{:>6.1}s sent {} done {} errors {}{stopping}   ", started.elapsed().as_secs_f64(),
                            p.sent.load(Ordering::Relaxed), p.done.load(Ordering::Relaxed), p.errors.load(Ordering::Relaxed));
                    }
                }
            }
        }
    })?;
    if show {
        eprintln!();
    }
    let aborted = watch.and_then(|w| w.fired.lock().ok().and_then(|a| a.clone()));
    if let Some(a) = &aborted {
        info.duration_ns = a.after.as_nanos() as u64;
    }
    let report = Report::new(&info, &run.metrics);
    if !args.quiet {
        let wall = WallClock {
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        let look = super::look::of(super::run::summary_stream(args.json.as_deref()));
        let mut text = summary(&report, Some(wall), &look);
        let l = &run.lateness;
        if !l.is_empty() {
            let us = |q: f64| l.value_at_quantile(q) as f64 / 1e3;
            text += &format!(
                "send lateness µs (behind the intended send time)  p50 {:.1}  p99 {:.1}  max {:.1}\n",
                us(0.5),
                us(0.99),
                l.max() as f64 / 1e3
            );
        }
        super::run::print_summary(&text, args.json.as_deref())?;
    }
    let outputs = super::run::Outputs {
        json: args.json.as_deref(),
        html: args.html.as_deref(),
        quiet: args.quiet,
        aborted,
    };
    outputs.write(&report, &thresholds, &args.gates)
}
