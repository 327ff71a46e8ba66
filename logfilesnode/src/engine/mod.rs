//! The logfiles engine: channels, the bucket files open for writing, group commit and crash
//! recovery, on top of [`crate::storage`]. It knows nothing of sockets; the request handlers
//! translate requests into calls here.
//!
//! - [`channels`]: the channels of the data directory and their size on disk.
//! - [`writers`]: the bounded set of open bucket writers (LRU).
//! - [`journal`]: which buckets were open, to cut their torn tails after an unclean stop.
//! - [`unmap`]: unmapping the maps of big reads off the event loop.
//! - [`tickets`]: which records a write appended, and what a failed write-out did to them.
//!
//! The fsync thread and the epochs of group commit are node-core's
//! ([`node_core::server::durability`]), shared with the dht's change log.
//!
//! A failed write never leaves its records behind to be written later: a Put whose append fails
//! keeps nothing, a PutBatch that fails part-way takes back the records it still has buffered,
//! and under `fsync = "always"` (where no buffered record is acknowledged yet) a failed write-out
//! drops the buffer and records which records went ([`Discard`]), so that each waiting write is
//! answered by what became of its own records ([`WriteOutcome`]). Nor in its bucket's time
//! index: a writer indexes a record only once it is written to the file.
//!
//! Truncation rule: bucket files are memory-mapped by reads, and truncating a mapped file makes
//! reading the cut pages fault. The engine truncates only (a) at start, before serving (journal
//! recovery), and (b) when a writer opens a bucket with a torn tail — which it refuses while a
//! read has that file mapped ([`Engine::is_mapped`]).

pub mod channels;
pub mod disk_space;
pub mod journal;
pub mod tickets;
pub mod unmap;
pub mod writers;

use crate::storage::{
    recover_tail, BucketId, BucketWriter, BufferMark, IndexBuilder, StorageError, WriterOptions,
};
use channels::ChannelInfo;
use journal::Journal;
use memmap2::Mmap;
use node_core::protocol::logfiles::{check_channel_name, BadChannelName, DiskSize};
use node_core::protocol::status::StatusError;
use node_core::protocol::Status;
use node_core::server::durability::{self, DurabilityPolicy, SyncJob};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
pub use tickets::{Discard, WriteOutcome, WriteTickets};
use unmap::Unmapper;
use writers::{OpenBucket, OpenWriters};

/// Where removed channels wait for deletion (a name no channel can have).
pub const REMOVING_DIR_NAME: &str = ".removing";

/// The engine's limits (from `[logfiles]`).
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    pub max_value_bytes: usize,
    pub write_buffer_bytes: usize,
    pub max_open_buckets: usize,
    pub max_open_buckets_per_channel: usize,
    pub max_channels: usize,
    pub fsync: DurabilityPolicy,
    /// Bytes of records per stretch of a bucket's time index.
    pub index_interval_bytes: u32,
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    BadChannelName(#[from] BadChannelName),
    #[error("empty value for key 0x{0:016x}")]
    EmptyValue(u64),
    #[error("value of {len} bytes for key 0x{key:016x} is over the limit of {max} bytes")]
    ValueTooBig { key: u64, len: usize, max: usize },
    #[error("the node holds {0} channels, its limit (logfiles.max_channels)")]
    TooManyChannels(usize),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl EngineError {
    pub fn status(&self) -> Status {
        match self {
            EngineError::BadChannelName(_) => Status::BadChannelName,
            EngineError::EmptyValue(_) => Status::EmptyValue,
            EngineError::ValueTooBig { .. } => Status::ValueTooBig,
            EngineError::TooManyChannels(_) => Status::OutOfMemory,
            EngineError::Storage(_) | EngineError::Io { .. } => Status::InternalError,
        }
    }

    fn io(path: &Path, source: io::Error) -> EngineError {
        EngineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl StatusError for EngineError {
    fn status(&self) -> Status {
        EngineError::status(self)
    }
}

/// What opening the data directory found.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Buckets the journal listed (the node had stopped uncleanly when this is not empty).
    pub journal_buckets: usize,
    /// Tails cut: the file and the bytes cut.
    pub cut: Vec<(PathBuf, u64)>,
}

pub struct Engine {
    data_dir: PathBuf,
    limits: EngineLimits,
    channels: BTreeMap<String, ChannelInfo>,
    writers: OpenWriters,
    journal: Option<Journal>,
    /// Files written since the last group commit whose writers were closed since.
    closed_unsynced: Vec<Arc<File>>,
    /// Directories with new entries since the last group commit.
    new_dir_entries: Vec<PathBuf>,
    /// Write-outs that failed since the last group commit.
    failures: WriteFailures,
    /// The serial number of the next writer opened ([`OpenBucket::serial`]).
    next_writer_serial: u64,
    /// Bucket files mapped by running reads, with their count of readers.
    mapped: HashMap<PathBuf, u32>,
    /// Where reads leave the maps of big buckets to be unmapped.
    unmapper: Unmapper,
    next_generation: u64,
}

impl Engine {
    /// Opens `data_dir` (creating it): finishes removals a crash interrupted, cuts the torn
    /// tails of the buckets that were open at an unclean stop, and finds the channels.
    pub fn open(
        data_dir: &Path,
        limits: EngineLimits,
    ) -> Result<(Engine, OpenReport), EngineError> {
        fs::create_dir_all(data_dir).map_err(|e| EngineError::io(data_dir, e))?;
        let removing = data_dir.join(REMOVING_DIR_NAME);
        if removing.exists() {
            fs::remove_dir_all(&removing).map_err(|e| EngineError::io(&removing, e))?;
        }
        let (journal, left) = Journal::open(data_dir).map_err(|e| EngineError::io(data_dir, e))?;
        let mut report = OpenReport {
            journal_buckets: left.len(),
            cut: Vec::new(),
        };
        for (channel, bucket) in &left {
            let path = bucket.path_in(&data_dir.join(channel));
            match recover_tail(&path) {
                Ok(recovery) if recovery.cut_bytes > 0 => {
                    tracing::warn!(
                        "unclean stop: cut {} torn bytes from the end of {} ({} bytes before; {})",
                        recovery.cut_bytes,
                        path.display(),
                        recovery.old_len_bytes,
                        recovery.reason.map_or("?".into(), |r| r.to_string())
                    );
                    report.cut.push((path, recovery.cut_bytes));
                }
                Ok(_) => {}
                Err(StorageError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!("unclean stop: cannot check the tail of a bucket: {e}"),
            }
        }
        let channels = channels::discover(data_dir).map_err(|e| EngineError::io(data_dir, e))?;
        let engine = Engine {
            data_dir: data_dir.to_path_buf(),
            limits,
            channels,
            writers: OpenWriters::new(limits.max_open_buckets, limits.max_open_buckets_per_channel),
            journal: Some(journal),
            closed_unsynced: Vec::new(),
            new_dir_entries: Vec::new(),
            failures: WriteFailures {
                first: None,
                sync: None,
                lost: None,
                discards: Vec::new(),
                // Only where no buffered record has been acknowledged yet.
                discard: limits.fsync == DurabilityPolicy::Always,
            },
            next_writer_serial: 1,
            mapped: HashMap::new(),
            unmapper: Unmapper::spawn(),
            next_generation: 1,
        };
        Ok((engine, report))
    }

    /// The directory the channels live in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    // ----- writing ----------------------------------------------------------------------------

    /// Checks one record as Put and PutBatch do, before anything is written.
    fn check_record(&self, key: u64, value: &[u8]) -> Result<(), EngineError> {
        if value.is_empty() {
            return Err(EngineError::EmptyValue(key));
        }
        if value.len() > self.limits.max_value_bytes {
            return Err(EngineError::ValueTooBig {
                key,
                len: value.len(),
                max: self.limits.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Checks that `channel` is a valid name and exists or may be created.
    fn check_channel(&self, channel: &str) -> Result<(), EngineError> {
        check_channel_name(channel)?;
        if !self.channels.contains_key(channel) && self.channels.len() >= self.limits.max_channels {
            return Err(EngineError::TooManyChannels(self.channels.len()));
        }
        Ok(())
    }

    /// Appends one record (to its bucket's write buffer). See [`check_record`](Self::check_record)
    /// for the checks; the record is durable after the next group commit. On an error nothing
    /// of the record is kept.
    pub fn put(
        &mut self,
        channel: &str,
        key: u64,
        value: &[u8],
    ) -> Result<WriteTickets, EngineError> {
        self.check_channel(channel)?;
        self.check_record(key, value)?;
        let mut tickets = WriteTickets::default();
        let (serial, record) = self.append(channel, key, value, None)?;
        tickets.push(serial, record);
        Ok(tickets)
    }

    /// Appends a batch of records (PutBatch), all or nothing as far as the checks go: the
    /// channel and every record are checked (as by [`put`](Self::put)) before any is written,
    /// and a refused batch has `stored` 0. On an error part-way, the records of the batch still
    /// buffered are taken back; [`BatchError::stored`] counts those that were not (written to
    /// their file already, by a full buffer or a bucket closed to make room). Under
    /// `fsync = "always"` the batch's records a failed write-out dropped are not counted.
    pub fn put_batch<'a>(
        &mut self,
        channel: &str,
        records: impl Iterator<Item = (u64, &'a [u8])> + Clone,
    ) -> Result<WriteTickets, BatchError> {
        let refused = |error| BatchError { error, stored: 0 };
        if records.clone().next().is_none() {
            // An empty batch stores nothing and creates no channel (docs/protocol.md §4), so
            // the channel limit does not refuse it; its name must still be valid.
            check_channel_name(channel)
                .map_err(|error| refused(EngineError::BadChannelName(error)))?;
            return Ok(WriteTickets::default());
        }
        self.check_channel(channel).map_err(refused)?;
        for (key, value) in records.clone() {
            self.check_record(key, value).map_err(refused)?;
        }
        let mut tickets = WriteTickets::default();
        let mut marks: Vec<(BucketId, u64, BufferMark)> = Vec::new();
        for (key, value) in records {
            match self.append(channel, key, value, Some(&mut marks)) {
                Ok((serial, record)) => tickets.push(serial, record),
                Err(error) => {
                    let kept = self.roll_back(channel, &marks, &tickets);
                    let dropped = tickets.discarded(&self.failures.discards);
                    let stored = kept.saturating_sub(dropped);
                    return Err(BatchError { error, stored });
                }
            }
        }
        Ok(tickets)
    }

    /// Takes back the records of `tickets` still buffered in the writers `marks` name (as they
    /// were before the first of the batch's records they still buffer); returns how many of the
    /// batch's records are left.
    fn roll_back(
        &mut self,
        channel: &str,
        marks: &[(BucketId, u64, BufferMark)],
        tickets: &WriteTickets,
    ) -> u64 {
        let mut kept = tickets.count();
        for (id, serial, mark) in marks {
            let Some(bucket) = self.writers.get(channel, *id) else {
                continue;
            };
            let before = bucket.writer.len_bytes();
            let appended = bucket.writer.next_record();
            if bucket.serial != *serial || !bucket.writer.roll_back(*mark) {
                continue;
            }
            kept -= appended - bucket.writer.next_record();
            let removed = before - bucket.writer.len_bytes();
            if let Some(info) = self.channels.get_mut(channel) {
                info.size.bytes -= removed;
            }
        }
        kept
    }

    /// Appends a record already checked; returns its writer's serial and its record number.
    /// `marks` (a batch): per writer, its state before the first of the batch's records it
    /// buffers (kept up to date here: a write-out of the buffer moves it).
    fn append(
        &mut self,
        channel: &str,
        key: u64,
        value: &[u8],
        mut marks: Option<&mut Vec<(BucketId, u64, BufferMark)>>,
    ) -> Result<(u64, u64), EngineError> {
        let id = BucketId::from_key(key);
        let track = self.limits.fsync != DurabilityPolicy::None;
        let bucket = self.writer_for(channel, id)?;
        let serial = bucket.serial;
        if let Some(marks) = marks.as_deref_mut() {
            if !marks.iter().any(|(i, s, _)| *i == id && *s == serial) {
                marks.push((id, serial, bucket.writer.mark()));
            }
        }
        let before = bucket.writer.len_bytes();
        let result = bucket.writer.append(key, value);
        if let (Some(marks), true) = (marks, result.is_ok() && bucket.writer.buffered_bytes() == 0)
        {
            // Everything so far is written: only what comes next could be taken back.
            let mark = bucket.writer.mark();
            for entry in marks
                .iter_mut()
                .filter(|(i, s, _)| *i == id && *s == serial)
            {
                entry.2 = mark;
            }
        }
        let added = bucket.writer.len_bytes() - before;
        bucket.dirty |= track;
        if let Some(info) = self.channels.get_mut(channel) {
            info.size.bytes += added;
        }
        match result {
            Ok(record) => Ok((serial, record)),
            Err(e) => {
                // The record was taken back; the buffered ones before it stay (acknowledged or
                // waiting for their group commit, which tries to write them again).
                self.failures.first.get_or_insert_with(|| e.to_string());
                Err(e.into())
            }
        }
    }

    /// The open writer of bucket `id`, opening it (and creating the channel) when needed.
    fn writer_for(&mut self, channel: &str, id: BucketId) -> Result<&mut OpenBucket, EngineError> {
        if self.writers.get(channel, id).is_some() {
            // Looked up twice: returning the first borrow here does not pass the borrow checker.
            return self
                .writers
                .get(channel, id)
                .ok_or_else(|| unreachable_missing(channel));
        }
        if let Some(evicted) = self.writers.make_room(channel) {
            self.close_bucket(channel, evicted);
        }
        let channel_dir = self.channel_dir_or_create(channel);
        let path = id.path_in(&channel_dir);
        let existed_len = fs::metadata(&path).ok().map(|m| m.len());
        let allow_cut = !self.mapped.contains_key(&path);
        let writer = BucketWriter::open_with(
            &path,
            WriterOptions {
                buffer_limit_bytes: self.limits.write_buffer_bytes,
                index_interval_bytes: self.limits.index_interval_bytes,
                allow_cut,
            },
        )?;
        if let Some(journal) = &mut self.journal {
            journal
                .record_open(channel, id)
                .map_err(|e| EngineError::io(&self.data_dir, e))?;
        }
        let recovery = writer.recovery();
        if recovery.cut_bytes > 0 {
            tracing::warn!(
                "{}: cut {} torn bytes from its end before appending ({})",
                path.display(),
                recovery.cut_bytes,
                recovery.reason.map_or("?".into(), |r| r.to_string())
            );
        }
        self.count_opened(
            channel,
            &path,
            &channel_dir,
            existed_len,
            writer.len_bytes(),
        )?;
        if self
            .journal
            .as_ref()
            .is_some_and(|journal| journal.wants_compaction())
        {
            self.compact_journal();
        }
        let serial = self.next_writer_serial;
        self.next_writer_serial += 1;
        Ok(self.writers.insert(channel, id, writer, serial))
    }

    /// Counts a bucket just opened for writing in its channel's size: a new file (whose
    /// directory entries are then synced, unless `fsync = "none"`), or the change in length of
    /// an existing one (opening may cut a torn tail). `existed_len`: its length before.
    fn count_opened(
        &mut self,
        channel: &str,
        path: &Path,
        channel_dir: &Path,
        existed_len: Option<u64>,
        len_bytes: u64,
    ) -> Result<(), EngineError> {
        let info = self
            .channels
            .get_mut(channel)
            .ok_or_else(|| unreachable_missing(channel))?;
        match existed_len {
            None => {
                info.size.buckets += 1;
                info.size.bytes += len_bytes;
                if self.limits.fsync != DurabilityPolicy::None {
                    for dir in [path.parent(), Some(channel_dir), Some(&self.data_dir)]
                        .into_iter()
                        .flatten()
                    {
                        if !self.new_dir_entries.iter().any(|d| d == dir) {
                            self.new_dir_entries.push(dir.to_path_buf());
                        }
                    }
                }
            }
            Some(len) => {
                info.size.bytes = (info.size.bytes + len_bytes).saturating_sub(len);
            }
        }
        Ok(())
    }

    /// The channel's directory; registers the channel when it is new (the directory itself is
    /// created by the first writer).
    fn channel_dir_or_create(&mut self, channel: &str) -> PathBuf {
        if let Some(info) = self.channels.get(channel) {
            return info.dir.clone();
        }
        let dir = self.data_dir.join(channel);
        let generation = self.next_generation;
        self.next_generation += 1;
        self.channels.insert(
            channel.to_string(),
            ChannelInfo {
                dir: dir.clone(),
                size: DiskSize::default(),
                generation,
            },
        );
        dir
    }

    /// Flushes a writer being closed, keeping its file for the next group commit when written.
    fn close_bucket(&mut self, channel: &str, mut bucket: OpenBucket) {
        let (written, dropped_bytes) = self.failures.flush(channel, &mut bucket);
        shrink(&mut self.channels, channel, dropped_bytes);
        if !written {
            let lost = bucket.writer.buffered_bytes();
            if lost > 0 {
                let e = format!("closing a bucket of {channel}: {lost} buffered bytes are lost");
                tracing::error!("{e}");
                self.failures.lost.get_or_insert(e);
            }
        }
        if let Err(e) = bucket.writer.write_index() {
            // Reads rebuild a missing index; only time is lost.
            tracing::warn!("closing bucket of {channel}: cannot save its index: {e}");
        }
        if bucket.dirty {
            self.closed_unsynced.push(bucket.writer.file_handle());
        }
        // Each kept file holds a descriptor until the next commit: when buckets are evicted
        // faster than commits come (keys spread over many buckets), sync them here instead of
        // holding descriptors without bound.
        if self.closed_unsynced.len() >= self.limits.max_open_buckets {
            for file in self.closed_unsynced.drain(..) {
                if let Err(e) = file.sync_data() {
                    tracing::error!("fsync of a closed bucket of {channel}: {e}");
                    self.failures.first.get_or_insert_with(|| e.to_string());
                    self.failures.sync.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }

    fn compact_journal(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        let open = self
            .writers
            .iter_mut()
            .map(|(channel, bucket)| (channel, bucket.id));
        if let Err(e) = journal.compact(open) {
            tracing::warn!("cannot compact the open-bucket journal: {e}");
        }
    }

    /// Writes every buffer to its file (the flush timer). Failures are logged and fail the next
    /// group commit.
    pub fn flush_all(&mut self) {
        for (channel, bucket) in self.writers.iter_mut() {
            let (_, dropped_bytes) = self.failures.flush(channel, bucket);
            shrink(&mut self.channels, channel, dropped_bytes);
        }
    }

    /// Writes the buffers of one channel, so a read sees every record written before it.
    pub fn flush_channel(&mut self, channel: &str) {
        for bucket in self.writers.channel_mut(channel) {
            let (_, dropped_bytes) = self.failures.flush(channel, bucket);
            shrink(&mut self.channels, channel, dropped_bytes);
        }
    }

    /// Whether anything was written since the last group commit.
    pub fn has_unsynced(&self) -> bool {
        !self.closed_unsynced.is_empty()
            || !self.new_dir_entries.is_empty()
            || self.failures.first.is_some()
            || self.writers.any_dirty()
    }

    /// Closes the current epoch: writes every dirty buffer and returns the files and directories
    /// to fsync, the epoch's first write failure (the commit then counts as failed) and the
    /// records its failed write-outs dropped.
    pub fn take_sync_job(&mut self) -> (SyncJob, EpochFailures) {
        let mut job = SyncJob::new(
            std::mem::take(&mut self.closed_unsynced),
            std::mem::take(&mut self.new_dir_entries),
        );
        for (channel, bucket) in self.writers.iter_mut() {
            if !bucket.dirty {
                continue;
            }
            let (_, dropped_bytes) = self.failures.flush(channel, bucket);
            shrink(&mut self.channels, channel, dropped_bytes);
            bucket.dirty = false;
            job.files.push(bucket.writer.file_handle());
        }
        if let Some(journal) = self.journal.as_mut().and_then(Journal::take_unsynced) {
            job.files.push(journal);
        }
        let failures = EpochFailures {
            failure: self.failures.first.take(),
            sync_failure: self.failures.sync.take(),
            discards: std::mem::take(&mut self.failures.discards),
        };
        (job, failures)
    }

    // ----- reading ----------------------------------------------------------------------------

    /// The directory and generation of an existing channel.
    pub fn channel(&self, channel: &str) -> Option<(&Path, u64)> {
        self.channels
            .get(channel)
            .map(|info| (info.dir.as_path(), info.generation))
    }

    /// The generation of `channel` if it exists (changes when it is removed and re-created).
    pub fn generation(&self, channel: &str) -> Option<u64> {
        self.channels.get(channel).map(|info| info.generation)
    }

    pub fn channel_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    pub fn channel_size(&self, channel: &str) -> DiskSize {
        self.channels
            .get(channel)
            .map(|info| info.size)
            .unwrap_or_default()
    }

    pub fn size(&self) -> DiskSize {
        self.channels
            .values()
            .fold(DiskSize::default(), |total, info| DiskSize {
                buckets: total.buckets + info.size.buckets,
                bytes: total.bytes + info.size.bytes,
            })
    }

    pub fn open_bucket_count(&self) -> usize {
        self.writers.len()
    }

    /// The index the writer of bucket `id` of `channel` keeps, when the bucket is open for
    /// writing (its index file is only saved when the writer closes).
    pub fn live_index(&self, channel: &str, id: BucketId) -> Option<&IndexBuilder> {
        self.writers
            .peek(channel, id)
            .map(|bucket| bucket.writer.index())
    }

    /// A read maps `path` (until [`unmapped`](Self::unmapped)).
    pub fn mapped(&mut self, path: &Path) {
        *self.mapped.entry(path.to_path_buf()).or_insert(0) += 1;
    }

    /// A read is done with `path`; its `map`, if it has one, is unmapped off the caller's thread
    /// when it is big ([`unmap`]).
    pub fn unmapped(&mut self, path: &Path, map: Option<Mmap>) {
        if let Some(map) = map {
            self.unmapper.release(map);
        }
        if let Some(count) = self.mapped.get_mut(path) {
            *count -= 1;
            if *count == 0 {
                self.mapped.remove(path);
            }
        }
    }

    pub fn is_mapped(&self, path: &Path) -> bool {
        self.mapped.contains_key(path)
    }

    // ----- removing and stopping --------------------------------------------------------------

    /// Removes a channel: closes its writers, moves its directory aside (one rename, so a crash
    /// cannot bring it back half-deleted) and deletes it on another thread. Ok when absent.
    /// Returns whether it existed.
    pub fn remove_channel(&mut self, channel: &str) -> Result<bool, EngineError> {
        check_channel_name(channel)?;
        // Its buffered records go with it (dropping a writer flushes into the directory that is
        // moved aside and deleted below).
        drop(self.writers.remove_channel(channel));
        let Some(info) = self.channels.remove(channel) else {
            return Ok(false);
        };
        // Its directories are going: nothing of them is left to make durable.
        self.new_dir_entries
            .retain(|dir| !dir.starts_with(&info.dir));
        let removing = self.data_dir.join(REMOVING_DIR_NAME);
        fs::create_dir_all(&removing).map_err(|e| EngineError::io(&removing, e))?;
        let aside = removing.join(format!("{channel}.{}", info.generation));
        match fs::rename(&info.dir, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(EngineError::io(&info.dir, e)),
        }
        // The rename must be durable before the Ok: fsync the data directory.
        if let Err(e) = File::open(&self.data_dir).and_then(|d| d.sync_all()) {
            tracing::warn!("fsync of {}: {e}", self.data_dir.display());
        }
        let spawned = std::thread::Builder::new()
            .name("logfiles-remove".into())
            .spawn(move || {
                if let Err(e) = fs::remove_dir_all(&aside) {
                    tracing::error!("deleting removed channel {}: {e}", aside.display());
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread to delete a removed channel ({e}); it is deleted at the next start");
        }
        Ok(true)
    }

    /// Clean shutdown: writes and fsyncs every open bucket, then deletes the journal (nothing to
    /// recover at the next start). Returns the first failure.
    pub fn close(&mut self) -> Result<(), String> {
        // Earlier write failures whose records were taken back or dropped (their writes were
        // told), or kept and written below, are over; losses and failed fsyncs are not.
        let mut failure = self.failures.lost.take().or(self.failures.sync.take());
        for mut bucket in self.writers.drain() {
            if let Err(e) = bucket.writer.sync() {
                failure.get_or_insert_with(|| e.to_string());
            }
        }
        for file in self.closed_unsynced.drain(..) {
            if let Err(e) = file.sync_data() {
                failure.get_or_insert_with(|| e.to_string());
            }
        }
        for dir in self.new_dir_entries.drain(..) {
            if let Err(e) = durability::sync_dir(&dir) {
                failure.get_or_insert_with(|| format!("{}: {e}", dir.display()));
            }
        }
        match failure {
            // Keep the journal: the next start checks the tails.
            Some(failure) => Err(failure),
            None => {
                if let Some(journal) = self.journal.take() {
                    journal.remove().map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

/// Takes `bytes` (dropped unwritten) off `channel`'s size.
fn shrink(channels: &mut BTreeMap<String, ChannelInfo>, channel: &str, bytes: u64) {
    if let Some(info) = channels.get_mut(channel) {
        info.size.bytes = info.size.bytes.saturating_sub(bytes);
    }
}

/// What went wrong in an epoch before its group commit ([`Engine::take_sync_job`]).
#[derive(Debug, Default)]
pub struct EpochFailures {
    /// The epoch's first write failure.
    pub failure: Option<String>,
    /// An fsync of the epoch's files done before the commit (of buckets closed to make room)
    /// that failed: the epoch's records are not confirmed durable.
    pub sync_failure: Option<String>,
    /// Records of the epoch dropped unwritten (`fsync = "always"`).
    pub discards: Vec<Discard>,
}

/// A PutBatch that failed part-way.
#[derive(Debug)]
pub struct BatchError {
    pub error: EngineError,
    /// Records of the batch that stay stored (written before the failure).
    pub stored: u64,
}

/// Write-outs that failed since the last group commit.
#[derive(Debug)]
struct WriteFailures {
    /// The first failure: the next group commit counts as failed (logged and in the stats).
    first: Option<String>,
    /// The first failed fsync among them.
    sync: Option<String>,
    /// The first loss of acknowledged records (a closed bucket's buffer that could not be
    /// written): reported by the shutdown.
    lost: Option<String>,
    /// Buffered records dropped since.
    discards: Vec<Discard>,
    /// Whether a failed write-out drops the buffer (`fsync = "always"`, where every buffered
    /// record waits for its group commit, which will tell its write) or keeps it to try again
    /// (acknowledged records).
    discard: bool,
}

impl WriteFailures {
    /// Writes `bucket`'s buffer; a failure is logged and kept, and drops the buffer when
    /// `discard` says so. Returns whether the buffer was written, and the bytes dropped (to
    /// take off the channel's size).
    fn flush(&mut self, channel: &str, bucket: &mut OpenBucket) -> (bool, u64) {
        let Err(e) = bucket.writer.flush() else {
            return (true, 0);
        };
        tracing::error!("writing a bucket of {channel}: {e}");
        let reason = e.to_string();
        let mut dropped_bytes = 0;
        if self.discard && bucket.writer.buffered_bytes() > 0 {
            dropped_bytes = bucket.writer.buffered_bytes() as u64;
            let records = bucket.writer.discard_buffered();
            tracing::error!(
                "{} records of {channel} dropped unwritten (their writes are told so)",
                records.end - records.start
            );
            self.discards.push(Discard {
                writer: bucket.serial,
                records,
                reason: reason.clone(),
            });
        }
        self.first.get_or_insert(reason);
        (false, dropped_bytes)
    }
}

fn unreachable_missing(channel: &str) -> EngineError {
    EngineError::Io {
        path: PathBuf::from(channel),
        source: io::Error::other("internal: channel state missing"),
    }
}
