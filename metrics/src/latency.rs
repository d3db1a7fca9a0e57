//! Latency histograms stored by what they hold: a sparse list of hdrhistogram value classes
//! while the histogram has seen few values, the dense hdrhistogram once it has seen many.
//!
//! A 24-hour run keeps 86,400 one-second windows; dense, each would cost ~37 KB at 2
//! significant digits (3.2 GB in all), while a window of a few hundred requests needs a few
//! KB. A run's per-route, per-destination and per-cluster figures (3 digits) cost ~270 KB each
//! dense: a mesh of 3,000 services would need gigabytes for tables whose rows saw a few dozen
//! requests each.
//!
//! The figures are exactly those of a dense hdrhistogram with the same digits: a value is kept
//! as the lowest value of its hdrhistogram class (`lowest_equivalent`), and the sparse form
//! answers each query as hdrhistogram's own code does over the same counts (the tests compare
//! them), so going sparse changes no reported number.
//!
//! **Invariant:** `values` is sorted and free of repeats, `values.len() == counts.len()`, and
//! every value is its class's lowest (`lowest_equivalent(v) == v`).

use crate::LATENCY_MAX_NS;
use hdrhistogram::Histogram;
use std::borrow::Cow;

/// A time-series window's or an instance's latency: 2 significant digits.
pub type WindowLatency = Latency<2>;

/// A run's latency per route, destination, cluster and in total: 3 significant digits.
pub type StatsLatency = Latency<3>;

/// Distinct classes kept sparse; past this, the histogram turns dense (12 bytes a class
/// sparse: ~24 KB at the switch, under the dense size at 2 and 3 digits).
const SPARSE_MAX: usize = 2048;

/// Values kept sparse; past this, the histogram turns dense anyway: a busy one pays the dense
/// size once for O(1) records instead of a binary search per record (the simulator's hot
/// path).
const SPARSE_RECORDS_MAX: u64 = 4096;

/// A latency distribution in nanoseconds with `SIGFIG` significant digits (2 or 3), over
/// 1 ns ..= `LATENCY_MAX_NS`.
#[derive(Clone, Debug, Default)]
pub struct Latency<const SIGFIG: u8> {
    /// Class lowest values, sorted (sparse form).
    values: Vec<u64>,
    /// Count per class in `values`.
    counts: Vec<u32>,
    /// The dense form, once the histogram saw more than `SPARSE_MAX` classes or
    /// `SPARSE_RECORDS_MAX` values (then `values` and `counts` are empty).
    dense: Option<Box<Histogram<u64>>>,
    /// Values recorded in the sparse form.
    sparse_len: u64,
}

/// An empty dense histogram with the bounds every latency uses.
fn dense(sigfig: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low 1 ≥ 1, high ≥ 2·low, sigfig ≤ 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, sigfig).expect("valid histogram bounds")
}

thread_local! {
    /// Histograms never recorded into: they only map values to their classes.
    static CLASSES_2: Histogram<u64> = dense(2);
    static CLASSES_3: Histogram<u64> = dense(3);
}

/// `f` applied to the class map of `sigfig` digits (2, else 3).
fn with_classes<R>(sigfig: u8, f: impl FnOnce(&Histogram<u64>) -> R) -> R {
    if sigfig == 2 {
        CLASSES_2.with(f)
    } else {
        CLASSES_3.with(f)
    }
}

/// The lowest value of `v`'s class at `sigfig` digits.
fn class_of(sigfig: u8, v: u64) -> u64 {
    with_classes(sigfig, |h| h.lowest_equivalent(v))
}

impl<const SIGFIG: u8> Latency<SIGFIG> {
    /// Records one latency (clamped to 1 ns ..= `LATENCY_MAX_NS`).
    #[inline]
    pub fn record(&mut self, latency_ns: u64) {
        let v = latency_ns.clamp(1, LATENCY_MAX_NS);
        match &mut self.dense {
            Some(d) => d.saturating_record(v),
            None => self.record_n(v, 1),
        }
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
        let class = class_of(SIGFIG, v);
        match self.values.binary_search(&class) {
            Ok(i) => match self.counts[i].checked_add(n32) {
                Some(c) => self.counts[i] = c,
                None => return false,
            },
            Err(i) if self.values.len() < SPARSE_MAX => {
                self.values.insert(i, class);
                self.counts.insert(i, n32);
            }
            Err(_) => return false,
        }
        self.sparse_len += n;
        true
    }

    /// The sparse classes in a dense histogram.
    fn rebuilt(&self) -> Histogram<u64> {
        let mut d = dense(SIGFIG);
        for (v, c) in self.values.iter().zip(&self.counts) {
            d.saturating_record_n(*v, u64::from(*c));
        }
        d
    }

    /// Moves the sparse classes into a dense histogram.
    fn densify(&mut self) {
        let d = self.rebuilt();
        self.values = Vec::new();
        self.counts = Vec::new();
        self.sparse_len = 0;
        self.dense = Some(Box::new(d));
    }

    /// The distribution as a dense hdrhistogram (borrowed when dense, rebuilt when sparse),
    /// for what the figures below do not cover.
    pub fn histogram(&self) -> Cow<'_, Histogram<u64>> {
        match &self.dense {
            Some(d) => Cow::Borrowed(&**d),
            None => Cow::Owned(self.rebuilt()),
        }
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

    /// The value at quantile `q` (0..=1), as hdrhistogram reports it: the highest value of the
    /// class holding the `ceil(q·n)`-th value (at least the first), the lowest for `q` = 0;
    /// 0 when empty (`hdrhistogram::Histogram::value_at_quantile`).
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if let Some(d) = &self.dense {
            return d.value_at_quantile(q);
        }
        let q = if q > 1.0 { 1.0 } else { q };
        let target = ((q * self.sparse_len as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (v, c) in self.values.iter().zip(&self.counts) {
            seen += u64::from(*c);
            if seen >= target {
                return if q == 0.0 {
                    *v
                } else {
                    self.highest_equivalent(*v)
                };
            }
        }
        0
    }

    /// The smallest value recorded, as hdrhistogram reports it (its class's lowest; 0 when
    /// empty).
    pub fn min(&self) -> u64 {
        match &self.dense {
            Some(d) => d.min(),
            None => self.values.first().copied().unwrap_or(0),
        }
    }

    /// The largest value recorded, as hdrhistogram reports it (its class's highest; 0 when
    /// empty).
    pub fn max(&self) -> u64 {
        match &self.dense {
            Some(d) => d.max(),
            None => self
                .values
                .last()
                .map_or(0, |v| self.highest_equivalent(*v)),
        }
    }

    /// Values recorded in the classes of `low` ..= `high`, as hdrhistogram counts them.
    pub fn count_between(&self, low: u64, high: u64) -> u64 {
        if let Some(d) = &self.dense {
            return d.count_between(low, high);
        }
        let lo = class_of(SIGFIG, low.min(LATENCY_MAX_NS));
        let hi = class_of(SIGFIG, high.min(LATENCY_MAX_NS));
        self.values
            .iter()
            .zip(&self.counts)
            .filter(|(v, _)| (lo..=hi).contains(*v))
            .map(|(_, c)| u64::from(*c))
            .sum()
    }

    /// Whether `a` and `b` fall in the same class.
    pub fn equivalent(&self, a: u64, b: u64) -> bool {
        class_of(SIGFIG, a) == class_of(SIGFIG, b)
    }

    /// The highest value of `v`'s class.
    pub fn highest_equivalent(&self, v: u64) -> u64 {
        with_classes(SIGFIG, |h| h.highest_equivalent(v))
    }

    /// Adds `other`'s values to these.
    pub fn merge(&mut self, other: &Latency<SIGFIG>) {
        match &other.dense {
            Some(d) => {
                if self.dense.is_none() {
                    self.densify();
                }
                if let Some(mine) = &mut self.dense {
                    // Same bounds and digits: adding cannot fail.
                    let _ = mine.add(&**d);
                }
            }
            None => {
                for (v, c) in other.values.iter().zip(&other.counts) {
                    self.record_n(*v, u64::from(*c));
                }
            }
        }
    }

    /// Bytes this histogram holds on the heap (for tests and memory notes).
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
            let mut reference = dense(2);
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

    /// At 3 digits too, sparse or dense, every figure equals a dense histogram's.
    #[test]
    fn three_digit_figures_equal_a_dense_histograms() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for n in [0usize, 1, 40, 3000, 9000] {
            let mut l = StatsLatency::default();
            let mut reference = dense(3);
            for _ in 0..n {
                let v = 10f64.powf(rng.gen_range(4.0..9.0)) as u64;
                l.record(v);
                reference.saturating_record(v);
            }
            // Dense past the record limit; 3,000 log-uniform values pass the class limit.
            assert_eq!(l.dense.is_some(), n >= 3000, "n {n}");
            for q in [0.0, 0.5, 0.99, 1.0] {
                assert_eq!(l.value_at_quantile(q), reference.value_at_quantile(q));
            }
            assert_eq!((l.min(), l.max()), (reference.min(), reference.max()));
            let between = l.count_between(0, 1_000_000);
            assert_eq!(between, reference.count_between(0, 1_000_000));
            let mut sum = StatsLatency::default();
            sum.merge(&l);
            sum.merge(&l);
            assert_eq!(sum.len(), 2 * reference.len());
            assert_eq!(sum.value_at_quantile(0.9), reference.value_at_quantile(0.9));
        }
        let l = StatsLatency::default();
        assert!(l.equivalent(1_000_000, 1_000_400) && !l.equivalent(1_000_000, 1_002_000));
        assert_eq!(
            l.highest_equivalent(1_000_000),
            dense(3).highest_equivalent(1_000_000)
        );
    }

    #[test]
    fn a_small_window_is_small() {
        let mut w = WindowLatency::default();
        for i in 0..300u64 {
            w.record(1_000_000 + i * 37_000);
        }
        assert!(w.dense.is_none());
        let dense_bytes = dense(2).distinct_values() * 8;
        assert!(
            w.heap_bytes() * 5 < dense_bytes,
            "{} sparse vs {dense_bytes} dense",
            w.heap_bytes()
        );
    }
}
