//! `ServiceEntry` objects checked (Istio's `ValidateServiceEntry` rules the twin can hit) and
//! the outbound traffic policy: what a sidecar does with a host outside the mesh that no
//! ServiceEntry lists — `ALLOW_ANY` passes it through (`PassthroughCluster`), `REGISTRY_ONLY`
//! answers 502 from the `block_all` route, as Istio's catch-all virtual hosts do
//! (`pilot/pkg/networking/core/httproute.go`, `buildCatchAllVirtualHost`).

use super::Builder;
use crate::config::ServiceEntry;
use crate::gateway::Domain;
use crate::mesh::{ConfigError, RouteAction, WeightedCluster};

/// The outbound traffic policy's modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outbound {
    /// Unknown hosts pass through (Istio's default).
    AllowAny,
    /// Unknown hosts get 502 (`block_all`).
    RegistryOnly,
}

fn invalid(field: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// One ServiceEntry checked.
fn check_entry(at: &str, se: &ServiceEntry) -> Result<(), ConfigError> {
    if se.hosts.is_empty() {
        return Err(invalid(
            format!("{at}.hosts"),
            "at least one host is required",
        ));
    }
    for (h, host) in se.hosts.iter().enumerate() {
        if host == "*" {
            return Err(invalid(format!("{at}.hosts[{h}]"), "invalid host *"));
        }
    }
    let resolution = se.resolution.as_deref().unwrap_or("NONE");
    if !matches!(
        resolution,
        "NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN" | "DYNAMIC_DNS"
    ) {
        return Err(invalid(
            format!("{at}.resolution"),
            format!("NONE, STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS is expected, found `{resolution}`"),
        ));
    }
    let location = se.location.as_deref().unwrap_or("MESH_EXTERNAL");
    if !matches!(location, "MESH_EXTERNAL" | "MESH_INTERNAL") {
        return Err(invalid(
            format!("{at}.location"),
            format!("MESH_EXTERNAL or MESH_INTERNAL is expected, found `{location}`"),
        ));
    }
    if resolution == "NONE" && !se.endpoints.is_empty() {
        return Err(invalid(
            format!("{at}.endpoints"),
            "no endpoints should be provided for resolution type none",
        ));
    }
    if resolution == "DNS_ROUND_ROBIN" && se.endpoints.len() > 1 {
        return Err(invalid(
            format!("{at}.endpoints"),
            "there must only be 0 or 1 endpoint for resolution type DNS_ROUND_ROBIN",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut numbers = std::collections::BTreeSet::new();
    for (p, port) in se.ports.iter().enumerate() {
        if port.number == 0 || !numbers.insert(port.number) || !names.insert(&port.name) {
            return Err(invalid(
                format!("{at}.ports[{p}]"),
                "port numbers 1..=65535 and names must be unique",
            ));
        }
        let proto = port.protocol.to_ascii_uppercase();
        let http_or_tls = matches!(proto.as_str(), "HTTP" | "HTTPS" | "HTTP2" | "GRPC" | "TLS");
        if resolution != "NONE" && se.hosts.len() > 1 && !http_or_tls {
            return Err(invalid(
                format!("{at}.ports[{p}].protocol"),
                "multiple hosts provided with non-HTTP, non-TLS ports",
            ));
        }
    }
    Ok(())
}

impl Builder<'_> {
    /// Checks the ServiceEntries and reads the outbound traffic policy.
    pub(super) fn check_egress(&self) -> Result<Outbound, ConfigError> {
        for (i, se) in self.config.service_entries.iter().enumerate() {
            check_entry(&format!("service_entries[{i}]"), se)?;
        }
        match self
            .config
            .outbound_traffic_policy
            .as_ref()
            .map(|p| p.mode.as_str())
        {
            None | Some("ALLOW_ANY") => Ok(Outbound::AllowAny),
            Some("REGISTRY_ONLY") => Ok(Outbound::RegistryOnly),
            Some(other) => Err(invalid(
                "outbound_traffic_policy.mode".into(),
                format!("ALLOW_ANY or REGISTRY_ONLY is expected, found `{other}`"),
            )),
        }
    }

    /// Whether a ServiceEntry lists `host`.
    pub(super) fn registered(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        (self.config.service_entries.iter())
            .flat_map(|se| se.hosts.iter())
            .any(|h| Domain::parse(h).matches(&host))
    }

    /// The route action for an external service no ServiceEntry lists: its cluster under
    /// `ALLOW_ANY` (passthrough), a 502 under `REGISTRY_ONLY`.
    pub(super) fn unregistered_action(
        &mut self,
        service: usize,
        mode: Outbound,
    ) -> Result<(RouteAction, &'static str), ConfigError> {
        match mode {
            Outbound::RegistryOnly => Ok((
                RouteAction::Direct {
                    status: 502,
                    body: None,
                },
                "block_all",
            )),
            Outbound::AllowAny => {
                let cluster = self.cluster_for(service, None)?;
                let action = RouteAction::Forward(vec![WeightedCluster {
                    cumulative: 1,
                    cluster: Some(cluster),
                }]);
                Ok((action, "PassthroughCluster"))
            }
        }
    }
}
