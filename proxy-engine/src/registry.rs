//! The service registry: which services exist and which endpoints (instances) back them.
//! Drivers build it — the simulator from the scenario's modeled instances, the live runtime from
//! an endpoints file — and the engine compiles it together with the `MeshConfig`.
//!
//! The engine knows an endpoint by its id and stable name only; where it lives (a simulated
//! instance, a socket address) is the driver's business: each driver keeps an
//! `EndpointMap` from ids to its own addresses (see `CompiledMesh::endpoint_map`).

use std::collections::BTreeMap;

/// Index of an endpoint in the `Registry` (and in the `CompiledMesh` built from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub u32);

/// One endpoint: an instance of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Stable instance name, unique in the registry: `service/version/k` for a scenario's
    /// instance k of a version; in a proxy config, `service/version/` and the endpoint's
    /// configured name, else its address. A mesh compiled again keeps each name's
    /// `EndpointId` (see `CompiledMesh::compile_next`), and reports name instances by it.
    pub name: String,
    /// Labels such as `version`, used by subsets.
    pub labels: BTreeMap<String, String>,
}

/// One service and its endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryService {
    /// Service name, the host requests use.
    pub name: String,
    /// The endpoints, in a stable order.
    pub endpoints: Vec<Endpoint>,
    /// Outside the mesh (Istio `MESH_EXTERNAL`): reachable as a registered host only when a
    /// `ServiceEntry` lists it; else by the outbound traffic policy.
    pub external: bool,
}

/// All services a mesh knows about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// Services in a stable order (the order they were added).
    pub services: Vec<RegistryService>,
}

impl Registry {
    /// Adds a service with its endpoints.
    pub fn add_service(&mut self, name: impl Into<String>, endpoints: Vec<Endpoint>) {
        self.services.push(RegistryService {
            name: name.into(),
            endpoints,
            external: false,
        });
    }

    /// Adds a service outside the mesh (see `RegistryService::external`).
    pub fn add_external_service(&mut self, name: impl Into<String>, endpoints: Vec<Endpoint>) {
        self.services.push(RegistryService {
            name: name.into(),
            endpoints,
            external: true,
        });
    }

    /// The service with this name, if any.
    pub fn service(&self, name: &str) -> Option<&RegistryService> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// A driver's address for each endpoint of one compiled mesh, indexed by `EndpointId`: the
/// simulator maps ids to instance numbers, the live runtime to socket addresses. Built with
/// `CompiledMesh::endpoint_map` for the generation it serves; an endpoint a later generation
/// removed (its id stays reserved) has no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointMap<A> {
    by_id: Vec<Option<A>>,
}

impl<A> EndpointMap<A> {
    /// A map from each id's address, in id order.
    pub(crate) fn from_ids(by_id: Vec<Option<A>>) -> Self {
        EndpointMap { by_id }
    }

    /// The same ids mapped to other addresses (an instance number to its socket, say).
    pub fn map<B>(&self, mut f: impl FnMut(&A) -> Option<B>) -> EndpointMap<B> {
        EndpointMap::from_ids(
            self.by_id
                .iter()
                .map(|a| a.as_ref().and_then(&mut f))
                .collect(),
        )
    }

    /// Where endpoint `id` lives, if the driver gave it an address.
    pub fn get(&self, id: EndpointId) -> Option<&A> {
        self.by_id.get(id.0 as usize).and_then(Option::as_ref)
    }
}
