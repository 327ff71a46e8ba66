//! The dump thread: writes channel dumps in the background, so that neither the node's event
//! loop nor dhtdump's network reading ever waits for the disk.
//!
//! Two ways to hand it a channel:
//! - [`dump_shards`](DumpThread::dump_shards) (the node): a whole channel as a [`ShardSource`],
//!   which the thread reads itself, one shard at a time, so no records cross a queue and the
//!   event loop copies nothing.
//! - [`begin`](DumpThread::begin), then [`try_send_chunk`](DumpThread::try_send_chunk) or
//!   [`send_chunk`](DumpThread::send_chunk) as many times as needed, then
//!   [`finish`](DumpThread::finish) (dhtdump, streaming records from a node): chunks of records
//!   laid out with [`append_record`](node_core::protocol::batch::append_record).
//!   `try_send_chunk` refuses — returning the chunk — while [`CHUNK_QUEUE_CAPACITY`] chunks are
//!   queued, so memory stays bounded; `send_chunk` waits for room. Chunk buffers come back
//!   through [`recycle`](DumpThread::recycle).
//!
//! Control commands (`begin`, `finish`, `abort`, `move_aside`) never block. Every dump produces
//! exactly one [`DumpOutcome`] (read with [`poll_outcomes`](DumpThread::poll_outcomes)); a
//! failure is reported as soon as it happens, after which the remaining chunks of that dump are
//! discarded and its `finish` does nothing. Every `move_aside` produces one outcome as well.
//! Match on [`DumpOutcome::action`]: an `Err` with [`DumpAction::Aborted`] is a dump the caller
//! (or a RemoveChannel) called off, not a failure.
//!
//! Writing channel `ch` (`worker`): `<ch>.dump.tmp` is written and fsynced, the current
//! `<ch>.dump` (if any) is renamed to `<ch>.dump.backup` (replacing the older backup),
//! `<ch>.dump.tmp` is renamed to `<ch>.dump`, and the directory is fsynced. Whenever a crash
//! strikes, `<ch>.dump` or `<ch>.dump.backup` holds a complete dump (the loader takes the backup
//! when the dump is missing). A failed dump (disk full, ...) deletes its temporary file and
//! leaves the previous dump and backup as they were. How the thread shares the CPU with the
//! node's requests ([`WriterMode`]: idle class, paced, full speed) is in `priority`.

mod pipeline;
mod priority;
mod worker;
mod writeback;

#[cfg(test)]
mod tests;

use crate::dump::format::{DumpCompression, FORMAT_VERSION};
use node_core::protocol::dht::valid_channel_name;
use priority::{apply_mode, idle_class_is_reversible, Pacer};
pub use priority::{WriterMode, PACED_SHARE_PERCENT, QUANTUM};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use worker::Worker;

/// Chunks that may wait for the dump thread at once.
pub const CHUNK_QUEUE_CAPACITY: usize = 8;
/// The write buffer in front of a dump file.
pub const WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// What a command of the dump thread did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpAction {
    /// A channel dump (`begin` .. `finish`): `Ok`, or `Err` when it failed (disk full, ...) —
    /// then its temporary file is gone and the previous dump and backup are untouched.
    Dump,
    /// A dump abandoned on purpose: by [`DumpThread::abort`], by a `move_aside` of its channel,
    /// or by a `begin` before its `finish`. `result` is `Err(reason)`; nothing was replaced.
    Aborted,
    /// A channel's files moved to `removed/`.
    MoveAside,
    /// The dump thread itself stopped unexpectedly (`channel` is empty). Nothing more will be
    /// written; every later call returns an error.
    ThreadDied,
}

/// The result of one dump or move-aside.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpOutcome {
    pub channel: String,
    pub action: DumpAction,
    /// Records written (for a failed dump: before the failure).
    pub records: u64,
    /// Value bytes written.
    pub value_bytes: u64,
    /// Bytes written: the size of the dump file (for a move-aside: bytes moved).
    pub bytes: u64,
    pub seconds: f64,
    /// `Err` says what failed; the previous dump and backup are then untouched.
    pub result: Result<(), String>,
    /// The ticket [`DumpThread::dump_shards`] returned for this dump (0 for other commands):
    /// how a caller waiting for one particular dump recognises its outcome.
    pub ticket: u64,
    /// The change-log position written in the dump's header, for a dump that was given one
    /// ([`DumpThread::dump_shards_covering`], [`DumpThread::begin_covering`]): once the dump
    /// succeeded, the channel's log entries up to it are in a dump.
    pub log_position: Option<u64>,
}

enum Command {
    /// Dump a whole channel, reading its shards here (the node's periodic and shutdown dumps).
    DumpShards {
        channel: String,
        source: Arc<dyn ShardSource>,
        cancel: Arc<AtomicBool>,
        ticket: u64,
        log_position: Option<u64>,
    },
    /// Channel, log position, format version.
    Begin(String, Option<u64>, u32),
    Chunk(Vec<u8>, u32),
    Finish,
    Abort,
    MoveAside(String),
    Sync(SyncSender<()>),
    #[cfg(test)]
    Panic,
}

/// Records the writer can read itself, one shard at a time (the dht engine's channels). Reading a
/// shard may lock it against the event loop, so `for_each_in_shard` should not be slow. Such a
/// dump is of format version 2: records with their versions, then the tombstones.
pub trait ShardSource: Send + Sync {
    fn shard_count(&self) -> usize;
    /// Each record of shard `index`: key, version, value.
    fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, u64, &[u8]));
    /// Each tombstone of the channel: key, version, the Unix second it was stored. None by
    /// default.
    fn for_each_tombstone(&self, _each: &mut dyn FnMut(u64, u64, u64)) {}
}

/// Set to make a [`DumpThread::dump_shards`] dump stop at its next shard (previous dump kept).
pub type CancelToken = Arc<AtomicBool>;

/// Called from the dump thread whenever a queued chunk is done, so that the event loop (which
/// stops copying while the queue is full) learns at once that it can go on.
pub type ProgressHook = Arc<dyn Fn() + Send + Sync>;

/// Chunk accounting shared with the thread.
struct Shared {
    /// The writer thread's id (0 until it runs), so the node can change its scheduling.
    thread_id: AtomicI32,
    /// Whether the writer may use the idle class (see `idle_class_is_reversible`).
    idle_allowed: AtomicBool,
    /// The [`WriterMode`] the node chose, as its byte.
    mode: AtomicU8,
    /// The writer thread's CPU time in nanoseconds, as of its last unit of work.
    cpu_ns: AtomicU64,
    /// Shards read so far, over the thread's life: the node watches it to see a starved dump.
    progress: AtomicU64,
    /// Whether dumps begun from now on are written without compression
    /// ([`DumpThread::set_compression`]).
    uncompressed: AtomicBool,
    /// The next [`DumpThread::dump_shards_ticketed`] ticket.
    next_ticket: AtomicU64,
    state: Mutex<QueueState>,
    changed: Condvar,
    on_progress: Mutex<Option<ProgressHook>>,
    /// Tests: a file the next dumps write to in place of their temporary file, which is still
    /// created (`/dev/full`: every write fails with ENOSPC, as on a full disk). The temporary
    /// file is always created afresh, so a symbolic link put there cannot stand in for this.
    #[cfg(test)]
    write_instead: Mutex<Option<PathBuf>>,
}

struct QueueState {
    queued_chunks: usize,
    alive: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Marks the thread dead however it ends, so that no caller waits for it forever.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.lock().alive = false;
        self.0.changed.notify_all();
    }
}

/// A channel name becomes a file name in the data directory: only valid names (no `/`, no `.`)
/// are let through.
fn check_channel_name(channel: &str) -> io::Result<()> {
    if valid_channel_name(channel) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid channel name {channel:?}"),
        ))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the dump thread is not running")
}

/// Handle of the background dump thread (see the module doc).
pub struct DumpThread {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    outcomes: Receiver<DumpOutcome>,
    recycled: Receiver<Vec<u8>>,
    handle: Option<JoinHandle<()>>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for DumpThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpThread")
            .field("data_dir", &self.data_dir)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl DumpThread {
    /// Shards read by the thread so far; unchanged over a while during a dump means the dump is
    /// starved.
    pub fn progress(&self) -> u64 {
        self.shared.progress.load(Ordering::Relaxed)
    }

    /// How the thread shares the CPU from now on (see [`WriterMode`]). New threads start in
    /// `Background`.
    pub fn set_mode(&self, mode: WriterMode) {
        // SeqCst against the thread's start (stores its id, then reads the mode): one of the
        // two sides applies the new mode, or both do.
        let previous = self.shared.mode.swap(mode as u8, Ordering::SeqCst);
        let thread_id = self.shared.thread_id.load(Ordering::SeqCst);
        if thread_id != 0 && previous != mode as u8 {
            let idle_allowed = self.shared.idle_allowed.load(Ordering::Relaxed);
            apply_mode(thread_id, mode, idle_allowed);
        }
    }

    /// The mode last set.
    pub fn mode(&self) -> WriterMode {
        WriterMode::from_u8(self.shared.mode.load(Ordering::Relaxed))
    }

    /// The CPU time the writer thread had used at the end of its last unit of work: over a
    /// while, how much of a core it got.
    pub fn cpu_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.shared.cpu_ns.load(Ordering::Relaxed))
    }

    /// How the dumps begun from now on store their blocks (LZ4 until set; the node sets its
    /// `[dht] dump_compression`). The choice is in each file's header, so readers need no
    /// setting.
    pub fn set_compression(&self, compression: DumpCompression) {
        let uncompressed = compression == DumpCompression::None;
        self.shared
            .uncompressed
            .store(uncompressed, Ordering::Relaxed);
    }

    /// Queues a dump of a whole channel that the thread reads itself, shard by shard (no records
    /// cross the queue, and the caller does no copying). Setting the returned token makes it stop
    /// at its next shard, leaving the previous dump in place.
    pub fn dump_shards(
        &self,
        channel: &str,
        source: Arc<dyn ShardSource>,
    ) -> io::Result<CancelToken> {
        self.dump_shards_ticketed(channel, source)
            .map(|(cancel, _)| cancel)
    }

    /// [`DumpThread::dump_shards`], also returning the ticket its [`DumpOutcome`] will carry
    /// (tickets start at 1 and grow with every call). Like every command that names a channel,
    /// refused (`InvalidInput`) for a name that is not a valid channel name.
    pub fn dump_shards_ticketed(
        &self,
        channel: &str,
        source: Arc<dyn ShardSource>,
    ) -> io::Result<(CancelToken, u64)> {
        self.queue_dump_shards(channel, source, None)
    }

    /// [`DumpThread::dump_shards_ticketed`] for a dump that covers the change log up to
    /// `log_position` (written in its header; see
    /// [`DumpHeader::log_position`](crate::dump::format::DumpHeader::log_position)). The
    /// caller takes the position before the first shard is read: entries up to it are then
    /// all in the dump, and later ones may be too.
    pub fn dump_shards_covering(
        &self,
        channel: &str,
        source: Arc<dyn ShardSource>,
        log_position: u64,
    ) -> io::Result<(CancelToken, u64)> {
        self.queue_dump_shards(channel, source, Some(log_position))
    }

    fn queue_dump_shards(
        &self,
        channel: &str,
        source: Arc<dyn ShardSource>,
        log_position: Option<u64>,
    ) -> io::Result<(CancelToken, u64)> {
        check_channel_name(channel)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let ticket = self.shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        let command = Command::DumpShards {
            channel: channel.to_string(),
            source,
            cancel: cancel.clone(),
            ticket,
            log_position,
        };
        self.commands.send(command).map_err(|_| gone())?;
        Ok((cancel, ticket))
    }

    /// Sets the function called (on the dump thread) each time a queued chunk is written.
    pub fn set_progress_hook(&self, hook: ProgressHook) {
        *self
            .shared
            .on_progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hook);
    }

    /// Creates `data_dir` if needed and starts the thread.
    pub fn spawn(data_dir: PathBuf) -> io::Result<DumpThread> {
        fs::create_dir_all(&data_dir)?;
        let (commands, command_rx) = mpsc::channel();
        let (outcome_tx, outcomes) = mpsc::channel();
        let (recycle_tx, recycled) = mpsc::sync_channel(CHUNK_QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState {
                queued_chunks: 0,
                alive: true,
            }),
            changed: Condvar::new(),
            thread_id: AtomicI32::new(0),
            idle_allowed: AtomicBool::new(false),
            mode: AtomicU8::new(WriterMode::Background as u8),
            cpu_ns: AtomicU64::new(0),
            progress: AtomicU64::new(0),
            uncompressed: AtomicBool::new(false),
            next_ticket: AtomicU64::new(1),
            on_progress: Mutex::new(None),
            #[cfg(test)]
            write_instead: Mutex::new(None),
        });
        let worker = Worker::new(
            data_dir.clone(),
            outcome_tx,
            recycle_tx,
            Arc::clone(&shared),
            Pacer::new(),
        );
        let guard = AliveGuard(Arc::clone(&shared));
        let handle = std::thread::Builder::new()
            .name("dht-dump".into())
            .spawn(move || {
                let _guard = guard;
                // SAFETY: gettid takes no arguments and cannot fail.
                _guard
                    .0
                    .thread_id
                    .store(unsafe { libc::gettid() }, Ordering::SeqCst);
                let idle = idle_class_is_reversible();
                _guard.0.idle_allowed.store(idle, Ordering::Relaxed);
                if !idle {
                    tracing::info!(
                        "dump writer stays in the normal class, paced to {PACED_SHARE_PERCENT}% \
                         of a core while the node serves: this process may not leave SCHED_IDLE \
                         again (give it LimitNICE=+0 or CAP_SYS_NICE)"
                    );
                }
                let mode = WriterMode::from_u8(_guard.0.mode.load(Ordering::SeqCst));
                apply_mode(0, mode, idle);
                worker.run(command_rx);
            })?;
        Ok(DumpThread {
            commands,
            shared,
            outcomes,
            recycled,
            handle: Some(handle),
            data_dir,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the thread is running. A dead thread refuses every chunk, so an event loop that
    /// sees `try_send_chunk` refuse should also check this (or watch for
    /// [`DumpAction::ThreadDied`]).
    pub fn is_alive(&self) -> bool {
        self.shared.lock().alive
    }

    fn send(&self, command: Command) -> io::Result<()> {
        self.commands.send(command).map_err(|_| gone())
    }

    /// Starts a dump of `channel` (a valid channel name). A dump still open is abandoned.
    pub fn begin(&self, channel: &str) -> io::Result<()> {
        check_channel_name(channel)?;
        self.send(Command::Begin(channel.to_owned(), None, FORMAT_VERSION))
    }

    /// [`DumpThread::begin`] for a dump that covers the change log up to `log_position`
    /// (written in its header): the position the records' source had reached when it started
    /// handing them over.
    pub fn begin_covering(&self, channel: &str, log_position: u64) -> io::Result<()> {
        check_channel_name(channel)?;
        self.send(Command::Begin(
            channel.to_owned(),
            Some(log_position),
            FORMAT_VERSION,
        ))
    }

    /// [`DumpThread::begin`] of a dump of format version 2, whose chunks hold entries laid out
    /// by [`DumpEntry::append_to`](crate::dump::entry::DumpEntry::append_to) (records with
    /// versions, tombstones), covering the change log up to `log_position` if given.
    pub fn begin_entries(&self, channel: &str, log_position: Option<u64>) -> io::Result<()> {
        check_channel_name(channel)?;
        let format = crate::dump::entry::VERSIONED_FORMAT_VERSION;
        self.send(Command::Begin(channel.to_owned(), log_position, format))
    }

    /// Queues a chunk (`count` records laid out by `append_record`, at most 16 MiB) without
    /// blocking; hands it back when [`CHUNK_QUEUE_CAPACITY`] chunks are already queued or the
    /// thread is gone.
    pub fn try_send_chunk(&self, raw: Vec<u8>, count: u32) -> Result<(), Vec<u8>> {
        {
            let mut state = self.shared.lock();
            if !state.alive || state.queued_chunks >= CHUNK_QUEUE_CAPACITY {
                return Err(raw);
            }
            state.queued_chunks += 1;
        }
        self.commands
            .send(Command::Chunk(raw, count))
            .map_err(|mpsc::SendError(command)| {
                self.shared.lock().queued_chunks -= 1;
                match command {
                    Command::Chunk(raw, _) => raw,
                    _ => Vec::new(),
                }
            })
    }

    /// Queues a chunk, waiting for room (for the shutdown dump, when nothing else runs).
    pub fn send_chunk(&self, raw: Vec<u8>, count: u32) -> io::Result<()> {
        {
            let mut state = self.shared.lock();
            while state.alive && state.queued_chunks >= CHUNK_QUEUE_CAPACITY {
                state = self
                    .shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if !state.alive {
                return Err(gone());
            }
            state.queued_chunks += 1;
        }
        self.commands.send(Command::Chunk(raw, count)).map_err(|_| {
            self.shared.lock().queued_chunks -= 1;
            gone()
        })
    }

    /// Completes the current dump: trailer, fsync, renames (see the module doc).
    pub fn finish(&self) -> io::Result<()> {
        self.send(Command::Finish)
    }

    /// Abandons the current dump: its temporary file is deleted, the previous dump stays.
    pub fn abort(&self) -> io::Result<()> {
        self.send(Command::Abort)
    }

    /// For RemoveChannel: moves `<ch>.dump`, `<ch>.dump.backup` and `<ch>.tcm` to
    /// `<data_dir>/removed/<ch>.<unix_s>.dump` (`.dump.backup`, `.tcm`), so they are neither
    /// deleted nor loaded again, and deletes a leftover `<ch>.dump.tmp`. A dump of that channel
    /// still in progress is abandoned.
    pub fn move_aside(&self, channel: &str) -> io::Result<()> {
        check_channel_name(channel)?;
        self.send(Command::MoveAside(channel.to_owned()))
    }

    /// Outcomes reported since the last call (never blocks).
    pub fn poll_outcomes(&mut self) -> Vec<DumpOutcome> {
        let mut outcomes = Vec::new();
        loop {
            match self.outcomes.try_recv() {
                Ok(outcome) => outcomes.push(outcome),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if let Some(outcome) = self.reap() {
                        outcomes.push(outcome);
                    }
                    break;
                }
            }
        }
        outcomes
    }

    /// Joins a thread that ended on its own (it only does so by panicking) and describes it.
    fn reap(&mut self) -> Option<DumpOutcome> {
        let handle = self.handle.take()?;
        let reason = match handle.join() {
            Ok(()) => "it returned".to_owned(),
            Err(panic) => panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "it panicked".to_owned()),
        };
        Some(DumpOutcome {
            channel: String::new(),
            action: DumpAction::ThreadDied,
            records: 0,
            value_bytes: 0,
            bytes: 0,
            seconds: 0.0,
            result: Err(format!("the dump thread stopped unexpectedly: {reason}")),
            ticket: 0,
            log_position: None,
        })
    }

    /// A chunk buffer the thread is done with (empty, capacity kept), if any.
    pub fn recycle(&self) -> Option<Vec<u8>> {
        self.recycled.try_recv().ok()
    }

    /// Blocks until every command sent so far has been carried out (for shutdown). Errors when
    /// the thread is gone.
    pub fn wait_idle(&self) -> io::Result<()> {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        self.send(Command::Sync(done_tx))?;
        done_rx.recv().map_err(|_| gone())
    }

    #[cfg(test)]
    fn crash(&self) {
        let _ = self.commands.send(Command::Panic);
    }

    /// Makes the dumps begun from now on write to `path` instead of their temporary file (see
    /// `Shared::write_instead`); `None` ends it.
    #[cfg(test)]
    fn write_instead(&self, path: Option<&Path>) {
        *self.shared.write_instead.lock().unwrap() = path.map(Path::to_path_buf);
    }
}

impl Drop for DumpThread {
    /// Lets the thread finish the commands already sent (a dump without `finish` is abandoned)
    /// and waits for it.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
