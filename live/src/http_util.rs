//! Conversions between hyper's types and the engine's: request heads in, upstream requests and
//! downstream responses out. Hop-by-hop headers are dropped in both directions, as a proxy must.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use proxy_engine::mesh::HeaderEdit;
use proxy_engine::types::HeadParts;
use proxy_engine::RequestHead;
use std::sync::Arc;

/// The body type used throughout live mode: fully buffered.
pub type Body = Full<Bytes>;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1). Compared as
/// `HeaderName`s: for the standard names that is one byte compare, not a string compare.
const HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// The index of `name` in `HOP_BY_HOP`.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    HOP_BY_HOP.iter().position(|h| h == name)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    hop_by_hop_index(name).is_some()
}

/// The headers a `Connection` header names (RFC 9110 §7.6.1: they describe this connection,
/// and a proxy removes them before forwarding), other than the hop-by-hop ones removed anyway
/// and `close`. Empty, without allocating, for the usual `connection: keep-alive`.
fn connection_listed(headers: &http::HeaderMap) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.is_empty() || token.eq_ignore_ascii_case("close") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                if !is_hop_by_hop(&name) && name != http::header::HOST && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out
}

/// Per-connection strings shared by the heads of its requests, so a request allocates only
/// what differs (path, headers): the peer address, the scheme, and the last authority seen.
#[derive(Clone, Debug)]
pub struct ConnStrings {
    /// The peer address (`source` of every request on the connection).
    pub source: Arc<str>,
    /// `http` or `https`.
    pub scheme: Arc<str>,
    authority: Arc<str>,
    /// The header list of a request with no end-to-end headers (shared, not allocated each).
    no_headers: Arc<[(Arc<str>, Arc<str>)]>,
}

impl ConnStrings {
    /// Strings for a connection from `source` over `scheme`.
    pub fn new(source: &str, scheme: &str) -> ConnStrings {
        ConnStrings {
            source: Arc::from(source),
            scheme: Arc::from(scheme),
            authority: Arc::from(""),
            no_headers: Arc::from(Vec::new()),
        }
    }

    fn authority(&mut self, a: &str) -> Arc<str> {
        if &*self.authority != a {
            self.authority = Arc::from(a);
        }
        self.authority.clone()
    }
}

/// The method as a shared string (the common ones are never allocated).
fn method(m: &http::Method) -> Arc<str> {
    use std::sync::OnceLock;
    static COMMON: OnceLock<Vec<(http::Method, Arc<str>)>> = OnceLock::new();
    let common = COMMON.get_or_init(|| {
        [
            http::Method::GET,
            http::Method::POST,
            http::Method::PUT,
            http::Method::DELETE,
            http::Method::HEAD,
            http::Method::PATCH,
            http::Method::OPTIONS,
        ]
        .into_iter()
        .map(|m| {
            let s = Arc::from(m.as_str());
            (m, s)
        })
        .collect()
    });
    common
        .iter()
        .find(|(c, _)| c == m)
        .map_or_else(|| Arc::from(m.as_str()), |(_, s)| s.clone())
}

/// The engine's view of a downstream request on a connection with `strings`.
///
/// The authority is the URI's (HTTP/2, absolute form) or else the `Host` header's. Its
/// **invariant**, which `forward_request` relies on: an authority taken from `Host` is the
/// value of the request's only `Host` header. A request with no usable authority (no `Host`,
/// more than one, or one that is not visible ASCII) gets an empty one, which the listener
/// answers 400, as RFC 9112 §3.2 asks.
pub fn head_from_request(parts: &http::request::Parts, strings: &mut ConnStrings) -> RequestHead {
    // One pass over the headers: the end-to-end ones for the head, and `Host`.
    let mut host: Option<&HeaderValue> = None;
    let mut hosts = 0;
    let mut headers: Vec<(Arc<str>, Arc<str>)> = Vec::new();
    let listed = connection_listed(&parts.headers);
    for (n, v) in &parts.headers {
        if *n == http::header::HOST {
            // Not a header of the head: the head carries it as the authority.
            host = Some(v);
            hosts += 1;
        } else if !is_hop_by_hop(n) && !listed.contains(n) {
            if let Ok(v) = v.to_str() {
                headers.push((Arc::from(n.as_str()), Arc::from(v)));
            }
        }
    }
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str(),
        None if hosts == 1 => host.and_then(|h| h.to_str().ok()).unwrap_or_default(),
        None => "",
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    RequestHead::new(HeadParts {
        method: method(&parts.method),
        authority: strings.authority(authority),
        path: Arc::from(path),
        scheme: strings.scheme.clone(),
        headers: if headers.is_empty() {
            strings.no_headers.clone()
        } else {
            Arc::from(headers)
        },
        source: strings.source.clone(),
    })
}

/// The HTTP/1.1 request to send upstream for `head` (origin-form URI, `Host` from the
/// authority), with `extra` headers appended; `None` if the head cannot be sent (a method, path
/// or header hyper would reject).
///
/// Built field by field rather than with `Request::builder`: this runs once per attempt on the
/// proxy's hot path, and the builder re-parses every name and moves the whole request per call.
pub fn upstream_request(
    head: &RequestHead,
    body: Bytes,
    extra: &[(HeaderName, HeaderValue)],
) -> Option<Request<Body>> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = http::Method::from_bytes(head.method.as_bytes()).ok()?;
    *req.uri_mut() = http::Uri::try_from(&*head.path).ok()?;
    let h = req.headers_mut();
    h.reserve(head.headers.len() + 1 + extra.len());
    set_host(h, head)?; // first, as RFC 9112 asks of user agents
    for (name, value) in head.headers.iter() {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    append(h, extra);
    Some(req)
}

/// The upstream request made from the downstream request's own parts, for a first attempt
/// whose head the engine left as it was (`head` is the head made from `parts`): its headers
/// are forwarded as parsed, not rebuilt from the engine's strings. Hop-by-hop headers are
/// dropped, `Host` is set from the authority, the URI is made origin-form, the version
/// HTTP/1.1 (the downstream may have been HTTP/2). `None` if the authority is not a valid
/// header value.
pub fn forward_request(
    mut parts: http::request::Parts,
    head: &RequestHead,
    body: Bytes,
    extra: &[(HeaderName, HeaderValue)],
) -> Option<Request<Body>> {
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = http::Uri::try_from(&*head.path).ok()?;
        set_host(&mut parts.headers, head)?; // in place of the downstream's, if any
    }
    // Otherwise the authority came from the only `Host` header (see `head_from_request`),
    // which already says it.
    strip_hop_by_hop(&mut parts.headers);
    append(&mut parts.headers, extra);
    parts.version = http::Version::HTTP_11;
    parts.extensions.clear();
    Some(Request::from_parts(parts, Full::new(body)))
}

/// Sets `Host` to the head's authority, replacing any; `None` if the authority is not a
/// valid header value. A `Host` that already says it is kept (no new value is made).
fn set_host(headers: &mut http::HeaderMap, head: &RequestHead) -> Option<()> {
    if headers.get(http::header::HOST).map(HeaderValue::as_bytes) == Some(head.authority.as_bytes())
    {
        return Some(());
    }
    let host = HeaderValue::from_str(&head.authority).ok()?;
    headers.insert(http::header::HOST, host);
    Some(())
}

/// Appends `extra` (the driver's own headers, such as the attempt count).
fn append(headers: &mut http::HeaderMap, extra: &[(HeaderName, HeaderValue)]) {
    for (name, value) in extra {
        headers.append(name.clone(), value.clone());
    }
}

/// Removes the hop-by-hop headers and those the `Connection` header names: one pass over the
/// (few) names noting which are present, then a hashed removal of only those (most peers send
/// `connection: keep-alive` and nothing else hop-by-hop). Allocates nothing then.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The response to send downstream for an upstream answer, after the route's header edits.
pub fn forward_response(
    mut parts: http::response::Parts,
    body: Bytes,
    edit: Option<&HeaderEdit>,
) -> Response<Body> {
    strip_hop_by_hop(&mut parts.headers);
    // `content-length` stays: hyper's client read exactly that many bytes, so it is the
    // body's length (and for a HEAD response, the length the GET would have had).
    if let Some(edit) = edit {
        apply_edit(&mut parts.headers, edit);
    }
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, Full::new(body))
}

/// Applies a route's header operations to response headers.
pub fn apply_edit(headers: &mut http::HeaderMap, edit: &HeaderEdit) {
    for name in &edit.remove {
        headers.remove(&**name);
    }
    for (name, value) in &edit.set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    for (name, value) in &edit.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
}

/// A locally generated response (Envoy's local reply) as the engine decided it: status,
/// headers and body (see `proxy_engine::local_reply`).
pub fn local_reply(status: u16, headers: &[(Arc<str>, Arc<str>)], body: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let h = resp.headers_mut();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    resp
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hop_by_hop_name_is_recognized_and_no_other() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
            let upper = HeaderName::from_bytes(name.as_str().to_uppercase().as_bytes());
            assert_eq!(upper.ok().and_then(|n| hop_by_hop_index(&n)), Some(i));
        }
        for name in [
            "host",
            "user-agent",
            "content-length",
            "x-connection",
            "tee",
            "upgrades",
        ] {
            let n = HeaderName::from_static(name);
            assert!(!is_hop_by_hop(&n), "{name}");
        }
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(http::header::SERVER, HeaderValue::from_static("nginx"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(http::header::SERVER));
    }

    #[test]
    fn headers_the_connection_header_names_are_not_forwarded() {
        let req = Request::builder()
            .uri("/reviews")
            .header("host", "reviews")
            .header("connection", "keep-alive, X-Secret-Route")
            .header("connection", "close,x-other")
            .header("x-secret-route", "admin")
            .header("x-other", "1")
            .header("x-kept", "2")
            .body(())
            .expect("a request");
        let (parts, ()) = req.into_parts();
        let mut strings = ConnStrings::new("127.0.0.1:5000", "http");
        let head = head_from_request(&parts, &mut strings);
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["x-kept"], "the engine never routes on them");
        let out = forward_request(parts, &head, Bytes::new(), &[]).expect("forwardable");
        let mut sent: Vec<&str> = out.headers().keys().map(HeaderName::as_str).collect();
        sent.sort_unstable();
        assert_eq!(sent, ["host", "x-kept"]);
    }
}
