//! A fast hasher for `u64` keys that clients choose (dht record keys, request ids): a folded
//! 128-bit multiply, where SipHash (std's default) costs ~70 instructions a lookup on the
//! request path. Keys are often sequential or strided (multiples of 1024...), so neither a map
//! nor a sharding may use raw key bits: every output bit depends on every input bit. It is not
//! keyed: a client choosing colliding keys slows only what is its own (its channel, its
//! connection's streams), which the limits bound.

use std::hash::{BuildHasherDefault, Hasher};

/// Folded 128-bit multiply of `key ^ seed`: cheap, and every output bit depends on every input
/// bit. Different seeds give independent mixes (a shard index and a bucket from one key).
pub fn fold_mix(key: u64, seed: u64) -> u64 {
    let product = u128::from(key ^ seed) * 0x9e37_79b9_7f4a_7c15_u128;
    (product as u64) ^ ((product >> 64) as u64)
}

/// A [`Hasher`] of `u64` keys by [`fold_mix`] with `SEED`.
#[derive(Default, Clone, Copy)]
pub struct FoldHasher<const SEED: u64>(u64);

/// The maps' `S` parameter for [`FoldHasher`].
pub type FoldBuildHasher<const SEED: u64> = BuildHasherDefault<FoldHasher<SEED>>;

impl<const SEED: u64> Hasher for FoldHasher<SEED> {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; this path exists for the trait's sake.
        for byte in bytes {
            self.0 = fold_mix(self.0 ^ u64::from(*byte), SEED);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = fold_mix(key, SEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    /// Sequential and strided keys still spread over a map's buckets (low bits) and its control
    /// bytes (top 7 bits).
    #[test]
    fn sequential_and_strided_keys_spread() {
        let build = FoldBuildHasher::<0x853c_49e6_748f_ea9b>::default();
        for stride in [1u64, 16, 1024, 1 << 32] {
            let hashes: Vec<u64> = (0..4096u64).map(|i| build.hash_one(i * stride)).collect();
            let low: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
            let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            assert!(
                low.len() > 2000,
                "stride {stride}: {} of 4096 buckets",
                low.len()
            );
            assert_eq!(top.len(), 128, "stride {stride}: control bytes");
        }
    }
}
