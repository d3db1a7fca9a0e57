//! Reads route test files in the istio-config-validator format
//! (`getyourguide/istio-config-validator`, `docs/test-cases.md`): YAML documents holding
//! `testCases`, each with a `description`, `wantMatch`, a `request` whose `authority`,
//! `method` and `uri` lists are unfolded into every combination, and the expected `route`,
//! `redirect`, `rewrite`, `fault` or `headers` of the rule the request matches — written as
//! Istio writes them in a VirtualService, and read through the same field tables as an import.
//! meshtwin adds `randomValue` (the weighted pick's draw, as Envoy `router_check_tool`'s
//! `random_value`) and `destination` (the destination that draw picks).

use super::{Expect, Request, TestCase};
use crate::error::ImportError;
use crate::import::invalid;
use crate::schema::{self, Message};
use crate::walk::Walk;
use crate::yaml::{self, Node, Value};
use serde::de::DeserializeOwned;

/// The fields of a test case.
const CASE_FIELDS: &str = "description, wantMatch, request, route, redirect, rewrite, fault, \
                           headers, delegate, randomValue, destination";
/// The fields of a request.
const REQUEST_FIELDS: &str = "authority, method, uri, headers";
/// At most this many requests unfold from one case (the product of its lists).
pub const MAX_REQUESTS_PER_CASE: usize = 100_000;

/// The test cases of one YAML text, named `file` in messages.
pub fn parse(file: &str, text: &str) -> Result<Vec<TestCase>, ImportError> {
    let docs = yaml::parse(text)
        .map_err(|e| invalid(file, e.at, "", format!("YAML syntax: {}", e.message)))?;
    let mut cases = Vec::new();
    for doc in &docs {
        let Value::Map(entries) = &doc.value else {
            return Err(invalid(
                file,
                doc.at,
                "",
                format!("expected a mapping with `testCases`, found {}", doc.kind()),
            ));
        };
        let mut found = false;
        for (key, value) in entries {
            if key.name != "testCases" {
                return Err(invalid(
                    file,
                    key.at,
                    &key.name,
                    format!("unknown field `{}`, expected `testCases`", key.name),
                ));
            }
            found = true;
            let Value::Seq(items) = &value.value else {
                return Err(invalid(
                    file,
                    value.at,
                    "testCases",
                    format!("expected a list of test cases, found {}", value.kind()),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                cases.push(case(file, item, &format!("testCases[{i}]"))?);
            }
        }
        if !found {
            return Err(invalid(
                file,
                doc.at,
                "testCases",
                "missing field `testCases`",
            ));
        }
    }
    Ok(cases)
}

/// One test case at `path` (`testCases[3]`).
fn case(file: &str, node: &Node, path: &str) -> Result<TestCase, ImportError> {
    let Value::Map(entries) = &node.value else {
        return Err(invalid(
            file,
            node.at,
            path,
            format!("expected a test case (a mapping), found {}", node.kind()),
        ));
    };
    let mut description = String::new();
    let mut want_match = false;
    let mut requests = None;
    let mut random_value = 0;
    let mut expect = Expect::default();
    for (key, value) in entries {
        let field = format!("{path}.{}", key.name);
        if value.value == Value::Null {
            continue;
        }
        match key.name.as_str() {
            "description" => description = text(file, value, &field)?,
            "wantMatch" => match value.value {
                Value::Bool(b) => want_match = b,
                _ => {
                    return Err(invalid(
                        file,
                        value.at,
                        &field,
                        format!("expected true or false, found {}", value.kind()),
                    ))
                }
            },
            "randomValue" => match value.value {
                Value::Int(v) if v >= 0 => random_value = v as u64,
                _ => {
                    return Err(invalid(
                        file,
                        value.at,
                        &field,
                        format!("expected a whole number ≥ 0, found {}", value.kind()),
                    ))
                }
            },
            "request" => requests = Some(request(file, value, &field)?),
            "route" => {
                let Value::Seq(items) = &value.value else {
                    return Err(invalid(
                        file,
                        value.at,
                        &field,
                        format!(
                            "expected a list of HTTPRouteDestination, found {}",
                            value.kind()
                        ),
                    ));
                };
                let mut route = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    route.push(message(
                        file,
                        item,
                        &schema::ROUTE_DESTINATION,
                        &format!("{field}[{i}]"),
                    )?);
                }
                expect.route = Some(route);
            }
            "redirect" => expect.redirect = Some(message(file, value, &schema::REDIRECT, &field)?),
            "rewrite" => expect.rewrite = Some(message(file, value, &schema::REWRITE, &field)?),
            "fault" => expect.fault = Some(message(file, value, &schema::FAULT, &field)?),
            "headers" => expect.headers = Some(message(file, value, &schema::HEADERS, &field)?),
            "destination" => {
                expect.destination = Some(message(file, value, &schema::DESTINATION, &field)?)
            }
            "delegate" => {
                return Err(invalid(
                    file,
                    key.at,
                    &field,
                    "delegated virtual services are not modeled, so a delegate cannot be checked",
                ))
            }
            other => {
                return Err(invalid(
                    file,
                    key.at,
                    &field,
                    format!(
                        "unknown field `{other}` of a test case, expected one of: {CASE_FIELDS}"
                    ),
                ))
            }
        }
    }
    let Some(requests) = requests else {
        return Err(invalid(
            file,
            node.at,
            &format!("{path}.request"),
            "missing field `request`",
        ));
    };
    if expect.is_empty() {
        return Err(invalid(
            file,
            node.at,
            path,
            "nothing to check: give at least one of route, redirect, rewrite, fault, headers, destination",
        ));
    }
    Ok(TestCase {
        description,
        file: file.to_owned(),
        at: node.at,
        want_match,
        requests,
        random_value,
        expect,
    })
}

/// An Istio message read along its field table into meshtwin's config type; unmodeled fields
/// are errors here (an expectation on them could not be checked).
fn message<T: DeserializeOwned>(
    file: &str,
    node: &Node,
    msg: &Message,
    path: &str,
) -> Result<T, ImportError> {
    let mut notes = Vec::new();
    let mut walk = Walk::new(file, path.to_owned(), true, &mut notes);
    walk.refusal = "so it cannot be checked";
    let json = walk.object(node, msg, path, "")?;
    walk.finish(json, node.at, path)
}

/// A scalar as text.
fn text(file: &str, node: &Node, field: &str) -> Result<String, ImportError> {
    match &node.value {
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(
            file,
            node.at,
            field,
            format!("expected a string, found {}", node.kind()),
        )),
    }
}

/// A non-empty list of strings.
fn texts(file: &str, node: &Node, field: &str) -> Result<Vec<String>, ImportError> {
    let Value::Seq(items) = &node.value else {
        return Err(invalid(
            file,
            node.at,
            field,
            format!("expected a list of strings, found {}", node.kind()),
        ));
    };
    if items.is_empty() {
        return Err(invalid(
            file,
            node.at,
            field,
            "the list is empty: give at least one value",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, n)| text(file, n, &format!("{field}[{i}]")))
        .collect()
}

/// The requests of a `request`: every (uri, authority, method), in the validator's order.
fn request(file: &str, node: &Node, path: &str) -> Result<Vec<Request>, ImportError> {
    let Value::Map(entries) = &node.value else {
        return Err(invalid(
            file,
            node.at,
            path,
            format!(
                "expected a mapping ({REQUEST_FIELDS}), found {}",
                node.kind()
            ),
        ));
    };
    let (mut authority, mut method, mut uri) = (None, None, None);
    let mut headers: Vec<(String, String)> = Vec::new();
    for (key, value) in entries {
        let field = format!("{path}.{}", key.name);
        match key.name.as_str() {
            "authority" => authority = Some(texts(file, value, &field)?),
            "method" => method = Some(texts(file, value, &field)?),
            "uri" => uri = Some(texts(file, value, &field)?),
            "headers" => match &value.value {
                Value::Null => {}
                Value::Map(pairs) => {
                    for (name, v) in pairs {
                        headers.push((
                            name.name.to_ascii_lowercase(),
                            text(file, v, &format!("{field}.{}", name.name))?,
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        file,
                        value.at,
                        &field,
                        format!(
                            "expected a mapping of header names to values, found {}",
                            value.kind()
                        ),
                    ))
                }
            },
            other => {
                return Err(invalid(
                    file,
                    key.at,
                    &field,
                    format!(
                        "unknown field `{other}` of a request, expected one of: {REQUEST_FIELDS}"
                    ),
                ))
            }
        }
    }
    let missing = |name: &str| {
        invalid(
            file,
            node.at,
            &format!("{path}.{name}"),
            format!("missing field `{name}` (a list of at least one value)"),
        )
    };
    let authority = authority.ok_or_else(|| missing("authority"))?;
    let method = method.ok_or_else(|| missing("method"))?;
    let uri = uri.ok_or_else(|| missing("uri"))?;
    let count = authority
        .len()
        .saturating_mul(method.len())
        .saturating_mul(uri.len());
    if count > MAX_REQUESTS_PER_CASE {
        return Err(invalid(file, node.at, path, format!("{count} requests unfold from these lists; at most {MAX_REQUESTS_PER_CASE} are run per case")));
    }
    let mut out = Vec::with_capacity(count);
    for u in &uri {
        for a in &authority {
            for m in &method {
                out.push(Request {
                    authority: a.clone(),
                    method: m.to_ascii_uppercase(),
                    uri: u.clone(),
                    headers: headers.clone(),
                });
            }
        }
    }
    Ok(out)
}
