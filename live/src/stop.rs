//! A listener's stop signal as its connections see it: set once, then every registered
//! connection task is woken to begin its graceful shutdown.
//!
//! A connection checks it on every wake-up of its task, which under keep-alive load is several
//! times per request. A `watch` change future (or a `Notify`) takes a lock on each of those
//! polls; here a poll is one atomic load and one waker comparison, and the lock is taken only
//! when a connection registers (once, or again if its task's waker changes) and leaves.
//!
//! **Invariant:** a registration is in the table before its holder reads the flag, and `fire`
//! sets the flag before it wakes the table, so a stop is never missed between the two.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

/// The shared signal (one per listener).
#[derive(Default)]
pub struct StopSignal {
    stopped: AtomicBool,
    wakers: Mutex<WakerTable>,
}

impl StopSignal {
    /// A new, unset signal.
    pub fn new() -> Arc<StopSignal> {
        Arc::new(StopSignal::default())
    }

    /// Sets the signal and wakes every registered task.
    pub fn fire(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let wakers = crate::lock(&self.wakers).drain();
        for w in wakers {
            w.wake();
        }
    }

    /// A registration for one connection (registered on its first `stopped` call).
    pub fn watch(self: &Arc<Self>) -> StopWatch {
        StopWatch {
            signal: self.clone(),
            slot: None,
        }
    }
}

/// One connection's view of the signal; leaves the table when dropped.
pub struct StopWatch {
    signal: Arc<StopSignal>,
    /// The table slot and the waker registered in it.
    slot: Option<(u64, Waker)>,
}

impl StopWatch {
    /// Whether the signal is set; makes sure the task polling with `cx` is woken when it is.
    pub fn stopped(&mut self, cx: &Context<'_>) -> bool {
        let current = self
            .slot
            .as_ref()
            .is_some_and(|(_, w)| w.will_wake(cx.waker()));
        if !current {
            let mut table = crate::lock(&self.signal.wakers);
            if let Some((id, _)) = self.slot.take() {
                table.remove(id);
            }
            let id = table.insert(cx.waker().clone());
            self.slot = Some((id, cx.waker().clone()));
        }
        self.signal.stopped.load(Ordering::SeqCst)
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        if let Some((id, _)) = self.slot.take() {
            crate::lock(&self.signal.wakers).remove(id);
        }
    }
}

/// Registered wakers by slot number.
#[derive(Default)]
struct WakerTable {
    next: u64,
    wakers: BTreeMap<u64, Waker>,
}

impl WakerTable {
    fn insert(&mut self, waker: Waker) -> u64 {
        let id = self.next;
        self.next += 1;
        self.wakers.insert(id, waker);
        id
    }

    fn remove(&mut self, id: u64) {
        self.wakers.remove(&id);
    }

    fn drain(&mut self) -> Vec<Waker> {
        std::mem::take(&mut self.wakers).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::CountingWaker;

    #[test]
    fn fire_wakes_registered_tasks_once_and_sets_the_flag() {
        let signal = StopSignal::new();
        let (count, waker) = CountingWaker::new();
        let cx = Context::from_waker(&waker);
        let mut a = signal.watch();
        let mut b = signal.watch();
        assert!(!a.stopped(&cx));
        assert!(!a.stopped(&cx), "polling again does not register twice");
        assert!(!b.stopped(&cx));
        let gone = signal.watch();
        drop(gone);
        signal.fire();
        assert_eq!(count.count(), 2);
        assert!(a.stopped(&cx) && b.stopped(&cx));
    }

    #[test]
    fn a_dropped_watch_leaves_the_table() {
        let signal = StopSignal::new();
        let (count, waker) = CountingWaker::new();
        let cx = Context::from_waker(&waker);
        let mut a = signal.watch();
        assert!(!a.stopped(&cx));
        drop(a);
        assert!(crate::lock(&signal.wakers).wakers.is_empty());
        signal.fire();
        assert_eq!(count.count(), 0);
    }
}
