//! The checks of the modeled services: versions' parameters, handler steps (calls to known
//! services, well-formed requests, probabilities, timeouts) and call cycles.

use super::{
    check_dist, check_headers, check_method, check_name, check_status, problem, unknown_service,
    Problem,
};
use crate::scenario::{CallStep, Scenario};
use std::collections::BTreeMap;

pub(super) fn check_service(
    s: &Scenario,
    name: &str,
    svc: &crate::scenario::Service,
) -> Result<(), Problem> {
    let at = format!("services.{name}");
    check_name(at.clone(), name, name)?;
    if svc.versions.is_empty() {
        return Err(problem(
            format!("{at}.versions"),
            "at least one version is required",
        ));
    }
    for (vname, v) in &svc.versions {
        let vat = format!("{at}.versions.{vname}");
        check_name(vat.clone(), vname, vname)?;
        if v.instances == 0 {
            return Err(problem(format!("{vat}.instances"), "must be at least 1"));
        }
        if v.workers == 0 {
            return Err(problem(format!("{vat}.workers"), "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&v.errors) {
            return Err(problem(
                format!("{vat}.errors"),
                format!(
                    "a probability between 0 and 1 is expected, found {}",
                    v.errors
                ),
            ));
        }
        check_status(format!("{vat}.error_status"), v.error_status)?;
        check_dist(format!("{vat}.latency"), &v.latency)?;
    }
    if svc.external && svc.all_steps().next().is_some() {
        return Err(problem(
            format!("{at}.calls"),
            "an external service has no sidecar, so it makes no calls in the twin",
        ));
    }
    check_steps(s, &format!("{at}.calls"), &svc.calls)?;
    for (vname, v) in &svc.versions {
        if let Some(steps) = &v.calls {
            check_steps(s, &format!("{at}.versions.{vname}.calls"), steps)?;
        }
    }
    Ok(())
}

/// A handler's steps: calls to known services with well-formed requests, a probability,
/// a timeout above 0; work with a valid distribution.
fn check_steps(s: &Scenario, at: &str, steps: &[CallStep]) -> Result<(), Problem> {
    for (i, step) in steps.iter().enumerate() {
        if let CallStep::Work(d) = step {
            check_dist(format!("{at}[{i}]"), d)?;
            continue;
        }
        let calls = step.calls();
        if calls.is_empty() {
            return Err(problem(
                format!("{at}[{i}]"),
                "a Parallel step needs at least one call",
            ));
        }
        for c in calls {
            if !s.services.contains_key(&c.host) {
                return Err(unknown_service(format!("{at}[{i}].host"), &c.host, s));
            }
            check_path(format!("{at}[{i}].path"), &c.path)?;
            check_method(format!("{at}[{i}].method"), &c.method)?;
            check_headers(&format!("{at}[{i}].headers"), &c.headers)?;
            if !(0.0..=1.0).contains(&c.probability) {
                return Err(problem(
                    format!("{at}[{i}].probability"),
                    format!(
                        "a probability between 0 and 1 is expected, found {}",
                        c.probability
                    ),
                ));
            }
            if c.timeout.is_some_and(|t| t.0 == 0) {
                return Err(problem(
                    format!("{at}[{i}].timeout"),
                    "must be above 0 (leave it out for no timeout)",
                ));
            }
            if c.retries > 100 {
                return Err(problem(
                    format!("{at}[{i}].retries"),
                    format!("at most 100 retries are supported, found {}", c.retries),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn check_path(field: String, path: &str) -> Result<(), Problem> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(problem(
            field,
            format!("a path starting with `/` is expected, found `{path}`"),
        ))
    }
}

/// A handler that (transitively) calls itself would never finish: reject call cycles.
pub(super) fn check_call_cycles(s: &Scenario) -> Result<(), Problem> {
    let callees = |name: &str| -> Vec<&str> {
        (s.services[name].all_steps())
            .flat_map(CallStep::calls)
            .map(|c| c.host.as_str())
            .collect()
    };
    // Depth-first with an explicit stack, so a call chain of any length cannot overflow the
    // thread's stack. 1 = on the stack, 2 = done; absent = unvisited.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for root in s.services.keys() {
        if state.contains_key(root.as_str()) {
            continue;
        }
        state.insert(root, 1);
        // Frames: a service, its callees and the index of the next callee to visit.
        let mut stack: Vec<(&str, Vec<&str>, usize)> = vec![(root, callees(root), 0)];
        while let Some((name, calls, next)) = stack.last_mut() {
            let Some(&callee) = calls.get(*next) else {
                state.insert(name, 2);
                stack.pop();
                continue;
            };
            *next += 1;
            match state.get(callee) {
                Some(2) => {}
                Some(_) => {
                    let mut cycle: Vec<&str> = stack.iter().map(|f| f.0).collect();
                    cycle.push(callee);
                    return Err(problem(
                        format!("services.{root}.calls"),
                        format!(
                            "call cycle {}: a handler that calls itself never finishes",
                            cycle.join(" -> ")
                        ),
                    ));
                }
                None => {
                    state.insert(callee, 1);
                    stack.push((callee, callees(callee), 0));
                }
            }
        }
    }
    Ok(())
}
