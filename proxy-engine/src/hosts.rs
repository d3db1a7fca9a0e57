//! Kubernetes names of modeled services. Istio writes hosts as fully qualified names
//! (`reviews.default.svc.cluster.local`; a short name is expanded with the config object's
//! namespace); meshtwin's services have one short name each and no namespace. So a host
//! `<service>.<namespace>.svc.cluster.local` whose first label is a modeled service names that
//! service, whatever the namespace, and `shorten` rewrites such hosts to the short name once,
//! when a config is loaded, so routes, rules and reports use one name per service.

use crate::config::MeshConfig;

/// The suffix of a Kubernetes service's fully qualified name.
pub const CLUSTER_SUFFIX: &str = ".svc.cluster.local";

/// The service a host names: `host` itself, or the first label of a
/// `<name>.<namespace>.svc.cluster.local` name when `is_service(name)`.
pub fn service_name<'h>(host: &'h str, is_service: &dyn Fn(&str) -> bool) -> Option<&'h str> {
    if is_service(host) {
        return Some(host);
    }
    let lower = host.len() > CLUSTER_SUFFIX.len()
        && host.is_char_boundary(host.len() - CLUSTER_SUFFIX.len())
        && host[host.len() - CLUSTER_SUFFIX.len()..].eq_ignore_ascii_case(CLUSTER_SUFFIX);
    if !lower {
        return None;
    }
    let stem = &host[..host.len() - CLUSTER_SUFFIX.len()];
    let (name, namespace) = stem.split_once('.')?;
    if namespace.is_empty() || namespace.contains('.') || !is_service(name) {
        return None;
    }
    Some(name)
}

/// Rewrites every host of `config` that names a modeled service by its fully qualified name
/// to the service's short name: virtual service hosts, route, mirror and rule hosts, and
/// service entry hosts.
pub fn shorten(config: &mut MeshConfig, is_service: &dyn Fn(&str) -> bool) {
    let fix = |host: &mut String| {
        if let Some(name) = service_name(host, is_service) {
            if name.len() != host.len() {
                *host = name.to_owned();
            }
        }
    };
    for vs in &mut config.virtual_services {
        vs.hosts.iter_mut().for_each(fix);
        for route in &mut vs.http {
            for d in &mut route.route {
                fix(&mut d.destination.host);
            }
            if let Some(m) = &mut route.mirror {
                fix(&mut m.host);
            }
            for m in &mut route.mirrors {
                fix(&mut m.destination.host);
            }
        }
    }
    for dr in &mut config.destination_rules {
        fix(&mut dr.host);
    }
    for se in &mut config.service_entries {
        se.hosts.iter_mut().for_each(fix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fully_qualified_service_name_is_the_service() {
        let known = |h: &str| h == "reviews";
        assert_eq!(service_name("reviews", &known), Some("reviews"));
        assert_eq!(
            service_name("reviews.default.svc.cluster.local", &known),
            Some("reviews")
        );
        assert_eq!(
            service_name("reviews.bookinfo.SVC.cluster.local", &known),
            Some("reviews")
        );
        // Istio treats a name with a dot as qualified: `reviews.default` is not the service.
        assert_eq!(service_name("reviews.default", &known), None);
        assert_eq!(
            service_name("ratings.default.svc.cluster.local", &known),
            None
        );
        assert_eq!(service_name("a.b.c.svc.cluster.local", &known), None);
    }
}
