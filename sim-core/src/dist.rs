//! Service-time and latency distributions, sampled from a caller-supplied stream into integer
//! nanoseconds. Sampling is hand-written (inverse transform, Box–Muller) so the numbers depend
//! only on the stream, not on a library's algorithm choices.

use proxy_engine::Nanos;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// z-score of the 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874_040_841;

/// A distribution of non-negative durations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Dist {
    /// Always the same value.
    Constant(Nanos),
    /// Exponential with the given mean (memoryless service, as in M/M/1).
    Exponential {
        /// Mean of the distribution.
        mean: Nanos,
    },
    /// Uniform on `[lo, hi]`.
    Uniform {
        /// Lower bound.
        lo: Nanos,
        /// Upper bound.
        hi: Nanos,
    },
    /// Log-normal, fitted by its median and 99th percentile.
    LogNormal {
        /// Median.
        p50: Nanos,
        /// 99th percentile (≥ p50).
        p99: Nanos,
    },
    /// Piecewise-linear inverse CDF through `(percentile, value)` points; percentiles run from
    /// 0 to 100, increasing, with non-decreasing values.
    Empirical(Vec<(f64, Nanos)>),
}

impl Default for Dist {
    fn default() -> Self {
        Dist::Constant(Nanos::ZERO)
    }
}

impl Dist {
    /// Draws one value.
    pub fn sample(&self, rng: &mut impl Rng) -> Nanos {
        match self {
            Dist::Constant(v) => *v,
            Dist::Exponential { mean } => {
                // 1 - U is in (0, 1], so the log is finite.
                let u: f64 = rng.gen();
                Nanos::from_secs_f64(-(1.0 - u).ln() * mean.as_secs_f64())
            }
            Dist::Uniform { lo, hi } => Nanos(rng.gen_range(lo.0..=hi.0.max(lo.0))),
            Dist::LogNormal { p50, p99 } => {
                let (mu, sigma) = lognormal_params(*p50, *p99);
                Nanos::from_secs_f64((mu + sigma * standard_normal(rng)).exp())
            }
            Dist::Empirical(points) => {
                let p = rng.gen::<f64>() * 100.0;
                empirical_at(points, p)
            }
        }
    }

    /// The exact mean of the distribution, seconds (for analytic checks and bench sizing).
    pub fn mean_secs(&self) -> f64 {
        match self {
            Dist::Constant(v) => v.as_secs_f64(),
            Dist::Exponential { mean } => mean.as_secs_f64(),
            Dist::Uniform { lo, hi } => (lo.as_secs_f64() + hi.as_secs_f64()) / 2.0,
            Dist::LogNormal { p50, p99 } => {
                let (mu, sigma) = lognormal_params(*p50, *p99);
                (mu + sigma * sigma / 2.0).exp()
            }
            Dist::Empirical(points) => points
                .windows(2)
                .map(|w| {
                    (w[1].0 - w[0].0) / 100.0 * (w[0].1.as_secs_f64() + w[1].1.as_secs_f64()) / 2.0
                })
                .sum(),
        }
    }

    /// Whether the distribution always gives zero (lets callers skip a draw).
    pub fn is_zero(&self) -> bool {
        matches!(self, Dist::Constant(Nanos(0)))
    }

    /// Checks the parameters; `Err` says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Dist::Constant(_) => Ok(()),
            Dist::Exponential { mean } if mean.0 == 0 => {
                Err("Exponential mean must be above 0".into())
            }
            Dist::Exponential { .. } => Ok(()),
            Dist::Uniform { lo, hi } if lo > hi => {
                Err(format!("Uniform needs lo <= hi, found lo {lo} > hi {hi}"))
            }
            Dist::Uniform { .. } => Ok(()),
            Dist::LogNormal { p50, p99 } if p50.0 == 0 || p99 < p50 => Err(format!(
                "LogNormal needs 0 < p50 <= p99, found p50 {p50}, p99 {p99}"
            )),
            Dist::LogNormal { .. } => Ok(()),
            Dist::Empirical(points) => check_empirical(points),
        }
    }
}

fn check_empirical(points: &[(f64, Nanos)]) -> Result<(), String> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Err("Empirical needs at least two points".into());
    };
    if points.len() < 2 || first.0 != 0.0 || last.0 != 100.0 {
        return Err("Empirical points must start at percentile 0 and end at 100".into());
    }
    for w in points.windows(2) {
        if w[1].0 <= w[0].0 || w[1].1 < w[0].1 {
            return Err(format!(
                "Empirical percentiles must increase and values must not decrease \
                 (at percentile {} then {})",
                w[0].0, w[1].0
            ));
        }
    }
    Ok(())
}

/// `(mu, sigma)` of the underlying normal for a log-normal with this median and p99.
fn lognormal_params(p50: Nanos, p99: Nanos) -> (f64, f64) {
    let mu = p50.as_secs_f64().ln();
    let sigma = (p99.as_secs_f64().ln() - mu) / Z99;
    (mu, sigma)
}

/// One standard-normal draw (Box–Muller, using one of the pair).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Value at percentile `p` by linear interpolation between points (validated beforehand).
fn empirical_at(points: &[(f64, Nanos)], p: f64) -> Nanos {
    let i = points
        .partition_point(|(q, _)| *q <= p)
        .clamp(1, points.len() - 1);
    let (p0, v0) = points[i - 1];
    let (p1, v1) = points[i];
    let f = ((p - p0) / (p1 - p0)).clamp(0.0, 1.0);
    Nanos(v0.0 + ((v1.0 - v0.0) as f64 * f).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    /// Sample mean and the fraction of samples at or below `x`.
    fn summary(d: &Dist, n: usize, x: Nanos) -> (f64, f64) {
        let mut rng = stream(1, "dist-test");
        let mut sum = 0.0;
        let mut below = 0usize;
        for _ in 0..n {
            let v = d.sample(&mut rng);
            sum += v.as_secs_f64();
            below += usize::from(v <= x);
        }
        (sum / n as f64, below as f64 / n as f64)
    }

    // n = 200k: the standard error of a fraction is at most 0.5/sqrt(n) ≈ 0.0011, so a 0.006
    // tolerance is more than 5 standard errors. Means are checked within 5 standard errors of
    // the distribution's own standard deviation.
    const N: usize = 200_000;

    #[test]
    fn exponential_mean_and_median() {
        let d = Dist::Exponential {
            mean: Nanos::from_millis(10),
        };
        let (mean, below) = summary(&d, N, Nanos::from_secs_f64(0.01 * std::f64::consts::LN_2));
        assert!(
            (mean - 0.01).abs() < 5.0 * 0.01 / (N as f64).sqrt(),
            "{mean}"
        );
        assert!((below - 0.5).abs() < 0.006, "{below}");
    }

    #[test]
    fn lognormal_hits_its_percentiles() {
        let d = Dist::LogNormal {
            p50: Nanos::from_millis(20),
            p99: Nanos::from_millis(120),
        };
        let (_, below50) = summary(&d, N, Nanos::from_millis(20));
        let (_, below99) = summary(&d, N, Nanos::from_millis(120));
        assert!((below50 - 0.5).abs() < 0.006, "{below50}");
        // Fraction near 0.99: standard error sqrt(0.99·0.01/n) ≈ 0.00022.
        assert!((below99 - 0.99).abs() < 0.0012, "{below99}");
    }

    #[test]
    fn uniform_and_empirical_stay_in_range() {
        let d = Dist::Empirical(vec![
            (0.0, Nanos::from_millis(1)),
            (50.0, Nanos::from_millis(5)),
            (100.0, Nanos::from_millis(50)),
        ]);
        assert!(d.check().is_ok());
        let (_, below) = summary(&d, N, Nanos::from_millis(5));
        assert!((below - 0.5).abs() < 0.006, "{below}");
        let mut rng = stream(3, "u");
        let u = Dist::Uniform {
            lo: Nanos(10),
            hi: Nanos(20),
        };
        assert!((0..1000).all(|_| (10..=20).contains(&u.sample(&mut rng).0)));
        assert!((d.mean_secs() - (0.5 * 0.003 + 0.5 * 0.0275)).abs() < 1e-12);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(Dist::Exponential { mean: Nanos(0) }.check().is_err());
        assert!(Dist::Uniform {
            lo: Nanos(5),
            hi: Nanos(1)
        }
        .check()
        .is_err());
        assert!(Dist::LogNormal {
            p50: Nanos(5),
            p99: Nanos(1)
        }
        .check()
        .is_err());
        assert!(Dist::Empirical(vec![(10.0, Nanos(1)), (100.0, Nanos(2))])
            .check()
            .is_err());
    }
}
