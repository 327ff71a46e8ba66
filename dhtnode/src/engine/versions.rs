//! The versioned writes and reads (docs/protocol.md §6.11): PutVersion and RemoveVersion keep
//! the higher version of a key (a record's or a tombstone's; a key not held is lower than every
//! version), GetWithVersion reads a key's version with its value or tombstone, and tombstones
//! are bounded in number and dropped after their time to live.
//!
//! The rule is here, once, so that every path that writes versions (requests, replay) applies
//! it alike: a write is applied only if its version is strictly greater than the held one, so
//! replicas that get the same writes in any order end with the same record.

use super::channel::{record_bytes, Held};
use super::tombstones::Tombstone;
use super::{AbsentBatchOutcome, Engine, EngineError, ListenEvent};
use dht_persist::wal::Change;
use node_core::protocol::dht::RefreshRecord;
use std::ops::Bound;

/// The bounds of tombstones: how many the node keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneLimits {
    /// Tombstones over all channels; a RemoveVersion that would add one more is refused.
    pub max_tombstones: u64,
    /// Seconds a tombstone is kept after it was stored.
    pub ttl_s: u64,
}

impl Default for TombstoneLimits {
    fn default() -> TombstoneLimits {
        TombstoneLimits {
            max_tombstones: 4 * 1024 * 1024,
            ttl_s: 86_400,
        }
    }
}

/// Who sends a versioned batch ([`Engine::put_version_batch`]): a redistribution's
/// (RedistBatchVersion) is held to the redistribution memory guard while this node's own
/// redistribution runs; a client's (PutBatchVersion) is not, as a PutBatch is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFrom {
    Redistribution,
    Client,
}

/// Where a sweep of tombstones is: the channel it is in and the last key it looked at there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TombstoneSweep {
    channel: Option<String>,
    after: Option<u64>,
    /// Every tombstone of `channel` was looked at.
    channel_done: bool,
}

/// What GetWithVersion finds of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionedRead<R> {
    /// A record: what the caller's closure made of its version and value.
    Found(R),
    /// No record; a tombstone of this version.
    Tombstone(u64),
    /// Nothing held (the key is inside the node's range).
    Absent,
}

/// What a versioned write brings: a record's value, or a tombstone.
#[derive(Debug, Clone, Copy)]
enum Incoming<'a> {
    Record(&'a [u8]),
    Tombstone,
}

/// The version rule: whether a versioned write (`incoming`, of `version`) is newer than what
/// the node holds of its key (`held`), so that it applies. Nothing held is lower than every
/// version; else the higher version wins. Two different writes of one version (two clients
/// whose clocks gave the same version, which happens when they write the same keys in the same
/// millisecond) are ordered too, so that every member keeps the same one whatever order they
/// arrive in: a tombstone beats a record, and of two records the greater value (compared
/// bytewise) wins. The same write again is not newer (it is applied once). Version 0 (writes
/// without a version) never ties: a version-0 write applies only where nothing is held.
fn newer_than(held: Option<Held<'_>>, version: u64, incoming: Incoming<'_>) -> bool {
    let Some(held) = held else {
        return true;
    };
    let held_version = held.version();
    if held_version != version || version == 0 {
        return version > held_version;
    }
    match (incoming, held) {
        // Newer only than a record of that version.
        (Incoming::Tombstone, Held::Record(..)) => true,
        (Incoming::Tombstone, Held::Tombstone(_)) => false,
        (Incoming::Record(value), Held::Record(_, held_value)) => value > held_value,
        (Incoming::Record(_), Held::Tombstone(_)) => false,
    }
}

impl Engine {
    pub fn set_tombstone_limits(&mut self, limits: TombstoneLimits) {
        self.tombstone_limits = limits;
    }

    pub fn tombstone_limits(&self) -> TombstoneLimits {
        self.tombstone_limits
    }

    /// Tombstones over all channels.
    pub fn tombstone_count(&self) -> u64 {
        self.tombstones
    }

    /// The version held for `key`: its record's, else its tombstone's.
    pub fn held_version(&self, channel: &str, key: u64) -> Option<u64> {
        self.channels.get(channel)?.held_version(key)
    }

    /// Whether a versioned write of `key` (`incoming`, of `version`) is newer than what the
    /// node holds, so that it applies ([`newer_than`]).
    fn is_newer(&self, channel: &str, key: u64, version: u64, incoming: Incoming<'_>) -> bool {
        let Some(data) = self.channels.get(channel) else {
            return true;
        };
        data.with_held(key, |held| newer_than(held, version, incoming))
    }

    /// Whether the node holds nothing of `key`: no record, no tombstone.
    pub(super) fn is_unheld(&self, channel: &str, key: u64) -> bool {
        self.held_version(channel, key).is_none()
    }

    /// PutVersion: the checks of a Put, then the record is stored only if `version` is newer
    /// than the held one. Returns whether it was stored (then logged and told to listeners).
    pub fn put_version(
        &mut self,
        channel: &str,
        key: u64,
        version: u64,
        value: &[u8],
    ) -> Result<bool, EngineError> {
        self.check_write(channel, key, value)?;
        let change = Change::PutVersion {
            channel,
            key,
            version,
            value,
        };
        if self.resolve_channel(channel)?.is_none() {
            // A channel that does not exist holds nothing: the write is newer.
            self.log_change(&change)?;
            self.store_version_unchecked(channel, key, value, version);
            return Ok(true);
        }
        // The compare, the log's append and the store under one lookup of the key (this is
        // every member's share of a replicated put: docs/benchmarks.md, issue 19).
        let data = &self.last_channel.as_ref().expect("resolved above").data;
        let log = &mut self.log;
        let stored = data.put_if_newer(
            key,
            value,
            version,
            |held| newer_than(held, version, Incoming::Record(value)),
            || log.append(&change).map_err(EngineError::LogUnavailable),
        )?;
        let Some((growth, cleared_tombstone)) = stored else {
            return Ok(false);
        };
        self.stored(channel, key, value, version, growth, cleared_tombstone);
        Ok(true)
    }

    /// RemoveVersion: if `version` is newer than the held one, removes the record (if any) and
    /// keeps a tombstone of `version`. Returns whether it applied.
    pub fn remove_version(
        &mut self,
        channel: &str,
        key: u64,
        version: u64,
    ) -> Result<bool, EngineError> {
        Engine::check_name(channel)?;
        let held = self.held_version(channel, key);
        if held.is_none() {
            // Nothing held and not ours: the key may be on the node that owns it now.
            self.check_key(key)?;
        }
        if !self.is_newer(channel, key, version, Incoming::Tombstone) {
            return Ok(false);
        }
        self.check_channel_room(channel)?;
        let has_tombstone = self
            .channels
            .get(channel)
            .is_some_and(|data| data.tombstones().get(key).is_some());
        let limit = self.tombstone_limits.max_tombstones;
        if !has_tombstone && self.tombstones >= limit {
            return Err(EngineError::TooManyTombstones { limit });
        }
        let tombstone = Tombstone {
            version,
            stored_unix_s: dht_persist::dump::format::unix_now(),
        };
        self.log_change(&Change::RemoveVersion {
            channel,
            key,
            version,
            stored_unix_s: tombstone.stored_unix_s,
        })?;
        self.apply_remove_version(channel, key, tombstone);
        Ok(true)
    }

    /// RedistBatchVersion (docs/protocol.md §6.7) and PutBatchVersion (§6.14): records and
    /// tombstones with their versions, each applied as a PutVersion or RemoveVersion (kept
    /// only if newer than what is held, through the same entry points, so the change log,
    /// Listen and Mirror see each applied item as they see those requests), so that neither a
    /// move nor a batch lets an older write win. All checks first, for the whole batch (a
    /// refused batch changes nothing): the channel, every key in the range (WrongNode), every
    /// value, the size limit (and, for a redistribution's batch, the redistribution guard) for
    /// the records that will be stored, the tombstone limit for the tombstones added.
    pub fn put_version_batch(
        &mut self,
        channel: &str,
        items: &[(u64, RefreshRecord<'_>)],
        from: BatchFrom,
    ) -> Result<AbsentBatchOutcome, EngineError> {
        self.check_version_batch(channel, items, from)?;
        let mut outcome = AbsentBatchOutcome::default();
        for (key, item) in items {
            let applied = match *item {
                RefreshRecord::Record { version, value } => {
                    self.put_version(channel, *key, version, value)?
                }
                RefreshRecord::Tombstone { version } => {
                    self.remove_version(channel, *key, version)?
                }
            };
            if applied {
                outcome.stored += 1;
            } else {
                outcome.present += 1;
            }
        }
        Ok(outcome)
    }

    /// The checks of [`Engine::put_version_batch`], before anything changes.
    fn check_version_batch(
        &self,
        channel: &str,
        items: &[(u64, RefreshRecord<'_>)],
        from: BatchFrom,
    ) -> Result<(), EngineError> {
        Engine::check_name(channel)?;
        if !items.is_empty() {
            // An empty batch creates no channel (docs/protocol.md §4): no limit refuses it.
            self.check_channel_room(channel)?;
        }
        let (mut growth, mut new_tombstones) = (0i64, 0u64);
        let mut seen = std::collections::HashSet::new();
        for (key, item) in items {
            self.check_key(*key)?;
            let first = seen.insert(*key);
            match item {
                RefreshRecord::Record { version, value } => {
                    self.check_value(value)?;
                    if first && self.is_newer(channel, *key, *version, Incoming::Record(value)) {
                        growth += record_bytes(value.len()) as i64
                            - self.old_record_bytes(channel, *key) as i64;
                    }
                }
                RefreshRecord::Tombstone { version } => {
                    let has = self
                        .channels
                        .get(channel)
                        .is_some_and(|data| data.tombstones().get(*key).is_some());
                    if first && !has && self.is_newer(channel, *key, *version, Incoming::Tombstone)
                    {
                        new_tombstones += 1;
                    }
                }
            }
        }
        self.check_growth(growth)?;
        if let (Some(cap), BatchFrom::Redistribution) = (self.redistribution_cap, from) {
            let grows = u64::try_from(growth).unwrap_or(0);
            if grows > 0 && self.total.bytes.saturating_add(grows) > cap {
                return Err(EngineError::RedistributionGuard {
                    cap,
                    bytes: self.total.bytes,
                });
            }
        }
        let limit = self.tombstone_limits.max_tombstones;
        if new_tombstones > 0 && self.tombstones.saturating_add(new_tombstones) > limit {
            return Err(EngineError::TooManyTombstones { limit });
        }
        Ok(())
    }

    /// Removes the record of `key` (if any) and sets its tombstone, without checks (a replay
    /// applies what was accepted); tells the listeners.
    pub(crate) fn apply_remove_version(&mut self, channel: &str, key: u64, tombstone: Tombstone) {
        let data = std::sync::Arc::clone(self.channel_for_write(channel));
        let removed = data.remove(key);
        if let Some(bytes) = removed {
            self.total.records -= 1;
            self.total.bytes -= bytes;
        }
        if data.tombstones().set(key, tombstone) {
            self.tombstones += 1;
        }
        let removed = removed.is_some();
        let event = ListenEvent::Removed {
            key,
            version: tombstone.version,
            record: removed,
        };
        self.notify(channel, event);
    }

    /// GetWithVersion: runs `f` on the version and value of `key`'s record; else reports its
    /// tombstone, or nothing (an absent key outside the range is WrongNode, as for Get).
    pub fn read_versioned<R>(
        &self,
        channel: &str,
        key: u64,
        f: impl FnOnce(u64, &[u8]) -> R,
    ) -> Result<VersionedRead<R>, EngineError> {
        Engine::check_name(channel)?;
        let Some(data) = self.channels.get(channel) else {
            return self.check_key(key).map(|()| VersionedRead::Absent);
        };
        if let Some(found) = data.with_versioned(key, |record| record.map(|(v, b)| f(v, b))) {
            return Ok(VersionedRead::Found(found));
        }
        match data.tombstones().get(key) {
            Some(tombstone) => Ok(VersionedRead::Tombstone(tombstone.version)),
            None => self.check_key(key).map(|()| VersionedRead::Absent),
        }
    }

    /// Drops the tombstones beyond `tombstone_limit`, the oldest stored first (those the TTL
    /// would drop first; of those stored in the same second, by channel and key), and returns
    /// how many: what loading does (dumps, change-log replay), so that a node never holds more
    /// tombstones than a running one accepts. Not a change: nothing is logged, no listener is
    /// told. Costs 8 bytes a tombstone for the time it runs, and only when over the limit.
    pub fn trim_tombstones_to_limit(&mut self) -> u64 {
        let limit = self.tombstone_limits.max_tombstones;
        if self.tombstones <= limit {
            return 0;
        }
        let excess = self.tombstones - limit;
        let mut times = Vec::with_capacity(usize::try_from(self.tombstones).unwrap_or(0));
        for data in self.channels.values() {
            data.tombstones().stored_times(&mut times);
        }
        debug_assert_eq!(times.len() as u64, self.tombstones);
        if times.is_empty() {
            return 0;
        }
        let nth = usize::try_from(excess - 1).map_or(times.len() - 1, |n| n.min(times.len() - 1));
        let cutoff = *times.select_nth_unstable(nth).1;
        let below = times.iter().filter(|&&time| time < cutoff).count() as u64;
        drop(times);
        let mut ties = excess.saturating_sub(below);
        let mut dropped = 0;
        for data in self.channels.values() {
            dropped += data.tombstones().drop_oldest(cutoff, &mut ties);
        }
        debug_assert_eq!(dropped, excess);
        self.tombstones -= dropped;
        dropped
    }

    /// Drops every tombstone stored more than `ttl_s` before `now_unix_s`; returns how many.
    /// Not a change: nothing is logged and no listener is told (docs/protocol.md §6.11).
    pub fn expire_tombstones(&mut self, now_unix_s: u64) -> u64 {
        let mut sweep = TombstoneSweep::default();
        let mut dropped = 0;
        loop {
            let (slice, done) = self.sweep_tombstones(&mut sweep, now_unix_s, usize::MAX);
            dropped += slice;
            if done {
                return dropped;
            }
        }
    }

    /// One slice of a sweep: looks at about `budget` tombstones from where `sweep` is, drops
    /// those older than the TTL. Returns how many it dropped, and whether the sweep went
    /// through every channel (it starts over with the next call).
    pub fn sweep_tombstones(
        &mut self,
        sweep: &mut TombstoneSweep,
        now_unix_s: u64,
        budget: usize,
    ) -> (u64, bool) {
        let cutoff = now_unix_s.saturating_sub(self.tombstone_limits.ttl_s);
        let mut left = budget.max(1);
        let mut dropped = 0;
        loop {
            let next = match (&sweep.channel, sweep.channel_done) {
                (None, _) => self.channels.iter().next(),
                (Some(name), false) => self
                    .channels
                    .range::<str, _>((Bound::Included(name.as_str()), Bound::Unbounded))
                    .next(),
                (Some(name), true) => self
                    .channels
                    .range::<str, _>((Bound::Excluded(name.as_str()), Bound::Unbounded))
                    .next(),
            };
            let Some((name, data)) = next else {
                *sweep = TombstoneSweep::default();
                self.tombstones -= dropped;
                return (dropped, true);
            };
            if sweep.channel.as_deref() != Some(name.as_str()) {
                sweep.channel = Some(name.clone());
                sweep.after = None;
                sweep.channel_done = false;
            }
            let slice = data.tombstones().expire_window(cutoff, sweep.after, left);
            dropped += slice.dropped;
            left = left.saturating_sub(slice.examined);
            sweep.after = slice.last;
            // At the end of this channel's tombstones: the next channel after it.
            sweep.channel_done = slice.last.is_none();
            if left == 0 {
                self.tombstones -= dropped;
                return (dropped, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineLimits, ListenerLimits};
    use node_core::protocol::dht::HashRange;

    fn engine() -> Engine {
        let limits = EngineLimits {
            max_channels: 8,
            size_limit_bytes: 0,
            max_value_bytes: 64,
        };
        let listeners = ListenerLimits {
            max_events: 100,
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 20,
        };
        Engine::new(HashRange::FULL, limits, listeners)
    }

    fn read(engine: &Engine, key: u64) -> VersionedRead<(u64, Vec<u8>)> {
        engine
            .read_versioned("ch", key, |version, value| (version, value.to_vec()))
            .unwrap()
    }

    #[test]
    fn the_higher_version_wins_in_any_order() {
        let mut engine = engine();
        assert_eq!(engine.put_version("ch", 1, 5, b"five"), Ok(true));
        assert_eq!(engine.put_version("ch", 1, 4, b"four"), Ok(false), "older");
        assert_eq!(engine.put_version("ch", 1, 5, b"again"), Ok(false), "equal");
        assert_eq!(
            read(&engine, 1),
            VersionedRead::Found((5, b"five".to_vec()))
        );
        assert_eq!(engine.remove_version("ch", 1, 4), Ok(false), "older");
        assert_eq!(engine.remove_version("ch", 1, 6), Ok(true));
        assert_eq!(
            engine.remove_version("ch", 1, 6),
            Ok(false),
            "the same removal"
        );
        assert_eq!(read(&engine, 1), VersionedRead::Tombstone(6));
        assert_eq!(engine.put_version("ch", 1, 6, b"late"), Ok(false));
        assert_eq!(engine.size().records, 0);
        assert_eq!(engine.put_version("ch", 1, 7, b"seven"), Ok(true));
        assert_eq!(
            engine.tombstone_count(),
            0,
            "the record replaced the tombstone"
        );
        // A removal of a key never held keeps a tombstone, so a late older write stays out.
        assert_eq!(engine.remove_version("ch", 2, 3), Ok(true));
        assert_eq!(engine.put_version("ch", 2, 2, b"late"), Ok(false));
        assert_eq!(read(&engine, 2), VersionedRead::Tombstone(3));
        assert_eq!(read(&engine, 9), VersionedRead::Absent);
        // Writes without a version replace whatever is held, at version 0.
        engine.put("ch", 2, b"plain").unwrap();
        assert_eq!(
            read(&engine, 2),
            VersionedRead::Found((0, b"plain".to_vec()))
        );
        assert_eq!(engine.tombstone_count(), 0);
    }

    #[test]
    fn a_client_batch_applies_by_version_tells_listeners_and_skips_the_guard() {
        let mut engine = engine();
        engine.put_version("ch", 1, 50, b"newer").unwrap();
        let id = engine.subscribe("ch").unwrap();
        // The redistribution guard holds moved-in records back, not a client's batch.
        engine.set_redistribution_cap(Some(1));
        let items = [
            (
                1,
                RefreshRecord::Record {
                    version: 40,
                    value: b"older",
                },
            ),
            (
                2,
                RefreshRecord::Record {
                    version: 40,
                    value: b"new key",
                },
            ),
            (3, RefreshRecord::Tombstone { version: 41 }),
        ];
        assert!(matches!(
            engine.put_version_batch("ch", &items, BatchFrom::Redistribution),
            Err(EngineError::RedistributionGuard { .. })
        ));
        let outcome = engine
            .put_version_batch("ch", &items, BatchFrom::Client)
            .unwrap();
        assert_eq!((outcome.stored, outcome.present), (2, 1));
        assert_eq!(
            read(&engine, 1),
            VersionedRead::Found((50, b"newer".to_vec()))
        );
        let events: Vec<ListenEvent> =
            std::iter::from_fn(|| engine.next_listen_event(id)).collect();
        assert_eq!(
            events,
            vec![
                ListenEvent::Changed {
                    key: 2,
                    value: Box::from(&b"new key"[..]),
                    version: 40
                },
                ListenEvent::Removed {
                    key: 3,
                    version: 41,
                    record: false
                },
            ],
            "each applied item, as PutVersion and RemoveVersion tell them"
        );
    }

    #[test]
    fn loading_keeps_the_tombstone_limit_dropping_the_oldest_first() {
        let mut engine = engine();
        let at = |stored_unix_s| Tombstone {
            version: 1,
            stored_unix_s,
        };
        for (channel, key, stored) in [("a", 1, 30), ("a", 2, 10), ("b", 1, 20), ("b", 2, 20)] {
            engine.apply_remove_version(channel, key, at(stored));
        }
        assert_eq!(
            engine.trim_tombstones_to_limit(),
            0,
            "under the default limit"
        );
        engine.set_tombstone_limits(TombstoneLimits {
            max_tombstones: 2,
            ttl_s: 86_400,
        });
        assert_eq!(engine.trim_tombstones_to_limit(), 2);
        assert_eq!(engine.tombstone_count(), 2);
        // The one stored at 10 went, then the first (by channel, key) of those at 20.
        assert_eq!(engine.held_version("a", 2), None);
        assert_eq!(engine.held_version("b", 1), None);
        assert_eq!(engine.held_version("b", 2), Some(1));
        assert_eq!(engine.held_version("a", 1), Some(1));
    }

    #[test]
    fn two_writes_of_one_version_end_the_same_in_either_order() {
        for order in [[0, 1], [1, 0]] {
            let mut engine = engine();
            let writes: [(u64, Option<&[u8]>); 2] = [(1, Some(b"aaa")), (1, Some(b"bbb"))];
            for index in order {
                let (version, value) = writes[index];
                engine
                    .put_version("ch", 1, version, value.unwrap())
                    .unwrap();
            }
            assert_eq!(read(&engine, 1), VersionedRead::Found((1, b"bbb".to_vec())));
            // A tombstone of that version beats a record of it, in either order.
            engine.put_version("ch", 2, 7, b"zzz").unwrap();
            assert_eq!(engine.remove_version("ch", 2, 7), Ok(true));
            assert_eq!(engine.put_version("ch", 2, 7, b"zzz"), Ok(false));
            assert_eq!(engine.remove_version("ch", 3, 7), Ok(true));
            assert_eq!(engine.put_version("ch", 3, 7, b"zzz"), Ok(false));
            assert_eq!(read(&engine, 2), VersionedRead::Tombstone(7));
            assert_eq!(read(&engine, 3), VersionedRead::Tombstone(7));
            // The same write twice applies once; version 0 never ties.
            assert_eq!(engine.put_version("ch", 1, 1, b"bbb"), Ok(false));
            engine.put("ch", 4, b"aaa").unwrap();
            assert_eq!(engine.put_version("ch", 4, 0, b"bbb"), Ok(false));
        }
    }

    #[test]
    fn tombstones_are_bounded_expire_and_go_with_their_channel() {
        let mut engine = engine();
        engine.set_tombstone_limits(TombstoneLimits {
            max_tombstones: 2,
            ttl_s: 10,
        });
        engine.remove_version("ch", 1, 1).unwrap();
        engine.remove_version("ch", 2, 1).unwrap();
        assert_eq!(
            engine.remove_version("ch", 3, 1),
            Err(EngineError::TooManyTombstones { limit: 2 })
        );
        assert_eq!(
            engine.remove_version("ch", 2, 2),
            Ok(true),
            "a replaced one"
        );
        let now = dht_persist::dump::format::unix_now();
        assert_eq!(engine.expire_tombstones(now), 0, "younger than the TTL");
        // A sweep in slices of one tombstone: two slices drop them, a third ends the pass.
        let mut sweep = TombstoneSweep::default();
        assert_eq!(engine.sweep_tombstones(&mut sweep, now + 11, 1), (1, false));
        assert_eq!(engine.tombstone_count(), 1);
        assert_eq!(engine.sweep_tombstones(&mut sweep, now + 11, 1), (1, false));
        assert_eq!(engine.sweep_tombstones(&mut sweep, now + 11, 1), (0, true));
        assert_eq!(engine.tombstone_count(), 0);
        assert_eq!(read(&engine, 1), VersionedRead::Absent);
        engine.remove_version("ch", 3, 1).unwrap();
        engine.remove_channel("ch").unwrap();
        assert_eq!(engine.tombstone_count(), 0);
    }

    #[test]
    fn listeners_hear_versions_and_only_real_removals_are_records() {
        let mut engine = engine();
        let id = engine.subscribe("ch").unwrap();
        engine.put_version("ch", 1, 9, b"v").unwrap();
        engine.remove_version("ch", 1, 10).unwrap();
        engine.remove_version("ch", 2, 11).unwrap();
        let events: Vec<ListenEvent> =
            std::iter::from_fn(|| engine.next_listen_event(id)).collect();
        assert_eq!(
            events,
            vec![
                ListenEvent::Changed {
                    key: 1,
                    value: Box::from(&b"v"[..]),
                    version: 9
                },
                ListenEvent::Removed {
                    key: 1,
                    version: 10,
                    record: true
                },
                ListenEvent::Removed {
                    key: 2,
                    version: 11,
                    record: false
                },
            ]
        );
    }
}
