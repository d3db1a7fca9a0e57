//! Engine actions into the driver's work: connects, sends, closes, replies and mirrored copies
//! (`drain`), the upstream requests they carry, and each request's one recorded outcome.

use super::*;

impl Shared {
    /// Performs every queued engine action that needs no waiting, and returns the socket work.
    ///
    /// `now` is the time of the input that led here (one clock read per engine call).
    /// `answer` is the upstream response just handed to the engine, if any: the engine
    /// forwards it (or drops it for a retry) in the actions this drain performs.
    pub(super) fn drain(
        &self,
        st: &mut State,
        now: Time,
        mut answer: Option<(AttemptId, Answer)>,
    ) -> Todo {
        let mut work = Todo::default();
        while let Some(action) = st.engine.poll_action() {
            match action {
                Action::Connect {
                    conn,
                    endpoint,
                    http2,
                    tls,
                    ..
                } => {
                    let originate = tls.map(|t| self.originate(st, &t, http2));
                    match (Self::addr(st, endpoint), originate) {
                        // TLS that cannot be set up (a bad file): the handshake cannot happen.
                        (_, Some(None)) => {
                            st.engine
                                .handle_connect_failed(now, conn, ConnectFailure::Tls);
                        }
                        (Some(addr), tls) => {
                            st.conns.insert(conn, None);
                            let (tx, abort) = tokio::sync::oneshot::channel();
                            st.connecting.insert(conn, tx);
                            work.push(Work::Connect {
                                conn,
                                addr,
                                http2,
                                tls: tls.flatten(),
                                abort,
                            });
                        }
                        (None, _) => {
                            st.engine
                                .handle_connect_failed(now, conn, ConnectFailure::Refused);
                        }
                    }
                }
                Action::Send {
                    req,
                    attempt,
                    conn,
                    head,
                    try_number,
                    ..
                } => {
                    // HTTP/1.1: take the connection for the exchange; HTTP/2: share it.
                    let mut sender = st.conns.get_mut(&conn).and_then(|slot| match slot {
                        Some(s) => s.share().or_else(|| slot.take()),
                        None => None,
                    });
                    if sender.as_mut().is_some_and(Sender::is_closed) {
                        // The upstream closed this idle connection: the engine places the
                        // attempt again (Envoy's pool drops such connections when they close).
                        st.conns.remove(&conn);
                        st.engine.handle_connection_stale(now, conn, attempt);
                        continue;
                    }
                    let count = [(ATTEMPT_COUNT, attempt_count(try_number))];
                    let request = match forwarded(st, req, &head, try_number, &count) {
                        Some(r) => Some(r),
                        None => outgoing(st, req, &head, &count),
                    };
                    match (sender, request) {
                        (Some(sender), Some(request)) => {
                            st.attempts.insert(attempt, sender.cancel_handle());
                            work.push(Work::Exchange(Box::new(Exchange {
                                attempt,
                                conn,
                                sender,
                                request,
                            })));
                        }
                        // No usable connection or an unsendable head: a reset, so the engine
                        // completes the request (503 UR) rather than waiting forever.
                        _ => {
                            st.engine
                                .handle_attempt_end(now, attempt, AttemptEnd::Reset);
                        }
                    }
                }
                Action::Mirror { req, copy } => {
                    // The copy's sends carry the request's body: it is kept under the copy's
                    // id until the copy is done.
                    if let Some(p) = st.reqs.get(&req) {
                        let kept = Pending {
                            body: p.body.clone(),
                            start: now,
                            start_wall: None,
                            head: p.head.clone(),
                            parts: None,
                        };
                        st.reqs.insert(copy, kept);
                    }
                }
                Action::MirrorDone {
                    copy,
                    destination,
                    status,
                    flags,
                    latency,
                } => {
                    st.reqs.remove(&copy);
                    // Destination ids are stable across generations.
                    st.metrics
                        .record_mirror(destination, status, flags, latency);
                }
                Action::CancelAttempt { attempt } => {
                    // The exchange ends at once; its task finds the attempt gone.
                    if let Some(c) = st.attempts.remove(&attempt) {
                        c.cancel();
                    }
                    answer.take_if(|(a, _)| *a == attempt);
                }
                Action::CloseConnection { conn } => {
                    st.conns.remove(&conn);
                    if let Some(abort) = st.connecting.remove(&conn) {
                        let _ = abort.send(());
                    }
                }
                Action::Forward {
                    req,
                    attempt,
                    response_headers,
                } => {
                    if let Some((_, (parts, body))) = answer.take_if(|(a, _)| *a == attempt) {
                        let resp =
                            http_util::forward_response(parts, body, response_headers.as_deref());
                        reply(st, req, resp);
                    }
                }
                Action::LocalReply {
                    req,
                    status,
                    headers,
                    body,
                    ..
                } => {
                    let resp = http_util::local_reply(status, &headers, &body);
                    reply(st, req, resp);
                }
                Action::Event(event) => {
                    st.metrics.record_event(now, &event);
                }
                Action::Complete { req, outcome } => self.complete(st, req, outcome, now),
            }
        }
        self.publish(st);
        work
    }

    pub(super) fn publish(&self, st: &mut State) {
        let g = &self.gauges;
        g.active_requests
            .store(st.engine.open_requests() as u64, Ordering::Relaxed);
        g.upstream_connections
            .store(st.engine.open_connections() as u64, Ordering::Relaxed);
        let want = st.engine.poll_timeout();
        if want != st.armed {
            st.armed = want;
            self.timer.notify_one();
        }
    }

    pub(super) fn complete(&self, st: &mut State, req: RequestId, outcome: Outcome, now: Time) {
        let Some(p) = st.reqs.remove(&req) else {
            return;
        };
        if !st.replies.is_empty() && matches!(st.replies.get(&req), Some(Reply::Waiting(_))) {
            // Ended with no response (none is coming now): the waiting task gets `None`.
            st.replies.remove(&req);
        }
        let latency = now.since(p.start);
        // The outcome names its route by the generation it was routed with; the recorder
        // knows every generation this proxy ran.
        st.metrics.record_hop(p.start, &outcome, latency);
        st.metrics.record_end_to_end(p.start, &outcome, latency);
        if let Some(probe) = &self.opts.probe {
            let route = (outcome.route)
                .filter(|_| probe.watches_routes())
                .and_then(|r| st.metrics.route_name(outcome.generation, r.0));
            probe.record_hop(&outcome, route, latency);
        }
        if self.opts.access_log {
            let upstream = outcome.endpoint.and_then(|e| Self::addr(st, e));
            let line = crate::access_log::line(
                p.start_wall,
                &p.head,
                &outcome,
                upstream,
                latency,
                &self.opts.name,
            );
            println!("{line}");
        }
    }
}

/// The upstream request for `head`, carrying `req`'s body and `extra` headers.
pub(super) fn outgoing(
    st: &State,
    req: RequestId,
    head: &RequestHead,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> Option<http::Request<Body>> {
    let body = st
        .reqs
        .get(&req)
        .map(|p| p.body.clone())
        .unwrap_or_default();
    http_util::upstream_request(head, body, extra)
}

/// The upstream request made from the downstream parts, for a first try whose head the engine
/// left unchanged (see `Pending::parts`).
pub(super) fn forwarded(
    st: &mut State,
    req: RequestId,
    head: &RequestHead,
    try_number: u32,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> Option<http::Request<Body>> {
    let p = st.reqs.get_mut(&req)?;
    if try_number != 1 || !p.head.is(head) {
        return None;
    }
    let parts = p.parts.take()?;
    http_util::forward_request(parts, head, p.body.clone(), extra)
}

/// Hands `req`'s downstream response to its task: to the waiting one, or kept for it to take.
pub(super) fn reply(st: &mut State, req: RequestId, resp: Response<Body>) {
    if st.ready.as_ref().is_some_and(|(r, _)| *r == req) {
        return; // answered already: the engine answers once
    }
    if !st.replies.is_empty() {
        match st.replies.remove(&req) {
            Some(Reply::Waiting(tx)) => {
                let _ = tx.send(resp); // the downstream may have gone
                return;
            }
            Some(answered @ Reply::Ready(_)) => {
                st.replies.insert(req, answered); // answered already
                return;
            }
            None => {}
        }
    }
    if st.reqs.contains_key(&req) {
        match st.ready {
            None => st.ready = Some((req, resp)),
            Some(_) => {
                st.replies.insert(req, Reply::Ready(resp));
            }
        }
    }
}
