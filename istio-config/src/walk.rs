//! Walks one Istio object's YAML along its message table (`schema`): fields meshtwin models
//! are carried into a JSON value shaped as meshtwin's config types (snake_case names,
//! `StringMatch` as meshtwin's enum, `Percent` and `PortSelector` unwrapped), fields it does
//! not model become warnings, and anything else is an error with its line and column. The
//! JSON is then deserialized into the config type; a type error there is mapped back to the
//! YAML position of the field through the paths recorded on the way.

use crate::error::{ImportError, Level, Note};
use crate::schema::{Kind, Message};
use crate::yaml::{Node, Pos, Value};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

/// The state of one object's walk.
pub(crate) struct Walk<'a> {
    /// The file, for messages.
    pub(crate) file: &'a str,
    /// The object, for notes (`VirtualService default/reviews`).
    pub(crate) object: String,
    /// Unmodeled fields are errors.
    pub(crate) strict: bool,
    /// Why an unmodeled field is an error when `strict` (`--strict`), for messages.
    pub(crate) refusal: &'static str,
    /// Warnings collected.
    pub(crate) notes: &'a mut Vec<Note>,
    /// (meshtwin path, Istio path, position) of every field carried over.
    paths: Vec<(String, String, Pos)>,
}

impl<'a> Walk<'a> {
    /// A walk of `object` in `file`.
    pub(crate) fn new(
        file: &'a str,
        object: String,
        strict: bool,
        notes: &'a mut Vec<Note>,
    ) -> Self {
        Walk {
            file,
            object,
            strict,
            refusal: "--strict",
            notes,
            paths: Vec::new(),
        }
    }

    /// An error at `at` about the Istio field `field`.
    pub(crate) fn error(&self, at: Pos, field: &str, message: impl Into<String>) -> ImportError {
        ImportError::Invalid {
            file: self.file.to_owned(),
            at,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A warning (an error under `--strict`) about a field meshtwin does not model.
    pub(crate) fn unmodeled(&mut self, at: Pos, field: &str, why: &str) -> Result<(), ImportError> {
        let message = format!("not modeled ({why}); ignored");
        if self.strict {
            return Err(self.error(at, field, format!("not modeled ({why}); {}", self.refusal)));
        }
        self.notes.push(Note {
            level: Level::Warning,
            file: self.file.to_owned(),
            at,
            object: self.object.clone(),
            field: field.to_owned(),
            message,
        });
        Ok(())
    }

    /// A warning that is not about an unmodeled field (kept under `--strict`).
    pub(crate) fn warn(&mut self, at: Pos, field: &str, message: impl Into<String>) {
        self.notes.push(Note {
            level: Level::Warning,
            file: self.file.to_owned(),
            at,
            object: self.object.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Converts a mapping along `msg`. `istio` and `ours` are the paths of `node` (empty at the
    /// root). Fields of kind `Special` are left for the caller.
    pub(crate) fn object(
        &mut self,
        node: &Node,
        msg: &Message,
        istio: &str,
        ours: &str,
    ) -> Result<Map<String, Json>, ImportError> {
        let Value::Map(entries) = &node.value else {
            return Err(self.error(
                node.at,
                istio,
                format!("expected a mapping ({}), found {}", msg.name, node.kind()),
            ));
        };
        let mut out = Map::new();
        for (key, value) in entries {
            let istio_path = join(istio, &key.name);
            let Some(field) = msg.field(&key.name) else {
                return Err(self.error(
                    key.at,
                    &istio_path,
                    format!(
                        "unknown field `{}` of {}, expected one of: {}",
                        key.name,
                        msg.name,
                        msg.names()
                    ),
                ));
            };
            if value.value == Value::Null {
                continue;
            }
            let our_path = join(ours, field.to);
            let converted = match field.kind {
                Kind::Special => continue,
                Kind::Unmodeled(why) => {
                    self.unmodeled(key.at, &istio_path, why)?;
                    continue;
                }
                Kind::Object(child) => {
                    Json::Object(self.object(value, child, &istio_path, &our_path)?)
                }
                Kind::List(child) => self.list(value, child, &istio_path, &our_path)?,
                Kind::Plain => plain(value),
                Kind::Match => self.string_match(value, &istio_path)?,
                Kind::MatchMap => {
                    let Value::Map(matches) = &value.value else {
                        return Err(self.error(
                            value.at,
                            &istio_path,
                            format!(
                                "expected a mapping of names to StringMatch, found {}",
                                value.kind()
                            ),
                        ));
                    };
                    let mut m = Map::new();
                    for (name, each) in matches {
                        let p = join(&istio_path, &name.name);
                        self.paths
                            .push((join(&our_path, &name.name), p.clone(), each.at));
                        m.insert(name.name.clone(), self.string_match(each, &p)?);
                    }
                    Json::Object(m)
                }
                Kind::Percent => self.wrapped(value, "value", &istio_path, "Percent")?,
                Kind::PortNumber => self.wrapped(value, "number", &istio_path, "PortSelector")?,
                Kind::Body => match (value.get("string"), value.get("bytes")) {
                    (Some(s), None) => plain(s),
                    (None, Some(_)) => {
                        self.unmodeled(
                            value.at,
                            &join(&istio_path, "bytes"),
                            "binary bodies are not modeled",
                        )?;
                        continue;
                    }
                    _ => {
                        return Err(self.error(
                            value.at,
                            &istio_path,
                            "expected a mapping with one of `string`, `bytes`",
                        ))
                    }
                },
            };
            self.paths.push((our_path, istio_path, value.at));
            out.insert(field.to.to_owned(), converted);
        }
        Ok(out)
    }

    /// Converts a list of `msg` mappings.
    fn list(
        &mut self,
        node: &Node,
        msg: &Message,
        istio: &str,
        ours: &str,
    ) -> Result<Json, ImportError> {
        let Value::Seq(items) = &node.value else {
            return Err(self.error(
                node.at,
                istio,
                format!("expected a list of {}, found {}", msg.name, node.kind()),
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let istio_i = format!("{istio}[{i}]");
            let ours_i = format!("{ours}[{i}]");
            self.paths.push((ours_i.clone(), istio_i.clone(), item.at));
            out.push(Json::Object(self.object(item, msg, &istio_i, &ours_i)?));
        }
        Ok(Json::Array(out))
    }

    /// Istio `StringMatch` → meshtwin's `StringMatch` enum.
    fn string_match(&mut self, node: &Node, istio: &str) -> Result<Json, ImportError> {
        let Value::Map(entries) = &node.value else {
            return Err(self.error(
                node.at,
                istio,
                format!(
                    "expected a StringMatch mapping (`exact`, `prefix` or `regex`), found {}",
                    node.kind()
                ),
            ));
        };
        match entries.as_slice() {
            [] => Ok(Json::String("Present".into())),
            [(key, value)] => {
                let variant = match key.name.as_str() {
                    "exact" => "Exact",
                    "prefix" => "Prefix",
                    "regex" => "Regex",
                    other => {
                        return Err(self.error(
                            key.at,
                            &join(istio, other),
                            format!("unknown field `{other}` of StringMatch, expected one of: exact, prefix, regex"),
                        ))
                    }
                };
                let Some(text) = scalar_text(value) else {
                    return Err(self.error(
                        value.at,
                        &join(istio, &key.name),
                        format!("expected a string, found {}", value.kind()),
                    ));
                };
                let mut m = Map::new();
                m.insert(variant.into(), Json::String(text));
                Ok(Json::Object(m))
            }
            [_, (key, _), ..] => Err(self.error(
                key.at,
                istio,
                "a StringMatch takes exactly one of `exact`, `prefix`, `regex`",
            )),
        }
    }

    /// A message with one field (`{value: x}`, `{number: n}`) → its value.
    fn wrapped(
        &mut self,
        node: &Node,
        inner: &str,
        istio: &str,
        what: &str,
    ) -> Result<Json, ImportError> {
        match &node.value {
            Value::Map(entries) => {
                for (key, _) in entries {
                    if key.name != inner {
                        return Err(self.error(
                            key.at,
                            &join(istio, &key.name),
                            format!("unknown field `{}` of {what}, expected `{inner}`", key.name),
                        ));
                    }
                }
                Ok(node.get(inner).map(plain).unwrap_or(Json::Null))
            }
            _ => Err(self.error(
                node.at,
                istio,
                format!(
                    "expected a {what} mapping (`{inner}: …`), found {}",
                    node.kind()
                ),
            )),
        }
    }

    /// Deserializes the converted `json` into `T`; a type error names the Istio field and its
    /// position.
    pub(crate) fn finish<T: DeserializeOwned>(
        &self,
        json: Map<String, Json>,
        root: Pos,
        kind: &str,
    ) -> Result<T, ImportError> {
        serde_path_to_error::deserialize(Json::Object(json)).map_err(|e| {
            let ours = e.path().to_string();
            let (istio, at) = self.locate(&ours).unwrap_or_else(|| (String::new(), root));
            let message = e.into_inner().to_string();
            let field = if istio.is_empty() {
                format!("{kind}.spec")
            } else {
                istio
            };
            self.error(at, &field, message)
        })
    }

    /// The Istio path and position of the longest recorded prefix of the meshtwin path `ours`.
    fn locate(&self, ours: &str) -> Option<(String, Pos)> {
        let mut best: Option<&(String, String, Pos)> = None;
        for entry in &self.paths {
            let p = &entry.0;
            let prefix = ours == p
                || (ours.starts_with(p.as_str())
                    && matches!(ours.as_bytes().get(p.len()), Some(b'.' | b'[')));
            if prefix && best.is_none_or(|b| b.0.len() < p.len()) {
                best = Some(entry);
            }
        }
        best.map(|(_, istio, at)| (istio.clone(), *at))
    }
}

/// `a.b`, or `b` at the root.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A scalar as text (a number written for a string field, as YAML allows).
pub(crate) fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A YAML value as JSON, as written.
pub(crate) fn plain(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(plain).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (k.name.clone(), plain(v)))
                .collect(),
        ),
    }
}
