//! The service registry: which services exist and which endpoints (instances) back them.
//! Drivers build it — the simulator from the scenario's modeled instances, the live runtime from
//! an endpoints file — and the engine compiles it together with the `MeshConfig`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Index of an endpoint in the `Registry` (and in the `CompiledMesh` built from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub u32);

/// Where an endpoint lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointAddr {
    /// A modeled instance in the simulator, by the simulator's instance index.
    Sim(u32),
    /// A real socket address in live mode.
    Socket(SocketAddr),
}

/// One endpoint: an instance of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Stable instance name, unique in the registry: `service/version/k` for a scenario's
    /// instance k of a version; in a proxy config, `service/version/` and the endpoint's
    /// configured name, else its address. A mesh compiled again keeps each name's
    /// `EndpointId` (see `CompiledMesh::compile_next`), and reports name instances by it.
    pub name: String,
    /// Where to send to.
    pub addr: EndpointAddr,
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
        });
    }

    /// The service with this name, if any.
    pub fn service(&self, name: &str) -> Option<&RegistryService> {
        self.services.iter().find(|s| s.name == name)
    }
}
