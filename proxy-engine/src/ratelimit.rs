//! Envoy's local rate limit token bucket (≥ 1.31): starts full, refills continuously at
//! `tokens_per_fill / fill_interval`, capped at `max_tokens`; a request passes if at least one
//! token is left, and takes it.

use crate::policy::TokenBucketSpec;
use crate::time::Time;

/// One bucket.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    spec: TokenBucketSpec,
    tokens: f64,
    last: Time,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(spec: TokenBucketSpec, now: Time) -> TokenBucket {
        TokenBucket {
            spec,
            tokens: spec.max_tokens,
            last: now,
        }
    }

    /// The bucket's configuration.
    pub(crate) fn spec(&self) -> &TokenBucketSpec {
        &self.spec
    }

    /// Takes a token at `now` if one is available.
    pub(crate) fn try_take(&mut self, now: Time) -> bool {
        let elapsed = now.since(self.last).0 as f64;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.spec.rate_per_ns).min(self.spec.max_tokens);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Nanos;

    #[test]
    fn starts_full_then_refills_continuously() {
        // 10 tokens, 10 per second.
        let spec = TokenBucketSpec {
            max_tokens: 10.0,
            rate_per_ns: 10.0 / 1e9,
            status: 429,
        };
        let mut b = TokenBucket::new(spec, Time::ZERO);
        let passed = (0..15).filter(|_| b.try_take(Time::ZERO)).count();
        assert_eq!(passed, 10, "burst = bucket size");
        assert!(
            !b.try_take(Time::ZERO + Nanos::from_millis(50)),
            "half a token"
        );
        assert!(
            b.try_take(Time::ZERO + Nanos::from_millis(100)),
            "one token"
        );
        // A long pause refills only up to the cap.
        let later = Time::ZERO + Nanos::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(later)).count(), 10);
    }
}
