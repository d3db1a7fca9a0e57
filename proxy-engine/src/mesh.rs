//! The compiled mesh: `MeshConfig` + `Registry` validated and indexed once (see `compile`), so
//! the per-request path does no parsing and no allocation it can avoid: hosts are looked up in a
//! hash map (never iterated), regexes are built, weights are cumulative, percentages are parts
//! per million, clusters carry their endpoints and load-balancing policy.

pub use crate::error::{ConfigError, ConfigWarning};
pub use crate::head::HeaderEdit;
use crate::idmap::IdHasher;
pub use crate::ids::{ClusterId, DestinationId, RouteId};
use crate::lb::LbPolicy;
use crate::matching::{MatchBlock, MatchInput};
use crate::policy::{Budget, Limits, OutlierSpec, RetryPolicy, TokenBucketSpec};
use crate::registry::{EndpointId, EndpointMap};
use crate::time::Nanos;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// What a weighted entry sends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightedCluster {
    /// Cumulative weight up to and including this entry.
    pub cumulative: u32,
    /// The cluster; `None` for an undefined subset (503 `NC`).
    pub cluster: Option<ClusterId>,
}

/// A compiled redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// Status (default 301).
    pub status: u16,
    /// New path, or keep.
    pub uri: Option<Arc<str>>,
    /// New authority, or keep.
    pub authority: Option<Arc<str>>,
    /// New port, or keep.
    pub port: Option<u16>,
    /// New scheme, or keep.
    pub scheme: Option<Arc<str>>,
}

/// What a matched route does.
#[derive(Clone, Debug)]
pub enum RouteAction {
    /// Forward to a weighted pick of clusters; the last `cumulative` is the total (> 0).
    Forward(Vec<WeightedCluster>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed status and body.
    Direct {
        /// Status.
        status: u16,
        /// Body.
        body: Option<Arc<str>>,
    },
}

/// Compiled fault injection; percentages in parts per million.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fault {
    /// Delay and its share.
    pub delay: Option<(Nanos, u32)>,
    /// Abort status and its share.
    pub abort: Option<(u16, u32)>,
}

/// A compiled mirror policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// Target cluster (`None`: undefined subset, nothing is mirrored).
    pub cluster: Option<ClusterId>,
    /// Share mirrored, parts per million.
    pub ppm: u32,
}

/// A compiled route.
#[derive(Clone, Debug)]
pub struct CompiledRoute {
    /// Name used in reports: `host/route-name` (or `host/index`, `host/default`).
    pub name: String,
    /// Match blocks, ORed; empty matches every request.
    pub matches: Vec<MatchBlock>,
    /// What to do with a matched request.
    pub action: RouteAction,
    /// New path prefix (replacing the matched prefix, or the whole path).
    pub rewrite_uri: Option<Arc<str>>,
    /// New authority.
    pub rewrite_authority: Option<Arc<str>>,
    /// Request header operations.
    pub request_headers: HeaderEdit,
    /// Response header operations, handed to the driver with `Forward`.
    pub response_headers: Option<Arc<HeaderEdit>>,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// Mirror policies.
    pub mirrors: Vec<Mirror>,
    /// Route timeout over all tries and backoff; `None` = no timeout.
    pub timeout: Option<Nanos>,
    /// Retry policy; `None` = retries off.
    pub retry: Option<Arc<RetryPolicy>>,
    /// Per-route local rate limit.
    pub rate_limit: Option<TokenBucketSpec>,
}

impl CompiledRoute {
    /// A route named `name` doing `action` with `retry`, and nothing else: no match blocks,
    /// rewrites, header edits, faults, mirrors, timeout or rate limit.
    pub(crate) fn plain(
        name: String,
        action: RouteAction,
        retry: Option<Arc<RetryPolicy>>,
    ) -> CompiledRoute {
        CompiledRoute {
            name,
            matches: Vec::new(),
            action,
            rewrite_uri: None,
            rewrite_authority: None,
            request_headers: HeaderEdit::default(),
            response_headers: None,
            fault: None,
            mirrors: Vec::new(),
            timeout: None,
            retry,
            rate_limit: None,
        }
    }

    /// A report-only route named `name` for requests that matched no route (404 `NR`): in no
    /// host table.
    pub(crate) fn unmatched(name: String) -> CompiledRoute {
        let action = RouteAction::Direct {
            status: 404,
            body: None,
        };
        CompiledRoute::plain(name, action, None)
    }
}

/// A set of endpoints traffic is balanced over: a service or a subset.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Envoy-style name: `service` or `service|subset`.
    pub name: String,
    /// Endpoints in registry order.
    pub endpoints: Vec<EndpointId>,
    /// How an endpoint is chosen.
    pub lb: LbPolicy,
    /// Upstream connections speak HTTP/2 (`h2_upgrade_policy: UPGRADE`).
    pub http2: bool,
    /// Circuit-breaker limits and connection settings.
    pub limits: Limits,
    /// Retry budget (replaces `limits.max_retries`).
    pub budget: Option<Budget>,
    /// Outlier detection, when the destination rule has the block.
    pub outlier: Option<OutlierSpec>,
    /// TLS originated to its endpoints (`tls` mode `SIMPLE` or `MUTUAL`).
    pub tls: Option<Arc<crate::tls::UpstreamTls>>,
}

/// One endpoint as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledEndpoint {
    /// Its stable instance name (the registry's).
    pub name: Arc<str>,
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

/// The routes of one host, and their match blocks flattened in evaluation order (route order,
/// then block order), so matching walks one contiguous list.
#[derive(Clone, Debug, Default)]
pub struct HostTable {
    /// The routes, in order.
    pub routes: Vec<RouteId>,
    /// `(block, route, block index)`; a route without match blocks contributes one empty block
    /// (which matches everything) with index `None`.
    pub blocks: Vec<(MatchBlock, RouteId, Option<u32>)>,
    /// The route reports name when no route of this host matches (`host/(no route)`, a 404
    /// `NR`); never matched itself.
    pub miss: Option<RouteId>,
}

impl HostTable {
    /// The table of `routes` (ids into `all`).
    pub fn new(routes: Vec<RouteId>, all: &[CompiledRoute]) -> HostTable {
        let mut blocks = Vec::new();
        for &id in &routes {
            let route = &all[id.0 as usize];
            if route.matches.is_empty() {
                blocks.push((MatchBlock::default(), id, None));
            }
            for (j, b) in route.matches.iter().enumerate() {
                blocks.push((b.clone(), id, Some(j as u32)));
            }
        }
        HostTable {
            routes,
            blocks,
            miss: None,
        }
    }

    /// The table of `routes` keeping only the blocks for which `keep(route, block index)`
    /// holds (`None` for a route without match blocks); a route left with no block is left
    /// out. How a virtual service's routes are cut to one gateway, port or the mesh.
    pub fn filtered(
        routes: &[RouteId],
        all: &[CompiledRoute],
        keep: impl Fn(RouteId, Option<u32>) -> bool,
    ) -> HostTable {
        let full = HostTable::new(routes.to_vec(), all);
        let blocks: Vec<_> = (full.blocks.into_iter())
            .filter(|(_, id, j)| keep(*id, *j))
            .collect();
        let routes = (routes.iter().copied())
            .filter(|id| blocks.iter().any(|(_, r, _)| r == id))
            .collect();
        HostTable {
            routes,
            blocks,
            miss: None,
        }
    }

    /// Appends `other`'s routes and blocks after this table's (Istio merges the virtual
    /// services bound to one gateway host in order).
    pub fn extend(&mut self, other: HostTable) {
        self.routes.extend(other.routes);
        self.blocks.extend(other.blocks);
        self.miss = self.miss.or(other.miss);
    }

    /// The first route with a block matching `input`, and that block's index.
    pub fn find(&self, input: &MatchInput<'_>) -> Option<(RouteId, Option<u32>)> {
        self.blocks
            .iter()
            .find(|(b, _, _)| b.matches(input))
            .map(|(_, id, j)| (*id, *j))
    }
}

/// The validated, indexed mesh a `Proxy` runs on.
#[derive(Clone, Debug)]
pub struct CompiledMesh {
    /// Host → its routes. Only ever looked up, never iterated.
    pub(crate) hosts: HashMap<Box<str>, HostTable, BuildHasherDefault<IdHasher>>,
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) clusters: Vec<Cluster>,
    pub(crate) endpoints: Vec<CompiledEndpoint>,
    pub(crate) destinations: Vec<DestinationName>,
    pub(crate) warnings: Vec<ConfigWarning>,
    pub(crate) rate_limit: Option<TokenBucketSpec>,
    /// The route reports name for a request to a host the mesh does not know
    /// (`(unknown host)`, a 404 `NR`); never matched.
    pub(crate) unknown_host: Option<RouteId>,
    /// The stable ids of this mesh's lineage (see `compile_next`).
    pub(crate) ids: IdBook,
    /// 0 for a first compile, one more than its predecessor's for `compile_next`.
    pub(crate) generation: u64,
    /// Each cluster's pool settings (limits, HTTP/2), indexed by `ClusterId`: made once per
    /// compile and shared by every proxy's pool, so a proxy holds nothing per cluster of the
    /// mesh that it does not use.
    pub(crate) pool_settings: Arc<[(Limits, bool)]>,
    /// The `Gateway` objects, in config order.
    pub(crate) gateways: Vec<crate::gateway::CompiledGateway>,
    /// Under `REGISTRY_ONLY`, the route a request for a host the mesh does not know takes
    /// (a 502, Istio's `block_all`).
    pub(crate) block_all: Option<RouteId>,
    /// Each virtual service's compiled routes, indexed like `MeshConfig::virtual_services`
    /// and then like its `http` list.
    pub(crate) vs_routes: Vec<Vec<RouteId>>,
}

/// The stable ids of one lineage of compiled meshes: every cluster and endpoint name compiled
/// so far, with its id. Ids are handed out in sequence and never given to another name, so
/// an id means the same cluster or endpoint in every generation of the lineage, and per-proxy
/// state indexed by id stays where it belongs across a reload. A cluster or endpoint that a
/// generation no longer has keeps its slot there as a tombstone (the cluster with no
/// endpoints, the endpoint in no cluster): never picked, still named in reports.
#[derive(Clone, Debug, Default)]
pub(crate) struct IdBook {
    pub(crate) clusters: std::collections::BTreeMap<String, ClusterId>,
    pub(crate) endpoints: std::collections::BTreeMap<Arc<str>, EndpointId>,
}

impl CompiledMesh {
    /// Which config rule `route` was compiled from: `(virtual service index, http route
    /// index)` into the `MeshConfig` this mesh was compiled from; `None` for the routes the
    /// compiler makes itself (a host's default route, `(no route)`, `block_all`, HTTPS
    /// redirects).
    pub fn route_source(&self, route: RouteId) -> Option<(usize, usize)> {
        self.vs_routes
            .iter()
            .enumerate()
            .find_map(|(v, ids)| ids.iter().position(|&id| id == route).map(|r| (v, r)))
    }

    /// The routes sidecars evaluate (every host table's), in id order.
    pub fn sidecar_routes(&self) -> Vec<RouteId> {
        let mut routes: Vec<RouteId> = (self.hosts.values())
            .flat_map(|t| t.routes.iter().copied())
            .collect();
        routes.sort_unstable();
        routes.dedup();
        routes
    }

    /// Each cluster's pool settings (limits, HTTP/2), indexed by `ClusterId`.
    pub fn pool_settings(&self) -> &Arc<[(Limits, bool)]> {
        &self.pool_settings
    }

    /// Which generation of its lineage this mesh is: 0 for `compile`, one more than its
    /// predecessor's for `compile_next`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `self` is a later generation of `earlier`'s lineage: every cluster and endpoint
    /// name of `earlier` has the same id here (so per-proxy state indexed by id carries over).
    pub fn succeeds(&self, earlier: &CompiledMesh) -> bool {
        self.generation > earlier.generation
            && self.clusters.len() >= earlier.clusters.len()
            && self.endpoints.len() >= earlier.endpoints.len()
            && earlier
                .ids
                .clusters
                .iter()
                .all(|(name, id)| self.ids.clusters.get(name) == Some(id))
            && earlier
                .ids
                .endpoints
                .iter()
                .all(|(name, id)| self.ids.endpoints.get(name) == Some(id))
    }

    /// The route a request to `host` that matched nothing is reported under: the host's
    /// `host/(no route)`, or `(unknown host)`. A report row, not a route: the answer is 404 `NR`.
    pub fn unmatched_route(&self, host: &str) -> Option<RouteId> {
        match self.host_table(host) {
            Some(t) => t.miss,
            None => self.unknown_host,
        }
    }

    /// The ordered routes for `host`, if the mesh knows the host.
    pub fn routes_for_host(&self, host: &str) -> Option<&[RouteId]> {
        self.host_table(host).map(|t| t.routes.as_slice())
    }

    /// The route table of `host`, if the mesh knows the host. Hosts are matched without regard
    /// to ASCII case, as Envoy matches virtual host domains (`Host: WEB` routes like `web`);
    /// the keys are stored lower-case. A service's Kubernetes name (`reviews.default.svc.cluster.local`) finds the service's
    /// table, as the virtual host Istio builds for a service lists it among its domains.
    pub fn host_table(&self, host: &str) -> Option<&HostTable> {
        let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hosts.get(host.to_ascii_lowercase().as_str())
        } else {
            self.hosts.get(host)
        };
        found.or_else(|| {
            let suffix = crate::hosts::CLUSTER_SUFFIX;
            let tail = host.len().checked_sub(suffix.len())?;
            if !host.get(tail..)?.eq_ignore_ascii_case(suffix) {
                return None;
            }
            let lower = host.to_ascii_lowercase();
            let short = crate::hosts::service_name(&lower, &|h| self.hosts.contains_key(h))?;
            self.hosts.get(short)
        })
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

    /// A driver's address for each endpoint, looked up by stable name (`None` for a name the
    /// driver does not know, such as an endpoint this generation removed).
    pub fn endpoint_map<A>(&self, mut addr: impl FnMut(&str) -> Option<A>) -> EndpointMap<A> {
        EndpointMap::from_ids(self.endpoints.iter().map(|e| addr(&e.name)).collect())
    }

    /// All destinations, indexed by `DestinationId`.
    pub fn destinations(&self) -> &[DestinationName] {
        &self.destinations
    }

    /// What compiled but deserves a look (e.g. undefined subsets).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The compiled `Gateway` objects, in config order.
    pub fn gateways(&self) -> &[crate::gateway::CompiledGateway] {
        &self.gateways
    }

    /// The local rate limit every proxy applies to all its requests, if any.
    pub fn rate_limit(&self) -> Option<&TokenBucketSpec> {
        self.rate_limit.as_ref()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Destination, DestinationRule, HttpRoute, MeshConfig, RouteDestination, Subset,
        VirtualService,
    };
    use crate::registry::{Endpoint, Registry};
    use std::collections::BTreeMap;

    fn registry() -> Registry {
        let mut r = Registry::default();
        let ep = |i: u32, v: &str| Endpoint {
            name: format!("backend/{v}/{i}"),
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
        let subset = |v: &str| Subset {
            name: v.into(),
            labels: BTreeMap::from([("version".into(), v.into())]),
            traffic_policy: None,
        };
        MeshConfig {
            gateways: Vec::new(),
            service_entries: Vec::new(),
            outbound_traffic_policy: None,
            virtual_services: vec![VirtualService {
                name: None,
                namespace: None,
                gateways: Vec::new(),
                hosts: vec!["backend".into()],
                http: vec![HttpRoute {
                    name: Some("split".into()),
                    route: dests,
                    ..Default::default()
                }],
            }],
            destination_rules: vec![DestinationRule {
                host: "backend".into(),
                traffic_policy: None,
                subsets: vec![subset("v1"), subset("v2")],
            }],
            local_rate_limit: None,
        }
    }

    fn forward(route: &CompiledRoute) -> &[WeightedCluster] {
        match &route.action {
            RouteAction::Forward(c) => c,
            other => panic!("expected forward, got {other:?}"),
        }
    }

    #[test]
    fn default_routes_cover_every_service() {
        let m = CompiledMesh::compile(&MeshConfig::default(), &registry()).expect("compiles");
        let routes = m.routes_for_host("backend").expect("backend routed");
        let route = m.route(routes[0]);
        assert_eq!(route.name, "backend/default");
        let cluster = forward(route)[0].cluster.expect("cluster");
        assert_eq!(m.cluster(cluster).endpoints.len(), 3);
        assert!(
            matches!(m.cluster(cluster).lb, crate::lb::LbPolicy::LeastRequest),
            "Istio default"
        );
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
        let clusters = forward(route);
        let cum: Vec<u32> = clusters.iter().map(|c| c.cumulative).collect();
        assert_eq!(cum, vec![80, 100], "weight-0 entry dropped");
        let v1 = clusters[0].cluster.expect("v1");
        assert_eq!(m.cluster(v1).endpoints.len(), 2);
        assert_eq!(
            m.cluster(clusters[1].cluster.expect("v2")).name,
            "backend|v2"
        );
        assert!(m.warnings().is_empty());
    }

    #[test]
    fn undefined_subset_compiles_with_a_warning() {
        let cfg = split(vec![dest("backend", Some("v9"), None)]);
        let m = CompiledMesh::compile(&cfg, &registry()).expect("compiles");
        assert_eq!(
            m.warnings()[0].to_string(),
            "virtual_services[0].http[0].route[0].destination.subset: subset `v9` is not defined \
             for host `backend` by any destination rule (requests routed to it get 503 NC)"
        );
        let route = m.route(m.routes_for_host("backend").expect("routed")[0]);
        assert_eq!(forward(route)[0].cluster, None);
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
        let zero = split(vec![
            dest("backend", None, Some(0)),
            dest("backend", None, None),
        ]);
        let err = CompiledMesh::compile(&zero, &registry()).expect_err("all zero");
        assert!(matches!(err, ConfigError::NoWeight { .. }));
        let mut regex = split(vec![dest("backend", None, None)]);
        regex.virtual_services[0].http[0].matches = vec![crate::config::HttpMatchRequest {
            uri: Some(crate::config::StringMatch::Regex("/(unclosed".into())),
            ..Default::default()
        }];
        let err = CompiledMesh::compile(&regex, &registry()).expect_err("bad regex");
        assert_eq!(err.field(), "virtual_services[0].http[0].match[0].uri");
        assert!(
            err.to_string()
                .contains("regex `/(unclosed` does not compile"),
            "{err}"
        );
    }
}
