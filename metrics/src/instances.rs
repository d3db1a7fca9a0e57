//! Per-instance figures: requests, successes, latency and outlier ejections of each endpoint,
//! so the one bad instance of a service is visible by name.
//!
//! A hop is counted at the endpoint of its last attempt (the one that answered), with the hop's
//! latency, as the destination table counts it. Ejections are per detecting proxy (each caller's
//! sidecar runs its own outlier detector, as Envoy's do): `ejected_ns` sums, over the proxies
//! that ejected the host, the time it stayed ejected.
//!
//! State is allocated for an endpoint when it is first seen, so a mesh of many endpoints costs
//! only for the ones traffic reached.

use crate::latency::WindowLatency;
use proxy_engine::mesh::CompiledMesh;
use proxy_engine::registry::EndpointId;
use proxy_engine::time::{Nanos, Time};
use proxy_engine::types::{EngineEvent, Outcome};
use std::collections::BTreeMap;

/// One instance's figures.
#[derive(Clone, Debug, Default)]
pub struct InstanceStats {
    /// Hops whose last attempt went to this instance.
    pub requests: u64,
    /// Of those, the successes (status below 500).
    pub success: u64,
    /// Their latency, nanoseconds, 2 significant digits.
    pub latency: WindowLatency,
    /// Times some proxy ejected this instance.
    pub ejections: u64,
    /// Nanoseconds this instance spent ejected, summed over the proxies that ejected it.
    pub ejected_ns: u64,
}

impl InstanceStats {
    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: &InstanceStats) {
        self.requests += other.requests;
        self.success += other.success;
        self.latency.merge(&other.latency);
        self.ejections += other.ejections;
        self.ejected_ns += other.ejected_ns;
    }
}

/// Per-endpoint figures of one recorder, by endpoint id.
#[derive(Clone, Debug, Default)]
pub struct InstanceTable {
    /// Indexed by endpoint id; `None` until the endpoint is first seen.
    stats: Vec<Option<Box<InstanceStats>>>,
    /// When each (proxy, cluster, endpoint) ejection began, for those not yet returned.
    ejected_since: BTreeMap<(u32, u32, u32), Time>,
    /// The latest time an event was seen (where open ejections end if the run does not say).
    last: Time,
}

impl InstanceTable {
    fn slot(&mut self, e: EndpointId) -> &mut InstanceStats {
        let i = e.0 as usize;
        if self.stats.len() <= i {
            self.stats.resize_with(i + 1, || None);
        }
        self.stats[i].get_or_insert_with(Box::default)
    }

    /// A hop's outcome: counted at its last attempt's endpoint, if it had one.
    pub fn record(&mut self, outcome: &Outcome, latency: Nanos) {
        let Some(e) = outcome.endpoint else {
            return;
        };
        let s = self.slot(e);
        s.requests += 1;
        s.success += u64::from(outcome.is_success());
        s.latency.record(latency.0);
    }

    /// An engine event of proxy `proxy` at `now`: ejections start and end per proxy.
    pub fn record_event(&mut self, proxy: u32, now: Time, event: &EngineEvent) {
        self.last = self.last.max(now);
        match *event {
            EngineEvent::Ejected { cluster, endpoint } => {
                self.slot(endpoint).ejections += 1;
                self.ejected_since
                    .insert((proxy, cluster.0, endpoint.0), now);
            }
            EngineEvent::Unejected { cluster, endpoint } => {
                if let Some(since) = self.ejected_since.remove(&(proxy, cluster.0, endpoint.0)) {
                    self.slot(endpoint).ejected_ns += now.since(since).0;
                }
            }
            _ => {}
        }
    }

    /// Closes the ejections still open at `end` (the end of the run).
    pub fn end_at(&mut self, end: Time) {
        self.last = self.last.max(end);
        let open = std::mem::take(&mut self.ejected_since);
        for ((_, _, endpoint), since) in open {
            let span = self.last.since(since).0;
            self.slot(EndpointId(endpoint)).ejected_ns += span;
        }
    }

    /// Adds `other`'s figures (same mesh) to these.
    pub fn merge(&mut self, other: &InstanceTable) {
        for (i, s) in other.stats.iter().enumerate() {
            if let Some(s) = s {
                self.slot(EndpointId(i as u32)).merge(s);
            }
        }
        for (&key, &since) in &other.ejected_since {
            self.ejected_since.entry(key).or_insert(since);
        }
        self.last = self.last.max(other.last);
    }

    /// The figures by stable instance name (`service/version/k`, k counting the version's
    /// endpoints in registry order; `service/version/ADDR` for a socket endpoint), sorted.
    pub fn finish(mut self, mesh: &CompiledMesh) -> Vec<(String, InstanceStats)> {
        let last = self.last;
        self.end_at(last);
        let names: Vec<&str> = mesh.endpoints().iter().map(|e| &*e.name).collect();
        let mut out: Vec<(String, InstanceStats)> = self
            .stats
            .into_iter()
            .enumerate()
            .filter_map(|(i, s)| Some(((*names.get(i)?).to_owned(), *s?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_engine::mesh::ClusterId;

    #[test]
    fn ejected_time_is_summed_per_detecting_proxy_and_closed_at_the_end() {
        let mut t = InstanceTable::default();
        let (c, e) = (ClusterId(0), EndpointId(3));
        let secs = |s: u64| Time(s * 1_000_000_000);
        t.record_event(
            0,
            secs(10),
            &EngineEvent::Ejected {
                cluster: c,
                endpoint: e,
            },
        );
        t.record_event(
            1,
            secs(12),
            &EngineEvent::Ejected {
                cluster: c,
                endpoint: e,
            },
        );
        t.record_event(
            0,
            secs(40),
            &EngineEvent::Unejected {
                cluster: c,
                endpoint: e,
            },
        );
        // Proxy 1's ejection is still open at the end (50 s): 30 s + 38 s.
        t.end_at(secs(50));
        let s = t.slot(e);
        assert_eq!((s.ejections, s.ejected_ns), (2, 68_000_000_000));
    }
}
