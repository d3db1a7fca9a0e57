//! The mesh configuration as users write it: Istio-shaped `VirtualService` and
//! `DestinationRule` types (field names follow Istio's API in snake_case; enum values such as
//! `ROUND_ROBIN` keep Istio's spelling). These are plain data; `CompiledMesh::compile` turns
//! them, together with a `Registry` of endpoints, into a validated, indexed mesh.

use crate::time::Nanos;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The traffic policy of a whole mesh.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename = "Mesh")]
pub struct MeshConfig {
    /// Routing rules per host, Istio `VirtualService`.
    pub virtual_services: Vec<VirtualService>,
    /// Per-destination policy and subsets, Istio `DestinationRule`.
    pub destination_rules: Vec<DestinationRule>,
    /// Ingress and egress gateway servers, Istio `Gateway` (see `Gateway`).
    pub gateways: Vec<Gateway>,
    /// Hosts outside the mesh made known to it, Istio `ServiceEntry`.
    pub service_entries: Vec<ServiceEntry>,
    /// What sidecars do with a host the mesh does not know (mesh config
    /// `outboundTrafficPolicy`). Default `ALLOW_ANY`.
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// A local rate limit every proxy applies to all its requests (one bucket per proxy), as
    /// Envoy's `local_ratelimit` filter configured through an `EnvoyFilter`. Extension field.
    pub local_rate_limit: Option<LocalRateLimit>,
}

/// Envoy `local_ratelimit`: a token bucket that starts full and refills continuously at
/// `tokens_per_fill` per `fill_interval` (Envoy ≥ 1.31); a request takes one token, and with
/// none left it is answered `status` (429) with flag `RL`. Extension field (Istio configures it
/// through `EnvoyFilter`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimit {
    /// Bucket capacity (> 0).
    pub max_tokens: u32,
    /// Tokens added per `fill_interval`. Default 1.
    #[serde(default)]
    pub tokens_per_fill: Option<u32>,
    /// Refill period (≥ 50ms, as Envoy requires).
    pub fill_interval: Nanos,
    /// Status of a limited request; values below 400 become 429. Default 429.
    #[serde(default)]
    pub status: Option<u16>,
}

/// Istio `HTTPRetry`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRetry {
    /// Number of retries (at most `1 + attempts` tries); 0 turns retries off, as in Istio.
    pub attempts: u32,
    /// Timeout of each try; ignored when ≥ a non-zero route `timeout`. Default none.
    pub per_try_timeout: Option<Nanos>,
    /// Comma list of Envoy retry conditions (`5xx`, `gateway-error`, `reset`,
    /// `connect-failure`, `refused-stream`, `retriable-4xx`, `retriable-status-codes`, gRPC
    /// names) and status codes. Default: Istio's
    /// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`.
    pub retry_on: Option<String>,
    /// Prefer hosts not tried before (Envoy's `previous_hosts` predicate, up to 5 re-picks).
    /// Default true (Istio ≥ 1.26); ignored under consistent hashing.
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval of the jittered exponential backoff. Default 25ms.
    pub backoff: Option<Nanos>,
    /// Cap of the backoff interval (a meshtwin extension: Envoy's
    /// `retry_policy.retry_back_off.max_interval`, which Istio does not expose). At least
    /// `backoff`; default 10 × `backoff`, as in Envoy.
    pub max_backoff: Option<Nanos>,
}

/// Istio `VirtualService`: ordered HTTP routes for a set of hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualService {
    /// Name, for reports and error messages; defaults to the first host.
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace of the object, for `gateways` names and a gateway server's `namespace/host`
    /// restriction. Default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Hosts this rule applies to: service names for sidecars (`mesh`); at a gateway, any DNS
    /// name, with a wildcard left-most label (`*.example.com`) or `*`.
    pub hosts: Vec<String>,
    /// Gateways and sidecars that apply these routes, as Istio: `mesh` (every sidecar),
    /// `<name>` or `./<name>` (a `Gateway` in this object's namespace), `<namespace>/<name>`,
    /// or the legacy `<name>.<namespace>.svc.cluster.local`. Empty means `[mesh]`; once a
    /// gateway is listed, sidecars apply the routes only if `mesh` is listed too.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Ordered HTTP routes; the first that matches wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

/// Istio `HTTPRoute`: which requests it takes (`match`) and what it does with them.
/// Exactly one of `route`, `redirect`, `direct_response` must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRoute {
    /// Route name, shown in reports; defaults to the route's index.
    pub name: Option<String>,
    /// Match blocks, ORed; conditions inside one block are ANDed. Empty matches everything.
    #[serde(rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations; weights are relative.
    pub route: Vec<RouteDestination>,
    /// Answer with a redirect instead of forwarding.
    pub redirect: Option<HttpRedirect>,
    /// Answer with a fixed response instead of forwarding.
    pub direct_response: Option<HttpDirectResponse>,
    /// Rewrite the path prefix or authority before forwarding.
    pub rewrite: Option<HttpRewrite>,
    /// Request and response header operations.
    pub headers: Option<HeaderOperations>,
    /// Fault injection (delay and/or abort) before routing.
    pub fault: Option<HttpFaultInjection>,
    /// Send a fire-and-forget copy to this destination.
    pub mirror: Option<Destination>,
    /// Percentage (0–100) of requests mirrored to `mirror`; 100 when unset.
    pub mirror_percentage: Option<f64>,
    /// Several mirrors, each with its own percentage.
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Timeout of the whole request, all tries and backoff included (504 `UT`). Default none
    /// (Istio writes 0, infinite); `"0s"` also means none.
    pub timeout: Option<Nanos>,
    /// Retry policy. Unset means Istio's default: 2 retries on connect failures and refused
    /// streams.
    pub retries: Option<HttpRetry>,
    /// A local rate limit on this route (one bucket per proxy per route). Extension field.
    pub local_rate_limit: Option<LocalRateLimit>,
}

/// Istio `HTTPMatchRequest`: conditions that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpMatchRequest {
    /// Name of the match block (reports only).
    pub name: Option<String>,
    /// Path: `Exact` (query removed), `Prefix` (raw prefix of the path), `Regex` (whole path,
    /// query removed).
    pub uri: Option<StringMatch>,
    /// Match `uri` exact/prefix ignoring ASCII case (not regex).
    pub ignore_uri_case: bool,
    /// `:scheme` (`http`, `https`).
    pub scheme: Option<StringMatch>,
    /// `:method`.
    pub method: Option<StringMatch>,
    /// `:authority` / Host.
    pub authority: Option<StringMatch>,
    /// Headers that must match (lower-case names).
    #[serde(deserialize_with = "crate::unique::deserialize")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Headers that must not match (an absent header counts as not matching).
    #[serde(deserialize_with = "crate::unique::deserialize")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Query parameters that must match.
    #[serde(deserialize_with = "crate::unique::deserialize")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// The port addressed: at a gateway, the server port the request came in on. Modeled
    /// services have one port each, so at a sidecar any `port` matches.
    pub port: Option<u16>,
    /// Overrides the virtual service's `gateways` for this block (Istio's per-match
    /// `gateways`): the block applies only at the gateways (or `mesh`) it lists.
    pub gateways: Vec<String>,
}

/// Istio `StringMatch`, plus `Present` for Istio's empty match `{}` (the value must exist).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringMatch {
    /// Equal, case-sensitive.
    Exact(String),
    /// Starts with, case-sensitive.
    Prefix(String),
    /// RE2-style regular expression that must match the whole value.
    Regex(String),
    /// The value is present, whatever it is.
    Present,
}

/// Istio `HTTPRouteDestination`: one weighted destination of a route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    /// The service (and optional subset) to send to.
    pub destination: Destination,
    /// Relative weight; entries of weight 0 get no traffic. Defaults to 100 when the route has
    /// a single destination, 0 otherwise, as in Istio.
    #[serde(default)]
    pub weight: Option<u32>,
}

/// Istio `Destination`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Service name in the registry.
    pub host: String,
    /// Subset name defined by a `DestinationRule` for the host.
    #[serde(default)]
    pub subset: Option<String>,
    /// Port on the service (informational: every modeled service has one port).
    #[serde(default)]
    pub port: Option<u16>,
}

/// Istio `HTTPRedirect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRedirect {
    /// Replace the whole path (query included) with this.
    pub uri: Option<String>,
    /// Replace the authority with this.
    pub authority: Option<String>,
    /// Replace the port.
    pub port: Option<u16>,
    /// Replace the scheme.
    pub scheme: Option<String>,
    /// Status; default 301.
    pub redirect_code: Option<u16>,
}

/// Istio `HTTPDirectResponse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// Status to answer with.
    pub status: u16,
    /// Body, as a string.
    #[serde(default)]
    pub body: Option<String>,
}

/// Istio `HTTPRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpRewrite {
    /// Replaces the matched `uri` prefix (or the whole path for other matches).
    pub uri: Option<String>,
    /// Replaces the authority (Host).
    pub authority: Option<String>,
}

/// Istio `Headers`: operations on the request (before forwarding) and on the response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOperations {
    /// Operations on the forwarded request.
    pub request: HeaderOps,
    /// Operations on the response sent downstream.
    pub response: HeaderOps,
}

/// Istio `Headers.HeaderOperations`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOps {
    /// Overwrite (or add) these headers.
    #[serde(deserialize_with = "crate::unique::deserialize")]
    pub set: BTreeMap<String, String>,
    /// Append these values (comma list if present, else add).
    #[serde(deserialize_with = "crate::unique::deserialize")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    pub remove: Vec<String>,
}

/// Istio `HTTPFaultInjection`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFaultInjection {
    /// Delay before forwarding.
    pub delay: Option<FaultDelay>,
    /// Answer with an error instead of forwarding.
    pub abort: Option<FaultAbort>,
}

/// Istio `HTTPFaultInjection.Delay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    /// How long to hold the request (≥ 1 ms).
    pub fixed_delay: Nanos,
    /// Percentage (0–100) of requests delayed; unset means 0, as in Istio.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// Istio `HTTPFaultInjection.Abort`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// Status to answer with.
    pub http_status: u16,
    /// Percentage (0–100) of requests aborted; unset means 0, as in Istio.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// Istio `HTTPMirrorPolicy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where copies go.
    pub destination: Destination,
    /// Percentage (0–100) mirrored; 100 when unset.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// Istio `DestinationRule`: traffic policy and subsets for a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRule {
    /// Service the rule applies to.
    pub host: String,
    /// Policy for all traffic to the host.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    /// Named groups of endpoints selected by labels.
    #[serde(default)]
    pub subsets: Vec<Subset>,
}

/// Istio `Subset`: endpoints whose labels include all of `labels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    /// Subset name, referenced from `Destination.subset`.
    pub name: String,
    /// Labels an endpoint must carry (for example `{"version": "v1"}`); none (the default)
    /// selects every endpoint, as the egress tasks' subset `cnn` of the egress gateway does.
    #[serde(default, deserialize_with = "crate::unique::deserialize")]
    pub labels: BTreeMap<String, String>,
    /// Policy for this subset; each block it sets replaces the rule's block whole.
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

/// Istio `TrafficPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficPolicy {
    /// Load balancing; default `LEAST_REQUEST`.
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Upstream connection settings and circuit-breaker limits.
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Passive health checking: eject hosts that keep failing.
    pub outlier_detection: Option<OutlierDetection>,
    /// Envoy's retry budget: it replaces `connection_pool.http.max_retries`. Extension field
    /// (Istio master's `trafficPolicy.retryBudget`).
    pub retry_budget: Option<RetryBudget>,
    /// TLS to the destination's endpoints (TLS origination). meshtwin's services have one
    /// port, so Istio's `portLevelSettings[port].tls` is written here.
    pub tls: Option<ClientTlsSettings>,
}

/// Istio `ClientTLSSettings` (the fields meshtwin models): how a client proxy secures its
/// connections to a destination.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsSettings {
    /// `DISABLE` (the default: plain text), `SIMPLE` (originate TLS and verify the server),
    /// `MUTUAL` (as `SIMPLE`, presenting `client_certificate`), or `ISTIO_MUTUAL` (the mesh's
    /// own mutual TLS, whose certificates the twin does not model: plain text, as between
    /// sidecars).
    pub mode: Option<String>,
    /// The name sent in the handshake (SNI) and verified against the server's certificate.
    /// Default: the destination's host, as Istio's automatic SNI takes the request's host.
    pub sni: Option<String>,
    /// PEM file of the certificate authorities the server's certificate must chain to.
    /// Default: the system's (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_certificates: Option<String>,
    /// PEM certificate chain file presented to the server (`MUTUAL`).
    pub client_certificate: Option<String>,
    /// PEM private key file of `client_certificate` (`MUTUAL`).
    pub private_key: Option<String>,
    /// Accept any server certificate. Default false.
    pub insecure_skip_verify: Option<bool>,
}

/// Istio `ConnectionPoolSettings`: Envoy's circuit breakers. Limits are per cluster per client
/// proxy; unset (or 0) means 2³²−1, effectively unlimited, as Istio writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionPoolSettings {
    /// TCP settings.
    pub tcp: Option<TcpPoolSettings>,
    /// HTTP settings.
    pub http: Option<HttpPoolSettings>,
}

/// Istio `ConnectionPoolSettings.TCPSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpPoolSettings {
    /// Connections to all hosts of the cluster (soft: every picked host gets at least one).
    pub max_connections: Option<u32>,
    /// Connect timeout. Default 10s (Istio's mesh default).
    pub connect_timeout: Option<Nanos>,
    /// Idle connection lifetime, used when `http.idle_timeout` is unset. Default 1h.
    pub idle_timeout: Option<Nanos>,
}

/// Istio `ConnectionPoolSettings.HTTPSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPoolSettings {
    /// Whether to speak HTTP/2 to the upstream; default `DEFAULT` (HTTP/1.1 here).
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    /// Requests waiting for a connection, across the cluster; overflow → 503 `UO`.
    pub http1_max_pending_requests: Option<u32>,
    /// Requests in flight across the cluster; overflow → 503 `UO`.
    pub http2_max_requests: Option<u32>,
    /// Requests per connection before it is closed; 0 or unset = unlimited, 1 = no keep-alive.
    pub max_requests_per_connection: Option<u32>,
    /// Retries outstanding across the cluster; a retry beyond it is not made.
    pub max_retries: Option<u32>,
    /// Idle connection lifetime. Default 1h.
    pub idle_timeout: Option<Nanos>,
}

/// Istio `OutlierDetection` (consecutive-error detection; success-rate detection stays off, as
/// Istio configures it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierDetection {
    /// Consecutive 5xx (local-origin failures included) that eject a host. Default 5; 0 off.
    #[serde(rename = "consecutive_5xx_errors")]
    pub consecutive_5xx_errors: Option<u32>,
    /// Consecutive 502/503/504 that eject a host. Default off.
    pub consecutive_gateway_errors: Option<u32>,
    /// Time between ejection sweeps; hosts return only on these ticks. Default 10s.
    pub interval: Option<Nanos>,
    /// Ejection time per ejection count (base × k). Default 30s.
    pub base_ejection_time: Option<Nanos>,
    /// Most hosts ejected at once, percent, with Envoy's `(ejected+1)/hosts` rule. Default 10.
    pub max_ejection_percent: Option<u32>,
    /// Below this share of healthy hosts the balancer ignores ejections (panic). Default 0 (off).
    pub min_health_percent: Option<u32>,
}

/// Envoy `RetryBudget`: outstanding retries ≤ max(`min_retry_concurrency`, `percent`% of the
/// cluster's active and pending requests).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudget {
    /// Percent of active requests. Default 20.
    pub percent: Option<f64>,
    /// Retries always allowed. Default 3.
    pub min_retry_concurrency: Option<u32>,
}

/// Istio `ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum H2UpgradePolicy {
    /// The mesh default (HTTP/1.1 here).
    #[serde(rename = "DEFAULT")]
    Default,
    /// Keep HTTP/1.1.
    #[serde(rename = "DO_NOT_UPGRADE")]
    DoNotUpgrade,
    /// Use HTTP/2 (prior knowledge) to the upstream.
    #[serde(rename = "UPGRADE")]
    Upgrade,
}

/// Istio `LoadBalancerSettings`: exactly one of `simple` and `consistent_hash`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadBalancerSettings {
    /// A simple algorithm.
    pub simple: Option<SimpleLb>,
    /// Hash-based affinity.
    pub consistent_hash: Option<ConsistentHash>,
}

/// Istio `LoadBalancerSettings.SimpleLB`, spelled as in Istio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimpleLb {
    /// Istio's default: `LEAST_REQUEST`.
    #[serde(rename = "UNSPECIFIED")]
    Unspecified,
    /// Each endpoint in turn, starting at a random one.
    #[serde(rename = "ROUND_ROBIN")]
    RoundRobin,
    /// Uniformly random endpoint.
    #[serde(rename = "RANDOM")]
    Random,
    /// Power of two choices by active requests.
    #[serde(rename = "LEAST_REQUEST")]
    LeastRequest,
    /// Deprecated alias of `LEAST_REQUEST`.
    #[serde(rename = "LEAST_CONN")]
    LeastConn,
    /// Forward to the original destination (not modeled: treated as `LEAST_REQUEST`).
    #[serde(rename = "PASSTHROUGH")]
    Passthrough,
}

/// Istio `ConsistentHashLB`: exactly one hash key source.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsistentHash {
    /// Hash on this request header's value.
    pub http_header_name: Option<String>,
    /// Hash on this cookie's value.
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the downstream source (the calling proxy or client).
    pub use_source_ip: bool,
    /// Hash on this query parameter's value.
    pub http_query_parameter_name: Option<String>,
    /// Ring hash (the default) with its size.
    pub ring_hash: Option<RingHash>,
    /// Maglev with its table size.
    pub maglev: Option<Maglev>,
    /// Deprecated ring size; use `ring_hash.minimum_ring_size`.
    pub minimum_ring_size: Option<u64>,
}

/// Istio `ConsistentHashLB.HTTPCookie`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie path (informational).
    #[serde(default)]
    pub path: Option<String>,
    /// Cookie lifetime (informational: the engine never generates cookies).
    #[serde(default)]
    pub ttl: Option<Nanos>,
}

/// Istio `ConsistentHashLB.RingHash`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingHash {
    /// Minimum ring entries; default 1024.
    pub minimum_ring_size: Option<u64>,
}

/// Istio `ConsistentHashLB.MagLev`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Maglev {
    /// Lookup table size, a prime; default 65537.
    pub table_size: Option<u64>,
}

/// Istio `Gateway`: servers (port, protocol, hosts, TLS) that the gateway proxies it selects
/// listen with. Virtual services bind to it by name (`VirtualService.gateways`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Name, as virtual services' `gateways` name it.
    pub name: String,
    /// Namespace. Default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the gateway proxies this applies to (all of them must match); empty applies
    /// to every gateway proxy, as a nil selector in Istio.
    #[serde(default, deserialize_with = "crate::unique::deserialize")]
    pub selector: BTreeMap<String, String>,
    /// The servers.
    pub servers: Vec<Server>,
}

/// Istio `Server`: one port of a gateway and the hosts it serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The listener port.
    pub port: ServerPort,
    /// `[namespace/]dnsName`: which virtual service hosts bind (`*.example.com`, `*`), and
    /// from which namespaces (`*/` any, the default; `./` the gateway's own; `ns/`).
    pub hosts: Vec<String>,
    /// TLS: termination for `HTTPS`, or `https_redirect` on an `HTTP` server.
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Optional server name (unique within the gateway).
    #[serde(default)]
    pub name: Option<String>,
}

/// Istio `Port` of a gateway server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerPort {
    /// Port number (1–65535).
    pub number: u16,
    /// `HTTP`, `HTTPS`, `HTTP2` or `GRPC` (meshtwin models HTTP traffic; `TCP`, `TLS` and
    /// `MONGO` servers are rejected).
    pub protocol: String,
    /// Port name.
    pub name: String,
}

/// Istio `ServerTLSSettings` (the fields meshtwin models).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTls {
    /// On an `HTTP` server, answer every request with a 301 to `https://` (Envoy's
    /// `require_tls: ALL`), whatever the routes say; no effect on an `HTTPS` server.
    pub https_redirect: bool,
    /// `PASSTHROUGH` (the default, as the proto's zero value), `SIMPLE`, `MUTUAL`,
    /// `ISTIO_MUTUAL`, `AUTO_PASSTHROUGH`, `OPTIONAL_MUTUAL`. An `HTTPS` server terminates TLS
    /// and needs `SIMPLE` (or `ISTIO_MUTUAL`, whose mesh certificates the twin does not model).
    pub mode: Option<String>,
    /// PEM certificate chain file. Accepted and checked for consistency only: a live
    /// gateway listener serves the certificate of its own `tls` files.
    pub server_certificate: Option<String>,
    /// PEM private key file (as `server_certificate`).
    pub private_key: Option<String>,
    /// A Kubernetes secret holding the certificate (as `server_certificate`).
    pub credential_name: Option<String>,
}

/// Istio `ServiceEntry` (the fields meshtwin models): hosts outside the mesh made known to it,
/// so `REGISTRY_ONLY` lets them through and routes and policies may name them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Name, for messages.
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace. Default `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// DNS names (a wildcard left-most label allowed; `*` alone is not).
    pub hosts: Vec<String>,
    /// Ports: number, protocol, name.
    #[serde(default)]
    pub ports: Vec<ServerPort>,
    /// `MESH_EXTERNAL` (the default) or `MESH_INTERNAL`.
    #[serde(default)]
    pub location: Option<String>,
    /// `NONE` (the default), `STATIC`, `DNS`, `DNS_ROUND_ROBIN` or `DYNAMIC_DNS`.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Endpoint addresses (`STATIC`, `DNS`); in the twin the modeled service's instances
    /// serve the host whatever they say.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
}

/// Istio `WorkloadEntry` as a ServiceEntry endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP address or host name.
    pub address: String,
}

/// Istio's `outboundTrafficPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// `ALLOW_ANY` (Istio's default: unknown hosts pass through, `PassthroughCluster`) or
    /// `REGISTRY_ONLY` (an unknown host over HTTP gets 502 from the `block_all` route).
    pub mode: String,
}
