//! Load balancers, as Envoy implements the ones Istio configures (reference §3.7):
//!
//! * `RoundRobin`: `hosts[idx++ % n]`, the index starting at a random offset per proxy.
//! * `Random`: `hosts[rand % n]`.
//! * `LeastRequest` (Istio's default): power of two choices — two samples **with replacement**;
//!   the second wins only with strictly fewer active requests (ties keep the first).
//! * `RingHash`: each endpoint hashed onto a ring `ceil(min_ring_size / n)` times; a key goes to
//!   the first entry clockwise. `Maglev`: Maglev's permutation table of a prime size.
//!   A request without a hash key (header, cookie or parameter absent) gets a random endpoint,
//!   as in Envoy.
//!
//! Ring and table positions derive from each endpoint's stable instance name (the registry's
//! `name`), not its index or address, so removing an endpoint only moves the keys that were on
//! it, and a key lands on the same instance in the simulator and live.

use crate::config::{ConsistentHash, LoadBalancerSettings, SimpleLb};
use crate::hash::{hash64, mix64};
use crate::head::RequestHead;
use crate::matching::{cookie, query_param};
use rand::Rng;
use std::sync::Arc;

/// Envoy's default minimum ring size.
pub(crate) const DEFAULT_RING_SIZE: u64 = 1024;
/// Envoy's largest ring.
pub(crate) const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's default Maglev table size (prime).
pub(crate) const DEFAULT_MAGLEV_SIZE: u64 = 65537;

/// Where a consistent hash takes its key from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value.
    Header(Arc<str>),
    /// A cookie's value.
    Cookie(Arc<str>),
    /// A query parameter's value.
    Query(Arc<str>),
    /// The downstream source.
    Source,
}

impl HashKey {
    /// The key's hash for this request, if the request carries the key.
    pub fn hash(&self, head: &RequestHead) -> Option<u64> {
        let value = match self {
            HashKey::Header(name) => head.header(name),
            HashKey::Cookie(name) => cookie(head, name),
            HashKey::Query(name) => query_param(&head.path, name),
            HashKey::Source => Some(&*head.source),
        }?;
        Some(hash64(value.as_bytes()))
    }
}

/// A compiled load-balancing policy for one cluster.
#[derive(Clone, Debug)]
pub enum LbPolicy {
    /// Round robin from a random start.
    RoundRobin,
    /// Uniformly random.
    Random,
    /// Power of two choices on active requests.
    LeastRequest,
    /// Ring hash: `(position, index into the cluster's endpoints)`, sorted by position.
    RingHash {
        /// Key source.
        key: HashKey,
        /// The ring.
        ring: Arc<[(u64, u32)]>,
    },
    /// Maglev lookup table of endpoint indices.
    Maglev {
        /// Key source.
        key: HashKey,
        /// The table.
        table: Arc<[u32]>,
    },
}

/// Why a load-balancer setting cannot be used; the string says what is wrong.
pub(crate) type LbError = String;

impl LbPolicy {
    /// Compiles `settings` (None = Istio's default, `LEAST_REQUEST`) over endpoints with these
    /// stable names, in cluster order.
    pub fn compile(
        settings: Option<&LoadBalancerSettings>,
        names: &[&str],
    ) -> Result<LbPolicy, LbError> {
        let Some(s) = settings else {
            return Ok(LbPolicy::LeastRequest);
        };
        match (&s.simple, &s.consistent_hash) {
            (Some(_), Some(_)) => Err("set only one of `simple` and `consistent_hash`".into()),
            (None, None) => Err("set one of `simple` or `consistent_hash`".into()),
            (Some(simple), None) => Ok(match simple {
                SimpleLb::RoundRobin => LbPolicy::RoundRobin,
                SimpleLb::Random => LbPolicy::Random,
                SimpleLb::Unspecified
                | SimpleLb::LeastRequest
                | SimpleLb::LeastConn
                | SimpleLb::Passthrough => LbPolicy::LeastRequest,
            }),
            (None, Some(ch)) => compile_hash(ch, names),
        }
    }

    /// Picks an endpoint index in `0..n` (n > 0). `active` gives active requests per cluster
    /// endpoint index; `rr` is this proxy's round-robin cursor for the cluster.
    pub fn pick(
        &self,
        n: usize,
        head: &RequestHead,
        rng: &mut impl Rng,
        rr: &mut Option<u32>,
        active: impl Fn(usize) -> u32,
    ) -> usize {
        debug_assert!(n > 0);
        match self {
            LbPolicy::RoundRobin => {
                let i = rr.unwrap_or_else(|| rng.gen_range(0..n as u32)) as usize % n;
                *rr = Some(((i + 1) % n) as u32);
                i
            }
            LbPolicy::Random => rng.gen_range(0..n),
            LbPolicy::LeastRequest => {
                if n == 1 {
                    return 0;
                }
                let first = rng.gen_range(0..n);
                let second = rng.gen_range(0..n);
                if active(second) < active(first) {
                    second
                } else {
                    first
                }
            }
            LbPolicy::RingHash { key, ring } => match key.hash(head) {
                Some(h) => {
                    let i = ring.partition_point(|(pos, _)| *pos < h);
                    ring[if i == ring.len() { 0 } else { i }].1 as usize
                }
                None => rng.gen_range(0..n),
            },
            LbPolicy::Maglev { key, table } => match key.hash(head) {
                Some(h) => table[(h % table.len() as u64) as usize] as usize,
                None => rng.gen_range(0..n),
            },
        }
    }
}

fn compile_hash(ch: &ConsistentHash, names: &[&str]) -> Result<LbPolicy, LbError> {
    let mut keys = Vec::new();
    if let Some(h) = &ch.http_header_name {
        keys.push(HashKey::Header(h.to_ascii_lowercase().into()));
    }
    if let Some(c) = &ch.http_cookie {
        keys.push(HashKey::Cookie(c.name.as_str().into()));
    }
    if ch.use_source_ip {
        keys.push(HashKey::Source);
    }
    if let Some(q) = &ch.http_query_parameter_name {
        keys.push(HashKey::Query(q.as_str().into()));
    }
    let key = match keys.len() {
        1 => keys.remove(0),
        0 => return Err("consistent_hash needs one key: http_header_name, http_cookie, use_source_ip or http_query_parameter_name".into()),
        _ => return Err("consistent_hash takes exactly one key source".into()),
    };
    if let Some(m) = &ch.maglev {
        if ch.ring_hash.is_some() {
            return Err("set only one of `ring_hash` and `maglev`".into());
        }
        let size = m.table_size.unwrap_or(DEFAULT_MAGLEV_SIZE);
        if !is_prime(size) || size > 5_000_011 {
            return Err(format!(
                "maglev table_size must be a prime up to 5000011, found {size}"
            ));
        }
        return Ok(LbPolicy::Maglev {
            key,
            table: maglev_table(names, size as usize).into(),
        });
    }
    let min = ch
        .ring_hash
        .as_ref()
        .and_then(|r| r.minimum_ring_size)
        .or(ch.minimum_ring_size)
        .unwrap_or(DEFAULT_RING_SIZE);
    if min == 0 || min > MAX_RING_SIZE {
        return Err(format!(
            "minimum_ring_size must be 1..={MAX_RING_SIZE}, found {min}"
        ));
    }
    Ok(LbPolicy::RingHash {
        key,
        ring: ring(names, min).into(),
    })
}

/// Each endpoint appears `ceil(min / n)` times, at `hash("{name}_{j}")`.
fn ring(names: &[&str], min: u64) -> Vec<(u64, u32)> {
    if names.is_empty() {
        return Vec::new();
    }
    let per_host = min.div_ceil(names.len() as u64);
    let mut ring: Vec<(u64, u32)> = names
        .iter()
        .enumerate()
        .flat_map(|(i, name)| {
            (0..per_host).map(move |j| (hash64(format!("{name}_{j}").as_bytes()), i as u32))
        })
        .collect();
    // Ties (vanishingly rare) are ordered by endpoint index, so the ring is deterministic.
    ring.sort_unstable();
    ring
}

/// Maglev population (Eisenbud et al. 2016): each endpoint walks its own permutation of the
/// table, taking turns, until every slot is filled.
fn maglev_table(names: &[&str], size: usize) -> Vec<u32> {
    const EMPTY: u32 = u32::MAX;
    if names.is_empty() {
        return Vec::new();
    }
    let m = size as u64;
    let perms: Vec<(u64, u64)> = names
        .iter()
        .map(|n| {
            let h = hash64(n.as_bytes());
            (h % m, mix64(h) % (m - 1) + 1)
        })
        .collect();
    let mut next = vec![0u64; names.len()];
    let mut table = vec![EMPTY; size];
    let mut filled = 0;
    'fill: loop {
        for (i, &(offset, skip)) in perms.iter().enumerate() {
            let mut c = (offset + next[i] * skip) % m;
            while table[c as usize] != EMPTY {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c as usize] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    table
}

fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn addrs(ids: impl IntoIterator<Item = u32>) -> Vec<String> {
        ids.into_iter().map(|i| format!("svc/v1/{i}")).collect()
    }

    fn hash_policy(maglev: bool, n: &[String]) -> LbPolicy {
        let ch = ConsistentHash {
            http_header_name: Some("x-user".into()),
            maglev: maglev.then(Default::default),
            ..Default::default()
        };
        let names: Vec<&str> = n.iter().map(String::as_str).collect();
        compile_hash(&ch, &names).expect("valid")
    }

    fn pick_for(p: &LbPolicy, n: usize, user: &str) -> usize {
        let mut head = RequestHead::get("svc", "/");
        head.headers = Arc::from(vec![(Arc::from("x-user"), Arc::from(user))]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        p.pick(n, &head, &mut rng, &mut None, |_| 0)
    }

    #[test]
    fn least_request_prefers_the_less_loaded_sample() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let active = [5, 0];
        let n = 20_000;
        let zero = (0..n)
            .filter(|_| {
                LbPolicy::LeastRequest.pick(
                    2,
                    &RequestHead::get("s", "/"),
                    &mut rng,
                    &mut None,
                    |i| active[i],
                ) == 1
            })
            .count() as f64;
        // P(at least one of two samples is endpoint 1) = 1 - 1/4 = 0.75; binomial 5 sd.
        assert!((zero / n as f64 - 0.75).abs() < 5.0 * (0.75 * 0.25 / n as f64).sqrt());
    }

    #[test]
    fn same_key_same_endpoint_and_removal_moves_about_one_in_n() {
        for maglev in [false, true] {
            let n = 10;
            let all = addrs(0..n);
            let fewer = addrs((0..n).filter(|&i| i != 3));
            let (a, b) = (hash_policy(maglev, &all), hash_policy(maglev, &fewer));
            let keys = 5_000;
            let mut moved = 0;
            for k in 0..keys {
                let user = format!("user-{k}");
                let before = pick_for(&a, all.len(), &user);
                assert_eq!(
                    before,
                    pick_for(&a, all.len(), &user),
                    "stable while the set is"
                );
                if all[before] != fewer[pick_for(&b, fewer.len(), &user)] {
                    moved += 1;
                }
            }
            let moved = moved as f64 / keys as f64;
            // The removed endpoint's keys (1/N = 10 %) must move. Envoy's ring gives each host
            // ceil(min_ring_size / n) entries, so the survivors' extra entries take a few more
            // (measured ≈ 6.7 % here); Maglev's table rebalances a little. Bound: 2/N.
            let (lo, hi) = (1.0 / n as f64 - 0.02, 2.0 / n as f64);
            assert!((lo..=hi).contains(&moved), "maglev={maglev}: moved {moved}");
        }
    }

    #[test]
    fn bad_hash_settings_are_rejected() {
        let none = ConsistentHash::default();
        assert!(compile_hash(&none, &["a", "b"]).is_err());
        let not_prime = ConsistentHash {
            use_source_ip: true,
            maglev: Some(crate::config::Maglev {
                table_size: Some(1000),
            }),
            ..Default::default()
        };
        assert!(compile_hash(&not_prime, &["a", "b"])
            .expect_err("not a prime")
            .contains("prime"));
    }
}
