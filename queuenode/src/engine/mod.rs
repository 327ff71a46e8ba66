//! The queue storage engine: one fixed-capacity ring per storage (a channel without subscribers,
//! or `subscriber@channel`), each persisted as a memory-mapped file in the data directory, the
//! channels and subscribers on top of them, and the consumers reading them. It knows nothing of
//! sockets or frames: request handlers translate protocol to [`Engine`] calls and errors to
//! statuses ([`QueueError::status`]).
//!
//! [`Engine`] keeps every rule and counter of the data: the push rules (all checks before any
//! write, [`Engine::push`]), Pop's ([`Engine::pop_with`]), subscriptions
//! ([`Engine::subscribe`]), the consumers' batches, acks and redelivery ([`consumers`]), channel
//! removal and sizes. Its parts:
//!
//! - [`ring`]: the ring file and its cursors (push, take/ack/give-back, pop, recovery on open).
//! - [`queues`]: the registry: create on first use, remove, list, sizes, node-wide capacity limit.
//! - [`names`]: storage-name rules and the `subscriber@channel` split.
//! - [`channels`]: channels and subscribers: which storages a push writes and a read takes from,
//!   all-or-nothing checks before multi-storage writes, reference-file import.
//! - [`consumers`]: the running consumers and the rules they follow.
//! - [`rq`]: the reference node's `.rq` dump format; [`reference`]: finding and reading the
//!   reference node's files (dumps and disk overflow) in a data directory.

pub mod channels;
pub mod consumers;
pub mod names;
pub mod queues;
pub mod reference;
pub mod ring;
pub mod rq;

pub use channels::{Channels, PopSource, Subscribed, Targets};
pub use consumers::{Consumed, ConsumerId, ConsumerKey, MAX_UNACKED_BATCHES};
pub use queues::{QueueError, Queues, QueuesConfig};
pub use ring::{Ring, RingError, RingSize, Span, SyncMode};

use consumers::Consumers;
use node_core::protocol::queue::QueueSize;
use queues::OpenReport;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The capacity of new rings: the longest prefix of a channel's name found in `by_prefix`
/// decides; channels matching none get `default_bytes` (`[queue]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingSizes {
    pub default_bytes: u64,
    pub by_prefix: BTreeMap<String, u64>,
}

impl RingSizes {
    /// The ring capacity for a new storage of `channel`.
    pub fn for_channel(&self, channel: &str) -> u64 {
        ring_size_for(self.default_bytes, &self.by_prefix, channel)
    }
}

/// The ring capacity for a new storage of `channel`: the longest prefix of `by_prefix` that
/// the name starts with decides, else `default_bytes`.
pub fn ring_size_for(default_bytes: u64, by_prefix: &BTreeMap<String, u64>, channel: &str) -> u64 {
    by_prefix
        .iter()
        .filter(|(prefix, _)| channel.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(default_bytes, |(_, size)| *size)
}

/// What the engine is opened with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Σ capacity of all rings; 0 = no limit.
    pub memory_limit_bytes: u64,
    pub sync: SyncMode,
    pub sizes: RingSizes,
    /// No value above this is taken: a consumer must be able to receive it alone in one item.
    pub max_value_bytes: u64,
}

/// What start-up found.
#[derive(Debug, Default)]
pub struct StartReport {
    pub rings: OpenReport,
    /// Records imported from reference files, and where the files went.
    pub imported_records: u64,
    pub imported_files: Vec<PathBuf>,
    pub imported_to: Option<PathBuf>,
}

/// Records counted since start (`/metrics`, stats.log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Record copies written (a push to a channel with 3 subscribers counts 3).
    pub pushed_records: u64,
    /// Records taken for good: popped, or acknowledged by a consumer.
    pub removed_records: u64,
    /// Records given back to their queue by consumers that left without acknowledging them.
    pub redelivered_records: u64,
}

/// The queue node's data and its rules. `W` is what resumes a waiting consumer (the server's
/// stream handle): the engine keeps it opaque and hands it back ([`Engine::take_woken`]).
pub struct Engine<W> {
    channels: Channels,
    consumers: Consumers<W>,
    sizes: RingSizes,
    max_value_bytes: u64,
    counters: Counters,
    /// Wakers of the consumers to resume, collected by the calls that made them ready.
    woken: Vec<W>,
}

impl<W: Copy> Engine<W> {
    /// Opens the rings in the data directory, then imports the reference node's files found
    /// there (`.rq` dumps, disk overflow; see [`reference`]), all or nothing, and moves them to
    /// `imported/`.
    pub fn open(config: EngineConfig) -> Result<(Engine<W>, StartReport), String> {
        let data_dir = config.data_dir.clone();
        let (queues, rings) = Queues::open(QueuesConfig {
            data_dir: data_dir.clone(),
            memory_limit_bytes: config.memory_limit_bytes,
            sync: config.sync,
        })
        .map_err(|err| format!("cannot open the queues in {}: {err}", data_dir.display()))?;
        let mut engine = Engine::new(queues, config.sizes, config.max_value_bytes);
        let mut report = StartReport {
            rings,
            ..StartReport::default()
        };
        engine
            .import_reference(&data_dir, &mut report)
            .map_err(|err| format!("{err} (in {})", data_dir.display()))?;
        Ok((engine, report))
    }

    pub fn new(queues: Queues, sizes: RingSizes, max_value_bytes: u64) -> Engine<W> {
        Engine {
            channels: Channels::new(queues),
            consumers: Consumers::default(),
            sizes,
            max_value_bytes,
            counters: Counters::default(),
            woken: Vec::new(),
        }
    }

    /// Imports the reference files of `data_dir`, if any (see [`Engine::open`]).
    fn import_reference(
        &mut self,
        data_dir: &Path,
        report: &mut StartReport,
    ) -> Result<(), String> {
        let found = reference::scan(data_dir)
            .map_err(|err| format!("cannot read the reference queue files: {err}"))?;
        if found.is_empty() {
            return Ok(());
        }
        let sizes = self.sizes.clone();
        let capacity_for = |channel: &str| sizes.for_channel(channel);
        report.imported_records = self
            .channels
            .import(&found.storages, &capacity_for)
            .map_err(|err| format!("cannot import the reference queue files: {err}"))?;
        self.channels
            .sync_all()
            .map_err(|err| format!("cannot sync the imported records: {err}"))?;
        report.imported_to = Some(
            reference::move_imported(data_dir, &found.files)
                .map_err(|err| format!("imported, but cannot move the files aside: {err}"))?,
        );
        report.imported_files = found.files;
        Ok(())
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The wakers of the consumers made ready since the last call (by a push, an ack, a
    /// consumer giving its records back, a channel removal).
    pub fn take_woken(&mut self) -> std::vec::Drain<'_, W> {
        self.woken.drain(..)
    }

    /// Pushes `values` (in order) to every storage of every channel of `channels`, creating
    /// missing channels. Without `partial`, all or nothing: every check passes before anything
    /// is written (Push, PushMulti). With `partial`, value limits and the memory limit are
    /// checked for all values first, then values are stored in order until one does not fit
    /// into every ring (Produce). Returns the number of values stored; the consumers waiting on
    /// the storages written are woken. The values hold across a crash of the process once
    /// [`Engine::commit_headers`] returned.
    pub fn push(
        &mut self,
        channels: &[&str],
        values: &[&[u8]],
        partial: bool,
    ) -> Result<u64, QueueError> {
        if values.is_empty() {
            // An empty Produce batch stores nothing, and creates no channel either.
            return Ok(0);
        }
        // One value (Push, PushMulti) needs no allocation for its length.
        let one;
        let many: Vec<u64>;
        let lens: &[u64] = match values {
            [value] => {
                one = [value.len() as u64];
                &one
            }
            _ => {
                many = values.iter().map(|value| value.len() as u64).collect();
                &many
            }
        };
        if let Some(&len) = lens.iter().find(|&&len| len > self.max_value_bytes) {
            let max = self.max_value_bytes;
            return Err(RingError::ValueTooBig { len, max }.into());
        }
        if let ([channel], [value], false) = (channels, values, partial) {
            if let Some(ring) = self.channels.sole_plain_ring_mut(channel) {
                // One value to one existing plain channel (Push): the ring is the only target,
                // and its push checks (empty, too big, full) in the order `prepare` would and
                // refuses without writing.
                ring.push(value)?;
                self.counters.pushed_records += 1;
                self.consumers.wake_storage(channel, &mut self.woken);
                return Ok(1);
            }
        }
        let sizes = &self.sizes;
        let capacity_for = |channel: &str| sizes.for_channel(channel);
        let targets = self
            .channels
            .prepare(channels, lens, &capacity_for, partial)?;
        let mut iter = values.iter().copied();
        let stored = self.channels.push_prepared(&targets, &mut iter)?;
        assert!(
            stored <= values.len() as u64,
            "stored more values than given"
        );
        if stored > 0 {
            for name in targets.names() {
                self.counters.pushed_records += stored;
                self.consumers.wake_storage(name, &mut self.woken);
            }
        }
        Ok(stored)
    }

    /// Pop: takes the oldest record of `channel` for good and runs `f` on its value (`None`:
    /// the channel is empty or missing; a missing channel is not created). The value is
    /// acknowledged before `f` sees it, so a value answered is gone from the ring.
    ///
    /// On a subscribed channel Pop reads the default subscriber's storage (`@channel`), the
    /// one a consumer without a subscriber name reads; a channel whose subscribers all have
    /// names refuses Pop ([`QueueError::NoDefaultSubscriber`]: whose copy should it take?).
    pub fn pop_with<R>(
        &mut self,
        channel: &str,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, QueueError> {
        let storage;
        // A ring named like the channel is its plain storage (a subscriber's storage name has
        // an `@`), which Pop reads first: found in one lookup, the index is not asked.
        let ring = match self.channels.ring_mut(channel) {
            Some(ring) => ring,
            None => {
                storage = match self.channels.pop_source(channel) {
                    PopSource::Storage(storage) => storage,
                    PopSource::Missing => return Ok(None),
                    PopSource::Subscribed(subscribers) => {
                        return Err(QueueError::NoDefaultSubscriber {
                            channel: channel.to_string(),
                            subscribers: subscribers.join(", "),
                        })
                    }
                };
                match self.channels.ring_mut(&storage) {
                    Some(ring) => ring,
                    None => return Ok(None),
                }
            }
        };
        // Answered from the ring's map: no copy, no allocation per Pop.
        let answer = ring.pop_with(f)?;
        if answer.is_some() {
            self.counters.removed_records += 1;
        }
        Ok(answer)
    }

    /// Subscribes `subscriber` to `channel` (creating the channel, with a ring sized for it, if
    /// needed): see [`Channels::subscribe`]. Returns the subscriber's storage name and what was
    /// done.
    pub fn subscribe(
        &mut self,
        channel: &str,
        subscriber: &str,
    ) -> Result<(String, Subscribed), QueueError> {
        let capacity = self.sizes.for_channel(channel);
        self.channels.subscribe(channel, subscriber, capacity)
    }

    /// Removes `channel` with every storage, ending their consumers (their unacknowledged
    /// records go with the channel). Returns the storage names removed (none: it did not exist).
    pub fn remove_channel(&mut self, channel: &str) -> Result<Vec<String>, QueueError> {
        for storage in self.channels.storages(channel) {
            self.consumers.end_storage(&storage, &mut self.woken);
        }
        self.channels.remove_channel(channel)
    }

    /// Σ over the storages of `channel` (zeros for a missing channel).
    pub fn channel_size(&self, channel: &str) -> QueueSize {
        let mut total = QueueSize::default();
        for name in self.channels.storages(channel) {
            if let Some(ring) = self.channels.ring(&name) {
                total.add(&to_queue_size(ring.size()));
            }
        }
        total
    }

    /// Σ over every storage of the node.
    pub fn total_size(&self) -> QueueSize {
        let mut total = QueueSize::default();
        for name in self.channels.queues().names() {
            if let Some(size) = self.channels.queues().size(name) {
                total.add(&to_queue_size(size));
            }
        }
        total
    }

    /// Commits every ring's header and forces its changes to disk.
    pub fn sync_all(&mut self) -> Result<(), QueueError> {
        self.channels.sync_all()
    }

    /// Makes every push, Pop and acknowledgement so far hold across a crash of the process:
    /// commits the headers of the rings they changed (they are written once per run of
    /// changes, not per change: [`Ring::commit_header`]). The node calls it before any reply
    /// leaves, so whatever a reply says happened has happened in the ring files.
    pub fn commit_headers(&mut self) {
        self.channels.commit_headers();
    }
}

fn to_queue_size(size: RingSize) -> QueueSize {
    QueueSize {
        records: size.records,
        value_bytes: size.value_bytes,
        used_bytes: size.used_bytes,
        capacity_bytes: size.capacity_bytes,
    }
}
