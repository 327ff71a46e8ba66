//! A channel's tombstones: for each key removed by a RemoveVersion, the version of that removal
//! and when the node stored it (docs/protocol.md §6.11). A tombstone keeps an older versioned
//! write, arriving late, from bringing the record back; it is dropped after `[dht]
//! tombstone_ttl_s`.
//!
//! Kept apart from the records (the shards) so that everything that walks records (GetAll,
//! dumps' record blocks, redistribution, sizes) is unchanged, and ordered by key so that a walk
//! (a Mirror's refresh, a dump) can resume after any key. Shared like the shards (the dump
//! writer thread reads them), under one lock: tombstones are few next to records, and the hot
//! path (a write to a channel without any) never takes the lock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// One tombstone: the removal's version and when it was stored (Unix seconds, node clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    pub version: u64,
    pub stored_unix_s: u64,
}

/// Bytes of memory a tombstone costs, about: key, version, time, and the ordered map's node
/// overhead (its nodes hold 11 entries, about two thirds full). What docs/protocol.md §6.11
/// states.
pub const TOMBSTONE_MEMORY_BYTES: usize = 48;

/// One slice of a sweep ([`Tombstones::expire_window`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Tombstones looked at, and dropped among them.
    pub examined: usize,
    pub dropped: u64,
    /// The last key looked at, where the next slice goes on; `None` at the end of the map.
    pub last: Option<u64>,
}

#[derive(Default)]
pub struct Tombstones {
    map: Mutex<BTreeMap<u64, Tombstone>>,
    /// `map.len()`, readable without the lock (the write path checks it first).
    count: AtomicU64,
}

impl Tombstones {
    fn map(&self) -> MutexGuard<'_, BTreeMap<u64, Tombstone>> {
        // Each operation is one map call: a panic cannot leave it half-changed.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn get(&self, key: u64) -> Option<Tombstone> {
        if self.count() == 0 {
            return None;
        }
        self.map().get(&key).copied()
    }

    /// Sets the tombstone of `key`; returns whether it is a new one (not a replaced one).
    pub fn set(&self, key: u64, tombstone: Tombstone) -> bool {
        let new = self.map().insert(key, tombstone).is_none();
        if new {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// Drops the tombstone of `key` (a write stored a record); returns whether there was one.
    pub fn clear(&self, key: u64) -> bool {
        if self.count() == 0 {
            return false;
        }
        let removed = self.map().remove(&key).is_some();
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// The next (at most `limit`) tombstones after key `after` (from the first when `None`), in
    /// key order, into `out`. Returns whether they are the last ones.
    pub fn window(
        &self,
        after: Option<u64>,
        limit: usize,
        out: &mut Vec<(u64, Tombstone)>,
    ) -> bool {
        out.clear();
        let map = self.map();
        let range = match after {
            None => map.range(..),
            Some(after) if after == u64::MAX => return true,
            Some(after) => map.range(after + 1..),
        };
        let mut taken = range.map(|(key, tombstone)| (*key, *tombstone));
        out.extend(taken.by_ref().take(limit));
        taken.next().is_none()
    }

    /// Looks at (at most `limit`) tombstones after key `after` (from the first when `None`)
    /// and drops those stored before `cutoff_unix_s`: one slice of a sweep, so that a sweep
    /// over millions of tombstones never holds the event loop long. Returns the slice.
    pub fn expire_window(&self, cutoff_unix_s: u64, after: Option<u64>, limit: usize) -> Expired {
        debug_assert!(limit > 0);
        let mut slice = Expired::default();
        if self.count() == 0 || after == Some(u64::MAX) {
            return slice;
        }
        let mut map = self.map();
        let start = after.map_or(0, |after| after + 1);
        let mut expired = Vec::new();
        for (key, tombstone) in map.range(start..).take(limit) {
            slice.examined += 1;
            slice.last = Some(*key);
            if tombstone.stored_unix_s < cutoff_unix_s {
                expired.push(*key);
            }
        }
        for key in &expired {
            map.remove(key);
        }
        slice.dropped = expired.len() as u64;
        self.count.fetch_sub(slice.dropped, Ordering::Relaxed);
        if slice.examined < limit {
            slice.last = None; // the end of the map
        }
        slice
    }

    /// Appends every tombstone's storage time to `out` (what [`Tombstones::drop_oldest`]
    /// chooses by).
    pub fn stored_times(&self, out: &mut Vec<u64>) {
        if self.count() == 0 {
            return;
        }
        out.extend(self.map().values().map(|tombstone| tombstone.stored_unix_s));
    }

    /// Drops every tombstone stored before `cutoff_unix_s` and, in key order, up to `ties` of
    /// those stored at `cutoff_unix_s` (`ties` counts down); returns how many it dropped.
    pub fn drop_oldest(&self, cutoff_unix_s: u64, ties: &mut u64) -> u64 {
        if self.count() == 0 {
            return 0;
        }
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, tombstone| {
            if tombstone.stored_unix_s < cutoff_unix_s {
                return false;
            }
            if tombstone.stored_unix_s == cutoff_unix_s && *ties > 0 {
                *ties -= 1;
                return false;
            }
            true
        });
        let dropped = (before - map.len()) as u64;
        self.count.fetch_sub(dropped, Ordering::Relaxed);
        dropped
    }

    /// Drops every tombstone stored before `cutoff_unix_s`; returns how many.
    pub fn expire(&self, cutoff_unix_s: u64) -> u64 {
        let mut dropped = 0;
        let mut after = None;
        loop {
            let slice = self.expire_window(cutoff_unix_s, after, 4096);
            dropped += slice.dropped;
            match slice.last {
                Some(last) => after = Some(last),
                None => return dropped,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: u64, stored_unix_s: u64) -> Tombstone {
        Tombstone {
            version,
            stored_unix_s,
        }
    }

    #[test]
    fn set_clear_and_walk_in_key_order() {
        let tombstones = Tombstones::default();
        assert!(tombstones.set(5, at(1, 100)));
        assert!(!tombstones.set(5, at(2, 100)), "replaced, not new");
        assert!(tombstones.set(3, at(1, 200)));
        assert!(tombstones.set(u64::MAX, at(1, 300)));
        assert_eq!(tombstones.count(), 3);
        assert_eq!(tombstones.get(5), Some(at(2, 100)));
        let mut out = Vec::new();
        assert!(!tombstones.window(None, 2, &mut out));
        assert_eq!(out, vec![(3, at(1, 200)), (5, at(2, 100))]);
        assert!(tombstones.window(Some(5), 2, &mut out));
        assert_eq!(out, vec![(u64::MAX, at(1, 300))]);
        assert!(tombstones.window(Some(u64::MAX), 2, &mut out));
        assert!(out.is_empty());
        assert!(tombstones.clear(3));
        assert!(!tombstones.clear(3));
        let slice = tombstones.expire_window(300, None, 1);
        assert_eq!((slice.examined, slice.dropped, slice.last), (1, 1, Some(5)));
        tombstones.set(5, at(2, 100));
        assert_eq!(tombstones.expire(300), 1, "the one stored at 100 is older");
        assert_eq!(tombstones.count(), 1);
        assert_eq!(tombstones.get(5), None);
    }

    #[test]
    fn the_oldest_go_first_and_ties_in_key_order() {
        let tombstones = Tombstones::default();
        for (key, stored) in [(1, 30), (2, 10), (3, 20), (4, 20), (5, 20)] {
            tombstones.set(key, at(1, stored));
        }
        let mut times = Vec::new();
        tombstones.stored_times(&mut times);
        times.sort_unstable();
        assert_eq!(times, vec![10, 20, 20, 20, 30]);
        // Three go: the one stored at 10, then the first two (by key) of those at 20.
        let mut ties = 2;
        assert_eq!(tombstones.drop_oldest(20, &mut ties), 3);
        assert_eq!(ties, 0);
        assert_eq!(tombstones.count(), 2);
        assert_eq!(tombstones.get(5), Some(at(1, 20)));
        assert_eq!(tombstones.get(1), Some(at(1, 30)));
    }
}
