//! Resilience on real sockets through the live proxy: retries recover a 30 % per-try error
//! rate as 1 − p³ predicts, a route timeout answers 504 `UT`, pool limits answer 503 `UO` with
//! `x-envoy-overloaded`, outlier detection ejects a failing upstream, and a local rate limit
//! answers 429 `RL`. The upstreams are live modeled services (`meshtwin serve`'s code) or the
//! echo upstream of the other tests.

mod common;
use common::{get, lab};
use live::config::Limits;

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_recover_a_30_percent_error_rate() {
    let (services, client, listener, _) = lab(
        r#"Scenario(duration: "1s", services: {
            "api": Service(versions: {"v1": (instances: 3, workers: 32, latency: Constant("1ms"),
                                             errors: 0.3, error_status: 503)}),
        }, mesh: Mesh(virtual_services: [VirtualService(hosts: ["api"], http: [
            HttpRoute(route: [(destination: (host: "api"))], retries: (attempts: 2, retry_on: "5xx")),
        ])]), workload: [OpenLoop(host: "api", rate: 1)])"#,
    )
    .await;
    let n = 1200u64;
    let mut tasks = Vec::new();
    for chunk in 0..8 {
        let addr = listener.addr;
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            for _ in 0..n / 8 {
                if get(addr, "api", &format!("/{chunk}"), &[]).await.status == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("client");
    }
    let m = client.snapshot().finish();
    assert_eq!(m.totals.count, n);
    let p: f64 = 0.3;
    let expect = 1.0 - p.powi(3);
    let sd = (expect * (1.0 - expect) / n as f64).sqrt();
    let rate = ok as f64 / n as f64;
    assert!(
        (rate - expect).abs() <= 4.0 * sd,
        "success {rate:.4}, expected {expect:.4} ± {:.4}",
        4.0 * sd
    );
    let tries = m.totals.amplification();
    let expect_tries = 1.0 + p + p * p;
    assert!(
        (tries - expect_tries).abs() <= 0.05,
        "attempts per request {tries:.3}, expected {expect_tries:.3}"
    );
    listener.shutdown().await;
    services.stop().await;
}

/// A slow upstream behind a 150 ms route timeout, over HTTP/1.1 or (`rules`) HTTP/2: each
/// request is answered 504 `UT` on time, its exchange cancelled.
async fn route_timeout(rules: &str) {
    let scenario = format!(
        r#"Scenario(duration: "1s", services: {{
            "slow": Service(versions: {{"v1": (instances: 1, workers: 4, latency: Constant("2s"))}}),
        }}, mesh: Mesh(virtual_services: [VirtualService(hosts: ["slow"], http: [
            HttpRoute(route: [(destination: (host: "slow"))], timeout: "150ms"),
        ])], destination_rules: [{rules}]), workload: [OpenLoop(host: "slow", rate: 1)])"#
    );
    let (services, client, listener, _) = lab(&scenario).await;
    // Twice: the second goes on the same HTTP/2 connection, whose first stream was cancelled.
    for _ in 0..2 {
        let start = Instant::now();
        let got = get(listener.addr, "slow", "/", &[]).await;
        let took = start.elapsed();
        assert_eq!(got.status, 504);
        assert_eq!(got.body, "upstream request timeout");
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_millis(1000),
            "{took:?}"
        );
    }
    let m = client.snapshot().finish();
    assert_eq!(m.totals.flags().collect::<Vec<_>>(), vec![("UT", 2)]);
    listener.shutdown().await;
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_ut() {
    route_timeout("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_cancels_an_http2_stream() {
    route_timeout(
        r#"DestinationRule(host: "slow",
            traffic_policy: (connection_pool: (http: (h2_upgrade_policy: UPGRADE))))"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_limits_overflow_with_503_uo() {
    // One connection, one pending request: with the connection open (a first request leaves it
    // idle), of six concurrent 600 ms requests one takes it, one waits, four overflow.
    let (services, client, listener, _) = lab(
        r#"Scenario(duration: "1s", services: {
            "api": Service(versions: {"v1": (instances: 1, workers: 8, latency: Constant("600ms"))}),
        }, mesh: Mesh(destination_rules: [DestinationRule(host: "api", traffic_policy: (
            connection_pool: (tcp: (max_connections: 1), http: (http1_max_pending_requests: 1)),
        ))]), workload: [OpenLoop(host: "api", rate: 1)])"#,
    )
    .await;
    assert_eq!(get(listener.addr, "api", "/", &[]).await.status, 200);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let addr = listener.addr;
            tokio::spawn(async move { get(addr, "api", "/", &[]).await })
        })
        .collect();
    let mut overflowed = 0;
    let mut ok = 0;
    for t in tasks {
        let got = t.await.expect("client");
        match got.status {
            200 => ok += 1,
            503 => {
                assert_eq!(
                    got.headers
                        .get("x-envoy-overloaded")
                        .and_then(|v| v.to_str().ok()),
                    Some("true")
                );
                assert!(got.body.contains("overflow"), "{}", got.body);
                overflowed += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!((ok, overflowed), (2, 4));
    let m = client.snapshot().finish();
    assert_eq!(m.totals.flags().collect::<Vec<_>>(), vec![("UO", 4)]);
    assert_eq!(m.events[0].1.overflows, 4);
    let text = live::admin::prometheus(&[("client".to_owned(), client.clone())]);
    assert!(
        text.contains(
            "meshtwin_cluster_upstream_rq_pending_overflow_total{listener=\"client\",cluster=\"api\"} 4"
        ),
        "{text}"
    );
    listener.shutdown().await;
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_upstream() {
    // Two hosts, one always failing; half may be ejected. Round robin sends every other request
    // to the bad host until its fifth consecutive 500 ejects it; then only the good host serves.
    let (services, client, listener, _) = lab(
        r#"Scenario(duration: "1s", services: {
            "api": Service(versions: {
                "good": (instances: 1, workers: 8, latency: Constant("1ms")),
                "bad": (instances: 1, workers: 8, latency: Constant("1ms"), errors: 1.0, error_status: 500),
            }),
        }, mesh: Mesh(destination_rules: [DestinationRule(host: "api", traffic_policy: (
            load_balancer: (simple: ROUND_ROBIN),
            outlier_detection: (consecutive_5xx_errors: 5, interval: "1s", base_ejection_time: "60s",
                                max_ejection_percent: 50),
        ))]), workload: [OpenLoop(host: "api", rate: 1)])"#,
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(get(listener.addr, "api", "/", &[]).await.status);
    }
    let failures = statuses.iter().filter(|s| **s == 500).count();
    assert_eq!(failures, 5, "{statuses:?}");
    assert!(
        statuses[12..].iter().all(|s| *s == 200),
        "after the ejection only the good host serves: {statuses:?}"
    );
    let m = client.snapshot().finish();
    assert_eq!(m.events[0].1.ejections, 1);
    listener.shutdown().await;
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rate_limit_answers_429() {
    let upstream = common::echo("api").await;
    let (handle, listener) = common::proxy(
        r#"Mesh(virtual_services: [VirtualService(hosts: ["api"], http: [
            HttpRoute(route: [(destination: (host: "api"))],
                local_rate_limit: (max_tokens: 5, tokens_per_fill: 1, fill_interval: "60s")),
        ])])"#,
        &[("api", vec![(upstream.addr, "v1")])],
        Limits::default(),
    )
    .await;
    let mut limited = 0;
    for _ in 0..12 {
        let got = get(listener.addr, "api", "/", &[]).await;
        if got.status == 429 {
            assert_eq!(
                got.headers
                    .get("x-envoy-ratelimited")
                    .and_then(|v| v.to_str().ok()),
                Some("true")
            );
            assert_eq!(got.body, "local_rate_limited");
            limited += 1;
        }
    }
    assert_eq!(limited, 7, "a bucket of 5 that refills once a minute");
    assert_eq!(
        upstream.hits.load(std::sync::atomic::Ordering::Relaxed),
        5,
        "limited requests never reach the upstream"
    );
    // Every try carries Envoy's attempt count.
    let all_first_tries = upstream.seen.lock().expect("lock").iter().all(|(_, _, h)| {
        h.iter()
            .any(|(k, v)| k == "x-envoy-attempt-count" && v == "1")
    });
    assert!(all_first_tries);
    let m = handle.snapshot().finish();
    assert_eq!(m.totals.flags().collect::<Vec<_>>(), vec![("RL", 7)]);
    listener.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_faults_apply_live() {
    // Round robin over two instances, retries off. Instance 0 answers 503 for the first 400 ms;
    // instance 1 is down from 600 ms to 1 s (refused: 503 UF), then restarted.
    let (services, client, listener, _) = lab(
        r#"Scenario(duration: "1s", services: {
            "api": Service(versions: {"v1": (instances: 2, workers: 8, latency: Constant("1ms"))}),
        }, mesh: Mesh(
            virtual_services: [VirtualService(hosts: ["api"], http: [
                HttpRoute(route: [(destination: (host: "api"))], retries: (attempts: 0))])],
            destination_rules: [DestinationRule(host: "api", traffic_policy: (load_balancer: (simple: ROUND_ROBIN)))],
        ),
        faults: [
            (target: (service: "api", instance: 0), length: "400ms", kind: Errors(probability: 1.0, status: 503)),
            (target: (service: "api", instance: 1), start: "600ms", length: "400ms", kind: Crash),
        ],
        workload: [OpenLoop(host: "api", rate: 1)])"#,
    )
    .await;
    let start = Instant::now();
    let burst = |n| async move {
        let mut failed = 0;
        for _ in 0..n {
            if get(listener.addr, "api", "/", &[]).await.status != 200 {
                failed += 1;
            }
        }
        failed
    };
    assert_eq!(burst(10).await, 5, "error burst on one of two instances");
    tokio::time::sleep_until((start + Duration::from_millis(750)).into()).await;
    assert_eq!(burst(10).await, 5, "one of two instances is down");
    tokio::time::sleep_until((start + Duration::from_millis(1300)).into()).await;
    assert_eq!(burst(10).await, 0, "both healthy again");
    let m = client.snapshot().finish();
    let flags: Vec<(&str, u64)> = m.totals.flags().collect();
    assert_eq!(flags, vec![("UF", 5)], "the crash refused connections");
    listener.shutdown().await;
    services.stop().await;
}
