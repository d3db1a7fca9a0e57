//! IST0130 `VirtualServiceUnreachableRule` and IST0131 `VirtualServiceIneffectiveMatch`, as
//! `analyzeUnreachableHTTPRules` in Istio's `pkg/config/validation` computes them, quirks
//! included: a rule after a match-less one is reported once per match it has; two matches are
//! duplicates when equal with their names removed; a prefix match that an earlier prefix
//! match covers (same port, and method, authority, headers, query parameters and
//! `withoutHeaders` equal or prefixes of the earlier ones) is ineffective.

use super::{Level, Object, Report};
use proxy_engine::config::{HttpMatchRequest, HttpRoute, StringMatch};
use std::collections::BTreeMap;

pub(super) fn check(report: &mut Report<'_>) {
    let mesh = report.input.mesh;
    for (v, vs) in mesh.virtual_services.iter().enumerate() {
        let object = Object::VirtualService(v);
        let mut found = Vec::new();
        unreachable(&vs.http, &mut |level, message| found.push((level, message)));
        for (level, message) in found {
            let code = if level == Level::Warning {
                "IST0130"
            } else {
                "IST0131"
            };
            report.add(code, level, object, message);
        }
    }
}

/// `#3`, or the quoted name.
fn rule_name(route: &HttpRoute, i: usize) -> String {
    match &route.name {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{i}"),
    }
}

fn match_name(m: &HttpMatchRequest, i: usize) -> String {
    match &m.name {
        Some(n) if !n.is_empty() => format!("{n:?}"),
        _ => format!("#{i}"),
    }
}

/// A prefix match's fields, for the overlap check.
struct PrefixMatch {
    rule: String,
    name: String,
    prefix: String,
    port: Option<u16>,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    without: BTreeMap<String, String>,
}

/// An exact or prefix value (Istio's `assignExactOrPrefix`), else empty.
fn exact_or_prefix(m: Option<&StringMatch>) -> String {
    match m {
        Some(StringMatch::Exact(s)) => s.clone(),
        Some(StringMatch::Prefix(s)) => s.clone(),
        _ => String::new(),
    }
}

fn values(map: &BTreeMap<String, StringMatch>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| (k.clone(), exact_or_prefix(Some(v))))
        .collect()
}

fn prefix_match(
    route: &HttpRoute,
    m: &HttpMatchRequest,
    r: usize,
    i: usize,
) -> Option<PrefixMatch> {
    let Some(StringMatch::Prefix(prefix)) = &m.uri else {
        return None;
    };
    Some(PrefixMatch {
        rule: rule_name(route, r),
        name: match_name(m, i),
        prefix: prefix.clone(),
        port: m.port,
        method: exact_or_prefix(m.method.as_ref()),
        authority: exact_or_prefix(m.authority.as_ref()),
        headers: values(&m.headers),
        query: values(&m.query_params),
        without: values(&m.without_headers),
    })
}

/// Whether the earlier match `a` covers the later `b` (Istio's `coveredValidation`).
fn covered(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    let maps = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
        x.len() == y.len()
            && x.iter().all(|(k, v)| {
                y.get(k)
                    .is_some_and(|w| v == w || v.starts_with(w.as_str()))
            })
    };
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && (a.method == b.method || a.method.starts_with(&b.method))
        && (a.authority == b.authority || a.authority.starts_with(&b.authority))
        && maps(&a.headers, &b.headers)
        && maps(&a.query, &b.query)
        && maps(&a.without, &b.without)
}

/// Reports the unreachable rules (IST0130, Warning) and ineffective matches (IST0131, Info)
/// of `routes`, as messages.
pub(crate) fn unreachable(routes: &[HttpRoute], found: &mut dyn FnMut(Level, String)) {
    let mut unreachable = |rule: &str, reason: &str| {
        found(
            Level::Warning,
            format!("VirtualService rule {rule} not used ({reason})."),
        )
    };
    let mut ineffective = Vec::new();
    let mut seen: Vec<(HttpMatchRequest, usize)> = Vec::new();
    let mut empty: Option<usize> = None;
    let mut prefixes = Vec::new();
    for (r, route) in routes.iter().enumerate() {
        if route.matches.is_empty() {
            if empty.is_some() {
                unreachable(
                    &rule_name(route, r),
                    "only the last rule can have no matches",
                );
            }
            empty = Some(r);
            continue;
        }
        let mut duplicates = 0;
        for (i, m) in route.matches.iter().enumerate() {
            if empty.is_some() {
                unreachable(&rule_name(route, r), "route without matches defined before");
                continue;
            }
            let mut key = m.clone();
            key.name = None;
            if let Some((_, dup)) = seen.iter().find(|(k, _)| *k == key) {
                ineffective.push((
                    rule_name(route, r),
                    match_name(m, i),
                    rule_name(&routes[*dup], *dup),
                ));
                duplicates += 1;
                continue;
            }
            seen.push((key, r));
            prefixes.extend(prefix_match(route, m, r, i));
        }
        if duplicates == route.matches.len() {
            unreachable(&rule_name(route, r), "all matches used by prior rules");
        }
    }
    for (a, first) in prefixes.iter().enumerate() {
        for later in &prefixes[a + 1..] {
            if later.prefix == first.prefix {
                continue;
            }
            if covered(first, later) {
                let m = format!("{} of prefix {}", later.name, later.prefix);
                let dup = format!(
                    "{} of prefix {} on {}",
                    first.name, first.prefix, first.rule
                );
                ineffective.push((later.rule.clone(), m, dup));
            }
        }
    }
    for (rule, m, dup) in ineffective {
        found(
            Level::Info,
            format!("VirtualService rule {rule} match {m} is not used (duplicate/overlapping match in rule {dup})."),
        );
    }
}
