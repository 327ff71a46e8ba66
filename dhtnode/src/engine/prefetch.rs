//! Prefetching the records that the next requests of a read will touch (the look-ahead,
//! [`node_core::server::Service::look_ahead`]): a lookup waits for memory at each step (the
//! shard, the table's slot, the value, each found through the one before), and without a
//! look-ahead the 16 requests of a pipelined read wait for theirs one after the other
//! (docs/benchmarks.md, "Overlapping a read's misses"). Here every step is started for all
//! the frames before the next step, so their loads overlap; by the time the requests run, what
//! they read is in the cache. Nothing changes: a prefetch only loads into the cache.

use super::channel::Channel;

/// The steps of a lookup, in the order [`prefetch_records`] starts them for all targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The shard's lock and table header.
    Shard,
    /// The key's home slot in the shard's table ([`super::table::KeyTable::slot_address`]).
    Slot,
    /// The record's value (after a lookup under the shard's lock).
    Value,
}

/// Starts the memory loads of the lookups of `targets` (channel and key), one step at a time
/// for all of them.
pub fn prefetch_records<'a>(targets: impl Iterator<Item = (&'a Channel, u64)> + Clone) {
    for step in [Step::Shard, Step::Slot, Step::Value] {
        for (channel, key) in targets.clone() {
            channel.prefetch(key, step);
        }
    }
}

/// Asks the CPU to load the cache line at `address` (a hint: it reads nothing
/// architecturally, and an address that is not mapped is ignored).
#[inline]
pub fn prefetch_line<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch cannot fault and changes no state a program can see; any address,
    // even a dangling one, is allowed.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
