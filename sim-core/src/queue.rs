//! The event queue: events ordered by virtual time, ties broken by insertion order (a
//! monotonically increasing sequence number), so the run order never depends on anything but
//! the scenario and seed.
//!
//! Most events of a mesh simulation are due at the current time (a proxy's action taken at
//! once, a zero-latency network leg): those go to a FIFO, which is in `(time, seq)` order by
//! construction since they share the time and their sequence numbers rise. The rest go to a
//! 4-ary min-heap (shallower than a binary heap: fewer cache lines touched per sift) keyed by
//! `(time, seq)` packed into one `u128`, so each comparison is one integer compare. A pop takes
//! whichever of the two fronts has the smaller key: exactly the order of one heap over all
//! events.

use proxy_engine::Time;
use std::collections::VecDeque;

/// `(time, seq)` as one integer: time in the high half.
fn key(time: Time, seq: u64) -> u128 {
    (u128::from(time.0) << 64) | u128::from(seq)
}

fn time_of(key: u128) -> Time {
    Time((key >> 64) as u64)
}

/// Children per heap node.
const ARITY: usize = 4;

/// A min-queue of events by `(time, seq)`.
pub struct EventQueue<E> {
    /// Events due at `now`, in push order. **Invariant:** every key here is `(now, s)`.
    due: VecDeque<(u128, E)>,
    /// The rest, a 4-ary min-heap on the key. **Invariant:** every key ≥ `(now, 0)`.
    heap: Vec<(u128, E)>,
    /// The time of the last pop.
    now: Time,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            due: VecDeque::new(),
            heap: Vec::new(),
            now: Time(0),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `time`; among events at the same time, earlier pushes pop first.
    /// A time before the last pop's is taken as that time (the queue never goes back).
    pub fn push(&mut self, time: Time, event: E) {
        debug_assert!(
            time >= self.now,
            "an event in the past: {time:?} < {:?}",
            self.now
        );
        let time = time.max(self.now);
        let k = key(time, self.seq);
        self.seq += 1;
        if time == self.now {
            self.due.push_back((k, event));
        } else {
            self.heap.push((k, event));
            self.sift_up(self.heap.len() - 1);
        }
    }

    /// Removes and returns the earliest event.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let from_due = match (self.due.front(), self.heap.first()) {
            (Some(d), Some(h)) => d.0 < h.0,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let (k, event) = if from_due {
            self.due.pop_front()?
        } else {
            self.pop_heap()?
        };
        let time = time_of(k);
        if time != self.now {
            // Time moves on: `due` is empty (its events were at the old `now`, earlier than
            // anything in the heap), so its invariant holds for the new `now`.
            debug_assert!(self.due.is_empty());
            self.now = time;
        }
        Some((time, event))
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<Time> {
        let d = self.due.front().map(|e| e.0);
        let h = self.heap.first().map(|e| e.0);
        match (d, h) {
            (Some(d), Some(h)) => Some(time_of(d.min(h))),
            (one, other) => one.or(other).map(time_of),
        }
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.due.len() + self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty() && self.heap.is_empty()
    }

    fn pop_heap(&mut self) -> Option<(u128, E)> {
        let last = self.heap.len().checked_sub(1)?;
        self.heap.swap(0, last);
        let top = self.heap.pop();
        if !self.heap.is_empty() {
            self.sift_down(0);
        }
        top
    }

    fn sift_up(&mut self, mut i: usize) {
        let h = &mut self.heap;
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if h[i].0 >= h[parent].0 {
                break;
            }
            h.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let h = &mut self.heap;
        let n = h.len();
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                break;
            }
            let last = (first + ARITY).min(n);
            let mut min = first;
            for c in first + 1..last {
                if h[c].0 < h[min].0 {
                    min = c;
                }
            }
            if h[min].0 >= h[i].0 {
                break;
            }
            h.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_insertion_order() {
        let mut q = EventQueue::default();
        q.push(Time(5), "c");
        q.push(Time(1), "a");
        q.push(Time(5), "d");
        q.push(Time(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, e)| e).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    /// The order of a reference queue (a sorted list of `(time, seq)`) over a pseudo-random
    /// mix of pushes due now, pushes later and pops.
    #[test]
    fn any_mix_of_due_and_later_events_pops_in_time_then_push_order() {
        let mut q = EventQueue::default();
        let mut reference: Vec<(u64, u64)> = Vec::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 && !reference.is_empty() {
                reference.sort_unstable();
                let want = reference.remove(0);
                let (t, s) = q.pop().expect("not empty");
                assert_eq!((t.0, s), want);
                now = t.0;
                assert_eq!(q.len(), reference.len());
            } else {
                // Half due now, half later (some at the same later time).
                let at = if x % 2 == 0 {
                    now
                } else {
                    now + (x >> 40) % 50
                };
                q.push(Time(at), seq);
                reference.push((at, seq));
                seq += 1;
            }
            reference.sort_unstable();
            assert_eq!(q.peek_time().map(|t| t.0), reference.first().map(|r| r.0));
        }
        reference.sort_unstable();
        let rest: Vec<(u64, u64)> = std::iter::from_fn(|| q.pop())
            .map(|(t, s)| (t.0, s))
            .collect();
        assert_eq!(rest, reference);
        assert!(q.is_empty());
    }
}
