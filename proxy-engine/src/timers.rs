//! The engine's timers. Most timers are "now + a fixed delay" (route, per-try, connect and
//! idle timeouts, fault delays): each distinct delay gets a FIFO lane, which is sorted by
//! construction because time never goes back, so arming and expiring cost O(1) however many are
//! pending. Timers at arbitrary instants (jittered backoff, outlier ticks) go to a binary heap.
//! Timers are never cancelled; their owner checks, when one fires, whether it still matters,
//! and `prune` drops stale ones from the fronts so they do not cause wake-ups.
//!
//! **Invariant:** every lane's deadlines are non-decreasing front to back. Due timers come out
//! in `(deadline, timer)` order across lanes and heap, so the order is deterministic.

use crate::time::{Nanos, Time};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Lanes beyond this many distinct delays fall back to the heap.
const MAX_LANES: usize = 16;

/// A set of pending timers of kind `T`.
#[derive(Debug)]
pub(crate) struct Timers<T: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Time, T)>>,
    lanes: Vec<(Nanos, VecDeque<(Time, T)>)>,
}

impl<T: Ord + Copy> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            lanes: Vec::new(),
        }
    }
}

impl<T: Ord + Copy> Timers<T> {
    /// Arms `timer` at the instant `at`.
    pub(crate) fn at(&mut self, at: Time, timer: T) {
        self.heap.push(Reverse((at, timer)));
    }

    /// Arms `timer` at `now + delay`; `now` must not be earlier than any earlier call's.
    pub(crate) fn after(&mut self, now: Time, delay: Nanos, timer: T) {
        let at = now + delay;
        if let Some((_, lane)) = self.lanes.iter_mut().find(|(d, _)| *d == delay) {
            debug_assert!(
                lane.back().is_none_or(|(t, _)| *t <= at),
                "lane out of order"
            );
            lane.push_back((at, timer));
        } else if self.lanes.len() < MAX_LANES {
            self.lanes.push((delay, VecDeque::from([(at, timer)])));
        } else {
            self.at(at, timer);
        }
    }

    /// The earliest pending timer.
    pub(crate) fn peek(&self) -> Option<(Time, T)> {
        let heap = self.heap.peek().map(|Reverse(e)| *e);
        self.lanes
            .iter()
            .filter_map(|(_, l)| l.front().copied())
            .chain(heap)
            .min()
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(Time, T)> {
        let first = self.peek().filter(|(at, _)| *at <= now)?;
        if self.heap.peek().map(|Reverse(e)| *e) == Some(first) {
            self.heap.pop();
        } else if let Some((_, lane)) = self
            .lanes
            .iter_mut()
            .find(|(_, l)| l.front() == Some(&first))
        {
            lane.pop_front();
        }
        Some(first)
    }

    /// Drops timers that no longer matter (`stale`) from the front of every lane and the top of
    /// the heap, so the next deadline is a live one.
    pub(crate) fn prune(&mut self, stale: impl Fn(&T) -> bool) {
        for (_, lane) in &mut self.lanes {
            while lane.front().is_some_and(|(_, t)| stale(t)) {
                lane.pop_front();
            }
        }
        while self.heap.peek().is_some_and(|Reverse((_, t))| stale(t)) {
            self.heap.pop();
        }
    }

    /// Timers pending (stale ones included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.lanes.iter().map(|(_, l)| l.len()).sum::<usize>()
    }

    /// Whether no timer is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_and_heap_expire_in_deadline_order() {
        let mut t: Timers<u32> = Timers::default();
        let ms = Nanos::from_millis;
        t.after(Time::ZERO, ms(100), 1);
        t.after(Time::ZERO + ms(10), ms(100), 2);
        t.after(Time::ZERO, ms(50), 3);
        t.at(Time::ZERO + ms(70), 4);
        t.at(Time::ZERO + ms(5), 5);
        let mut order = Vec::new();
        while let Some((_, x)) = t.pop_due(Time::ZERO + ms(1000)) {
            order.push(x);
        }
        assert_eq!(order, vec![5, 3, 4, 1, 2]);
        assert!(t.is_empty());
    }

    #[test]
    fn prune_drops_stale_fronts() {
        let mut t: Timers<u32> = Timers::default();
        t.after(Time::ZERO, Nanos(10), 1);
        t.after(Time::ZERO, Nanos(10), 2);
        t.prune(|x| *x == 1);
        assert_eq!(t.peek(), Some((Time(10), 2)));
    }
}
