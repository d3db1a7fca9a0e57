//! A time-series window's latency histogram, stored by what it holds: a sparse list of
//! hdrhistogram value classes while the window has seen few distinct latencies, the dense
//! histogram once it has seen many. A 24-hour run keeps 86,400 one-second windows; dense, each
//! would cost ~44 KB (3.7 GB in all), while a window of a few hundred requests needs a few KB.
//!
//! The figures are exactly those of a dense 2-significant-digit hdrhistogram: a value is kept
//! as the lowest value of its hdrhistogram class (`lowest_equivalent`), and quantiles are read
//! from a dense histogram rebuilt with the same counts, so going sparse changes no reported
//! number.
//!
//! **Invariant:** `values` is sorted and free of repeats, `values.len() == counts.len()`, and
//! every value is its class's lowest (`lowest_equivalent(v) == v`).

use crate::LATENCY_MAX_NS;
use hdrhistogram::Histogram;

/// Significant digits of window histograms.
const SIGFIG: u8 = 2;

/// Distinct classes kept sparse; past this, the window turns dense (12 bytes a class sparse,
/// so the switch happens at ~24 KB, about half the dense size).
const SPARSE_MAX: usize = 2048;

/// Values kept sparse; past this, the window turns dense anyway: a busy window pays 44 KB once
/// for O(1) records instead of a binary search per record (the simulator's hot path).
const SPARSE_RECORDS_MAX: u64 = 4096;

/// A window's latency distribution, nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct WindowLatency {
    /// Class lowest values, sorted (sparse form).
    values: Vec<u64>,
    /// Count per class in `values`.
    counts: Vec<u32>,
    /// The dense form, once the window saw more than `SPARSE_MAX` classes or
    /// `SPARSE_RECORDS_MAX` values (then `values` and `counts` are empty).
    dense: Option<Box<Histogram<u64>>>,
    /// Values recorded in the sparse form.
    sparse_len: u64,
}

/// An empty window histogram with the bounds every window uses.
fn dense() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low 1 ≥ 1, high ≥ 2·low, sigfig ≤ 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, SIGFIG).expect("valid histogram bounds")
}

thread_local! {
    /// A histogram never recorded into: it only maps values to their classes.
    static CLASSES: Histogram<u64> = dense();
}

impl WindowLatency {
    /// Records one latency (clamped to 1 ns ..= `LATENCY_MAX_NS`).
    pub fn record(&mut self, latency_ns: u64) {
        self.record_n(latency_ns.clamp(1, LATENCY_MAX_NS), 1);
    }

    fn record_n(&mut self, v: u64, n: u64) {
        if self.dense.is_none() && !self.record_sparse(v, n) {
            self.densify();
        }
        if let Some(d) = &mut self.dense {
            d.saturating_record_n(v, n);
        }
    }

    /// Records into the sparse form; false (nothing recorded) when it cannot hold the value:
    /// a new class past `SPARSE_MAX`, or a count past `u32::MAX`.
    fn record_sparse(&mut self, v: u64, n: u64) -> bool {
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        if self.sparse_len + n > SPARSE_RECORDS_MAX {
            return false;
        }
        self.sparse_len += n;
        let n = n32;
        let class = CLASSES.with(|h| h.lowest_equivalent(v));
        match self.values.binary_search(&class) {
            Ok(i) => match self.counts[i].checked_add(n) {
                Some(c) => {
                    self.counts[i] = c;
                    true
                }
                None => false,
            },
            Err(i) if self.values.len() < SPARSE_MAX => {
                self.values.insert(i, class);
                self.counts.insert(i, n);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves the sparse classes into a dense histogram.
    fn densify(&mut self) {
        let mut d = dense();
        for (v, c) in self.values.iter().zip(&self.counts) {
            d.saturating_record_n(*v, u64::from(*c));
        }
        self.values = Vec::new();
        self.counts = Vec::new();
        self.sparse_len = 0;
        self.dense = Some(Box::new(d));
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        match &self.dense {
            Some(d) => d.len(),
            None => self.sparse_len,
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at quantile `q` (0..=1), as a dense hdrhistogram of the same values reports it.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        match &self.dense {
            Some(d) => d.value_at_quantile(q),
            None => {
                let mut d = dense();
                for (v, c) in self.values.iter().zip(&self.counts) {
                    d.saturating_record_n(*v, u64::from(*c));
                }
                d.value_at_quantile(q)
            }
        }
    }

    /// Adds `other`'s values to these.
    pub fn merge(&mut self, other: &WindowLatency) {
        match &other.dense {
            Some(d) => {
                for v in d.iter_recorded() {
                    self.record_n(v.value_iterated_to(), v.count_at_value());
                }
            }
            None => {
                for (v, c) in other.values.iter().zip(&other.counts) {
                    self.record_n(*v, u64::from(*c));
                }
            }
        }
    }

    /// Bytes this window's histogram holds on the heap (for tests and memory notes).
    pub fn heap_bytes(&self) -> usize {
        match &self.dense {
            Some(d) => std::mem::size_of::<Histogram<u64>>() + d.distinct_values() * 8,
            None => self.values.capacity() * 8 + self.counts.capacity() * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Sparse, dense after the switch, and merged: every quantile equals a dense histogram's.
    #[test]
    fn quantiles_equal_a_dense_histograms() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for n in [1usize, 10, 500, 20_000] {
            let mut w = WindowLatency::default();
            let mut reference = dense();
            for _ in 0..n {
                // Log-uniform over 1 µs .. 10 s: many classes.
                let v = 10f64.powf(rng.gen_range(3.0..10.0)) as u64;
                w.record(v);
                reference.saturating_record(v);
            }
            assert_eq!(w.len(), reference.len());
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(
                    w.value_at_quantile(q),
                    reference.value_at_quantile(q),
                    "n {n} q {q}"
                );
            }
            assert_eq!(w.dense.is_some(), n as u64 > SPARSE_RECORDS_MAX, "n {n}");
            let mut merged = WindowLatency::default();
            merged.merge(&w);
            merged.merge(&w);
            reference.add(reference.clone()).expect("same bounds");
            assert_eq!(
                merged.value_at_quantile(0.99),
                reference.value_at_quantile(0.99)
            );
            assert_eq!(merged.len(), reference.len());
        }
    }

    #[test]
    fn a_small_window_is_small() {
        let mut w = WindowLatency::default();
        for i in 0..300u64 {
            w.record(1_000_000 + i * 37_000);
        }
        assert!(w.dense.is_none());
        let dense_bytes = dense().distinct_values() * 8;
        assert!(
            w.heap_bytes() * 5 < dense_bytes,
            "{} sparse vs {dense_bytes} dense",
            w.heap_bytes()
        );
    }
}
