//! One channel's records: a map from `u64` key to value bytes, split into [`SHARD_COUNT`] shards
//! by an independent hash of the key.
//!
//! Why shards: work that walks a whole channel (dumps, GetAll) must not stall the event loop and
//! must survive writes that happen between its steps. A shard is small (a channel of 10 million
//! records has ~2 500 per shard), so a walker copies one shard at a time, and "shard index, then
//! key order inside the shard" is a total order that a walk can resume from after any change.

use super::prefetch::{prefetch_line, Step};
use super::table::{self, Entry, KeyTable};
use super::tombstones::Tombstones;
use super::value::Value;
use node_core::fold_hash::{fold_mix, FoldHasher};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub const SHARD_BITS: u32 = 12;
pub const SHARD_COUNT: usize = 1 << SHARD_BITS;

/// Bytes a record counts for in sizes and limits: its key and its value.
pub fn record_bytes(value_len: usize) -> u64 {
    8 + value_len as u64
}

/// Which shard a key lives in. A different seed than the map's hasher, so that keys sharing a
/// shard still spread over the map's buckets. (Keys are often sequential or aligned, so neither
/// may use raw key bits: [`fold_mix`].)
pub fn shard_of(key: u64) -> usize {
    (fold_mix(key, 0x2545_f491_4f6c_dd1d) >> (64 - SHARD_BITS)) as usize
}

/// The map's hasher for `u64` keys: keyed per process (`node_core::fold_hash::process_seed`),
/// since keys come from clients and a channel is shared by every client of it.
pub type KeyHasher = FoldHasher<0x853c_49e6_748f_ea9b>;

/// One shard's records ([`KeyTable`]: its slots' addresses are what a look-ahead prefetches).
pub type Shard = KeyTable;

/// A channel: its shards and its totals.
///
/// Shared (in an `Arc`) between the event loop, which alone writes, and the dump writer thread,
/// which reads one shard at a time to encode it. Each shard has its own lock: the loop's lock is
/// uncontended unless the writer is encoding that very shard (one in 4096), so requests go on
/// while a dump runs, and the loop copies nothing for the dump.
pub struct Channel {
    shards: Box<[Mutex<Shard>]>,
    /// Written by the event loop only; atomics because the channel is shared.
    records: AtomicU64,
    bytes: AtomicU64,
    /// Set when the channel is removed from the engine (RemoveChannel, or replaced at load):
    /// threads holding it (a redistribution) stop using it.
    removed: AtomicBool,
    /// Keys removed by a RemoveVersion, with the removal's version (never a key that also has
    /// a record: storing a record clears its tombstone).
    tombstones: Tombstones,
}

/// What a channel holds of a key, for the version rule ([`super::versions`]): a record (its
/// version and value) or a tombstone (its version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held<'a> {
    Record(u64, &'a [u8]),
    Tombstone(u64),
}

impl Held<'_> {
    pub fn version(&self) -> u64 {
        match *self {
            Held::Record(version, _) | Held::Tombstone(version) => version,
        }
    }
}

/// One lookup of a look-ahead: its shard and its hash, computed once for all steps.
pub struct PrefetchTarget<'a> {
    shard: &'a Mutex<Shard>,
    key: u64,
    hash: u64,
}

impl PrefetchTarget<'_> {
    /// Starts the loads of one step of the lookup. Never waits: a shard locked elsewhere (the
    /// dump writer's) is skipped.
    pub fn prefetch(&self, step: Step) {
        match step {
            Step::Shard => prefetch_line(self.shard),
            Step::Slot => {
                if let Ok(table) = self.shard.try_lock() {
                    if let Some(slot) = table.slot_address(self.hash) {
                        prefetch_line(slot);
                        // The next slots, when the key's run crosses into the next line.
                        prefetch_line(slot.wrapping_add(16));
                    }
                }
            }
            Step::Value => {
                // A lookup under the lock is what finds the value's address.
                if let Ok(table) = self.shard.try_lock() {
                    if let Some(value) = table.get_hashed(self.key, self.hash) {
                        value.prefetch();
                    }
                }
            }
        }
    }
}

impl Default for Channel {
    fn default() -> Channel {
        Channel::new()
    }
}

impl Channel {
    pub fn new() -> Channel {
        Channel {
            shards: (0..SHARD_COUNT)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            tombstones: Tombstones::default(),
        }
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Whether the engine dropped this channel (see the field).
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Inserts a value (version 0) only if the key has none and no tombstone; returns the
    /// bytes added (0 when present).
    pub fn put_if_absent(&self, key: u64, value: &[u8]) -> u64 {
        if self.tombstones.get(key).is_some() {
            return 0;
        }
        match self.shard(shard_of(key)).entry(key) {
            Entry::Occupied(_) => 0,
            Entry::Vacant(entry) => {
                entry.insert(Value::new(value, 0));
                let added = record_bytes(value.len());
                self.records.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(added, Ordering::Relaxed);
                added
            }
        }
    }

    /// Removes a record only if its value passes `matches`; returns its bytes if removed.
    pub fn remove_if(&self, key: u64, matches: impl FnOnce(&[u8]) -> bool) -> Option<u64> {
        let mut shard = self.shard(shard_of(key));
        if !matches(shard.get(key)?.as_bytes()) {
            return None;
        }
        let old = shard.remove(key)?;
        drop(shard);
        let removed = record_bytes(old.len());
        self.records.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(removed, Ordering::Relaxed);
        Some(removed)
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Locks one shard. A panic while a shard was locked cannot leave it half-changed (each
    /// operation is one map call), so a poisoned lock is used as it is.
    pub fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `key`'s shard and hash, for the steps of a look-ahead ([`super::prefetch`]).
    pub fn prefetch_target(&self, key: u64) -> PrefetchTarget<'_> {
        PrefetchTarget {
            shard: &self.shards[shard_of(key)],
            key,
            hash: table::hash(key),
        }
    }

    /// Runs `f` on the value of `key` (or `None`), with its shard locked.
    pub fn with<R>(&self, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let shard = self.shard(shard_of(key));
        f(shard.get(key).map(Value::as_bytes))
    }

    /// Runs `f` on the version and value of `key` (or `None`), with its shard locked.
    pub fn with_versioned<R>(&self, key: u64, f: impl FnOnce(Option<(u64, &[u8])>) -> R) -> R {
        let shard = self.shard(shard_of(key));
        f(shard
            .get(key)
            .map(|value| (value.version(), value.as_bytes())))
    }

    /// The version the channel holds for `key`: its record's, else its tombstone's.
    pub fn held_version(&self, key: u64) -> Option<u64> {
        self.with_held(key, |held| held.map(|held| held.version()))
    }

    /// Runs `f` on what the channel holds of `key` (its record, else its tombstone, else
    /// `None`), with its shard locked.
    pub fn with_held<R>(&self, key: u64, f: impl FnOnce(Option<Held<'_>>) -> R) -> R {
        let shard = self.shard(shard_of(key));
        match shard.get(key) {
            Some(value) => f(Some(Held::Record(value.version(), value.as_bytes()))),
            None => f(self
                .tombstones
                .get(key)
                .map(|tombstone| Held::Tombstone(tombstone.version))),
        }
    }

    /// Stores a value and drops the key's tombstone, if any; returns the change in
    /// [`record_bytes`] (negative when it shrank) and whether it dropped a tombstone (the
    /// engine counts them). One hash lookup; an overwrite with a value of the same length
    /// reuses the allocation.
    pub fn put(&self, key: u64, value: &[u8], version: u64) -> (i64, bool) {
        match self.put_if_newer(key, value, version, |_| true, || Ok::<(), Infallible>(())) {
            Ok(Some(stored)) => stored,
            Ok(None) => unreachable!("every write is newer here"),
            Err(never) => match never {},
        }
    }

    /// PutVersion's store: with one lookup under the shard's lock, asks `is_newer` whether
    /// the write wins over what the key holds (its record's version and value, else its
    /// tombstone's version, else nothing), and if so runs `before_store` (the change log's
    /// append: a failure there changes nothing; it runs with the shard locked, so the dump
    /// writer waits for it if it wants that one shard) and stores the value as
    /// [`Channel::put`] does.
    /// Returns `None` when the held write wins, else the change in [`record_bytes`] and whether
    /// the store dropped the key's tombstone (the engine counts tombstones).
    pub fn put_if_newer<E>(
        &self,
        key: u64,
        value: &[u8],
        version: u64,
        is_newer: impl FnOnce(Option<Held<'_>>) -> bool,
        before_store: impl FnOnce() -> Result<(), E>,
    ) -> Result<Option<(i64, bool)>, E> {
        let added = record_bytes(value.len());
        let mut shard = self.shard(shard_of(key));
        let (removed, had_tombstone) = match shard.entry(key) {
            Entry::Occupied(old) => {
                if !is_newer(Some(Held::Record(old.version(), old.as_bytes()))) {
                    return Ok(None);
                }
                before_store()?;
                let removed = record_bytes(old.len());
                if old.fits(value.len(), version) {
                    old.overwrite(value, version);
                } else {
                    *old = Value::new(value, version);
                }
                (removed, false)
            }
            Entry::Vacant(entry) => {
                let tombstone = self.tombstones.get(key);
                if !is_newer(tombstone.map(|tombstone| Held::Tombstone(tombstone.version))) {
                    return Ok(None);
                }
                before_store()?;
                entry.insert(Value::new(value, version));
                self.records.fetch_add(1, Ordering::Relaxed);
                // A key with a record has no tombstone (see the field).
                (0, tombstone.is_some() && self.tombstones.clear(key))
            }
        };
        drop(shard);
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(removed, Ordering::Relaxed);
        Ok(Some((added as i64 - removed as i64, had_tombstone)))
    }

    /// Removes a record; returns its bytes if it existed.
    pub fn remove(&self, key: u64) -> Option<u64> {
        let old = self.shard(shard_of(key)).remove(key)?;
        let removed = record_bytes(old.len());
        self.records.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(removed, Ordering::Relaxed);
        Some(removed)
    }

    /// The keys of one shard in ascending order: the order walks visit them in.
    pub fn sorted_shard_keys(&self, index: usize, out: &mut Vec<u64>) {
        out.clear();
        out.extend(self.shard(index).keys().copied());
        out.sort_unstable();
    }

    /// The next keys of one shard in walk order: the (at most) `limit` smallest keys greater
    /// than `after` (all keys when `after` is `None`), ascending, into `window`. Returns whether
    /// they are the shard's last ones. `scratch` takes the candidates for a moment, so a walker
    /// keeps only its window between steps, whatever the shard's size.
    pub fn shard_key_window(
        &self,
        index: usize,
        after: Option<u64>,
        limit: usize,
        scratch: &mut Vec<u64>,
        window: &mut Vec<u64>,
    ) -> bool {
        debug_assert!(limit > 0);
        scratch.clear();
        scratch.extend(
            self.shard(index)
                .keys()
                .copied()
                .filter(|key| after.is_none_or(|after| *key > after)),
        );
        let last = scratch.len() <= limit;
        if !last {
            scratch.select_nth_unstable(limit - 1);
            scratch.truncate(limit);
        }
        scratch.sort_unstable();
        window.clear();
        window.extend_from_slice(scratch);
        last
    }

    /// Checks the totals against the shards (tests and debug assertions).
    pub fn check_totals(&self) -> bool {
        let (mut records, mut bytes) = (0u64, 0u64);
        for index in 0..SHARD_COUNT {
            let shard = self.shard(index);
            records += shard.len() as u64;
            bytes += shard
                .values()
                .map(|value| record_bytes(value.len()))
                .sum::<u64>();
        }
        records == self.records() && bytes == self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tombstones::Tombstone;
    use super::*;

    #[test]
    fn put_get_remove_keep_totals() {
        let channel = Channel::new();
        assert_eq!(channel.put(1, b"abc", 0), (11, false));
        assert_eq!(channel.put(1, b"a", 5), (-2, false));
        assert_eq!(channel.put(2, b"xyz", 0), (11, false));
        assert_eq!(channel.held_version(1), Some(5));
        assert_eq!(
            channel.with(1, |v| v.map(<[u8]>::to_vec)),
            Some(b"a".to_vec())
        );
        assert_eq!((channel.records(), channel.bytes()), (2, 20));
        assert_eq!(channel.remove(1), Some(9));
        assert_eq!(channel.remove(1), None);
        assert!(!channel.with(1, |v| v.is_some()));
        assert_eq!((channel.records(), channel.bytes()), (1, 11));
        assert!(channel.check_totals());
    }

    /// PutVersion's store: the decision sees what the key holds (its record, or its
    /// tombstone), and a write that loses, or whose log append fails, changes nothing: not the
    /// record, not the tombstone, not the totals.
    #[test]
    fn put_if_newer_stores_only_a_winning_write_that_was_logged() {
        let channel = Channel::new();
        let always = || Ok::<(), &str>(());
        channel.put(1, b"old", 5);
        let lost = channel.put_if_newer(
            1,
            b"new",
            4,
            |held| {
                assert_eq!(held, Some(Held::Record(5, &b"old"[..])));
                false
            },
            always,
        );
        assert_eq!(lost, Ok(None));
        let refused = channel.put_if_newer(1, b"new", 6, |_| true, || Err("log"));
        assert_eq!(refused, Err("log"));
        assert_eq!(
            channel.with_held(1, |held| held.map(|h| h.version())),
            Some(5)
        );
        assert_eq!((channel.records(), channel.bytes()), (1, 11));
        // A longer value replaces the allocation; the growth is its extra bytes.
        assert_eq!(
            channel.put_if_newer(1, b"newer", 6, |_| true, always),
            Ok(Some((2, false)))
        );

        channel.tombstones().set(
            2,
            Tombstone {
                version: 9,
                stored_unix_s: 0,
            },
        );
        let refused = channel.put_if_newer(
            2,
            b"v",
            10,
            |held| {
                assert_eq!(held, Some(Held::Tombstone(9)));
                true
            },
            || Err("log"),
        );
        assert_eq!(refused, Err("log"));
        assert!(channel.with_held(2, |held| held == Some(Held::Tombstone(9))));
        assert_eq!(
            channel.put_if_newer(2, b"v", 10, |_| true, always),
            Ok(Some((9, true)))
        );
        assert_eq!(
            channel.with_held(2, |held| held.map(|h| h.version())),
            Some(10)
        );
        assert_eq!(channel.tombstones().get(2), None);
        assert_eq!((channel.records(), channel.bytes()), (2, 22));
        assert!(channel.check_totals());
    }

    /// A look-ahead's prefetch changes nothing and never waits: a shard locked elsewhere (the
    /// dump writer's) is skipped.
    #[test]
    fn prefetch_changes_nothing_and_skips_a_locked_shard() {
        let channel = Channel::new();
        for key in 0..1000u64 {
            channel.put(key, &key.to_le_bytes(), key % 2);
        }
        let steps = [Step::Shard, Step::Slot, Step::Value];
        {
            let _held = channel.shard(shard_of(7));
            for step in steps {
                channel.prefetch_target(7).prefetch(step);
            }
        }
        for key in 0..2000u64 {
            for step in steps {
                channel.prefetch_target(key).prefetch(step);
            }
        }
        for key in 0..1000u64 {
            let found =
                channel.with_versioned(key, |v| v.map(|(version, v)| (version, v.to_vec())));
            assert_eq!(found, Some((key % 2, key.to_le_bytes().to_vec())));
        }
        assert!(!channel.with(1000, |v| v.is_some()));
        assert_eq!(channel.records(), 1000);
        assert!(channel.check_totals());
    }

    #[test]
    fn key_windows_walk_a_shard_in_order() {
        let channel = Channel::new();
        let shard = shard_of(0);
        let mut keys: Vec<u64> = (0..200_000u64).filter(|k| shard_of(*k) == shard).collect();
        for key in &keys {
            channel.put(*key, b"v", 0);
        }
        keys.sort_unstable();
        assert!(keys.len() > 20, "enough keys in one shard");
        let (mut scratch, mut window, mut walked) = (Vec::new(), Vec::new(), Vec::new());
        let mut after = None;
        loop {
            let last = channel.shard_key_window(shard, after, 7, &mut scratch, &mut window);
            assert!(window.len() <= 7);
            walked.extend_from_slice(&window);
            if last {
                break;
            }
            after = window.last().copied();
        }
        assert_eq!(walked, keys);
    }

    #[test]
    fn aligned_and_sequential_keys_spread_over_shards() {
        for stride in [1u64, 4096, 1 << 32] {
            let mut used = std::collections::HashSet::new();
            for i in 0..20_000u64 {
                used.insert(shard_of(i * stride));
            }
            assert!(
                used.len() > SHARD_COUNT * 9 / 10,
                "stride {stride}: {} shards used",
                used.len()
            );
        }
    }
}
