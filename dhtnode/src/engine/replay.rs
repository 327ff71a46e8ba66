//! Start-up replay of the change log, a batch at a time in shard order: applied one by one in
//! log order, the changes of a large log land on random shards of a table far larger than the
//! caches, and every one of them waits for memory (about 1 µs each); gathered into batches and
//! applied shard by shard they find their shard's table in the cache, as a dump's records do.
//!
//! Order: a stable sort by (channel, shard) keeps the changes of each key in log order (a key
//! always falls in the same shard), and changes of different keys commute. A RemoveChannel
//! applies every change gathered before it first.
//!
//! Memory: at most [`MAX_BATCH_CHANGES`] changes and [`MAX_BATCH_VALUE_BYTES`] of their values.
//!
//! Admission: a value the loader would not load from a dump (longer than `max_value_bytes`, or
//! outside the node's range under `out_of_range = "ignore"` or `"fatal"`) is not loaded from the
//! log either ([`Admission`]), so what a node holds after a restart does not depend on whether a
//! record was in a dump or still in the log.

use super::channel::shard_of;
use super::Engine;
use dht_persist::loader::{Admission as LoadAdmission, LoadOptions};
use dht_persist::wal::LoggedChange;
use node_core::protocol::dht::HashRange;

/// The loader's rules for a stored value, applied to the log's values, and what they skipped.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    options: LoadOptions,
    /// Values longer than `max_value_bytes`: the key is removed instead (its latest value is the
    /// one that cannot be held; an older one must not be served in its place, as after a dump).
    pub too_large: u64,
    /// Values outside the range, skipped (`ignore`) or loaded (`load`).
    pub out_of_range: u64,
}

/// A logged value outside the node's range under `out_of_range = "fatal"`.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "change log: a value of channel {channel:?}, key {key:#018x}, is outside this node's range {range} and dht.out_of_range is \"fatal\" (\"ignore\" drops such values, \"load\" loads them)"
)]
pub struct OutOfRangeInLog {
    pub channel: String,
    pub key: u64,
    pub range: HashRange,
}

/// What [`Admission::decide`] makes of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Store,
    /// Remove the key instead (a value too large to hold).
    Remove,
    /// Change nothing (outside the range, ignored).
    Skip,
}

impl Admission {
    pub fn new(options: LoadOptions) -> Admission {
        Admission {
            options,
            too_large: 0,
            out_of_range: 0,
        }
    }

    /// Whether a logged value of `key` goes in ([`LoadOptions::admission`], the loader's rules).
    fn decide(
        &mut self,
        channel: &str,
        key: u64,
        value: &[u8],
    ) -> Result<Verdict, OutOfRangeInLog> {
        match self.options.admission(key, value) {
            // The node refuses empty values, so the log holds none; storing one changes nothing
            // a dump would not.
            LoadAdmission::Load | LoadAdmission::Empty => Ok(Verdict::Store),
            LoadAdmission::TooLarge => {
                self.too_large += 1;
                Ok(Verdict::Remove)
            }
            LoadAdmission::OutOfRangeLoaded => {
                self.out_of_range += 1;
                Ok(Verdict::Store)
            }
            LoadAdmission::OutOfRangeIgnored => {
                self.out_of_range += 1;
                Ok(Verdict::Skip)
            }
            LoadAdmission::OutOfRangeFatal => Err(OutOfRangeInLog {
                channel: channel.to_string(),
                key,
                range: self.options.range,
            }),
        }
    }
}

/// Changes gathered before they are applied.
pub const MAX_BATCH_CHANGES: usize = 1 << 17;
/// Bytes of values gathered before they are applied.
pub const MAX_BATCH_VALUE_BYTES: usize = 32 << 20;

/// What a gathered change does to its key.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Store the value at `values[start..start + len]`.
    Store {
        start: usize,
        len: usize,
    },
    Remove,
    /// A RemoveVersion: remove the record, keep a tombstone stored at this time.
    Tombstone {
        stored_unix_s: u64,
    },
}

/// One gathered change of one key, with its version (0 for changes without one).
#[derive(Debug, Clone, Copy)]
struct Gathered {
    channel: u32,
    shard: u32,
    key: u64,
    version: u64,
    action: Action,
}

/// A change as [`ReplayBatch::gather`] takes it: the value to store, or what to remove.
enum Input<'a> {
    Store(&'a [u8]),
    Remove,
    Tombstone { stored_unix_s: u64 },
}

/// The changes of the replay not applied yet (see the module doc).
#[derive(Debug)]
pub struct ReplayBatch {
    channels: Vec<String>,
    changes: Vec<Gathered>,
    values: Vec<u8>,
    /// The loader's rules, and what they skipped so far.
    pub admission: Admission,
    /// Tombstones dropped beyond `dht.tombstone_limit` after each applied batch
    /// ([`Engine::trim_tombstones_to_limit`]).
    pub tombstones_dropped: u64,
}

impl ReplayBatch {
    pub fn new(admission: Admission) -> ReplayBatch {
        ReplayBatch {
            channels: Vec::new(),
            changes: Vec::new(),
            values: Vec::new(),
            admission,
            tombstones_dropped: 0,
        }
    }

    /// Gathers `change` (applying the batch first when it is full, or when `change` is a
    /// RemoveChannel, which is applied at once). A value outside the range under
    /// `out_of_range = "fatal"` stops the replay.
    pub fn add(
        &mut self,
        engine: &mut Engine,
        change: &LoggedChange<'_>,
    ) -> Result<(), OutOfRangeInLog> {
        match change {
            LoggedChange::Put {
                channel,
                key,
                value,
            } => self.store(engine, channel, *key, 0, value)?,
            LoggedChange::Remove { channel, key } => {
                self.gather(engine, channel, *key, 0, Input::Remove)
            }
            LoggedChange::PutBatch { channel, records } => {
                for (key, value) in records.clone() {
                    self.store(engine, channel, key, 0, value)?;
                }
            }
            LoggedChange::RemoveKeys { channel, keys } => {
                for key in keys.clone() {
                    self.gather(engine, channel, key, 0, Input::Remove);
                }
            }
            LoggedChange::PutVersion {
                channel,
                key,
                version,
                value,
            } => self.store(engine, channel, *key, *version, value)?,
            LoggedChange::RemoveVersion {
                channel,
                key,
                version,
                stored_unix_s,
            } => {
                let stored_unix_s = *stored_unix_s;
                let input = Input::Tombstone { stored_unix_s };
                self.gather(engine, channel, *key, *version, input)
            }
            LoggedChange::RemoveChannel { .. } => {
                self.apply(engine);
                engine.apply_logged(change);
            }
        }
        Ok(())
    }

    /// Gathers a stored value as [`Admission`] decides.
    fn store(
        &mut self,
        engine: &mut Engine,
        channel: &str,
        key: u64,
        version: u64,
        value: &[u8],
    ) -> Result<(), OutOfRangeInLog> {
        match self.admission.decide(channel, key, value)? {
            Verdict::Store => self.gather(engine, channel, key, version, Input::Store(value)),
            Verdict::Remove => self.gather(engine, channel, key, 0, Input::Remove),
            Verdict::Skip => {}
        }
        Ok(())
    }

    fn gather(
        &mut self,
        engine: &mut Engine,
        channel: &str,
        key: u64,
        version: u64,
        input: Input<'_>,
    ) {
        let value_len = match input {
            Input::Store(value) => value.len(),
            Input::Remove | Input::Tombstone { .. } => 0,
        };
        let full = self.changes.len() >= MAX_BATCH_CHANGES
            || self.values.len() + value_len > MAX_BATCH_VALUE_BYTES;
        if full {
            self.apply(engine);
        }
        let index = match self.channels.iter().rposition(|name| name == channel) {
            Some(index) => index,
            None => {
                self.channels.push(channel.to_string());
                self.channels.len() - 1
            }
        };
        let action = match input {
            Input::Store(value) => {
                let start = self.values.len();
                self.values.extend_from_slice(value);
                Action::Store {
                    start,
                    len: value.len(),
                }
            }
            Input::Remove => Action::Remove,
            Input::Tombstone { stored_unix_s } => Action::Tombstone { stored_unix_s },
        };
        self.changes.push(Gathered {
            channel: index as u32,
            shard: shard_of(key) as u32,
            key,
            version,
            action,
        });
    }

    /// Applies every gathered change, shard by shard; then drops the tombstones beyond the
    /// limit (so the replay holds at most the limit plus one batch of them).
    pub fn apply(&mut self, engine: &mut Engine) {
        // Stable: the changes of one key keep their order.
        self.changes
            .sort_by_key(|change| (change.channel, change.shard));
        for change in &self.changes {
            let channel = &self.channels[change.channel as usize];
            let key = change.key;
            match change.action {
                Action::Store { start, len } => {
                    let value = &self.values[start..start + len];
                    engine.store_version_unchecked(channel, key, value, change.version)
                }
                Action::Remove => {
                    engine.remove_unchecked(channel, key);
                }
                Action::Tombstone { stored_unix_s } => {
                    let tombstone = super::tombstones::Tombstone {
                        version: change.version,
                        stored_unix_s,
                    };
                    engine.apply_remove_version(channel, key, tombstone);
                }
            }
        }
        self.changes.clear();
        self.values.clear();
        self.channels.clear();
        self.tombstones_dropped += engine.trim_tombstones_to_limit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineLimits, ListenerLimits};
    use dht_persist::loader::OutOfRangePolicy;
    use node_core::protocol::dht::HashRange;

    /// Changes of one key keep their order across shards and batches, a RemoveChannel cuts
    /// the batch, and what a one-by-one replay gives is what the batches give.
    #[test]
    fn batches_give_what_changes_one_by_one_give() {
        let limits = EngineLimits {
            size_limit_bytes: 0,
            max_channels: 16,
            max_value_bytes: 64,
        };
        let listeners = ListenerLimits {
            max_events: 1,
            max_bytes: 1 << 10,
            max_total_bytes: 1 << 10,
        };
        let mut batched = Engine::new(HashRange::FULL, limits, listeners);
        let mut single = Engine::new(HashRange::FULL, limits, listeners);
        let options = LoadOptions {
            policy: OutOfRangePolicy::Load,
            range: HashRange::FULL,
            max_value_bytes: 64,
        };
        let mut batch = ReplayBatch::new(Admission::new(options));
        let mut state = 7u64;
        for step in 0..(MAX_BATCH_CHANGES as u64 + 5000) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let channel = ["a", "b"][(state % 2) as usize];
            let key = (state >> 8) % 300;
            let value = step.to_le_bytes();
            let change = match (state >> 40) % 50 {
                0 if step % 1000 == 0 => LoggedChange::RemoveChannel { channel },
                1..=10 => LoggedChange::Remove { channel, key },
                _ => LoggedChange::Put {
                    channel,
                    key,
                    value: &value,
                },
            };
            batch.add(&mut batched, &change).unwrap();
            single.apply_logged(&change);
        }
        batch.apply(&mut batched);
        assert_eq!(batched.size(), single.size());
        for channel in ["a", "b"] {
            for key in 0..300 {
                assert_eq!(
                    batched.get(channel, key).unwrap(),
                    single.get(channel, key).unwrap(),
                    "{channel} {key}"
                );
            }
        }
    }
}
