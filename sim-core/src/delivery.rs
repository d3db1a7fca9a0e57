//! A scenario's rollout, as both drivers run it: the mesh config each [`Routing`] of the
//! controller stands for, which instances each side's metrics come from, and the checks a
//! rollout block must pass against the scenario.
//!
//! Every generation is rendered from the scenario's own mesh (not from the one before), so a
//! routing always means the same config: the host's VirtualService routes get the stable and
//! canary subsets weighted as the routing says (both listed, as Flagger and Argo keep them),
//! a mirror of the canary subset while mirroring, and for A/B testing a first rule with the
//! analysis' `match` (the others then go to stable), as Flagger's generated VirtualService
//! has. Retries, timeouts, faults and headers of the user's routes stay as written.

use crate::scenario::Scenario;
use crate::topology::Topology;
use proxy_engine::config::{
    Destination, DestinationRule, HttpRoute, RouteDestination, VirtualService,
};
use proxy_engine::{CompiledMesh, MeshConfig, Registry};
use rollout::{RolloutSpec, Routing, Side};

/// The mesh config that `routing` stands for.
pub fn render(base: &MeshConfig, spec: &RolloutSpec, routing: &Routing) -> MeshConfig {
    let mut config = base.clone();
    let to = |subset: &str, weight: u32| RouteDestination {
        destination: Destination {
            host: spec.host.clone(),
            subset: Some(subset.to_owned()),
            port: None,
        },
        weight: Some(weight),
    };
    let split = vec![
        to(&spec.stable, 100 - routing.canary_weight.min(100)),
        to(&spec.canary, routing.canary_weight.min(100)),
    ];
    let index = (config.virtual_services.iter()).position(|v| v.hosts.contains(&spec.host));
    let index = index.unwrap_or_else(|| {
        config.virtual_services.push(VirtualService {
            name: None,
            namespace: None,
            gateways: Vec::new(),
            hosts: vec![spec.host.clone()],
            http: vec![HttpRoute {
                route: split.clone(),
                ..HttpRoute::default()
            }],
        });
        config.virtual_services.len() - 1
    });
    let vs = &mut config.virtual_services[index];
    let forwarding = |r: &HttpRoute| r.redirect.is_none() && r.direct_response.is_none();
    let template = vs.http.iter().find(|r| forwarding(r)).cloned();
    for r in vs.http.iter_mut().filter(|r| forwarding(r)) {
        r.route = match routing.matched_only {
            true => vec![to(&spec.stable, 100)],
            false => split.clone(),
        };
        if let Some(percent) = routing.mirror {
            r.mirror = Some(Destination {
                host: spec.host.clone(),
                subset: Some(spec.canary.clone()),
                port: None,
            });
            r.mirror_percentage = Some(f64::from(percent));
            r.mirrors.clear();
        }
    }
    if routing.matched_only {
        let matches = spec.matches().to_vec();
        // The routes keep the report names they had (`host/<index>`) below the new rule.
        for (i, r) in vs.http.iter_mut().enumerate() {
            r.name.get_or_insert_with(|| i.to_string());
        }
        let mut rule = template.unwrap_or_default();
        rule.name = Some("canary-match".into());
        rule.matches = matches;
        rule.route = split;
        vs.http.insert(0, rule);
    }
    config
}

/// The scenario's first mesh config: its `mesh`, with the rollout's initial routing (all to
/// stable) when it has one.
pub fn initial_config(s: &Scenario) -> MeshConfig {
    match &s.rollout {
        Some(spec) => render(&s.mesh, spec, &rollout::Controller::new(spec).routing()),
        None => s.mesh.clone(),
    }
}

/// Which side of the rollout an instance of `service`'s `version` is on: the subset of the
/// host's DestinationRule whose labels the instance carries (`version: <version>`).
pub fn side_of(s: &Scenario, service: &str, version: &str) -> Option<Side> {
    let spec = s.rollout.as_ref()?;
    if service != spec.host {
        return None;
    }
    let rule = s
        .mesh
        .destination_rules
        .iter()
        .find(|d| d.host == spec.host)?;
    if selects(rule, &spec.canary, version) {
        Some(Side::Canary)
    } else if selects(rule, &spec.stable, version) {
        Some(Side::Stable)
    } else {
        None
    }
}

/// Whether `rule`'s subset `subset` selects the instances of `version` (labelled
/// `version: <version>`, as the topology labels them).
fn selects(rule: &DestinationRule, subset: &str, version: &str) -> bool {
    (rule.subsets.iter())
        .any(|x| x.name == subset && (x.labels.iter()).all(|(k, v)| k == "version" && v == version))
}

/// Each destination of `mesh` (by id) on its side of the rollout: what the callers' side of
/// the probe records hops to.
pub fn destination_sides(s: &Scenario, mesh: &CompiledMesh) -> Vec<Option<Side>> {
    (mesh.destinations().iter())
        .map(|d| side_of(s, &d.service, &d.version))
        .collect()
}

/// Each instance of `topology` (by number) on its side of the rollout.
pub fn instance_sides(s: &Scenario, topology: &Topology) -> Vec<Option<Side>> {
    (topology.instances.iter())
        .map(|i| side_of(s, i.service, i.version))
        .collect()
}

/// The registry once a side has scaled down: the scenario's first instances without that
/// side's, for [`Side::Stable`], [`Side::Canary`] and [`Side::Both`], in that order
/// (index with [`scaled_index`]).
pub fn scaled_registries(s: &Scenario, topology: &Topology) -> [Registry; 3] {
    let sides = instance_sides(s, topology);
    [Side::Stable, Side::Canary, Side::Both]
        .map(|gone| topology.initial_registry_where(|i| !sides[i].is_some_and(|x| gone.holds(x))))
}

/// Where `side`'s registry is in [`scaled_registries`].
pub fn scaled_index(side: Side) -> usize {
    match side {
        Side::Stable => 0,
        Side::Canary => 1,
        Side::Both => 2,
    }
}

/// What is wrong with a scenario's rollout block: (field, message).
pub fn problems(s: &Scenario) -> Option<(String, String)> {
    let spec = s.rollout.as_ref()?;
    if let Err(e) = spec.validate() {
        return Some((format!("rollout.{}", e.field), e.message));
    }
    if !s.timeline.is_empty() {
        return Some((
            "rollout".into(),
            "a scenario has either a `timeline` or a `rollout`, not both: the rollout's \
             controller owns the host's routes"
                .into(),
        ));
    }
    let Some(service) = s.services.get(&spec.host) else {
        let known: Vec<&str> = s.services.keys().map(String::as_str).collect();
        return Some((
            "rollout.host".into(),
            format!(
                "no service `{}` (services: {})",
                spec.host,
                known.join(", ")
            ),
        ));
    };
    let Some(rule) = s
        .mesh
        .destination_rules
        .iter()
        .find(|d| d.host == spec.host)
    else {
        return Some((
            "rollout.host".into(),
            format!(
                "the mesh has no DestinationRule for `{}`: define the subsets `{}` and `{}` \
                 in one",
                spec.host, spec.stable, spec.canary
            ),
        ));
    };
    for (field, subset) in [("stable", &spec.stable), ("canary", &spec.canary)] {
        if !rule.subsets.iter().any(|x| &x.name == subset) {
            let names: Vec<&str> = rule.subsets.iter().map(|x| x.name.as_str()).collect();
            return Some((
                format!("rollout.{field}"),
                format!(
                    "the DestinationRule for `{}` has no subset `{subset}` (subsets: {})",
                    spec.host,
                    names.join(", ")
                ),
            ));
        }
        if !(service.versions.keys()).any(|v| selects(rule, subset, v)) {
            return Some((
                format!("rollout.{field}"),
                format!(
                    "subset `{subset}` selects none of `{}`'s versions by their `version` label",
                    spec.host
                ),
            ));
        }
    }
    // Every routing the controller can ask for compiles if the widest one does.
    let widest = Routing {
        canary_weight: 50,
        mirror: Some(100),
        matched_only: !spec.matches().is_empty(),
    };
    let registry = crate::topology::Topology::of(s).registry();
    let mesh = match CompiledMesh::compile(&render(&s.mesh, spec, &widest), &registry) {
        Ok(mesh) => mesh,
        Err(e) => {
            return Some((
                "rollout".into(),
                format!("the mesh the rollout routes with: {e}"),
            ))
        }
    };
    for route in spec.routes() {
        if !mesh.routes().iter().any(|r| r.name == route) {
            let mut names: Vec<&str> = (mesh.routes().iter())
                .map(|r| r.name.as_str())
                .filter(|n| !n.contains('('))
                .collect();
            names.sort_unstable();
            names.dedup();
            return Some((
                "rollout".into(),
                format!(
                    "a metric reads route `{route}`, which the mesh does not have (routes, as \
                     the report names them: {})",
                    names.join(", ")
                ),
            ));
        }
    }
    if spec.start.0 >= s.duration.0 {
        return Some((
            "rollout.start".into(),
            format!(
                "{} is not before the load ends ({})",
                spec.start, s.duration
            ),
        ));
    }
    None
}
