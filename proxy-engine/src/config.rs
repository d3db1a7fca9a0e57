//! The mesh configuration as users write it: Istio-shaped `VirtualService` and
//! `DestinationRule` types (field names follow Istio's API in snake_case). These are plain data;
//! `compile` turns them, together with a `Registry` of endpoints, into a validated `CompiledMesh`.

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
}

/// Istio `VirtualService`: ordered HTTP routes for a set of hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualService {
    /// Name, for reports and error messages; defaults to the first host.
    #[serde(default)]
    pub name: Option<String>,
    /// Hosts this rule applies to (service names).
    pub hosts: Vec<String>,
    /// Ordered HTTP routes; the first that matches wins.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
}

/// Istio `HTTPRoute`: where matching requests go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name, shown in reports; defaults to the route's index.
    #[serde(default)]
    pub name: Option<String>,
    /// Weighted destinations; weights are relative.
    pub route: Vec<RouteDestination>,
}

/// Istio `HTTPRouteDestination`: one weighted destination of a route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDestination {
    /// The service (and optional subset) to send to.
    pub destination: Destination,
    /// Relative weight; entries of weight 0 get no traffic. Defaults to 100 when the route has
    /// a single destination, as in Istio.
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
    /// Port on the service (informational for now: every modeled service has one port).
    #[serde(default)]
    pub port: Option<u16>,
}

/// Istio `DestinationRule`: subsets (and, later, traffic policy) for a host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRule {
    /// Service the rule applies to.
    pub host: String,
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
    /// Labels an endpoint must carry (for example `{"version": "v1"}`).
    pub labels: BTreeMap<String, String>,
}
