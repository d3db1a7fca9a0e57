//! Upstream attempts: starting one on the connection pool, the pool's events (connect, send,
//! close, overflow), and the driver's reports on connections and attempts (connected, failed,
//! closed, response head, end, downstream cancel).

use super::*;

impl Proxy {
    pub(super) fn start_attempt(
        &mut self,
        req: RequestId,
        cluster: ClusterId,
        endpoint: EndpointId,
    ) {
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        self.attempts.insert(
            attempt,
            Attempt {
                req,
                cluster,
                endpoint,
                conn: None,
                discard: false,
            },
        );
        let e = endpoint.0 as usize;
        if self.active.len() <= e {
            self.active.resize(e + 1, 0);
        }
        self.active[e] += 1;
        let mut per_try = None;
        if let Some(r) = self.requests.get_mut(&req) {
            r.attempts += 1;
            r.phase = Phase::Trying(attempt);
            r.endpoint = Some(endpoint);
            per_try = r.retry.as_ref().and_then(|p| p.per_try_timeout);
        }
        if let Some(t) = per_try {
            self.timers.after(self.now, t, Timer::PerTry(attempt));
        }
        self.pool.place(cluster, endpoint, attempt);
        self.pool_events();
    }

    /// Turns what the pool asked for into actions and failures.
    pub(super) fn pool_events(&mut self) {
        while let Some(event) = self.pool.poll_event() {
            match event {
                PoolEvent::Connect {
                    conn,
                    cluster,
                    endpoint,
                    http2,
                    opened_for,
                } => {
                    self.conns.insert(conn, (cluster, endpoint));
                    let mirror = opened_for
                        .and_then(|a| self.attempts.get(&a))
                        .is_some_and(|a| a.req.is_mirror_copy());
                    let spec = self.config.clusters().get(cluster.0 as usize);
                    let timeout = spec.map_or(crate::policy::DEFAULT_CONNECT_TIMEOUT, |c| {
                        c.limits.connect_timeout
                    });
                    let tls = spec.and_then(|c| c.tls.clone());
                    self.timers
                        .after(self.now, timeout, Timer::ConnectTimeout(conn));
                    self.actions.push_back(Action::Connect {
                        conn,
                        endpoint,
                        http2,
                        mirror,
                        tls,
                    });
                }
                PoolEvent::Send { attempt, conn } => self.send(attempt, conn),
                PoolEvent::Close { conn } => {
                    self.conns.remove(&conn);
                    self.actions.push_back(Action::CloseConnection { conn });
                }
                PoolEvent::Overflow { attempt } => {
                    let Some(a) = self.end_attempt(attempt) else {
                        continue;
                    };
                    let cluster = a.cluster;
                    self.actions
                        .push_back(Action::Event(EngineEvent::Overflow { cluster }));
                    let headers = vec![(Arc::from("x-envoy-overloaded"), Arc::from("true"))];
                    let flags = ResponseFlags::UPSTREAM_OVERFLOW;
                    self.local_reply(a.req, 503, flags, headers, None);
                }
                PoolEvent::ConnectFailed { attempt } => {
                    if let Some(a) = self.end_attempt(attempt) {
                        self.attempt_failed(a, AttemptFailure::ConnectFailure);
                    }
                }
            }
        }
    }

    pub(super) fn send(&mut self, attempt: AttemptId, conn: ConnId) {
        let Some(a) = self.attempts.get_mut(&attempt) else {
            return;
        };
        a.conn = Some(conn);
        let (req, endpoint) = (a.req, a.endpoint);
        let Some(r) = self.requests.get(&req) else {
            return;
        };
        let head = r.head.clone();
        self.actions.push_back(Action::Send {
            req,
            attempt,
            conn,
            endpoint,
            head,
            try_number: r.attempts,
        });
    }

    /// Forgets an attempt and its share of the endpoint's active count. The request's phase
    /// is left to the caller, which in the same call completes the request or decides its
    /// retry (`attempt_failed`), reading the phase first where it matters.
    pub(super) fn end_attempt(&mut self, attempt: AttemptId) -> Option<Attempt> {
        let a = self.attempts.remove(&attempt)?;
        if let Some(active) = self.active.get_mut(a.endpoint.0 as usize) {
            debug_assert!(*active > 0, "active count underflow");
            *active = active.saturating_sub(1);
        }
        Some(a)
    }

    /// The connection `conn` from an earlier `Action::Connect` is established.
    pub fn handle_connected(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        self.pool.connected(conn);
        self.pool_events();
    }

    /// The connection `conn` could not be established (refused or timed out: both are
    /// Envoy's connect-failure, flag `UF`). Every attempt waiting on its host pool fails.
    pub fn handle_connect_failed(&mut self, now: Time, conn: ConnId, _why: ConnectFailure) {
        self.advance(now);
        let Some((cluster, endpoint)) = self.conns.remove(&conn) else {
            return; // already given up on (connect timeout)
        };
        // A local-origin connect failure counts as a 503 for outlier detection.
        self.outlier_result(cluster, endpoint, 503);
        self.pool.connect_failed(conn);
        self.pool_events();
    }

    /// The upstream closed `conn` (or it broke) outside any attempt's report: it is not used
    /// again. Attempts still on it are reported by the driver as ended (`Reset`).
    pub fn handle_connection_closed(&mut self, now: Time, conn: ConnId) {
        self.advance(now);
        self.conns.remove(&conn);
        self.pool.closed(conn);
        self.pool_events();
    }

    /// The connection `attempt` was sent on turned out to be closed before any byte of the
    /// request went out (an idle keep-alive connection the upstream had closed): the connection
    /// is forgotten and the attempt placed again, as if the pool had seen the close first. Not a
    /// try of its own, not a failure.
    pub fn handle_connection_stale(&mut self, now: Time, conn: ConnId, attempt: AttemptId) {
        self.advance(now);
        self.conns.remove(&conn);
        self.pool.closed(conn);
        self.pool.finished(attempt, false);
        if let Some(a) = self.attempts.get_mut(&attempt) {
            a.conn = None;
            let (cluster, endpoint) = (a.cluster, a.endpoint);
            self.pool.place(cluster, endpoint, attempt);
        }
        self.pool_events();
    }

    /// The response head for `attempt` arrived. A status the retry policy retries (with
    /// retries and retry budget left) is discarded and a retry scheduled; otherwise the
    /// response is streamed downstream at once.
    pub fn handle_response_head(&mut self, now: Time, attempt: AttemptId, head: ResponseHead) {
        self.advance(now);
        let Some(a) = self.attempts.get(&attempt).copied() else {
            return;
        };
        self.outlier_result(a.cluster, a.endpoint, head.status);
        let failure = AttemptFailure::Status(head.status);
        let retriable = self
            .requests
            .get(&a.req)
            .and_then(|r| r.retry.as_ref())
            .is_some_and(|p| p.would_retry(failure));
        if retriable {
            match self.should_retry(a.req, a.cluster, a.endpoint, failure) {
                Verdict::Retry => {
                    // The request is `BackingOff`; this attempt's rest is read and dropped.
                    if let Some(a) = self.attempts.get_mut(&attempt) {
                        a.discard = true;
                    }
                    return;
                }
                Verdict::Final { exhausted: true } => {
                    if let Some(r) = self.requests.get_mut(&a.req) {
                        r.flags |= ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED;
                    }
                }
                Verdict::Final { exhausted: false } => {}
            }
        } else {
            self.release_retry(a.req);
        }
        if let Some(r) = self.requests.get_mut(&a.req) {
            r.phase = Phase::Responding {
                attempt,
                status: head.status,
            };
            if r.mirror.is_some() {
                return; // a copy's answer goes nowhere
            }
            let response_headers = r
                .route
                .and_then(|id| r.config.routes().get(id.0 as usize))
                .and_then(|route| route.response_headers.clone());
            self.actions.push_back(Action::Forward {
                req: a.req,
                attempt,
                response_headers,
            });
        }
    }

    /// The attempt's response ended (or the stream broke).
    pub fn handle_attempt_end(&mut self, now: Time, attempt: AttemptId, end: AttemptEnd) {
        self.advance(now);
        let Some(a) = self.end_attempt(attempt) else {
            return;
        };
        self.release_conn(&a, attempt, end == AttemptEnd::Done);
        if !a.discard {
            let status = self.requests.get(&a.req).and_then(|r| r.phase.status());
            match (end, status) {
                (AttemptEnd::Done | AttemptEnd::DoneAndClosed, Some(status)) => {
                    self.complete(a.req, status, ResponseFlags::NONE)
                }
                (AttemptEnd::Reset, Some(status)) => {
                    self.complete(a.req, status, ResponseFlags::UPSTREAM_REMOTE_RESET)
                }
                // Ended without a response head: the upstream reset or closed on us.
                (_, None) => {
                    self.outlier_result(a.cluster, a.endpoint, 503);
                    self.attempt_failed(a, AttemptFailure::Reset);
                }
            }
        }
        self.pool_events();
    }

    /// Returns a finished attempt's connection to the pool (closing it if it cannot carry
    /// another request) and arms an explicit idle timeout.
    pub(super) fn release_conn(&mut self, a: &Attempt, attempt: AttemptId, reusable: bool) {
        self.pool.finished(attempt, reusable);
        let Some(conn) = a.conn else { return };
        let idle = self
            .config
            .clusters()
            .get(a.cluster.0 as usize)
            .and_then(|c| c.limits.idle_timeout);
        let Some(idle) = idle else {
            return;
        };
        if let Some(served) = self.pool.idle_served(conn) {
            self.timers
                .after(self.now, idle, Timer::IdleTimeout(conn, served));
        }
    }

    /// Resets the attempt in flight of `req` (timeouts, downstream cancel): the driver resets
    /// the stream; an HTTP/1.1 connection mid-request cannot be reused. A local-origin timeout
    /// counts as a 504 for outlier detection when `timed_out`.
    pub(super) fn cancel_attempt(
        &mut self,
        attempt: AttemptId,
        timed_out: bool,
    ) -> Option<Attempt> {
        let a = self.end_attempt(attempt)?;
        self.actions.push_back(Action::CancelAttempt { attempt });
        self.release_conn(&a, attempt, false);
        if timed_out && a.conn.is_some() {
            self.outlier_result(a.cluster, a.endpoint, 504);
        }
        Some(a)
    }

    /// The downstream client went away: abandon the request (flag `DC`).
    pub fn handle_downstream_cancel(&mut self, now: Time, req: RequestId) {
        self.advance(now);
        let Some(phase) = self.requests.get(&req).map(|r| r.phase) else {
            return;
        };
        let (attempt, status) = (phase.attempt(), phase.status());
        if let Some(attempt) = attempt {
            self.cancel_attempt(attempt, false);
        }
        let flags = ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION;
        self.complete(req, status.unwrap_or(0), flags);
        self.pool_events();
    }
}
