//! Reading a scenario file: RON syntax and types (with the path of the offending field), then
//! the semantic checks a type cannot express (in `check`: references between services,
//! parameter ranges, the mesh compiling against the modeled services). Every error names the
//! file, line, column and field.

use crate::overlay::{Overlay, State};
use crate::scenario::Scenario;
use crate::setting::Setting;
use ron::extensions::Extensions;
use std::path::Path;
use thiserror::Error;

pub use crate::check::{mesh_error, validate, MAX_INSTANCES, MAX_RATE_PER_S, MAX_WINDOWS};

/// A scenario that cannot be used.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read the {what}: {reason}")]
    Read {
        /// The file.
        file: String,
        /// What the file was to hold (`scenario`, `proxy config`…).
        what: &'static str,
        /// Why (not a `source`: the message already says it, and error chains would print
        /// it twice).
        reason: std::io::Error,
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
    /// A `--set` that names no field of the scenario, or names one twice.
    #[error("--set {setting}: {message}")]
    Setting {
        /// The setting as written.
        setting: String,
        /// Why it cannot be applied, with the names found where its path left the file.
        message: String,
    },
}

/// Reads, parses and checks the scenario at `path`. The scenario name defaults to the file
/// stem.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    load_with(path, &[])
}

/// [`load`] with `settings` applied (`--set`): each replaces the value at its path before the
/// checks, so a set value is checked as a written one.
pub fn load_with(path: &Path, settings: &[Setting]) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = read_text(path, "scenario")?;
    let mut scenario: Scenario = parse_with(&file, &text, settings)?;
    if scenario.name.is_none() {
        scenario.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    }
    shorten_hosts(&mut scenario);
    validate(&file, &text, &scenario)?;
    Ok(scenario)
}

/// Rewrites the mesh hosts that name a modeled service (or gateway service) by its Kubernetes
/// name (`reviews.default.svc.cluster.local`) to its short name, in the mesh and in the
/// objects the timeline applies (see `proxy_engine::hosts`).
pub fn shorten_hosts(s: &mut Scenario) {
    let names: std::collections::BTreeSet<String> = s
        .services
        .keys()
        .cloned()
        .chain(
            s.gateway_proxies
                .values()
                .filter_map(|g| g.service.as_ref().map(|svc| svc.name.clone())),
        )
        .collect();
    let is_service = |h: &str| names.contains(h);
    proxy_engine::hosts::shorten(&mut s.mesh, &is_service);
    for entry in &mut s.timeline {
        if let crate::scenario::Change::Apply(object) = &mut entry.change {
            let mut one = proxy_engine::config::MeshConfig::default();
            match object {
                crate::scenario::MeshObject::VirtualService(vs) => {
                    one.virtual_services.push(vs.clone());
                    proxy_engine::hosts::shorten(&mut one, &is_service);
                    if let Some(v) = one.virtual_services.pop() {
                        *vs = v;
                    }
                }
                crate::scenario::MeshObject::DestinationRule(dr) => {
                    one.destination_rules.push((**dr).clone());
                    proxy_engine::hosts::shorten(&mut one, &is_service);
                    if let Some(d) = one.destination_rules.pop() {
                        **dr = d;
                    }
                }
            }
        }
    }
}

/// Replaces the scenario's mesh with `mesh` (one imported from Istio YAML, for `--istio`),
/// shortens its service hosts and checks the scenario again. `file` and `text` are the
/// scenario's, for the positions of errors outside the mesh.
pub fn replace_mesh(
    file: &str,
    text: &str,
    s: &mut Scenario,
    mesh: proxy_engine::config::MeshConfig,
) -> Result<(), ScenarioError> {
    s.mesh = mesh;
    shorten_hosts(s);
    validate(file, text, s)
}

/// Reads `path` (a `what`, for the message) as UTF-8 text. Bytes that are not UTF-8 are an
/// error naming the line, column and byte offset of the first of them.
pub fn read_text(path: &Path, what: &'static str) -> Result<String, ScenarioError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|reason| ScenarioError::Read {
        file: file.clone(),
        what,
        reason,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        // The prefix up to the first bad byte is valid UTF-8 by definition.
        let before = String::from_utf8_lossy(&e.as_bytes()[..at]);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ScenarioError::Invalid {
            file,
            line,
            col,
            field: "(encoding)".into(),
            message: format!("byte {at} is not UTF-8: a {what} file must be UTF-8 text"),
        }
    })
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
    parse_with(file, text, &[])
}

/// [`parse_as`] with `settings` applied while the file is read. A setting whose value is a
/// bare word that RON cannot read (`100ms`, `frontend`) is read again as a string.
pub fn parse_with<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    settings: &[Setting],
) -> Result<T, ScenarioError> {
    for (i, s) in settings.iter().enumerate() {
        if settings[..i].iter().any(|t| t.steps == s.steps) {
            return Err(ScenarioError::Setting {
                setting: s.to_string(),
                message: format!("`{}` is set twice", s.path),
            });
        }
    }
    let mut quote = vec![false; settings.len()];
    let mut first_error = None;
    loop {
        let state = State::new(settings, quote.clone(), ron_options());
        match deserialize(file, text, &state) {
            Ok(value) => {
                if let Some((i, message)) = state.unapplied().into_iter().next() {
                    return Err(ScenarioError::Setting {
                        setting: settings[i].to_string(),
                        message,
                    });
                }
                return Ok(value);
            }
            Err(e) => match state.failed() {
                Some(i) if !quote[i] && settings[i].bare() => {
                    quote[i] = true;
                    first_error.get_or_insert(e);
                }
                // Of the bare and the quoted reading, report the one that got further: the
                // quoted one when the bare one was refused for not being a string.
                _ => match first_error {
                    Some(first) if !first.to_string().contains("Expected string") => {
                        return Err(first)
                    }
                    _ => return Err(e),
                },
            },
        }
    }
}

/// The RON extensions every meshtwin file is read with.
fn ron_options() -> ron::Options {
    // `implicit_some`: optional fields are written bare, not as `Some(..)`;
    // `unwrap_variant_newtypes`: `Call(host: "x")` instead of `Call(Call(host: "x"))`.
    ron::Options::default()
        .with_default_extension(Extensions::IMPLICIT_SOME)
        .with_default_extension(Extensions::UNWRAP_VARIANT_NEWTYPES)
}

/// Deserializes `text` through the settings' overlay, with file:line:column field errors.
fn deserialize<'de, T: serde::de::Deserialize<'de>>(
    file: &str,
    text: &'de str,
    state: &State<'de>,
) -> Result<T, ScenarioError> {
    let options = ron_options();
    let invalid = |span: ron::error::Span, field: String, message: String| ScenarioError::Invalid {
        file: file.to_owned(),
        line: span.start.line,
        col: span.start.col,
        field,
        message,
    };
    let mut de = ron::Deserializer::from_str_with_options(text, &options)
        .map_err(|e| invalid(e.span, "(syntax)".into(), e.code.to_string()))?;
    let result: Result<T, _> = serde_path_to_error::deserialize(Overlay::root(&mut de, state));
    match result {
        Ok(s) => {
            de.end().map_err(|code| {
                let e = de.span_error(code);
                invalid(e.span, "(syntax)".into(), e.code.to_string())
            })?;
            Ok(s)
        }
        Err(err) => {
            // serde_path_to_error writes `?` for a segment it could not name (a syntax error
            // between fields): keep the named part.
            let path = err.path().to_string();
            let named: Vec<&str> = path.split('.').filter(|s| *s != "?").collect();
            let field = match named.join(".") {
                p if p.is_empty() && path.contains('?') => "(syntax)".to_owned(),
                p if p.is_empty() || p == "." => "(top level)".to_owned(),
                p => p,
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

/// Best-effort source position of `field` (a dotted path such as
/// `services.backend.versions.v1.instances`): each segment is searched for, as a quoted map key
/// or as `name:`, after the previous one; then `needle`, if given. Falls back to 1:1.
pub(crate) fn locate(text: &str, field: &str, needle: Option<&str>) -> (usize, usize) {
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
