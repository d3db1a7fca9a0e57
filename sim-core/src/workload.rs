//! Workload generation: open-loop arrival processes with a rate schedule (steps and linear
//! ramps), and weighted request mixes. Closed-loop users are driven by the simulator itself
//! (a user sends again after its answer and a think time).

use crate::rng::Stream;
use crate::scenario::{Arrivals, RateChange, RequestSpec};
use proxy_engine::types::HeadParts;
use proxy_engine::{Nanos, RequestHead, Time};
use rand::Rng;
use std::sync::Arc;

/// Requests per second as a function of time: a base rate changed by steps and linear ramps.
#[derive(Clone, Debug)]
pub struct RateSchedule {
    base: f64,
    /// `(start, end, target)`: from `start` the rate moves linearly to `target` at `end`
    /// (`start == end` is a step). In time order, not overlapping (validated).
    changes: Vec<(Time, Time, f64)>,
}

impl RateSchedule {
    /// A schedule starting at `base` req/s with `changes` applied in order.
    pub fn new(base: f64, changes: &[RateChange]) -> RateSchedule {
        let changes = changes
            .iter()
            .map(|c| match c {
                RateChange::Step { at, rate } => (Time(at.0), Time(at.0), *rate),
                RateChange::Ramp { from, to, rate } => (Time(from.0), Time(to.0), *rate),
            })
            .collect();
        RateSchedule { base, changes }
    }

    /// The rate in force at `t`, req/s.
    pub fn rate_at(&self, t: Time) -> f64 {
        let mut rate = self.base;
        for &(start, end, target) in &self.changes {
            if t >= end {
                rate = target;
            } else if t >= start {
                let f = t.since(start).0 as f64 / end.since(start).0 as f64;
                return rate + (target - rate) * f;
            } else {
                break;
            }
        }
        rate
    }

    /// The highest rate the schedule reaches, req/s.
    pub fn max_rate(&self) -> f64 {
        self.changes.iter().map(|c| c.2).fold(self.base, f64::max)
    }

    /// The first change boundary after `t`, if any.
    fn next_boundary(&self, t: Time) -> Option<Time> {
        self.changes
            .iter()
            .flat_map(|&(s, e, _)| [s, e])
            .find(|&b| b > t)
    }

    /// Expected number of arrivals in `[0, end)`: the integral of the rate (for tests and
    /// sizing).
    pub fn expected_arrivals(&self, end: Time) -> f64 {
        // The rate is piecewise linear, so the trapezoid rule is exact between boundaries.
        let mut points = vec![Time::ZERO];
        points.extend(
            self.changes
                .iter()
                .flat_map(|&(s, e, _)| [s, e])
                .filter(|&b| b < end),
        );
        points.push(end);
        points
            .windows(2)
            .map(|w| {
                let dt = w[1].since(w[0]).as_secs_f64();
                // Just after a step the new rate applies, so evaluate inside the interval.
                let (a, b) = (
                    self.rate_at(w[0]),
                    self.rate_at(Time(w[1].0.saturating_sub(1))),
                );
                dt * (a + b) / 2.0
            })
            .sum()
    }
}

/// Generates open-loop arrival times up to an end time.
#[derive(Clone, Debug)]
pub struct ArrivalProcess {
    schedule: RateSchedule,
    arrivals: Arrivals,
    max_rate: f64,
    end: Time,
    started: bool,
}

impl ArrivalProcess {
    /// Arrivals following `schedule`, spaced by `arrivals`, none at or after `end`.
    pub fn new(schedule: RateSchedule, arrivals: Arrivals, end: Time) -> ArrivalProcess {
        let max_rate = schedule.max_rate();
        ArrivalProcess {
            schedule,
            arrivals,
            max_rate,
            end,
            started: false,
        }
    }

    /// The arrival after the one at `now` (the first call gives the first arrival).
    pub fn next(&mut self, now: Time, rng: &mut Stream) -> Option<Time> {
        if self.max_rate <= 0.0 {
            return None;
        }
        let first = !self.started;
        self.started = true;
        let next = match self.arrivals {
            Arrivals::Poisson => self.next_poisson(now, rng),
            Arrivals::Constant => self.next_constant(now, first),
        }?;
        (next < self.end).then_some(next)
    }

    /// Non-homogeneous Poisson process by thinning (Lewis & Shedler): candidates at the peak
    /// rate, each kept with probability rate(t)/peak.
    fn next_poisson(&self, now: Time, rng: &mut Stream) -> Option<Time> {
        let mut t = now;
        loop {
            let u: f64 = rng.gen();
            t = t + Nanos::from_secs_f64(-(1.0 - u).ln() / self.max_rate);
            if t >= self.end {
                return None;
            }
            let rate = self.schedule.rate_at(t);
            if rate >= self.max_rate || rng.gen::<f64>() * self.max_rate < rate {
                return Some(t);
            }
        }
    }

    /// Evenly spaced at the current rate; a stretch at rate 0 skips to the next boundary.
    fn next_constant(&self, now: Time, first: bool) -> Option<Time> {
        let rate = self.schedule.rate_at(now);
        let mut t = if first || rate <= 0.0 {
            now
        } else {
            now + Nanos::from_secs_f64(1.0 / rate)
        };
        loop {
            if t >= self.end {
                return None;
            }
            if self.schedule.rate_at(t) > 0.0 {
                return Some(t);
            }
            t = self.schedule.next_boundary(t)?;
        }
    }
}

/// A weighted request mix with prebuilt heads (cloning one is a few refcount bumps).
#[derive(Clone, Debug)]
pub struct Mix {
    heads: Vec<RequestHead>,
    cumulative: Vec<u32>,
}

impl Mix {
    /// The mix for requests to `host` from `source`; an empty spec list means `GET /`.
    pub fn new(host: &str, source: &str, specs: &[RequestSpec]) -> Mix {
        if specs.is_empty() {
            let mut head = RequestHead::get(host, "/");
            head.source = Arc::from(source);
            return Mix {
                heads: vec![head],
                cumulative: vec![1],
            };
        }
        let mut total = 0;
        let mut heads = Vec::new();
        let mut cumulative = Vec::new();
        for spec in specs.iter().filter(|s| s.weight > 0) {
            total += spec.weight;
            cumulative.push(total);
            heads.push(head(host, &spec.method, &spec.path, &spec.headers, source));
        }
        Mix { heads, cumulative }
    }

    /// The same mix with every request's `:scheme` set (`https` for a client speaking TLS).
    pub fn with_scheme(mut self, scheme: &str) -> Mix {
        for head in &mut self.heads {
            head.scheme = Arc::from(scheme);
        }
        self
    }

    /// Draws one request head.
    pub fn pick(&self, rng: &mut Stream) -> RequestHead {
        if self.heads.len() == 1 {
            return self.heads[0].clone();
        }
        let total = self.cumulative.last().copied().unwrap_or(1);
        let draw = rng.gen_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= draw);
        self.heads[i.min(self.heads.len() - 1)].clone()
    }
}

/// Builds a request head from `source`; header names are lower-cased.
pub fn head(
    host: &str,
    method: &str,
    path: &str,
    headers: &std::collections::BTreeMap<String, String>,
    source: &str,
) -> RequestHead {
    let headers: Vec<(Arc<str>, Arc<str>)> = headers
        .iter()
        .map(|(k, v)| (Arc::from(k.to_ascii_lowercase()), Arc::from(v.as_str())))
        .collect();
    RequestHead::new(HeadParts {
        method: Arc::from(method.to_ascii_uppercase()),
        authority: Arc::from(host),
        path: Arc::from(path),
        scheme: Arc::from("http"),
        headers: Arc::from(headers),
        source: Arc::from(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    #[test]
    fn schedule_steps_and_ramps() {
        let s = RateSchedule::new(
            100.0,
            &[
                RateChange::Step {
                    at: Nanos::from_secs(10),
                    rate: 200.0,
                },
                RateChange::Ramp {
                    from: Nanos::from_secs(20),
                    to: Nanos::from_secs(30),
                    rate: 0.0,
                },
            ],
        );
        assert_eq!(s.rate_at(Time(0)), 100.0);
        assert_eq!(s.rate_at(Time(Nanos::from_secs(10).0)), 200.0);
        assert_eq!(s.rate_at(Time(Nanos::from_secs(25).0)), 100.0);
        assert_eq!(s.rate_at(Time(Nanos::from_secs(40).0)), 0.0);
        assert_eq!(s.max_rate(), 200.0);
        let expected = 100.0 * 10.0 + 200.0 * 10.0 + 0.5 * 200.0 * 10.0;
        assert!((s.expected_arrivals(Time(Nanos::from_secs(40).0)) - expected).abs() < 1e-6);
    }

    /// Counts arrivals of a process until it ends.
    fn count(p: &mut ArrivalProcess, seed: u64) -> u64 {
        let mut rng = stream(seed, "arrivals");
        let mut n = 0;
        let mut t = Time::ZERO;
        while let Some(next) = p.next(t, &mut rng) {
            assert!(next >= t, "arrivals move forward");
            t = next;
            n += 1;
        }
        n
    }

    #[test]
    fn poisson_count_matches_the_rate_integral() {
        let s = RateSchedule::new(
            50.0,
            &[RateChange::Ramp {
                from: Nanos::from_secs(10),
                to: Nanos::from_secs(60),
                rate: 550.0,
            }],
        );
        let end = Time(Nanos::from_secs(100).0);
        let expected = s.expected_arrivals(end); // 500 + 15000 + 22000 = 37500
        let n = count(&mut ArrivalProcess::new(s, Arrivals::Poisson, end), 9) as f64;
        // A Poisson count has variance equal to its mean: allow 5 standard deviations.
        assert!(
            (n - expected).abs() < 5.0 * expected.sqrt(),
            "{n} vs {expected}"
        );
    }

    #[test]
    fn constant_arrivals_are_exact() {
        let s = RateSchedule::new(
            10.0,
            &[
                RateChange::Step {
                    at: Nanos::from_secs(1),
                    rate: 0.0,
                },
                RateChange::Step {
                    at: Nanos::from_secs(2),
                    rate: 20.0,
                },
            ],
        );
        let end = Time(Nanos::from_secs(3).0);
        let n = count(&mut ArrivalProcess::new(s, Arrivals::Constant, end), 1);
        assert_eq!(n, 10 + 20);
    }

    #[test]
    fn mix_follows_weights() {
        let spec = |w: u32, path: &str| RequestSpec {
            weight: w,
            method: "get".into(),
            path: path.into(),
            headers: [("End-User".to_owned(), "jason".to_owned())].into(),
        };
        let mix = Mix::new(
            "svc",
            "test",
            &[spec(3, "/a"), spec(1, "/b"), spec(0, "/never")],
        );
        let mut rng = stream(5, "mix");
        let n = 40_000;
        let a = (0..n).filter(|_| &*mix.pick(&mut rng).path == "/a").count() as f64;
        // Binomial(n, 0.75): sd = sqrt(n·0.75·0.25) ≈ 87; allow 5 sd.
        assert!(
            (a - 0.75 * n as f64).abs() < 5.0 * (n as f64 * 0.1875).sqrt(),
            "{a}"
        );
        let h = mix.pick(&mut rng);
        assert_eq!((&*h.method, h.header("end-user")), ("GET", Some("jason")));
    }
}
