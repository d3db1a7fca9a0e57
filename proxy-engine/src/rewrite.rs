//! What a matched route does to a request before it is forwarded — path and authority
//! rewrites, request header operations — and the `Location` of a redirect.

use crate::matching::{MatchBlock, RewriteSpan};
use crate::mesh::{CompiledRoute, HeaderEdit, Redirect};
use crate::types::{Headers, RequestHead};
use std::borrow::Cow;
use std::sync::Arc;

/// Applies `edit` to `headers`: remove, then set (overwrite or add), then add (append to an
/// existing value as a comma list, or add).
pub(crate) fn edit_headers(headers: &Headers, edit: &HeaderEdit) -> Headers {
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
pub(crate) fn forwarded_head<'a>(
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
        let span = block.map_or(RewriteSpan::Root, MatchBlock::rewrite_span);
        out.path = Arc::from(rewritten_path(&head.path, span, new));
    }
    if let Some(authority) = &route.rewrite_authority {
        out.authority = authority.clone();
    }
    if !route.request_headers.is_empty() {
        out.headers = edit_headers(&head.headers, &route.request_headers);
    }
    Cow::Owned(out)
}

/// `path` with the part `span` names replaced by `new`; the rest, query included, kept.
///
/// Envoy's `prefix_rewrite` swaps the matched part of the path
/// (`currentUrlPathAfterRewriteWithMatchedPath`, `source/common/router/config_impl.cc`): the
/// prefix of a prefix match; the whole path before `?` of an exact or regex match; and `/` for a
/// route whose match has no `uri`, because Istio gives such routes `prefix: "/"`
/// (`pilot/pkg/networking/core/route/route.go`). So `/foo/bar?z=1` rewritten with `/hdr/` by a
/// header-only route goes upstream as `/hdr/foo/bar?z=1`.
fn rewritten_path(path: &str, span: RewriteSpan, new: &str) -> String {
    let query_at = path.find('?').unwrap_or(path.len());
    let matched = match span {
        RewriteSpan::Root => usize::from(path.starts_with('/')),
        RewriteSpan::Prefix(len) => len,
        RewriteSpan::WholePath => query_at,
    };
    // A prefix matched without regard to case spans the same bytes; a span that would cut a
    // character (never for a match) replaces the whole path part instead.
    let matched = if matched <= path.len() && path.is_char_boundary(matched) {
        matched
    } else {
        query_at
    };
    format!("{new}{}", &path[matched..])
}

/// The `Location` of a redirect: each part replaced if the redirect sets it.
pub(crate) fn redirect_location(head: &RequestHead, r: &Redirect) -> String {
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
    // Envoy's `path_redirect` keeps the request's query unless the new path has one of its
    // own (`RedirectAction.path_redirect`, `api/envoy/config/route/v3/route_components.proto`).
    let path: Cow<'_, str> = match r.uri.as_deref() {
        None => Cow::Borrowed(&head.path),
        Some(uri) if uri.contains('?') => Cow::Borrowed(uri),
        Some(uri) => match head.path.split_once('?') {
            Some((_, query)) => Cow::Owned(format!("{uri}?{query}")),
            None => Cow::Borrowed(uri),
        },
    };
    format!("{scheme}://{authority}{path}")
}
