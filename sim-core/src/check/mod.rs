//! The semantic checks of a parsed scenario, those a type cannot express: references between
//! services, parameter ranges, names reports group by, call cycles, and the mesh compiling
//! against the modeled services. Each problem is located in the file's text (best effort).

use crate::dist::Dist;
use crate::load::{locate, ScenarioError};
use crate::scenario::{RateChange, RequestSpec, Scenario, Workload};
use proxy_engine::{CompiledMesh, Nanos};
use std::collections::BTreeMap;

mod service;
use service::{check_call_cycles, check_path, check_service};

/// Semantic checks of a parsed scenario; `text` is the source, used to locate the field.
pub fn validate(file: &str, text: &str, s: &Scenario) -> Result<(), ScenarioError> {
    check(s).map_err(|e| {
        let (line, col) = locate(text, &e.field, e.needle.as_deref());
        ScenarioError::Invalid {
            file: file.to_owned(),
            line,
            col,
            field: e.field,
            message: e.message,
        }
    })
}

/// A semantic problem: the field path, an optional literal to find in the source, and what is
/// wrong.
struct Problem {
    field: String,
    needle: Option<String>,
    message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        field: field.into(),
        needle: None,
        message: message.into(),
    }
}

fn unknown_service(field: String, host: &str, s: &Scenario) -> Problem {
    let known: Vec<&str> = s.services.keys().map(String::as_str).collect();
    Problem {
        field,
        needle: Some(format!("\"{host}\"")),
        message: format!(
            "unknown service `{host}`: expected one of the services defined under `services` ({})",
            known.join(", ")
        ),
    }
}

fn check_dist(field: String, d: &Dist) -> Result<(), Problem> {
    d.check().map_err(|m| problem(field, m))
}

/// Most time-series windows a run keeps (a day at the default 1 s window fits).
pub const MAX_WINDOWS: u64 = 100_000;
/// Highest arrival rate, requests per second: a mean gap of 100 ns. Faster, gaps round to
/// 0 ns and virtual time would stand still.
pub const MAX_RATE_PER_S: f64 = 1e7;
/// Most modeled instances in a scenario, all services together.
pub const MAX_INSTANCES: u64 = 100_000;

fn check(s: &Scenario) -> Result<(), Problem> {
    if s.duration.0 == 0 {
        return Err(problem("duration", "must be above 0"));
    }
    if s.window.0 == 0 {
        return Err(problem("window", "must be above 0"));
    }
    let windows = (s.duration.0.saturating_add(s.drain.0)) / s.window.0 + 1;
    if windows > MAX_WINDOWS {
        // The shortest window that fits, rounded up to a whole microsecond or millisecond.
        let least = (s.duration.0.saturating_add(s.drain.0)) / (MAX_WINDOWS - 1) + 1;
        let unit = if least >= 1_000_000 { 1_000_000 } else { 1_000 };
        let least = Nanos(least.div_ceil(unit).saturating_mul(unit));
        return Err(problem(
            "window",
            format!(
                "{} of load and drain in windows of {} would keep {windows} time-series \
                 windows; at most {MAX_WINDOWS} are kept: set `window` to at least {least}",
                Nanos(s.duration.0.saturating_add(s.drain.0)),
                s.window
            ),
        ));
    }
    let instances = s.instance_count();
    if instances > MAX_INSTANCES {
        return Err(problem(
            "services",
            format!("{instances} instances in all: at most {MAX_INSTANCES} are supported"),
        ));
    }
    for (i, f) in s.faults.iter().enumerate() {
        check_fault(s, i, f)?;
    }
    check_dist("network.latency".into(), &s.network.latency)?;
    if s.services.is_empty() {
        return Err(problem("services", "at least one service is required"));
    }
    for (name, svc) in &s.services {
        check_service(s, name, svc)?;
    }
    check_call_cycles(s)?;
    for (name, g) in &s.gateway_proxies {
        check_name(format!("gateway_proxies.{name}"), name, name)?;
        let workload = (s.workload.iter().enumerate()).any(|(i, w)| &w.name(i) == name);
        if workload || s.services.contains_key(name) {
            return Err(problem(
                format!("gateway_proxies.{name}"),
                format!("`{name}` is already the name of a service or workload"),
            ));
        }
        if let Some(service) = &g.service {
            check_gateway_service(s, name, g, service)?;
        }
    }
    if s.workload.is_empty() {
        return Err(problem("workload", "at least one workload is required"));
    }
    for (i, w) in s.workload.iter().enumerate() {
        check_workload(s, i, w)?;
    }
    check_mesh(s)?;
    check_timeline(s)?;
    match crate::delivery::problems(s) {
        Some((field, message)) => Err(problem(field, message)),
        None => Ok(()),
    }
}

/// Entries in time order within the run, each applying to the config before it and leaving
/// a mesh that compiles (an undefined subset in between is a hazard, reported as a warning).
fn check_timeline(s: &Scenario) -> Result<(), Problem> {
    check_dist("push_delay".into(), &s.push_delay)?;
    let end = s.duration.0.saturating_add(s.drain.0);
    for (i, pair) in s.timeline.windows(2).enumerate() {
        if pair[1].at < pair[0].at {
            return Err(problem(
                format!("timeline[{}].at", i + 1),
                format!(
                    "{} is before the entry above it ({}): list the changes in time order",
                    pair[1].at, pair[0].at
                ),
            ));
        }
    }
    if let Some((i, e)) = s.timeline.iter().enumerate().find(|(_, e)| e.at.0 >= end) {
        return Err(problem(
            format!("timeline[{i}].at"),
            format!(
                "{} is after the run ends ({} of load and {} of drain)",
                e.at, s.duration, s.drain
            ),
        ));
    }
    check_deployment(s)?;
    match crate::timeline::Generations::build(s, s.seed) {
        Ok(_) => Ok(()),
        Err(crate::timeline::TimelineError::Change { index, message }) => {
            Err(problem(format!("timeline[{index}].change"), message))
        }
        Err(crate::timeline::TimelineError::Compile { index, error }) => {
            let p = mesh_config_problem(&error);
            Err(problem(
                format!("timeline[{index}].change"),
                format!("the mesh after this change: {}: {}", p.field, p.message),
            ))
        }
    }
}

/// A mesh error or warning as a problem located in the scenario: the engine's message starts
/// with the field path inside the mesh; `needle` is the offending literal, when there is one.
fn mesh_problem(field: &str, needle: Option<String>, message: String) -> Problem {
    let message = message
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&message)
        .to_owned();
    Problem {
        field: format!("mesh.{field}"),
        needle,
        message,
    }
}

/// `e`, an error of the `mesh` of the file `file` holding `text`, located at its line and
/// column (best effort, as every semantic error).
pub fn mesh_error(file: &str, text: &str, e: &proxy_engine::ConfigError) -> ScenarioError {
    let p = mesh_config_problem(e);
    let (line, col) = locate(text, &p.field, p.needle.as_deref());
    ScenarioError::Invalid {
        file: file.to_owned(),
        line,
        col,
        field: p.field,
        message: p.message,
    }
}

fn mesh_config_problem(e: &proxy_engine::ConfigError) -> Problem {
    use proxy_engine::ConfigError as E;
    let needle = match e {
        E::UnknownHost { host, .. } | E::DuplicateHost { host, .. } => Some(format!("\"{host}\"")),
        E::BadRegex { pattern, .. } => Some(pattern.clone()),
        E::NoWeight { .. } | E::NoHosts { .. } | E::Invalid { .. } => None,
    };
    mesh_problem(e.field(), needle, e.to_string())
}

/// The mesh must compile against the modeled services, and without warnings: an undefined
/// subset would silently answer 503 NC, a gateway name with a typo or a host no gateway
/// server serves would silently route nothing, so a scenario treats them as errors.
fn check_mesh(s: &Scenario) -> Result<(), Problem> {
    use proxy_engine::ConfigWarning as W;
    let registry = crate::topology::Topology::of(s).registry();
    let mesh = CompiledMesh::compile(&s.mesh, &registry).map_err(|e| mesh_config_problem(&e))?;
    match mesh.warnings().first() {
        Some(w @ W::UndefinedSubset { field, subset, .. }) => Err(mesh_problem(
            field,
            Some(format!("\"{subset}\"")),
            w.to_string(),
        )),
        Some(w @ W::UnknownGateway { field, gateway }) => {
            let name = gateway.rsplit('/').next().unwrap_or(gateway);
            Err(mesh_problem(
                field,
                Some(format!("\"{name}")),
                w.to_string(),
            ))
        }
        Some(w @ W::HostNotInGateway { field, host, .. }) => Err(mesh_problem(
            field,
            Some(format!("\"{host}\"")),
            w.to_string(),
        )),
        None => Ok(()),
    }
}

/// A service or version name reports can group by: not empty, no `/` (it joins service and
/// version) or `|` (it joins service and subset), no spaces or control characters.
fn check_name(field: String, needle: &str, name: &str) -> Result<(), Problem> {
    let bad = name
        .chars()
        .find(|c| matches!(c, '/' | '|') || c.is_whitespace() || c.is_control());
    if name.is_empty() || bad.is_some() {
        return Err(Problem {
            field,
            needle: Some(format!("\"{needle}\"")),
            message: format!(
                "`{name}` is not a usable name: expected letters, digits, `-`, `_` or `.` \
                 (no `/`, `|`, spaces or control characters)"
            ),
        });
    }
    Ok(())
}

/// An HTTP status a service can answer with: 200..=599 (live mode serves it for real).
fn check_status(field: String, status: u16) -> Result<(), Problem> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(problem(
            field,
            format!("an HTTP status 200..=599 is expected, found {status}"),
        ))
    }
}

/// A method that is a valid HTTP token (RFC 9110 §5.6.2).
fn check_method(field: String, method: &str) -> Result<(), Problem> {
    if !method.is_empty() && method.bytes().all(is_tchar) {
        Ok(())
    } else {
        Err(problem(
            field,
            format!("an HTTP method (a token such as `GET`) is expected, found `{method}`"),
        ))
    }
}

/// Headers a real request can carry: names are tokens, values have no CR, LF or NUL.
fn check_headers(field: &str, headers: &BTreeMap<String, String>) -> Result<(), Problem> {
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(Problem {
                field: format!("{field}.{name}"),
                needle: Some(format!("\"{name}\"")),
                message: format!("`{name}` is not a valid HTTP header name (RFC 9110 token)"),
            });
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(problem(
                format!("{field}.{name}"),
                "a header value may not hold control characters (CR, LF, NUL…)",
            ));
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_workload(s: &Scenario, i: usize, w: &Workload) -> Result<(), Problem> {
    let at = format!("workload[{i}]");
    match w.via() {
        Some(via) => check_entry(s, &format!("{at}.via"), via)?,
        None if !s.services.contains_key(w.host()) => {
            return Err(unknown_service(format!("{at}.host"), w.host(), s));
        }
        None => {}
    }
    match w {
        Workload::OpenLoop(o) => {
            check_rate(format!("{at}.rate"), o.rate)?;
            let mut last = proxy_engine::Nanos::ZERO;
            for (j, change) in o.schedule.iter().enumerate() {
                let field = format!("{at}.schedule[{j}]");
                let (start, end, rate) = match change {
                    RateChange::Step { at, rate } => (*at, *at, *rate),
                    RateChange::Ramp { from, to, rate } => (*from, *to, *rate),
                };
                check_rate(format!("{field}.rate"), rate)?;
                if end < start {
                    return Err(problem(field, "a ramp must end after it starts"));
                }
                if start < last {
                    return Err(problem(
                        field,
                        "schedule entries must be in time order and not overlap",
                    ));
                }
                last = end;
            }
        }
        Workload::ClosedLoop(c) => {
            if c.users == 0 {
                return Err(problem(format!("{at}.users"), "must be at least 1"));
            }
            check_dist(format!("{at}.think"), &c.think)?;
            if c.iterations == Some(0) {
                return Err(problem(format!("{at}.iterations"), "must be at least 1"));
            }
            if c.start.0 >= s.duration.0 {
                return Err(problem(
                    format!("{at}.start"),
                    format!(
                        "the users must start within the load phase (`duration` is \"{}\")",
                        s.duration
                    ),
                ));
            }
        }
    }
    check_mix(&at, w.requests())
}

/// A gateway proxy's service: a name of its own, a `Gateway` server of the proxy on its port,
/// and routes to it that name no other port (the twin's gateway service has the one).
fn check_gateway_service(
    s: &Scenario,
    name: &str,
    g: &crate::scenario::GatewayProxy,
    service: &crate::scenario::GatewayService,
) -> Result<(), Problem> {
    let at = format!("gateway_proxies.{name}.service");
    check_name(format!("{at}.name"), &service.name, &service.name)?;
    let other_gateway = (s.gateway_proxies.iter())
        .any(|(n, o)| n != name && o.service.as_ref().is_some_and(|o| o.name == service.name));
    if s.services.contains_key(&service.name) || other_gateway {
        return Err(problem(
            format!("{at}.name"),
            format!("`{}` is already a service's name", service.name),
        ));
    }
    if g.server(&s.mesh, service.port).is_none() {
        return Err(problem(
            format!("{at}.port"),
            format!(
                "no Gateway server of gateway proxy `{name}` listens on port {} (sidecars \
                 sending to `{}` would be refused)",
                service.port, service.name
            ),
        ));
    }
    for (v, vs) in s.mesh.virtual_services.iter().enumerate() {
        for (r, route) in vs.http.iter().enumerate() {
            for (d, dest) in route.route.iter().enumerate() {
                let port = dest.destination.port;
                if dest.destination.host == service.name && port.is_some_and(|p| p != service.port)
                {
                    return Err(problem(
                        format!("mesh.virtual_services[{v}].http[{r}].route[{d}].destination.port"),
                        format!(
                            "`{}` (gateway proxy `{name}`) is reached on port {} only, found {}",
                            service.name,
                            service.port,
                            port.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A workload's entry: a gateway proxy of the scenario with a `Gateway` server on the port
/// (else a client's connection would be refused), TLS as the server speaks it.
fn check_entry(s: &Scenario, at: &str, via: &crate::scenario::Entry) -> Result<(), Problem> {
    let Some(g) = s.gateway_proxies.get(&via.gateway) else {
        let known: Vec<&str> = s.gateway_proxies.keys().map(String::as_str).collect();
        return Err(Problem {
            field: format!("{at}.gateway"),
            needle: Some(format!("\"{}\"", via.gateway)),
            message: format!(
                "unknown gateway proxy `{}`: expected one of those under `gateway_proxies` ({})",
                via.gateway,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        });
    };
    let Some(server) = g.server(&s.mesh, via.port) else {
        return Err(problem(
            format!("{at}.port"),
            format!(
                "no Gateway server of gateway proxy `{}` listens on port {} (a client's \
                 connection would be refused)",
                via.gateway, via.port
            ),
        ));
    };
    let https = server.port.protocol.eq_ignore_ascii_case("HTTPS");
    if https != via.tls {
        let message = if https {
            format!("port {} is an HTTPS server: set `tls: true`", via.port)
        } else {
            format!(
                "port {} is a plain-text server: the TLS handshake would fail",
                via.port
            )
        };
        return Err(problem(format!("{at}.tls"), message));
    }
    Ok(())
}

fn check_rate(field: String, rate: f64) -> Result<(), Problem> {
    if rate.is_finite() && (0.0..=MAX_RATE_PER_S).contains(&rate) {
        Ok(())
    } else {
        Err(problem(
            field,
            format!(
                "a rate from 0 to {MAX_RATE_PER_S:e} requests per second is expected (a mean \
                 gap of at least 100 ns), found {rate}"
            ),
        ))
    }
}

fn check_mix(at: &str, mix: &[RequestSpec]) -> Result<(), Problem> {
    for (j, r) in mix.iter().enumerate() {
        check_path(format!("{at}.requests[{j}].path"), &r.path)?;
        check_method(format!("{at}.requests[{j}].method"), &r.method)?;
        check_headers(&format!("{at}.requests[{j}].headers"), &r.headers)?;
    }
    let total: u64 = mix.iter().map(|r| u64::from(r.weight)).sum();
    if total > u64::from(u32::MAX) {
        return Err(problem(
            format!("{at}.requests"),
            format!(
                "the weights add up to {total}: at most {} is supported",
                u32::MAX
            ),
        ));
    }
    if !mix.is_empty() && mix.iter().all(|r| r.weight == 0) {
        return Err(problem(
            format!("{at}.requests"),
            "at least one request needs a weight above 0",
        ));
    }
    Ok(())
}

fn check_fault(s: &Scenario, i: usize, f: &crate::scenario::Fault) -> Result<(), Problem> {
    use crate::scenario::FaultKind;
    let at = format!("faults[{i}]");
    let t = &f.target;
    let Some(svc) = s.services.get(&t.service) else {
        return Err(unknown_service(
            format!("{at}.target.service"),
            &t.service,
            s,
        ));
    };
    let instances = match &t.version {
        Some(v) => match svc.versions.get(v) {
            Some(m) => m.instances,
            None => {
                let known: Vec<&str> = svc.versions.keys().map(String::as_str).collect();
                return Err(Problem {
                    field: format!("{at}.target.version"),
                    needle: Some(format!("\"{v}\"")),
                    message: format!(
                        "unknown version `{v}` of `{}`: expected one of {}",
                        t.service,
                        known.join(", ")
                    ),
                });
            }
        },
        None => svc.versions.values().map(|m| m.instances).sum(),
    };
    if let Some(n) = t.instance {
        if n >= instances {
            return Err(problem(
                format!("{at}.target.instance"),
                format!("instance {n} does not exist: expected an index below {instances}"),
            ));
        }
    }
    if f.length.is_some_and(|l| l.0 == 0) {
        return Err(problem(format!("{at}.length"), "must be above 0"));
    }
    match &f.kind {
        FaultKind::Errors {
            probability,
            status,
        } => {
            if !(0.0..=1.0).contains(probability) {
                return Err(problem(
                    format!("{at}.kind.probability"),
                    format!("a probability between 0 and 1 is expected, found {probability}"),
                ));
            }
            check_status(format!("{at}.kind.status"), *status)?;
        }
        FaultKind::Latency(d) => check_dist(format!("{at}.kind"), d)?,
        FaultKind::Partition { from } => {
            let known = s.services.contains_key(from)
                || s.workload
                    .iter()
                    .enumerate()
                    .any(|(j, w)| &w.name(j) == from);
            if !known {
                return Err(Problem {
                    field: format!("{at}.kind.from"),
                    needle: Some(format!("\"{from}\"")),
                    message: format!(
                        "unknown caller `{from}`: expected a service or a workload name"
                    ),
                });
            }
        }
        FaultKind::SlowStart { factor } => {
            if !(factor.is_finite() && *factor >= 1.0) {
                return Err(problem(
                    format!("{at}.kind.factor"),
                    format!("a slowdown factor of at least 1 is expected, found {factor}"),
                ));
            }
            if f.length.is_none() {
                return Err(problem(
                    format!("{at}.length"),
                    "a slow start needs a length (the time to warm up)",
                ));
            }
        }
        FaultKind::Crash | FaultKind::Hang => {}
    }
    Ok(())
}

/// The timeline's deployment changes name services and versions that exist at that point
/// (`AddVersion` a new one), with valid models and distributions.
fn check_deployment(s: &Scenario) -> Result<(), Problem> {
    use crate::scenario::Change;
    let mut versions: std::collections::BTreeSet<(String, String)> = (s.services.iter())
        .flat_map(|(name, svc)| svc.versions.keys().map(move |v| (name.clone(), v.clone())))
        .collect();
    for (i, entry) in s.timeline.iter().enumerate() {
        let field = format!("timeline[{i}].change");
        let (service, version) = match &entry.change {
            Change::Scale {
                service,
                version,
                startup,
                ..
            } => {
                check_dist(format!("{field}.startup"), startup)?;
                (service, version)
            }
            Change::RemoveVersion {
                service, version, ..
            } => (service, version),
            Change::AddVersion {
                service,
                version,
                spec,
                startup,
            } => {
                check_dist(format!("{field}.startup"), startup)?;
                check_dist(format!("{field}.spec.latency"), &spec.latency)?;
                if !s.services.contains_key(service) {
                    return Err(problem(
                        format!("{field}.service"),
                        format!("no service `{service}` to add a version to"),
                    ));
                }
                if spec.workers == 0 {
                    return Err(problem(
                        format!("{field}.spec.workers"),
                        "must be at least 1",
                    ));
                }
                if !versions.insert((service.clone(), version.clone())) {
                    return Err(problem(
                        format!("{field}.version"),
                        format!("`{service}` already has a version `{version}`"),
                    ));
                }
                continue;
            }
            _ => continue,
        };
        if !versions.contains(&(service.clone(), version.clone())) {
            let known: Vec<String> = (versions.iter())
                .filter(|(s, _)| s == service)
                .map(|(_, v)| v.clone())
                .collect();
            return Err(problem(
                format!("{field}.version"),
                format!(
                    "`{service}` has no version `{version}` at this point (versions: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if matches!(entry.change, Change::RemoveVersion { .. }) {
            versions.remove(&(service.clone(), version.clone()));
        }
    }
    Ok(())
}
