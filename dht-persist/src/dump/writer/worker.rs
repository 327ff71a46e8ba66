//! The dump thread's side: one command at a time, one dump file at a time (see the parent
//! module for the file's steps and the outcomes it reports).

use super::pipeline::{dump_pipelined, Piped};
use super::priority::{Pacer, WriterMode};
use super::writeback::WritebackFile;
use super::{Command, DumpAction, DumpOutcome, ShardSource, Shared, WRITE_BUFFER_BYTES};
use crate::dump::entry::{DumpEntry, VERSIONED_FORMAT_VERSION};
use crate::dump::format::{unix_now, DumpCompression, DumpFileWriter, END_LEN};
use crate::layout::{
    channel_file, free_name, sync_dir, BACKUP_SUFFIX, DUMP_SUFFIX, REMOVED_DIR, TCM_SUFFIX,
    TMP_SUFFIX,
};
use node_core::protocol::batch::{MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Instant;

/// Uncompressed bytes per block when the thread reads shards itself: small enough that
/// compressing one (LZ4: ~100 µs) fits a paced writer's quantum (`priority::QUANTUM`).
const SHARD_CHUNK_BYTES: usize = 64 * 1024;

/// Why a dump stopped at its cancel token.
const CANCELLED: &str = "dump cancelled (channel removed, or the node is shutting down)";

/// Entries collected for the next block of a dump the thread reads from shards.
struct PendingChunk {
    raw: Vec<u8>,
    count: u32,
}

/// The thread's state: where it writes, and the dump in progress.
pub(super) struct Worker {
    data_dir: PathBuf,
    session: Option<Session>,
    outcomes: Sender<DumpOutcome>,
    recycle: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
    /// Paces the node's dumps (`dump_shards`) when the node asks for it.
    pacer: Pacer,
}

struct Session {
    channel: String,
    /// The dump_shards ticket (0 for begin/chunk/finish dumps).
    ticket: u64,
    /// The change-log position written in the header, if given one.
    log_position: Option<u64>,
    started: Instant,
    /// `None` once the dump failed (its outcome is out; the rest of its commands are ignored).
    writer: Option<DumpFileWriter<BufWriter<WritebackFile>>>,
}

impl Worker {
    pub(super) fn new(
        data_dir: PathBuf,
        outcomes: Sender<DumpOutcome>,
        recycle: SyncSender<Vec<u8>>,
        shared: Arc<Shared>,
        pacer: Pacer,
    ) -> Worker {
        Worker {
            data_dir,
            session: None,
            outcomes,
            recycle,
            shared,
            pacer,
        }
    }

    /// Carries out commands until the handle is dropped.
    pub(super) fn run(mut self, commands: Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            match command {
                Command::DumpShards {
                    channel,
                    source,
                    cancel,
                    ticket,
                    log_position,
                } => self.dump_shards(channel, &*source, &cancel, ticket, log_position),
                Command::Begin(channel, log_position, format) => {
                    self.begin(channel, 0, log_position, format)
                }
                Command::Chunk(raw, count) => self.chunk(raw, count),
                Command::Finish => self.finish(),
                Command::Abort => self.abandon("dump aborted".into()),
                Command::MoveAside(channel) => self.move_aside(channel),
                Command::Sync(done) => {
                    let _ = done.send(());
                }
                #[cfg(test)]
                Command::Panic => panic!("test-induced panic"),
            }
        }
        self.abandon("dump thread shut down before the dump was finished".into());
    }

    fn tmp_path(&self, channel: &str) -> PathBuf {
        channel_file(&self.data_dir, channel, TMP_SUFFIX)
    }

    /// Reports a dump that ends without a file.
    fn report(&self, session: &Session, action: DumpAction, error: String) {
        let summary = session
            .writer
            .as_ref()
            .map(|writer| writer.summary())
            .unwrap_or_default();
        let _ = self.outcomes.send(DumpOutcome {
            channel: session.channel.clone(),
            action,
            records: summary.records,
            value_bytes: summary.value_bytes,
            bytes: 0,
            seconds: session.started.elapsed().as_secs_f64(),
            result: Err(error),
            ticket: session.ticket,
            log_position: session.log_position,
        });
    }

    /// Ends a dump without a file: reports, deletes the temporary file, ignores the rest of it.
    fn fail(&mut self, action: DumpAction, error: String) {
        if let Some(mut session) = self.session.take() {
            if session.writer.is_some() {
                self.report(&session, action, error);
                session.writer = None;
                remove_tmp(&self.tmp_path(&session.channel));
            }
            self.session = Some(session);
        }
    }

    /// Abandons the dump in progress, if any (reporting `reason`), and forgets it.
    fn abandon(&mut self, reason: String) {
        self.fail(DumpAction::Aborted, reason);
        self.session = None;
    }

    /// Starts a dump with its ticket and the log position for its header, of `format_version`
    /// (1: chunks of plain records, as dhtdump sends them; 2: the node's own, with versions).
    fn begin(
        &mut self,
        channel: String,
        ticket: u64,
        log_position: Option<u64>,
        format_version: u32,
    ) {
        if let Some(current) = &self.session {
            let reason = format!("dump abandoned: a dump of {channel} began before it finished");
            if current.writer.is_some() {
                tracing::warn!("dump of channel {}: {reason}", current.channel);
            }
            self.abandon(reason);
        }
        let tmp = self.tmp_path(&channel);
        let started = Instant::now();
        let compression = if self.shared.uncompressed.load(Ordering::Relaxed) {
            DumpCompression::None
        } else {
            DumpCompression::Lz4
        };
        let writer = self.create_tmp(&tmp).and_then(|file| {
            let out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, WritebackFile::new(file));
            let created = unix_now();
            DumpFileWriter::with_compression(
                out,
                format_version,
                &channel,
                created,
                log_position,
                compression,
            )
        });
        let failed = writer.as_ref().err().map(|err| err.to_string());
        self.session = Some(Session {
            channel,
            ticket,
            log_position,
            started,
            writer: writer.ok(),
        });
        if let Some(err) = failed {
            // The session has no writer, so report directly.
            let session = self.session.as_ref().expect("just set");
            self.report(
                session,
                DumpAction::Dump,
                format!("cannot create {}: {err}", tmp.display()),
            );
            remove_tmp(&tmp);
        }
    }

    /// Creates the temporary file of a dump afresh: one a crash left is replaced, and so is a
    /// FIFO made by hand at its name, which opening to write would block this thread on (and
    /// with it every dump) until something read it.
    fn create_tmp(&self, tmp: &Path) -> io::Result<File> {
        let file = node_core::data_dir::create_fresh(tmp)?;
        #[cfg(test)]
        if let Some(instead) = self.shared.write_instead.lock().unwrap().as_deref() {
            return fs::OpenOptions::new().write(true).open(instead);
        }
        Ok(file)
    }

    /// Dumps a whole channel from its shards: the same file, checks and rotation as
    /// begin/chunks/finish, but the records never cross a queue.
    fn dump_shards(
        &mut self,
        channel: String,
        source: &dyn ShardSource,
        cancel: &AtomicBool,
        ticket: u64,
        log_position: Option<u64>,
    ) {
        self.begin(channel, ticket, log_position, VERSIONED_FORMAT_VERSION);
        if self.mode() == WriterMode::Full {
            self.dump_shards_pipelined(source, cancel);
            return;
        }
        let mut chunk = PendingChunk {
            raw: Vec::with_capacity(SHARD_CHUNK_BYTES + 4096),
            count: 0,
        };
        for index in 0..source.shard_count() {
            if cancel.load(Ordering::Relaxed) {
                self.abandon(CANCELLED.into());
                return;
            }
            self.shared.progress.fetch_add(1, Ordering::Relaxed);
            source.for_each_in_shard(index, &mut |key, version, value| {
                self.add_entry(&mut chunk, key, DumpEntry::Record { version, value });
            });
            self.pace();
            if chunk.raw.len() >= SHARD_CHUNK_BYTES {
                self.write_in_parts(&mut chunk);
            }
            if !self.is_writing() {
                self.session = None; // Failed and reported; nothing more to write.
                return;
            }
        }
        source.for_each_tombstone(&mut |key, version, stored_unix_s| {
            let tombstone = DumpEntry::Tombstone {
                version,
                stored_unix_s,
            };
            self.add_entry(&mut chunk, key, tombstone);
        });
        if chunk.count > 0 {
            self.write_chunk(&mut chunk);
        }
        self.finish();
    }

    fn mode(&self) -> WriterMode {
        WriterMode::from_u8(self.shared.mode.load(Ordering::Relaxed))
    }

    /// [`dump_shards`](Self::dump_shards) at full speed, on two threads (`pipeline`).
    fn dump_shards_pipelined(&mut self, source: &dyn ShardSource, cancel: &AtomicBool) {
        let Some(mut writer) = self.session.as_mut().and_then(|s| s.writer.take()) else {
            self.session = None; // Failed at its start and reported.
            return;
        };
        let piped = dump_pipelined(&mut writer, source, cancel, &self.shared.progress);
        if let Some(session) = self.session.as_mut() {
            session.writer = Some(writer);
        }
        match piped {
            Piped::Done => self.finish(),
            Piped::Cancelled => self.abandon(CANCELLED.into()),
            Piped::Failed(err) => {
                self.fail(DumpAction::Dump, format!("writing the dump failed: {err}"));
                self.session = None;
            }
        }
    }

    /// Ends a unit of work of a node's dump: publishes the CPU time and, when the node asked
    /// for it (or the idle class is out of reach and the node does not want full speed), sleeps
    /// once the quantum is used up (`priority`).
    fn pace(&mut self) {
        let paced = match self.mode() {
            WriterMode::Full => false,
            WriterMode::Paced => true,
            WriterMode::Background => !self.shared.idle_allowed.load(Ordering::Relaxed),
        };
        self.pacer.after_unit(paced, &self.shared.cpu_ns);
    }

    /// Whether a dump is in progress and its file has not failed.
    fn is_writing(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|session| session.writer.is_some())
    }

    /// Adds an entry to the block being collected, writing that block first if the entry
    /// would take it past the batch limit.
    fn add_entry(&mut self, chunk: &mut PendingChunk, key: u64, entry: DumpEntry<'_>) {
        if chunk.raw.len() + RECORD_OVERHEAD + entry.encoded_len() > MAX_BATCH_UNCOMPRESSED_BYTES {
            self.write_chunk(chunk);
        }
        entry.append_to(&mut chunk.raw, key);
        chunk.count += 1;
    }

    /// Writes the collected entries as blocks of about [`SHARD_CHUNK_BYTES`] each (a shard of a
    /// large channel holds more), pacing after each: one block is one unit of work.
    fn write_in_parts(&mut self, chunk: &mut PendingChunk) {
        let mut start = 0;
        let mut written = 0u32;
        while start < chunk.raw.len() {
            let (end, count) = part_end(&chunk.raw, start, SHARD_CHUNK_BYTES);
            self.write_raw(&chunk.raw[start..end], count);
            self.pace();
            written += count;
            start = end;
        }
        assert_eq!(written, chunk.count, "the parts hold every collected entry");
        chunk.raw.clear();
        chunk.count = 0;
    }

    fn write_chunk(&mut self, chunk: &mut PendingChunk) {
        self.write_raw(&chunk.raw, chunk.count);
        chunk.raw.clear();
        chunk.count = 0;
    }

    /// Writes one chunk into the dump in progress; a failure ends that dump (reported).
    fn write_raw(&mut self, raw: &[u8], count: u32) {
        let result = match self.session.as_mut() {
            Some(Session {
                writer: Some(writer),
                ..
            }) => writer.write_chunk(raw, count),
            _ => Ok(()),
        };
        if let Err(err) = result {
            self.fail(DumpAction::Dump, format!("writing the dump failed: {err}"));
        }
    }

    fn chunk(&mut self, mut raw: Vec<u8>, count: u32) {
        let result = match self.session.as_mut() {
            Some(Session {
                writer: Some(writer),
                ..
            }) => writer.write_chunk(&raw, count),
            Some(_) => Ok(()),
            None => {
                tracing::warn!("dump chunk of {count} records arrived outside a dump; dropped");
                Ok(())
            }
        };
        {
            let mut state = self.shared.lock();
            state.queued_chunks = state.queued_chunks.saturating_sub(1);
        }
        self.shared.changed.notify_all();
        raw.clear();
        let _ = self.recycle.try_send(raw);
        let hook = self
            .shared
            .on_progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook();
        }
        if let Err(err) = result {
            self.fail(DumpAction::Dump, format!("writing the dump failed: {err}"));
        }
    }

    fn finish(&mut self) {
        let Some(mut session) = self.session.take() else {
            tracing::warn!("dump finish without a dump in progress; ignored");
            return;
        };
        let Some(writer) = session.writer.take() else {
            return; // Failed earlier and already reported.
        };
        let summary = writer.summary();
        let bytes = writer.bytes_written() + END_LEN as u64;
        let channel = session.channel.clone();
        let result = self.complete(&channel, writer);
        let _ = self.outcomes.send(DumpOutcome {
            channel,
            action: DumpAction::Dump,
            records: summary.records,
            value_bytes: summary.value_bytes,
            bytes,
            seconds: session.started.elapsed().as_secs_f64(),
            result,
            ticket: session.ticket,
            log_position: session.log_position,
        });
    }

    /// Trailer, fsync, backup rotation, rename into place, directory fsync.
    fn complete(
        &self,
        channel: &str,
        writer: DumpFileWriter<BufWriter<WritebackFile>>,
    ) -> Result<(), String> {
        let tmp = self.tmp_path(channel);
        let dump = channel_file(&self.data_dir, channel, DUMP_SUFFIX);
        let backup = channel_file(&self.data_dir, channel, BACKUP_SUFFIX);
        let written = writer
            .finish()
            .and_then(|(buffered, _)| buffered.into_inner().map_err(|err| err.into_error()))
            .and_then(|file| file.into_file().sync_all());
        if let Err(err) = written {
            remove_tmp(&tmp);
            return Err(format!("writing {} failed: {err}", tmp.display()));
        }
        let had_dump = match fs::rename(&dump, &backup) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            Err(err) => {
                remove_tmp(&tmp);
                return Err(format!(
                    "cannot rename {} to {}: {err}",
                    dump.display(),
                    backup.display()
                ));
            }
        };
        if let Err(err) = fs::rename(&tmp, &dump) {
            if had_dump {
                // Put the previous dump back where it was (best effort; the loader would also
                // take it from the backup).
                let _ = fs::rename(&backup, &dump);
            }
            remove_tmp(&tmp);
            return Err(format!(
                "cannot rename {} to {}: {err}",
                tmp.display(),
                dump.display()
            ));
        }
        sync_dir(&self.data_dir).map_err(|err| {
            format!(
                "dump renamed into place, but syncing directory {} failed: {err}",
                self.data_dir.display()
            )
        })
    }

    fn move_aside(&mut self, channel: String) {
        let started = Instant::now();
        if self.session.as_ref().is_some_and(|s| s.channel == channel) {
            self.abandon("dump abandoned: the channel was removed".into());
        }
        let result = self.move_files(&channel);
        let (bytes, result) = match result {
            Ok(bytes) => (bytes, Ok(())),
            Err(err) => (0, Err(err)),
        };
        let _ = self.outcomes.send(DumpOutcome {
            channel,
            action: DumpAction::MoveAside,
            records: 0,
            value_bytes: 0,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            result,
            ticket: 0,
            log_position: None,
        });
    }

    fn move_files(&self, channel: &str) -> Result<u64, String> {
        let removed = self.data_dir.join(REMOVED_DIR);
        let stamp = unix_now();
        let mut moved_bytes = 0;
        let mut moved_any = false;
        for suffix in [DUMP_SUFFIX, BACKUP_SUFFIX, TCM_SUFFIX] {
            let from = channel_file(&self.data_dir, channel, suffix);
            let Ok(meta) = fs::symlink_metadata(&from) else {
                continue;
            };
            if !moved_any {
                fs::create_dir_all(&removed)
                    .map_err(|err| format!("cannot create {}: {err}", removed.display()))?;
                moved_any = true;
            }
            let to = free_name(&removed, channel, stamp, suffix);
            fs::rename(&from, &to).map_err(|err| {
                format!("cannot move {} to {}: {err}", from.display(), to.display())
            })?;
            moved_bytes += meta.len();
        }
        remove_tmp(&self.tmp_path(channel));
        if moved_any {
            sync_dir(&removed)
                .and_then(|()| sync_dir(&self.data_dir))
                .map_err(|err| format!("files moved, but syncing the directories failed: {err}"))?;
        }
        Ok(moved_bytes)
    }
}

/// Where the part of `raw` (records laid out by `append_record`, collected by this thread) that
/// starts at `start` ends: after the first record that takes it to `target_bytes` or more, or at
/// the end of `raw`; and how many records it holds.
fn part_end(raw: &[u8], start: usize, target_bytes: usize) -> (usize, u32) {
    let mut end = start;
    let mut count = 0u32;
    while end < raw.len() && end - start < target_bytes {
        let value_len = raw
            .get(end + 8..end + RECORD_OVERHEAD)
            .and_then(|field| field.try_into().ok())
            .map_or(0, |field: [u8; 4]| u32::from_le_bytes(field) as usize);
        // A cut-short record (impossible for entries appended here) ends the part at the end
        // of `raw`; the block writer's own check then refuses it.
        end = (end + RECORD_OVERHEAD + value_len).min(raw.len());
        count += 1;
    }
    (end, count)
}

fn remove_tmp(tmp: &Path) {
    if let Err(err) = fs::remove_file(tmp) {
        if err.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot delete {}: {err}", tmp.display());
        }
    }
}
