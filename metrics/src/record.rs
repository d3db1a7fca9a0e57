//! Streaming run metrics shared by both drivers: counts by status and flag, hdrhistogram
//! latencies, and per-window time series. Nothing is stored per request, so memory does not
//! grow with the number of requests.

use crate::series::TimeSeries;
use proxy_engine::time::{Nanos, Time};
use proxy_engine::types::{EngineEvent, Outcome, ResponseFlags};

/// Largest latency a histogram tracks exactly: one hour. Larger values are clamped to it.
pub const LATENCY_MAX_NS: u64 = 3_600_000_000_000;

/// Outcome counts and a latency histogram for one slice of traffic.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Requests completed.
    pub count: u64,
    /// Requests that succeeded (see `Outcome::is_success`).
    pub success: u64,
    /// Count per final status code (0 = no response), sorted by status.
    pub by_status: Vec<(u16, u64)>,
    /// Count per response flag bit, indexed like `ResponseFlags::ALL`.
    pub by_flag: Vec<u64>,
    /// Latency in nanoseconds, 3 significant digits (sparse while it holds few values).
    pub latency: crate::latency::StatsLatency,
    /// Exact sum of latencies, nanoseconds (the histogram's mean is only approximate).
    pub latency_sum_ns: u128,
    /// Requests per number of upstream attempts (index = attempts; 0 = answered locally).
    pub by_attempts: Vec<u64>,
    /// Upstream attempts in total.
    pub attempts: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            count: 0,
            success: 0,
            by_status: Vec::new(),
            by_flag: vec![0; ResponseFlags::ALL.len()],
            latency: crate::latency::StatsLatency::default(),
            latency_sum_ns: 0,
            by_attempts: Vec::new(),
            attempts: 0,
        }
    }
}

impl Stats {
    /// Records one outcome with its latency.
    pub fn record(&mut self, outcome: &Outcome, latency: Nanos) {
        self.count += 1;
        if outcome.is_success() {
            self.success += 1;
        }
        bump(&mut self.by_status, outcome.status, 1);
        if !outcome.flags.is_empty() {
            for (i, (flag, _)) in ResponseFlags::ALL.iter().enumerate() {
                if outcome.flags.contains(*flag) {
                    self.by_flag[i] += 1;
                }
            }
        }
        self.latency.record(latency.0);
        self.latency_sum_ns += u128::from(latency.0);
        let n = outcome.attempts as usize;
        if self.by_attempts.len() <= n {
            self.by_attempts.resize(n + 1, 0);
        }
        self.by_attempts[n] += 1;
        self.attempts += u64::from(outcome.attempts);
    }

    /// Upstream attempts per request (retry amplification; 0 when empty).
    pub fn amplification(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.attempts as f64 / self.count as f64
        }
    }

    /// Exact mean latency, nanoseconds (0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.latency_sum_ns as f64 / self.count as f64
        }
    }

    /// Flags with a non-zero count, as (short name, count), in flag order.
    pub fn flags(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ResponseFlags::ALL
            .iter()
            .zip(&self.by_flag)
            .filter(|(_, n)| **n > 0)
            .map(|((_, name), n)| (*name, *n))
    }
}

/// Adds `n` to the count of `key` in a sorted sparse count list.
pub(crate) fn bump<K: Ord + Copy>(counts: &mut Vec<(K, u64)>, key: K, n: u64) {
    match counts.binary_search_by_key(&key, |e| e.0) {
        Ok(i) => counts[i].1 += n,
        Err(i) => counts.insert(i, (key, n)),
    }
}

/// Counts of resilience events (Envoy's cluster stats of the same names in brackets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Retries scheduled (`upstream_rq_retry`).
    pub retries: u64,
    /// Retries refused by `maxRetries` or the budget (`upstream_rq_retry_overflow`).
    pub retry_overflows: u64,
    /// Circuit-breaker overflows, 503 `UO` (`upstream_rq_pending_overflow`).
    pub overflows: u64,
    /// Hosts ejected (`ejections_enforced_total`).
    pub ejections: u64,
    /// Ejected hosts returned.
    pub unejections: u64,
    /// Ejections blocked by `maxEjectionPercent` (`ejections_overflow`).
    pub ejection_overflows: u64,
}

impl EventCounts {
    /// Counts one event.
    pub fn record(&mut self, event: &EngineEvent) {
        let slot = match event {
            EngineEvent::Retry { .. } => &mut self.retries,
            EngineEvent::RetryOverflow { .. } => &mut self.retry_overflows,
            EngineEvent::Overflow { .. } => &mut self.overflows,
            EngineEvent::Ejected { .. } => &mut self.ejections,
            EngineEvent::Unejected { .. } => &mut self.unejections,
            EngineEvent::EjectionOverflow { .. } => &mut self.ejection_overflows,
        };
        *slot += 1;
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &EventCounts) {
        self.retries += other.retries;
        self.retry_overflows += other.retry_overflows;
        self.overflows += other.overflows;
        self.ejections += other.ejections;
        self.unejections += other.unejections;
        self.ejection_overflows += other.ejection_overflows;
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == EventCounts::default()
    }
}

/// Everything a run measured: what reports are made from.
#[derive(Clone, Debug)]
pub struct RunMetrics {
    /// Requests the workload generated.
    pub generated: u64,
    /// Requests a live load generator did not send: due when every connection was busy and
    /// its connection limit reached (k6's `dropped_iterations`). Not part of `generated`;
    /// always 0 in the simulator.
    pub dropped: u64,
    /// Client requests that succeeded although a hop inside the mesh failed on their way
    /// (answered 4xx, 5xx or not at all; a retry absorbed it or the caller ignored it); `None`
    /// where the driver cannot follow a request across hops.
    pub absorbed: Option<u64>,
    /// End-to-end outcomes as the clients saw them.
    pub totals: Stats,
    /// End-to-end outcomes per workload (by name, in the scenario's order); they add up to
    /// `totals`. Empty where the driver does not tell workloads apart.
    pub workloads: Vec<(String, Stats)>,
    /// Per route (name → stats) at every hop, sorted by name.
    pub routes: Vec<(String, Stats)>,
    /// Per destination (`service/version` → stats) at every hop, sorted by name; latency is
    /// the hop's, as the calling proxy saw it.
    pub destinations: Vec<(String, Stats)>,
    /// Per cluster (`service` or `service|subset` → stats) at every hop, sorted by name.
    pub clusters: Vec<(String, Stats)>,
    /// Mirrored copies per destination (`service/version`), sorted by name: what the mirror
    /// target answered and how long it took. Never part of `totals`.
    pub mirrors: Vec<(String, Stats)>,
    /// End-to-end time series (and resilience events by the window they happened in).
    pub series: TimeSeries,
    /// Resilience events per cluster (`service` or `service|subset`), clusters with any,
    /// sorted by name.
    pub events: Vec<(String, EventCounts)>,
    /// Per instance (`service/version/k`), instances traffic reached, sorted by name.
    pub instances: Vec<(String, crate::instances::InstanceStats)>,
    /// The rollout's decisions and generations, when the scenario has one.
    pub rollout: Option<rollout::Log>,
    /// The config generations made after the first, in order: when and why.
    pub generations: Vec<GenerationMade>,
}

/// A config generation made during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationMade {
    /// Its number in the run's lineage (0 is the scenario's mesh).
    pub number: u32,
    /// When it was made (each proxy receives it after its own push delay).
    pub at: proxy_engine::Time,
    /// Why: `timeline[i]`, `instances ready`, or `rollout`.
    pub cause: String,
}

impl RunMetrics {
    /// Adds `other` (possibly recorded against another mesh) to these, matching routes,
    /// destinations, clusters, mirrors and events by name.
    pub fn merge_named(&mut self, other: &RunMetrics) {
        fn by_name<T: Clone>(
            mine: &mut Vec<(String, T)>,
            theirs: &[(String, T)],
            add: fn(&mut T, &T),
        ) {
            for (name, t) in theirs {
                match mine.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                    Ok(i) => add(&mut mine[i].1, t),
                    Err(i) => mine.insert(i, (name.clone(), t.clone())),
                }
            }
        }
        self.generated += other.generated;
        self.dropped += other.dropped;
        self.absorbed = match (self.absorbed, other.absorbed) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.totals.merge(&other.totals);
        self.series.merge(&other.series);
        for (name, t) in &other.workloads {
            match self.workloads.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => mine.merge(t),
                None => self.workloads.push((name.clone(), t.clone())),
            }
        }
        by_name(&mut self.routes, &other.routes, Stats::merge);
        by_name(&mut self.destinations, &other.destinations, Stats::merge);
        by_name(&mut self.clusters, &other.clusters, Stats::merge);
        by_name(&mut self.mirrors, &other.mirrors, Stats::merge);
        by_name(&mut self.events, &other.events, EventCounts::merge);
        by_name(
            &mut self.instances,
            &other.instances,
            crate::instances::InstanceStats::merge,
        );
    }
}

/// A mesh offered to [`Recorder::add_generation`] that does not succeed the recorder's latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationError {
    /// The recorder's latest generation.
    pub latest: u64,
    /// The generation offered.
    pub offered: u64,
}

impl std::fmt::Display for GenerationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "generation {} does not succeed generation {} (compile it with \
             CompiledMesh::compile_next from the latest)",
            self.offered, self.latest
        )
    }
}

impl std::error::Error for GenerationError {}

/// The (route, destination, cluster) of a hop record, and the mesh generation its route id
/// belongs to; `NONE` where the outcome has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HopKey {
    route: u32,
    destination: u32,
    cluster: u32,
    generation: u32,
}

impl HopKey {
    const NONE: u32 = u32::MAX;

    fn of(outcome: &Outcome) -> HopKey {
        HopKey {
            route: outcome.route.map_or(HopKey::NONE, |r| r.0),
            destination: outcome.destination.map_or(HopKey::NONE, |d| d.0),
            cluster: outcome.cluster.map_or(HopKey::NONE, |c| c.0),
            generation: outcome.generation,
        }
    }
}

impl std::hash::Hash for HopKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((u64::from(self.route) << 32) | u64::from(self.destination));
        h.write_u64((u64::from(self.cluster) << 32) | u64::from(self.generation));
    }
}

/// Records outcomes against one lineage of compiled meshes, by id (no string work per
/// request), and names them at the end: routes by the generation each outcome was routed
/// with, clusters, destinations and endpoints (stable across the lineage) by the latest. Both drivers use it: every proxy's outcomes are hop records (routes,
/// destinations, clusters); the client's are also end-to-end records (totals, time series).
#[derive(Clone, Debug)]
pub struct Recorder {
    /// The generations of the lineage recorded against, from the one the recorder was made
    /// with. **Invariant:** never empty; generations strictly increasing, each a successor of
    /// the one before (`CompiledMesh::succeeds`), so the last is the latest.
    meshes: Vec<std::sync::Arc<proxy_engine::mesh::CompiledMesh>>,
    /// Requests generated (counted by the load source).
    pub generated: u64,
    /// Client successes with a failed inner hop (see `RunMetrics::absorbed`); `None` unless
    /// the driver follows requests across hops (`tracking_absorbed`).
    absorbed: Option<u64>,
    totals: Stats,
    /// End-to-end outcomes per workload, named (see `with_workloads`).
    workloads: Vec<(String, Stats)>,
    /// Hop records, one per (route, destination, cluster) seen, in the order first seen: a
    /// hop is recorded once, and the per-route, per-destination and per-cluster tables are
    /// sums of these, made when named (all of `Stats` adds up exactly, in any order).
    hops: Vec<(HopKey, Stats)>,
    /// Where each key is in `hops` (looked up, never iterated).
    hop_index: proxy_engine::idmap::IdMap<HopKey, usize>,
    mirrors: Vec<Option<Stats>>,
    series: TimeSeries,
    events: Vec<EventCounts>,
    instances: crate::instances::InstanceTable,
}

impl Recorder {
    /// A recorder for outcomes of `mesh`, with time-series windows of `window`.
    pub fn new(mesh: std::sync::Arc<proxy_engine::mesh::CompiledMesh>, window: Nanos) -> Recorder {
        Recorder::with_series(mesh, TimeSeries::new(window))
    }

    /// A recorder that keeps totals, hop and event counts but no time series (for a proxy that
    /// runs indefinitely).
    pub fn without_series(mesh: std::sync::Arc<proxy_engine::mesh::CompiledMesh>) -> Recorder {
        Recorder::with_series(mesh, TimeSeries::off())
    }

    /// This recorder, keeping end-to-end outcomes per workload too (`record_workload` with an
    /// index into `names`).
    pub fn with_workloads(mut self, names: impl IntoIterator<Item = String>) -> Recorder {
        self.workloads = names.into_iter().map(|n| (n, Stats::default())).collect();
        self
    }

    /// This recorder, for a driver that counts `absorbed` (follows requests across hops).
    pub fn tracking_absorbed(mut self) -> Recorder {
        self.absorbed = Some(0);
        self
    }

    /// One client success with a failed inner hop (counted only when `tracking_absorbed`).
    pub fn record_absorbed(&mut self) {
        if let Some(n) = &mut self.absorbed {
            *n += 1;
        }
    }

    fn with_series(
        mesh: std::sync::Arc<proxy_engine::mesh::CompiledMesh>,
        series: TimeSeries,
    ) -> Recorder {
        Recorder {
            generated: 0,
            absorbed: None,
            totals: Stats::default(),
            workloads: Vec::new(),
            hops: Vec::new(),
            hop_index: proxy_engine::idmap::IdMap::default(),
            mirrors: vec![None; mesh.destinations().len()],
            series,
            events: vec![EventCounts::default(); mesh.clusters().len()],
            instances: crate::instances::InstanceTable::default(),
            meshes: vec![mesh],
        }
    }

    /// Records against `mesh` too: a later generation of the lineage
    /// (`CompiledMesh::compile_next`, from the latest or one after it). A mesh that does not
    /// succeed the latest is refused (and nothing changes).
    pub fn add_generation(
        &mut self,
        mesh: std::sync::Arc<proxy_engine::mesh::CompiledMesh>,
    ) -> Result<(), GenerationError> {
        let latest = self.mesh();
        if !mesh.succeeds(latest) {
            return Err(GenerationError {
                latest: latest.generation(),
                offered: mesh.generation(),
            });
        }
        self.mirrors.resize(mesh.destinations().len(), None);
        self.events
            .resize(mesh.clusters().len(), EventCounts::default());
        self.meshes.push(mesh);
        Ok(())
    }

    /// The name of route `route` of generation `generation`, if the recorder knows it.
    pub fn route_name(&self, generation: u32, route: u32) -> Option<&str> {
        let i = (self.meshes)
            .binary_search_by_key(&u64::from(generation), |m| m.generation())
            .ok()?;
        let r = self.meshes[i].routes().get(route as usize)?;
        Some(&r.name)
    }

    /// One hop's outcome, as the proxy that handled it saw it; the hop started at `start`.
    pub fn record_hop(&mut self, start: Time, outcome: &Outcome, latency: Nanos) {
        self.hop(HopKey::of(outcome)).record(outcome, latency);
        self.series.record_hop(start, outcome);
        self.instances.record(outcome, latency);
    }

    /// The hop record for `key`, made if new.
    fn hop(&mut self, key: HopKey) -> &mut Stats {
        let i = match self.hop_index.get(&key) {
            Some(&i) => i,
            None => {
                self.hops.push((key, Stats::default()));
                self.hop_index.insert(key, self.hops.len() - 1);
                self.hops.len() - 1
            }
        };
        &mut self.hops[i].1
    }

    /// A client's end-to-end outcome of a request started at `start`.
    pub fn record_end_to_end(&mut self, start: Time, outcome: &Outcome, latency: Nanos) {
        self.totals.record(outcome, latency);
        self.series.record(start, outcome, latency);
    }

    /// Workload number `workload`'s end-to-end outcome (besides `record_end_to_end`); a
    /// workload outside `with_workloads` is not counted per workload.
    pub fn record_workload(&mut self, workload: u32, outcome: &Outcome, latency: Nanos) {
        if let Some((_, stats)) = self.workloads.get_mut(workload as usize) {
            stats.record(outcome, latency);
        }
    }

    /// A mirrored copy's end at `destination` (the engine's `MirrorDone`): its status, the
    /// flags of a local failure, and its latency.
    pub fn record_mirror(
        &mut self,
        destination: proxy_engine::mesh::DestinationId,
        status: u16,
        flags: ResponseFlags,
        latency: Nanos,
    ) {
        if let Some(slot) = self.mirrors.get_mut(destination.0 as usize) {
            let outcome = Outcome::bare(status, flags);
            slot.get_or_insert_with(Stats::default)
                .record(&outcome, latency);
        }
    }

    /// The latest generation this recorder names ids with.
    pub fn mesh(&self) -> &std::sync::Arc<proxy_engine::mesh::CompiledMesh> {
        // `meshes` is never empty: made with one, only ever pushed to.
        &self.meshes[self.meshes.len() - 1]
    }

    /// A resilience event the recorder's one proxy reported at `now`.
    pub fn record_event(&mut self, now: Time, event: &EngineEvent) {
        self.record_event_from(0, now, event);
    }

    /// A resilience event proxy number `proxy` (any stable index the driver keeps) reported
    /// at `now`; ejections are timed per proxy.
    pub fn record_event_from(&mut self, proxy: u32, now: Time, event: &EngineEvent) {
        if let Some(slot) = self.events.get_mut(event.cluster().0 as usize) {
            slot.record(event);
        }
        self.series.record_event(now, event);
        self.instances.record_event(proxy, now, event);
    }

    /// The run ended at `end`: ejections still open count until then.
    pub fn end_at(&mut self, end: Time) {
        self.instances.end_at(end);
    }

    /// Adds `other`'s hop and mirror records (same mesh) to these.
    pub fn merge_hops(&mut self, other: &Recorder) {
        for (key, t) in &other.hops {
            self.hop(*key).merge(t);
        }
        for (m, t) in self.mirrors.iter_mut().zip(&other.mirrors) {
            if let Some(t) = t {
                m.get_or_insert_with(Stats::default).merge(t);
            }
        }
        for (mine, theirs) in self.events.iter_mut().zip(&other.events) {
            mine.merge(theirs);
        }
        self.series.merge_hops(&other.series);
        self.instances.merge(&other.instances);
    }

    /// The named, sorted metrics.
    pub fn finish(self) -> RunMetrics {
        fn named(
            stats: Vec<Option<Stats>>,
            name: &dyn Fn(usize) -> String,
        ) -> Vec<(String, Stats)> {
            let mut v: Vec<(String, Stats)> = stats
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|s| (name(i), s)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        let mesh = self.mesh().clone();
        // The hop records summed per route (named by their generation), destination and
        // cluster (ids stable across the lineage, named by the latest).
        let mut routes: std::collections::BTreeMap<String, Stats> = Default::default();
        let mut destinations: Vec<Option<Stats>> = vec![None; mesh.destinations().len()];
        let mut clusters: Vec<Option<Stats>> = vec![None; mesh.clusters().len()];
        for (key, stats) in &self.hops {
            if let Some(name) = self.route_name(key.generation, key.route) {
                routes.entry(name.to_owned()).or_default().merge(stats);
            }
            let slots = [
                (&mut destinations, key.destination),
                (&mut clusters, key.cluster),
            ];
            for (table, id) in slots {
                if let Some(slot) = table.get_mut(id as usize) {
                    slot.get_or_insert_with(Stats::default).merge(stats);
                }
            }
        }
        let destination = |i: usize| {
            let d = &mesh.destinations()[i];
            format!("{}/{}", d.service, d.version)
        };
        let mut series = self.series;
        series.destinations = (0..mesh.destinations().len()).map(destination).collect();
        RunMetrics {
            generated: self.generated,
            dropped: 0,
            absorbed: self.absorbed,
            totals: self.totals,
            workloads: self.workloads,
            routes: routes.into_iter().collect(),
            destinations: named(destinations, &destination),
            clusters: named(clusters, &|i| mesh.clusters()[i].name.clone()),
            mirrors: named(self.mirrors, &destination),
            series,
            instances: self.instances.finish(&mesh),
            events: {
                let mut v: Vec<(String, EventCounts)> = self
                    .events
                    .into_iter()
                    .enumerate()
                    .filter(|(_, e)| !e.is_empty())
                    .map(|(i, e)| (mesh.clusters()[i].name.clone(), e))
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            },
            rollout: None,
            generations: Vec::new(),
        }
    }
}

impl Stats {
    /// Adds `other`'s counts and latencies to these.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.success += other.success;
        for &(status, n) in &other.by_status {
            match self.by_status.binary_search_by_key(&status, |e| e.0) {
                Ok(i) => self.by_status[i].1 += n,
                Err(i) => self.by_status.insert(i, (status, n)),
            }
        }
        for (mine, theirs) in self.by_flag.iter_mut().zip(&other.by_flag) {
            *mine += theirs;
        }
        self.latency.merge(&other.latency);
        self.latency_sum_ns += other.latency_sum_ns;
        if self.by_attempts.len() < other.by_attempts.len() {
            self.by_attempts.resize(other.by_attempts.len(), 0);
        }
        for (mine, theirs) in self.by_attempts.iter_mut().zip(&other.by_attempts) {
            *mine += theirs;
        }
        self.attempts += other.attempts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: u16, flags: ResponseFlags) -> Outcome {
        Outcome::bare(status, flags)
    }

    #[test]
    fn stats_count_status_flags_and_latency() {
        let mut s = Stats::default();
        s.record(&outcome(200, ResponseFlags::NONE), Nanos::from_millis(10));
        s.record(
            &outcome(503, ResponseFlags::NO_HEALTHY_UPSTREAM),
            Nanos::from_millis(30),
        );
        s.record(&outcome(200, ResponseFlags::NONE), Nanos::from_millis(20));
        assert_eq!((s.count, s.success), (3, 2));
        assert_eq!(s.by_status, vec![(200, 2), (503, 1)]);
        assert_eq!(s.flags().collect::<Vec<_>>(), vec![("UH", 1)]);
        assert_eq!(s.mean_ns(), 20e6);
    }

    /// A mesh with one route splitting `reviews` between subsets v1 and v2.
    fn split_mesh() -> std::sync::Arc<proxy_engine::mesh::CompiledMesh> {
        let (config, reg) = split_config("split");
        let mesh = proxy_engine::mesh::CompiledMesh::compile(&config, &reg);
        std::sync::Arc::new(mesh.unwrap_or_else(|e| panic!("{e}")))
    }

    /// The config of `split_mesh` with the route named `route`, and its registry.
    fn split_config(route: &str) -> (proxy_engine::MeshConfig, proxy_engine::Registry) {
        let text = format!(
            r#"Mesh(
            virtual_services: [VirtualService(hosts: ["reviews"], http: [HttpRoute(name: "{route}",
                route: [(destination: (host: "reviews", subset: "v1"), weight: 50),
                        (destination: (host: "reviews", subset: "v2"), weight: 50)])])],
            destination_rules: [DestinationRule(host: "reviews", subsets: [
                (name: "v1", labels: {{"version": "v1"}}), (name: "v2", labels: {{"version": "v2"}})])],
        )"#
        );
        let options = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .with_default_extension(ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES);
        let config: proxy_engine::MeshConfig =
            options.from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut reg = proxy_engine::Registry::default();
        let ep = |i: u32, v: &str| proxy_engine::Endpoint {
            name: format!("reviews/{v}/{}", i.saturating_sub(1)),
            labels: [("version".to_owned(), v.to_owned())].into(),
        };
        reg.add_service("reviews", vec![ep(0, "v1"), ep(1, "v2")]);
        (config, reg)
    }

    #[test]
    fn routes_are_named_by_the_generation_they_were_routed_with() {
        use proxy_engine::mesh::RouteId;
        let first = split_mesh();
        let (config, reg) = split_config("switch");
        let next = proxy_engine::mesh::CompiledMesh::compile_next(&config, &reg, &first)
            .unwrap_or_else(|e| panic!("{e}"));
        let next = std::sync::Arc::new(next);
        assert_eq!(
            next.destinations(),
            first.destinations(),
            "destination ids stay"
        );
        let mut r = Recorder::without_series(first.clone());
        let hop = |generation: u32| Outcome {
            attempts: 1,
            route: Some(RouteId(0)),
            generation,
            ..Outcome::bare(200, ResponseFlags::NONE)
        };
        let ms = Nanos::from_millis;
        r.record_hop(Time::ZERO, &hop(0), ms(1));
        assert!(r.add_generation(first.clone()).is_err(), "not a successor");
        assert!(r.add_generation(next.clone()).is_ok());
        r.record_hop(Time::ZERO, &hop(1), ms(1));
        r.record_hop(Time::ZERO, &hop(1), ms(1));
        let names: Vec<(String, u64)> = (r.finish().routes.into_iter())
            .map(|(n, s)| (n, s.count))
            .collect();
        assert_eq!(
            names,
            vec![("reviews/split".into(), 1), ("reviews/switch".into(), 2)]
        );
    }

    #[test]
    fn hop_records_sum_into_routes_destinations_and_clusters() {
        use proxy_engine::mesh::{ClusterId, DestinationId, RouteId};
        let mesh = split_mesh();
        let route = RouteId(0);
        let find = |version: &str| {
            let d = mesh
                .destinations()
                .iter()
                .position(|d| d.version == version);
            let c = mesh
                .clusters()
                .iter()
                .position(|c| c.name == format!("reviews|{version}"));
            match (d, c) {
                (Some(d), Some(c)) => (DestinationId(d as u32), ClusterId(c as u32)),
                _ => panic!("no {version} in the mesh"),
            }
        };
        let hop = |status: u16, version: &str| {
            let (d, c) = find(version);
            Outcome {
                attempts: 1,
                route: Some(route),
                destination: Some(d),
                cluster: Some(c),
                ..Outcome::bare(status, ResponseFlags::NONE)
            }
        };
        let ms = Nanos::from_millis;
        let mut a = Recorder::without_series(mesh.clone());
        a.record_hop(Time::ZERO, &hop(200, "v1"), ms(10));
        a.record_hop(Time::ZERO, &hop(503, "v1"), ms(30));
        a.record_hop(Time::ZERO, &hop(200, "v2"), ms(20));
        // No route: counted in no table.
        a.record_hop(
            Time::ZERO,
            &Outcome::bare(404, ResponseFlags::NO_ROUTE_FOUND),
            ms(1),
        );
        let mut b = Recorder::without_series(mesh.clone());
        b.record_hop(Time::ZERO, &hop(200, "v2"), ms(40));
        a.merge_hops(&b);
        let m = a.finish();
        let table = |t: &[(String, Stats)]| -> Vec<(String, u64, u64, f64)> {
            t.iter()
                .map(|(n, s)| (n.clone(), s.count, s.success, s.mean_ns() / 1e6))
                .collect()
        };
        assert_eq!(
            table(&m.routes),
            vec![("reviews/split".to_owned(), 4, 3, 25.0)]
        );
        assert_eq!(
            table(&m.destinations),
            vec![
                ("reviews/v1".to_owned(), 2, 1, 20.0),
                ("reviews/v2".to_owned(), 2, 2, 30.0)
            ]
        );
        assert_eq!(
            table(&m.clusters),
            vec![
                ("reviews|v1".to_owned(), 2, 1, 20.0),
                ("reviews|v2".to_owned(), 2, 2, 30.0)
            ]
        );
        let split = &m.routes[0].1;
        assert_eq!(split.by_status, vec![(200, 3), (503, 1)]);
        assert_eq!(split.latency.len(), 4);
        assert_eq!(split.by_attempts, vec![0, 4]);
    }

    #[test]
    fn series_buckets_by_start_time() {
        let mut ts = TimeSeries::new(Nanos::from_secs(1));
        ts.record(
            Time(1_500_000_000),
            &outcome(500, ResponseFlags::NONE),
            Nanos(5),
        );
        ts.record(Time(100), &outcome(200, ResponseFlags::NONE), Nanos(5));
        assert_eq!(ts.windows.len(), 2);
        assert_eq!((ts.windows[0].requests, ts.windows[0].errors), (1, 0));
        assert_eq!((ts.windows[1].requests, ts.windows[1].errors), (1, 1));
    }

    #[test]
    fn a_series_that_is_off_stays_empty_however_late_the_records() {
        let mut ts = TimeSeries::off();
        // An hour in: a recording series would now hold 3 601 windows with a histogram each.
        let hour = Time(3_600_000_000_000);
        ts.record(hour, &outcome(200, ResponseFlags::NONE), Nanos(5));
        ts.record_event(
            hour,
            &EngineEvent::Retry {
                cluster: proxy_engine::mesh::ClusterId(0),
            },
        );
        assert!(ts.windows.is_empty());
    }
}
