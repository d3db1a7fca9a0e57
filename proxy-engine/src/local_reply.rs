//! What a locally generated response (Envoy's "local reply") says: its body and headers,
//! decided here once for every driver.
//!
//! The bodies are Envoy's: `no healthy upstream` (`UH`, from the router's
//! `sendNoHealthyUpstreamResponse`), `upstream connect error or disconnect/reset before headers.
//! reset reason: …` (`UF`, `UO`, `UR`), `upstream request timeout` (`UT`), `fault filter abort`
//! (`FI`) and `local_rate_limited` (`RL`); a 404 `NR` or a 503 `NC` has none (Envoy's router
//! `source/common/router/router.cc`, `source/common/http/utility.cc`).

use crate::types::ResponseFlags;
use std::sync::Arc;

/// A reply's headers, name and value, in order.
pub type Headers = Vec<(Arc<str>, Arc<str>)>;

/// Envoy's body for a local reply with these flags (the first flag in this order that is set);
/// empty when Envoy sends none.
pub fn body_for(flags: ResponseFlags) -> &'static str {
    const BODIES: &[(ResponseFlags, &str)] = &[
        (ResponseFlags::NO_HEALTHY_UPSTREAM, "no healthy upstream"),
        (
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        (
            ResponseFlags::UPSTREAM_OVERFLOW,
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ),
        (
            ResponseFlags::UPSTREAM_REMOTE_RESET,
            "upstream connect error or disconnect/reset before headers. reset reason: remote reset",
        ),
        (ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, "upstream request timeout"),
        (ResponseFlags::FAULT_INJECTED, "fault filter abort"),
        (ResponseFlags::RATE_LIMITED, "local_rate_limited"),
    ];
    BODIES
        .iter()
        .find(|(f, _)| flags.contains(*f))
        .map_or("", |(_, b)| b)
}

/// The reply's final body and headers: the given body (a direct response's), else Envoy's for
/// the flags; with a body, `content-type: text/plain` unless the headers name one.
pub fn finish(
    flags: ResponseFlags,
    mut headers: Headers,
    body: Option<Arc<str>>,
) -> (Headers, Arc<str>) {
    let body = body.unwrap_or_else(|| Arc::from(body_for(flags)));
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        headers.push((Arc::from("content-type"), Arc::from("text/plain")));
    }
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_first_flag_envoy_would_name() {
        assert_eq!(body_for(ResponseFlags::NO_ROUTE_FOUND), "");
        assert_eq!(body_for(ResponseFlags::NO_CLUSTER_FOUND), "");
        assert_eq!(
            body_for(ResponseFlags::NO_HEALTHY_UPSTREAM),
            "no healthy upstream"
        );
        let both = ResponseFlags::UPSTREAM_REQUEST_TIMEOUT | ResponseFlags::DELAY_INJECTED;
        assert_eq!(body_for(both), "upstream request timeout");
    }

    #[test]
    fn a_body_gets_a_content_type_once() {
        let (h, b) = finish(ResponseFlags::RATE_LIMITED, Vec::new(), None);
        assert_eq!(&*b, "local_rate_limited");
        assert_eq!(h.len(), 1);
        let own = vec![(Arc::from("Content-Type"), Arc::from("application/json"))];
        let (h, b) = finish(ResponseFlags::NONE, own, Some(Arc::from("{}")));
        assert_eq!((h.len(), &*b), (1, "{}"));
        let (h, b) = finish(ResponseFlags::NO_ROUTE_FOUND, Vec::new(), None);
        assert!(h.is_empty() && b.is_empty());
    }
}
