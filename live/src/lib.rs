//! `live`: the socket driver of `proxy-engine`, next to the simulator.
//!
//! It moves bytes and time only. Every routing, balancing and pooling decision is the engine's:
//! a `driver` task owns one `proxy_engine::Proxy`, feeds it inputs stamped with a monotonic
//! clock, and performs its actions — opening upstream connections with hyper's low-level
//! `client::conn` API when the engine says `Connect`, sending on the connection the engine
//! names, answering the downstream request the engine completes.
//!
//! Around the driver: `server` (downstream listeners: HTTP/1.1, h2c, TLS with ALPN via rustls),
//! `admin` (`/metrics`, `/ready`, `/config`), `service` (the scenario's modeled services as real
//! HTTP servers), `loadgen` (an open-loop, coordinated-omission-corrected load generator) and
//! `lab` (`run --live`: all of it on loopback from one scenario).

pub mod access_log;
pub mod admin;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod driver;
pub mod fdlimit;
pub mod h1client;
pub mod header_timer;
pub mod hires;
pub mod http_util;
pub mod lab;
pub mod lab_gateways;
pub mod loadgen;
pub mod origination;
pub mod server;
pub mod service;
pub mod stop;
pub mod tls;
pub mod upstream;

/// Locks `m`, carrying on if a panicking holder poisoned it: every state behind these mutexes
/// stays consistent between statements, and a live proxy must not stop on one task's panic.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Test helpers shared by the crate's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    /// A waker that counts its wake-ups (a stand-in for a task).
    pub(crate) struct CountingWaker(AtomicUsize);

    impl CountingWaker {
        /// A counter and a waker that increments it.
        pub(crate) fn new() -> (Arc<CountingWaker>, Waker) {
            let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
            let waker = Waker::from(count.clone());
            (count, waker)
        }

        /// Wake-ups so far.
        pub(crate) fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
