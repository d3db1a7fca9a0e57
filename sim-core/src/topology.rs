//! Who takes part in a scenario's run, worked out once and used by both drivers — the simulator
//! and live mode (`meshtwin serve`, `run --live`): every instance with its stable name
//! (`service/version/index`), and every proxy with its name, role, RNG stream and owner (the
//! instance whose sidecar it is, or the workload whose client it is).
//!
//! Both drivers build their proxies and the engine's registry from here, so a proxy draws from
//! the same stream and an endpoint carries the same name in the simulator and live; each
//! driver only says where an instance is reached (`Topology::registry`).

use crate::model::{self, InstanceSpec};
use crate::rng::derive_seed;
use crate::scenario::Scenario;
use proxy_engine::{CompiledMesh, Endpoint, EndpointMap, ProxyRole, Registry};
use std::collections::BTreeMap;

/// What a proxy belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The sidecar of instance number `instance` (an index into `Topology::instances`).
    Sidecar {
        /// The instance.
        instance: u32,
    },
    /// The client proxy of workload number `workload` (in the scenario's order).
    Client {
        /// The workload.
        workload: u32,
    },
    /// Gateway proxy number `gateway` (in `gateway_proxies`' name order).
    Gateway {
        /// The gateway proxy.
        gateway: u32,
    },
}

/// One proxy of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySpec {
    /// Its name: the instance's (`service/version/index`) or the workload's.
    pub name: String,
    /// Its role.
    pub role: ProxyRole,
    /// The name of its RNG stream (`proxy/<name>`).
    pub stream: String,
    /// What it belongs to.
    pub owner: Owner,
}

impl ProxySpec {
    /// The seed of its engine's RNG in a run seeded with `seed`.
    pub fn seed(&self, seed: u64) -> u64 {
        derive_seed(seed, &self.stream)
    }

    /// Who its requests come from, as scenario faults name callers (a partition's `from`): the
    /// service whose sidecar it is, or the workload.
    pub fn caller(&self) -> &str {
        match &self.role {
            ProxyRole::Sidecar { service } => service,
            ProxyRole::Client { name } | ProxyRole::Gateway { name, .. } => name,
        }
    }
}

/// The instances and proxies of a scenario (see the module documentation).
#[derive(Clone, Debug)]
pub struct Topology<'a> {
    /// Every instance, in the stable order (service, version, index); the position is the
    /// instance's number.
    pub instances: Vec<InstanceSpec<'a>>,
    /// Every proxy: the instances' sidecars in instance order, then the workloads' clients,
    /// then the gateway proxies.
    pub proxies: Vec<ProxySpec>,
    /// Whether each instance exists from the start (the timeline creates the others).
    initial: Vec<bool>,
    /// The services outside the mesh.
    external: std::collections::BTreeSet<&'a str>,
    /// The gateway proxies that serve as a mesh service: (gateway number, service name, the
    /// endpoint, named as the proxy and labelled with its labels).
    gateway_services: Vec<(u32, &'a str, Endpoint)>,
}

impl<'a> Topology<'a> {
    /// The topology of `s`.
    pub fn of(s: &'a Scenario) -> Topology<'a> {
        let instances = model::instances(s);
        let mut proxies: Vec<ProxySpec> = instances
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let name = spec.name();
                ProxySpec {
                    stream: format!("proxy/{name}"),
                    name,
                    role: ProxyRole::Sidecar {
                        service: spec.service.to_owned(),
                    },
                    owner: Owner::Sidecar { instance: i as u32 },
                }
            })
            .collect();
        for (i, w) in s.workload.iter().enumerate() {
            let name = w.name(i);
            proxies.push(ProxySpec {
                stream: format!("proxy/{name}"),
                role: ProxyRole::Client { name: name.clone() },
                name,
                owner: Owner::Client { workload: i as u32 },
            });
        }
        for (i, (name, g)) in s.gateway_proxies.iter().enumerate() {
            proxies.push(ProxySpec {
                stream: format!("proxy/{name}"),
                role: ProxyRole::Gateway {
                    name: name.clone(),
                    labels: g.labels.clone(),
                },
                name: name.clone(),
                owner: Owner::Gateway { gateway: i as u32 },
            });
        }
        let initial = (crate::lifecycle::lives(s).iter())
            .map(|l| l.created == proxy_engine::Time::ZERO && l.startup.is_none())
            .collect();
        let external = (s.services.iter())
            .filter(|(_, svc)| svc.external)
            .map(|(name, _)| name.as_str())
            .collect();
        let gateway_services = (s.gateway_proxies.iter().enumerate())
            .filter_map(|(i, (name, g))| {
                let service = g.service.as_ref()?;
                let endpoint = Endpoint {
                    name: name.clone(),
                    labels: g.labels.clone(),
                };
                Some((i as u32, service.name.as_str(), endpoint))
            })
            .collect();
        Topology {
            instances,
            proxies,
            initial,
            external,
            gateway_services,
        }
    }

    /// The engine's registry at the start: an endpoint per instance the scenario starts
    /// with, named as the instance and labelled with its version (the timeline's generations
    /// have their own, `timeline::Generations::build`).
    pub fn registry(&self) -> Registry {
        self.initial_registry_where(|_| true)
    }

    /// The registry of the scenario's first instances for which `keep` holds (by number).
    pub fn initial_registry_where(&self, keep: impl Fn(usize) -> bool) -> Registry {
        self.registry_where(|i| self.initial.get(i).copied().unwrap_or(false) && keep(i))
    }

    /// The registry of the instances (by number) for which `live` holds; every service is
    /// listed, with no endpoint when none of its instances is live. A gateway proxy's service
    /// always has the gateway as its one endpoint.
    pub fn registry_where(&self, live: impl Fn(usize) -> bool) -> Registry {
        let mut services: BTreeMap<&str, Vec<Endpoint>> = BTreeMap::new();
        for (i, spec) in self.instances.iter().enumerate() {
            let endpoints = services.entry(spec.service).or_default();
            if !live(i) {
                continue;
            }
            endpoints.push(Endpoint {
                name: spec.name(),
                labels: BTreeMap::from([("version".to_owned(), spec.version.to_owned())]),
            });
        }
        let mut reg = Registry::default();
        for (service, endpoints) in services {
            match self.external.contains(service) {
                true => reg.add_external_service(service, endpoints),
                false => reg.add_service(service, endpoints),
            }
        }
        for (_, service, endpoint) in &self.gateway_services {
            reg.add_service(*service, vec![endpoint.clone()]);
        }
        reg
    }

    /// The instance number of each endpoint of `mesh` (compiled from `registry()`), which
    /// each driver maps to its own address. A gateway proxy serving as a service is endpoint
    /// number `instances.len()` + its gateway number (see [`Topology::gateway_target`]).
    pub fn endpoint_map(&self, mesh: &CompiledMesh) -> EndpointMap<u32> {
        let mut numbers: BTreeMap<String, u32> = (self.instances.iter().enumerate())
            .map(|(i, spec)| (spec.name(), i as u32))
            .collect();
        let first = self.instances.len() as u32;
        for (gateway, _, endpoint) in &self.gateway_services {
            numbers.insert(endpoint.name.clone(), first + gateway);
        }
        mesh.endpoint_map(|name| numbers.get(name).copied())
    }

    /// The gateway number an endpoint number of [`Topology::endpoint_map`] stands for, when
    /// it is not an instance's.
    pub fn gateway_target(&self, number: u32) -> Option<u32> {
        number.checked_sub(self.instances.len() as u32)
    }

    /// The sidecar of instance number `instance`.
    pub fn sidecar(&self, instance: usize) -> Option<&ProxySpec> {
        self.proxies.get(instance).filter(|p| {
            p.owner
                == Owner::Sidecar {
                    instance: instance as u32,
                }
        })
    }

    /// The client proxy of workload number `workload`.
    pub fn client(&self, workload: usize) -> Option<&ProxySpec> {
        self.proxies
            .get(self.instances.len() + workload)
            .filter(|p| {
                p.owner
                    == Owner::Client {
                        workload: workload as u32,
                    }
            })
    }

    /// The gateway proxy named `name`, and its number among the proxies.
    pub fn gateway(&self, name: &str) -> Option<(usize, &ProxySpec)> {
        (self.proxies.iter().enumerate())
            .find(|(_, p)| matches!(p.owner, Owner::Gateway { .. }) && p.name == name)
    }
}
