//! Instances over time: the timeline's `Scale`, `AddVersion` and `RemoveVersion` changes
//! create and remove instances the way a Deployment's replicas change. Every instance that
//! ever exists is known from the start (so both drivers build its sidecar and its RNG streams
//! once, and its name is stable); an instance is in the service's endpoints from when it is
//! ready until it is removed, and serves until the end of its drain.
//!
//! New instances take the next indices of their version (as new pods get new names: an
//! index is never reused); a scale-down removes the newest instances first.

use crate::dist::Dist;
use crate::scenario::{Change, Scenario, Version};
use proxy_engine::{Nanos, Time};
use std::collections::BTreeMap;

/// One instance's life.
#[derive(Clone, Debug)]
pub struct Life<'a> {
    /// Service name.
    pub service: &'a str,
    /// Version name.
    pub version: &'a str,
    /// Index within the version.
    pub index: u32,
    /// The version's model.
    pub model: &'a Version,
    /// When it was created (0 for the scenario's own instances).
    pub created: Time,
    /// Its time to become ready, drawn per instance (`None`: ready when created).
    pub startup: Option<&'a Dist>,
    /// When it leaves the endpoints, and how long it drains after that.
    pub removed: Option<(Time, Nanos)>,
}

impl Life<'_> {
    /// Stable component name, used to derive RNG streams: `service/version/index`.
    pub fn name(&self) -> String {
        format!("{}/{}/{}", self.service, self.version, self.index)
    }

    /// When it stops serving: the end of its drain (`None`: it serves to the end).
    pub fn stops(&self) -> Option<Time> {
        self.removed.map(|(at, grace)| at + grace)
    }
}

/// Every instance of `s` over the run, in the stable order (service, version, index).
pub fn lives(s: &Scenario) -> Vec<Life<'_>> {
    // (service, version) → the model and every life so far, by index.
    let mut versions: BTreeMap<(&str, &str), (&Version, Vec<Life<'_>>)> = BTreeMap::new();
    for (service, svc) in &s.services {
        for (version, model) in &svc.versions {
            let lives = (0..model.instances)
                .map(|index| Life {
                    service,
                    version,
                    index,
                    model,
                    created: Time::ZERO,
                    startup: None,
                    removed: None,
                })
                .collect();
            versions.insert((service, version), (model, lives));
        }
    }
    for entry in &s.timeline {
        let at = Time(entry.at.0);
        match &entry.change {
            Change::AddVersion {
                service,
                version,
                spec,
                startup,
            } => {
                let key = (service.as_str(), version.as_str());
                let (_, lives) = versions.entry(key).or_insert((spec, Vec::new()));
                scale(
                    lives,
                    key,
                    spec,
                    at,
                    spec.instances,
                    Some(startup),
                    Nanos::ZERO,
                );
            }
            Change::Scale {
                service,
                version,
                instances,
                startup,
                grace,
            } => {
                let key = (service.as_str(), version.as_str());
                if let Some((model, lives)) = versions.get_mut(&key) {
                    let model: &Version = model;
                    scale(lives, key, model, at, *instances, Some(startup), *grace);
                }
            }
            Change::RemoveVersion {
                service,
                version,
                grace,
            } => {
                if let Some((model, lives)) =
                    versions.get_mut(&(service.as_str(), version.as_str()))
                {
                    let model: &Version = model;
                    let key = (service.as_str(), version.as_str());
                    scale(lives, key, model, at, 0, None, *grace);
                }
            }
            _ => {}
        }
    }
    versions
        .into_values()
        .flat_map(|(_, lives)| lives)
        .collect()
}

/// Brings the version's live instances to `count` at `at`: new ones appended, the newest
/// removed.
fn scale<'a>(
    lives: &mut Vec<Life<'a>>,
    (service, version): (&'a str, &'a str),
    model: &'a Version,
    at: Time,
    count: u32,
    startup: Option<&'a Dist>,
    grace: Nanos,
) {
    let live: Vec<usize> = (0..lives.len())
        .filter(|i| lives[*i].removed.is_none())
        .collect();
    let n = live.len() as u32;
    if count > n {
        for _ in n..count {
            let index = lives.len() as u32;
            lives.push(Life {
                service,
                version,
                index,
                model,
                created: at,
                startup,
                removed: None,
            });
        }
    } else {
        for i in live.iter().rev().take((n - count) as usize) {
            lives[*i].removed = Some((at, grace));
        }
    }
}

/// When each of `lives` is ready in a run seeded with `seed` (`None`: removed before it
/// ever was): created plus its own startup draw (stream `startup/<instance>`).
pub fn ready_times(lives: &[Life<'_>], seed: u64) -> Vec<Option<Time>> {
    (lives.iter())
        .map(|l| {
            let ready = match l.startup {
                None => l.created,
                Some(d) => {
                    let stream = format!("startup/{}", l.name());
                    l.created + d.sample(&mut crate::rng::stream(seed, &stream))
                }
            };
            match l.removed {
                Some((at, _)) if at <= ready => None,
                _ => Some(ready),
            }
        })
        .collect()
}
