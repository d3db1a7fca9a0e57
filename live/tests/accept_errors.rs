//! Out of file descriptors, a listener neither spins nor dies: each failed accept is counted
//! and pauses the loop, and once descriptors are free again the waiting connection is served.
//! (Its own test binary: it lowers the process's open-file limit for a moment.)

mod common;
use common::{echo, get, proxy};
use live::config::Limits;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_accepts_back_off_are_counted_and_recover() {
    let v1 = echo("v1").await;
    let (h, l) = proxy(
        "Mesh()",
        &[("svc", vec![(v1.addr, "v1")])],
        Limits::default(),
    )
    .await;
    assert_eq!(get(l.addr, "svc", "/", &[]).await.status, 200);
    // A client in another process (its descriptors are its own), started now: spawning needs
    // descriptors this process is about to run out of. It connects when told to.
    let script = format!(
        "read go; exec 3<>/dev/tcp/127.0.0.1/{}; \
         printf 'GET / HTTP/1.1\\r\\nHost: svc\\r\\nConnection: close\\r\\n\\r\\n' >&3; \
         head -c 12 <&3; echo",
        l.addr.port()
    );
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    // Every descriptor number below the lowest free one is taken: a limit there fails the
    // next accept with EMFILE.
    let lowest_free = std::fs::File::open("/dev/null")
        .expect("a descriptor")
        .as_raw_fd() as u64;
    setrlimit(Resource::RLIMIT_NOFILE, lowest_free, hard).expect("lower the limit");
    stdin.write_all(b"go\n").expect("tell the client");
    let started = Instant::now();
    while h.gauges.accept_errors_total.load(Ordering::Relaxed) < 2
        && started.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errors = h.gauges.accept_errors_total.load(Ordering::Relaxed);
    // Backing off 100 ms per failure, not spinning: a few per half second at most.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = h.gauges.accept_errors_total.load(Ordering::Relaxed);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).expect("restore the limit");
    assert!(errors >= 2, "failed accepts counted: {errors}");
    assert!(
        later - errors <= 8,
        "backing off, not spinning: {} more in 0.5 s",
        later - errors
    );
    // The waiting connection is served now.
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = child.wait();
        line
    })
    .await
    .expect("reader");
    assert_eq!(line.trim(), "HTTP/1.1 200", "the listener lived on");
    assert_eq!(get(l.addr, "svc", "/", &[]).await.status, 200);
    let metrics = live::admin::prometheus(&[("main".to_owned(), h.clone())]);
    assert!(
        metrics.contains(&format!(
            "meshtwin_downstream_accept_errors_total{{listener=\"main\"}} {}",
            h.gauges.accept_errors_total.load(Ordering::Relaxed)
        )),
        "{metrics}"
    );
}
