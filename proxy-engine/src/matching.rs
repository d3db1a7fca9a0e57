//! Request matching, compiled once: Istio `HTTPMatchRequest` semantics as Envoy applies them.
//!
//! * `uri` `Exact` compares the path without its query string; `Prefix` is a raw string prefix
//!   of the whole `:path` (`/v2` matches `/v2example`); `Regex` must match the whole path without
//!   the query. `ignore_uri_case` applies to exact and prefix, not regex.
//! * Header, query-parameter and pseudo-header (`method`, `authority`, `scheme`) matches are
//!   case-sensitive; a regex must match the whole value; `Present` only needs the value to exist.
//! * `without_headers` inverts a header match and treats a missing header as not matching, so
//!   `without_headers: {"x": Exact("a")}` matches when `x` is absent or differs.

use crate::config::{HttpMatchRequest, StringMatch};
use crate::types::RequestHead;
use regex::Regex;
use std::sync::Arc;

/// A compiled `StringMatch`.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Equal.
    Exact(Arc<str>),
    /// Starts with.
    Prefix(Arc<str>),
    /// Whole-value regex (anchored at compile time).
    Regex(Regex),
    /// Any value, as long as there is one.
    Present,
}

/// A regex that does not compile, with the compiler's explanation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRegex {
    /// The pattern as written.
    pub pattern: String,
    /// Why it does not compile.
    pub error: String,
}

impl Matcher {
    /// Compiles `m`; a regex is anchored so it must match the whole value.
    pub fn compile(m: &StringMatch) -> Result<Matcher, BadRegex> {
        Ok(match m {
            StringMatch::Exact(s) => Matcher::Exact(s.as_str().into()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.as_str().into()),
            StringMatch::Present => Matcher::Present,
            StringMatch::Regex(r) => Matcher::Regex(Regex::new(&format!("^(?:{r})$")).map_err(
                |e| BadRegex {
                    pattern: r.clone(),
                    error: e.to_string(),
                },
            )?),
        })
    }

    /// Whether `value` (None = absent) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let Some(v) = value else {
            return false;
        };
        match self {
            Matcher::Exact(s) => v == &**s,
            Matcher::Prefix(s) => v.starts_with(&**s),
            Matcher::Regex(r) => r.is_match(v),
            Matcher::Present => true,
        }
    }

    /// Like `matches`, ignoring ASCII case for exact and prefix.
    fn matches_ignore_case(&self, v: &str) -> bool {
        match self {
            Matcher::Exact(s) => v.eq_ignore_ascii_case(s),
            Matcher::Prefix(s) => {
                v.len() >= s.len()
                    && v.is_char_boundary(s.len())
                    && v[..s.len()].eq_ignore_ascii_case(s)
            }
            _ => self.matches(Some(v)),
        }
    }
}

/// One compiled match block: every condition must hold.
#[derive(Clone, Debug, Default)]
pub struct MatchBlock {
    uri: Option<Matcher>,
    ignore_uri_case: bool,
    scheme: Option<Matcher>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    headers: Vec<(Arc<str>, Matcher)>,
    without_headers: Vec<(Arc<str>, Matcher)>,
    query_params: Vec<(Arc<str>, Matcher)>,
}

/// Where a bad regex sits inside a match block (a field path suffix such as `uri` or
/// `headers.end-user`).
pub type MatchError = (String, BadRegex);

fn compile_map(
    prefix: &str,
    map: &std::collections::BTreeMap<String, StringMatch>,
) -> Result<Vec<(Arc<str>, Matcher)>, MatchError> {
    map.iter()
        .map(|(k, m)| {
            let matcher = Matcher::compile(m).map_err(|e| (format!("{prefix}.{k}"), e))?;
            Ok((Arc::from(k.to_ascii_lowercase()), matcher))
        })
        .collect()
}

fn compile_opt(field: &str, m: &Option<StringMatch>) -> Result<Option<Matcher>, MatchError> {
    m.as_ref()
        .map(|m| Matcher::compile(m).map_err(|e| (field.to_owned(), e)))
        .transpose()
}

impl MatchBlock {
    /// Compiles an Istio match block.
    pub fn compile(m: &HttpMatchRequest) -> Result<MatchBlock, MatchError> {
        Ok(MatchBlock {
            uri: compile_opt("uri", &m.uri)?,
            ignore_uri_case: m.ignore_uri_case,
            scheme: compile_opt("scheme", &m.scheme)?,
            method: compile_opt("method", &m.method)?,
            authority: compile_opt("authority", &m.authority)?,
            headers: compile_map("headers", &m.headers)?,
            without_headers: compile_map("without_headers", &m.without_headers)?,
            query_params: compile_map("query_params", &m.query_params)?,
        })
    }

    /// Whether the request satisfies every condition.
    pub fn matches(&self, head: &RequestHead) -> bool {
        if let Some(uri) = &self.uri {
            if !uri_matches(uri, self.ignore_uri_case, &head.path) {
                return false;
            }
        }
        let pseudo = [
            (&self.method, &*head.method),
            (&self.authority, &*head.authority),
            (&self.scheme, &*head.scheme),
        ];
        if pseudo
            .iter()
            .any(|(m, v)| m.as_ref().is_some_and(|m| !m.matches(Some(v))))
        {
            return false;
        }
        if !self
            .headers
            .iter()
            .all(|(name, m)| m.matches(head.header(name)))
        {
            return false;
        }
        if self
            .without_headers
            .iter()
            .any(|(name, m)| m.matches(head.header(name)))
        {
            return false;
        }
        self.query_params
            .iter()
            .all(|(name, m)| m.matches(query_param(&head.path, name)))
    }

    /// The `uri` prefix this block matched on, if it is a prefix match (for prefix rewrites).
    pub fn uri_prefix(&self) -> Option<&str> {
        match &self.uri {
            Some(Matcher::Prefix(p)) => Some(p),
            _ => None,
        }
    }
}

fn uri_matches(m: &Matcher, ignore_case: bool, path: &str) -> bool {
    let without_query = path.split_once('?').map_or(path, |(p, _)| p);
    let subject = match m {
        Matcher::Prefix(_) => path,
        _ => without_query,
    };
    if ignore_case {
        m.matches_ignore_case(subject)
    } else {
        m.matches(Some(subject))
    }
}

/// The value of query parameter `name` in `path` (first occurrence; no percent-decoding).
pub fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in the request's `cookie` header.
pub fn cookie<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.header("cookie")?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}
