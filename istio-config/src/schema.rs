//! The Istio networking messages meshtwin reads, field by field: each field's Istio name
//! (lowerCamel, as YAML writes it; the proto's snake_case is accepted too, as Istio's
//! protobuf-JSON parser does), the meshtwin field it becomes, and how its value is carried
//! over — or that meshtwin does not model it, which makes it a warning rather than an error.
//! A field in neither list is not Istio's and is an error, as the CRD schema rejects it.
//!
//! Sources: the protos of `istio/api` (`networking/v1alpha3/{virtual_service,
//! destination_rule,gateway,service_entry,sidecar}.proto`); `v1` and `v1beta1` are aliases of
//! the same messages.

/// How a field's value is carried over.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// A message: walked with its own table.
    Object(&'static Message),
    /// A list of messages.
    List(&'static Message),
    /// A scalar, a list of scalars or a map of scalars, copied as written.
    Plain,
    /// Istio `StringMatch` (`{exact: x}`, `{prefix: x}`, `{regex: x}`, `{}`).
    Match,
    /// A map of name → `StringMatch`.
    MatchMap,
    /// Istio `Percent` (`{value: 12.5}`) → a number.
    Percent,
    /// Istio `PortSelector` (`{number: 9080}`) → the number.
    PortNumber,
    /// `HTTPBody` (`{string: …}`) → the string.
    Body,
    /// Read by the importer itself, not copied (for example `portLevelSettings`).
    Special,
    /// An Istio field meshtwin does not model: a warning (an error with `--strict`).
    Unmodeled(&'static str),
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    /// Istio's lowerCamel name.
    pub(crate) camel: &'static str,
    /// The proto's snake_case name.
    pub(crate) snake: &'static str,
    /// The meshtwin field it becomes.
    pub(crate) to: &'static str,
    /// How the value is carried over.
    pub(crate) kind: Kind,
}

/// An Istio message: its name (for messages) and fields.
#[derive(Debug)]
pub(crate) struct Message {
    /// The proto message name.
    pub(crate) name: &'static str,
    /// Its fields.
    pub(crate) fields: &'static [Field],
}

impl Message {
    /// The field written `key` (lowerCamel or snake_case).
    pub(crate) fn field(&self, key: &str) -> Option<&'static Field> {
        self.fields
            .iter()
            .find(|f| f.camel == key || f.snake == key)
    }

    /// The field names, for "expected one of" messages.
    pub(crate) fn names(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.camel).collect();
        names.join(", ")
    }
}

/// A field copied under the same (snake_case) name.
const fn f(camel: &'static str, snake: &'static str, kind: Kind) -> Field {
    Field {
        camel,
        snake,
        to: snake,
        kind,
    }
}

/// A field carried over under another meshtwin name.
const fn to(camel: &'static str, snake: &'static str, to: &'static str, kind: Kind) -> Field {
    Field {
        camel,
        snake,
        to,
        kind,
    }
}

/// A field copied as written under its snake_case name.
pub(crate) const fn plain(camel: &'static str, snake: &'static str) -> Field {
    f(camel, snake, Plain)
}

/// A field the importer reads itself.
pub(crate) const fn special(camel: &'static str, snake: &'static str) -> Field {
    f(camel, snake, Special)
}

/// A list of Istio `HTTPMatchRequest`s.
pub(crate) const fn matches(camel: &'static str, snake: &'static str) -> Field {
    f(camel, snake, List(&HTTP_MATCH))
}

/// A field meshtwin does not model.
pub(crate) const fn skip(camel: &'static str, snake: &'static str, why: &'static str) -> Field {
    Field {
        camel,
        snake,
        to: snake,
        kind: Kind::Unmodeled(why),
    }
}

use Kind::*;

const NO_TCP: &str = "meshtwin models HTTP traffic only";
const ONE_NS: &str = "meshtwin does not model config visibility across namespaces";
const NO_SECRETS: &str = "meshtwin reads certificates from files, not Kubernetes secrets";

/// `VirtualService` spec.
pub(crate) static VIRTUAL_SERVICE: Message = Message {
    name: "VirtualService",
    fields: &[
        f("hosts", "hosts", Plain),
        f("gateways", "gateways", Plain),
        f("http", "http", List(&HTTP_ROUTE)),
        skip("tls", "tls", NO_TCP),
        skip("tcp", "tcp", NO_TCP),
        skip("exportTo", "export_to", ONE_NS),
    ],
};

static HTTP_ROUTE: Message = Message {
    name: "HTTPRoute",
    fields: &[
        f("name", "name", Plain),
        f("match", "match", List(&HTTP_MATCH)),
        f("route", "route", List(&ROUTE_DESTINATION)),
        f("redirect", "redirect", Object(&REDIRECT)),
        f(
            "directResponse",
            "direct_response",
            Object(&DIRECT_RESPONSE),
        ),
        skip(
            "delegate",
            "delegate",
            "delegated virtual services are not modeled",
        ),
        f("rewrite", "rewrite", Object(&REWRITE)),
        f("timeout", "timeout", Plain),
        f("retries", "retries", Object(&RETRY)),
        f("fault", "fault", Object(&FAULT)),
        f("mirror", "mirror", Object(&DESTINATION)),
        f("mirrors", "mirrors", List(&MIRROR_POLICY)),
        f("mirrorPercentage", "mirror_percentage", Percent),
        to(
            "mirrorPercent",
            "mirror_percent",
            "mirror_percentage",
            Plain,
        ),
        skip("corsPolicy", "cors_policy", "CORS is not modeled"),
        f("headers", "headers", Object(&HEADERS)),
    ],
};

static HTTP_MATCH: Message = Message {
    name: "HTTPMatchRequest",
    fields: &[
        f("name", "name", Plain),
        f("uri", "uri", Match),
        f("scheme", "scheme", Match),
        f("method", "method", Match),
        f("authority", "authority", Match),
        f("headers", "headers", MatchMap),
        f("port", "port", Plain),
        skip(
            "sourceLabels",
            "source_labels",
            "matches on the client's labels are not modeled",
        ),
        f("gateways", "gateways", Plain),
        f("queryParams", "query_params", MatchMap),
        f("ignoreUriCase", "ignore_uri_case", Plain),
        f("withoutHeaders", "without_headers", MatchMap),
        skip("sourceNamespace", "source_namespace", ONE_NS),
        skip(
            "statPrefix",
            "stat_prefix",
            "Envoy stats prefixes are not modeled",
        ),
    ],
};

/// `HTTPRouteDestination`.
pub(crate) static ROUTE_DESTINATION: Message = Message {
    name: "HTTPRouteDestination",
    fields: &[
        f("destination", "destination", Object(&DESTINATION)),
        f("weight", "weight", Plain),
        skip(
            "headers",
            "headers",
            "per-destination header operations are not modeled",
        ),
    ],
};

/// `Destination`.
pub(crate) static DESTINATION: Message = Message {
    name: "Destination",
    fields: &[
        f("host", "host", Plain),
        f("subset", "subset", Plain),
        f("port", "port", PortNumber),
    ],
};

static MIRROR_POLICY: Message = Message {
    name: "HTTPMirrorPolicy",
    fields: &[
        f("destination", "destination", Object(&DESTINATION)),
        f("percentage", "percentage", Percent),
    ],
};

/// `HTTPRedirect`.
pub(crate) static REDIRECT: Message = Message {
    name: "HTTPRedirect",
    fields: &[
        f("uri", "uri", Plain),
        f("authority", "authority", Plain),
        f("port", "port", Plain),
        skip(
            "derivePort",
            "derive_port",
            "redirect port derivation is not modeled",
        ),
        f("scheme", "scheme", Plain),
        f("redirectCode", "redirect_code", Plain),
    ],
};

static DIRECT_RESPONSE: Message = Message {
    name: "HTTPDirectResponse",
    fields: &[f("status", "status", Plain), f("body", "body", Body)],
};

/// `HTTPRewrite`.
pub(crate) static REWRITE: Message = Message {
    name: "HTTPRewrite",
    fields: &[
        f("uri", "uri", Plain),
        f("authority", "authority", Plain),
        skip(
            "uriRegexRewrite",
            "uri_regex_rewrite",
            "regex rewrites are not modeled",
        ),
    ],
};

static RETRY: Message = Message {
    name: "HTTPRetry",
    fields: &[
        f("attempts", "attempts", Plain),
        f("perTryTimeout", "per_try_timeout", Plain),
        f("retryOn", "retry_on", Plain),
        skip(
            "retryRemoteLocalities",
            "retry_remote_localities",
            "localities are not modeled",
        ),
        f(
            "retryIgnorePreviousHosts",
            "retry_ignore_previous_hosts",
            Plain,
        ),
        f("backoff", "backoff", Plain),
    ],
};

/// `HTTPFaultInjection`.
pub(crate) static FAULT: Message = Message {
    name: "HTTPFaultInjection",
    fields: &[
        f("delay", "delay", Object(&DELAY)),
        f("abort", "abort", Object(&ABORT)),
    ],
};

static DELAY: Message = Message {
    name: "HTTPFaultInjection.Delay",
    fields: &[
        f("fixedDelay", "fixed_delay", Plain),
        skip(
            "exponentialDelay",
            "exponential_delay",
            "Istio does not implement it either",
        ),
        f("percentage", "percentage", Percent),
        to("percent", "percent", "percentage", Plain),
    ],
};

static ABORT: Message = Message {
    name: "HTTPFaultInjection.Abort",
    fields: &[
        f("httpStatus", "http_status", Plain),
        skip(
            "grpcStatus",
            "grpc_status",
            "gRPC status aborts are not modeled",
        ),
        skip(
            "http2Error",
            "http2_error",
            "HTTP/2 error aborts are not modeled",
        ),
        f("percentage", "percentage", Percent),
    ],
};

/// `Headers`.
pub(crate) static HEADERS: Message = Message {
    name: "Headers",
    fields: &[
        f("request", "request", Object(&HEADER_OPS)),
        f("response", "response", Object(&HEADER_OPS)),
    ],
};

static HEADER_OPS: Message = Message {
    name: "Headers.HeaderOperations",
    fields: &[
        f("set", "set", Plain),
        f("add", "add", Plain),
        f("remove", "remove", Plain),
    ],
};

/// `DestinationRule` spec.
pub(crate) static DESTINATION_RULE: Message = Message {
    name: "DestinationRule",
    fields: &[
        f("host", "host", Plain),
        f("trafficPolicy", "traffic_policy", Object(&TRAFFIC_POLICY)),
        f("subsets", "subsets", List(&SUBSET)),
        skip("exportTo", "export_to", ONE_NS),
        skip(
            "workloadSelector",
            "workload_selector",
            "destination rules apply to every client proxy in meshtwin",
        ),
    ],
};

static SUBSET: Message = Message {
    name: "Subset",
    fields: &[
        f("name", "name", Plain),
        f("labels", "labels", Plain),
        f("trafficPolicy", "traffic_policy", Object(&TRAFFIC_POLICY)),
    ],
};

static TRAFFIC_POLICY: Message = Message {
    name: "TrafficPolicy",
    fields: &[
        f("loadBalancer", "load_balancer", Object(&LOAD_BALANCER)),
        f(
            "connectionPool",
            "connection_pool",
            Object(&CONNECTION_POOL),
        ),
        f("outlierDetection", "outlier_detection", Object(&OUTLIER)),
        f("tls", "tls", Object(&CLIENT_TLS)),
        f("portLevelSettings", "port_level_settings", Special),
        skip("tunnel", "tunnel", "tunneling is not modeled"),
        skip(
            "proxyProtocol",
            "proxy_protocol",
            "the PROXY protocol is not modeled",
        ),
        f("retryBudget", "retry_budget", Object(&RETRY_BUDGET)),
    ],
};

/// `TrafficPolicy.PortTrafficPolicy`.
pub(crate) static PORT_POLICY: Message = Message {
    name: "TrafficPolicy.PortTrafficPolicy",
    fields: &[
        f("port", "port", PortNumber),
        f("loadBalancer", "load_balancer", Object(&LOAD_BALANCER)),
        f(
            "connectionPool",
            "connection_pool",
            Object(&CONNECTION_POOL),
        ),
        f("outlierDetection", "outlier_detection", Object(&OUTLIER)),
        f("tls", "tls", Object(&CLIENT_TLS)),
    ],
};

static RETRY_BUDGET: Message = Message {
    name: "TrafficPolicy.RetryBudget",
    fields: &[
        f("percent", "percent", Percent),
        f("minRetryConcurrency", "min_retry_concurrency", Plain),
    ],
};

static LOAD_BALANCER: Message = Message {
    name: "LoadBalancerSettings",
    fields: &[
        f("simple", "simple", Plain),
        f(
            "consistentHash",
            "consistent_hash",
            Object(&CONSISTENT_HASH),
        ),
        skip(
            "localityLbSetting",
            "locality_lb_setting",
            "localities are not modeled",
        ),
        skip(
            "warmupDurationSecs",
            "warmup_duration_secs",
            "slow-start warm-up is not modeled",
        ),
        skip("warmup", "warmup", "slow-start warm-up is not modeled"),
    ],
};

static CONSISTENT_HASH: Message = Message {
    name: "LoadBalancerSettings.ConsistentHashLB",
    fields: &[
        f("httpHeaderName", "http_header_name", Plain),
        f("httpCookie", "http_cookie", Object(&HTTP_COOKIE)),
        f("useSourceIp", "use_source_ip", Plain),
        f("httpQueryParameterName", "http_query_parameter_name", Plain),
        f("ringHash", "ring_hash", Object(&RING_HASH)),
        f("maglev", "maglev", Object(&MAGLEV)),
        f("minimumRingSize", "minimum_ring_size", Plain),
    ],
};

static HTTP_COOKIE: Message = Message {
    name: "ConsistentHashLB.HTTPCookie",
    fields: &[
        f("name", "name", Plain),
        f("path", "path", Plain),
        f("ttl", "ttl", Plain),
        skip(
            "attributes",
            "attributes",
            "cookie attributes are not modeled",
        ),
    ],
};

static RING_HASH: Message = Message {
    name: "ConsistentHashLB.RingHash",
    fields: &[f("minimumRingSize", "minimum_ring_size", Plain)],
};

static MAGLEV: Message = Message {
    name: "ConsistentHashLB.MagLev",
    fields: &[f("tableSize", "table_size", Plain)],
};

static CONNECTION_POOL: Message = Message {
    name: "ConnectionPoolSettings",
    fields: &[
        f("tcp", "tcp", Object(&TCP_POOL)),
        f("http", "http", Object(&HTTP_POOL)),
    ],
};

static TCP_POOL: Message = Message {
    name: "ConnectionPoolSettings.TCPSettings",
    fields: &[
        f("maxConnections", "max_connections", Plain),
        f("connectTimeout", "connect_timeout", Plain),
        skip(
            "tcpKeepalive",
            "tcp_keepalive",
            "TCP keep-alive probes are not modeled",
        ),
        skip(
            "maxConnectionDuration",
            "max_connection_duration",
            "connection lifetimes are not modeled",
        ),
        f("idleTimeout", "idle_timeout", Plain),
    ],
};

static HTTP_POOL: Message = Message {
    name: "ConnectionPoolSettings.HTTPSettings",
    fields: &[
        f(
            "http1MaxPendingRequests",
            "http1_max_pending_requests",
            Plain,
        ),
        f("http2MaxRequests", "http2_max_requests", Plain),
        f(
            "maxRequestsPerConnection",
            "max_requests_per_connection",
            Plain,
        ),
        f("maxRetries", "max_retries", Plain),
        f("idleTimeout", "idle_timeout", Plain),
        f("h2UpgradePolicy", "h2_upgrade_policy", Plain),
        skip(
            "useClientProtocol",
            "use_client_protocol",
            "the upstream protocol follows h2UpgradePolicy",
        ),
        skip(
            "maxConcurrentStreams",
            "max_concurrent_streams",
            "HTTP/2 stream limits are not modeled",
        ),
    ],
};

static OUTLIER: Message = Message {
    name: "OutlierDetection",
    fields: &[
        skip(
            "consecutiveErrors",
            "consecutive_errors",
            "deprecated: use consecutive5xxErrors",
        ),
        skip(
            "splitExternalLocalOriginErrors",
            "split_external_local_origin_errors",
            "local-origin failures are counted as 5xx",
        ),
        skip(
            "consecutiveLocalOriginFailures",
            "consecutive_local_origin_failures",
            "local-origin failures are counted as 5xx",
        ),
        f(
            "consecutiveGatewayErrors",
            "consecutive_gateway_errors",
            Plain,
        ),
        f("consecutive5xxErrors", "consecutive_5xx_errors", Plain),
        f("interval", "interval", Plain),
        f("baseEjectionTime", "base_ejection_time", Plain),
        f("maxEjectionPercent", "max_ejection_percent", Plain),
        f("minHealthPercent", "min_health_percent", Plain),
    ],
};

static CLIENT_TLS: Message = Message {
    name: "ClientTLSSettings",
    fields: &[
        f("mode", "mode", Plain),
        f("clientCertificate", "client_certificate", Plain),
        f("privateKey", "private_key", Plain),
        f("caCertificates", "ca_certificates", Plain),
        skip("credentialName", "credential_name", NO_SECRETS),
        skip(
            "subjectAltNames",
            "subject_alt_names",
            "the server is verified against the SNI name",
        ),
        f("sni", "sni", Plain),
        f("insecureSkipVerify", "insecure_skip_verify", Plain),
        skip("caCrl", "ca_crl", "revocation lists are not modeled"),
    ],
};

/// `Gateway` spec.
pub(crate) static GATEWAY: Message = Message {
    name: "Gateway",
    fields: &[
        f("servers", "servers", List(&SERVER)),
        f("selector", "selector", Plain),
    ],
};

static SERVER: Message = Message {
    name: "Server",
    fields: &[
        f("port", "port", Object(&PORT)),
        skip("bind", "bind", "gateways listen on every address"),
        f("hosts", "hosts", Plain),
        f("tls", "tls", Object(&SERVER_TLS)),
        skip(
            "defaultEndpoint",
            "default_endpoint",
            "not implemented by Istio",
        ),
        f("name", "name", Plain),
    ],
};

static PORT: Message = Message {
    name: "Port",
    fields: &[
        f("number", "number", Plain),
        f("protocol", "protocol", Plain),
        f("name", "name", Plain),
        skip("targetPort", "target_port", "has no effect on gateways"),
    ],
};

static SERVER_TLS: Message = Message {
    name: "ServerTLSSettings",
    fields: &[
        f("httpsRedirect", "https_redirect", Plain),
        f("mode", "mode", Plain),
        f("serverCertificate", "server_certificate", Plain),
        f("privateKey", "private_key", Plain),
        skip(
            "caCertificates",
            "ca_certificates",
            "client certificates are not verified",
        ),
        skip("caCrl", "ca_crl", "revocation lists are not modeled"),
        f("credentialName", "credential_name", Plain),
        skip("credentialNames", "credential_names", NO_SECRETS),
        skip(
            "tlsCertificates",
            "tls_certificates",
            "one certificate per server is modeled",
        ),
        skip(
            "caCertCredentialName",
            "ca_cert_credential_name",
            NO_SECRETS,
        ),
        skip(
            "subjectAltNames",
            "subject_alt_names",
            "client certificates are not verified",
        ),
        skip(
            "verifyCertificateSpki",
            "verify_certificate_spki",
            "client certificates are not verified",
        ),
        skip(
            "verifyCertificateHash",
            "verify_certificate_hash",
            "client certificates are not verified",
        ),
        skip(
            "minProtocolVersion",
            "min_protocol_version",
            "TLS versions are rustls' (1.2 and 1.3)",
        ),
        skip(
            "maxProtocolVersion",
            "max_protocol_version",
            "TLS versions are rustls' (1.2 and 1.3)",
        ),
        skip("cipherSuites", "cipher_suites", "cipher suites are rustls'"),
        skip(
            "insecureSkipVerify",
            "insecure_skip_verify",
            "client certificates are not verified",
        ),
    ],
};

/// `ServiceEntry` spec.
pub(crate) static SERVICE_ENTRY: Message = Message {
    name: "ServiceEntry",
    fields: &[
        f("hosts", "hosts", Plain),
        skip(
            "addresses",
            "addresses",
            "traffic is classified by host, not address",
        ),
        f("ports", "ports", List(&SE_PORT)),
        f("location", "location", Plain),
        f("resolution", "resolution", Plain),
        f("endpoints", "endpoints", List(&WORKLOAD_ENTRY)),
        skip(
            "workloadSelector",
            "workload_selector",
            "the modeled service's instances serve the host",
        ),
        skip("exportTo", "export_to", ONE_NS),
        skip(
            "subjectAltNames",
            "subject_alt_names",
            "the server is verified against the SNI name",
        ),
    ],
};

static SE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        f("number", "number", Plain),
        f("protocol", "protocol", Plain),
        f("name", "name", Plain),
        skip(
            "targetPort",
            "target_port",
            "modeled services have one port",
        ),
    ],
};

static WORKLOAD_ENTRY: Message = Message {
    name: "WorkloadEntry",
    fields: &[
        f("address", "address", Plain),
        skip("ports", "ports", "modeled services have one port"),
        skip(
            "labels",
            "labels",
            "the modeled service's instances carry the labels",
        ),
        skip("network", "network", "networks are not modeled"),
        skip("locality", "locality", "localities are not modeled"),
        skip("weight", "weight", "endpoint weights are not modeled"),
        skip(
            "serviceAccount",
            "service_account",
            "identities are not modeled",
        ),
    ],
};

/// `Sidecar` spec.
pub(crate) static SIDECAR: Message = Message {
    name: "Sidecar",
    fields: &[
        f("workloadSelector", "workload_selector", Special),
        skip("ingress", "ingress", "inbound listeners are not modeled"),
        skip(
            "egress",
            "egress",
            "every sidecar sees every service in meshtwin",
        ),
        f(
            "outboundTrafficPolicy",
            "outbound_traffic_policy",
            Object(&OUTBOUND),
        ),
        skip(
            "inboundConnectionPool",
            "inbound_connection_pool",
            "inbound connection limits are not modeled",
        ),
    ],
};

static OUTBOUND: Message = Message {
    name: "OutboundTrafficPolicy",
    fields: &[
        f("mode", "mode", Plain),
        skip(
            "egressProxy",
            "egress_proxy",
            "deprecated and ignored by Istio",
        ),
    ],
};
