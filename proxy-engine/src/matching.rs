//! Request matching, compiled once: Istio `HTTPMatchRequest` semantics as Envoy applies them.
//!
//! * `uri` `Exact` compares the path without its query string; `Prefix` is a raw string prefix
//!   of the whole `:path` (`/v2` matches `/v2example`); `Regex` must match the whole path without
//!   the query. `ignore_uri_case` applies to exact and prefix, not regex.
//! * Header, query-parameter and pseudo-header (`method`, `authority`, `scheme`) matches are
//!   case-sensitive; a regex must match the whole value; `Present` only needs the value to exist.
//! * A header sent more than once is matched against all its values joined with `,`, as Envoy's
//!   `HeaderUtility::getAllOfHeaderAsString` does (`source/common/http/header_utility.cc`):
//!   `x-multi: a` and `x-multi: b` match `Exact("a,b")`, not `Exact("a")`.
//! * `without_headers` inverts a header match and treats a missing header as not matching, so
//!   `without_headers: {"x": Exact("a")}` matches when `x` is absent or differs.

use crate::config::{HttpMatchRequest, StringMatch};
pub(crate) use crate::head::starts_with;
use crate::head::RequestHead;
use regex::Regex;
use std::sync::Arc;

/// A compiled `StringMatch`.
#[derive(Clone, Debug)]
pub(crate) enum Matcher {
    /// Equal.
    Exact(Arc<str>),
    /// Starts with.
    Prefix(Arc<str>),
    /// Whole-value regex (anchored at compile time), with the literal prefix every match must
    /// start with (checked first: a failed `starts_with` is far cheaper than the regex).
    Regex(Regex, Box<str>),
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
    pub(crate) fn compile(m: &StringMatch) -> Result<Matcher, BadRegex> {
        Ok(match m {
            StringMatch::Exact(s) => Matcher::Exact(s.as_str().into()),
            StringMatch::Prefix(s) => Matcher::Prefix(s.as_str().into()),
            StringMatch::Present => Matcher::Present,
            StringMatch::Regex(r) => {
                let compiled = Regex::new(&format!("^(?:{r})$")).map_err(|e| BadRegex {
                    pattern: r.clone(),
                    error: e.to_string(),
                })?;
                Matcher::Regex(compiled, literal_prefix(r).into())
            }
        })
    }

    /// Whether `value` (None = absent) matches.
    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        let Some(v) = value else {
            return false;
        };
        match self {
            Matcher::Exact(s) => v.len() == s.len() && starts_with(v, s),
            Matcher::Prefix(s) => starts_with(v, s),
            Matcher::Regex(r, prefix) => v.starts_with(&**prefix) && r.is_match(v),
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

/// The literal text every match of regex `pattern` starts with: the leading run of plain
/// characters, minus the last one if a quantifier follows it. Empty (no prefilter) for patterns
/// with alternation or flags, where a leading literal need not be required.
fn literal_prefix(pattern: &str) -> &str {
    const META: &[char] = &[
        '.', '^', '$', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '\\',
    ];
    if pattern.contains('|') {
        return "";
    }
    let end = pattern.find(META).unwrap_or(pattern.len());
    let run = &pattern[..end];
    match pattern[end..].chars().next() {
        // `ab*` requires only `a`; drop the quantified character.
        Some('*' | '?' | '{' | '+') => run.char_indices().last().map_or("", |(i, _)| &run[..i]),
        _ => run,
    }
}

/// One condition of a match block.
#[derive(Clone, Debug)]
enum Cond {
    /// The path (see the module doc for what part each matcher sees).
    Uri(Matcher),
    /// The path, ignoring ASCII case (exact and prefix only).
    UriIgnoreCase(Matcher),
    Method(Matcher),
    Authority(Matcher),
    Scheme(Matcher),
    Header(Arc<str>, Matcher),
    WithoutHeader(Arc<str>, Matcher),
    Query(Arc<str>, Matcher),
}

/// One compiled match block: every condition must hold. Conditions are kept flat, cheapest
/// first (pseudo-headers and plain strings before regexes), and checked until one fails.
#[derive(Clone, Debug, Default)]
pub struct MatchBlock {
    /// Prefilter: `input.path_word & path_mask == path_word` is necessary for a match (the
    /// first bytes of the literal the path must start with; mask 0 when there is none).
    path_word: u64,
    path_mask: u64,
    /// Prefilter: header-name bits (see `name_bit`) the request must have.
    header_bits: u64,
    conds: Vec<Cond>,
    /// What part of the path a `rewrite.uri` replaces when this block matched.
    rewrite_span: RewriteSpan,
}

/// The part of the path a matched block hands to `rewrite.uri`, as Envoy's
/// `currentUrlPathAfterRewriteWithMatchedPath` (`source/common/router/config_impl.cc`) sees it
/// for the route match Istio generates (`pilot/pkg/networking/core/route/route.go`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RewriteSpan {
    /// No `uri` in the block: Istio matches `prefix: "/"`, so the leading `/` is replaced.
    #[default]
    Root,
    /// A `Prefix` match: that many bytes of the path are replaced.
    Prefix(usize),
    /// An `Exact` or `Regex` match: the whole path before the query is replaced.
    WholePath,
}

/// Where a bad regex sits inside a match block (a field path suffix such as `uri` or
/// `headers.end-user`).
pub(crate) type MatchError = (String, BadRegex);

/// The parts of a request that matching looks at, computed once per request.
pub struct MatchInput<'a> {
    head: &'a RequestHead,
    /// The path without its query string.
    path: &'a str,
    /// The raw path's first 8 bytes, zero-padded, little-endian.
    path_word: u64,
    /// `name_bit` of every header name present.
    header_bits: u64,
}

impl<'a> MatchInput<'a> {
    /// Prepares `head` for matching.
    pub fn new(head: &'a RequestHead) -> MatchInput<'a> {
        let full: &str = &head.path;
        let path = full.split_once('?').map_or(full, |(p, _)| p);
        let header_bits = head
            .headers
            .iter()
            .fold(0, |bits, (n, _)| bits | name_bit(n));
        MatchInput {
            head,
            path,
            path_word: word(full.as_bytes()).0,
            header_bits,
        }
    }
}

/// The first (up to) 8 bytes of `bytes` as a little-endian word, and the mask of those bytes.
fn word(bytes: &[u8]) -> (u64, u64) {
    let n = bytes.len().min(8);
    let mut buf = [0u8; 8];
    buf[..n].copy_from_slice(&bytes[..n]);
    let mask = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    (u64::from_le_bytes(buf), mask)
}

/// One of 64 bits for a header name (a cheap hash of its length and end bytes).
fn name_bit(name: &str) -> u64 {
    let b = name.as_bytes();
    let (first, last) = (
        b.first().copied().unwrap_or(0),
        b.last().copied().unwrap_or(0),
    );
    let h = (b.len() as u64)
        .wrapping_mul(31)
        .wrapping_add(u64::from(first))
        .wrapping_mul(31)
        .wrapping_add(u64::from(last));
    1 << (h % 64)
}

fn compile_one(field: String, m: &StringMatch) -> Result<Matcher, MatchError> {
    Matcher::compile(m).map_err(|e| (field, e))
}

impl MatchBlock {
    /// Compiles an Istio match block.
    pub fn compile(m: &HttpMatchRequest) -> Result<MatchBlock, MatchError> {
        let mut conds = Vec::new();
        let pseudo = [
            ("method", &m.method, Cond::Method as fn(Matcher) -> Cond),
            ("authority", &m.authority, Cond::Authority),
            ("scheme", &m.scheme, Cond::Scheme),
        ];
        for (field, value, make) in pseudo {
            if let Some(v) = value {
                conds.push(make(compile_one(field.into(), v)?));
            }
        }
        if let Some(uri) = &m.uri {
            let matcher = compile_one("uri".into(), uri)?;
            conds.push(if m.ignore_uri_case {
                Cond::UriIgnoreCase(matcher)
            } else {
                Cond::Uri(matcher)
            });
        }
        for (k, v) in &m.headers {
            let matcher = compile_one(format!("headers.{k}"), v)?;
            conds.push(Cond::Header(k.to_ascii_lowercase().into(), matcher));
        }
        for (k, v) in &m.without_headers {
            let matcher = compile_one(format!("without_headers.{k}"), v)?;
            conds.push(Cond::WithoutHeader(k.to_ascii_lowercase().into(), matcher));
        }
        for (k, v) in &m.query_params {
            let matcher = compile_one(format!("query_params.{k}"), v)?;
            conds.push(Cond::Query(k.as_str().into(), matcher));
        }
        // Regexes last: everything else is a few compares.
        conds.sort_by_key(|c| matches!(c.matcher(), Matcher::Regex(..)));
        let rewrite_span = match &m.uri {
            Some(StringMatch::Prefix(p)) => RewriteSpan::Prefix(p.len()),
            Some(StringMatch::Exact(_) | StringMatch::Regex(_)) => RewriteSpan::WholePath,
            Some(StringMatch::Present) | None => RewriteSpan::Root,
        };
        // The literal a matching path must start with: a case-sensitive exact or prefix value,
        // or a regex's literal prefix. Exact and regex look at the path without its query, but
        // a path that matches starts with the literal either way.
        let literal: &[u8] = match (&m.uri, m.ignore_uri_case) {
            (Some(StringMatch::Exact(v) | StringMatch::Prefix(v)), false) => v.as_bytes(),
            (Some(StringMatch::Regex(r)), _) => literal_prefix(r).as_bytes(),
            _ => b"",
        };
        let (path_word, path_mask) = word(literal);
        let header_bits = m
            .headers
            .keys()
            .fold(0, |bits, k| bits | name_bit(&k.to_ascii_lowercase()));
        Ok(MatchBlock {
            path_word,
            path_mask,
            header_bits,
            conds,
            rewrite_span,
        })
    }

    /// Whether the request satisfies every condition.
    #[inline]
    pub fn matches(&self, input: &MatchInput<'_>) -> bool {
        input.path_word & self.path_mask == self.path_word
            && input.header_bits & self.header_bits == self.header_bits
            && self.check(input)
    }

    fn check(&self, input: &MatchInput<'_>) -> bool {
        let head = input.head;
        self.conds.iter().all(|c| match c {
            // A prefix sees the raw path (query included); exact and regex do not.
            Cond::Uri(m @ Matcher::Prefix(_)) => m.matches(Some(&head.path)),
            Cond::Uri(m) => m.matches(Some(input.path)),
            Cond::UriIgnoreCase(m @ Matcher::Prefix(_)) => m.matches_ignore_case(&head.path),
            Cond::UriIgnoreCase(m) => m.matches_ignore_case(input.path),
            Cond::Method(m) => m.matches(Some(&head.method)),
            Cond::Authority(m) => m.matches(Some(&head.authority)),
            Cond::Scheme(m) => m.matches(Some(&head.scheme)),
            Cond::Header(name, m) => m.matches(head.header_joined(name).as_deref()),
            Cond::WithoutHeader(name, m) => !m.matches(head.header_joined(name).as_deref()),
            Cond::Query(name, m) => m.matches(query_param(&head.path, name)),
        })
    }

    /// What part of the path a `rewrite.uri` replaces when this block matched.
    pub fn rewrite_span(&self) -> RewriteSpan {
        self.rewrite_span
    }
}

impl Cond {
    fn matcher(&self) -> &Matcher {
        match self {
            Cond::Uri(m)
            | Cond::UriIgnoreCase(m)
            | Cond::Method(m)
            | Cond::Authority(m)
            | Cond::Scheme(m)
            | Cond::Header(_, m)
            | Cond::WithoutHeader(_, m)
            | Cond::Query(_, m) => m,
        }
    }
}

/// The value of query parameter `name` in `path` (first occurrence; no percent-decoding).
pub(crate) fn query_param<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` in the request's `cookie` header.
pub(crate) fn cookie<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.header("cookie")?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefix_is_only_what_every_match_starts_with() {
        assert_eq!(literal_prefix("/items/[0-9]+"), "/items/");
        assert_eq!(literal_prefix("/ab*"), "/a");
        assert_eq!(literal_prefix("/ab+c"), "/a");
        assert_eq!(literal_prefix("/a|/b"), "");
        assert_eq!(literal_prefix("(?i)/abc"), "");
        assert_eq!(literal_prefix("/v1\\.0"), "/v1");
        assert_eq!(literal_prefix("exact"), "exact");
        for (pattern, value) in [
            ("/ab*", "/a"),
            ("/ab+c", "/abbc"),
            ("/a|/b", "/b"),
            ("/x{0}y", "/y"),
        ] {
            let m = Matcher::compile(&StringMatch::Regex(pattern.into())).expect("compiles");
            assert!(m.matches(Some(value)), "{pattern} should match {value}");
        }
    }

    /// The prefilters (path word, header bits) only ever skip blocks whose full check fails.
    #[test]
    fn prefilters_never_reject_a_match() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let alphabet = ["/", "a", "b", "?", "=", "1", "ab", "/a"];
        let text = |rng: &mut rand_chacha::ChaCha8Rng, max: usize| -> String {
            (0..rng.gen_range(0..max))
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect()
        };
        let names = ["x", "ab", "x-a", "end-user"];
        let (mut checked, mut matched) = (0, 0);
        for _ in 0..5_000 {
            let v = text(&mut rng, 6);
            let uri = match rng.gen_range(0..4) {
                0 => StringMatch::Exact(v),
                1 => StringMatch::Prefix(v),
                2 => StringMatch::Regex(format!("{}.*", regex::escape(&v))),
                _ => StringMatch::Regex(format!("{}[ab]+", regex::escape(&v))),
            };
            let mut m = HttpMatchRequest {
                uri: Some(uri),
                ignore_uri_case: rng.gen_bool(0.2),
                ..Default::default()
            };
            if rng.gen_bool(0.5) {
                let name = names[rng.gen_range(0..names.len())];
                m.headers.insert(name.into(), StringMatch::Present);
            }
            let block = MatchBlock::compile(&m).expect("valid");
            let mut head = RequestHead::get("h", &format!("/{}", text(&mut rng, 10)));
            let present: Vec<(Arc<str>, Arc<str>)> = names
                .iter()
                .filter(|_| rng.gen_bool(0.5))
                .map(|n| (Arc::from(*n), Arc::from("v")))
                .collect();
            head.headers = Arc::from(present);
            let input = MatchInput::new(&head);
            let full = block.check(&input);
            assert_eq!(block.matches(&input), full, "{m:?} on {head:?}");
            checked += 1;
            matched += usize::from(full);
        }
        assert!(
            matched > 25 && matched < checked,
            "the cases exercise both answers: {matched}"
        );
    }
}
