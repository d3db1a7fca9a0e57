//! Outlier detection (Envoy's consecutive-error detector as Istio configures it): per cluster,
//! per host, consecutive 5xx and gateway-error counters; ejection limited by
//! `maxEjectionPercent` with Envoy's `(ejected + 1) / hosts` rule; ejection time base × k, k
//! growing per ejection and decaying per healthy interval, capped at max(300 s, base); hosts
//! return only on interval ticks (Envoy `source/common/upstream/outlier_detection_impl.cc`;
//! Istio `pilot/pkg/networking/core/cluster_traffic_policy.go`).
//!
//! **Invariant:** `ejected` equals the number of hosts with `ejected_at` set, and
//! `100 · ejected ≤ max_ejection_percent · hosts` whenever a host is ejected — unless a reload
//! removed hosts (`remap`): hosts already ejected stay so until their time is up, as in Envoy,
//! and the limit holds again once enough have returned (`within_limit`).

use crate::policy::OutlierSpec;
use crate::registry::EndpointId;
use crate::time::{Nanos, Time};

/// A change of a host's ejection state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutlierChange {
    /// Host (index in the cluster) ejected.
    Ejected(usize),
    /// Host returned.
    Unejected(usize),
    /// An ejection was due but `max_ejection_percent` blocked it.
    Blocked(usize),
}

#[derive(Clone, Debug, Default)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_at: Option<Time>,
    /// The ejection multiplier k.
    backoff: u32,
    last_unejected: Option<Time>,
}

/// The outlier detector of one cluster in one proxy.
#[derive(Clone, Debug)]
pub(crate) struct Detector {
    spec: OutlierSpec,
    hosts: Vec<Host>,
    ejected: u32,
    /// The next interval tick, when armed.
    tick: Option<Time>,
    /// A reload removed hosts and left more ejected than the limit allows (until enough
    /// return).
    relaxed: bool,
}

impl Detector {
    /// A detector for a cluster of `hosts` hosts.
    pub(crate) fn new(spec: OutlierSpec, hosts: usize) -> Detector {
        Detector {
            spec,
            hosts: vec![Host::default(); hosts],
            ejected: 0,
            tick: None,
            relaxed: false,
        }
    }

    /// This detector for its cluster after a reload changed the hosts from `old` to `new`
    /// (endpoint ids in cluster order, both sorted by id, as clusters keep them): a host that
    /// stays keeps its counters, ejection and multiplier; a new host starts clean; a removed
    /// host's state is dropped.
    pub(crate) fn remap(&self, old: &[EndpointId], new: &[EndpointId]) -> Detector {
        let hosts: Vec<Host> = new
            .iter()
            .map(|id| {
                old.binary_search(id)
                    .ok()
                    .and_then(|i| self.hosts.get(i).cloned())
                    .unwrap_or_default()
            })
            .collect();
        let ejected = hosts.iter().filter(|h| h.ejected_at.is_some()).count() as u32;
        let mut d = Detector {
            spec: self.spec,
            hosts,
            ejected,
            tick: self.tick,
            relaxed: false,
        };
        d.relaxed = !d.fits();
        d
    }

    fn fits(&self) -> bool {
        let n = self.hosts.len() as u64;
        100 * u64::from(self.ejected) <= u64::from(self.spec.max_ejection_percent) * n
    }

    /// Whether the ejection limit holds: `100 · ejected ≤ max_ejection_percent · hosts`, or
    /// every ejection predates a reload that removed hosts (see the module invariant).
    pub(crate) fn within_limit(&self) -> bool {
        self.relaxed || self.fits()
    }

    /// Its configuration.
    pub(crate) fn spec(&self) -> &OutlierSpec {
        &self.spec
    }

    /// Hosts currently ejected.
    pub(crate) fn ejected(&self) -> u32 {
        self.ejected
    }

    /// Whether host `i` is ejected.
    pub(crate) fn is_ejected(&self, i: usize) -> bool {
        self.hosts.get(i).is_some_and(|h| h.ejected_at.is_some())
    }

    /// Whether the cluster is in panic: the healthy share is below `min_health_percent`, so
    /// the balancer ignores ejections.
    pub(crate) fn panic(&self) -> bool {
        let n = self.hosts.len() as u64;
        let healthy = n - u64::from(self.ejected);
        n > 0 && healthy * 100 < u64::from(self.spec.min_health_percent) * n
    }

    /// The next tick the proxy must deliver to `tick`, if armed.
    pub(crate) fn next_tick(&self) -> Option<Time> {
        self.tick
    }

    /// Records a result of host `i`: an HTTP status, or a local-origin failure already mapped
    /// to one (connect failure or reset → 503, timeout → 504). Returns an ejection change and
    /// whether a tick was newly armed.
    pub(crate) fn record(
        &mut self,
        now: Time,
        i: usize,
        status: u16,
    ) -> (Option<OutlierChange>, bool) {
        let spec = self.spec;
        let Some(h) = self.hosts.get_mut(i) else {
            return (None, false);
        };
        if status < 500 {
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
            return (None, false);
        }
        if matches!(status, 502..=504) {
            h.consecutive_gateway += 1;
        } else {
            h.consecutive_gateway = 0;
        }
        h.consecutive_5xx += 1;
        let fired_5xx = spec.consecutive_5xx > 0 && h.consecutive_5xx == spec.consecutive_5xx;
        let fired_gw =
            spec.consecutive_gateway > 0 && h.consecutive_gateway == spec.consecutive_gateway;
        if !(fired_5xx || fired_gw) {
            return (None, false);
        }
        // The counter that fired is reset, ejected or not.
        if fired_5xx {
            h.consecutive_5xx = 0;
        }
        if fired_gw {
            h.consecutive_gateway = 0;
        }
        if h.ejected_at.is_some() {
            return (None, false);
        }
        let n = self.hosts.len() as u64;
        if 100 * (u64::from(self.ejected) + 1) > u64::from(spec.max_ejection_percent) * n {
            return (Some(OutlierChange::Blocked(i)), false);
        }
        let h = &mut self.hosts[i];
        h.ejected_at = Some(now);
        let base = spec.base_ejection.0;
        if u64::from(h.backoff) * base < spec.max_ejection.0 + base {
            h.backoff += 1;
        }
        self.ejected += 1;
        let armed = self.arm(now);
        (Some(OutlierChange::Ejected(i)), armed)
    }

    /// Arms the tick at the next multiple of the interval (ticks run on a fixed grid from the
    /// proxy's time zero, as Envoy's interval timer does from its start). True if newly armed.
    fn arm(&mut self, now: Time) -> bool {
        if self.tick.is_some() {
            return false;
        }
        let iv = self.spec.interval.0;
        self.tick = Some(Time((now.0 / iv + 1) * iv));
        true
    }

    /// The interval tick at `at`: hosts whose ejection time has passed return; healthy hosts'
    /// multipliers decay. Re-arms while any host is ejected or has a multiplier left.
    pub(crate) fn tick(&mut self, at: Time) -> Vec<OutlierChange> {
        if self.tick != Some(at) {
            return Vec::new(); // stale
        }
        let spec = self.spec;
        let mut changes = Vec::new();
        let mut busy = false;
        for (i, h) in self.hosts.iter_mut().enumerate() {
            match h.ejected_at {
                Some(since) => {
                    let length =
                        (spec.base_ejection.0 * u64::from(h.backoff)).min(spec.max_ejection.0);
                    if at.since(since) >= Nanos(length) {
                        h.ejected_at = None;
                        h.consecutive_5xx = 0;
                        h.consecutive_gateway = 0;
                        h.last_unejected = Some(at);
                        self.ejected -= 1;
                        changes.push(OutlierChange::Unejected(i));
                    }
                }
                None => {
                    let quiet = h
                        .last_unejected
                        .is_none_or(|t| at.since(t) >= spec.interval);
                    if h.backoff > 0 && quiet {
                        h.backoff -= 1;
                    }
                }
            }
            busy |= h.ejected_at.is_some() || h.backoff > 0;
        }
        self.tick = busy.then(|| at + spec.interval);
        self.relaxed &= !self.fits();
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OutlierSpec {
        OutlierSpec {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            interval: Nanos::from_secs(10),
            base_ejection: Nanos::from_secs(30),
            max_ejection: Nanos::from_secs(300),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }

    #[test]
    fn fifth_consecutive_5xx_ejects_and_tick_returns_after_base() {
        let mut d = Detector::new(spec(), 10);
        for k in 0..4 {
            assert_eq!(d.record(Time(k), 3, 500).0, None);
        }
        let (change, armed) = d.record(Time::ZERO + Nanos::from_secs(1), 3, 503);
        assert_eq!(change, Some(OutlierChange::Ejected(3)));
        assert!(armed);
        assert_eq!(d.next_tick(), Some(Time::ZERO + Nanos::from_secs(10)));
        // Ticks at 10, 20, 30 keep it out; at 40 s, 39 s after ejection ≥ 30 s, it returns.
        for s in [10, 20, 30] {
            assert!(
                d.tick(Time::ZERO + Nanos::from_secs(s)).is_empty(),
                "tick {s}"
            );
        }
        assert_eq!(
            d.tick(Time::ZERO + Nanos::from_secs(40)),
            vec![OutlierChange::Unejected(3)]
        );
        assert_eq!(d.ejected(), 0);
    }

    #[test]
    fn ten_percent_of_fewer_than_ten_hosts_ejects_nothing() {
        let mut d = Detector::new(spec(), 9);
        let mut last = None;
        for _ in 0..5 {
            last = d.record(Time(1), 0, 500).0;
        }
        assert_eq!(last, Some(OutlierChange::Blocked(0)));
        assert_eq!(d.ejected(), 0);
    }

    #[test]
    fn success_resets_and_gateway_counts_separately() {
        let mut s = spec();
        s.consecutive_gateway = 2;
        s.max_ejection_percent = 100;
        let mut d = Detector::new(s, 2);
        d.record(Time(1), 0, 502);
        d.record(Time(2), 0, 200);
        assert_eq!(d.record(Time(3), 0, 502).0, None);
        assert_eq!(d.record(Time(4), 0, 504).0, Some(OutlierChange::Ejected(0)));
    }

    #[test]
    fn below_min_health_the_cluster_panics() {
        let mut s = spec();
        s.max_ejection_percent = 100;
        s.min_health_percent = 60;
        let mut d = Detector::new(s, 2);
        assert!(!d.panic());
        for _ in 0..5 {
            d.record(Time(1), 0, 500);
        }
        assert_eq!(d.ejected(), 1);
        assert!(
            d.panic(),
            "50 % healthy < 60 %: the balancer ignores ejections"
        );
    }

    #[test]
    fn ejection_time_grows_with_repeat_ejections() {
        let mut s = spec();
        s.max_ejection_percent = 100;
        let mut d = Detector::new(s, 1);
        let sec = |n| Time::ZERO + Nanos::from_secs(n);
        for _ in 0..5 {
            d.record(sec(0), 0, 500);
        }
        assert!(d.tick(sec(10)).is_empty());
        assert!(d.tick(sec(20)).is_empty());
        assert_eq!(d.tick(sec(30)), vec![OutlierChange::Unejected(0)]);
        for _ in 0..5 {
            d.record(sec(31), 0, 500);
        }
        // k = 2 now: out for 60 s, so back at the first tick ≥ 91 s: 100 s.
        assert!(d.tick(sec(40)).is_empty());
        for t in [50, 60, 70, 80, 90] {
            assert!(d.tick(sec(t)).is_empty(), "tick {t}");
        }
        assert_eq!(d.tick(sec(100)), vec![OutlierChange::Unejected(0)]);
    }
}
