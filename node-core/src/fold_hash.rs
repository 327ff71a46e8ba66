//! A fast hasher for `u64` keys that clients choose (dht record keys, request ids): a folded
//! 128-bit multiply, where SipHash (std's default) costs ~70 instructions a lookup on the
//! request path. Keys are often sequential or strided (multiples of 1024...), so neither a map
//! nor a sharding may use raw key bits: every output bit depends on every input bit.
//!
//! The maps' hasher is keyed with a seed drawn once per process ([`process_seed`]): with a
//! fixed, public mix a client could compute keys that all land in one bucket group of a shard's
//! table and turn every lookup of that channel — every client's — into a long probe (hash
//! flooding). A seed it cannot see leaves it only the luck of the draw. The shard index
//! ([`fold_mix`] with a fixed seed, dhtnode `shard_of`) stays fixed: a client that crowds one
//! shard makes that shard's table larger, not slower per lookup.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Folded 128-bit multiply of `key ^ seed`: cheap, and every output bit depends on every input
/// bit. Different seeds give independent mixes (a shard index and a bucket from one key).
pub fn fold_mix(key: u64, seed: u64) -> u64 {
    let product = u128::from(key ^ seed) * 0x9e37_79b9_7f4a_7c15_u128;
    (product as u64) ^ ((product >> 64) as u64)
}

/// A random seed drawn once per process (from std's `RandomState`, which the OS seeds): what
/// [`FoldHasher`] mixes into every key.
pub fn process_seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
}

/// A [`Hasher`] of `u64` keys by [`fold_mix`] with `SEED` and the [`process_seed`].
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
            self.0 = fold_mix(self.0 ^ u64::from(*byte), SEED ^ process_seed());
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = fold_mix(key, SEED ^ process_seed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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

    /// The maps' hash is keyed by the process's seed: not the public mix a client could
    /// compute colliding keys from.
    #[test]
    fn the_maps_hash_is_not_the_public_mix() {
        const SEED: u64 = 0x853c_49e6_748f_ea9b;
        let build = FoldBuildHasher::<SEED>::default();
        assert_ne!(process_seed(), 0);
        assert_eq!(process_seed(), process_seed(), "drawn once");
        for key in [0u64, 1, 1024, u64::MAX] {
            assert_ne!(build.hash_one(key), fold_mix(key, SEED), "key {key}");
            assert_eq!(
                build.hash_one(key),
                build.hash_one(key),
                "stable in a process"
            );
        }
    }
}
