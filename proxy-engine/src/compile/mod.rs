//! `CompiledMesh::compile`: validation and indexing of a `MeshConfig` against a `Registry`.
//! Every error names the field path; undefined subsets compile (503 `NC` at run time) and are
//! listed as warnings.

use crate::config::{
    Destination, DestinationRule, LoadBalancerSettings, MeshConfig, VirtualService,
};
use crate::lb::LbPolicy;
use crate::mesh::{
    Cluster, ClusterId, CompiledEndpoint, CompiledMesh, CompiledRoute, ConfigError, ConfigWarning,
    DestinationId, DestinationName, HostTable, RouteAction, RouteId, WeightedCluster,
};
use crate::policy::{Budget, Limits, OutlierSpec, RetryPolicy, TokenBucketSpec};
use crate::registry::{EndpointId, Registry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod egress;
mod gateway;
mod route;

impl CompiledMesh {
    /// Validates `config` against `registry` and indexes it.
    ///
    /// Every registry service gets a default route (`service/default`) to all its endpoints,
    /// used when no virtual service claims its host.
    pub fn compile(config: &MeshConfig, registry: &Registry) -> Result<CompiledMesh, ConfigError> {
        Builder::build(config, registry, None)
    }

    /// Compiles the next generation of `previous`'s lineage: like `compile`, but every cluster
    /// (by name) and endpoint (by stable instance name) that `previous` knows keeps its id, new
    /// ones get ids never used before, and removed ones keep their slot as tombstones. A proxy
    /// given the result with `Proxy::apply_config` keeps its per-cluster and per-endpoint state
    /// (pools, ejections, balancing) for everything that stayed.
    pub fn compile_next(
        config: &MeshConfig,
        registry: &Registry,
        previous: &CompiledMesh,
    ) -> Result<CompiledMesh, ConfigError> {
        Builder::build(config, registry, Some(previous))
    }
}

/// What a virtual service's routes are named after in reports: its first host, or its name
/// when that host is a wildcard (a gateway's `*` tells nothing).
fn report_prefix<'v>(vs: &'v VirtualService, first_host: &'v str) -> &'v str {
    match &vs.name {
        Some(name) if first_host.contains('*') => name,
        _ => first_host,
    }
}

/// Builds a `CompiledMesh`, deduplicating clusters by name.
struct Builder<'a> {
    config: &'a MeshConfig,
    registry: &'a Registry,
    mesh: CompiledMesh,
    /// Clusters built by this compile, by name.
    cluster_ids: BTreeMap<String, ClusterId>,
    /// Clusters built by this compile, by id (`None`: not built, a tombstone if earlier).
    built: Vec<Option<Cluster>>,
    /// Per registry service, its endpoints' ids in registry order.
    service_endpoints: Vec<Vec<EndpointId>>,
    /// The generation this one follows.
    previous: Option<&'a CompiledMesh>,
    /// Destination rule index per host.
    rules: BTreeMap<&'a str, usize>,
    /// Each virtual service's compiled routes, in config order.
    vs_routes: Vec<Vec<RouteId>>,
    /// Each virtual service's report-only `(no route)` route.
    vs_miss: Vec<Option<RouteId>>,
}

impl<'a> Builder<'a> {
    fn build(
        config: &'a MeshConfig,
        registry: &'a Registry,
        previous: Option<&'a CompiledMesh>,
    ) -> Result<CompiledMesh, ConfigError> {
        let mut b = Builder::new(config, registry, previous)?;
        for (i, vs) in config.virtual_services.iter().enumerate() {
            b.add_virtual_service(i, vs)?;
        }
        let outbound = b.check_egress()?;
        for (s, svc) in registry.services.iter().enumerate() {
            if !b
                .mesh
                .hosts
                .contains_key(svc.name.to_ascii_lowercase().as_str())
            {
                let (action, label) = if svc.external && !b.registered(&svc.name) {
                    b.unregistered_action(s, outbound)?
                } else {
                    let cluster = b.cluster_for(s, None)?;
                    let action = RouteAction::Forward(vec![WeightedCluster {
                        cumulative: 1,
                        cluster: Some(cluster),
                    }]);
                    (action, "default")
                };
                let retry = Some(Arc::new(RetryPolicy::istio_default()));
                let name = format!("{}/{label}", svc.name);
                let id = b.push_route(CompiledRoute::plain(name, action, retry));
                let table = HostTable::new(vec![id], &b.mesh.routes);
                b.mesh
                    .hosts
                    .insert(svc.name.to_ascii_lowercase().into(), table);
            }
        }
        b.add_unmatched_routes();
        if outbound == egress::Outbound::RegistryOnly {
            let action = RouteAction::Direct {
                status: 502,
                body: None,
            };
            let id = b.push_route(CompiledRoute::plain("block_all".into(), action, None));
            b.mesh.block_all = Some(id);
        }
        b.add_gateways()?;
        Ok(b.finish())
    }

    fn new(
        config: &'a MeshConfig,
        registry: &'a Registry,
        previous: Option<&'a CompiledMesh>,
    ) -> Result<Self, ConfigError> {
        let mut mesh = CompiledMesh {
            ids: previous.map(|p| p.ids.clone()).unwrap_or_default(),
            generation: previous.map_or(0, |p| p.generation + 1),
            hosts: HashMap::default(),
            routes: Vec::new(),
            clusters: Vec::new(),
            endpoints: Vec::new(),
            destinations: Vec::new(),
            warnings: Vec::new(),
            unknown_host: None,
            pool_settings: Arc::from(Vec::new()),
            gateways: Vec::new(),
            block_all: None,
            vs_routes: Vec::new(),
            rate_limit: config
                .local_rate_limit
                .as_ref()
                .map(|l| TokenBucketSpec::compile("local_rate_limit", l))
                .transpose()?,
        };
        // Destinations keep their ids across a lineage, as clusters and endpoints do (a report
        // or time series indexed by destination reads the same in every generation).
        let mut dest_ids: BTreeMap<DestinationName, DestinationId> = BTreeMap::new();
        if let Some(p) = previous {
            mesh.destinations = p.destinations.clone();
            for (i, d) in p.destinations.iter().enumerate() {
                dest_ids.insert(d.clone(), DestinationId(i as u32));
            }
        }
        let mut service_endpoints = Vec::with_capacity(registry.services.len());
        let mut slots: Vec<Option<CompiledEndpoint>> = vec![None; mesh.ids.endpoints.len()];
        for svc in &registry.services {
            let mut ids = Vec::with_capacity(svc.endpoints.len());
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
                let name: Arc<str> = Arc::from(ep.name.as_str());
                let next = EndpointId(mesh.ids.endpoints.len() as u32);
                let ep_id = *mesh.ids.endpoints.entry(name.clone()).or_insert(next);
                if slots.len() <= ep_id.0 as usize {
                    slots.resize(ep_id.0 as usize + 1, None);
                }
                let slot = &mut slots[ep_id.0 as usize];
                if slot.is_some() {
                    return Err(ConfigError::Invalid {
                        field: format!("endpoints ({})", svc.name),
                        message: format!("endpoint `{name}` is listed twice"),
                    });
                }
                *slot = Some(CompiledEndpoint {
                    name,
                    destination: id,
                });
                ids.push(ep_id);
            }
            service_endpoints.push(ids);
        }
        // Endpoints of the lineage this generation no longer has keep their slots.
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            // Every id in the book came from `previous` or this compile, so both lookups hit.
            let Some((old, name)) = previous.and_then(|p| {
                let old = p.endpoints.get(i)?;
                Some((old, p.destinations.get(old.destination.0 as usize)?.clone()))
            }) else {
                continue;
            };
            let next = DestinationId(mesh.destinations.len() as u32);
            let id = *dest_ids.entry(name.clone()).or_insert_with(|| {
                mesh.destinations.push(name);
                next
            });
            *slot = Some(CompiledEndpoint {
                destination: id,
                ..old.clone()
            });
        }
        mesh.endpoints = slots.into_iter().flatten().collect();
        let mut b = Builder {
            config,
            registry,
            mesh,
            cluster_ids: BTreeMap::new(),
            built: Vec::new(),
            service_endpoints,
            previous,
            rules: BTreeMap::new(),
            vs_routes: Vec::new(),
            vs_miss: Vec::new(),
        };
        for (i, dr) in config.destination_rules.iter().enumerate() {
            b.check_rule(i, dr)?;
        }
        Ok(b)
    }

    fn check_rule(&mut self, i: usize, dr: &'a DestinationRule) -> Result<(), ConfigError> {
        let at = format!("destination_rules[{i}]");
        let service = self.service_index(&dr.host, format!("{at}.host"))?;
        if self.rules.insert(dr.host.as_str(), i).is_some() {
            return Err(ConfigError::DuplicateHost {
                field: format!("{at}.host"),
                host: dr.host.clone(),
                kind: "destination rule",
            });
        }
        // Compile every policy once here so errors name the rule, not a route using it.
        let addrs = self.names(service, None);
        let lb = |field: String, s: Option<&LoadBalancerSettings>, addrs: &[&str]| {
            LbPolicy::compile(s, addrs)
                .map(|_| ())
                .map_err(|message| ConfigError::Invalid { field, message })
        };
        let top = dr
            .traffic_policy
            .as_ref()
            .and_then(|p| p.load_balancer.as_ref());
        lb(format!("{at}.traffic_policy.load_balancer"), top, &addrs)?;
        if let Some(p) = &dr.traffic_policy {
            Resilience::compile(&format!("{at}.traffic_policy"), Some(p), None)?;
        }
        let mut names = std::collections::BTreeSet::new();
        for (j, s) in dr.subsets.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::Invalid {
                    field: format!("{at}.subsets[{j}].name"),
                    message: format!("subset `{}` is defined twice", s.name),
                });
            }
            let own = s
                .traffic_policy
                .as_ref()
                .and_then(|p| p.load_balancer.as_ref());
            if let Some(p) = &s.traffic_policy {
                Resilience::compile(&format!("{at}.subsets[{j}].traffic_policy"), Some(p), None)?;
            }
            let addrs = self.names(service, Some(&s.labels));
            lb(
                format!("{at}.subsets[{j}].traffic_policy.load_balancer"),
                own,
                &addrs,
            )?;
        }
        Ok(())
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

    /// The registry indices of `service`'s endpoints that carry `labels` (all without), in
    /// endpoint-id order: the order a cluster keeps its hosts in (registry order in a first
    /// compile; in a later generation, new endpoints come after those that stayed).
    fn members(&self, service: usize, labels: Option<&BTreeMap<String, String>>) -> Vec<usize> {
        let ids = &self.service_endpoints[service];
        let mut m: Vec<usize> = self.registry.services[service]
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, ep)| {
                labels.is_none_or(|l| l.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
            })
            .map(|(i, _)| i)
            .collect();
        m.sort_by_key(|&i| ids[i]);
        m
    }

    /// The stable names of the endpoints `members` gives, in the same order.
    fn names(&self, service: usize, labels: Option<&BTreeMap<String, String>>) -> Vec<&'a str> {
        let eps = &self.registry.services[service].endpoints;
        self.members(service, labels)
            .into_iter()
            .map(|i| eps[i].name.as_str())
            .collect()
    }

    /// The cluster for a whole service (`subset` None) or a subset; `Ok(None)`-free: an
    /// undefined subset is handled by the caller.
    fn cluster_for(
        &mut self,
        service: usize,
        subset: Option<&str>,
    ) -> Result<ClusterId, ConfigError> {
        let svc = &self.registry.services[service];
        let name = match subset {
            Some(s) => format!("{}|{s}", svc.name),
            None => svc.name.clone(),
        };
        if let Some(id) = self.cluster_ids.get(&name) {
            return Ok(*id);
        }
        let rule = self
            .rules
            .get(svc.name.as_str())
            .map(|&i| &self.config.destination_rules[i]);
        let subset_def = subset.and_then(|s| rule?.subsets.iter().find(|d| d.name == s));
        let labels = subset_def.map(|d| &d.labels);
        // A subset's block replaces the rule's whole block (Istio's MergeTrafficPolicy).
        let subset_policy = subset_def.and_then(|d| d.traffic_policy.as_ref());
        let rule_policy = rule.and_then(|r| r.traffic_policy.as_ref());
        let settings = subset_policy
            .and_then(|p| p.load_balancer.as_ref())
            .or_else(|| rule_policy?.load_balancer.as_ref());
        let pool = subset_policy
            .and_then(|p| p.connection_pool.as_ref())
            .or_else(|| rule_policy?.connection_pool.as_ref());
        let http2 = pool
            .and_then(|p| p.http.as_ref())
            .and_then(|h| h.h2_upgrade_policy)
            == Some(crate::config::H2UpgradePolicy::Upgrade);
        let field = format!("destination_rules (host {})", svc.name);
        let resilience = Resilience::compile(&field, rule_policy, subset_policy)?;
        let tls = match subset_policy
            .and_then(|p| p.tls.as_ref())
            .or_else(|| rule_policy?.tls.as_ref())
        {
            Some(tls) => crate::tls::compile(&format!("{field}.tls"), &svc.name, tls)?,
            None => None,
        };
        let members = self.members(service, labels);
        let endpoints: Vec<EndpointId> = members
            .iter()
            .map(|&i| self.service_endpoints[service][i])
            .collect();
        let addrs = self.names(service, labels);
        // Checked in `check_rule`; a failure here would be a bug, reported as config error.
        let lb = LbPolicy::compile(settings, &addrs).map_err(|message| ConfigError::Invalid {
            field: format!("destination_rules (host {})", svc.name),
            message,
        })?;
        let next = ClusterId(self.mesh.ids.clusters.len() as u32);
        let id = *self.mesh.ids.clusters.entry(name.clone()).or_insert(next);
        if self.built.len() <= id.0 as usize {
            self.built.resize(id.0 as usize + 1, None);
        }
        self.built[id.0 as usize] = Some(Cluster {
            name: name.clone(),
            endpoints,
            lb,
            http2,
            limits: resilience.limits,
            budget: resilience.budget,
            outlier: resilience.outlier,
            tls,
        });
        self.cluster_ids.insert(name, id);
        Ok(id)
    }

    /// The cluster a destination names, or `None` (with a warning) for an undefined subset.
    fn destination(
        &mut self,
        field: &str,
        dest: &Destination,
    ) -> Result<Option<ClusterId>, ConfigError> {
        let service = self.service_index(&dest.host, format!("{field}.host"))?;
        let Some(subset) = &dest.subset else {
            return self.cluster_for(service, None).map(Some);
        };
        let defined = self.rules.get(dest.host.as_str()).is_some_and(|&i| {
            self.config.destination_rules[i]
                .subsets
                .iter()
                .any(|s| &s.name == subset)
        });
        if !defined {
            self.mesh.warnings.push(ConfigWarning::UndefinedSubset {
                field: format!("{field}.subset"),
                host: dest.host.clone(),
                subset: subset.clone(),
            });
            return Ok(None);
        }
        self.cluster_for(service, Some(subset)).map(Some)
    }

    /// Report-only routes for requests that match nothing: one per virtual service (a host
    /// whose routes all have match blocks can miss) and one for unknown hosts. Added after
    /// every real route, so real route ids do not depend on them.
    fn add_unmatched_routes(&mut self) {
        for vs in &self.config.virtual_services {
            let Some(first) = vs.hosts.first() else {
                self.vs_miss.push(None);
                continue;
            };
            let first = report_prefix(vs, first);
            let id = self.push_route(CompiledRoute::unmatched(format!("{first}/(no route)")));
            self.vs_miss.push(Some(id));
            for host in &vs.hosts {
                if let Some(table) = self.mesh.hosts.get_mut(host.to_ascii_lowercase().as_str()) {
                    table.miss = Some(id);
                }
            }
        }
        let id = self.push_route(CompiledRoute::unmatched("(unknown host)".into()));
        self.mesh.unknown_host = Some(id);
    }

    /// The mesh, with every cluster of the lineage in its id's slot: built by this compile,
    /// or a tombstone of an earlier generation's (no endpoints).
    fn finish(mut self) -> CompiledMesh {
        self.mesh.vs_routes = std::mem::take(&mut self.vs_routes);
        let count = self.mesh.ids.clusters.len();
        self.built.resize(count, None);
        self.mesh.clusters = self
            .built
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.or_else(|| {
                    let old = self.previous?.clusters.get(i)?;
                    Some(Cluster {
                        endpoints: Vec::new(),
                        ..old.clone()
                    })
                })
            })
            .collect();
        debug_assert_eq!(
            self.mesh.clusters.len(),
            count,
            "a cluster id without a slot"
        );
        self.mesh.pool_settings = self
            .mesh
            .clusters
            .iter()
            .map(|c| (c.limits, c.http2))
            .collect();
        debug_assert_eq!(
            self.mesh.endpoints.len(),
            self.mesh.ids.endpoints.len(),
            "an endpoint id without a slot"
        );
        self.mesh
    }

    fn push_route(&mut self, route: CompiledRoute) -> RouteId {
        let id = RouteId(self.mesh.routes.len() as u32);
        self.mesh.routes.push(route);
        id
    }

    fn add_virtual_service(
        &mut self,
        index: usize,
        vs: &VirtualService,
    ) -> Result<(), ConfigError> {
        let at = format!("virtual_services[{index}]");
        let Some(first_host) = vs.hosts.first() else {
            return Err(ConfigError::NoHosts { field: at });
        };
        let mesh = gateway::binds_mesh(vs);
        for (h, host) in vs.hosts.iter().enumerate() {
            if mesh && host == "*" {
                return Err(ConfigError::Invalid {
                    field: format!("{at}.hosts[{h}]"),
                    message: "wildcard host * is not allowed for virtual services bound to the \
                              mesh gateway"
                        .into(),
                });
            }
            if mesh {
                self.service_index(host, format!("{at}.hosts[{h}]"))?;
            }
        }
        let mut ids = Vec::with_capacity(vs.http.len());
        for (r, route) in vs.http.iter().enumerate() {
            let label = route.name.clone().unwrap_or_else(|| r.to_string());
            let compiled = self.route(
                &format!("{at}.http[{r}]"),
                format!("{}/{label}", report_prefix(vs, first_host)),
                route,
            )?;
            ids.push(self.push_route(compiled));
        }
        self.vs_routes.push(ids.clone());
        if !mesh {
            return Ok(());
        }
        let table = HostTable::filtered(&ids, &self.mesh.routes, |route, block| {
            gateway::block_applies(vs, &ids, route, block, &gateway::Bound::Mesh, None)
        });
        for (h, host) in vs.hosts.iter().enumerate() {
            if self
                .mesh
                .hosts
                .insert(host.to_ascii_lowercase().into(), table.clone())
                .is_some()
            {
                return Err(ConfigError::DuplicateHost {
                    field: format!("{at}.hosts[{h}]"),
                    host: host.clone(),
                    kind: "virtual service",
                });
            }
        }
        Ok(())
    }
}

/// A cluster's resilience settings: each block of a subset's policy replaces the rule's block
/// whole (Istio's `MergeTrafficPolicy`).
struct Resilience {
    limits: Limits,
    budget: Option<Budget>,
    outlier: Option<OutlierSpec>,
}

impl Resilience {
    fn compile(
        at: &str,
        rule: Option<&crate::config::TrafficPolicy>,
        subset: Option<&crate::config::TrafficPolicy>,
    ) -> Result<Resilience, ConfigError> {
        let pool = subset
            .and_then(|p| p.connection_pool.as_ref())
            .or_else(|| rule?.connection_pool.as_ref());
        let outlier = subset
            .and_then(|p| p.outlier_detection.as_ref())
            .or_else(|| rule?.outlier_detection.as_ref());
        let budget = subset
            .and_then(|p| p.retry_budget.as_ref())
            .or_else(|| rule?.retry_budget.as_ref());
        Ok(Resilience {
            limits: Limits::compile(&format!("{at}.connection_pool"), pool)?,
            budget: budget
                .map(|b| Budget::compile(&format!("{at}.retry_budget"), b))
                .transpose()?,
            outlier: outlier
                .map(|o| OutlierSpec::compile(&format!("{at}.outlier_detection"), o))
                .transpose()?,
        })
    }
}
