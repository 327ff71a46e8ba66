//! The dump thread: writes channel dumps in the background so that the event loop never waits
//! for the disk.
//!
//! The event loop walks a channel, lays records out with
//! [`append_record`](node_core::protocol::batch::append_record) into chunks, and hands them over:
//! [`begin`](DumpThread::begin), then [`try_send_chunk`](DumpThread::try_send_chunk) as many
//! times as needed (it refuses — returning the chunk — while [`CHUNK_QUEUE_CAPACITY`] chunks are
//! queued, so memory stays bounded and the loop retries on a later turn), then
//! [`finish`](DumpThread::finish). Control commands (`begin`, `finish`, `abort`, `move_aside`)
//! never block. Chunk buffers come back through [`recycle`](DumpThread::recycle).
//!
//! Every `begin` produces exactly one [`DumpOutcome`] (read with
//! [`poll_outcomes`](DumpThread::poll_outcomes)); a failure is reported as soon as it happens,
//! after which the remaining chunks of that dump are discarded and its `finish` does nothing.
//! Every `move_aside` produces one outcome as well. Match on [`DumpOutcome::action`]: an
//! `Err` with [`DumpAction::Aborted`] is a dump the caller (or a RemoveChannel) called off, not a
//! failure.
//!
//! Writing channel `ch`: `<ch>.dump.tmp` is written and fsynced, the current `<ch>.dump` (if any)
//! is renamed to `<ch>.dump.backup` (replacing the older backup), `<ch>.dump.tmp` is renamed to
//! `<ch>.dump`, and the directory is fsynced. Whenever a crash strikes, `<ch>.dump` or
//! `<ch>.dump.backup` holds a complete dump (the loader takes the backup when the dump is
//! missing). A failed dump (disk full, ...) deletes its temporary file and leaves the previous
//! dump and backup as they were.

use super::format::{unix_now, DumpFileWriter};
use node_core::protocol::batch::{append_record, MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};
use node_core::protocol::dht::valid_channel_name;
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

/// Chunks that may wait for the dump thread at once.
pub const CHUNK_QUEUE_CAPACITY: usize = 8;
/// The write buffer in front of a dump file.
pub const WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Uncompressed bytes per block when the thread reads shards itself.
const SHARD_CHUNK_BYTES: usize = 256 * 1024;
/// Where [`DumpThread::move_aside`] puts the files of removed channels.
pub const REMOVED_DIR: &str = "removed";

pub const DUMP_SUFFIX: &str = ".dump";
pub const BACKUP_SUFFIX: &str = ".dump.backup";
pub const TMP_SUFFIX: &str = ".dump.tmp";
pub const TCM_SUFFIX: &str = ".tcm";

/// `<data_dir>/<channel><suffix>`.
pub fn channel_file(data_dir: &Path, channel: &str, suffix: &str) -> PathBuf {
    data_dir.join(format!("{channel}{suffix}"))
}

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
}

enum Command {
    /// Dump a whole channel, reading its shards here (the node's periodic and shutdown dumps).
    DumpShards {
        channel: String,
        source: Arc<dyn ShardSource>,
        cancel: Arc<AtomicBool>,
        ticket: u64,
    },
    Begin(String),
    Chunk(Vec<u8>, u32),
    Finish,
    Abort,
    MoveAside(String),
    Sync(SyncSender<()>),
    #[cfg(test)]
    Panic,
}

/// Records the writer can read itself, one shard at a time (the dht engine's channels). Reading a
/// shard may lock it against the event loop, so `for_each_in_shard` should not be slow.
pub trait ShardSource: Send + Sync {
    fn shard_count(&self) -> usize;
    fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, &[u8]));
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
    /// Shards read so far, over the thread's life: the node watches it to see a starved dump.
    progress: AtomicU64,
    /// The next [`DumpThread::dump_shards_ticketed`] ticket.
    next_ticket: AtomicU64,
    state: Mutex<QueueState>,
    changed: Condvar,
    on_progress: Mutex<Option<ProgressHook>>,
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

/// The dump writer's nice value when it is not (or cannot be) in the idle class.
const DUMP_THREAD_NICE: i32 = 19;

/// Whether a thread of this process may leave the idle class again (root, CAP_SYS_NICE, or an
/// RLIMIT_NICE that allows nice 19 — systemd's `LimitNICE=+19`). Probed on a throwaway thread,
/// because a thread that cannot leave `SCHED_IDLE` stays there for good.
fn idle_class_is_reversible() -> bool {
    let probe = std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` during the call only; pid 0 is this thread.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
                && libc::setpriority(
                    libc::PRIO_PROCESS,
                    libc::gettid() as libc::id_t,
                    DUMP_THREAD_NICE,
                ) == 0
                && libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) == 0
        }
    });
    probe.join().unwrap_or(false)
}

/// Background (`true`): the `SCHED_IDLE` class, so the thread runs only when the event loop has
/// nothing to do — a dump on a node pinned to one core must not take the core from requests, and
/// even a nice-19 time slice is a millisecond of stall. Not background: the normal class at nice
/// 19, a small but certain share of a busy core, for a dump that the load would starve.
/// `thread_id` 0 is the calling thread.
fn set_background(thread_id: i32, background: bool) {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if background {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: sched_setscheduler reads `param` during the call only.
    let class_result = unsafe { libc::sched_setscheduler(thread_id, policy, &param) };
    let class_error = io::Error::last_os_error();
    let who = if thread_id == 0 {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::gettid() }
    } else {
        thread_id
    };
    // SAFETY: setpriority takes no pointers; on Linux, PRIO_PROCESS with a thread id changes
    // that one thread's nice value.
    let nice_result =
        unsafe { libc::setpriority(libc::PRIO_PROCESS, who as libc::id_t, DUMP_THREAD_NICE) };
    if class_result != 0 || nice_result != 0 {
        tracing::warn!(
            "cannot set the dump thread's scheduling (background {background}): class: {class_error}; nice: {}",
            io::Error::last_os_error()
        );
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

    /// Puts the thread in the background (idle) class, or gives it a small share of the CPU
    /// when the load starves it (see [`set_background`]).
    pub fn set_background(&self, background: bool) {
        let thread_id = self.shared.thread_id.load(Ordering::Relaxed);
        if thread_id != 0 && self.shared.idle_allowed.load(Ordering::Relaxed) {
            set_background(thread_id, background);
        }
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
    /// (tickets start at 1 and grow with every call).
    pub fn dump_shards_ticketed(
        &self,
        channel: &str,
        source: Arc<dyn ShardSource>,
    ) -> io::Result<(CancelToken, u64)> {
        let cancel = Arc::new(AtomicBool::new(false));
        let ticket = self.shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        let command = Command::DumpShards {
            channel: channel.to_string(),
            source,
            cancel: cancel.clone(),
            ticket,
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
            progress: AtomicU64::new(0),
            next_ticket: AtomicU64::new(1),
            on_progress: Mutex::new(None),
        });
        let worker = Worker {
            data_dir: data_dir.clone(),
            session: None,
            outcomes: outcome_tx,
            recycle: recycle_tx,
            shared: Arc::clone(&shared),
        };
        let guard = AliveGuard(Arc::clone(&shared));
        let handle = std::thread::Builder::new()
            .name("dht-dump".into())
            .spawn(move || {
                let _guard = guard;
                // SAFETY: gettid takes no arguments and cannot fail.
                _guard
                    .0
                    .thread_id
                    .store(unsafe { libc::gettid() }, Ordering::Relaxed);
                let idle = idle_class_is_reversible();
                _guard.0.idle_allowed.store(idle, Ordering::Relaxed);
                if !idle {
                    tracing::info!(
                        "dump writer runs at nice 19, not in the idle class: this process may not \
                         leave SCHED_IDLE again (give it LimitNICE=+19 or CAP_SYS_NICE)"
                    );
                }
                set_background(0, idle);
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
        if !valid_channel_name(channel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid channel name {channel:?}"),
            ));
        }
        self.send(Command::Begin(channel.to_owned()))
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
        if !valid_channel_name(channel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid channel name {channel:?}"),
            ));
        }
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

// ----- the thread ------------------------------------------------------------------------------

struct Worker {
    data_dir: PathBuf,
    session: Option<Session>,
    outcomes: Sender<DumpOutcome>,
    recycle: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

struct Session {
    channel: String,
    /// The dump_shards ticket (0 for begin/chunk/finish dumps).
    ticket: u64,
    started: Instant,
    /// `None` once the dump failed (its outcome is out; the rest of its commands are ignored).
    writer: Option<DumpFileWriter<BufWriter<File>>>,
}

impl Worker {
    fn run(mut self, commands: Receiver<Command>) {
        while let Ok(command) = commands.recv() {
            match command {
                Command::DumpShards {
                    channel,
                    source,
                    cancel,
                    ticket,
                } => self.dump_shards(channel, &*source, &cancel, ticket),
                Command::Begin(channel) => self.begin(channel, 0),
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

    fn begin(&mut self, channel: String, ticket: u64) {
        if let Some(current) = &self.session {
            let reason = format!("dump abandoned: a dump of {channel} began before it finished");
            if current.writer.is_some() {
                tracing::warn!("dump of channel {}: {reason}", current.channel);
            }
            self.abandon(reason);
        }
        let tmp = self.tmp_path(&channel);
        let started = Instant::now();
        let writer = File::create(&tmp).and_then(|file| {
            DumpFileWriter::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file), &channel)
        });
        let failed = writer.as_ref().err().map(|err| err.to_string());
        self.session = Some(Session {
            channel,
            ticket,
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

    /// Dumps a whole channel from its shards: the same file, checks and rotation as
    /// begin/chunks/finish, but the records never cross a queue.
    fn dump_shards(
        &mut self,
        channel: String,
        source: &dyn ShardSource,
        cancel: &AtomicBool,
        ticket: u64,
    ) {
        self.begin(channel, ticket);
        let mut raw = Vec::with_capacity(SHARD_CHUNK_BYTES + 4096);
        let mut count = 0u32;
        for index in 0..source.shard_count() {
            if cancel.load(Ordering::Relaxed) {
                self.abandon(
                    "dump cancelled (channel removed, or the node is shutting down)".into(),
                );
                return;
            }
            self.shared.progress.fetch_add(1, Ordering::Relaxed);
            source.for_each_in_shard(index, &mut |key, value| {
                if raw.len() + RECORD_OVERHEAD + value.len() > MAX_BATCH_UNCOMPRESSED_BYTES {
                    self.write_raw(&raw, count);
                    raw.clear();
                    count = 0;
                }
                append_record(&mut raw, key, value);
                count += 1;
            });
            if raw.len() >= SHARD_CHUNK_BYTES {
                self.write_raw(&raw, count);
                raw.clear();
                count = 0;
            }
            if self
                .session
                .as_ref()
                .is_none_or(|session| session.writer.is_none())
            {
                self.session = None; // Failed and reported; nothing more to write.
                return;
            }
        }
        if count > 0 {
            self.write_raw(&raw, count);
        }
        self.finish();
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
        let bytes = writer.bytes_written() + super::format::END_LEN as u64;
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
        });
    }

    /// Trailer, fsync, backup rotation, rename into place, directory fsync.
    fn complete(
        &self,
        channel: &str,
        writer: DumpFileWriter<BufWriter<File>>,
    ) -> Result<(), String> {
        let tmp = self.tmp_path(channel);
        let dump = channel_file(&self.data_dir, channel, DUMP_SUFFIX);
        let backup = channel_file(&self.data_dir, channel, BACKUP_SUFFIX);
        let written = writer
            .finish()
            .and_then(|(buffered, _)| buffered.into_inner().map_err(|err| err.into_error()))
            .and_then(|file| file.sync_all());
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

/// `<removed>/<ch>.<stamp><suffix>`, or `<ch>.<stamp>-<n><suffix>` if that is taken.
pub(crate) fn free_name(removed: &Path, channel: &str, stamp: u64, suffix: &str) -> PathBuf {
    let mut candidate = removed.join(format!("{channel}.{stamp}{suffix}"));
    let mut n = 1u32;
    while fs::symlink_metadata(&candidate).is_ok() {
        candidate = removed.join(format!("{channel}.{stamp}-{n}{suffix}"));
        n += 1;
    }
    candidate
}

fn remove_tmp(tmp: &Path) {
    if let Err(err) = fs::remove_file(tmp) {
        if err.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot delete {}: {err}", tmp.display());
        }
    }
}

/// Makes renames in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::format::read_dump;
    use node_core::protocol::batch::append_record;

    fn chunk(records: &[(u64, &[u8])]) -> (Vec<u8>, u32) {
        let mut raw = Vec::new();
        for (key, value) in records {
            append_record(&mut raw, *key, value);
        }
        (raw, records.len() as u32)
    }

    fn dump_channel(
        thread: &mut DumpThread,
        channel: &str,
        records: &[(u64, &[u8])],
    ) -> DumpOutcome {
        thread.begin(channel).unwrap();
        for part in records.chunks(2) {
            let (raw, count) = chunk(part);
            thread.send_chunk(raw, count).unwrap();
        }
        thread.finish().unwrap();
        thread.wait_idle().unwrap();
        let mut outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 1, "{outcomes:?}");
        outcomes.pop().unwrap()
    }

    fn read_file(path: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut got = Vec::new();
        read_dump(File::open(path).unwrap(), |key, value| {
            got.push((key, value.to_vec()))
        })
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        got
    }

    fn owned(records: &[(u64, &[u8])]) -> Vec<(u64, Vec<u8>)> {
        records.iter().map(|(k, v)| (*k, v.to_vec())).collect()
    }

    const FIRST: &[(u64, &[u8])] = &[(1, b"one"), (2, b"two"), (3, b"three")];
    const SECOND: &[(u64, &[u8])] = &[(4, b"four"), (5, b"five")];

    #[test]
    fn second_dump_replaces_the_first_which_becomes_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        let outcome = dump_channel(&mut thread, "ch", FIRST);
        assert_eq!(outcome.result, Ok(()));
        assert_eq!((outcome.records, outcome.value_bytes), (3, 11));
        let dump = dir.path().join("ch.dump");
        assert_eq!(outcome.bytes, fs::metadata(&dump).unwrap().len());
        assert!(!dir.path().join("ch.dump.backup").exists());

        let outcome = dump_channel(&mut thread, "ch", SECOND);
        assert_eq!(outcome.result, Ok(()));
        assert_eq!(read_file(&dump), owned(SECOND));
        assert_eq!(read_file(&dir.path().join("ch.dump.backup")), owned(FIRST));
        assert!(!dir.path().join("ch.dump.tmp").exists());

        // The chunk buffers came back for reuse.
        assert!(thread.recycle().is_some());
    }

    #[test]
    fn disk_full_keeps_the_previous_dump_and_backup() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        dump_channel(&mut thread, "ch", FIRST);
        dump_channel(&mut thread, "ch", SECOND);
        // Every write to the temporary file now fails with ENOSPC.
        std::os::unix::fs::symlink("/dev/full", dir.path().join("ch.dump.tmp")).unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let outcome = dump_channel(&mut thread, "ch", &[(9, &big), (10, &big), (11, b"x")]);
        let error = outcome.result.unwrap_err();
        assert!(error.contains("No space left"), "{error}");
        assert_eq!(read_file(&dir.path().join("ch.dump")), owned(SECOND));
        assert_eq!(read_file(&dir.path().join("ch.dump.backup")), owned(FIRST));
        assert!(fs::symlink_metadata(dir.path().join("ch.dump.tmp")).is_err());

        // The thread carries on.
        assert_eq!(dump_channel(&mut thread, "ch", FIRST).result, Ok(()));
        assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    }

    #[test]
    fn failing_rename_keeps_the_previous_dump() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        dump_channel(&mut thread, "ch", FIRST);
        // A non-empty directory where the backup goes: renaming the dump onto it fails.
        fs::create_dir_all(dir.path().join("ch.dump.backup/x")).unwrap();
        let outcome = dump_channel(&mut thread, "ch", SECOND);
        assert!(outcome.result.unwrap_err().contains("cannot rename"));
        assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
        assert!(!dir.path().join("ch.dump.tmp").exists());
    }

    #[test]
    fn a_temporary_file_that_cannot_be_created_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        dump_channel(&mut thread, "ch", FIRST);
        fs::create_dir(dir.path().join("ch.dump.tmp")).unwrap();
        thread.begin("ch").unwrap();
        thread.wait_idle().unwrap();
        let outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 1);
        assert!(outcomes[0]
            .result
            .as_ref()
            .unwrap_err()
            .contains("cannot create"));
        // The rest of that dump is ignored; no second outcome.
        let (raw, count) = chunk(SECOND);
        thread.send_chunk(raw, count).unwrap();
        thread.finish().unwrap();
        thread.wait_idle().unwrap();
        assert!(thread.poll_outcomes().is_empty());
        assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    }

    #[test]
    fn move_aside_moves_dump_backup_and_tcm_into_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        dump_channel(&mut thread, "ch", FIRST);
        dump_channel(&mut thread, "ch", SECOND);
        dump_channel(&mut thread, "other", FIRST);
        fs::write(dir.path().join("ch.tcm"), b"old").unwrap();
        fs::write(dir.path().join("ch.dump.tmp"), b"leftover").unwrap();
        thread.move_aside("ch").unwrap();
        thread.wait_idle().unwrap();
        let outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].action, DumpAction::MoveAside);
        assert_eq!(outcomes[0].result, Ok(()));
        for suffix in [".dump", ".dump.backup", ".tcm", ".dump.tmp"] {
            assert!(!dir.path().join(format!("ch{suffix}")).exists(), "{suffix}");
        }
        assert!(dir.path().join("other.dump").exists());
        let mut removed: Vec<String> = fs::read_dir(dir.path().join(REMOVED_DIR))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        removed.sort();
        assert_eq!(removed.len(), 3, "{removed:?}");
        let stamp = removed[0].split('.').nth(1).unwrap().to_owned();
        assert!(stamp.parse::<u64>().is_ok());
        assert_eq!(
            removed,
            vec![
                format!("ch.{stamp}.dump"),
                format!("ch.{stamp}.dump.backup"),
                format!("ch.{stamp}.tcm")
            ]
        );
        let moved = dir.path().join(REMOVED_DIR).join(&removed[0]);
        assert_eq!(read_file(&moved), owned(SECOND));

        // Removing again within the same second does not overwrite the first removal.
        dump_channel(&mut thread, "ch", FIRST);
        thread.move_aside("ch").unwrap();
        thread.wait_idle().unwrap();
        assert_eq!(thread.poll_outcomes()[0].result, Ok(()));
        assert_eq!(
            fs::read_dir(dir.path().join(REMOVED_DIR)).unwrap().count(),
            4
        );
        assert_eq!(read_file(&moved), owned(SECOND));
    }

    #[test]
    fn move_aside_during_a_dump_abandons_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        thread.begin("ch").unwrap();
        let (raw, count) = chunk(FIRST);
        thread.send_chunk(raw, count).unwrap();
        thread.move_aside("ch").unwrap();
        thread.finish().unwrap();
        thread.wait_idle().unwrap();
        let outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert_eq!(outcomes[0].action, DumpAction::Aborted);
        assert!(outcomes[0].result.is_err());
        assert_eq!(outcomes[1].action, DumpAction::MoveAside);
        assert!(!dir.path().join("ch.dump").exists());
        assert!(!dir.path().join("ch.dump.tmp").exists());
    }

    #[test]
    fn abort_deletes_the_temporary_file_and_keeps_the_dump() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        dump_channel(&mut thread, "ch", FIRST);
        thread.begin("ch").unwrap();
        let (raw, count) = chunk(SECOND);
        thread.send_chunk(raw, count).unwrap();
        thread.abort().unwrap();
        thread.wait_idle().unwrap();
        let outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].action, DumpAction::Aborted);
        assert_eq!(outcomes[0].result, Err("dump aborted".to_owned()));
        assert!(!dir.path().join("ch.dump.tmp").exists());
        assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
        assert!(thread.begin("../etc").is_err());
    }

    /// While the thread is stuck (here: opening a FIFO nobody reads), chunks beyond the queue
    /// capacity are handed back instead of blocking the caller.
    #[test]
    fn a_full_queue_hands_chunks_back() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ch.dump.tmp");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        thread.begin("ch").unwrap();
        for _ in 0..CHUNK_QUEUE_CAPACITY {
            let (raw, count) = chunk(FIRST);
            thread.try_send_chunk(raw, count).unwrap();
        }
        let (raw, count) = chunk(SECOND);
        let back = thread.try_send_chunk(raw.clone(), count).unwrap_err();
        assert_eq!(back, raw);
        thread.abort().unwrap(); // Control commands do not wait for room.

        // Unblock the thread by reading the FIFO.
        let reader = std::thread::spawn(move || {
            let mut sink = Vec::new();
            io::Read::read_to_end(&mut File::open(&fifo).unwrap(), &mut sink).unwrap();
        });
        thread.wait_idle().unwrap();
        reader.join().unwrap();
        let outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].action, DumpAction::Aborted);
        assert_eq!(outcomes[0].result, Err("dump aborted".to_owned()));
        thread.try_send_chunk(raw, count).unwrap();
        let mut recycled = 0;
        while thread.recycle().is_some() {
            recycled += 1;
        }
        assert!(recycled >= CHUNK_QUEUE_CAPACITY, "{recycled}");
    }

    #[test]
    fn a_dead_thread_makes_calls_fail_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        thread.crash();
        while thread.is_alive() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(thread.begin("ch").is_err());
        assert!(thread.wait_idle().is_err());
        let (raw, count) = chunk(FIRST);
        assert!(thread.try_send_chunk(raw.clone(), count).is_err());
        assert!(thread.send_chunk(raw, count).is_err());
        let outcomes = thread.poll_outcomes();
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].action, DumpAction::ThreadDied);
        assert!(outcomes[0]
            .result
            .as_ref()
            .unwrap_err()
            .contains("test-induced panic"));
        assert!(thread.poll_outcomes().is_empty());
    }
}
