//! The compiled mesh: `MeshConfig` + `Registry` validated and indexed once, so the per-request
//! path does no parsing and no allocation it can avoid. Hosts are looked up in a hash map (never
//! iterated), weights are cumulative, clusters hold their endpoint lists.

use crate::config::{HttpRoute, MeshConfig, VirtualService};
use crate::registry::{EndpointAddr, EndpointId, Registry};
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// Index of a route in the `CompiledMesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId(pub u32);

/// Index of a cluster (a service, or a subset of one) in the `CompiledMesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u32);

/// Index of a destination (service, version) in the `CompiledMesh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestinationId(pub u32);

/// A mesh configuration that does not make sense against the registry. `field` is the path of
/// the offending field inside the mesh config, e.g. `virtual_services[0].http[1].route[0]`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A destination or rule names a service the registry does not have.
    #[error("{field}: unknown service `{host}` (known services: {known})")]
    UnknownHost {
        /// Path of the field.
        field: String,
        /// The host as written.
        host: String,
        /// Comma-separated known services.
        known: String,
    },
    /// A destination names a subset no `DestinationRule` defines for its host.
    #[error("{field}: subset `{subset}` is not defined for host `{host}` by any destination rule")]
    UnknownSubset {
        /// Path of the field.
        field: String,
        /// The destination host.
        host: String,
        /// The subset as written.
        subset: String,
    },
    /// A route has no destinations, or all of them have weight 0.
    #[error("{field}: route has no destination with a weight above 0")]
    NoWeight {
        /// Path of the field.
        field: String,
    },
    /// Two virtual services claim the same host.
    #[error("{field}: host `{host}` already has a virtual service")]
    DuplicateHost {
        /// Path of the field.
        field: String,
        /// The host.
        host: String,
    },
    /// A virtual service lists no host.
    #[error("{field}: a virtual service needs at least one host")]
    NoHosts {
        /// Path of the field.
        field: String,
    },
}

/// What a weighted entry sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightedCluster {
    /// Cumulative weight up to and including this entry.
    pub cumulative: u32,
    /// The cluster.
    pub cluster: ClusterId,
}

/// A compiled route: its report name and cumulative weighted clusters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRoute {
    /// Name used in reports: `host/route-name` (or `host/index`, `host/default`).
    pub name: String,
    /// Weighted clusters with cumulative weights; the last `cumulative` is the total (> 0).
    pub clusters: Vec<WeightedCluster>,
}

/// A set of endpoints traffic can be balanced over: a service or a subset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Envoy-style name: `service` or `service|subset`.
    pub name: String,
    /// Endpoints in registry order.
    pub endpoints: Vec<EndpointId>,
}

/// One endpoint as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledEndpoint {
    /// Where it lives.
    pub addr: EndpointAddr,
    /// Its (service, version) destination.
    pub destination: DestinationId,
}

/// A (service, version) pair that reports aggregate by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DestinationName {
    /// Service name.
    pub service: String,
    /// Value of the endpoint's `version` label, or `-` when it has none.
    pub version: String,
}

/// The validated, indexed mesh a `Proxy` runs on.
#[derive(Clone, Debug)]
pub struct CompiledMesh {
    /// Host → ordered routes. Only ever looked up, never iterated.
    hosts: HashMap<Box<str>, Vec<RouteId>>,
    routes: Vec<CompiledRoute>,
    clusters: Vec<Cluster>,
    endpoints: Vec<CompiledEndpoint>,
    destinations: Vec<DestinationName>,
}

impl CompiledMesh {
    /// Validates `config` against `registry` and indexes it.
    ///
    /// Every registry service gets a default route (`service/default`) to all its endpoints,
    /// used when no virtual service claims its host.
    pub fn compile(config: &MeshConfig, registry: &Registry) -> Result<CompiledMesh, ConfigError> {
        let mut b = Builder::new(registry);
        for (i, vs) in config.virtual_services.iter().enumerate() {
            b.add_virtual_service(config, i, vs)?;
        }
        for (s, svc) in registry.services.iter().enumerate() {
            if !b.mesh.hosts.contains_key(svc.name.as_str()) {
                let cluster = b.service_cluster(s);
                let id = b.push_route(
                    format!("{}/default", svc.name),
                    vec![WeightedCluster {
                        cumulative: 1,
                        cluster,
                    }],
                );
                b.mesh.hosts.insert(svc.name.clone().into(), vec![id]);
            }
        }
        Ok(b.mesh)
    }

    /// The ordered routes for `host`, if the mesh knows the host.
    pub fn routes_for_host(&self, host: &str) -> Option<&[RouteId]> {
        self.hosts.get(host).map(Vec::as_slice)
    }

    /// A route by id. Ids come from this mesh, so the index is in bounds.
    pub fn route(&self, id: RouteId) -> &CompiledRoute {
        &self.routes[id.0 as usize]
    }

    /// A cluster by id.
    pub fn cluster(&self, id: ClusterId) -> &Cluster {
        &self.clusters[id.0 as usize]
    }

    /// An endpoint by id.
    pub fn endpoint(&self, id: EndpointId) -> &CompiledEndpoint {
        &self.endpoints[id.0 as usize]
    }

    /// All routes, indexed by `RouteId`.
    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// All clusters, indexed by `ClusterId`.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// All endpoints, indexed by `EndpointId`.
    pub fn endpoints(&self) -> &[CompiledEndpoint] {
        &self.endpoints
    }

    /// All destinations, indexed by `DestinationId`.
    pub fn destinations(&self) -> &[DestinationName] {
        &self.destinations
    }
}

/// Builds a `CompiledMesh`, deduplicating clusters by name.
struct Builder<'a> {
    registry: &'a Registry,
    mesh: CompiledMesh,
    cluster_ids: BTreeMap<String, ClusterId>,
    /// Per registry service, the index of its first endpoint in `mesh.endpoints`.
    first_endpoint: Vec<u32>,
}

impl<'a> Builder<'a> {
    fn new(registry: &'a Registry) -> Self {
        let mut mesh = CompiledMesh {
            hosts: HashMap::new(),
            routes: Vec::new(),
            clusters: Vec::new(),
            endpoints: Vec::new(),
            destinations: Vec::new(),
        };
        let mut dest_ids: BTreeMap<DestinationName, DestinationId> = BTreeMap::new();
        let mut first_endpoint = Vec::with_capacity(registry.services.len());
        for svc in &registry.services {
            first_endpoint.push(mesh.endpoints.len() as u32);
            for ep in &svc.endpoints {
                let name = DestinationName {
                    service: svc.name.clone(),
                    version: ep
                        .labels
                        .get("version")
                        .cloned()
                        .unwrap_or_else(|| "-".into()),
                };
                let next = DestinationId(mesh.destinations.len() as u32);
                let id = *dest_ids.entry(name.clone()).or_insert_with(|| {
                    mesh.destinations.push(name);
                    next
                });
                mesh.endpoints.push(CompiledEndpoint {
                    addr: ep.addr,
                    destination: id,
                });
            }
        }
        Builder {
            registry,
            mesh,
            cluster_ids: BTreeMap::new(),
            first_endpoint,
        }
    }

    fn known_services(&self) -> String {
        let names: Vec<&str> = self
            .registry
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.join(", ")
    }

    fn service_index(&self, host: &str, field: String) -> Result<usize, ConfigError> {
        self.registry
            .services
            .iter()
            .position(|s| s.name == host)
            .ok_or_else(|| ConfigError::UnknownHost {
                field,
                host: host.to_owned(),
                known: self.known_services(),
            })
    }

    /// The cluster for a whole service, or for the endpoints matching `labels`.
    fn cluster_for(
        &mut self,
        service: usize,
        subset: Option<(&str, &BTreeMap<String, String>)>,
    ) -> ClusterId {
        let svc = &self.registry.services[service];
        let name = match subset {
            Some((s, _)) => format!("{}|{s}", svc.name),
            None => svc.name.clone(),
        };
        if let Some(id) = self.cluster_ids.get(&name) {
            return *id;
        }
        let first = self.first_endpoint[service];
        let endpoints = svc
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, ep)| {
                subset.is_none_or(|(_, labels)| {
                    labels.iter().all(|(k, v)| ep.labels.get(k) == Some(v))
                })
            })
            .map(|(i, _)| EndpointId(first + i as u32))
            .collect();
        let id = ClusterId(self.mesh.clusters.len() as u32);
        self.mesh.clusters.push(Cluster {
            name: name.clone(),
            endpoints,
        });
        self.cluster_ids.insert(name, id);
        id
    }

    fn service_cluster(&mut self, service: usize) -> ClusterId {
        self.cluster_for(service, None)
    }

    fn push_route(&mut self, name: String, clusters: Vec<WeightedCluster>) -> RouteId {
        let id = RouteId(self.mesh.routes.len() as u32);
        self.mesh.routes.push(CompiledRoute { name, clusters });
        id
    }

    fn add_virtual_service(
        &mut self,
        config: &MeshConfig,
        index: usize,
        vs: &VirtualService,
    ) -> Result<(), ConfigError> {
        let at = format!("virtual_services[{index}]");
        let Some(first_host) = vs.hosts.first() else {
            return Err(ConfigError::NoHosts { field: at });
        };
        for (h, host) in vs.hosts.iter().enumerate() {
            self.service_index(host, format!("{at}.hosts[{h}]"))?;
        }
        let mut ids = Vec::with_capacity(vs.http.len());
        for (r, route) in vs.http.iter().enumerate() {
            let clusters = self.route_clusters(config, &format!("{at}.http[{r}]"), route)?;
            let label = route.name.clone().unwrap_or_else(|| r.to_string());
            ids.push(self.push_route(format!("{first_host}/{label}"), clusters));
        }
        for (h, host) in vs.hosts.iter().enumerate() {
            if self
                .mesh
                .hosts
                .insert(host.as_str().into(), ids.clone())
                .is_some()
            {
                return Err(ConfigError::DuplicateHost {
                    field: format!("{at}.hosts[{h}]"),
                    host: host.clone(),
                });
            }
        }
        Ok(())
    }

    fn route_clusters(
        &mut self,
        config: &MeshConfig,
        at: &str,
        route: &HttpRoute,
    ) -> Result<Vec<WeightedCluster>, ConfigError> {
        let single = route.route.len() == 1;
        let mut total: u32 = 0;
        let mut out = Vec::with_capacity(route.route.len());
        for (d, rd) in route.route.iter().enumerate() {
            let field = format!("{at}.route[{d}].destination");
            let dest = &rd.destination;
            let service = self.service_index(&dest.host, format!("{field}.host"))?;
            let cluster = match &dest.subset {
                None => self.service_cluster(service),
                Some(subset) => {
                    let labels = config
                        .destination_rules
                        .iter()
                        .filter(|dr| dr.host == dest.host)
                        .flat_map(|dr| dr.subsets.iter())
                        .find(|s| &s.name == subset)
                        .map(|s| s.labels.clone())
                        .ok_or_else(|| ConfigError::UnknownSubset {
                            field: format!("{field}.subset"),
                            host: dest.host.clone(),
                            subset: subset.clone(),
                        })?;
                    self.cluster_for(service, Some((subset, &labels)))
                }
            };
            // Istio: a lone destination defaults to weight 100; weight-0 entries are dropped.
            let weight = rd.weight.unwrap_or(if single { 100 } else { 0 });
            if weight == 0 {
                continue;
            }
            total = total.saturating_add(weight);
            out.push(WeightedCluster {
                cumulative: total,
                cluster,
            });
        }
        if out.is_empty() {
            return Err(ConfigError::NoWeight {
                field: at.to_owned(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Destination, DestinationRule, RouteDestination, Subset};
    use crate::registry::Endpoint;

    pub(crate) fn registry() -> Registry {
        let mut r = Registry::default();
        let ep = |i: u32, v: &str| Endpoint {
            addr: EndpointAddr::Sim(i),
            labels: BTreeMap::from([("version".to_owned(), v.to_owned())]),
        };
        r.add_service("backend", vec![ep(0, "v1"), ep(1, "v1"), ep(2, "v2")]);
        r.add_service("frontend", vec![ep(3, "v1")]);
        r
    }

    fn dest(host: &str, subset: Option<&str>, weight: Option<u32>) -> RouteDestination {
        RouteDestination {
            destination: Destination {
                host: host.into(),
                subset: subset.map(Into::into),
                port: None,
            },
            weight,
        }
    }

    fn split(dests: Vec<RouteDestination>) -> MeshConfig {
        MeshConfig {
            virtual_services: vec![VirtualService {
                name: None,
                hosts: vec!["backend".into()],
                http: vec![HttpRoute {
                    name: Some("split".into()),
                    route: dests,
                }],
            }],
            destination_rules: vec![DestinationRule {
                host: "backend".into(),
                subsets: vec![
                    Subset {
                        name: "v1".into(),
                        labels: BTreeMap::from([("version".into(), "v1".into())]),
                    },
                    Subset {
                        name: "v2".into(),
                        labels: BTreeMap::from([("version".into(), "v2".into())]),
                    },
                ],
            }],
        }
    }

    #[test]
    fn default_routes_cover_every_service() {
        let m = CompiledMesh::compile(&MeshConfig::default(), &registry()).expect("compiles");
        let routes = m.routes_for_host("backend").expect("backend routed");
        let route = m.route(routes[0]);
        assert_eq!(route.name, "backend/default");
        assert_eq!(m.cluster(route.clusters[0].cluster).endpoints.len(), 3);
        assert_eq!(m.destinations().len(), 3);
        assert!(m.routes_for_host("nope").is_none());
    }

    #[test]
    fn subsets_select_by_label_and_weights_accumulate() {
        let cfg = split(vec![
            dest("backend", Some("v1"), Some(80)),
            dest("backend", Some("v2"), Some(20)),
            dest("backend", None, Some(0)),
        ]);
        let m = CompiledMesh::compile(&cfg, &registry()).expect("compiles");
        let route = m.route(m.routes_for_host("backend").expect("routed")[0]);
        assert_eq!(route.name, "backend/split");
        let cum: Vec<u32> = route.clusters.iter().map(|c| c.cumulative).collect();
        assert_eq!(cum, vec![80, 100], "weight-0 entry dropped");
        assert_eq!(m.cluster(route.clusters[0].cluster).endpoints.len(), 2);
        assert_eq!(m.cluster(route.clusters[1].cluster).name, "backend|v2");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let unknown = split(vec![dest("nosuch", None, None)]);
        let err = CompiledMesh::compile(&unknown, &registry()).expect_err("unknown host");
        assert_eq!(
            err.to_string(),
            "virtual_services[0].http[0].route[0].destination.host: unknown service `nosuch` \
             (known services: backend, frontend)"
        );
        let subset = split(vec![dest("backend", Some("v9"), None)]);
        let err = CompiledMesh::compile(&subset, &registry()).expect_err("unknown subset");
        assert!(matches!(err, ConfigError::UnknownSubset { ref field, .. }
            if field == "virtual_services[0].http[0].route[0].destination.subset"));
        let zero = split(vec![
            dest("backend", None, Some(0)),
            dest("backend", None, None),
        ]);
        let err = CompiledMesh::compile(&zero, &registry()).expect_err("all zero");
        assert!(matches!(err, ConfigError::NoWeight { .. }));
    }
}
