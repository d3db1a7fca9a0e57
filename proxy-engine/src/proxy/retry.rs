//! Retries: whether a failed attempt is retried (Envoy's `shouldRetry` order: policy, retries
//! left, the retry circuit breaker or budget), the jittered backoff, and the retry itself.

use super::*;

impl Proxy {
    /// An attempt failed without a usable response: retry, or answer with the failure.
    pub(super) fn attempt_failed(&mut self, a: Attempt, failure: AttemptFailure) {
        match self.should_retry(a.req, a.cluster, a.endpoint, failure) {
            Verdict::Retry => {}
            Verdict::Final { exhausted } => {
                let (status, mut flags) = match failure {
                    AttemptFailure::ConnectFailure => {
                        (503, ResponseFlags::UPSTREAM_CONNECTION_FAILURE)
                    }
                    AttemptFailure::Reset => (503, ResponseFlags::UPSTREAM_REMOTE_RESET),
                    AttemptFailure::PerTryTimeout => (504, ResponseFlags::UPSTREAM_REQUEST_TIMEOUT),
                    AttemptFailure::Status(s) => (s, ResponseFlags::NONE),
                };
                if exhausted {
                    flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
                }
                self.local_reply(a.req, status, flags, Vec::new(), None);
            }
        }
    }

    /// Envoy's `shouldRetry`: release the previous retry slot; not retriable → final; no
    /// retries left → final with `URX`; the retry breaker (`maxRetries` or the budget) full →
    /// final, counted as a retry overflow; else take a slot and arm the jittered backoff.
    pub(super) fn should_retry(
        &mut self,
        req: RequestId,
        cluster: ClusterId,
        endpoint: EndpointId,
        failure: AttemptFailure,
    ) -> Verdict {
        self.release_retry(req);
        let Some(r) = self.requests.get_mut(&req) else {
            return Verdict::Final { exhausted: false };
        };
        let Some(policy) = r.retry.clone().filter(|p| p.would_retry(failure)) else {
            return Verdict::Final { exhausted: false };
        };
        if r.retries_left == 0 {
            return Verdict::Final { exhausted: true };
        }
        r.retries_left -= 1;
        let config = r.config.clone();
        let Some(c) = config.clusters().get(cluster.0 as usize) else {
            return Verdict::Final { exhausted: false };
        };
        let counts = self.pool.counts(cluster);
        let allowed = match c.budget {
            Some(b) => b.allowed(counts.active + counts.pending),
            None => c.limits.max_retries,
        };
        let i = cluster.0 as usize;
        if self.retries_active.len() <= i {
            self.retries_active.resize(i + 1, 0);
        }
        let slots = &mut self.retries_active[i];
        if *slots >= allowed {
            self.actions
                .push_back(Action::Event(EngineEvent::RetryOverflow { cluster }));
            return Verdict::Final { exhausted: false };
        }
        *slots += 1;
        let Some(r) = self.requests.get_mut(&req) else {
            return Verdict::Final { exhausted: false };
        };
        r.retry_slot = Some(cluster);
        r.phase = Phase::BackingOff;
        if policy.previous_hosts {
            r.tried.push(endpoint);
        }
        let interval = r.interval;
        r.interval = policy.next_interval(interval);
        let delay = Nanos(self.retry_rng.gen_range(0..interval.0.max(1)));
        self.timers.at(self.now + delay, Timer::Backoff(req));
        self.actions
            .push_back(Action::Event(EngineEvent::Retry { cluster }));
        Verdict::Retry
    }

    /// Gives back `req`'s outstanding-retry slot, if it holds one.
    pub(super) fn release_retry(&mut self, req: RequestId) {
        if let Some(r) = self.requests.get_mut(&req) {
            if let Some(cluster) = r.retry_slot.take() {
                if let Some(slots) = self.retries_active.get_mut(cluster.0 as usize) {
                    debug_assert!(*slots > 0, "retry slot underflow");
                    *slots = slots.saturating_sub(1);
                }
            }
        }
    }

    /// A backoff ended: a new try, preferring hosts not tried before (up to the policy's
    /// re-pick limit; not under consistent hashing).
    pub(super) fn retry_now(&mut self, req: RequestId) {
        let Some(r) = self.requests.get_mut(&req) else {
            return;
        };
        if r.phase != Phase::BackingOff {
            return;
        }
        r.phase = Phase::Matched;
        let (Some(cluster), head, config) = (r.cluster, r.head.clone(), r.config.clone()) else {
            return;
        };
        let repicks = r
            .retry
            .as_ref()
            .filter(|p| p.previous_hosts)
            .map_or(0, |p| p.host_selection_max_attempts);
        let hashing = config
            .clusters()
            .get(cluster.0 as usize)
            .is_some_and(|c| matches!(c.lb, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }));
        let mut endpoint = self.pick_endpoint(&config, cluster, &head);
        if !hashing {
            for _ in 0..repicks {
                let tried = self
                    .requests
                    .get(&req)
                    .is_some_and(|r| endpoint.is_some_and(|e| r.tried.contains(&e)));
                if !tried {
                    break;
                }
                endpoint = self.pick_endpoint(&config, cluster, &head);
            }
        }
        match endpoint {
            Some(endpoint) => self.start_attempt(req, cluster, endpoint),
            None => {
                let flags = ResponseFlags::NO_HEALTHY_UPSTREAM;
                self.local_reply(req, 503, flags, Vec::new(), None)
            }
        }
    }
}
