//! Config generations reaching the proxies: each timeline change is pushed to every proxy
//! after that proxy's own draw of `push_delay` (istiod's pushes reach sidecars at different
//! moments), so for a while proxies hold different generations. A proxy applies a generation
//! only if it is later than the one it holds (xDS delivers whole state: the latest wins), and
//! requests in flight finish on the routes they chose.

use super::{Event, Simulation};
use crate::rng::stream;
use crate::scenario::Scenario;
use crate::topology::Topology;

impl Simulation {
    /// Makes each proxy's push-delay stream and schedules the timeline's generations. Each
    /// proxy draws its delays from a stream of its own (`push/<proxy>`), in generation order,
    /// so a change to one proxy's draws never moves another's.
    pub(super) fn build_pushes(&mut self, s: &Scenario, topology: &Topology, seed: u64) {
        if s.timeline.is_empty() && s.rollout.is_none() {
            return;
        }
        // Proxies were added in the topology's order: sidecars, then clients.
        debug_assert_eq!(topology.proxies.len(), self.proxies.len());
        self.push_delay = s.push_delay.clone();
        self.push_rngs = (topology.proxies.iter())
            .map(|spec| stream(seed, &format!("push/{}", spec.name)))
            .collect();
        for g in 1..self.generations.meshes.len() {
            self.schedule_pushes(g);
        }
    }

    /// Schedules generation `g` for every proxy, each after its own push delay.
    pub(super) fn schedule_pushes(&mut self, g: usize) {
        let made = self.generations.at[g];
        for (p, rng) in self.push_rngs.iter_mut().enumerate() {
            let at = made + self.push_delay.sample(rng);
            self.queue.push(
                at,
                Event::Push {
                    proxy: p as u32,
                    generation: g as u32,
                },
            );
        }
    }

    /// Generation `generation` reaches proxy `proxy`.
    pub(super) fn push(&mut self, proxy: u32, generation: u32) {
        let Some(mesh) = self.generations.meshes.get(generation as usize) else {
            return;
        };
        let slot = &mut self.proxies[proxy as usize];
        if slot.proxy.config().generation() >= mesh.generation() {
            return; // a later generation arrived first
        }
        // Generations are compiled each from the one before, so every one succeeds the
        // proxy's.
        let applied = slot.proxy.apply_config(self.now, mesh.clone());
        debug_assert!(applied.is_ok(), "{applied:?}");
        self.drain(proxy);
    }
}
