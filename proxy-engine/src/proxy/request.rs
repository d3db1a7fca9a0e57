//! A downstream request's path through the proxy: route match, local rate limits, fault
//! injection, direct responses and redirects, the weighted cluster pick and dispatch to an
//! upstream attempt; local replies and the request's one completion.

use super::balance::chance;
use super::*;
use crate::gateway::{GatewayRoute, Listener};

impl Proxy {
    /// A new downstream request `req` (an id not already open on this proxy).
    pub fn handle_request(&mut self, now: Time, req: RequestId, head: RequestHead) {
        self.start_request(now, req, head, None);
    }

    /// A new downstream request `req` that came in on a gateway `listener` (a gateway proxy:
    /// routed by the gateways that select it, see `crate::gateway`).
    pub fn handle_gateway_request(
        &mut self,
        now: Time,
        req: RequestId,
        head: RequestHead,
        listener: Listener,
    ) {
        self.start_request(now, req, head, Some(listener));
    }

    fn start_request(
        &mut self,
        now: Time,
        req: RequestId,
        mut head: RequestHead,
        listener: Option<Listener>,
    ) {
        self.advance(now);
        debug_assert!(
            !self.requests.contains_key(&req),
            "request id reused: {req:?}"
        );
        debug_assert!(!req.is_mirror_copy(), "driver id in the copies' range");
        // Routed and forwarded with the path normalized, as Istio's default asks (see `path`).
        if let Cow::Owned(normal) = crate::path::normalize(&head.path) {
            head.path = Arc::from(normal);
        }
        // A gateway is the mesh's edge: the headers that steer Envoy (`x-envoy-max-retries`,
        // `x-envoy-upstream-rq-timeout-ms`, `x-envoy-attempt-count`…) are the proxies' own,
        // so a client's are removed before routing, as Envoy sanitizes external requests
        // (docs: configuration/http/http_conn_man/header_sanitizing).
        if matches!(self.role, ProxyRole::Gateway { .. })
            && head.headers.iter().any(|(n, _)| steers_envoy(n))
        {
            let kept: Vec<(Arc<str>, Arc<str>)> = (head.headers.iter())
                .filter(|(n, _)| !steers_envoy(n))
                .cloned()
                .collect();
            head.headers = Arc::from(kept);
        }
        // A request that matches nothing is still reported under a route, its host's
        // `(no route)` one, so a 404 `NR` at any hop shows in the route table.
        let (matched, reported) = match self.match_route(&head, listener) {
            Ok(m) => (Some(m), Some(m.0)),
            Err(miss) => (None, miss),
        };
        let block = matched.and_then(|m| m.1);
        let r = Request::new(self.config.clone(), head, reported, block);
        self.requests.insert(req, r);
        let Some((route, _)) = matched else {
            return self.local_reply(req, 404, ResponseFlags::NO_ROUTE_FOUND, Vec::new(), None);
        };
        if let Some(status) = self.rate_limited(route) {
            let headers = vec![(Arc::from("x-envoy-ratelimited"), Arc::from("true"))];
            return self.local_reply(req, status, ResponseFlags::RATE_LIMITED, headers, None);
        }
        let Some(fault) = self.config.route(route).fault else {
            return self.dispatch(req);
        };
        // Envoy's fault filter: the delay and the abort are decided independently.
        let delay = fault.delay.filter(|(_, ppm)| self.draw(*ppm));
        let abort = fault
            .abort
            .filter(|(_, ppm)| self.draw(*ppm))
            .map(|(s, _)| s);
        match (delay, abort) {
            (Some((d, _)), abort) => {
                if let Some(r) = self.requests.get_mut(&req) {
                    r.flags |= ResponseFlags::DELAY_INJECTED;
                    r.phase = Phase::Delayed { abort };
                }
                self.timers.after(now, d, Timer::FaultDelay(req));
            }
            (None, Some(status)) => {
                self.local_reply(req, status, ResponseFlags::FAULT_INJECTED, Vec::new(), None)
            }
            (None, None) => self.dispatch(req),
        }
    }

    /// The local rate limits (the proxy's, then the route's): `Some(status)` when a bucket is
    /// empty.
    pub(super) fn rate_limited(&mut self, route: RouteId) -> Option<u16> {
        let now = self.now;
        if let Some(b) = &mut self.bucket {
            if !b.try_take(now) {
                return Some(b.spec().status);
            }
        }
        let spec = self.config.route(route).rate_limit?;
        let b = self
            .route_buckets
            .entry(route)
            .or_insert_with(|| TokenBucket::new(spec, now));
        (!b.try_take(now)).then_some(spec.status)
    }

    /// True with probability `ppm` / 1 000 000; no draw for 0 % or 100 %.
    pub(super) fn draw(&mut self, ppm: u32) -> bool {
        chance(&mut self.rng, ppm)
    }

    /// Where `head` would go, without sending anything: the matched route, the weighted
    /// cluster pick and the load balancer's endpoint pick — the same functions the request
    /// path uses (fault injection and mirrors aside). Like a real pick it advances the
    /// balancer's state (round-robin cursor, RNG).
    pub fn decide(&mut self, head: &RequestHead) -> Decision {
        self.decide_at(head, None, None)
    }

    /// `decide` at a gateway `listener` (`None`: as a sidecar), with the weighted pick's draw
    /// fixed by `dice` (`dice % total weight`, as Envoy's `router_check_tool` `random_value`;
    /// `None`: drawn from the RNG).
    pub fn decide_at(
        &mut self,
        head: &RequestHead,
        listener: Option<Listener>,
        dice: Option<u64>,
    ) -> Decision {
        let mut normal = Cow::Borrowed(head);
        if let Cow::Owned(path) = crate::path::normalize(&head.path) {
            normal.to_mut().path = Arc::from(path);
        }
        let head = &*normal;
        let Ok((route, block)) = self.match_route(head, listener) else {
            return Decision::NoRoute;
        };
        let config = self.config.clone();
        let compiled = config.route(route);
        let RouteAction::Forward(clusters) = &compiled.action else {
            return Decision::LocalReply { route };
        };
        let Some(cluster) = self.pick_cluster_with(clusters, dice) else {
            return Decision::NoCluster { route };
        };
        let block = block.and_then(|b| compiled.matches.get(b as usize));
        let forwarded = forwarded_head(head, compiled, block);
        match self.pick_endpoint(&config, cluster, &forwarded) {
            Some(endpoint) => Decision::Endpoint {
                route,
                cluster,
                endpoint,
            },
            None => Decision::NoEndpoint { route, cluster },
        }
    }

    /// First route (in order) of the request's host with a matching block, and that block;
    /// at a gateway `listener`, of the virtual host the gateways give. `Err` holds the route a
    /// miss is reported under.
    pub(super) fn match_route(
        &self,
        head: &RequestHead,
        listener: Option<Listener>,
    ) -> Result<(RouteId, Option<u32>), Option<RouteId>> {
        let Some(listener) = listener else {
            let Some(table) = self.config.host_table(head.host()) else {
                return match self.config.block_all {
                    Some(route) => Ok((route, None)),
                    None => Err(self.config.unknown_host),
                };
            };
            return table.find(&MatchInput::new(head)).ok_or(table.miss);
        };
        let labels = match &self.role {
            ProxyRole::Gateway { labels, .. } => labels,
            _ => return Err(self.config.unknown_host),
        };
        let gateways = (self.config.gateways().iter()).filter(|g| g.selects(labels));
        match crate::gateway::route(gateways, listener.port, &head.authority, listener.tls) {
            GatewayRoute::NoListener => Err(self.config.unknown_host),
            GatewayRoute::NoVirtualHost { miss } => Err(Some(miss)),
            GatewayRoute::RedirectToHttps { route } => Ok((route, None)),
            GatewayRoute::Table { table, miss } => table
                .find(&MatchInput::new(head))
                .ok_or(Some(table.miss.unwrap_or(miss))),
        }
    }

    /// Carries out the matched route's action for `req` (after any fault delay).
    pub(super) fn dispatch(&mut self, req: RequestId) {
        let Some((config, route_id, block, head)) = self
            .requests
            .get(&req)
            .and_then(|r| Some((r.config.clone(), r.route?, r.block, r.head.clone())))
        else {
            return;
        };
        let route = config.route(route_id);
        let clusters = match &route.action {
            RouteAction::Redirect(redirect) => {
                let location = redirect_location(&head, redirect);
                let headers = vec![(Arc::from("location"), Arc::from(location))];
                return self.local_reply(req, redirect.status, ResponseFlags::NONE, headers, None);
            }
            RouteAction::Direct { status, body } => {
                return self.local_reply(
                    req,
                    *status,
                    ResponseFlags::NONE,
                    Vec::new(),
                    body.clone(),
                );
            }
            RouteAction::Forward(clusters) => clusters,
        };
        let Some(cluster) = self.pick_cluster(clusters) else {
            return self.local_reply(req, 503, ResponseFlags::NO_CLUSTER_FOUND, Vec::new(), None);
        };
        let block = block.and_then(|b| route.matches.get(b as usize));
        let head = forwarded_head(&head, route, block).into_owned();
        for mirror in &route.mirrors {
            if let Some((cluster, endpoint)) = self.pick_mirror(&config, mirror, &head) {
                self.start_mirror(req, &config, (cluster, endpoint), &head, route.timeout);
            }
        }
        let endpoint = self.pick_endpoint(&config, cluster, &head);
        if let Some(r) = self.requests.get_mut(&req) {
            r.cluster = Some(cluster);
            r.head = head;
            if let Some(policy) = &route.retry {
                r.retries_left = policy.num_retries;
                r.interval = policy.backoff_base;
                r.retry = Some(policy.clone());
            }
        }
        // The route timeout starts once the request is routed: fault delays do not count.
        if let Some(t) = route.timeout {
            self.timers.after(self.now, t, Timer::RouteTimeout(req));
            if let Some(r) = self.requests.get_mut(&req) {
                r.deadline = Some(self.now + t);
            }
        }
        match endpoint {
            Some(endpoint) => self.start_attempt(req, cluster, endpoint),
            None => self.local_reply(
                req,
                503,
                ResponseFlags::NO_HEALTHY_UPSTREAM,
                Vec::new(),
                None,
            ),
        }
    }

    /// The route timeout: whatever the request is doing (waiting for a connection or a
    /// response, backing off), it ends with 504 `UT`, never retried.
    pub(super) fn route_timeout(&mut self, req: RequestId) {
        let Some(r) = self.requests.get(&req) else {
            return;
        };
        if r.phase.status().is_some() && r.mirror.is_none() {
            return; // the response is already on its way downstream
        }
        if let Some(attempt) = r.phase.attempt() {
            self.cancel_attempt(attempt, true);
        }
        let flags = ResponseFlags::UPSTREAM_REQUEST_TIMEOUT;
        self.local_reply(req, 504, flags, Vec::new(), None);
        self.pool_events();
    }

    /// Answers `req` locally (the body and headers finished by `local_reply::finish`), then
    /// completes it.
    pub(super) fn local_reply(
        &mut self,
        req: RequestId,
        status: u16,
        flags: ResponseFlags,
        headers: Vec<(Arc<str>, Arc<str>)>,
        body: Option<Arc<str>>,
    ) {
        let all = flags
            | self
                .requests
                .get(&req)
                .map_or(ResponseFlags::NONE, |r| r.flags);
        if !req.is_mirror_copy() {
            let (headers, body) = crate::local_reply::finish(all, headers, body);
            self.actions.push_back(Action::LocalReply {
                req,
                status,
                flags: all,
                headers,
                body,
            });
        }
        self.complete(req, status, flags);
    }

    /// Emits the one `Complete` for `req` (`MirrorDone` for a copy) and forgets it (releasing
    /// any retry slot).
    pub(super) fn complete(&mut self, req: RequestId, status: u16, flags: ResponseFlags) {
        let Some(r) = self.requests.remove(&req) else {
            debug_assert!(false, "completing unknown request {req:?}");
            return;
        };
        if let Some(made) = r.mirror {
            return self.mirror_done(req, &r, made, status, flags | r.flags);
        }
        if let Some(c) = r.retry_slot {
            if let Some(slots) = self.retries_active.get_mut(c.0 as usize) {
                *slots = slots.saturating_sub(1);
            }
        }
        let outcome = Outcome {
            status,
            flags: flags | r.flags,
            attempts: r.attempts,
            route: r.route,
            cluster: r.cluster,
            destination: r
                .endpoint
                .and_then(|e| r.config.endpoints().get(e.0 as usize))
                .map(|e| e.destination),
            endpoint: r.endpoint,
            generation: u32::try_from(r.config.generation()).unwrap_or(u32::MAX),
        };
        self.actions.push_back(Action::Complete { req, outcome });
    }
}

/// An `x-envoy-` header (any case).
fn steers_envoy(name: &str) -> bool {
    (name.as_bytes().get(..8)).is_some_and(|p| p.eq_ignore_ascii_case(b"x-envoy-"))
}
