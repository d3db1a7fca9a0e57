//! Requests between workloads, proxies and instances: a workload's arrivals and users issue
//! requests to their client proxies; `drain` performs every action a proxy queued (connects,
//! sends over network legs, mirrors, completions) and re-arms its timer; `complete` records an
//! outcome and moves its caller on.

use super::*;

impl Simulation {
    pub(super) fn arrival(&mut self, workload: u32) {
        self.send_from_workload(workload, 0);
        let w = &mut self.workloads[workload as usize];
        if let Load::Open(p) = &mut w.load {
            if let Some(next) = p.next(self.now, &mut w.rng) {
                self.queue.push(next, Event::Arrival { workload });
            }
        }
    }

    pub(super) fn send_from_workload(&mut self, workload: u32, parent: u32) {
        let w = &mut self.workloads[workload as usize];
        let head = w.mix.pick(&mut w.rng);
        let proxy = w.proxy;
        let entry = w.entry.map(|l| (l, Some(workload)));
        self.metrics.generated += 1;
        self.issue(proxy, head, parent, Serves::Itself, entry, (0, 0));
    }

    /// Hands a new request to proxy `p` on behalf of `parent`; a request entering a gateway
    /// carries the gateway listener, and the workload when it is a workload's own (else it is
    /// a sidecar's, relayed: `parent` is the job standing for it).
    pub(super) fn issue(
        &mut self,
        p: u32,
        head: RequestHead,
        parent: u32,
        serves: Serves,
        entry: Option<(Listener, Option<u32>)>,
        call: (u16, u16),
    ) -> RequestId {
        let req = RequestId(self.next_req);
        self.next_req += 1;
        let slot = &mut self.proxies[p as usize];
        slot.open.insert(
            req,
            Open {
                start: self.now,
                parent,
                root: match serves {
                    Serves::Itself => Some(req),
                    Serves::Root(root) => root,
                },
                workload: entry.and_then(|(_, w)| w),
                call,
            },
        );
        match entry {
            Some((listener, _)) => {
                (slot.proxy).handle_gateway_request(self.now, req, head, listener)
            }
            None => slot.proxy.handle_request(self.now, req, head),
        }
        self.drain(p);
        req
    }

    /// One leg of network latency.
    pub(super) fn leg(&mut self) -> proxy_engine::Nanos {
        if self.net.is_zero() {
            proxy_engine::Nanos::ZERO
        } else {
            self.net.sample(&mut self.net_rng)
        }
    }

    /// One leg of network latency, for a mirrored copy's traffic when `mirror` (drawn from
    /// the mirror stream).
    pub(super) fn leg_of(&mut self, mirror: bool) -> proxy_engine::Nanos {
        if !mirror {
            self.leg()
        } else if self.net.is_zero() {
            proxy_engine::Nanos::ZERO
        } else {
            self.net.sample(&mut self.mirror_net_rng)
        }
    }

    /// Performs every action proxy `p` has queued, then re-arms its timer.
    pub(super) fn drain(&mut self, p: u32) {
        while let Some(action) = self.proxies[p as usize].proxy.poll_action() {
            match action {
                Action::Connect {
                    conn,
                    endpoint,
                    mirror,
                    tls,
                    ..
                } => {
                    let Some(&instance) = self.instance_of.get(endpoint) else {
                        debug_assert!(false, "an endpoint with no instance");
                        continue;
                    };
                    self.proxies[p as usize].conns.insert(conn, instance);
                    if self.partitioned(p, instance) {
                        continue; // the SYN is lost: the engine's connect timeout decides
                    }
                    // A TCP handshake costs a round trip before the request can go (a refusal
                    // too: the RST comes back); originated TLS one more (TLS 1.3's full
                    // handshake).
                    let mut rtt = self.leg_of(mirror) + self.leg_of(mirror);
                    if tls.is_some() && !self.crashed(instance) {
                        rtt = rtt + self.leg_of(mirror) + self.leg_of(mirror);
                    }
                    let event = if self.crashed(instance) {
                        Event::ConnectFailed { proxy: p, conn }
                    } else {
                        Event::Connected { proxy: p, conn }
                    };
                    self.queue.push(self.now + rtt, event);
                }
                Action::Send {
                    req,
                    attempt,
                    conn,
                    head,
                    ..
                } => {
                    let Some(&instance) = self.proxies[p as usize].conns.get(&conn) else {
                        debug_assert!(false, "send on unknown connection {conn:?}");
                        continue;
                    };
                    if self.partitioned(p, instance) {
                        continue; // lost on the way
                    }
                    let mirror = req.is_mirror_copy();
                    if self.crashed(instance) {
                        let rtt = self.leg_of(mirror) + self.leg_of(mirror);
                        let reset = Event::Reset { proxy: p, attempt };
                        self.queue.push(self.now + rtt, reset);
                        continue;
                    }
                    let reply_to = ReplyTo {
                        proxy: p,
                        attempt,
                        mirror,
                    };
                    // A copy is no client's request: its calls serve none (`root` None).
                    let root = self.proxies[p as usize].open.get(&req).and_then(|o| o.root);
                    self.send_job(reply_to, instance, head, root);
                }
                Action::MirrorDone {
                    destination,
                    status,
                    flags,
                    latency,
                    ..
                } => {
                    self.metrics
                        .record_mirror(destination, status, flags, latency);
                }
                Action::CloseConnection { conn } => {
                    self.proxies[p as usize].conns.remove(&conn);
                }
                // A gateway relaying the attempt sees its downstream reset (`DC` there).
                Action::CancelAttempt { attempt } => {
                    let relayed = self.proxies[p as usize].relayed.remove(&attempt);
                    if let Some((gateway, req)) = relayed {
                        let g = &mut self.proxies[gateway as usize];
                        if g.open.contains_key(&req) {
                            g.proxy.handle_downstream_cancel(self.now, req);
                            self.drain(gateway);
                        }
                    }
                }
                // The instance keeps working on a cancelled attempt; the engine ignores its
                // late response. Forward and LocalReply carry nothing the model needs: the
                // request's `Complete` follows.
                // A copy's attempts come as sends; the model keeps no body to hold for them.
                Action::Forward { .. } | Action::LocalReply { .. } | Action::Mirror { .. } => {}
                Action::Event(event) => self.metrics.record_event_from(p, self.now, &event),
                Action::Complete { req, outcome } => self.complete(p, req, outcome),
            }
        }
        if let Some(None) = &self.checks {
            if let Err(e) = self.proxies[p as usize].proxy.check_invariants() {
                self.checks = Some(Some(format!("proxy {p} at {:?}: {e}", self.now)));
            }
        }
        let slot = &mut self.proxies[p as usize];
        let want = slot.proxy.poll_timeout();
        if want != slot.armed {
            slot.armed = want;
            if let Some(at) = want {
                self.queue
                    .push(at.max(self.now), Event::Timer { proxy: p, at });
            }
        }
    }

    pub(super) fn complete(&mut self, p: u32, req: RequestId, outcome: Outcome) {
        let slot = &mut self.proxies[p as usize];
        let Some(open) = slot.open.remove(&req) else {
            debug_assert!(false, "outcome for unknown request {req:?}");
            return;
        };
        let owner = slot.owner;
        let latency = self.now.since(open.start);
        self.metrics.record_hop(open.start, &outcome, latency);
        if self.rollout.is_some() {
            self.probe_hop(&outcome, latency);
        }
        let client = match owner {
            Owner::Client { workload } => Some(workload),
            Owner::Gateway { .. } => open.workload,
            Owner::Sidecar { .. } => None,
        };
        match client {
            Some(workload) => {
                self.metrics
                    .record_end_to_end(open.start, &outcome, latency);
                self.metrics.record_workload(workload, &outcome, latency);
                let inner_failed = self.inner_failed.remove(&req).is_some();
                if inner_failed && outcome.is_success() {
                    self.metrics.record_absorbed();
                }
                let w = &mut self.workloads[workload as usize];
                if let Load::Closed { think, left } = &w.load {
                    let user = open.parent;
                    let done = left
                        .as_ref()
                        .is_some_and(|l| l.get(user as usize).is_none_or(|&n| n == 0));
                    if !self.stopped && !done {
                        // A user whose request was answered in no time (a local reply of its
                        // own proxy) and who does not think would loop forever at one instant;
                        // like any real client it takes at least a microsecond per request.
                        let mut pause = think.sample(&mut w.rng);
                        if pause.0 == 0 && latency.0 == 0 {
                            pause = proxy_engine::Nanos(MIN_CLIENT_TURN_NS);
                        }
                        self.queue
                            .push(self.now + pause, Event::UserSend { workload, user });
                    }
                }
            }
            None => {
                // A 4xx counts here too: a 404 `NR` or 429 `RL` inside the mesh is a failure
                // even when the caller carries on.
                let hop_failed = outcome.status == 0 || outcome.status >= 400;
                if let (true, Some(root)) = (hop_failed, open.root) {
                    self.inner_failed.insert(root, ());
                }
                if self.stopped {
                    return;
                }
                if matches!(owner, Owner::Gateway { .. }) {
                    return self.relay_done(open.parent, outcome.status);
                }
                let failed = crate::model::call_failed(outcome.status);
                self.call_done(open.parent, open.call, failed);
            }
        }
    }
}
