//! The modeled instances' work: a request reaching an instance is a job that waits for a
//! worker in the bounded FIFO queue (503 when full), makes its outbound calls through the
//! instance's sidecar, takes its service time and answers.

use super::*;

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

    /// Runs the job's next call step through the instance's sidecar, or, when all calls are
    /// done, its own service time.
    pub(super) fn advance_job(&mut self, job: u32) {
        let Some(j) = self.jobs[job as usize].as_mut() else {
            return;
        };
        if j.dead {
            return self.free_job(job); // its calls are done and nothing waits for it
        }
        let instance = j.instance;
        let inst = &mut self.instances[instance as usize];
        let model = &self.models[inst.model as usize];
        if let Some(step) = model.steps.get(j.step as usize) {
            let steps = model.steps.clone();
            let sidecar = inst.sidecar;
            let source = inst.name.clone();
            let incoming = j.head.headers.clone();
            let root = j.root;
            let step_index = j.step as usize;
            j.step += 1;
            // Set before issuing: calls may complete synchronously (e.g. 404 NR).
            j.pending = step.len() as u32;
            for call in &steps[step_index] {
                let mut head = call.clone();
                head.source = source.clone();
                if !incoming.is_empty() {
                    head.headers = propagate(&call.headers, &incoming);
                }
                self.issue(sidecar, head, job, Serves::Root(root), None);
            }
        } else {
            let service = model.spec.latency.sample(&mut inst.rng);
            let service = self.slowed(instance, service);
            self.queue.push(self.now + service, Event::Finish { job });
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
