//! The engine's retry backoff and outlier detection, driven directly through the sans-IO
//! contract: the jittered backoff stays inside Envoy's bounds with the right mean, and a host
//! failing five times in a row is ejected on the fifth failure and returns on the first
//! interval tick after base × k.

use proxy_engine::config::{
    Destination, DestinationRule, HttpRetry, HttpRoute, LoadBalancerSettings, OutlierDetection,
    RouteDestination, SimpleLb, TrafficPolicy, VirtualService,
};
use proxy_engine::harness::registry;
use proxy_engine::{
    Action, AttemptEnd, CompiledMesh, ConnectFailure, EngineEvent, MeshConfig, Nanos, Proxy,
    ProxyRole, RequestHead, RequestId, ResponseHead, Time,
};
use std::sync::Arc;

fn proxy(endpoints: u32, route: HttpRoute, policy: Option<TrafficPolicy>) -> Proxy {
    let reg = registry(&[("backend", &[("v1", endpoints)])]);
    let config = MeshConfig {
        gateways: Vec::new(),
        service_entries: Vec::new(),
        outbound_traffic_policy: None,
        virtual_services: vec![VirtualService {
            name: None,
            namespace: None,
            gateways: Vec::new(),
            hosts: vec!["backend".into()],
            http: vec![HttpRoute {
                route: vec![RouteDestination {
                    destination: Destination {
                        host: "backend".into(),
                        subset: None,
                        port: None,
                    },
                    weight: None,
                }],
                ..route
            }],
        }],
        destination_rules: vec![DestinationRule {
            host: "backend".into(),
            traffic_policy: policy,
            subsets: Vec::new(),
        }],
        local_rate_limit: None,
    };
    let mesh = CompiledMesh::compile(&config, &reg).expect("compiles");
    let role = ProxyRole::Client {
        name: "test".into(),
    };
    Proxy::new(Arc::new(mesh), role, 11)
}

fn drain(p: &mut Proxy) -> Vec<Action> {
    std::iter::from_fn(|| p.poll_action()).collect()
}

#[test]
fn backoff_is_uniform_below_the_doubling_interval() {
    // 5 retries on connect failures; every connect is refused at once. The gap between a
    // failure and the next connect is retry n's backoff: uniform in
    // [0, min(25 ms · 2^(n−1), 250 ms)), mean half of that.
    let route = HttpRoute {
        retries: Some(HttpRetry {
            attempts: 5,
            retry_on: Some("connect-failure".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut p = proxy(1, route, None);
    let requests = 3000u64;
    let mut delays: Vec<Vec<f64>> = vec![Vec::new(); 5];
    let mut now = Time::ZERO;
    for id in 0..requests {
        p.handle_request(now, RequestId(id), RequestHead::get("backend", "/"));
        let mut retry = 0usize;
        let mut failed_at = now;
        loop {
            let actions = drain(&mut p);
            if actions.iter().any(|a| matches!(a, Action::Complete { .. })) {
                break;
            }
            if let Some(conn) = actions.iter().find_map(|a| match a {
                Action::Connect { conn, .. } => Some(*conn),
                _ => None,
            }) {
                if retry > 0 {
                    delays[retry - 1].push(now.since(failed_at).0 as f64 / 1e6);
                }
                p.handle_connect_failed(now, conn, ConnectFailure::Refused);
                failed_at = now;
                retry += 1;
                continue;
            }
            now = now.max(p.poll_timeout().expect("a backoff is armed"));
            p.handle_timeout(now);
        }
        assert_eq!(retry, 6, "1 try + 5 retries");
        now = now + Nanos::from_secs(1);
    }
    for (n, d) in delays.iter().enumerate() {
        let interval = (25.0 * 2f64.powi(n as i32)).min(250.0);
        assert_eq!(d.len() as u64, requests);
        assert!(
            d.iter().all(|x| (0.0..interval).contains(x)),
            "retry {}: outside [0, {interval})",
            n + 1
        );
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        // Uniform: sd = interval / √12; the mean of N draws is within 4 sd / √N.
        let tol = 4.0 * interval / 12f64.sqrt() / (requests as f64).sqrt();
        assert!(
            (mean - interval / 2.0).abs() < tol,
            "retry {}: mean {mean:.3} ms, expected {:.3} ± {tol:.3}",
            n + 1,
            interval / 2.0
        );
    }
}

#[test]
fn fifth_consecutive_5xx_ejects_and_the_host_returns_after_base_times_k() {
    let policy = TrafficPolicy {
        load_balancer: Some(LoadBalancerSettings {
            simple: Some(SimpleLb::RoundRobin),
            consistent_hash: None,
        }),
        outlier_detection: Some(OutlierDetection::default()), // 5, 10 s, 30 s, 10 %
        ..Default::default()
    };
    let route = HttpRoute {
        retries: Some(HttpRetry::default()), // attempts 0: retries off
        ..Default::default()
    };
    let mut p = proxy(10, route, Some(policy));
    let bad = proxy_engine::EndpointId(3);
    let mut now;
    let mut failures = 0;
    let mut ejected_at = None;
    let mut picks_while_ejected = 0;
    let mut returned_at = None;
    for id in 0..2000u64 {
        now = Time(id * 50_000_000); // a request every 50 ms
        p.handle_timeout(now);
        for a in drain(&mut p) {
            if let Action::Event(EngineEvent::Unejected { endpoint, .. }) = a {
                assert_eq!(endpoint, bad);
                returned_at.get_or_insert(now);
            }
        }
        p.handle_request(now, RequestId(id), RequestHead::get("backend", "/"));
        let mut actions = drain(&mut p);
        if let Some(Action::Connect { conn, .. }) = actions.first().cloned() {
            p.handle_connected(now, conn);
            actions = drain(&mut p);
        }
        let Some((attempt, endpoint)) = actions.iter().find_map(|a| match a {
            Action::Send {
                attempt, endpoint, ..
            } => Some((*attempt, *endpoint)),
            _ => None,
        }) else {
            panic!("expected a send: {actions:?}");
        };
        if ejected_at.is_some() && returned_at.is_none() && endpoint == bad {
            picks_while_ejected += 1;
        }
        let status = if endpoint == bad { 500 } else { 200 };
        if endpoint == bad {
            failures += 1;
        }
        p.handle_response_head(now, attempt, ResponseHead { status });
        p.handle_attempt_end(now, attempt, AttemptEnd::Done);
        for a in drain(&mut p) {
            if let Action::Event(EngineEvent::Ejected { endpoint, .. }) = a {
                assert_eq!(endpoint, bad);
                assert_eq!(failures, 5, "ejected on the fifth consecutive 5xx");
                ejected_at.get_or_insert(now);
            }
        }
        p.check_invariants().expect("invariants");
        if returned_at.is_some() {
            break;
        }
    }
    let ejected_at = ejected_at.expect("ejected");
    let returned_at = returned_at.expect("returned");
    assert_eq!(picks_while_ejected, 0, "an ejected host gets no traffic");
    // Ticks every 10 s from time zero; back on the first tick at least 30 s (base × 1) later.
    let due = ejected_at + Nanos::from_secs(30);
    let tick = Nanos::from_secs(10).0;
    let first_tick = Time(due.0.div_ceil(tick) * tick);
    assert!(returned_at >= first_tick && returned_at.since(first_tick) < Nanos::from_millis(50));
}
