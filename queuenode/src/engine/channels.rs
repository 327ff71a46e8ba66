//! Channels and their subscribers (`reference/queue.md` §5): which storages each request reads
//! and writes, on top of the ring registry ([`Queues`]).
//!
//! A channel is in one of two states:
//! - **plain**: one storage named like the channel (`ch`), created by the first push;
//! - **subscribed**: one storage per subscriber, `subscriber@ch` (`@ch` for the default,
//!   empty-named subscriber), and no plain storage.
//!
//! Transitions ([`Channels::subscribe`]): the first subscriber of a plain channel takes its
//! storage over (the ring is renamed, so it inherits every record queued so far); every further
//! new name gets a new, empty ring and so a copy of every record pushed from then on; a name
//! already there is the same storage (consumers under one name share its records). A push writes
//! its value to every storage of the channel. Subscriptions last until the channel is removed;
//! they survive restarts (the ring files carry the names), empty or not.
//!
//! Reading without a subscriber name (Pop) reads the plain storage, or once the channel is
//! subscribed, the default subscriber's (`@ch`): so the first Consume without a name takes the
//! queue over and Pops keep working on it. A subscribed channel without a default subscriber
//! refuses such reads ([`PopSource::Subscribed`]): which subscriber's copy should they take?
//!
//! All-or-nothing writes: [`Channels::prepare`] checks every target storage (value limits,
//! memory limit for rings to create, free space) before [`Channels::push_prepared`] writes to
//! any, so a refused push changes nothing.

use crate::engine::names::{split_storage_name, storage_name};
use crate::engine::queues::{QueueError, Queues};
use crate::engine::ring::{max_value_bytes, Ring, RingError};
use std::collections::{BTreeMap, BTreeSet};

/// The storages of one channel.
#[derive(Debug, Default, Clone)]
struct ChannelEntry {
    /// Whether the plain storage (named like the channel) exists.
    plain: bool,
    /// Subscriber names ("" = the default subscriber).
    subscribers: BTreeSet<String>,
}

/// Where a read without a subscriber name (Pop) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopSource<'a> {
    /// This storage (the channel's own name, borrowed, in the common case).
    Storage(std::borrow::Cow<'a, str>),
    /// The channel does not exist: nothing to read.
    Missing,
    /// The channel has these subscribers, none of them the default one.
    Subscribed(Vec<String>),
}

/// What [`Channels::subscribe`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// The name was subscribed already.
    Existing,
    /// The first subscriber: it took over the channel's queued records.
    TookOver,
    /// A new, empty storage.
    New,
}

/// The storages a push writes to, checked: see [`Channels::prepare`].
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Storage names, each once, with the capacity of those still to be created.
    storages: Vec<(String, Option<u64>)>,
}

impl Targets {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.storages.iter().map(|(name, _)| name.as_str())
    }
}

pub struct Channels {
    queues: Queues,
    index: BTreeMap<String, ChannelEntry>,
}

impl Channels {
    /// The channels of an opened registry.
    pub fn new(queues: Queues) -> Channels {
        let mut index: BTreeMap<String, ChannelEntry> = BTreeMap::new();
        for name in queues.names() {
            note_storage(&mut index, name);
        }
        for (channel, entry) in &index {
            if entry.plain && !entry.subscribers.is_empty() {
                tracing::warn!(
                    channel,
                    "channel has both a plain storage and subscribers; pushes go to all of them, \
                     Pop reads the plain one"
                );
            }
        }
        Channels { queues, index }
    }

    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    pub fn ring(&self, storage: &str) -> Option<&Ring> {
        self.queues.get(storage)
    }

    pub fn ring_mut(&mut self, storage: &str) -> Option<&mut Ring> {
        self.queues.get_mut(storage)
    }

    /// The ring of `channel` when the channel is plain (no subscribers): then it is the
    /// channel's only storage, named like the channel, and a push to that one channel needs no
    /// list of targets ([`crate::engine::Engine::push`]'s path without allocations).
    pub fn sole_plain_ring_mut(&mut self, channel: &str) -> Option<&mut Ring> {
        if !self.queues.has_subscriber_rings() {
            // No channel has subscribers: a ring named like the channel is its plain storage,
            // and its only one. One lookup instead of two (issue 22).
            return self.queues.get_mut(channel);
        }
        let entry = self.index.get(channel)?;
        if !entry.plain || !entry.subscribers.is_empty() {
            return None;
        }
        let ring = self.queues.get_mut(channel);
        // The index notes a plain storage only once its ring is in the registry.
        assert!(
            ring.is_some(),
            "channel {channel:?} indexed without its ring"
        );
        ring
    }

    /// Channel names, sorted.
    pub fn channel_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn contains(&self, channel: &str) -> bool {
        self.index.contains_key(channel)
    }

    /// The storage names of `channel`: the plain one first, then the subscribers' in name order.
    pub fn storages(&self, channel: &str) -> Vec<String> {
        let Some(entry) = self.index.get(channel) else {
            return Vec::new();
        };
        let plain = entry.plain.then(|| channel.to_string());
        plain
            .into_iter()
            .chain(
                entry
                    .subscribers
                    .iter()
                    .map(|subscriber| storage_name(Some(subscriber), channel)),
            )
            .collect()
    }

    /// The subscriber names of `channel`, sorted ("" is the default subscriber).
    pub fn subscribers(&self, channel: &str) -> Vec<String> {
        self.index
            .get(channel)
            .map(|entry| entry.subscribers.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks a push of values of `lens` bytes (in this order) to `channels`, writing nothing:
    /// every value must be within every target ring's limits, the rings to create (a plain
    /// storage for a missing channel, sized by `capacity_for(channel)`) must fit the memory
    /// limit together, and the values must fit into every existing ring. Returns the targets
    /// for [`Channels::push_prepared`].
    ///
    /// With `partial`, running out of space is not an error: the values that fit are checked
    /// for value limits only, and fullness is left to [`Channels::push_prepared`], which stops at
    /// the first value that does not fit everywhere (Produce).
    pub fn prepare(
        &self,
        channels: &[&str],
        lens: &[u64],
        capacity_for: &dyn Fn(&str) -> u64,
        partial: bool,
    ) -> Result<Targets, QueueError> {
        let mut targets = Targets::default();
        for &channel in channels {
            let storages = self.storages(channel);
            // A channel named twice is written once (a channel's storages are distinct).
            let new = |name: &str| !targets.storages.iter().any(|(other, _)| other == name);
            if storages.is_empty() {
                if new(channel) {
                    let capacity = Some(capacity_for(channel));
                    targets.storages.push((channel.to_string(), capacity));
                }
                continue;
            }
            if channels.len() == 1 || storages.iter().all(|name| new(name)) {
                targets
                    .storages
                    .extend(storages.into_iter().map(|name| (name, None)));
            }
        }
        // Value limits first (they do not depend on what the rings hold).
        for (name, create) in &targets.storages {
            let max = match create {
                Some(capacity) => max_value_bytes(*capacity),
                None => self.ring(name).map_or(0, Ring::max_value_bytes),
            };
            for &len in lens {
                if len == 0 {
                    return Err(RingError::EmptyValue.into());
                }
                if len > max {
                    return Err(RingError::ValueTooBig { len, max }.into());
                }
            }
        }
        let to_create: Vec<(String, u64)> = targets
            .storages
            .iter()
            .filter_map(|(name, create)| create.map(|capacity| (name.clone(), capacity)))
            .collect();
        self.queues.check_create_all(&to_create)?;
        if !partial {
            for (name, create) in &targets.storages {
                if create.is_none() {
                    if let Some(ring) = self.ring(name) {
                        ring.check_push_all(lens.iter().copied())?;
                    }
                }
            }
        }
        Ok(targets)
    }

    /// Creates the target rings that do not exist yet, then pushes each value to every target,
    /// in order, stopping at the first value that does not fit into every ring (checked before
    /// any of its copies is written). Returns the number of values stored.
    pub fn push_prepared(
        &mut self,
        targets: &Targets,
        values: &mut dyn Iterator<Item = &[u8]>,
    ) -> Result<u64, QueueError> {
        for (name, create) in &targets.storages {
            if let Some(capacity) = create {
                if !self.queues.contains(name) {
                    self.queues.get_or_create(name, *capacity)?;
                    self.note_storage(name);
                }
            }
        }
        let mut stored = 0;
        if let [(name, _)] = targets.storages.as_slice() {
            // One storage: its push checks and refuses without writing.
            let Some(ring) = self.queues.get_mut(name) else {
                return Ok(0);
            };
            for value in values {
                match ring.push(value) {
                    Ok(_) => stored += 1,
                    Err(RingError::Full { .. }) => break,
                    Err(other) => return Err(other.into()),
                }
            }
            return Ok(stored);
        }
        for value in values {
            for (name, _) in &targets.storages {
                if let Some(ring) = self.queues.get(name) {
                    if let Err(error) = ring.check_push(value.len() as u64) {
                        return match error {
                            RingError::Full { .. } => Ok(stored),
                            other => Err(other.into()),
                        };
                    }
                }
            }
            for (name, _) in &targets.storages {
                if let Some(ring) = self.queues.get_mut(name) {
                    ring.push(value)?;
                }
            }
            stored += 1;
        }
        Ok(stored)
    }

    /// Adds a storage that now exists in the registry to the index.
    fn note_storage(&mut self, name: &str) {
        note_storage(&mut self.index, name);
    }

    /// Where a read without a subscriber name goes (see the module documentation).
    pub fn pop_source<'a>(&self, channel: &'a str) -> PopSource<'a> {
        let Some(entry) = self.index.get(channel) else {
            return PopSource::Missing;
        };
        if entry.plain {
            PopSource::Storage(std::borrow::Cow::Borrowed(channel))
        } else if entry.subscribers.contains("") {
            PopSource::Storage(std::borrow::Cow::Owned(storage_name(Some(""), channel)))
        } else {
            PopSource::Subscribed(entry.subscribers.iter().cloned().collect())
        }
    }

    /// Subscribes `subscriber` to `channel` (creating the channel if needed; a new ring gets
    /// `capacity_bytes`). Returns the subscriber's storage name and what was done.
    pub fn subscribe(
        &mut self,
        channel: &str,
        subscriber: &str,
        capacity_bytes: u64,
    ) -> Result<(String, Subscribed), QueueError> {
        let name = storage_name(Some(subscriber), channel);
        let (known, takes_over) = self.index.get(channel).map_or((false, false), |entry| {
            (
                entry.subscribers.contains(subscriber),
                entry.plain && entry.subscribers.is_empty(),
            )
        });
        if known {
            return Ok((name, Subscribed::Existing));
        }
        let outcome = if takes_over {
            self.queues.rename(channel, &name)?;
            if let Some(entry) = self.index.get_mut(channel) {
                entry.plain = false;
            }
            Subscribed::TookOver
        } else {
            self.queues.get_or_create(&name, capacity_bytes)?;
            Subscribed::New
        };
        self.note_storage(&name);
        Ok((name, outcome))
    }

    /// Removes `channel` with every storage; returns the storage names removed.
    pub fn remove_channel(&mut self, channel: &str) -> Result<Vec<String>, QueueError> {
        let storages = self.storages(channel);
        for (done, name) in storages.iter().enumerate() {
            if let Err(error) = self.queues.remove(name) {
                // Keep the index true to what is left.
                let left: Vec<&String> = storages[done..]
                    .iter()
                    .filter(|name| self.queues.contains(name))
                    .collect();
                self.index.remove(channel);
                for name in left {
                    self.note_storage(name);
                }
                return Err(error);
            }
        }
        self.index.remove(channel);
        Ok(storages)
    }

    /// Commits every ring's header and forces its changes to disk.
    pub fn sync_all(&mut self) -> Result<(), QueueError> {
        self.queues.sync_all()
    }

    /// Commits the headers of the rings changed since the last call
    /// ([`Queues::commit_headers`]).
    pub fn commit_headers(&mut self) {
        self.queues.commit_headers();
    }

    /// Imports records into storages named as in the reference node (`ch`, `sub@ch`, `@ch`),
    /// all or nothing: first checks that each storage agrees with its channel's state (a plain
    /// storage only for a channel without subscribers, and the reverse), that every value fits
    /// its ring's limits and all of a storage's records fit into its ring after what it holds,
    /// and that new rings fit the memory limit; then creates the rings and pushes. Returns the
    /// number of records imported.
    pub fn import(
        &mut self,
        storages: &BTreeMap<String, Vec<Vec<u8>>>,
        capacity_for: &dyn Fn(&str) -> u64,
    ) -> Result<u64, ImportError> {
        let mut plan: BTreeMap<&str, ChannelEntry> = BTreeMap::new();
        for name in storages.keys() {
            let (subscriber, channel) = split_storage_name(name);
            let entry = plan
                .entry(channel)
                .or_insert_with(|| self.index.get(channel).cloned().unwrap_or_default());
            match subscriber {
                Some(subscriber) => {
                    entry.subscribers.insert(subscriber.to_string());
                }
                None => entry.plain = true,
            }
            if entry.plain && !entry.subscribers.is_empty() {
                return Err(ImportError::Conflict {
                    channel: channel.to_string(),
                });
            }
        }
        let mut to_create = Vec::new();
        for (name, values) in storages {
            let (_, channel) = split_storage_name(name);
            let lens = values.iter().map(|value| value.len() as u64);
            match self.queues.get(name) {
                Some(ring) => ring.check_push_all(lens),
                None => {
                    let capacity = capacity_for(channel);
                    to_create.push((name.clone(), capacity));
                    check_fits_new(capacity, lens)
                }
            }
            .map_err(|source| ImportError::Storage {
                storage: name.clone(),
                source: source.into(),
            })?;
        }
        self.queues
            .check_create_all(&to_create)
            .map_err(|source| ImportError::Storage {
                storage: to_create
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                source,
            })?;
        let mut imported = 0;
        for (name, values) in storages {
            let (_, channel) = split_storage_name(name);
            let capacity = capacity_for(channel);
            let ring = self
                .queues
                .get_or_create(name, capacity)
                .map_err(|source| ImportError::Storage {
                    storage: name.clone(),
                    source,
                })?;
            for value in values {
                ring.push(value).map_err(|source| ImportError::Storage {
                    storage: name.clone(),
                    source: source.into(),
                })?;
                imported += 1;
            }
            self.note_storage(name);
        }
        Ok(imported)
    }
}

/// Adds storage `name` to `index` (its channel's plain storage or one of its subscribers).
fn note_storage(index: &mut BTreeMap<String, ChannelEntry>, name: &str) {
    let (subscriber, channel) = split_storage_name(name);
    let entry = index.entry(channel.to_string()).or_default();
    match subscriber {
        Some(subscriber) => {
            entry.subscribers.insert(subscriber.to_string());
        }
        None => entry.plain = true,
    }
}

/// Whether values of `lens` fit, in order, into a new empty ring of `capacity_bytes`.
fn check_fits_new(capacity_bytes: u64, lens: impl Iterator<Item = u64>) -> Result<(), RingError> {
    let max = max_value_bytes(capacity_bytes);
    let mut used = 0u64;
    for len in lens {
        if len == 0 {
            return Err(RingError::EmptyValue);
        }
        if len > max {
            return Err(RingError::ValueTooBig { len, max });
        }
        // A new ring fills from offset 0 without wrapping.
        let need = crate::engine::ring::record_bytes(len);
        if used + need > capacity_bytes {
            return Err(RingError::Full {
                need_bytes: need,
                free_bytes: capacity_bytes - used,
                capacity_bytes,
            });
        }
        used += need;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "channel {channel:?} would have both a plain storage and subscribers; move the files of \
         one of them out of the data directory"
    )]
    Conflict { channel: String },
    #[error("storage {storage}: {source}")]
    Storage {
        storage: String,
        #[source]
        source: QueueError,
    },
}
