//! A YAML document tree that remembers where every node and key was written, built from
//! `saphyr-parser` events. Scalars are resolved with the YAML 1.2 core schema (`null`, `~`,
//! booleans, integers, floats, else strings; quoted scalars are always strings). A key written
//! twice in one mapping is an error (serde-based YAML readers keep the last value silently),
//! and aliases are expanded with a bound on the nodes they may produce, so a "billion laughs"
//! document is an error instead of an out-of-memory abort.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::fmt;

/// Most nodes one file may expand to (aliases included).
pub const MAX_NODES: usize = 2_000_000;
/// Deepest nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 256;

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A node and where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub at: Pos,
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A number with a fraction or exponent (or `.inf`, `.nan`).
    Float(f64),
    /// Any other scalar.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping with string keys, in the order written.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key.
    pub name: String,
    /// Where it was written.
    pub at: Pos,
}

impl Node {
    /// The mapping entry named `name`, if this is a mapping that has it.
    pub fn get(&self, name: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Where the key `name` of this mapping was written, if it has it.
    pub fn key_at(&self, name: &str) -> Option<Pos> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == name)
                .map(|(k, _)| k.at),
            _ => None,
        }
    }

    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What kind of value this is, for messages ("a mapping", "a string"…).
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A document that is not well-formed YAML, or that this reader refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct SyntaxError {
    /// Where.
    pub at: Pos,
    /// What is wrong.
    pub message: String,
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// A collection being built.
enum Open {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Key, Node)>, Option<Key>, Pos, usize),
}

/// Parses every document of a YAML stream. Empty documents (a lone `---`) are dropped.
pub fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: Vec<(usize, Node)> = Vec::new();
    let mut nodes = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            at: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_owned(),
        })?;
        let at = pos(&span);
        let done = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => continue,
            Event::DocumentStart(_) => {
                anchors.clear();
                continue;
            }
            Event::DocumentEnd => continue,
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        at,
                        message: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Open::Seq(Vec::new(), at, anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        at,
                        message: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(Open::Map(Vec::new(), None, at, anchor));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(items, at, anchor)) => (
                    Node {
                        value: Value::Seq(items),
                        at,
                    },
                    anchor,
                ),
                _ => return Err(internal(at)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(entries, None, at, anchor)) => (
                    Node {
                        value: Value::Map(entries),
                        at,
                    },
                    anchor,
                ),
                _ => return Err(internal(at)),
            },
            Event::Scalar(text, style, anchor, _) => (
                Node {
                    value: scalar(&text, style),
                    at,
                },
                anchor,
            ),
            Event::Alias(id) => {
                let Some((_, node)) = anchors.iter().rev().find(|(a, _)| *a == id) else {
                    return Err(SyntaxError {
                        at,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                let mut node = node.clone();
                node.at = at;
                (node, 0)
            }
        };
        let (node, anchor) = done;
        nodes = nodes.saturating_add(count(&node));
        if nodes > MAX_NODES {
            return Err(SyntaxError {
                at,
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (aliases included)"
                ),
            });
        }
        if anchor != 0 {
            anchors.push((anchor, node.clone()));
        }
        place(&mut stack, &mut docs, node)?;
    }
    Ok(docs)
}

fn internal(at: Pos) -> SyntaxError {
    SyntaxError {
        at,
        message: "unbalanced YAML events".into(),
    }
}

/// Nodes in a tree (for the expansion bound).
fn count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + count(v)).sum::<usize>(),
        _ => 1,
    }
}

/// Puts a finished node into its parent (or ends a document).
fn place(stack: &mut [Open], docs: &mut Vec<Node>, node: Node) -> Result<(), SyntaxError> {
    match stack.last_mut() {
        None => {
            if node.value != Value::Null {
                docs.push(node);
            }
        }
        Some(Open::Seq(items, ..)) => items.push(node),
        Some(Open::Map(entries, pending, ..)) => match pending.take() {
            None => {
                let name = match node.value {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Null => "null".into(),
                    Value::Seq(_) | Value::Map(_) => {
                        return Err(SyntaxError {
                            at: node.at,
                            message: "a mapping key must be a scalar".into(),
                        })
                    }
                };
                if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                    return Err(SyntaxError {
                        at: node.at,
                        message: format!(
                            "duplicate key `{name}` (first written at line {})",
                            first.at.line
                        ),
                    });
                }
                *pending = Some(Key { name, at: node.at });
            }
            Some(key) => entries.push((key, node)),
        },
    }
    Ok(())
}

/// Resolves a scalar with the YAML 1.2 core schema.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::Str(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(v) = integer(text) {
        return Value::Int(v);
    }
    let numeric = text
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if numeric
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
    {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_owned())
}

/// A core-schema integer: decimal, `0o` octal or `0x` hexadecimal.
fn integer(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Node {
        let mut docs = parse(text).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let doc = one("a: 1\nb: '1'\nc: true\nd: 1.5\ne: ~\nf: 10s\ng: 0x1f\n");
        let v = |k: &str| doc.get(k).map(|n| n.value.clone());
        assert_eq!(v("a"), Some(Value::Int(1)));
        assert_eq!(v("b"), Some(Value::Str("1".into())));
        assert_eq!(v("c"), Some(Value::Bool(true)));
        assert_eq!(v("d"), Some(Value::Float(1.5)));
        assert_eq!(v("e"), Some(Value::Null));
        assert_eq!(v("f"), Some(Value::Str("10s".into())));
        assert_eq!(v("g"), Some(Value::Int(31)));
    }

    #[test]
    fn positions_are_one_based() {
        let doc = one("spec:\n  hosts:\n  - reviews\n");
        let hosts = doc.get("spec").and_then(|s| s.get("hosts")).expect("hosts");
        let Value::Seq(items) = &hosts.value else {
            panic!("a list")
        };
        assert_eq!(items[0].at, Pos { line: 3, col: 5 });
    }

    #[test]
    fn documents_are_split_and_empty_ones_dropped() {
        let docs = parse("a: 1\n---\n---\nb: 2\n").expect("parses");
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn a_duplicate_key_is_an_error_naming_both_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.at.line, 3);
        assert!(err.message.contains("duplicate key `a`"), "{err}");
        assert!(err.message.contains("line 1"), "{err}");
    }

    #[test]
    fn a_syntax_error_has_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed");
        assert!(err.at.line >= 1, "{err}");
    }

    #[test]
    fn aliases_expand_and_a_billion_laughs_is_refused() {
        let doc = one("a: &x [1, 2]\nb: *x\n");
        assert_eq!(doc.get("b").map(|n| n.kind()), Some("a list"));
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "l{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
            ));
        }
        let err = parse(&text).expect_err("too big");
        assert!(err.message.contains("more than"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(MAX_DEPTH + 5);
        assert!(parse(&text).is_err());
    }
}
