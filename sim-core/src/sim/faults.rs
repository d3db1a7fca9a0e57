//! Faults over time as the model applies them to instances: crashes and hangs, error bursts,
//! added latency and slow starts, and network partitions between callers and instances.

use super::*;

impl Simulation {
    /// Gives every instance its faults and schedules the starts of crashes and hangs.
    pub(super) fn build_faults(&mut self, s: &Scenario) {
        for (i, faults) in model::instance_faults(s).into_iter().enumerate() {
            for f in &faults {
                let crash = matches!(f.kind, FaultKind::Crash);
                if (crash || matches!(f.kind, FaultKind::Hang)) && f.start <= self.deadline {
                    let instance = i as u32;
                    self.queue
                        .push(f.start, Event::FaultStart { instance, crash });
                }
            }
            self.instances[i].faults = faults;
        }
    }

    pub(super) fn crashed(&self, instance: u32) -> bool {
        let faults = faults_of(&self.instances, instance);
        model::has_active(faults, self.now, |k| matches!(k, FaultKind::Crash))
    }

    pub(super) fn hung(&self, instance: u32) -> bool {
        let faults = faults_of(&self.instances, instance);
        model::has_active(faults, self.now, |k| matches!(k, FaultKind::Hang))
    }

    /// Whether a partition cuts proxy `p`'s caller off from `instance`.
    pub(super) fn partitioned(&self, p: u32, instance: u32) -> bool {
        let caller = &self.proxies[p as usize].caller;
        let faults = faults_of(&self.instances, instance);
        model::has_active(
            faults,
            self.now,
            |k| matches!(k, FaultKind::Partition { from } if **from == **caller),
        )
    }

    /// An error burst's answer for a request reaching `instance` now, if one hits it.
    pub(super) fn error_burst(&mut self, instance: u32) -> Option<u16> {
        let faults = faults_of(&self.instances, instance);
        if faults.is_empty() {
            return None;
        }
        model::error_burst(faults, self.now, &mut self.fault_rng)
    }

    /// A service time with the instance's active latency and slow-start faults applied.
    pub(super) fn slowed(
        &mut self,
        instance: u32,
        service: proxy_engine::Nanos,
    ) -> proxy_engine::Nanos {
        let faults = faults_of(&self.instances, instance);
        if faults.is_empty() {
            return service;
        }
        model::slowed(faults, self.now, service, &mut self.fault_rng)
    }

    /// A crash or hang begins on `instance`: what it holds is reset (crash) or never answered
    /// (hang); a crash also closes every connection to it.
    pub(super) fn fault_start(&mut self, instance: u32, crash: bool) {
        let inst = &mut self.instances[instance as usize];
        let working = std::mem::take(&mut inst.working);
        let queued = inst.admission.reset();
        for job in working {
            if crash {
                self.reset_reply(job);
            }
            if let Some(j) = self.jobs[job as usize].as_mut() {
                j.dead = true;
            }
        }
        for job in queued {
            if crash {
                self.reset_job(job);
            } else {
                self.free_job(job);
            }
        }
        if crash {
            self.close_connections_to(instance);
        }
    }

    /// Every proxy's connections to `instance` are closed by the peer.
    pub(super) fn close_connections_to(&mut self, instance: u32) {
        for p in 0..self.proxies.len() {
            let slot = &mut self.proxies[p];
            let mut conns: Vec<ConnId> = slot
                .conns
                .iter()
                .filter(|(_, i)| **i == instance)
                .map(|(c, _)| *c)
                .collect();
            if conns.is_empty() {
                continue;
            }
            conns.sort_unstable();
            for conn in conns {
                slot.conns.remove(&conn);
                slot.proxy.handle_connection_closed(self.now, conn);
            }
            self.drain(p as u32);
        }
    }
}

/// The faults that target `instance`; none for a gateway proxy serving as a service (faults
/// name service versions).
fn faults_of(instances: &[Instance], instance: u32) -> &[model::FaultWindow] {
    instances
        .get(instance as usize)
        .map_or(&[], |i| i.faults.as_slice())
}
