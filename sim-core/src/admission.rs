//! An instance's admission, shared by the simulated instances and the live modeled services so
//! both run one model: `workers` requests are served at once (a worker is held for the whole
//! handler, its calls included), up to `queue` more wait in arrival order, and any other
//! arrival is refused at once (the instance answers 503).
//!
//! **Invariant:** `busy <= workers`, and requests wait only while every worker is busy
//! (`waiting` is empty whenever `busy < workers`).

use std::collections::VecDeque;

/// What became of an arrival.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<T> {
    /// A worker is free: the request starts now and holds it until `finish`.
    Start,
    /// Every worker is busy: the request waits; `finish` hands it a worker in its turn.
    Queued,
    /// Workers and queue are full: refused at once (503), handed back.
    Refused(T),
}

/// Workers and a bounded FIFO queue of requests `T` (see the module documentation).
#[derive(Clone, Debug)]
pub struct Admission<T> {
    workers: u32,
    capacity: usize,
    busy: u32,
    waiting: VecDeque<T>,
}

impl<T> Admission<T> {
    /// `workers` at once, `queue` waiting.
    pub fn new(workers: u32, queue: u32) -> Admission<T> {
        Admission {
            workers,
            capacity: queue as usize,
            busy: 0,
            waiting: VecDeque::new(),
        }
    }

    /// A request arrives.
    pub fn arrive(&mut self, request: T) -> Admit<T> {
        if self.busy < self.workers {
            self.busy += 1;
            Admit::Start
        } else if self.waiting.len() < self.capacity {
            self.waiting.push_back(request);
            Admit::Queued
        } else {
            Admit::Refused(request)
        }
    }

    /// A worker is done: the waiting request that takes it now (the worker stays busy), if
    /// any; else the worker is free.
    pub fn finish(&mut self) -> Option<T> {
        debug_assert!(self.busy > 0, "finishing on an idle instance");
        let next = self.waiting.pop_front();
        if next.is_none() {
            self.busy = self.busy.saturating_sub(1);
        }
        next
    }

    /// Everything stops (a crash or a hang): no worker is busy any more, and the waiting
    /// requests are handed back in arrival order.
    pub fn reset(&mut self) -> Vec<T> {
        self.busy = 0;
        self.waiting.drain(..).collect()
    }

    /// Workers busy.
    pub fn busy(&self) -> u32 {
        self.busy
    }

    /// Requests waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_then_queue_then_refusal_in_fifo_order() {
        let mut a = Admission::new(2, 2);
        assert_eq!(a.arrive(1), Admit::Start);
        assert_eq!(a.arrive(2), Admit::Start);
        assert_eq!(a.arrive(3), Admit::Queued);
        assert_eq!(a.arrive(4), Admit::Queued);
        assert_eq!(a.arrive(5), Admit::Refused(5));
        assert_eq!((a.busy(), a.waiting()), (2, 2));
        assert_eq!(a.finish(), Some(3), "the first waiting takes the worker");
        assert_eq!(a.finish(), Some(4));
        assert_eq!((a.busy(), a.waiting()), (2, 0));
        assert_eq!(a.finish(), None);
        assert_eq!(a.busy(), 1);
        assert_eq!(a.arrive(6), Admit::Start);
        assert_eq!(a.arrive(7), Admit::Queued);
        assert_eq!(a.reset(), vec![7]);
        assert_eq!((a.busy(), a.waiting()), (0, 0));
    }

    #[test]
    fn no_queue_refuses_when_busy() {
        let mut a = Admission::new(1, 0);
        assert_eq!(a.arrive('a'), Admit::Start);
        assert_eq!(a.arrive('b'), Admit::Refused('b'));
    }
}
