//! Time for the engine: a monotonic instant (`Time`) and a span (`Nanos`), both integer
//! nanoseconds. The engine never reads a clock; drivers pass `now` in.

use std::fmt;
use std::ops::{Add, Sub};

/// A monotonic instant, integer nanoseconds since the driver's epoch (simulation start or
/// live process start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

/// A span of time, integer nanoseconds. Parses from strings such as `"250ms"` or `"2s"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Time {
    /// The epoch: the instant the driver started.
    pub const ZERO: Time = Time(0);

    /// Span from `earlier` to `self`, zero if `earlier` is later (never negative).
    pub fn since(self, earlier: Time) -> Nanos {
        Nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Nanos {
    /// The empty span.
    pub const ZERO: Nanos = Nanos(0);

    /// A span of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }

    /// A span of `s` seconds.
    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s * 1_000_000_000)
    }

    /// A span from fractional seconds, rounded to the nearest nanosecond; negative and NaN give
    /// zero, values beyond `u64` nanoseconds saturate.
    pub fn from_secs_f64(s: f64) -> Nanos {
        if s.is_nan() || s <= 0.0 {
            return Nanos::ZERO;
        }
        let ns = (s * 1e9).round();
        if ns >= u64::MAX as f64 {
            Nanos(u64::MAX)
        } else {
            Nanos(ns as u64)
        }
    }

    /// The span in seconds, as a float (for reports and arithmetic on rates).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// The span in milliseconds, as a float.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// Parses a duration string: a non-negative decimal number followed by one of the units
    /// `ns`, `us`, `ms`, `s`, `m`, `h` (for example `"250ms"`, `"1.5s"`, `"2m"`).
    pub fn parse(text: &str) -> Result<Nanos, DurationParseError> {
        let bad = || DurationParseError(text.to_owned());
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        let ns = (value * scale).round();
        if !ns.is_finite() || ns >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Nanos(ns as u64))
    }
}

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{0}`: expected a number and a unit (ns, us, ms, s, m, h), e.g. \"250ms\" or \"2s\"")]
pub struct DurationParseError(pub String);

impl Add<Nanos> for Time {
    type Output = Time;
    fn add(self, rhs: Nanos) -> Time {
        Time(self.0.saturating_add(rhs.0))
    }
}

impl Add for Nanos {
    type Output = Nanos;
    fn add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Nanos {
    type Output = Nanos;
    fn sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Nanos {
    /// Shortest exact rendering in the largest unit that divides the span (`"250ms"`, `"2s"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 5] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0 % scale == 0 {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}ns", self.0)
    }
}

impl serde::Serialize for Nanos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Nanos {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Nanos;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"250ms\" or \"2s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Nanos, E> {
                Nanos::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("250ms", 250_000_000),
            ("2s", 2_000_000_000),
            ("1m", 60_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1.5s", 1_500_000_000),
            ("10us", 10_000),
            ("7ns", 7),
            ("0s", 0),
        ];
        for (text, ns) in cases {
            assert_eq!(Nanos::parse(text), Ok(Nanos(ns)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in ["", "ms", "12", "1.2.3s", "5 parsecs", "-1s", "1sec"] {
            assert!(Nanos::parse(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn display_round_trips() {
        for ns in [0, 7, 10_000, 250_000_000, 2_000_000_000, 90_000_000_000] {
            let n = Nanos(ns);
            assert_eq!(Nanos::parse(&n.to_string()), Ok(n));
        }
    }
}
