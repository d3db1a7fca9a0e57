//! The values that cross the engine boundary: identifiers, request and response heads, the
//! actions the engine asks a driver to perform, and the final `Outcome` of a request.

use crate::head::HeaderEdit;
pub use crate::head::{HeadParts, Headers, RequestHead};
pub use crate::ids::{AttemptId, ConnId, RequestId};
use crate::ids::{ClusterId, DestinationId, RouteId};
use crate::registry::EndpointId;
use std::fmt;
use std::sync::Arc;

/// What the engine needs to know of an upstream response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    /// HTTP status code.
    pub status: u16,
}

/// How an upstream attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The response finished; the connection can carry another request.
    Done,
    /// The response finished and the upstream closed the connection.
    DoneAndClosed,
    /// The stream was reset or the connection dropped before the response finished.
    Reset,
}

/// Why an upstream connection could not be established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The peer refused the connection (nothing listening).
    Refused,
    /// The connect did not finish in time.
    Timeout,
    /// The TLS handshake failed: the server's certificate did not verify, or the server does
    /// not speak TLS (503 `UF`, as Envoy's "TLS error" connection failure).
    Tls,
}

/// Envoy-style response flags (`UH`, `UF`, `NR`, …), a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResponseFlags(pub u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $short:literal;)*) => {
        impl ResponseFlags {
            $($(#[$doc])* pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            /// Every flag with its Envoy short name, in bit order.
            pub const ALL: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $short)),*];
        }
    };
}

flags! {
    /// `UH`: no healthy upstream host.
    NO_HEALTHY_UPSTREAM = 0, "UH";
    /// `UF`: upstream connection failure.
    UPSTREAM_CONNECTION_FAILURE = 1, "UF";
    /// `UO`: upstream overflow (circuit breaker).
    UPSTREAM_OVERFLOW = 2, "UO";
    /// `NR`: no route found.
    NO_ROUTE_FOUND = 3, "NR";
    /// `NC`: no cluster found (for example an undefined subset).
    NO_CLUSTER_FOUND = 4, "NC";
    /// `URX`: upstream retry limit exceeded.
    UPSTREAM_RETRY_LIMIT_EXCEEDED = 5, "URX";
    /// `UT`: upstream request timeout.
    UPSTREAM_REQUEST_TIMEOUT = 6, "UT";
    /// `UR`: upstream remote reset.
    UPSTREAM_REMOTE_RESET = 7, "UR";
    /// `UC`: upstream connection termination.
    UPSTREAM_CONNECTION_TERMINATION = 8, "UC";
    /// `DC`: downstream connection termination (the client went away).
    DOWNSTREAM_CONNECTION_TERMINATION = 9, "DC";
    /// `DI`: a fault delay was injected.
    DELAY_INJECTED = 10, "DI";
    /// `FI`: a fault abort was injected.
    FAULT_INJECTED = 11, "FI";
    /// `RL`: rate limited.
    RATE_LIMITED = 12, "RL";
}

impl ResponseFlags {
    /// No flag set.
    pub const NONE: ResponseFlags = ResponseFlags(0);

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set flags' short names, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        ResponseFlags::ALL
            .iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| *n)
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for ResponseFlags {
    fn bitor_assign(&mut self, rhs: ResponseFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for ResponseFlags {
    /// Envoy access-log style: `-` when empty, else comma-separated short names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for name in self.names() {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        Ok(())
    }
}

/// The final result of a downstream request: everything metrics need, so drivers record
/// outcomes without interpreting them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Final HTTP status sent downstream; 0 when the client went away before any response.
    pub status: u16,
    /// Envoy response flags.
    pub flags: ResponseFlags,
    /// Upstream attempts made (0 for local replies).
    pub attempts: u32,
    /// The matched route, if any.
    pub route: Option<RouteId>,
    /// The chosen cluster (service or service subset), if any.
    pub cluster: Option<ClusterId>,
    /// The destination (service, version) of the last attempt's endpoint, if any.
    pub destination: Option<DestinationId>,
    /// The last attempt's endpoint, if any.
    pub endpoint: Option<EndpointId>,
    /// The generation of the compiled mesh the request was routed with
    /// (`CompiledMesh::generation`): `route` is an id of that generation. Cluster, destination
    /// and endpoint ids are stable across a lineage.
    pub generation: u32,
}

impl Outcome {
    /// An outcome with only a status and flags (no route, cluster or endpoint): a local reply
    /// before routing, or a test fixture.
    pub fn bare(status: u16, flags: ResponseFlags) -> Outcome {
        Outcome {
            status,
            flags,
            attempts: 0,
            route: None,
            cluster: None,
            destination: None,
            endpoint: None,
            generation: 0,
        }
    }

    /// Whether the request counts as a success: a response was sent and it is not a 5xx
    /// (the convention of Istio's and Flagger's request-success-rate).
    pub fn is_success(&self) -> bool {
        self.status != 0 && self.status < 500
    }
}

/// What the engine asks the driver to do. Drain with `Proxy::poll_action` after every input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open an upstream connection to `endpoint`; answer with `handle_connected` or
    /// `handle_connect_failed`.
    Connect {
        /// Engine's id for the new connection.
        conn: ConnId,
        /// Where to connect.
        endpoint: EndpointId,
        /// Speak HTTP/2 on it (many attempts at once) instead of HTTP/1.1.
        http2: bool,
        /// Opened for a mirrored copy: a driver that models the network draws the
        /// handshake's legs from its mirror stream, so mirrors never move the primary's draws.
        mirror: bool,
        /// Originate TLS on it (the cluster's `DestinationRule` `tls`); a failed handshake is
        /// `ConnectFailure::Tls`.
        tls: Option<std::sync::Arc<crate::tls::UpstreamTls>>,
    },
    /// Send an attempt on an established connection.
    Send {
        /// The downstream request this attempt serves (its body is the driver's to send).
        req: RequestId,
        /// The attempt; its response comes back through `handle_response_head` and
        /// `handle_attempt_end`.
        attempt: AttemptId,
        /// The connection to send on.
        conn: ConnId,
        /// The endpoint the connection goes to.
        endpoint: EndpointId,
        /// The request head after rewrites and header operations.
        head: RequestHead,
        /// Which try this is (1 for the first); sent upstream as `x-envoy-attempt-count`.
        try_number: u32,
    },
    /// The engine made `copy`, a mirrored copy of `req` (fire and forget): the copy's
    /// attempts come as `Send { req: copy, .. }` through the mirror cluster's pool and limits,
    /// so the driver keeps `req`'s body for them until `MirrorDone` for `copy`. The copy has a
    /// deadline (see `proxy::MIRROR_TIMEOUT`) and always ends in exactly one `MirrorDone`.
    Mirror {
        /// The downstream request copied (its body is the driver's to send).
        req: RequestId,
        /// The copy (an id with `RequestId::is_mirror_copy`).
        copy: RequestId,
    },
    /// A mirrored copy is over: answered, failed or timed out. Its answer never goes
    /// downstream; drivers count it per destination.
    MirrorDone {
        /// The copy.
        copy: RequestId,
        /// Where it went.
        destination: DestinationId,
        /// Its final status (a local failure's: 503 `UF` or `UO`, 504 `UT`).
        status: u16,
        /// Flags of a local failure.
        flags: ResponseFlags,
        /// From the copy's making to its end.
        latency: crate::time::Nanos,
    },
    /// Abandon an attempt (timeout or downstream cancel): reset its stream.
    CancelAttempt {
        /// The attempt to reset.
        attempt: AttemptId,
    },
    /// Close an upstream connection.
    CloseConnection {
        /// The connection to close.
        conn: ConnId,
    },
    /// Stream this attempt's response downstream as the answer to `req`.
    Forward {
        /// The downstream request.
        req: RequestId,
        /// The attempt whose response is the answer.
        attempt: AttemptId,
        /// Header operations the route applies to the response, if any.
        response_headers: Option<Arc<HeaderEdit>>,
    },
    /// Answer `req` locally (no upstream response), for example 404 `NR`, 503 `UH`, a
    /// redirect or a direct response.
    LocalReply {
        /// The downstream request.
        req: RequestId,
        /// Status to send.
        status: u16,
        /// Flags explaining the reply.
        flags: ResponseFlags,
        /// Response headers (e.g. `location` of a redirect, `content-type` of a body).
        headers: Vec<(Arc<str>, Arc<str>)>,
        /// Response body (empty for none): a direct response's, else Envoy's for the flags
        /// (see `local_reply`).
        body: Arc<str>,
    },
    /// Something worth counting happened (a retry, a breaker overflow, an ejection); drivers
    /// hand it to their metrics.
    Event(EngineEvent),
    /// The request is finished; emitted exactly once per request, after any `Forward` or
    /// `LocalReply` for it.
    Complete {
        /// The downstream request.
        req: RequestId,
        /// Its final outcome.
        outcome: Outcome,
    },
}

/// Resilience events, for metrics (what Envoy counts as cluster stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    /// A retry was scheduled (`upstream_rq_retry`).
    Retry {
        /// The cluster.
        cluster: ClusterId,
    },
    /// A retry was refused by `maxRetries` or the retry budget (`upstream_rq_retry_overflow`).
    RetryOverflow {
        /// The cluster.
        cluster: ClusterId,
    },
    /// An attempt overflowed the pending queue or `http2MaxRequests` (`upstream_rq_pending_overflow`,
    /// 503 `UO`).
    Overflow {
        /// The cluster.
        cluster: ClusterId,
    },
    /// A host was ejected by outlier detection.
    Ejected {
        /// The cluster.
        cluster: ClusterId,
        /// The host.
        endpoint: EndpointId,
    },
    /// An ejected host returned.
    Unejected {
        /// The cluster.
        cluster: ClusterId,
        /// The host.
        endpoint: EndpointId,
    },
    /// An ejection was blocked by `maxEjectionPercent` (`ejections_overflow`).
    EjectionOverflow {
        /// The cluster.
        cluster: ClusterId,
        /// The host.
        endpoint: EndpointId,
    },
}

impl EngineEvent {
    /// The cluster the event belongs to.
    pub fn cluster(&self) -> ClusterId {
        match *self {
            EngineEvent::Retry { cluster }
            | EngineEvent::RetryOverflow { cluster }
            | EngineEvent::Overflow { cluster }
            | EngineEvent::Ejected { cluster, .. }
            | EngineEvent::Unejected { cluster, .. }
            | EngineEvent::EjectionOverflow { cluster, .. } => cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_like_envoy() {
        assert_eq!(ResponseFlags::NONE.to_string(), "-");
        let f = ResponseFlags::UPSTREAM_OVERFLOW | ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
        assert_eq!(f.to_string(), "UO,URX");
    }

    #[test]
    fn host_strips_port_only() {
        assert_eq!(RequestHead::get("reviews:9080", "/").host(), "reviews");
        assert_eq!(RequestHead::get("reviews", "/").host(), "reviews");
        assert_eq!(RequestHead::get("[::1]:80", "/").host(), "[::1]");
    }
}
