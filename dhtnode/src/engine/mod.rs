//! The dht storage engine: named channels of `u64` → bytes records, the node's hash range, its
//! limits (value size, node-wide size) and Listen subscriptions. It knows nothing of sockets or
//! frames: request handlers translate protocol to these calls and errors to statuses.
//!
//! Rules kept here, so every request applies them the same way:
//! - Channels are created by their first write only; reads of a missing channel find nothing
//!   and create nothing. A Listen on a missing channel waits for that first write without
//!   creating it: listeners are kept by channel name, apart from the channels.
//! - Writes (Put, PutBatch, Update, RedistBatch) of a key outside the node's range fail with
//!   WrongNode. A record the node still holds outside its range (one a redistribution has not
//!   moved yet) stays readable and removable; reads and removes of an absent key outside the
//!   range fail with WrongNode, so a client with an old idea of the ranges learns of it.
//! - A redistribution takes records away with [`Engine::remove_moved`], which listeners do not
//!   see (the record moved, it was not removed), and brings them in with
//!   [`Engine::put_absent_batch`], which listeners do see.
//! - Values are 1 to `max_value_bytes` bytes; the node-wide `size_limit_bytes` (Σ key 8 + value
//!   length, 0 = none) refuses writes that would exceed it.
//! - Every change, whichever request made it, reaches the channel's listeners in order.
//! - Every change is appended to the change log ([`log`]) after its checks and before it is
//!   applied; a change the log refuses is not applied. A request that changes nothing (a
//!   Remove of an absent key, a refused Update) logs nothing. Start-up replays the log with
//!   [`replay::ReplayBatch`] (in shard order) and [`Engine::apply_logged`], which apply
//!   without checks what was accepted before.

pub mod channel;
pub mod listeners;
pub mod log;
pub mod prefetch;
pub mod replay;
pub mod table;
pub mod tombstones;
pub mod value;
mod versions;

pub use channel::{Channel, SHARD_COUNT};
pub use listeners::{ListenEvent, ListenerId, ListenerLimits};
pub use versions::{BatchFrom, TombstoneLimits, TombstoneSweep, VersionedRead};

use channel::record_bytes;
use dht_persist::wal::{Change, LoggedChange};
use listeners::Listeners;
pub use log::EngineLog;
use node_core::protocol::batch::append_record;
use node_core::protocol::dht::{
    check_channel_name, valid_channel_name, value_hash, BadChannelName, Expected, HashRange,
    SizeInfo, UpdateAction,
};
use node_core::protocol::status::StatusError;
use node_core::protocol::Status;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    /// Σ record bytes the node may hold; 0 = no limit.
    pub size_limit_bytes: u64,
    /// Channels the node may hold (each costs its shard tables, ~130 KiB, even when empty).
    pub max_channels: usize,
    pub max_value_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    BadChannelName(#[from] BadChannelName),
    #[error(
        "key 0x{key:016x} (hash position 0x{position:016x}) is outside this node's range {range}"
    )]
    WrongNode {
        key: u64,
        position: u64,
        range: HashRange,
    },
    #[error("values must not be empty")]
    EmptyValue,
    #[error("value of {len} bytes exceeds the node's max_value_bytes of {max}")]
    ValueTooBig { len: usize, max: usize },
    #[error("the node's size limit of {limit} bytes would be exceeded")]
    OutOfMemory { limit: u64 },
    #[error("the record changed since it was read")]
    UpdateConflict,
    #[error("the node's limit of {limit} channels is reached")]
    TooManyChannels { limit: usize },
    #[error(
        "redistribution memory guard: this node holds {bytes} bytes and may grow to at most \
         {cap} (dht.redistribution_memory_multiplier × its size when its own redistribution \
         started) until that redistribution has moved records away; retry later"
    )]
    RedistributionGuard { cap: u64, bytes: u64 },
    #[error("the change log cannot take the change, so nothing was stored: {0}")]
    LogUnavailable(String),
    #[error(
        "the node's limit of {limit} tombstones (dht.tombstone_limit) is reached; they are \
         dropped dht.tombstone_ttl_s after they were stored"
    )]
    TooManyTombstones { limit: u64 },
}

impl EngineError {
    pub fn status(&self) -> Status {
        match self {
            EngineError::BadChannelName(_) => Status::BadChannelName,
            EngineError::WrongNode { .. } => Status::WrongNode,
            EngineError::EmptyValue => Status::EmptyValue,
            EngineError::ValueTooBig { .. } => Status::ValueTooBig,
            EngineError::OutOfMemory { .. } => Status::OutOfMemory,
            EngineError::UpdateConflict => Status::UpdateConflict,
            EngineError::TooManyChannels { .. } => Status::OutOfMemory,
            EngineError::RedistributionGuard { .. } => Status::OutOfMemory,
            EngineError::LogUnavailable(_) => Status::InternalError,
            EngineError::TooManyTombstones { .. } => Status::OutOfMemory,
        }
    }
}

impl StatusError for EngineError {
    fn status(&self) -> Status {
        EngineError::status(self)
    }
}

pub struct Engine {
    channels: BTreeMap<String, Arc<Channel>>,
    /// The listeners of each channel name, whether or not the channel exists (a Listen waits for
    /// the first write): a name leaves when its last listener does, or when RemoveChannel ends
    /// them.
    listening: BTreeMap<String, Vec<ListenerId>>,
    range: HashRange,
    limits: EngineLimits,
    total: SizeInfo,
    listeners: Listeners,
    /// While this node's own redistribution runs: the most bytes records moved in
    /// (RedistBatch) may grow it to.
    redistribution_cap: Option<u64>,
    log: EngineLog,
    /// Reused to lay out the records a redistribution stores, for their log entry.
    raw_scratch: Vec<u8>,
    /// Tombstones over all channels, and their bounds (docs/protocol.md §6.11).
    tombstones: u64,
    tombstone_limits: TombstoneLimits,
    /// The channel the last request named (see [`LastChannel`]).
    last_channel: Option<LastChannel>,
}

/// The last channel a request resolved, with its name. Clients work on one channel, or a few,
/// for many requests in a row: a request naming the same channel as the one before skips the
/// name check and the map lookup (a compare of the name's bytes instead; about 200 of the
/// ~1 250 instructions of a pipelined Get, docs/benchmarks.md).
///
/// Invariants: `name` passed [`check_channel_name`], and `data` is the channel `channels` maps
/// `name` to. Every removal from `channels` (RemoveChannel, a channel replaced at load) clears
/// the cache, so a removed channel is neither found nor kept in memory by it; `data` is also
/// checked against [`Channel::is_removed`], and debug builds check the map on every hit.
struct LastChannel {
    name: String,
    data: Arc<Channel>,
}

/// What a [`Engine::put_absent_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AbsentBatchOutcome {
    /// Records stored (their keys had no value).
    pub stored: u64,
    /// Records skipped because their key already had a value.
    pub present: u64,
}

impl Engine {
    pub fn new(range: HashRange, limits: EngineLimits, listener_limits: ListenerLimits) -> Engine {
        Engine {
            channels: BTreeMap::new(),
            listening: BTreeMap::new(),
            range,
            limits,
            total: SizeInfo::default(),
            listeners: Listeners::new(listener_limits),
            redistribution_cap: None,
            log: EngineLog::none(),
            raw_scratch: Vec::new(),
            tombstones: 0,
            tombstone_limits: TombstoneLimits::default(),
            last_channel: None,
        }
    }

    /// At the end of the process (the shutdown dump is written): gives the channels up
    /// without freeing their records. Freeing 10M records one allocation at a time kept a node
    /// busy about 2 s after its shutdown dump (perf: `Arc::drop_slow`, `_int_free`,
    /// `malloc_consolidate`, docs/benchmarks.md "Shutdown"); the kernel takes the whole heap
    /// back at exit at once. The engine holds no channel afterwards.
    pub fn leak_channels_at_exit(&mut self) {
        self.last_channel = None;
        std::mem::forget(std::mem::take(&mut self.channels));
        assert!(self.channels.is_empty());
    }

    /// Whether `name` is the channel of the last request ([`LastChannel`]): then it is a
    /// valid name of an existing channel, `self.last_channel`'s.
    fn is_last_channel(&self, name: &str) -> bool {
        let Some(last) = &self.last_channel else {
            return false;
        };
        if last.name.as_bytes() != name.as_bytes() || last.data.is_removed() {
            return false;
        }
        debug_assert!(
            self.channels
                .get(name)
                .is_some_and(|data| Arc::ptr_eq(data, &last.data)),
            "the cached channel {name:?} is the one the name maps to"
        );
        true
    }

    /// Makes `data`, the channel `name` maps to, the last channel, if `name` is valid.
    fn remember_channel(&mut self, name: &str, data: Arc<Channel>) {
        // Paths that skip the name check (a replay) may resolve names too: only a valid one
        // may be served without the check.
        if !valid_channel_name(name) {
            return;
        }
        match &mut self.last_channel {
            Some(last) => {
                // Reuses the name's buffer: clients alternating channels allocate nothing.
                last.name.clear();
                last.name.push_str(name);
                last.data = data;
            }
            None => {
                let name = name.to_owned();
                self.last_channel = Some(LastChannel { name, data });
            }
        }
    }

    /// Forgets the last channel (its channel leaves `channels`).
    fn forget_last_channel(&mut self, name: &str) {
        if self
            .last_channel
            .as_ref()
            .is_some_and(|last| last.name == name)
        {
            self.last_channel = None;
        }
    }

    /// The channel `name` names, if it exists, after the name check (BadChannelName), which the
    /// last request's channel skips ([`LastChannel`]).
    fn resolve_channel(&mut self, name: &str) -> Result<Option<&Arc<Channel>>, EngineError> {
        if !self.is_last_channel(name) {
            Engine::check_name(name)?;
            let Some(data) = self.channels.get(name) else {
                return Ok(None);
            };
            let data = Arc::clone(data);
            self.remember_channel(name, data);
        }
        Ok(self.last_channel.as_ref().map(|last| &last.data))
    }

    /// The channel `name` names, for a look-ahead ([`prefetch`]): the last channel's or the
    /// map's, without the name check (an invalid name is simply not found) and without
    /// changing the last channel.
    pub fn channel_for_look_ahead(&self, name: &[u8]) -> Option<&Channel> {
        match &self.last_channel {
            Some(last) if last.name.as_bytes() == name => Some(&last.data),
            _ => {
                let name = std::str::from_utf8(name).ok()?;
                self.channels.get(name).map(|data| &**data)
            }
        }
    }

    /// Logs every change from now on through `log` (after the start-up replay).
    pub fn set_log(&mut self, log: EngineLog) {
        self.log = log;
    }

    pub fn log(&self) -> &EngineLog {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut EngineLog {
        &mut self.log
    }

    /// Appends `change` to the log before it is applied.
    fn log_change(&mut self, change: &Change<'_>) -> Result<(), EngineError> {
        self.log.append(change).map_err(EngineError::LogUnavailable)
    }

    pub fn range(&self) -> HashRange {
        self.range
    }

    /// Changes the node's range (a Redistribute): from now on writes outside it are refused.
    pub fn set_range(&mut self, range: HashRange) {
        self.range = range.normalized();
    }

    /// Sets or clears the redistribution memory guard (see [`EngineError::RedistributionGuard`]).
    pub fn set_redistribution_cap(&mut self, cap: Option<u64>) {
        self.redistribution_cap = cap;
    }

    pub fn redistribution_cap(&self) -> Option<u64> {
        self.redistribution_cap
    }

    pub fn is_responsible_for(&self, key: u64) -> bool {
        self.range.is_responsible_for(key)
    }

    /// The WrongNode error for `key`.
    pub fn wrong_node(&self, key: u64) -> EngineError {
        EngineError::WrongNode {
            key,
            position: node_core::protocol::dht::hash_position(key),
            range: self.range,
        }
    }

    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    fn check_name(channel: &str) -> Result<(), EngineError> {
        Ok(check_channel_name(channel)?)
    }

    fn check_key(&self, key: u64) -> Result<(), EngineError> {
        if self.range.is_responsible_for(key) {
            return Ok(());
        }
        Err(self.wrong_node(key))
    }

    fn check_value(&self, value: &[u8]) -> Result<(), EngineError> {
        if value.is_empty() {
            return Err(EngineError::EmptyValue);
        }
        if value.len() > self.limits.max_value_bytes {
            return Err(EngineError::ValueTooBig {
                len: value.len(),
                max: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Refuses growth past the size limit. `growth` may be negative (an overwrite that shrinks).
    fn check_growth(&self, growth: i64) -> Result<(), EngineError> {
        let limit = self.limits.size_limit_bytes;
        if limit == 0 || growth <= 0 || self.total.bytes.saturating_add(growth as u64) <= limit {
            return Ok(());
        }
        Err(EngineError::OutOfMemory { limit })
    }

    /// All checks of a write of `value` to `key`, before anything changes.
    /// Refuses a new channel beyond the limit (an existing one is always fine).
    fn check_channel_room(&self, channel: &str) -> Result<(), EngineError> {
        let limit = self.limits.max_channels;
        if self.channels.len() < limit || self.channels.contains_key(channel) {
            return Ok(());
        }
        Err(EngineError::TooManyChannels { limit })
    }

    fn check_write(&self, channel: &str, key: u64, value: &[u8]) -> Result<(), EngineError> {
        // The last request's channel is a valid name of an existing channel: both checks pass.
        if !self.is_last_channel(channel) {
            Engine::check_name(channel)?;
            self.check_channel_room(channel)?;
        }
        self.check_key(key)?;
        self.check_value(value)?;
        if self.limits.size_limit_bytes == 0 {
            // No limit: skip the lookup that only the growth check needs.
            return Ok(());
        }
        let old_bytes = self.old_record_bytes(channel, key);
        self.check_growth(record_bytes(value.len()) as i64 - old_bytes as i64)
    }

    /// The channel, created by this (first) write if missing.
    fn channel_for_write(&mut self, channel: &str) -> &Arc<Channel> {
        if self.is_last_channel(channel) {
            return &self.last_channel.as_ref().expect("checked above").data;
        }
        // Look up before inserting, so the common case allocates no String.
        if !self.channels.contains_key(channel) {
            self.channels
                .insert(channel.to_string(), Arc::new(Channel::new()));
        }
        let data = Arc::clone(self.channels.get(channel).expect("inserted above"));
        self.remember_channel(channel, data);
        self.channels.get(channel).expect("inserted above")
    }

    /// Whether `channel` has listeners (cheap when no channel has any).
    fn is_listened(&self, channel: &str) -> bool {
        !self.listening.is_empty() && self.listening.contains_key(channel)
    }

    /// Stores after the checks passed; tells the listeners.
    fn store(&mut self, channel: &str, key: u64, value: &[u8]) {
        // The pair of the write checks (debug builds: Put is the hottest path): only a key of
        // this node's range is written.
        debug_assert!(
            self.range.is_responsible_for(key),
            "key 0x{key:016x} checked"
        );
        self.store_unchecked(channel, key, value);
    }

    /// Stores whatever the key (a replay applies what was accepted under another range);
    /// tells the listeners.
    pub(crate) fn store_unchecked(&mut self, channel: &str, key: u64, value: &[u8]) {
        self.store_version_unchecked(channel, key, value, 0);
    }

    /// [`store_unchecked`](Self::store_unchecked) with a version; the record replaces the
    /// key's tombstone, if any.
    pub(crate) fn store_version_unchecked(
        &mut self,
        channel: &str,
        key: u64,
        value: &[u8],
        version: u64,
    ) {
        let data = self.channel_for_write(channel);
        let (growth, cleared) = data.put(key, value, version);
        self.stored(channel, key, value, version, growth, cleared);
    }

    /// The engine's side of a record just stored (`growth`: the change in record bytes;
    /// `cleared_tombstone`: the key's tombstone was dropped): the totals and the listeners.
    /// Inlined: it is on Put's path, where a call of seven arguments shows (callgrind,
    /// scripts/bench-tls-instructions.sh).
    #[inline(always)]
    pub(super) fn stored(
        &mut self,
        channel: &str,
        key: u64,
        value: &[u8],
        version: u64,
        growth: i64,
        cleared_tombstone: bool,
    ) {
        if cleared_tombstone {
            self.tombstones -= 1;
        }
        let listening = self.is_listened(channel);
        self.total.bytes = (self.total.bytes as i64 + growth) as u64;
        if growth == record_bytes(value.len()) as i64 {
            self.total.records += 1;
        }
        if listening {
            self.notify(
                channel,
                ListenEvent::Changed {
                    key,
                    value: Box::from(value),
                    version,
                },
            );
        }
        debug_assert!(self.total.bytes >= self.channels[channel].bytes());
    }

    fn notify(&mut self, channel: &str, event: ListenEvent) {
        if let Some(ids) = self.listening.get(channel) {
            self.listeners.notify(ids, &event);
        }
    }

    pub fn put(&mut self, channel: &str, key: u64, value: &[u8]) -> Result<(), EngineError> {
        self.check_write(channel, key, value)?;
        self.log_change(&Change::Put {
            channel,
            key,
            value,
        })?;
        self.store(channel, key, value);
        Ok(())
    }

    /// Runs `f` on the value under `key` (`None` if absent or the channel is missing).
    fn with_unchecked<R>(&self, channel: &str, key: u64, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self.channels.get(channel) {
            Some(data) => data.with(key, f),
            None => f(None),
        }
    }

    /// The record bytes a key holds now (0 if none): what an overwrite gives back.
    fn old_record_bytes(&self, channel: &str, key: u64) -> u64 {
        self.with_unchecked(channel, key, |old| {
            old.map_or(0, |old| record_bytes(old.len()))
        })
    }

    /// Runs `f` on the value under `key`, or on `None`. (A closure rather than a returned
    /// reference: the value lives in a locked shard, see [`channel::Channel`].)
    pub fn with_value<R>(
        &self,
        channel: &str,
        key: u64,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, EngineError> {
        Engine::check_name(channel)?;
        Ok(self.with_unchecked(channel, key, f))
    }

    /// Get and Exists: runs `f` on the value under `key`; `Ok(None)` when the key has no
    /// record (a missing channel is not created). A record the node holds is found even outside
    /// its range (a redistribution has not moved it yet); an absent key outside the range is
    /// WrongNode, so a client with an old idea of the ranges learns that the record may be
    /// elsewhere.
    pub fn read<R>(
        &mut self,
        channel: &str,
        key: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, EngineError> {
        let found = match self.resolve_channel(channel)? {
            Some(data) => data.with(key, |value| value.map(f)),
            None => None,
        };
        match found {
            Some(found) => Ok(Some(found)),
            None => self.check_key(key).map(|()| None),
        }
    }

    /// A copy of the value under `key` (tests and tools; requests use [`Engine::read`]).
    pub fn get(&self, channel: &str, key: u64) -> Result<Option<Vec<u8>>, EngineError> {
        self.with_value(channel, key, |value| value.map(<[u8]>::to_vec))
    }

    /// Removes a record; returns whether it existed. A record the node holds is removed even
    /// outside its range (a redistribution has not moved it yet); an absent key outside the
    /// range is WrongNode, since the record may be on the node that owns it now.
    pub fn remove(&mut self, channel: &str, key: u64) -> Result<bool, EngineError> {
        Engine::check_name(channel)?;
        if self.log.is_writing() && !self.with_unchecked(channel, key, |old| old.is_some()) {
            self.check_key(key)?;
            return Ok(false);
        }
        if self.log.is_writing() {
            self.log_change(&Change::Remove { channel, key })?;
        }
        let removed = self.remove_unchecked(channel, key);
        if !removed {
            self.check_key(key)?;
        }
        Ok(removed)
    }

    /// Removes a record whatever the key; tells the listeners. Returns whether it existed.
    pub(crate) fn remove_unchecked(&mut self, channel: &str, key: u64) -> bool {
        let removed = self
            .channels
            .get_mut(channel)
            .and_then(|data| data.remove(key));
        let Some(removed_bytes) = removed else {
            return false;
        };
        self.total.records -= 1;
        self.total.bytes -= removed_bytes;
        let event = ListenEvent::Removed {
            key,
            version: 0,
            record: true,
        };
        self.notify(channel, event);
        true
    }

    /// Compare-and-swap: applies `action` only if the record is as `expected`.
    pub fn update(
        &mut self,
        channel: &str,
        key: u64,
        expected: Expected,
        action: UpdateAction<'_>,
    ) -> Result<(), EngineError> {
        Engine::check_name(channel)?;
        self.check_key(key)?;
        let as_expected = self.with_unchecked(channel, key, |current| match (expected, current) {
            (Expected::Absent, None) => true,
            (Expected::Hash(hash), Some(value)) => value_hash(value) == hash,
            _ => false,
        });
        if !as_expected {
            return Err(EngineError::UpdateConflict);
        }
        match action {
            UpdateAction::Write(value) => self.put(channel, key, value),
            UpdateAction::Remove => self.remove(channel, key).map(|_| ()),
        }
    }

    /// The checks every record of a batch must pass before any is stored: channel name and
    /// room, then each key in range and each value valid. An empty batch creates no channel
    /// (docs/protocol.md §4), so the channel limit does not refuse it.
    fn check_batch<'a>(
        &self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), EngineError> {
        Engine::check_name(channel)?;
        let mut records = records.peekable();
        if records.peek().is_some() {
            self.check_channel_room(channel)?;
        }
        for (key, value) in records {
            self.check_key(key)?;
            self.check_value(value)?;
        }
        Ok(())
    }

    /// Stores a batch all or nothing: every record is checked first, so a refused batch changes
    /// nothing (the reference stored a prefix and failed on the first bad record).
    pub fn put_batch<'a>(
        &mut self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    ) -> Result<u64, EngineError> {
        self.put_batch_logged_as(channel, records, None)
    }

    /// [`put_batch`](Self::put_batch) of the records of `batch`, a protocol batch as the
    /// request carried it, which is logged as it is.
    pub fn put_protocol_batch<'a>(
        &mut self,
        channel: &str,
        batch: &[u8],
        records: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    ) -> Result<u64, EngineError> {
        self.put_batch_logged_as(channel, records, Some(batch))
    }

    fn put_batch_logged_as<'a>(
        &mut self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])> + Clone,
        batch: Option<&[u8]>,
    ) -> Result<u64, EngineError> {
        self.check_batch(channel, records.clone())?;
        if self.limits.size_limit_bytes > 0 {
            self.check_growth(self.batch_growth(channel, records.clone()))?;
        }
        if self.log.is_writing() {
            match batch {
                Some(batch) => self.log_change(&Change::PutBatch { channel, batch })?,
                None => self.log_records(channel, records.clone())?,
            }
        }
        let mut stored = 0;
        for (key, value) in records {
            self.store(channel, key, value);
            stored += 1;
        }
        Ok(stored)
    }

    /// Stores the records of a batch whose keys have no value yet, skipping the others: how a
    /// redistribution hands records over, so that a newer value written here since is never
    /// replaced by the older copy. All or nothing: every record is checked first (range,
    /// value, size limit, redistribution guard). Listeners see every record stored.
    pub fn put_absent_batch<'a>(
        &mut self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    ) -> Result<AbsentBatchOutcome, EngineError> {
        self.check_batch(channel, records.clone())?;
        if self.limits.size_limit_bytes > 0 || self.redistribution_cap.is_some() {
            // Only absent keys grow the node; a key repeated in the batch counts once (the
            // first copy is the one stored).
            let mut seen = std::collections::HashSet::new();
            let growth: u64 = records
                .clone()
                .filter(|(key, _)| seen.insert(*key) && self.is_unheld(channel, *key))
                .map(|(_, value)| record_bytes(value.len()))
                .sum();
            self.check_growth(i64::try_from(growth).unwrap_or(i64::MAX))?;
            if let Some(cap) = self.redistribution_cap {
                if growth > 0 && self.total.bytes.saturating_add(growth) > cap {
                    return Err(EngineError::RedistributionGuard {
                        cap,
                        bytes: self.total.bytes,
                    });
                }
            }
        }
        if self.log.is_writing() {
            // Only what will be stored: the first copy of each key that has no value.
            let mut seen = std::collections::HashSet::new();
            let absent = records
                .clone()
                .filter(|(key, _)| seen.insert(*key) && self.is_unheld(channel, *key));
            let absent: Vec<(u64, &[u8])> = absent.collect();
            if !absent.is_empty() {
                self.log_records(channel, absent.into_iter())?;
            }
        }
        let mut outcome = AbsentBatchOutcome::default();
        for (key, value) in records {
            debug_assert!(
                self.range.is_responsible_for(key),
                "key 0x{key:016x} checked"
            );
            let added = self.channel_for_write(channel).put_if_absent(key, value);
            if added == 0 {
                outcome.present += 1;
                continue;
            }
            let listening = self.is_listened(channel);
            outcome.stored += 1;
            self.total.records += 1;
            self.total.bytes += added;
            if listening {
                self.notify(
                    channel,
                    ListenEvent::Changed {
                        key,
                        value: Box::from(value),
                        version: 0,
                    },
                );
            }
        }
        Ok(outcome)
    }

    /// Removes a record that a redistribution handed to another node, if it is still the one
    /// handed over: the channel is still `data` (not removed and created again since) and the
    /// value still has `hash` ([`value_hash`]). Returns whether it was removed. Listeners are
    /// not told: the record moved, it was not removed.
    pub fn remove_moved(
        &mut self,
        channel: &str,
        data: &Arc<Channel>,
        key: u64,
        hash: u64,
    ) -> bool {
        let removed = self.remove_moved_batch(channel, data, &[(key, hash)]);
        matches!(removed.as_deref(), Ok([true]))
    }

    /// [`remove_moved`](Self::remove_moved) of several `(key, hash)` pairs: the keys still
    /// holding what was handed over are logged in one entry, then removed. Returns, per pair,
    /// whether it was removed; `Err` when the log refused the entry (nothing was removed: the
    /// records stay, outside the range, until a retry).
    pub fn remove_moved_batch(
        &mut self,
        channel: &str,
        data: &Arc<Channel>,
        entries: &[(u64, u64)],
    ) -> Result<Vec<bool>, EngineError> {
        let Some(current) = self.channels.get(channel).filter(|c| Arc::ptr_eq(c, data)) else {
            return Ok(vec![false; entries.len()]);
        };
        let current = Arc::clone(current);
        let still: Vec<bool> = entries
            .iter()
            .map(|&(key, hash)| current.with(key, |v| v.is_some_and(|v| value_hash(v) == hash)))
            .collect();
        if self.log.is_writing() {
            let keys: Vec<u64> = entries
                .iter()
                .zip(&still)
                .filter(|(_, still)| **still)
                .map(|((key, _), _)| *key)
                .collect();
            if !keys.is_empty() {
                self.log_change(&Change::RemoveKeys {
                    channel,
                    keys: &keys,
                })?;
            }
        }
        for (&(key, hash), still) in entries.iter().zip(&still) {
            if !still {
                continue;
            }
            let removed = current.remove_if(key, |value| value_hash(value) == hash);
            // Nothing else changes the channel between the check and here (one thread).
            let Some(removed) = removed else {
                unreachable!("key 0x{key:016x} was checked just now");
            };
            self.total.records -= 1;
            self.total.bytes -= removed;
        }
        Ok(still)
    }

    /// Logs records stored by other means than a request's batch, as one PutBatch entry (in
    /// pieces of at most 16 MiB of records).
    fn log_records<'a>(
        &mut self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> Result<(), EngineError> {
        let mut raw = std::mem::take(&mut self.raw_scratch);
        raw.clear();
        let mut count = 0u32;
        let mut result = Ok(());
        for (key, value) in records {
            if raw.len() + 12 + value.len()
                > node_core::protocol::batch::MAX_BATCH_UNCOMPRESSED_BYTES
                && count > 0
            {
                result = self.log_change(&Change::PutRecords {
                    channel,
                    raw: &raw,
                    count,
                });
                raw.clear();
                count = 0;
                if result.is_err() {
                    break;
                }
            }
            append_record(&mut raw, key, value);
            count += 1;
        }
        if result.is_ok() && count > 0 {
            result = self.log_change(&Change::PutRecords {
                channel,
                raw: &raw,
                count,
            });
        }
        if raw.capacity() > 1 << 20 {
            raw = Vec::new();
        }
        self.raw_scratch = raw;
        result
    }

    /// Every channel with its shared records (what a redistribution walks).
    pub fn channels(&self) -> impl Iterator<Item = (&str, &Arc<Channel>)> {
        self.channels
            .iter()
            .map(|(name, data)| (name.as_str(), data))
    }

    /// The change in stored bytes a batch makes: each key counted once, with the last value
    /// the batch gives it (a key repeated in a batch overwrites itself).
    fn batch_growth<'a>(
        &self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])>,
    ) -> i64 {
        let mut last_len: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for (key, value) in records {
            last_len.insert(key, value.len());
        }
        last_len
            .into_iter()
            .map(|(key, len)| record_bytes(len) as i64 - self.old_record_bytes(channel, key) as i64)
            .sum()
    }

    pub fn channel_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// A channel's records, shared: the dump writer thread keeps a handle while it encodes it.
    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.get(name)
    }

    pub fn channel_size(&self, name: &str) -> SizeInfo {
        self.channel(name)
            .map_or(SizeInfo::default(), |channel| SizeInfo {
                records: channel.records(),
                bytes: channel.bytes(),
            })
    }

    pub fn size(&self) -> SizeInfo {
        self.total
    }

    /// Drops a channel and ends its listeners (also those waiting for a first write); returns
    /// whether the channel existed.
    pub fn remove_channel(&mut self, name: &str) -> Result<bool, EngineError> {
        Engine::check_name(name)?;
        if self.channels.contains_key(name) {
            self.log_change(&Change::RemoveChannel { channel: name })?;
        }
        Ok(self.remove_channel_unchecked(name))
    }

    fn remove_channel_unchecked(&mut self, name: &str) -> bool {
        if let Some(ids) = self.listening.remove(name) {
            self.listeners.notify(&ids, &ListenEvent::ChannelRemoved);
        }
        self.forget_last_channel(name);
        let Some(data) = self.channels.remove(name) else {
            return false;
        };
        data.mark_removed();
        self.total.records -= data.records();
        self.total.bytes -= data.bytes();
        self.tombstones -= data.tombstones().count();
        true
    }

    /// Start-up replay: applies a logged change as it was accepted (no checks, no log).
    pub fn apply_logged(&mut self, change: &LoggedChange<'_>) {
        match change {
            LoggedChange::Put {
                channel,
                key,
                value,
            } => self.store_unchecked(channel, *key, value),
            LoggedChange::Remove { channel, key } => {
                self.remove_unchecked(channel, *key);
            }
            LoggedChange::PutBatch { channel, records } => {
                for (key, value) in records.clone() {
                    self.store_unchecked(channel, key, value);
                }
            }
            LoggedChange::RemoveKeys { channel, keys } => {
                for key in keys.clone() {
                    self.remove_unchecked(channel, key);
                }
            }
            LoggedChange::RemoveChannel { channel } => {
                self.remove_channel_unchecked(channel);
            }
            LoggedChange::PutVersion {
                channel,
                key,
                version,
                value,
            } => self.store_version_unchecked(channel, *key, value, *version),
            LoggedChange::RemoveVersion {
                channel,
                key,
                version,
                stored_unix_s,
            } => {
                let tombstone = tombstones::Tombstone {
                    version: *version,
                    stored_unix_s: *stored_unix_s,
                };
                self.apply_remove_version(channel, *key, tombstone);
            }
        }
    }

    /// Adds a loaded channel at start-up (replacing any channel of that name).
    pub fn insert_channel(&mut self, name: &str, data: Channel) {
        let data = Arc::new(data);
        self.total.records += data.records();
        self.total.bytes += data.bytes();
        self.tombstones += data.tombstones().count();
        self.forget_last_channel(name);
        if let Some(old) = self.channels.insert(name.to_string(), data) {
            old.mark_removed();
            self.total.records -= old.records();
            self.total.bytes -= old.bytes();
            self.tombstones -= old.tombstones().count();
        }
    }

    /// Subscribes to a channel's changes. A missing channel is not created: the listener waits
    /// for its first write.
    pub fn subscribe(&mut self, channel: &str) -> Result<ListenerId, EngineError> {
        Engine::check_name(channel)?;
        let id = self.listeners.add();
        if let Some(ids) = self.listening.get_mut(channel) {
            ids.push(id);
        } else {
            self.listening.insert(channel.to_string(), vec![id]);
        }
        Ok(id)
    }

    pub fn unsubscribe(&mut self, channel: &str, id: ListenerId) {
        if let Some(ids) = self.listening.get_mut(channel) {
            ids.retain(|listener| *listener != id);
            if ids.is_empty() {
                self.listening.remove(channel);
            }
        }
        self.listeners.remove(id);
    }

    pub fn next_listen_event(&mut self, id: ListenerId) -> Option<ListenEvent> {
        self.listeners.next_event(id)
    }

    /// Listeners with new events since the last call.
    pub fn take_ready_listeners(&mut self) -> Vec<ListenerId> {
        self.listeners.take_ready()
    }

    pub fn listener_count(&self) -> usize {
        self.listeners.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(range: HashRange, size_limit_bytes: u64) -> Engine {
        let limits = EngineLimits {
            max_channels: usize::MAX,
            size_limit_bytes,
            max_value_bytes: 16,
        };
        Engine::new(
            range,
            limits,
            ListenerLimits {
                max_events: 100,
                max_bytes: 1 << 20,
                max_total_bytes: usize::MAX,
            },
        )
    }

    #[test]
    fn writes_are_checked_in_the_documented_order() {
        let mut engine = engine(node_core::protocol::dht::split_evenly(2)[0], 0);
        assert!(matches!(
            engine.put("bad name", 2, b"v"),
            Err(EngineError::BadChannelName(_))
        ));
        // Key 1's hash position is 0x8000…, in the upper half: not ours.
        assert!(matches!(
            engine.put("ch", 1, b"v"),
            Err(EngineError::WrongNode { .. })
        ));
        assert_eq!(engine.put("ch", 2, b""), Err(EngineError::EmptyValue));
        assert_eq!(
            engine.put("ch", 2, &[0; 17]),
            Err(EngineError::ValueTooBig { len: 17, max: 16 })
        );
        assert_eq!(engine.put("ch", 2, &[0; 16]), Ok(()));
        assert_eq!(engine.get("ch", 2).unwrap(), Some(vec![0u8; 16]));
        assert_eq!(engine.get("other", 2).unwrap(), None);
        assert_eq!(
            engine.channel_names().collect::<Vec<_>>(),
            vec!["ch"],
            "reads create no channel"
        );
    }

    #[test]
    fn size_limit_counts_overwrites_by_their_growth() {
        let mut engine = engine(HashRange::FULL, 30);
        engine.put("ch", 1, &[1; 10]).unwrap();
        engine.put("ch", 2, &[1; 4]).unwrap();
        assert_eq!(
            engine.size(),
            SizeInfo {
                records: 2,
                bytes: 30
            }
        );
        assert!(matches!(
            engine.put("ch", 3, &[1]),
            Err(EngineError::OutOfMemory { .. })
        ));
        // Shrinking key 1 from 10 bytes to 1 frees exactly the room a 1-byte record needs.
        engine.put("ch", 1, &[1; 1]).unwrap();
        engine.put("ch", 3, &[1]).unwrap();
        assert_eq!(engine.size().bytes, 30);
        assert!(engine.remove("ch", 3).unwrap());
        assert!(!engine.remove("ch", 3).unwrap());
        assert_eq!(
            engine.size(),
            SizeInfo {
                records: 2,
                bytes: 21
            }
        );
        assert!(engine.remove_channel("ch").unwrap());
        assert_eq!(
            engine.size(),
            SizeInfo::default(),
            "num_bytes returns to zero after clearing"
        );
    }

    #[test]
    fn update_applies_only_when_the_record_is_as_read() {
        let mut engine = engine(HashRange::FULL, 0);
        let write = UpdateAction::Write(b"hello");
        engine.update("ch", 1, Expected::Absent, write).unwrap();
        assert_eq!(
            engine.update("ch", 1, Expected::Absent, write),
            Err(EngineError::UpdateConflict)
        );
        let read = value_hash(b"hello");
        engine
            .update(
                "ch",
                1,
                Expected::Hash(read),
                UpdateAction::Write(b"hello world"),
            )
            .unwrap();
        assert_eq!(engine.get("ch", 1).unwrap(), Some(b"hello world".to_vec()));
        assert_eq!(
            engine.update("ch", 1, Expected::Hash(read), UpdateAction::Remove),
            Err(EngineError::UpdateConflict)
        );
        engine
            .update(
                "ch",
                1,
                Expected::Hash(value_hash(b"hello world")),
                UpdateAction::Remove,
            )
            .unwrap();
        assert_eq!(
            engine.update("ch", 1, Expected::Hash(read), write),
            Err(EngineError::UpdateConflict),
            "a removed record is a change"
        );
    }

    #[test]
    fn put_batch_is_all_or_nothing() {
        let mut engine = engine(node_core::protocol::dht::split_evenly(2)[0], 0);
        let good: Vec<(u64, &[u8])> = vec![(2, b"a"), (4, b"b")];
        let with_foreign_key: Vec<(u64, &[u8])> = vec![(6, b"c"), (1, b"d")];
        assert_eq!(engine.put_batch("ch", good.iter().copied()), Ok(2));
        assert!(matches!(
            engine.put_batch("ch", with_foreign_key.iter().copied()),
            Err(EngineError::WrongNode { .. })
        ));
        assert_eq!(
            engine.get("ch", 6).unwrap(),
            None,
            "nothing of a refused batch is stored"
        );
        assert_eq!(engine.size().records, 2);
    }

    #[test]
    fn listeners_see_every_change_in_order_and_the_channel_removal() {
        let mut engine = engine(HashRange::FULL, 0);
        let id = engine.subscribe("ch").unwrap();
        engine.put("ch", 5, b"value").unwrap();
        engine
            .put_batch("ch", [(6u64, &b"x"[..])].into_iter())
            .unwrap();
        engine.remove("ch", 5).unwrap();
        engine.remove_channel("ch").unwrap();
        let events: Vec<ListenEvent> =
            std::iter::from_fn(|| engine.next_listen_event(id)).collect();
        assert_eq!(
            events,
            vec![
                ListenEvent::Changed {
                    key: 5,
                    value: Box::from(&b"value"[..]),
                    version: 0
                },
                ListenEvent::Changed {
                    key: 6,
                    value: Box::from(&b"x"[..]),
                    version: 0
                },
                ListenEvent::Removed {
                    key: 5,
                    version: 0,
                    record: true
                },
                ListenEvent::ChannelRemoved,
            ]
        );
        assert!(!engine.take_ready_listeners().is_empty());
    }

    /// Issue #15, defect 8: a Listen on a channel never written made it appear in GetChannels
    /// (and in dumps) while the listener was open. Channels are created by their first write.
    #[test]
    fn channels_are_bounded_and_a_listen_creates_no_channel() {
        let limits = EngineLimits {
            max_channels: 2,
            size_limit_bytes: 0,
            max_value_bytes: 16,
        };
        let listener_limits = ListenerLimits {
            max_events: 10,
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 20,
        };
        let mut engine = Engine::new(HashRange::FULL, limits, listener_limits);
        engine.put("a", 1, b"v").unwrap();
        let made_up = engine.subscribe("made-up").unwrap();
        let other = engine.subscribe("other").unwrap();
        let names = |engine: &Engine| engine.channel_names().collect::<Vec<_>>().join(",");
        assert_eq!(names(&engine), "a", "listened-to names are no channels");
        assert_eq!(engine.channels().count(), 1);
        assert!(engine.channel("made-up").is_none());
        engine.put("b", 1, b"v").unwrap();
        assert_eq!(
            engine.put("c", 1, b"v"),
            Err(EngineError::TooManyChannels { limit: 2 })
        );
        assert_eq!(names(&engine), "a,b");
        engine.unsubscribe("made-up", made_up);
        assert!(!engine.remove_channel("other").unwrap(), "never existed");
        assert_eq!(
            engine.next_listen_event(other),
            Some(ListenEvent::ChannelRemoved)
        );
        engine.unsubscribe("other", other);
        assert!(engine.listening.is_empty(), "listeners' names went away");

        // A first write while listened to creates the channel and reaches the listener; the
        // channel stays when the listener leaves.
        engine.remove_channel("b").unwrap();
        let id = engine.subscribe("c").unwrap();
        engine.put("c", 1, b"v").unwrap();
        assert!(matches!(
            engine.next_listen_event(id),
            Some(ListenEvent::Changed { key: 1, .. })
        ));
        engine.unsubscribe("c", id);
        assert_eq!(names(&engine), "a,c", "a written channel stays");
    }

    #[test]
    fn a_key_repeated_in_a_batch_counts_once_against_the_size_limit() {
        let mut engine = engine(HashRange::FULL, 20);
        let batch: Vec<(u64, &[u8])> = vec![(1, b"aaaaaaaa"), (1, b"bbbbbbbb")];
        assert_eq!(engine.put_batch("ch", batch.iter().copied()), Ok(2));
        assert_eq!(
            engine.size(),
            SizeInfo {
                records: 1,
                bytes: 16
            }
        );
        assert_eq!(engine.get("ch", 1).unwrap(), Some(b"bbbbbbbb".to_vec()));
    }

    #[test]
    fn moved_records_never_replace_a_newer_value_and_listeners_see_what_is_stored() {
        let halves = node_core::protocol::dht::split_evenly(2);
        let mut engine = engine(halves[0], 0);
        let id = engine.subscribe("ch").unwrap();
        // Key 2 sits in the lower half; a newer value was written here before the move.
        engine.put("ch", 2, b"newer").unwrap();
        assert_eq!(
            engine.next_listen_event(id),
            Some(ListenEvent::Changed {
                key: 2,
                value: Box::from(&b"newer"[..]),
                version: 0
            })
        );
        let batch: Vec<(u64, &[u8])> = vec![(2, b"older"), (4, b"moved"), (4, b"again")];
        assert_eq!(
            engine.put_absent_batch("ch", batch.iter().copied()),
            Ok(AbsentBatchOutcome {
                stored: 1,
                present: 2
            })
        );
        assert_eq!(engine.get("ch", 2).unwrap(), Some(b"newer".to_vec()));
        assert_eq!(engine.get("ch", 4).unwrap(), Some(b"moved".to_vec()));
        assert_eq!(
            engine.next_listen_event(id),
            Some(ListenEvent::Changed {
                key: 4,
                value: Box::from(&b"moved"[..]),
                version: 0
            }),
            "a moved record reaches the listeners of its new node"
        );
        assert_eq!(engine.next_listen_event(id), None);
        // All or nothing: one key outside the range refuses the batch.
        let outside: Vec<(u64, &[u8])> = vec![(6, b"x"), (1, b"y")];
        assert!(matches!(
            engine.put_absent_batch("ch", outside.iter().copied()),
            Err(EngineError::WrongNode { key: 1, .. })
        ));
        assert_eq!(engine.get("ch", 6).unwrap(), None);
        assert_eq!(engine.size().records, 2);
    }

    #[test]
    fn the_redistribution_guard_refuses_growth_past_its_cap() {
        let mut engine = engine(HashRange::FULL, 0);
        engine.put("ch", 1, &[0; 8]).unwrap(); // 16 bytes
        engine.set_redistribution_cap(Some(30));
        let fits: Vec<(u64, &[u8])> = vec![(2, &[0; 6])]; // 14 bytes: 30 in all
        assert!(engine.put_absent_batch("ch", fits.iter().copied()).is_ok());
        let too_much: Vec<(u64, &[u8])> = vec![(3, &[0; 1])];
        let error = engine
            .put_absent_batch("ch", too_much.iter().copied())
            .unwrap_err();
        assert_eq!(
            error,
            EngineError::RedistributionGuard { cap: 30, bytes: 30 }
        );
        assert_eq!(error.status(), Status::OutOfMemory);
        // Present keys cost nothing and pass.
        assert!(engine.put_absent_batch("ch", fits.iter().copied()).is_ok());
        engine.set_redistribution_cap(None);
        assert!(engine
            .put_absent_batch("ch", too_much.iter().copied())
            .is_ok());
    }

    #[test]
    fn a_moved_record_is_deleted_only_if_it_is_still_the_one_sent() {
        let mut engine = engine(HashRange::FULL, 0);
        let id = engine.subscribe("ch").unwrap();
        engine.put("ch", 1, b"sent").unwrap();
        engine.put("ch", 2, b"sent").unwrap();
        engine.put("ch", 3, b"sent").unwrap();
        while engine.next_listen_event(id).is_some() {}
        let data = Arc::clone(engine.channel("ch").unwrap());
        let hash = value_hash(b"sent");
        engine.put("ch", 2, b"changed since").unwrap();
        engine.remove("ch", 3).unwrap();
        while engine.next_listen_event(id).is_some() {}
        assert!(engine.remove_moved("ch", &data, 1, hash));
        assert!(
            !engine.remove_moved("ch", &data, 2, hash),
            "changed since it was sent"
        );
        assert!(
            !engine.remove_moved("ch", &data, 3, hash),
            "removed since it was sent"
        );
        assert_eq!(
            engine.next_listen_event(id),
            None,
            "a move is not a removal"
        );
        assert_eq!(
            engine.size(),
            SizeInfo {
                records: 1,
                bytes: 8 + 13
            }
        );
        // A channel removed and created again is another channel.
        engine.remove_channel("ch").unwrap();
        assert!(data.is_removed());
        engine.put("ch", 2, b"sent").unwrap();
        assert!(!engine.remove_moved("ch", &data, 2, hash));
        assert!(engine.get("ch", 2).unwrap().is_some());
    }

    #[test]
    fn records_held_outside_the_range_stay_readable_and_removable() {
        let halves = node_core::protocol::dht::split_evenly(2);
        let mut engine = engine(HashRange::FULL, 0);
        engine.put("ch", 1, b"v").unwrap(); // key 1: upper half
        engine.set_range(halves[0]);
        assert!(matches!(
            engine.put("ch", 1, b"w"),
            Err(EngineError::WrongNode { .. })
        ));
        assert_eq!(engine.get("ch", 1).unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            engine.read("ch", 1, <[u8]>::len),
            Ok(Some(1)),
            "held here: found"
        );
        assert_eq!(
            engine.read("ch", 2, <[u8]>::len),
            Ok(None),
            "absent and ours"
        );
        assert!(matches!(
            engine.read("other", 3, <[u8]>::len),
            Err(EngineError::WrongNode { .. })
        ));
        assert_eq!(engine.remove("ch", 1), Ok(true), "held here: removed");
        assert!(
            matches!(engine.remove("ch", 1), Err(EngineError::WrongNode { .. })),
            "absent and not ours"
        );
        assert_eq!(
            engine.remove("ch", 2),
            Ok(false),
            "absent and ours: NotFound"
        );
        engine.set_range(HashRange::new(5, 1));
        assert_eq!(
            engine.range(),
            HashRange::EMPTY,
            "empty ranges are normalised"
        );
    }

    /// The last channel (LastChannel) is a cache: what requests see is what they saw without
    /// it, through removals, re-creations, loads and bad names.
    #[test]
    fn the_last_channel_cache_changes_nothing_a_request_sees() {
        let mut engine = engine(HashRange::FULL, 0);
        engine.put("ch", 1, b"old").unwrap();
        assert_eq!(
            engine.read("ch", 1, <[u8]>::to_vec),
            Ok(Some(b"old".to_vec()))
        );
        // Removed while cached: gone for reads, and the cache keeps no reference to it.
        let removed = Arc::clone(engine.channel("ch").unwrap());
        assert_eq!(engine.remove_channel("ch"), Ok(true));
        assert_eq!(
            Arc::strong_count(&removed),
            1,
            "the cache lets a removed channel go"
        );
        assert_eq!(engine.read("ch", 1, <[u8]>::len), Ok(None));
        // Re-created: the new channel, not the removed one.
        engine.put("ch", 2, b"new").unwrap();
        assert_eq!(engine.read("ch", 1, <[u8]>::len), Ok(None));
        assert_eq!(
            engine.read("ch", 2, <[u8]>::to_vec),
            Ok(Some(b"new".to_vec()))
        );
        assert_eq!(removed.records(), 1, "writes went to the new channel");
        // Replaced at load while cached.
        let loaded = Channel::new();
        loaded.put(3, b"loaded", 0);
        engine.insert_channel("ch", loaded);
        assert_eq!(engine.read("ch", 2, <[u8]>::len), Ok(None));
        assert_eq!(engine.read("ch", 3, <[u8]>::len), Ok(Some(6)));
        // Alternating channels, and names that differ from the cached one only slightly.
        engine.put("other", 4, b"o").unwrap();
        for _ in 0..2 {
            assert_eq!(engine.read("ch", 3, <[u8]>::len), Ok(Some(6)));
            assert_eq!(engine.read("other", 4, <[u8]>::len), Ok(Some(1)));
            assert_eq!(engine.read("othe", 4, <[u8]>::len), Ok(None));
            assert_eq!(engine.read("other2", 4, <[u8]>::len), Ok(None));
        }
        // A bad name is refused whatever was cached before it.
        for bad in ["", "ch/", "ch ", "ch\u{e9}"] {
            assert!(
                matches!(
                    engine.read(bad, 3, <[u8]>::len),
                    Err(EngineError::BadChannelName(_))
                ),
                "{bad:?}"
            );
            assert!(matches!(
                engine.put(bad, 3, b"v"),
                Err(EngineError::BadChannelName(_))
            ));
        }
        // A replay may store under a name no request could use: it is never served from the
        // cache to a request.
        engine.store_unchecked("bad name", 5, b"replayed");
        assert!(matches!(
            engine.read("bad name", 5, <[u8]>::len),
            Err(EngineError::BadChannelName(_))
        ));
    }

    /// The channel limit counts channels, whichever the last request named.
    #[test]
    fn the_channel_limit_holds_with_the_last_channel_cached() {
        let limits = EngineLimits {
            max_channels: 1,
            ..engine(HashRange::FULL, 0).limits()
        };
        let mut engine = engine(HashRange::FULL, 0);
        engine.limits = limits;
        engine.put("a", 1, b"v").unwrap();
        engine.put("a", 2, b"v").unwrap();
        assert_eq!(
            engine.put("b", 1, b"v"),
            Err(EngineError::TooManyChannels { limit: 1 })
        );
        assert_eq!(engine.remove_channel("a"), Ok(true));
        engine.put("b", 1, b"v").unwrap();
        assert_eq!(
            engine.put("a", 1, b"v"),
            Err(EngineError::TooManyChannels { limit: 1 })
        );
    }
}
