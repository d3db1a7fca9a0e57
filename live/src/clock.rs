//! The live driver's clock: monotonic nanoseconds since the process started driving, the
//! engine's `Time`. The only place live mode reads the wall clock for the engine.

use proxy_engine::Time;
use std::time::{Duration, Instant};

/// A monotonic clock with its own epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Now, as engine time.
    pub fn now(&self) -> Time {
        self.time_of(Instant::now())
    }

    /// An instant as engine time (instants before the epoch are the epoch).
    pub fn time_of(&self, at: Instant) -> Time {
        Time(at.saturating_duration_since(self.epoch).as_nanos() as u64)
    }

    /// Engine time as an instant (for arming tokio timers).
    pub fn instant_of(&self, t: Time) -> Instant {
        self.epoch + Duration::from_nanos(t.0)
    }
}

/// Sleeps until `deadline` with sub-millisecond precision and without spinning: see `hires`.
/// Used where the sleep *is* the measurement — modeled service times and the load generator's
/// intended send times — so the live run does not add ~1 ms of timer rounding the simulation
/// does not have.
pub async fn sleep_until_precise(deadline: Instant) {
    crate::hires::sleep_until(deadline).await;
}
