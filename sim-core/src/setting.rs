//! `--set PATH=VALUE`: a scenario field named by its path, and the value (RON) it takes in
//! place of the file's. The replacement happens while the file is read (`overlay`), so a set
//! value is checked exactly as a written one: types, ranges, references.
//!
//! Paths name fields and map keys by name and list elements by index:
//! `services.backend.versions.v1.instances`, `mesh.virtual_services[0].http[0].retries.attempts`,
//! `workload[0].rate` (an enum's variant is not part of the path).

use std::fmt;
use thiserror::Error;

/// One step of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A struct field or a map key.
    Key(String),
    /// A list element.
    Index(usize),
}

/// One setting: a path and the RON text of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The path as written.
    pub path: String,
    /// The path's steps.
    pub steps: Vec<Step>,
    /// The value as written (RON).
    pub value: String,
    /// The value as a RON string, used when `value` is a bare word such as `100ms` that is not
    /// RON by itself (a duration or a name is then read as a string).
    pub(crate) quoted: String,
}

/// A setting that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingError {
    /// `--set` text without `=`, an empty path or value, or a malformed path.
    #[error("--set {text}: {message}")]
    Syntax {
        /// The setting as written.
        text: String,
        /// What is wrong.
        message: String,
    },
}

impl Setting {
    /// A setting of `path` to `value` (RON).
    pub fn new(path: &str, value: &str) -> Result<Setting, SettingError> {
        let text = format!("{path}={value}");
        let bad = |message: String| SettingError::Syntax {
            text: text.clone(),
            message,
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(bad("empty value: expected PATH=VALUE".into()));
        }
        let steps = parse_path(path.trim()).map_err(bad)?;
        Ok(Setting {
            path: path.trim().to_owned(),
            steps,
            value: value.to_owned(),
            quoted: format!("{value:?}"),
        })
    }

    /// Parses `PATH=VALUE` (one value: commas belong to the value).
    pub fn parse(text: &str) -> Result<Setting, SettingError> {
        let (path, value) = split_assignment(text)?;
        Setting::new(path, value)
    }

    /// Whether the value is a bare word (`100ms`, `frontend`) that may be meant as a string.
    pub(crate) fn bare(&self) -> bool {
        self.value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/:".contains(c))
            && !matches!(self.value.as_str(), "true" | "false")
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.path, self.value)
    }
}

/// Splits `PATH=VALUES` at its first `=`.
pub fn split_assignment(text: &str) -> Result<(&str, &str), SettingError> {
    let bad = |message: &str| SettingError::Syntax {
        text: text.to_owned(),
        message: message.to_owned(),
    };
    let (path, value) = text
        .split_once('=')
        .ok_or_else(|| bad("expected PATH=VALUE, e.g. services.backend.versions.v1.instances=3"))?;
    if path.trim().is_empty() {
        return Err(bad("empty path: expected PATH=VALUE"));
    }
    Ok((path, value))
}

/// Splits a list of RON values at the commas outside brackets and quotes:
/// `3,5` is two values, `LogNormal(p50: "7ms", p99: "20ms"),Constant("5ms")` two as well.
pub fn split_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    let (mut depth, mut quoted, mut escaped) = (0i32, false, false);
    let mut current = String::new();
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                values.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    values.push(current.trim().to_owned());
    values
}

/// Parses `a.b[0].c` into steps.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if name.is_empty() && (steps.is_empty() || rest.is_empty()) {
            return Err(format!("empty name in path `{path}`"));
        }
        if !name.is_empty() {
            steps.push(Step::Key(name.to_owned()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| format!("`[` without `]` in path `{path}`"))?;
            let index = inner[..end].trim().parse().map_err(|_| {
                format!(
                    "`[{}]` in path `{path}`: expected a list index (0, 1, …)",
                    &inner[..end]
                )
            })?;
            steps.push(Step::Index(index));
            rest = &inner[end + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("unexpected `{rest}` in path `{path}`"));
        }
    }
    Ok(steps)
}

/// Writes steps back as a path (`a.b[0]`); the empty path is `(top level)`.
pub(crate) fn display(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("(top level)");
    }
    out
}

/// `names` sorted with the closest to `wanted` first, and the closest when it is near enough
/// to be a likely typo.
pub(crate) fn suggest(wanted: &str, names: &[String]) -> (Vec<String>, Option<String>) {
    let mut scored: Vec<(f64, &String)> = names
        .iter()
        .map(|n| (strsim::jaro_winkler(wanted, n), n))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    let near = scored
        .first()
        .filter(|(score, _)| *score >= 0.8)
        .map(|(_, n)| (*n).clone());
    (scored.into_iter().map(|(_, n)| n.clone()).collect(), near)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_keys_and_indices() {
        let s =
            Setting::parse("mesh.virtual_services[0].http[12].retries.attempts=3").expect("parses");
        let key = |k: &str| Step::Key(k.into());
        assert_eq!(
            s.steps,
            vec![
                key("mesh"),
                key("virtual_services"),
                Step::Index(0),
                key("http"),
                Step::Index(12),
                key("retries"),
                key("attempts"),
            ]
        );
        assert_eq!(display(&s.steps), s.path);
        assert_eq!(s.value, "3");
    }

    #[test]
    fn bad_paths_are_errors() {
        for bad in [
            "=3", "a..b=1", "a[x]=1", "a[0=1", "a[0]b=1", "a=", "noequals",
        ] {
            assert!(Setting::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_split_outside_brackets_and_quotes() {
        assert_eq!(split_values("3, 5,7"), ["3", "5", "7"]);
        assert_eq!(
            split_values(r#"LogNormal(p50: "7ms", p99: "20ms"),Constant("5,ms")"#),
            [
                r#"LogNormal(p50: "7ms", p99: "20ms")"#,
                r#"Constant("5,ms")"#
            ]
        );
        assert_eq!(
            split_values(r#""5xx,reset","5xx""#),
            [r#""5xx,reset""#, r#""5xx""#]
        );
    }

    #[test]
    fn suggestions_rank_the_nearest_first() {
        let names: Vec<String> = ["backend", "frontend", "db"].map(String::from).into();
        let (sorted, near) = suggest("backnd", &names);
        assert_eq!(sorted[0], "backend");
        assert_eq!(near.as_deref(), Some("backend"));
        assert_eq!(suggest("zzz", &names).1, None);
    }
}
