//! Mirrored copies (Istio's `mirror`, Envoy's `request_mirror_policies`).
//!
//! Envoy's router hands each copy to its shadow writer, an async client on the mirror
//! cluster: the copy goes through that cluster's connection pool and circuit breakers, its
//! results feed that cluster's outlier detector, it is never retried, and its answer is
//! discarded. Its timeout is the route's (`source/common/router/router.cc`,
//! `shadowWriter().shadow(..., options.setTimeout(timeout_.global_timeout_))`). Envoy waits
//! without limit when the route has none; meshtwin gives such a copy `MIRROR_TIMEOUT`, so a
//! hung mirror target can never hold a connection or a driver's task for ever.
//!
//! A copy is a request of the engine's own (an id from `RequestId::MIRROR_COPY` up) with no
//! downstream: no `LocalReply` or `Forward` for it, and one `MirrorDone` in place of
//! `Complete`. Its deadline holds even after a response head arrived.

use super::*;

/// The deadline of a mirrored copy whose route has no timeout: Envoy's default route timeout
/// (`RouteAction.timeout`, 15 s), which Istio turns off for the primary.
pub const MIRROR_TIMEOUT: Nanos = Nanos::from_secs(15);

impl Proxy {
    /// Makes a copy of `parent` (routed under `config`, forwarded as `head`) for `target`
    /// (cluster and host) and starts its one attempt; `route_timeout` is the route's, the
    /// copy's deadline.
    pub(super) fn start_mirror(
        &mut self,
        parent: RequestId,
        config: &Arc<CompiledMesh>,
        (cluster, endpoint): (ClusterId, EndpointId),
        head: &RequestHead,
        route_timeout: Option<Nanos>,
    ) {
        let copy = RequestId(RequestId::MIRROR_COPY | self.next_mirror);
        self.next_mirror += 1;
        let timeout = route_timeout.unwrap_or(MIRROR_TIMEOUT);
        let mut r = Request::new(config.clone(), head.clone(), None, None);
        r.cluster = Some(cluster);
        r.deadline = Some(self.now + timeout);
        r.mirror = Some(self.now);
        self.requests.insert(copy, r);
        self.mirrors_open += 1;
        self.actions.push_back(Action::Mirror { req: parent, copy });
        self.timers
            .after(self.now, timeout, Timer::RouteTimeout(copy));
        self.start_attempt(copy, cluster, endpoint);
    }

    /// The copy `r` (made at `made`) is over: reports it to the driver.
    pub(super) fn mirror_done(
        &mut self,
        copy: RequestId,
        r: &Request,
        made: Time,
        status: u16,
        flags: ResponseFlags,
    ) {
        self.mirrors_open -= 1;
        let destination = r
            .endpoint
            .and_then(|e| r.config.endpoints().get(e.0 as usize))
            .map(|e| e.destination);
        let Some(destination) = destination else {
            debug_assert!(false, "a copy always has its host");
            return;
        };
        self.actions.push_back(Action::MirrorDone {
            copy,
            destination,
            status,
            flags,
            latency: self.now.since(made),
        });
    }
}
