//! The modeled deployment: which instances a scenario's services have, in one stable order
//! (services by name, versions by name, then instance index) shared by the registry the engine
//! sees and the simulator's instance table.

use crate::scenario::{CallStep, Scenario, Version};
use proxy_engine::{Endpoint, EndpointAddr, Registry};
use rand::Rng;
use std::collections::BTreeMap;

/// One modeled instance of a service version.
#[derive(Clone, Debug)]
pub struct InstanceSpec<'a> {
    /// Service name.
    pub service: &'a str,
    /// Version name (its `version` label).
    pub version: &'a str,
    /// Index within the version.
    pub index: u32,
    /// The version's model.
    pub model: &'a Version,
}

impl InstanceSpec<'_> {
    /// Stable component name, used to derive RNG streams: `service/version/index`.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.service, self.version, self.index)
    }
}

/// Every instance of the scenario, in the stable order; position = simulator instance index.
pub fn instances(s: &Scenario) -> Vec<InstanceSpec<'_>> {
    let mut out = Vec::new();
    for (service, svc) in &s.services {
        for (version, model) in &svc.versions {
            for index in 0..model.instances {
                out.push(InstanceSpec {
                    service,
                    version,
                    index,
                    model,
                });
            }
        }
    }
    out
}

/// The registry the engine routes over: one endpoint per instance, labelled with its version.
pub fn registry(s: &Scenario) -> Registry {
    let mut reg = Registry::default();
    let mut next = 0u32;
    for (service, svc) in &s.services {
        let mut endpoints = Vec::new();
        for (version, model) in &svc.versions {
            for _ in 0..model.instances {
                endpoints.push(Endpoint {
                    addr: EndpointAddr::Sim(next),
                    labels: BTreeMap::from([("version".to_owned(), version.clone())]),
                });
                next += 1;
            }
        }
        reg.add_service(service.clone(), endpoints);
    }
    reg
}

/// The status a modeled handler answers with, once its calls and service time are done: 500 if
/// an outbound call failed (5xx or no response), else `error_status` with probability `errors`,
/// else 200. Shared by the simulator and live modeled services, so both run one model.
pub fn handler_status(call_failed: bool, model: &Version, rng: &mut impl Rng) -> u16 {
    if call_failed {
        500
    } else if model.errors > 0.0 && rng.gen::<f64>() < model.errors {
        model.error_status
    } else {
        200
    }
}

/// A service's call steps as lists of calls (a `Call` step is a list of one).
pub fn call_steps(s: &Scenario, service: &str) -> Vec<Vec<crate::scenario::Call>> {
    s.services
        .get(service)
        .map(|svc| {
            svc.calls
                .iter()
                .map(|step| match step {
                    CallStep::Call(c) => vec![c.clone()],
                    CallStep::Parallel(cs) => cs.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}
