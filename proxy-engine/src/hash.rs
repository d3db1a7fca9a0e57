//! Stable 64-bit hashing (no per-process random state), for consistent-hash load balancing and
//! for deriving named RNG seeds. FNV-1a over the bytes, finished with the SplitMix64 mixer so
//! short keys spread over all 64 bits.

/// SplitMix64 finaliser: spreads the bits of `x`.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A well-mixed stable hash of `bytes`.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    mix64(fnv1a(bytes))
}
