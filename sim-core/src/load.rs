//! Reading a scenario file: RON syntax and types (with the path of the offending field), then
//! the semantic checks a type cannot express (references between services, parameter ranges,
//! the mesh compiling against the modeled services). Every error names the file, line, column
//! and field.

use crate::dist::Dist;
use crate::model;
use crate::scenario::{CallStep, RateChange, RequestSpec, Scenario, Workload};
use proxy_engine::CompiledMesh;
use ron::extensions::Extensions;
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

/// A scenario that cannot be used.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read the scenario: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not describe a valid scenario.
    #[error("{file}:{line}:{col}: {field}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the problem (best effort for semantic errors).
        line: usize,
        /// 1-based column.
        col: usize,
        /// Path of the offending field, e.g. `services.backend.versions.v1.instances`.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
}

/// Reads, parses and checks the scenario at `path`. The scenario name defaults to the file
/// stem.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        file: file.clone(),
        source,
    })?;
    let mut scenario = parse(&file, &text)?;
    if scenario.name.is_none() {
        scenario.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    validate(&file, &text, &scenario)?;
    Ok(scenario)
}

/// Parses scenario text (syntax and types only). `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    parse_as(file, text)
}

/// Parses any meshtwin RON file (scenario, proxy config, endpoints) with the same extensions and
/// the same file:line:column field errors.
pub fn parse_as<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ScenarioError> {
    // `implicit_some`: optional fields are written bare, not as `Some(..)`;
    // `unwrap_variant_newtypes`: `Call(host: "x")` instead of `Call(Call(host: "x"))`.
    let options = ron::Options::default()
        .with_default_extension(Extensions::IMPLICIT_SOME)
        .with_default_extension(Extensions::UNWRAP_VARIANT_NEWTYPES);
    let invalid = |span: ron::error::Span, field: String, message: String| ScenarioError::Invalid {
        file: file.to_owned(),
        line: span.start.line,
        col: span.start.col,
        field,
        message,
    };
    let mut de = ron::Deserializer::from_str_with_options(text, &options)
        .map_err(|e| invalid(e.span, "(syntax)".into(), e.code.to_string()))?;
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match result {
        Ok(s) => {
            de.end().map_err(|code| {
                let e = de.span_error(code);
                invalid(e.span, "(syntax)".into(), e.code.to_string())
            })?;
            Ok(s)
        }
        Err(err) => {
            let path = err.path().to_string();
            let field = if path == "." {
                "(top level)".into()
            } else {
                path
            };
            let code = err.into_inner();
            let spanned = de.span_error(code);
            Err(invalid(spanned.span, field, explain(&spanned.code)))
        }
    }
}

/// ron's message, with what was expected where ron leaves it out.
fn explain(code: &ron::Error) -> String {
    match code {
        ron::Error::IntegerOutOfBounds => "integer out of range: expected a whole number \
            that fits the field (counts, weights and rates cannot be negative)"
            .into(),
        ron::Error::ExpectedInteger => "expected an integer (a whole number, no quotes)".into(),
        other => other.to_string(),
    }
}

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

fn check(s: &Scenario) -> Result<(), Problem> {
    if s.duration.0 == 0 {
        return Err(problem("duration", "must be above 0"));
    }
    if s.window.0 == 0 {
        return Err(problem("window", "must be above 0"));
    }
    if !s.timeline.is_empty() {
        return Err(problem(
            "timeline",
            "a timeline is not supported yet; leave it empty",
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
    if s.workload.is_empty() {
        return Err(problem("workload", "at least one workload is required"));
    }
    for (i, w) in s.workload.iter().enumerate() {
        check_workload(s, i, w)?;
    }
    check_mesh(s)
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

/// The mesh must compile against the modeled services, and without warnings: an undefined
/// subset would silently answer 503 NC, so a scenario treats it as an error.
fn check_mesh(s: &Scenario) -> Result<(), Problem> {
    use proxy_engine::{ConfigError as E, ConfigWarning as W};
    let registry = model::registry(s);
    let mesh = CompiledMesh::compile(&s.mesh, &registry).map_err(|e| {
        let needle = match &e {
            E::UnknownHost { host, .. } | E::DuplicateHost { host, .. } => {
                Some(format!("\"{host}\""))
            }
            E::BadRegex { pattern, .. } => Some(pattern.clone()),
            E::NoWeight { .. } | E::NoHosts { .. } | E::Invalid { .. } => None,
        };
        mesh_problem(e.field(), needle, e.to_string())
    })?;
    match mesh.warnings().first() {
        Some(w @ W::UndefinedSubset { field, subset, .. }) => Err(mesh_problem(
            field,
            Some(format!("\"{subset}\"")),
            w.to_string(),
        )),
        None => Ok(()),
    }
}

fn check_service(s: &Scenario, name: &str, svc: &crate::scenario::Service) -> Result<(), Problem> {
    let at = format!("services.{name}");
    if svc.versions.is_empty() {
        return Err(problem(
            format!("{at}.versions"),
            "at least one version is required",
        ));
    }
    for (vname, v) in &svc.versions {
        let vat = format!("{at}.versions.{vname}");
        if v.instances == 0 {
            return Err(problem(format!("{vat}.instances"), "must be at least 1"));
        }
        if v.workers == 0 {
            return Err(problem(format!("{vat}.workers"), "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&v.errors) {
            return Err(problem(
                format!("{vat}.errors"),
                format!(
                    "a probability between 0 and 1 is expected, found {}",
                    v.errors
                ),
            ));
        }
        if !(100..=599).contains(&v.error_status) {
            return Err(problem(
                format!("{vat}.error_status"),
                format!(
                    "an HTTP status 100..=599 is expected, found {}",
                    v.error_status
                ),
            ));
        }
        check_dist(format!("{vat}.latency"), &v.latency)?;
    }
    for (i, step) in svc.calls.iter().enumerate() {
        let calls = match step {
            CallStep::Call(c) => std::slice::from_ref(c),
            CallStep::Parallel(cs) => cs.as_slice(),
        };
        if calls.is_empty() {
            return Err(problem(
                format!("{at}.calls[{i}]"),
                "a Parallel step needs at least one call",
            ));
        }
        for c in calls {
            if !s.services.contains_key(&c.host) {
                return Err(unknown_service(format!("{at}.calls[{i}].host"), &c.host, s));
            }
            check_path(format!("{at}.calls[{i}].path"), &c.path)?;
        }
    }
    Ok(())
}

fn check_path(field: String, path: &str) -> Result<(), Problem> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(problem(
            field,
            format!("a path starting with `/` is expected, found `{path}`"),
        ))
    }
}

/// A handler that (transitively) calls itself would never finish: reject call cycles.
fn check_call_cycles(s: &Scenario) -> Result<(), Problem> {
    let callees = |name: &str| -> Vec<&str> {
        s.services[name]
            .calls
            .iter()
            .flat_map(|step| match step {
                CallStep::Call(c) => std::slice::from_ref(c),
                CallStep::Parallel(cs) => cs.as_slice(),
            })
            .map(|c| c.host.as_str())
            .collect()
    };
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        name: &'a str,
        callees: &dyn Fn(&str) -> Vec<&'a str>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<String> {
        match state.get(name) {
            Some(2) => return None,
            Some(1) => {
                stack.push(name);
                return Some(stack.join(" -> "));
            }
            _ => {}
        }
        state.insert(name, 1);
        stack.push(name);
        for c in callees(name) {
            if let Some(cycle) = visit(c, callees, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(name, 2);
        None
    }
    for name in s.services.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(name, &callees, &mut state, &mut stack) {
            return Err(problem(
                format!("services.{name}.calls"),
                format!("call cycle {cycle}: a handler that calls itself never finishes"),
            ));
        }
    }
    Ok(())
}

fn check_workload(s: &Scenario, i: usize, w: &Workload) -> Result<(), Problem> {
    let at = format!("workload[{i}]");
    if !s.services.contains_key(w.host()) {
        return Err(unknown_service(format!("{at}.host"), w.host(), s));
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
        }
    }
    check_mix(&at, w.requests())
}

fn check_rate(field: String, rate: f64) -> Result<(), Problem> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(())
    } else {
        Err(problem(
            field,
            format!("a rate >= 0 requests per second is expected, found {rate}"),
        ))
    }
}

fn check_mix(at: &str, mix: &[RequestSpec]) -> Result<(), Problem> {
    for (j, r) in mix.iter().enumerate() {
        check_path(format!("{at}.requests[{j}].path"), &r.path)?;
        if r.method.is_empty() {
            return Err(problem(
                format!("{at}.requests[{j}].method"),
                "must not be empty",
            ));
        }
    }
    if !mix.is_empty() && mix.iter().all(|r| r.weight == 0) {
        return Err(problem(
            format!("{at}.requests"),
            "at least one request needs a weight above 0",
        ));
    }
    Ok(())
}

/// Best-effort source position of `field` (a dotted path such as
/// `services.backend.versions.v1.instances`): each segment is searched for, as a quoted map key
/// or as `name:`, after the previous one; then `needle`, if given. Falls back to 1:1.
fn locate(text: &str, field: &str, needle: Option<&str>) -> (usize, usize) {
    let mut cursor = 0;
    let mut found = None;
    for seg in field.split('.') {
        let name = seg.split('[').next().unwrap_or(seg);
        if name.is_empty() {
            continue;
        }
        let candidates = [
            format!("\"{name}\""),
            format!("{name}:"),
            format!("{name} :"),
        ];
        let hit = candidates
            .iter()
            .filter_map(|c| text[cursor..].find(c.as_str()).map(|p| cursor + p))
            .min();
        if let Some(p) = hit {
            cursor = p;
            found = Some(p);
        }
    }
    if let Some(n) = needle {
        if let Some(p) = text[cursor..].find(n) {
            found = Some(cursor + p);
        }
    }
    let Some(offset) = found else {
        return (1, 1);
    };
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
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
            if !(100..=599).contains(status) {
                return Err(problem(
                    format!("{at}.kind.status"),
                    format!("an HTTP status 100..=599 is expected, found {status}"),
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_follows_the_path() {
        let text = "Scenario(\n  services: {\n    \"a\": (x: 1),\n    \"b\": (x: 2),\n  },\n)";
        assert_eq!(locate(text, "services.b.x", None), (4, 11));
        assert_eq!(locate(text, "nothing", None), (1, 1));
    }
}
