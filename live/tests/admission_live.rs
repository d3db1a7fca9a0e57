//! A live modeled instance admits as a simulated one does (`sim_core::admission`): `workers`
//! at once, `queue` more in arrival order, 503 at once beyond that; a request that leaves while
//! it waits or works gives its place back, so no worker is lost.

mod common;

use common::{get, lab};
use std::time::{Duration, Instant};

/// One instance, one worker, a queue of one, 300 ms of service time.
const SCENARIO: &str = r#"Scenario(
    seed: 5,
    duration: "1s",
    services: {
        "api": Service(versions: {"v1": (instances: 1, workers: 1, queue: 1, latency: Constant("300ms"))}),
    },
    workload: [OpenLoop(host: "api", rate: 1)],
)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_one_queued_the_rest_refused_and_nothing_leaks() {
    let (services, _client, listener, _s) = lab(SCENARIO).await;
    let addr = services.instances[0].addr;
    // Four at once: one served, one queued behind it, two refused at once.
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move { (get(addr, "api", "/", &[]).await.status, Instant::now()) })
        })
        .collect();
    let mut got = Vec::new();
    for c in calls {
        got.push(c.await.expect("task"));
    }
    let mut statuses: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 503, 503]);
    for (status, at) in &got {
        let took = at.duration_since(started);
        match status {
            503 => assert!(
                took < Duration::from_millis(250),
                "refused at once: {took:?}"
            ),
            _ => assert!(took >= Duration::from_millis(290), "served: {took:?}"),
        }
    }
    // The later 200 waited for the first: about two service times.
    let last = got.iter().filter(|(s, _)| *s == 200).map(|(_, t)| *t).max();
    let last = last.expect("two served").duration_since(started);
    assert!(
        last >= Duration::from_millis(590),
        "queued behind the first: {last:?}"
    );

    // A request that leaves while working, and one that leaves while queued, give their
    // places back: afterwards the instance serves again at once.
    let working = tokio::spawn(async move { get(addr, "api", "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = tokio::spawn(async move { get(addr, "api", "/", &[]).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    working.abort();
    queued.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let again = get(addr, "api", "/", &[]).await;
    assert_eq!(again.status, 200, "a worker is free again");
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "served at once, not behind a lost worker: {took:?}"
    );
    listener.shutdown().await;
}
