//! The header-read timer of one downstream HTTP/1.1 connection, made cheap for keep-alive.
//!
//! hyper arms its header read timeout afresh for every request head it reads: with tokio's
//! timer that is a timer-wheel insertion when the connection starts waiting for the next
//! request and a removal when the head arrives, on every request (measured at about 7 % of the
//! proxy's user time under keep-alive load). This timer keeps one tokio `Sleep` per connection
//! and moves it lazily: a new deadline is only recorded; the armed sleep is re-armed when it
//! fires before the deadline of the head being read. Deadlines only move forward on a
//! connection, so that is one re-arm per timeout period per connection, not one per request.
//!
//! **Invariant:** a `HeadSleep` completes only once its own deadline has passed: the armed
//! sleep fires at or before it, and firing early re-arms it at the head's deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A `hyper::rt::Timer` for one connection's header read timeout (see the module docs).
#[derive(Clone, Default)]
pub struct HeaderTimer {
    armed: Arc<Mutex<Option<Armed>>>,
}

/// The connection's one tokio sleep, and the waker it was last polled with: while that waker
/// is the polling task's and the sleep has not fired, polling it again would only re-register
/// the same waker, so it is skipped.
struct Armed {
    sleep: Pin<Box<tokio::time::Sleep>>,
    polled_with: Option<std::task::Waker>,
}

impl HeaderTimer {
    /// A timer with nothing armed.
    pub fn new() -> HeaderTimer {
        HeaderTimer::default()
    }
}

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// tokio's clock (the same instant outside tests; pausable in them).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep {
            armed: self.armed.clone(),
            deadline: tokio::time::Instant::from_std(deadline),
        })
    }
}

/// One head's timeout: completes when `deadline` has passed.
struct HeadSleep {
    armed: Arc<Mutex<Option<Armed>>>,
    deadline: tokio::time::Instant,
}

impl hyper::rt::Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let mut armed = crate::lock(&self.armed);
        let armed = armed.get_or_insert_with(|| Armed {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            polled_with: None,
        });
        let sleep = &mut armed.sleep;
        if sleep.deadline() > deadline {
            // Armed for a later head (only if deadlines went backwards): this one comes first.
            sleep.as_mut().reset(deadline);
            armed.polled_with = None;
        }
        let registered = armed
            .polled_with
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if registered && !sleep.is_elapsed() {
            return Poll::Pending; // still armed, and will wake this task
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                armed.polled_with = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if sleep.deadline() >= deadline {
                return Poll::Ready(());
            }
            // It fired for an earlier head: wait on, for this one.
            sleep.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[tokio::test(start_paused = true)]
    async fn a_head_times_out_at_its_own_deadline_not_an_earlier_one() {
        let timer = HeaderTimer::new();
        // The first head arms the shared sleep at 1 s, then is read in time (dropped).
        let first = timer.sleep(Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let poll_once = |s: &mut Pin<Box<dyn hyper::rt::Sleep>>| {
            let waker = std::task::Waker::noop();
            s.as_mut().poll(&mut Context::from_waker(waker))
        };
        let mut first = first;
        assert!(poll_once(&mut first).is_pending());
        drop(first);
        // The second head, started at 0.5 s, must last until 1.5 s although the sleep was
        // armed for 1 s.
        let second = timer.sleep(Duration::from_secs(1));
        second.await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_millis(1600),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_than_the_armed_one_is_honoured() {
        let timer = HeaderTimer::new();
        let mut long = timer.sleep(Duration::from_secs(10));
        let waker = std::task::Waker::noop();
        assert!(long
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_pending());
        drop(long);
        let start = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(1)).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_millis(1100),
            "{waited:?}"
        );
    }
}
