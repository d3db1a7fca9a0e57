//! The modeled instances' work: a request reaching an instance is a job that waits for a
//! worker in the bounded FIFO queue (503 when full), makes its outbound calls through the
//! instance's sidecar, takes its service time and answers.

use super::*;
use rand::Rng;

impl Simulation {
    /// A request travels one network leg to `instance`.
    pub(super) fn send_job(
        &mut self,
        reply_to: ReplyTo,
        instance: u32,
        head: RequestHead,
        root: Option<RequestId>,
    ) {
        let leg = self.leg_of(reply_to.mirror);
        let job = self.alloc_job(Job {
            reply_to,
            instance,
            head,
            step: 0,
            pending: 0,
            failed: false,
            root,
            dead: false,
            arrived: self.now + leg,
        });
        self.queue.push(self.now + leg, Event::Deliver { job });
    }

    /// The job reached gateway number `gateway` through its service (a sidecar sending to an
    /// egress gateway): the gateway routes it as its server on the service's port, and its
    /// outcome answers the job's sender (`relay_done`).
    pub(super) fn relay(&mut self, job: u32, gateway: u32) {
        let Some(&Some((proxy, port))) = self.gateway_entry.get(gateway as usize) else {
            debug_assert!(false, "gateway {gateway} serves no service");
            return self.reset_job(job);
        };
        let Some(j) = self.jobs[job as usize].as_ref() else {
            return;
        };
        let (head, root, reply) = (j.head.clone(), j.root, j.reply_to);
        let entry = Some((Listener { port, tls: false }, None));
        let req = self.issue(proxy, head, job, Serves::Root(root), entry, (0, 0));
        // Not answered at once (a local reply would have freed the job already).
        if self.proxies[proxy as usize].open.contains_key(&req) {
            let sender = &mut self.proxies[reply.proxy as usize];
            sender.relayed.insert(reply.attempt, (proxy, req));
        }
    }

    /// A gateway's relayed request ended with `status` (0: no response): its sender gets the
    /// answer, or a reset.
    pub(super) fn relay_done(&mut self, job: u32, status: u16) {
        if let Some(j) = self.jobs[job as usize].as_ref() {
            let ReplyTo { proxy, attempt, .. } = j.reply_to;
            self.proxies[proxy as usize].relayed.remove(&attempt);
        }
        match status {
            0 => self.reset_job(job),
            status => self.respond(job, status),
        }
    }

    pub(super) fn alloc_job(&mut self, job: Job) -> u32 {
        match self.free_jobs.pop() {
            Some(i) => {
                self.jobs[i as usize] = Some(job);
                i
            }
            None => {
                self.jobs.push(Some(job));
                (self.jobs.len() - 1) as u32
            }
        }
    }

    pub(super) fn deliver(&mut self, job: u32) {
        let Some(instance) = self.jobs[job as usize].as_ref().map(|j| j.instance) else {
            return;
        };
        if let Some(gateway) = instance.checked_sub(self.instances.len() as u32) {
            return self.relay(job, gateway);
        }
        if self.crashed(instance) {
            return self.reset_job(job);
        }
        if self.hung(instance) {
            return self.free_job(job); // accepted, never answered
        }
        if let Some(status) = self.error_burst(instance) {
            return self.respond(job, status);
        }
        let inst = &mut self.instances[instance as usize];
        match inst.admission.arrive(job) {
            Admit::Start => {
                inst.working.push(job);
                self.advance_job(job);
            }
            Admit::Queued => {}
            // Queue full: the instance answers 503 at once.
            Admit::Refused(job) => self.respond(job, 503),
        }
    }

    /// Runs the job's next step — its calls through the instance's sidecar (those it makes:
    /// each with its probability), or its own work — or, when all steps are done, its
    /// service time.
    pub(super) fn advance_job(&mut self, job: u32) {
        loop {
            let Some(j) = self.jobs[job as usize].as_mut() else {
                return;
            };
            if j.dead {
                return self.free_job(job); // its calls are done and nothing waits for it
            }
            let instance = j.instance;
            let inst = &mut self.instances[instance as usize];
            let model = &self.models[inst.model as usize];
            let steps = model.steps.clone();
            let Some(step) = steps.get(j.step as usize) else {
                let service = model.spec.latency.sample(&mut inst.rng);
                let service = self.slowed(instance, service);
                self.queue.push(self.now + service, Event::Finish { job });
                return;
            };
            j.step += 1;
            let calls = match step {
                Step::Work(d) => {
                    let work = d.sample(&mut inst.rng);
                    self.queue.push(self.now + work, Event::Resume { job });
                    return;
                }
                Step::Calls(calls) => calls,
            };
            let rng = &mut inst.rng;
            let made: Vec<u16> = (calls.iter().enumerate())
                .filter(|(_, c)| c.probability >= 1.0 || rng.gen::<f64>() < c.probability)
                .map(|(i, _)| i as u16)
                .collect();
            if made.is_empty() {
                continue;
            }
            // Set before issuing: calls may complete synchronously (e.g. 404 NR).
            j.pending = made.len() as u32;
            for i in made {
                self.call(job, i, 0);
            }
            return;
        }
    }

    /// Issues try `tries` (0 for the first) of call `index` of the job's current step through
    /// its instance's sidecar, with the application's timeout for the try.
    pub(super) fn call(&mut self, job: u32, index: u16, tries: u16) {
        let Some(j) = self.jobs[job as usize].as_ref() else {
            return;
        };
        let inst = &self.instances[j.instance as usize];
        let steps = self.models[inst.model as usize].steps.clone();
        let Some(Step::Calls(calls)) = (j.step as usize).checked_sub(1).and_then(|s| steps.get(s))
        else {
            return;
        };
        let Some(call) = calls.get(index as usize) else {
            return;
        };
        let sidecar = inst.sidecar;
        let step = j.step as usize - 1; // `checked_sub` above
        let Some(mut head) = inst
            .heads
            .get(step)
            .and_then(|h| h.get(index as usize))
            .cloned()
        else {
            return;
        };
        if !j.head.headers.is_empty() {
            head.headers = propagate(&call.head.headers, &j.head.headers);
        }
        let root = j.root;
        let req = self.issue(sidecar, head, job, Serves::Root(root), None, (index, tries));
        let open = self.proxies[sidecar as usize].open.contains_key(&req);
        if let (Some(t), true) = (call.timeout, open) {
            let at = self.now + t;
            let event = Event::CallTimeout {
                proxy: sidecar,
                req,
            };
            self.queue.push(at, event);
        }
    }

    /// The application gives up on a try still open at its timeout: the sidecar sees the
    /// client go (`DC`), and the try's completion decides on a retry.
    pub(super) fn call_timeout(&mut self, proxy: u32, req: RequestId) {
        if self.proxies[proxy as usize].open.contains_key(&req) {
            let now = self.now;
            (self.proxies[proxy as usize].proxy).handle_downstream_cancel(now, req);
            self.drain(proxy);
        }
    }

    /// A call's try ended (`failed`: no response or a 5xx): retry it if it failed and the
    /// application has
    /// tries left; else count it against the job (unless it degrades) and move the job on
    /// when its step's calls are all done.
    pub(super) fn call_done(&mut self, job: u32, call: (u16, u16), failed: bool) {
        let Some(j) = self.jobs[job as usize].as_mut() else {
            debug_assert!(false, "call finished for a freed job");
            return;
        };
        let (index, tries) = call;
        let model = &self.models[self.instances[j.instance as usize].model as usize];
        let spec = (j.step as usize)
            .checked_sub(1)
            .and_then(|s| match model.steps.get(s) {
                Some(Step::Calls(calls)) => calls.get(index as usize),
                _ => None,
            });
        let (retries, degrade) = spec.map_or((0, false), |c| (c.retries, c.degrade));
        if failed && u32::from(tries) < retries && !j.dead {
            return self.call(job, index, tries + 1);
        }
        j.failed |= failed && !degrade;
        j.pending -= 1;
        if j.pending == 0 {
            self.advance_job(job);
        }
    }

    pub(super) fn finish_job(&mut self, job: u32) {
        let Some(j) = self.jobs[job as usize].as_ref() else {
            return;
        };
        if j.dead {
            return self.free_job(job);
        }
        let failed = j.failed;
        let instance = j.instance as usize;
        let inst = &mut self.instances[instance];
        let model = &self.models[inst.model as usize];
        let status = model::handler_status(failed, &model.spec, &mut inst.rng);
        if let Some(i) = inst.working.iter().position(|w| *w == job) {
            inst.working.swap_remove(i);
        }
        let next = inst.admission.finish();
        self.respond(job, status);
        if let Some(next) = next {
            self.instances[instance].working.push(next);
            self.advance_job(next);
        }
    }

    /// Sends the job's response back to its proxy and frees the job.
    pub(super) fn respond(&mut self, job: u32, status: u16) {
        let Some(j) = self.jobs[job as usize].take() else {
            return;
        };
        self.free_jobs.push(job);
        if self.rollout.is_some() {
            self.probe(j.instance, j.arrived, status);
        }
        let ReplyTo {
            proxy,
            attempt,
            mirror,
        } = j.reply_to;
        if self.partitioned(proxy, j.instance) {
            return; // lost on the way back
        }
        let at = self.now + self.leg_of(mirror);
        let respond = Event::Respond {
            proxy,
            attempt,
            status,
        };
        self.queue.push(at, respond);
    }

    /// The job's sender sees its stream reset (after one network leg). The job itself is left
    /// to its owner.
    pub(super) fn reset_reply(&mut self, job: u32) {
        let Some(j) = self.jobs[job as usize].as_ref() else {
            return;
        };
        let ReplyTo {
            proxy,
            attempt,
            mirror,
        } = j.reply_to;
        let at = self.now + self.leg_of(mirror);
        self.queue.push(at, Event::Reset { proxy, attempt });
    }

    /// Resets the job's sender and frees the job.
    pub(super) fn reset_job(&mut self, job: u32) {
        self.reset_reply(job);
        self.free_job(job);
    }

    pub(super) fn free_job(&mut self, job: u32) {
        if self.jobs[job as usize].take().is_some() {
            self.free_jobs.push(job);
        }
    }
}

/// A call's headers plus the incoming request's headers it does not set itself (the handler
/// propagates what it received, as Bookinfo's services propagate `end-user`).
pub(super) fn propagate(own: &Headers, incoming: &Headers) -> Headers {
    let mut out: Vec<(Arc<str>, Arc<str>)> = own.to_vec();
    for (name, value) in incoming.iter() {
        if !own.iter().any(|(n, _)| n == name) {
            out.push((name.clone(), value.clone()));
        }
    }
    Arc::from(out)
}
