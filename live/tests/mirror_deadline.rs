//! A mirror target that accepts connections and never answers: the copies end at their
//! deadline (the route timeout), and nothing of them stays behind — no copy, exchange, task,
//! kept body or upstream connection.

mod common;

use common::{echo, get, proxy};
use live::config::Limits;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const MESH: &str = r#"Mesh(
    virtual_services: [VirtualService(hosts: ["reviews"], http: [
        HttpRoute(
            name: "plain",
            match: [(uri: Prefix("/plain"))],
            route: [(destination: (host: "reviews"), weight: 100)],
        ),
        HttpRoute(
            name: "mirrored",
            route: [(destination: (host: "reviews"), weight: 100)],
            timeout: "400ms",
            mirror: (host: "hung"),
            mirror_percentage: 100.0,
        ),
    ])],
)"#;

/// A listener that accepts and reads, never answers; counts the connections it holds open.
async fn hung() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (open, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, a) = (open.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            o.fetch_add(1, Ordering::SeqCst);
            a.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open, accepted)
}

/// Polls `done` every 20 ms until it holds or `limit` passes; returns whether it held.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_mirror_target_leaves_nothing_behind() {
    let v1 = echo("v1").await;
    let (target, held, accepted) = hung().await;
    let services = [
        ("reviews", vec![(v1.addr, "v1")]),
        ("hung", vec![(target, "v1")]),
    ];
    let (handle, listener) = proxy(MESH, &services, Limits::default()).await;
    let addr = listener.addr;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // Warm up on the unmirrored route (the proxy's connection to v1 is then pooled), and let
    // the client's connection tasks end.
    assert_eq!(get(addr, "reviews", "/plain", &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let baseline = tasks();

    let n = 20;
    for _ in 0..n {
        let got = get(addr, "reviews", "/x", &[]).await;
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "v1"),
            "the primary never waits"
        );
    }
    // The copies are hung now: the check below can fail.
    let open = handle.open();
    assert_eq!(open.mirrors, n, "{open:?}");
    assert!(tasks() > baseline, "hung copies hold tasks");
    assert!(
        eventually(Duration::from_secs(2), || held.load(Ordering::SeqCst) > 0).await,
        "the target holds connections"
    );

    // The route timeout (400 ms) is the copies' deadline.
    let gone = eventually(Duration::from_secs(5), || {
        let o = handle.open();
        o.mirrors == 0 && o.exchanges == 0 && o.bodies == 0 && o.requests == 0
    })
    .await;
    assert!(gone, "{:?}", handle.open());
    assert!(
        eventually(Duration::from_secs(5), || held.load(Ordering::SeqCst) == 0).await,
        "{} of {} connections to the target still open",
        held.load(Ordering::SeqCst),
        accepted.load(Ordering::SeqCst)
    );
    // Only the pooled connection to v1 may stay.
    assert!(handle.open().connections <= 1, "{:?}", handle.open());
    assert!(
        eventually(Duration::from_secs(5), || tasks() <= baseline).await,
        "{} tasks alive, {baseline} before the copies",
        tasks()
    );

    // Each copy ended in one record: 504 UT, as Envoy's shadow times out.
    let m = handle.metrics();
    let (name, copies) = m.mirrors.first().expect("mirror records");
    assert_eq!(name, "hung/v1");
    assert_eq!(copies.count, n as u64);
    assert_eq!(copies.by_status, vec![(504, n as u64)]);
    assert_eq!(copies.flags().collect::<Vec<_>>(), vec![("UT", n as u64)]);
    assert_eq!(m.totals.count, 1 + n as u64);
    listener.shutdown().await;
}
