//! The timeline: mesh config changes at set times, each making a new config generation.
//!
//! [`Generations::build`] applies the scenario's changes in order to its mesh config and
//! compiles each result as the next generation of one lineage (`CompiledMesh::compile_next`,
//! so clusters, destinations and endpoints keep their ids and a proxy keeps its state for
//! what stayed). Both the checks (a change that cannot apply, a generation that does not
//! compile) and the simulator (which pushes each generation to every proxy after its
//! `push_delay`) use it.
//!
//! An intermediate generation may name a subset no DestinationRule defines — a VirtualService
//! applied before the DestinationRule it needs, the ordering hazard of a real cluster, where
//! the proxies answer 503 `NC` until the rule arrives. The static mesh may not (that stays an
//! error); for a timeline it is a [`Hazard`], reported with the time range it lasts.

use crate::scenario::{Change, MeshObject, MeshObjectRef, Scenario};
use proxy_engine::config::{Destination, HttpRoute, RouteDestination, VirtualService};
use proxy_engine::{CompiledMesh, ConfigError, ConfigWarning, MeshConfig, Registry, Time};
use std::sync::Arc;

/// Why a timeline cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// A change that does not apply to the config before it.
    #[error("timeline[{index}].change: {message}")]
    Change {
        /// The entry.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The config after a change does not compile.
    #[error("timeline[{index}]: the mesh after this change: {error}")]
    Compile {
        /// The entry.
        index: usize,
        /// The engine's error (its field is inside the mesh config after the change).
        error: ConfigError,
    },
}

/// A time range during which a generation names an undefined subset: proxies that hold it
/// answer 503 `NC` for the routes to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Hazard {
    /// The timeline entry that made the generation.
    pub index: usize,
    /// From when (the entry's `at`).
    pub from: Time,
    /// Until the next change (`None`: to the end of the run).
    pub until: Option<Time>,
    /// The engine's warning (which field, which subset).
    pub warning: String,
}

/// Every generation of a scenario's mesh: number 0 is the scenario's `mesh` over its first
/// instances; each timeline entry makes the next, and so does each moment instances the
/// timeline created become ready (their endpoints join).
#[derive(Clone, Debug)]
pub struct Generations {
    /// The compiled generations, by number.
    pub meshes: Vec<Arc<CompiledMesh>>,
    /// When each generation is made (0 for the first).
    pub at: Vec<Time>,
    /// The timeline entry that made each generation (`None`: the first, or instances
    /// becoming ready).
    pub entry: Vec<Option<usize>>,
}

impl Generations {
    /// Applies `s.timeline` in order, with the instances of each moment (their startup
    /// drawn from `seed`'s streams), and compiles each generation as the next of one lineage.
    pub fn build(s: &Scenario, seed: u64) -> Result<Generations, TimelineError> {
        let topology = crate::topology::Topology::of(s);
        let lives = crate::lifecycle::lives(s);
        let ready = crate::lifecycle::ready_times(&lives, seed);
        // Whether instance `i` is in the endpoints at `t`.
        let live = |i: usize, t: Time| {
            ready[i].is_some_and(|r| r <= t) && lives[i].removed.is_none_or(|(at, _)| t < at)
        };
        let registry_at = |t: Time| topology.registry_where(|i| live(i, t));
        let mut config = crate::delivery::initial_config(s);
        let first = CompiledMesh::compile(&config, &registry_at(Time::ZERO))
            .map_err(|error| TimelineError::Compile { index: 0, error })?;
        let mut g = Generations {
            meshes: vec![Arc::new(first)],
            at: vec![Time::ZERO],
            entry: vec![None],
        };
        // Entries in order; instances becoming ready later than their entry, in time order.
        let mut joins: Vec<Time> = (lives.iter().zip(&ready))
            .filter_map(|(l, r)| r.filter(|r| *r > l.created))
            .collect();
        joins.sort_unstable();
        joins.dedup();
        let mut joins = joins.into_iter().peekable();
        for (index, entry) in s.timeline.iter().enumerate() {
            let at = Time(entry.at.0);
            while let Some(t) = joins.next_if(|t| *t < at) {
                g.push(&config, &registry_at(t), t, None)
                    .map_err(|error| TimelineError::Compile { index, error })?;
            }
            config = apply(&config, &entry.change)
                .map_err(|message| TimelineError::Change { index, message })?;
            g.push(&config, &registry_at(at), at, Some(index))
                .map_err(|error| TimelineError::Compile { index, error })?;
        }
        let last = s.timeline.len().saturating_sub(1);
        for t in joins {
            g.push(&config, &registry_at(t), t, None)
                .map_err(|error| TimelineError::Compile { index: last, error })?;
        }
        Ok(g)
    }

    /// Compiles `config` over `registry` as the next generation, made at `at`.
    fn push(
        &mut self,
        config: &MeshConfig,
        registry: &Registry,
        at: Time,
        entry: Option<usize>,
    ) -> Result<(), ConfigError> {
        let previous = &self.meshes[self.meshes.len() - 1];
        let next = CompiledMesh::compile_next(config, registry, previous)?;
        self.meshes.push(Arc::new(next));
        self.at.push(at);
        self.entry.push(entry);
        Ok(())
    }

    /// Every generation after the first as a report lists them, with what made it:
    /// `timeline[i]`, `instances ready`, or (when `rollout`) the rollout.
    pub fn made(&self, rollout: bool) -> Vec<metrics::GenerationMade> {
        (1..self.meshes.len())
            .map(|g| metrics::GenerationMade {
                number: self.meshes[g].generation() as u32,
                at: self.at[g],
                cause: match self.entry[g] {
                    Some(i) => format!("timeline[{i}]"),
                    None if rollout => "rollout".into(),
                    None => "instances ready".into(),
                },
            })
            .collect()
    }

    /// The time ranges during which a generation names an undefined subset.
    pub fn hazards(&self) -> Vec<Hazard> {
        let mut out = Vec::new();
        for (g, mesh) in self.meshes.iter().enumerate().skip(1) {
            if let Some(w @ ConfigWarning::UndefinedSubset { .. }) = mesh.warnings().first() {
                out.push(Hazard {
                    index: self.entry[g].unwrap_or_default(),
                    from: self.at[g],
                    until: self.at.get(g + 1).copied(),
                    warning: w.to_string(),
                });
            }
        }
        out
    }
}

/// The identity a VirtualService is replaced and removed by: its name, else its first host.
fn vs_identity(vs: &VirtualService) -> &str {
    vs.name
        .as_deref()
        .or_else(|| vs.hosts.first().map(String::as_str))
        .unwrap_or_default()
}

/// `config` with `change` applied.
pub fn apply(config: &MeshConfig, change: &Change) -> Result<MeshConfig, String> {
    let mut next = config.clone();
    match change {
        Change::SetWeights {
            host,
            route,
            weights,
        } => set_weights(&mut next, host, route.as_deref(), weights)?,
        Change::Apply(MeshObject::VirtualService(vs)) => {
            let id = vs_identity(vs);
            match (next.virtual_services.iter_mut()).find(|v| vs_identity(v) == id) {
                Some(slot) => *slot = vs.clone(),
                None => next.virtual_services.push(vs.clone()),
            }
        }
        Change::Apply(MeshObject::DestinationRule(dr)) => {
            match (next.destination_rules.iter_mut()).find(|d| d.host == dr.host) {
                Some(slot) => *slot = (**dr).clone(),
                None => next.destination_rules.push((**dr).clone()),
            }
        }
        Change::Remove(MeshObjectRef::VirtualService(name)) => {
            let before = next.virtual_services.len();
            next.virtual_services.retain(|v| vs_identity(v) != name);
            if next.virtual_services.len() == before {
                let known: Vec<&str> = config.virtual_services.iter().map(vs_identity).collect();
                return Err(format!(
                    "no VirtualService `{name}` to remove (there are: {})",
                    list(&known)
                ));
            }
        }
        // Deployment changes leave the config as it is (the endpoints change).
        Change::Scale { .. } | Change::AddVersion { .. } | Change::RemoveVersion { .. } => {}
        Change::Remove(MeshObjectRef::DestinationRule(host)) => {
            let before = next.destination_rules.len();
            next.destination_rules.retain(|d| &d.host != host);
            if next.destination_rules.len() == before {
                let known: Vec<&str> = (config.destination_rules.iter())
                    .map(|d| d.host.as_str())
                    .collect();
                return Err(format!(
                    "no DestinationRule for host `{host}` to remove (there are: {})",
                    list(&known)
                ));
            }
        }
    }
    Ok(next)
}

fn list(names: &[&str]) -> String {
    match names.is_empty() {
        true => "none".into(),
        false => names.join(", "),
    }
}

/// Sets the weights of `host`'s routes (or the one named `route`) to `weights` by subset.
fn set_weights(
    config: &mut MeshConfig,
    host: &str,
    route: Option<&str>,
    weights: &std::collections::BTreeMap<String, u32>,
) -> Result<(), String> {
    let total: u64 = weights.values().map(|w| u64::from(*w)).sum();
    if total != 100 {
        return Err(format!(
            "SetWeights for `{host}`: the weights add up to {total}, expected 100"
        ));
    }
    let destinations: Vec<RouteDestination> = (weights.iter())
        .map(|(subset, w)| RouteDestination {
            destination: Destination {
                host: host.to_owned(),
                subset: Some(subset.clone()),
                port: None,
            },
            weight: Some(*w),
        })
        .collect();
    let vs = config
        .virtual_services
        .iter_mut()
        .find(|v| v.hosts.iter().any(|h| h == host));
    let Some(vs) = vs else {
        if let Some(name) = route {
            return Err(format!(
                "SetWeights for `{host}`: no VirtualService for the host has a route `{name}`"
            ));
        }
        config.virtual_services.push(VirtualService {
            name: None,
            namespace: None,
            gateways: Vec::new(),
            hosts: vec![host.to_owned()],
            http: vec![HttpRoute {
                route: destinations,
                ..HttpRoute::default()
            }],
        });
        return Ok(());
    };
    let mut changed = 0;
    for r in &mut vs.http {
        if route.is_some_and(|name| r.name.as_deref() != Some(name)) || r.route.is_empty() {
            continue;
        }
        r.route = destinations.clone();
        changed += 1;
    }
    if changed == 0 {
        let names: Vec<&str> = vs.http.iter().filter_map(|r| r.name.as_deref()).collect();
        return Err(match route {
            Some(name) => format!(
                "SetWeights for `{host}`: its VirtualService has no route `{name}` (named routes: {})",
                list(&names)
            ),
            None => format!(
                "SetWeights for `{host}`: its VirtualService has no route with destinations"
            ),
        });
    }
    Ok(())
}

/// The timeline's hazards as warning lines (empty when there are none, or when the timeline
/// does not build: that is an error `load` reports).
pub fn warnings(s: &Scenario) -> Vec<String> {
    let Ok(generations) = Generations::build(s, s.seed) else {
        return Vec::new();
    };
    (generations.hazards().into_iter())
        .map(|h| {
            let until = match h.until {
                Some(t) => format!("until {} (the next change)", proxy_engine::Nanos(t.0)),
                None => "to the end of the run".into(),
            };
            format!(
                "timeline[{}]: from {} {until}, in the config after this change {}",
                h.index,
                proxy_engine::Nanos(h.from.0),
                h.warning
            )
        })
        .collect()
}
