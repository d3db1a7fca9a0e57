//! A high-resolution timer for sleeps whose length *is* the measurement: modeled service times
//! and the load generator's intended send times. tokio's timer has 1 ms granularity and rounds
//! up, which would add up to a millisecond the simulation does not have; spinning on
//! `yield_now` for the last millisecond (what this replaces) burned a core at high rates.
//!
//! One OS thread keeps the pending deadlines in a min-heap and sleeps until the earliest with
//! `park_timeout` (a futex wait, an hrtimer in the kernel), its timer slack set to 1 ns on Linux
//! so the kernel does not defer the wake by its default 50 µs; it spins only for the last few
//! microseconds. Deadlines that fall due together wake together.
//!
//! **Invariant:** a registered waker is woken at or after its deadline, exactly when the
//! thread sees the deadline passed; a future re-registers on every poll before its deadline, so
//! a lost registration cannot strand it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Below this, the timer thread spins instead of parking (a park and wake costs more).
const SPIN: Duration = Duration::from_micros(5);

/// A pending wake.
struct Entry {
    deadline: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// The pending deadlines and the thread that serves them.
struct Timer {
    pending: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    /// `None` when the thread could not be spawned (the process is out of threads): sleeps
    /// then use tokio's timer.
    thread: Option<Thread>,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let handle = std::thread::Builder::new()
            .name("meshtwin-hires-timer".into())
            .spawn(serve);
        let thread = handle.ok().map(|h| h.thread().clone());
        Timer {
            pending: Mutex::new((BinaryHeap::new(), 0)),
            thread,
        }
    })
}

/// The timer thread: wake what is due, then sleep until the next deadline.
fn serve() {
    // Best effort (Linux ≥ 4.6; elsewhere the file does not exist): this thread's timer slack
    // to 1 ns, the `prctl(PR_SET_TIMERSLACK)` of proc(5), without unsafe code.
    // `/proc/thread-self` links to `PID/task/TID`; the slack file is `/proc/TID/timerslack_ns`.
    if let Ok(link) = std::fs::read_link("/proc/thread-self") {
        if let Some(tid) = link.file_name() {
            let path = std::path::Path::new("/proc")
                .join(tid)
                .join("timerslack_ns");
            let _ = std::fs::write(path, "1");
        }
    }
    let mut due: Vec<Waker> = Vec::new();
    loop {
        let t = timer();
        let next = {
            let mut guard = crate::lock(&t.pending);
            let now = Instant::now();
            while guard.0.peek().is_some_and(|e| e.0.deadline <= now) {
                if let Some(Reverse(e)) = guard.0.pop() {
                    due.push(e.waker);
                }
            }
            guard.0.peek().map(|e| e.0.deadline)
        };
        for w in due.drain(..) {
            w.wake();
        }
        match next {
            None => std::thread::park(),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left > SPIN {
                    std::thread::park_timeout(left - SPIN);
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// Registers `waker` for `deadline`, waking the timer thread when it is the new earliest.
fn register(deadline: Instant, waker: &Waker) {
    let t = timer();
    let earliest = {
        let mut guard = crate::lock(&t.pending);
        let (heap, seq) = &mut *guard;
        *seq += 1;
        let earliest = heap.peek().is_none_or(|e| deadline < e.0.deadline);
        heap.push(Reverse(Entry {
            deadline,
            seq: *seq,
            waker: waker.clone(),
        }));
        earliest
    };
    if let (true, Some(thread)) = (earliest, &t.thread) {
        thread.unpark();
    }
}

/// A sleep until an instant, served by the high-resolution timer thread.
pub struct HiresSleep {
    deadline: Instant,
}

impl Future for HiresSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        register(self.deadline, cx.waker());
        Poll::Pending
    }
}

/// Sleeps until `deadline`: tokio's timer for all but the last 2 ms (so far-off sleeps do not
/// crowd the heap), then the high-resolution timer.
pub async fn sleep_until(deadline: Instant) {
    const COARSE: Duration = Duration::from_millis(2);
    let now = Instant::now();
    if deadline <= now {
        return;
    }
    if timer().thread.is_none() {
        return tokio::time::sleep_until(deadline.into()).await;
    }
    if deadline - now > COARSE {
        tokio::time::sleep_until((deadline - COARSE).into()).await;
    }
    HiresSleep { deadline }.await;
}

/// A precise timer of one task's own: a `timerfd` in the runtime's reactor, so the wake is the
/// worker's own `epoll_wait` returning (the kernel's hrtimer, no slack), with no thread hop.
/// For a task that sleeps again and again (the load generator's scheduler); where a timerfd
/// cannot be made, it falls back to `sleep_until`.
pub struct TaskTimer {
    fd: Option<tokio::io::unix::AsyncFd<Tfd>>,
}

/// A timerfd as tokio's reactor takes it (by raw fd).
struct Tfd(nix::sys::timerfd::TimerFd);

impl std::os::fd::AsRawFd for Tfd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl TaskTimer {
    /// A timer for the current runtime.
    pub fn new() -> TaskTimer {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()
        // `AsyncFd::new` is deprecated for fds the wrapper does not own (tokio #8587): here
        // the `AsyncFd` owns the `TimerFd`, which owns the fd, so it stays open for exactly as
        // long as it is registered. The replacement, `register`, is `unsafe`, which this
        // workspace forbids.
        .and_then(|t| {
            #[allow(deprecated)]
            tokio::io::unix::AsyncFd::new(Tfd(t)).ok()
        });
        TaskTimer { fd }
    }

    /// Sleeps until `deadline`.
    pub async fn sleep_until(&mut self, deadline: Instant) {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let Some(fd) = &self.fd else {
            return sleep_until(deadline).await;
        };
        let armed = fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(left)),
            TimerSetTimeFlags::empty(),
        );
        if armed.is_err() {
            return sleep_until(deadline).await;
        }
        while Instant::now() < deadline {
            let Ok(mut ready) = fd.readable().await else {
                return sleep_until(deadline).await;
            };
            // Reading the expiration count clears readiness; an early wake (none expected)
            // loops, still armed.
            let _ = ready.try_io(|inner| inner.get_ref().0.wait().map_err(std::io::Error::from));
        }
    }
}

impl Default for TaskTimer {
    fn default() -> Self {
        TaskTimer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeps end at or after their deadline, and not much after (generous bound: CI machines
    /// are shared; the load bench measures the real lateness).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_end_after_their_deadline_and_soon() {
        let mut late = Vec::new();
        for i in 0..200u64 {
            let deadline = Instant::now() + Duration::from_micros(50 + (i * 37) % 3000);
            sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline);
            late.push(now - deadline);
        }
        late.sort();
        let median = late[late.len() / 2];
        assert!(
            median < Duration::from_millis(1),
            "median lateness {median:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_timer_ends_after_its_deadline_and_soon() {
        let mut t = TaskTimer::new();
        let mut late = Vec::new();
        for i in 0..200u64 {
            let deadline = Instant::now() + Duration::from_micros(20 + (i * 37) % 3000);
            t.sleep_until(deadline).await;
            let now = Instant::now();
            assert!(now >= deadline);
            late.push(now - deadline);
        }
        late.sort();
        assert!(
            late[100] < Duration::from_millis(1),
            "median lateness {:?}",
            late[100]
        );
    }

    /// Many sleeps at once, in any order, all wake.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sleeps_all_wake() {
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..500u64 {
            let d = start + Duration::from_micros((i * 7919) % 5000);
            set.spawn(async move {
                sleep_until(d).await;
                Instant::now() >= d
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            assert!(r.expect("no panic"));
            n += 1;
        }
        assert_eq!(n, 500);
    }
}
