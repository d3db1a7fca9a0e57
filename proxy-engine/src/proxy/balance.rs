//! Balancing: the weighted cluster pick, the load balancer over a cluster's non-ejected hosts
//! (panic mode aside), mirror targets, and what feeds and reports the outlier detectors.

use super::*;

impl Proxy {
    /// Weighted pick: `rand % total` over the cumulative list, as Envoy does. `None` is an
    /// undefined subset.
    pub(super) fn pick_cluster(
        &mut self,
        clusters: &[crate::mesh::WeightedCluster],
    ) -> Option<ClusterId> {
        self.pick_cluster_with(clusters, None)
    }

    /// The weighted pick with the draw fixed to `dice % total` when `dice` is given (Envoy
    /// `router_check_tool`'s `random_value`), from the RNG otherwise.
    pub(super) fn pick_cluster_with(
        &mut self,
        clusters: &[crate::mesh::WeightedCluster],
        dice: Option<u64>,
    ) -> Option<ClusterId> {
        if let [only] = clusters {
            return only.cluster;
        }
        // Compilation guarantees a non-empty list with a positive total.
        let total = clusters.last().map_or(1, |c| c.cumulative).max(1);
        let draw = match dice {
            Some(d) => (d % u64::from(total)) as u32,
            None => self.rng.gen_range(0..total),
        };
        let i = clusters.partition_point(|c| c.cumulative <= draw);
        clusters.get(i).and_then(|c| c.cluster)
    }

    /// The cluster's load balancer picks an endpoint among hosts not ejected (all hosts in
    /// panic); `None` when there is none.
    pub(super) fn pick_endpoint(
        &mut self,
        config: &CompiledMesh,
        cluster: ClusterId,
        head: &RequestHead,
    ) -> Option<EndpointId> {
        let c = config.clusters().get(cluster.0 as usize)?;
        let i = cluster.0 as usize;
        if self.rr.len() <= i {
            self.rr.resize(i + 1, None);
        }
        let active = &self.active;
        let load = |e: EndpointId| active.get(e.0 as usize).copied().unwrap_or(0);
        let rr = &mut self.rr[i];
        // A detector is only consulted while the cluster is the same in the current mesh.
        let same = std::ptr::eq(config, &*self.config);
        let detector = self
            .outliers
            .get(cluster.0 as usize)
            .and_then(Option::as_ref)
            .filter(|d| same && d.ejected() > 0 && !d.panic());
        let Some(d) = detector else {
            return pick(c, head, &mut self.rng, rr, load);
        };
        if matches!(c.lb, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }) {
            // The hash picks on the full ring; an ejected host passes to the next healthy one.
            let n = c.endpoints.len();
            let first = c.lb.pick(n, head, &mut self.rng, rr, |_| 0);
            return (0..n)
                .map(|k| (first + k) % n)
                .find(|&i| !d.is_ejected(i))
                .map(|i| c.endpoints[i]);
        }
        let healthy: Vec<EndpointId> = c
            .endpoints
            .iter()
            .enumerate()
            .filter(|(i, _)| !d.is_ejected(*i))
            .map(|(_, e)| *e)
            .collect();
        if healthy.is_empty() {
            return None;
        }
        let i =
            c.lb.pick(healthy.len(), head, &mut self.rng, rr, |i| load(healthy[i]));
        Some(healthy[i])
    }

    /// Whether `mirror` takes a copy of this request, and where it goes (cluster and host).
    /// Uses the mirror stream and a throwaway round-robin cursor, so the primary's picks are
    /// untouched.
    pub(super) fn pick_mirror(
        &mut self,
        config: &CompiledMesh,
        mirror: &Mirror,
        head: &RequestHead,
    ) -> Option<(ClusterId, EndpointId)> {
        let cluster = mirror.cluster?;
        if !chance(&mut self.mirror_rng, mirror.ppm) {
            return None;
        }
        let c = config.clusters().get(cluster.0 as usize)?;
        let active = &self.active;
        let endpoint = pick(c, head, &mut self.mirror_rng, &mut None, |e| {
            active.get(e.0 as usize).copied().unwrap_or(0)
        })?;
        Some((cluster, endpoint))
    }

    /// Feeds an upstream result of `endpoint` to its cluster's outlier detector (made at the
    /// cluster's first result, when it has `outlier_detection`).
    pub(super) fn outlier_result(&mut self, cluster: ClusterId, endpoint: EndpointId, status: u16) {
        let Some(c) = self.config.clusters().get(cluster.0 as usize) else {
            return;
        };
        let Some(spec) = c.outlier else {
            return;
        };
        let i = cluster.0 as usize;
        if self.outliers.len() <= i {
            self.outliers.resize_with(i + 1, || None);
        }
        let d = self.outliers[i]
            .get_or_insert_with(|| Box::new(Detector::new(spec, c.endpoints.len())));
        let Ok(i) = c.endpoints.binary_search(&endpoint) else {
            return;
        };
        let (change, armed) = d.record(self.now, i, status);
        if armed {
            if let Some(at) = d.next_tick() {
                self.timers.at(at, Timer::Outlier(cluster));
            }
        }
        if let Some(change) = change {
            self.outlier_event(cluster, change);
        }
    }

    pub(super) fn outlier_event(&mut self, cluster: ClusterId, change: OutlierChange) {
        let Some(c) = self.config.clusters().get(cluster.0 as usize) else {
            return;
        };
        let host = |i: usize| c.endpoints.get(i).copied();
        let event = match change {
            OutlierChange::Ejected(i) => {
                host(i).map(|endpoint| EngineEvent::Ejected { cluster, endpoint })
            }
            OutlierChange::Unejected(i) => {
                host(i).map(|endpoint| EngineEvent::Unejected { cluster, endpoint })
            }
            OutlierChange::Blocked(i) => {
                host(i).map(|endpoint| EngineEvent::EjectionOverflow { cluster, endpoint })
            }
        };
        let Some(event) = event else { return };
        self.actions.push_back(Action::Event(event));
    }
}

/// True with probability `ppm` / 1 000 000; no draw for 0 % or 100 %.
pub(super) fn chance(rng: &mut ChaCha8Rng, ppm: u32) -> bool {
    match ppm {
        0 => false,
        1_000_000.. => true,
        p => rng.gen_range(0..1_000_000) < p,
    }
}

/// The cluster's load balancer picks an endpoint; `None` when the cluster is empty.
pub(super) fn pick(
    c: &Cluster,
    head: &RequestHead,
    rng: &mut ChaCha8Rng,
    rr: &mut Option<u32>,
    active: impl Fn(EndpointId) -> u32,
) -> Option<EndpointId> {
    if c.endpoints.is_empty() {
        return None;
    }
    let i =
        c.lb.pick(c.endpoints.len(), head, rng, rr, |i| active(c.endpoints[i]));
    Some(c.endpoints[i])
}
