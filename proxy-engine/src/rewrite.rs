//! What a matched route does to a request before it is forwarded — path and authority
//! rewrites, request header operations — and the `Location` of a redirect.

use crate::matching::MatchBlock;
use crate::mesh::{CompiledRoute, HeaderEdit, Redirect};
use crate::types::{Headers, RequestHead};
use std::borrow::Cow;
use std::sync::Arc;

/// Applies `edit` to `headers`: remove, then set (overwrite or add), then add (append to an
/// existing value as a comma list, or add).
pub fn edit_headers(headers: &Headers, edit: &HeaderEdit) -> Headers {
    let mut out: Vec<(Arc<str>, Arc<str>)> = headers
        .iter()
        .filter(|(n, _)| !edit.remove.iter().any(|r| r == n))
        .cloned()
        .collect();
    for (name, value) in &edit.set {
        out.retain(|(n, _)| n != name);
        out.push((name.clone(), value.clone()));
    }
    for (name, value) in &edit.add {
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = Arc::from(format!("{v},{value}")),
            None => out.push((name.clone(), value.clone())),
        }
    }
    Arc::from(out)
}

/// The request as forwarded by `route`, matched by `block` (None: the route has no match
/// blocks). Borrows the input (no copy) when the route edits nothing.
pub fn forwarded_head<'a>(
    head: &'a RequestHead,
    route: &CompiledRoute,
    block: Option<&MatchBlock>,
) -> Cow<'a, RequestHead> {
    let edits = route.rewrite_uri.is_some()
        || route.rewrite_authority.is_some()
        || !route.request_headers.is_empty();
    if !edits {
        return Cow::Borrowed(head);
    }
    let mut out = head.clone();
    if let Some(new) = &route.rewrite_uri {
        out.path = match block.and_then(MatchBlock::uri_prefix) {
            // Replace the matched prefix, keep the rest (query included).
            Some(prefix)
                if head.path.len() >= prefix.len() && head.path.is_char_boundary(prefix.len()) =>
            {
                Arc::from(format!("{new}{}", &head.path[prefix.len()..]))
            }
            _ => new.clone(),
        };
    }
    if let Some(authority) = &route.rewrite_authority {
        out.authority = authority.clone();
    }
    if !route.request_headers.is_empty() {
        out.headers = edit_headers(&head.headers, &route.request_headers);
    }
    Cow::Owned(out)
}

/// The `Location` of a redirect: each part replaced if the redirect sets it.
pub fn redirect_location(head: &RequestHead, r: &Redirect) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(&head.scheme);
    let authority = r.authority.as_deref().unwrap_or(&head.authority);
    let authority = match r.port {
        Some(port) => {
            let host = authority.rsplit_once(':').map_or(authority, |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    authority
                }
            });
            format!("{host}:{port}")
        }
        None => authority.to_owned(),
    };
    let path = r.uri.as_deref().unwrap_or(&head.path);
    format!("{scheme}://{authority}{path}")
}
