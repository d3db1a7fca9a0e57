//! Argument parsing (clap derive) and one module per subcommand.

mod analyze;
mod cert;
mod compare;
mod gate;
mod istio;
mod load;
mod look;
mod proxy;
mod run;
mod serve;
mod sweep;
mod test;
mod validate;

use clap::{Parser, Subcommand};

/// meshtwin: a deterministic digital twin of a service mesh, and a load-testing lab.
///
/// Describe services, their versions, the traffic policy (Istio-style virtual services and
/// destination rules) and the load in a scenario file (RON); meshtwin simulates it with a seeded
/// discrete-event simulator driving the real proxy engine and reports what users would see. The
/// same engine runs live as a real HTTP proxy, so the twin can be checked against reality.
#[derive(Debug, Parser)]
#[command(name = "meshtwin", version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Colour the text output: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    color: look::ColorWhen,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a scenario (or run it live on loopback) and print a summary.
    ///
    /// Example: meshtwin run scenarios/basic.ron --json report.json
    Run(run::RunArgs),
    /// Check a scenario file (syntax, types, references, mesh config) without running it.
    ///
    /// Example: meshtwin validate scenarios/basic.ron
    Validate(validate::ValidateArgs),
    /// Run the proxy engine as a real HTTP proxy (HTTP/1.1, h2c, TLS) with an admin endpoint.
    ///
    /// Example: meshtwin proxy --config proxy.ron --endpoints endpoints.ron
    Proxy(proxy::ProxyArgs),
    /// Run a scenario's services as real HTTP servers on loopback, each behind its sidecar.
    ///
    /// Example: meshtwin serve scenarios/basic.ron
    Serve(serve::ServeArgs),
    /// Open-loop HTTP load (wrk2-style, coordinated-omission corrected) with the report schema.
    ///
    /// Example: meshtwin load http://127.0.0.1:8080/ --rate 500 --duration 30s --connections 8
    Load(load::LoadArgs),
    /// Check a JSON report against thresholds and, with --baseline, against a stored report.
    ///
    /// Exit 0 when every gate holds, 99 on a breach, 104 for a gate that cannot be evaluated,
    /// 65 for a report that cannot be read.
    ///
    /// Example: meshtwin check new.json --threshold 'p99_ms < 250' --baseline main.json
    /// --max-increase p99_ms=5%
    Check(gate::CheckArgs),
    /// Compare two JSON reports: the key figures per route and destination, with deltas.
    ///
    /// Example: meshtwin compare sim.json live.json --html compare.html
    Compare(compare::CompareArgs),
    /// Simulate a grid of settings × seeds on all cores; CSV, JSON and an HTML plot per metric.
    ///
    /// Example: meshtwin sweep scenarios/retry-storm.ron --set
    /// 'mesh.virtual_services[0].http[0].retries.attempts=0,1,2,3' --seeds 10 -o sweep
    Sweep(sweep::SweepArgs),
    /// Diagnostics in the shape of `istioctl analyze` (IST codes a twin can reproduce, and
    /// meshtwin's MT codes), over a scenario's mesh or --istio YAML.
    ///
    /// Exit 0 when clean, 79 when a message reaches --failure-threshold, 65 for an input that
    /// cannot be read.
    ///
    /// Example: meshtwin analyze scenarios/bookinfo.ron --istio samples/bookinfo/networking/
    Analyze(analyze::AnalyzeArgs),
    /// Import Istio YAML (VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar)
    /// as a meshtwin mesh config (RON), with a warning per field meshtwin does not model.
    ///
    /// Example: meshtwin import samples/bookinfo/networking/ -o mesh.ron
    Import(istio::ImportArgs),
    /// Route unit tests (the istio-config-validator format) against the engine's routing,
    /// with route coverage as Envoy's router_check_tool reports it.
    ///
    /// Exit 0 when every case passes and coverage reaches --fail-under, 1 when a case fails
    /// or coverage is under, 65 for a test or config file that cannot be read.
    ///
    /// Example: meshtwin test tests/routes/ --istio samples/bookinfo/networking/ --fail-under 80
    Test(test::TestArgs),
    /// Write a self-signed certificate and key (PEM) for a TLS listener.
    ///
    /// Example: meshtwin cert --cert cert.pem --key key.pem
    Cert(cert::CertArgs),
}

/// Runs the chosen subcommand.
pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<()> {
    look::set(cli.color);
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::validate(args),
        Command::Proxy(args) => proxy::proxy(args),
        Command::Serve(args) => serve::serve(args),
        Command::Load(args) => load::load(args),
        Command::Check(args) => gate::check(args),
        Command::Compare(args) => compare::compare(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Import(args) => istio::run_import(args),
        Command::Analyze(args) => analyze::analyze(args),
        Command::Test(args) => test::test(args),
        Command::Cert(args) => cert::cert(args),
    }
}

pub(crate) use gate::Exit;

/// A tokio runtime with `workers` threads (0 = one per core). One worker means a
/// current-thread runtime: no work-stealing machinery, as an Envoy or HAProxy worker.
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                b.worker_threads(n);
            }
            b
        }
    };
    Ok(b.enable_all().build()?)
}

/// Parses a duration flag such as `30s`.
fn parse_duration(s: &str) -> Result<proxy_engine::Nanos, String> {
    proxy_engine::Nanos::parse(s).map_err(|e| e.to_string())
}

/// Waits for ctrl-c or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
