//! Prefetching the records that the next requests of a read will touch (the look-ahead,
//! [`node_core::server::Service::look_ahead`]): a lookup waits for memory at each step (the
//! shard, the table's slot, the value, each found through the one before), and without a
//! look-ahead the 16 requests of a pipelined read (or the single requests of 16 connections
//! read in one pass) wait for theirs one after the other (docs/benchmarks.md, "Overlapping a
//! read's misses", "Lone frames, looked at together"). Here every step is started for all
//! the frames before the next step, so their loads overlap; by the time the requests run, what
//! they read is in the cache. Nothing changes: a prefetch only loads into the cache.

use super::channel::{Channel, PrefetchTarget};
use node_core::server::LOOK_AHEAD_FRAMES;

/// The steps of a lookup, in the order [`Targets::prefetch`] starts them for all targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The shard's lock and table header.
    Shard,
    /// The key's home slot in the shard's table ([`super::table::KeyTable::slot_address`]).
    Slot,
    /// The record's value (after a lookup under the shard's lock).
    Value,
}

/// The lookups of one look-ahead: at most [`LOOK_AHEAD_FRAMES`] (more are ignored), each with
/// its shard and hash computed once for all steps.
#[derive(Default)]
pub struct Targets<'a> {
    targets: [Option<PrefetchTarget<'a>>; LOOK_AHEAD_FRAMES],
    len: usize,
}

impl<'a> Targets<'a> {
    pub fn push(&mut self, channel: &'a Channel, key: u64) {
        if let Some(target) = self.targets.get_mut(self.len) {
            *target = Some(channel.prefetch_target(key));
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts the memory loads of every lookup, one step at a time for all of them.
    pub fn prefetch(&self) {
        for step in [Step::Shard, Step::Slot, Step::Value] {
            for target in self.targets[..self.len].iter().flatten() {
                target.prefetch(step);
            }
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
