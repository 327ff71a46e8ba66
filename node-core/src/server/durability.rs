//! Durability for the nodes that write to disk (the logfiles node's buckets, the dht's change
//! log): the policy their config names ([`DurabilityPolicy`], with [`check_interval_ms`] for its
//! interval key), the timer of the `interval` policy ([`IntervalTimer`]), and group commit off
//! the event loop ([`Syncer`]): a thread that fdatasyncs the files of one group commit at a time
//! and reports back, waking the loop. One implementation serves every node.
//!
//! Epochs: every record written is part of the current epoch. [`Syncer::dispatch`] hands the
//! files written so far to the thread and says which epoch covers them. One job is synced at a
//! time; a job dispatched meanwhile waits, and every later one joins it until the thread starts
//! it, the moment the first is done: one fsync then covers everything written while the first
//! ran (group commit, pipelined). Epochs complete in order, so "epoch E is durable" means every
//! record written before E's last dispatch is on disk.
//!
//! Gathering: writers that wait for their reply before writing again (a client at P=1) would
//! otherwise split into two groups that alternate, each commit carrying half of them — those
//! answered by one commit come back while the next, already started, runs, and wait for the one
//! after. So before the thread starts a job that carries fewer waiting replies than there were
//! writers when the last commit ended (its replies and those already waiting), it holds the job
//! a while for them to join it ([`Gathering`]): at most as long as the last commit took, and
//! never more than [`MAX_GATHER_WINDOW`]. A job no reply waits for (`interval`) is never held.
//!
//! Page cache: a job may name byte ranges its fsyncs make durable that are better dropped from
//! the page cache afterwards ([`SyncJob::with_uncache`]: the dht's change log, read again only
//! at a restart); the thread drops them after reporting the job done, and never once an fsync
//! of the thread has failed ([`Uncacher`]).

use crate::config::ConfigError;
use crate::stats::LatencyHistogram;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// When a write is acknowledged and when data is fsynced: the logfiles node's `fsync` key and
/// the dht node's `durability` key take these three names (docs/protocol.md §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityPolicy {
    /// Never fsync (the OS writes the data back): a process crash loses nothing written, a
    /// machine crash may lose what the OS had not written yet.
    None,
    /// Fsync every interval (the node's `..._interval_ms` key); writes are acknowledged once
    /// written, so a machine crash loses at most about one interval of them.
    Interval,
    /// Acknowledge a write only after its data is fsynced; concurrent writes share one fsync
    /// (group commit).
    Always,
}

impl DurabilityPolicy {
    /// Whether the node fsyncs at all (and so runs a [`Syncer`]).
    pub fn syncs(self) -> bool {
        self != DurabilityPolicy::None
    }

    /// Whether a write waits for its group commit before it is answered.
    pub fn waits_for_sync(self) -> bool {
        self == DurabilityPolicy::Always
    }
}

/// The range an `interval` policy's interval may take, in milliseconds: 1 ms to one hour.
pub const INTERVAL_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=3_600_000;

/// Checks an interval key (`logfiles.fsync_interval_ms`, `dht.durability_interval_ms`); the
/// error names `key`.
pub fn check_interval_ms(key: &'static str, interval_ms: u32) -> Result<(), ConfigError> {
    if INTERVAL_MS_RANGE.contains(&interval_ms) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        problem: format!(
            "{interval_ms} is not between {} and {}",
            INTERVAL_MS_RANGE.start(),
            INTERVAL_MS_RANGE.end()
        ),
    })
}

/// The clock of the `interval` policy: due once `interval` has passed since it was last
/// restarted (a node checks it on its tick and restarts it when it dispatches a commit).
#[derive(Debug, Clone, Copy)]
pub struct IntervalTimer {
    interval: Duration,
    last: Instant,
}

impl IntervalTimer {
    /// A timer that is first due `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> IntervalTimer {
        IntervalTimer {
            interval,
            last: now,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the interval has passed since the last restart.
    pub fn is_due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= self.interval
    }

    /// How long until it is due (zero when it is).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.interval
            .saturating_sub(now.saturating_duration_since(self.last))
    }

    /// Starts the next interval at `now`.
    pub fn restart(&mut self, now: Instant) {
        self.last = now;
    }
}

/// One group commit: the files to fdatasync and the directories whose entries must be durable
/// (new bucket files and their slot and channel directories).
#[derive(Debug, Default)]
pub struct SyncJob {
    pub files: Vec<Arc<File>>,
    pub dirs: Vec<PathBuf>,
    /// Byte ranges to drop from the page cache once every fsync of the job succeeded (whole
    /// pages of these files, written for good): bytes only a restart reads again, whose pages
    /// are better reused than kept ([`SyncJob::with_uncache`], [`Uncacher`]).
    pub uncache: Vec<(Arc<File>, Range<u64>)>,
    /// Replies that wait for this commit ([`GroupCommit`](super::group_commit::GroupCommit)
    /// counts them): what the thread's [`Gathering`] weighs.
    pub(crate) waiting_replies: usize,
}

impl SyncJob {
    pub fn new(files: Vec<Arc<File>>, dirs: Vec<PathBuf>) -> SyncJob {
        SyncJob {
            files,
            dirs,
            uncache: Vec::new(),
            waiting_replies: 0,
        }
    }

    /// This job, dropping `ranges` from the page cache once its fsyncs succeeded (and no fsync
    /// of the thread failed before: [`Uncacher`]). A range must hold only bytes written before
    /// the job and never written again: the kernel drops the clean pages wholly inside it, and
    /// a page the writer still appends to would have to be read back from disk first.
    pub fn with_uncache(mut self, ranges: Vec<(Arc<File>, Range<u64>)>) -> SyncJob {
        self.uncache = ranges;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// This job, with `count` replies waiting for its commit.
    pub(crate) fn with_waiting_replies(mut self, count: usize) -> SyncJob {
        self.waiting_replies = count;
        self
    }

    /// Adds `other`'s files and directories (each file and directory once), and its waiting
    /// replies.
    fn join(&mut self, other: SyncJob) {
        self.waiting_replies += other.waiting_replies;
        self.uncache.extend(other.uncache);
        for file in other.files {
            if !self.files.iter().any(|known| Arc::ptr_eq(known, &file)) {
                self.files.push(file);
            }
        }
        for dir in other.dirs {
            if !self.dirs.contains(&dir) {
                self.dirs.push(dir);
            }
        }
    }
}

/// The longest the sync thread holds a job for more writers to join it (see the module doc): a
/// commit starts at most this much later than it could have.
pub const MAX_GATHER_WINDOW: Duration = Duration::from_millis(1);

/// What the sync thread learnt from its last commit, to decide whether to hold the next job
/// (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Gathering {
    /// The writers when the last commit ended: the replies it answered and those already
    /// waiting for the next one.
    writers: usize,
    /// How long a job may be held: the last commit's duration, within the thread's bound.
    window: Duration,
}

impl Gathering {
    /// After a commit that took `took` and answered `answered` replies, with `waiting` more
    /// already waiting for the next; `window` bounds the hold ([`MAX_GATHER_WINDOW`]).
    fn after(
        answered: usize,
        waiting: usize,
        took: Duration,
        window: fn(Duration) -> Duration,
    ) -> Gathering {
        Gathering {
            writers: answered.saturating_add(waiting),
            window: window(took),
        }
    }

    /// How much longer to hold a job `waiting_replies` wait for, held `held` so far: `None`
    /// to start it now (as many replies wait as there were writers, or the window has passed,
    /// or no reply waits at all).
    fn hold_for(&self, waiting_replies: usize, held: Duration) -> Option<Duration> {
        if waiting_replies == 0 || waiting_replies >= self.writers || held >= self.window {
            return None;
        }
        Some(self.window - held)
    }
}

/// The production window: the last commit's duration, at most [`MAX_GATHER_WINDOW`].
fn last_commit_window(took: Duration) -> Duration {
    took.min(MAX_GATHER_WINDOW)
}

/// What a finished job reports.
#[derive(Debug)]
pub struct SyncDone {
    pub epoch: u64,
    /// The first failure, naming what failed.
    pub result: Result<(), String>,
    pub took: Duration,
}

/// The job the sync thread takes next, and whether the loop has gone.
#[derive(Debug, Default)]
struct Queue {
    /// Dispatched, not started yet: jobs dispatched meanwhile join it, so that one fsync covers
    /// everything written until the moment it starts.
    next: Option<(u64, SyncJob)>,
    closed: bool,
    /// Whether the thread holds `next` for more writers ([`Gathering`]): a dispatch that joins
    /// it then wakes the thread to count again (and only then, to spare the loop a syscall).
    holding: bool,
}

/// What the event loop and the sync thread share.
#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Poisoned only if a holder panicked; the queue is whole either way (one assignment).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loop has gone: the thread syncs what is left (never held) and ends.
    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The sync thread's next job: waits for one, then holds it while `gathering` says so
    /// (never once the loop has gone); `None` once the loop has gone and no job is left.
    fn take(&self, gathering: &Gathering) -> Option<(u64, SyncJob)> {
        let mut queue = self.lock();
        let mut held_since: Option<Instant> = None;
        loop {
            let waiting_replies = match &queue.next {
                Some((_, job)) => job.waiting_replies,
                None if queue.closed => return None,
                None => {
                    queue = self
                        .ready
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
            };
            let held = held_since.get_or_insert_with(Instant::now).elapsed();
            let hold = gathering
                .hold_for(waiting_replies, held)
                .filter(|_| !queue.closed);
            let Some(rest) = hold else {
                queue.holding = false;
                return queue.next.take();
            };
            queue.holding = true;
            queue = self
                .ready
                .wait_timeout(queue, rest)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The sync thread and the epoch counters.
#[derive(Debug)]
pub struct Syncer {
    shared: Arc<Shared>,
    done: Receiver<SyncDone>,
    /// The epoch the next job that cannot join a waiting one opens.
    current_epoch: u64,
    /// Epochs dispatched and not yet polled done, oldest first (at most one of them waits to
    /// start).
    outstanding: VecDeque<u64>,
    /// Jobs completed, and the total time they took (for stats).
    pub completed: u64,
    pub failures: u64,
    pub total_sync_time: Duration,
    /// How long each completed group commit took (`/metrics`).
    pub latency: LatencyHistogram,
}

impl Syncer {
    /// Starts the thread, named `thread_name`; `wake` is called after each job (it wakes the
    /// event loop). Under a real-time policy (`chrt -f`) the thread runs one priority above its
    /// starter ([`above_the_loop`]).
    pub fn spawn(thread_name: &str, wake: impl Fn() + Send + 'static) -> std::io::Result<Syncer> {
        Syncer::spawn_gathering(thread_name, last_commit_window, wake)
    }

    /// [`spawn`](Self::spawn), holding jobs for at most `window(last commit's duration)`.
    fn spawn_gathering(
        thread_name: &str,
        window: fn(Duration) -> Duration,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Syncer> {
        let (syncer, shared, done_tx) = Syncer::unstarted();
        std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                above_the_loop();
                let mut gathering = Gathering::default();
                let mut uncacher = Uncacher::default();
                while let Some((epoch, mut job)) = shared.take(&gathering) {
                    let started = Instant::now();
                    let result = run_job(&job);
                    let took = started.elapsed();
                    let waiting = shared
                        .lock()
                        .next
                        .as_ref()
                        .map_or(0, |(_, next)| next.waiting_replies);
                    gathering = Gathering::after(job.waiting_replies, waiting, took, window);
                    let uncache = std::mem::take(&mut job.uncache);
                    let synced = result.is_ok();
                    drop(job);
                    if done_tx
                        .send(SyncDone {
                            epoch,
                            result,
                            took,
                        })
                        .is_err()
                    {
                        return;
                    }
                    wake();
                    // After the report: the replies wait for the fsync, not for this.
                    uncacher.drop_after(&uncache, synced);
                }
            })?;
        Ok(syncer)
    }

    /// The loop's side, and what its thread needs: the queue and where to report.
    fn unstarted() -> (Syncer, Arc<Shared>, mpsc::Sender<SyncDone>) {
        let shared = Arc::new(Shared::default());
        let (done_tx, done) = mpsc::channel();
        let syncer = Syncer {
            shared: Arc::clone(&shared),
            done,
            current_epoch: 1,
            outstanding: VecDeque::with_capacity(2),
            completed: 0,
            failures: 0,
            total_sync_time: Duration::ZERO,
            latency: LatencyHistogram::default(),
        };
        (syncer, shared, done_tx)
    }

    /// The sync thread a node with `policy` needs: none under `none`.
    pub fn for_policy(
        policy: DurabilityPolicy,
        thread_name: &str,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Option<Syncer>> {
        if policy.syncs() {
            Syncer::spawn(thread_name, wake).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The epoch a job dispatched now opens, unless it joins one waiting to start.
    pub fn current_epoch(&self) -> u64 {
        self.current_epoch
    }

    /// Whether a job is being synced or waits to start.
    pub fn is_busy(&self) -> bool {
        !self.outstanding.is_empty()
    }

    /// Hands `job` (files written so far) to the thread; returns the epoch that covers it.
    /// While a job is being synced the next one waits, and every job dispatched meanwhile joins
    /// it: the thread starts it the moment the first is done, covering all of them with one
    /// fsync each of their files (group commit, pipelined). Otherwise the job opens
    /// [`current_epoch`](Self::current_epoch).
    pub fn dispatch(&mut self, job: SyncJob) -> Result<u64, String> {
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err("the sync thread has stopped".to_string());
        }
        if let Some((epoch, waiting)) = &mut queue.next {
            waiting.join(job);
            let epoch = *epoch;
            if queue.holding {
                drop(queue);
                self.shared.ready.notify_one();
            }
            return Ok(epoch);
        }
        let epoch = self.current_epoch;
        queue.next = Some((epoch, job));
        drop(queue);
        self.shared.ready.notify_one();
        self.outstanding.push_back(epoch);
        self.current_epoch += 1;
        Ok(epoch)
    }

    /// The next finished job, if there is one.
    pub fn poll(&mut self) -> Option<SyncDone> {
        match self.done.try_recv() {
            Ok(done) => Some(self.on_done(done)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => self.stopped(),
        }
    }

    /// Waits for the oldest job outstanding (shutdown: call until `None`).
    pub fn wait(&mut self) -> Option<SyncDone> {
        self.outstanding.front()?;
        match self.done.recv() {
            Ok(done) => Some(self.on_done(done)),
            Err(_) => self.stopped(),
        }
    }

    fn on_done(&mut self, done: SyncDone) -> SyncDone {
        let expected = self.outstanding.pop_front();
        debug_assert_eq!(Some(done.epoch), expected, "epochs complete in order");
        self.completed += 1;
        self.total_sync_time += done.took;
        self.latency.record(done.took);
        if done.result.is_err() {
            self.failures += 1;
        }
        done
    }

    /// The thread is gone: the oldest job outstanding fails.
    fn stopped(&mut self) -> Option<SyncDone> {
        let epoch = self.outstanding.pop_front()?;
        self.failures += 1;
        Some(SyncDone {
            epoch,
            result: Err("the sync thread has stopped".into()),
            took: Duration::ZERO,
        })
    }
}

/// A sync thread the tests drive by hand: they start jobs and report them done.
#[cfg(test)]
pub(crate) struct ManualThread {
    shared: Arc<Shared>,
    done_tx: mpsc::Sender<SyncDone>,
}

#[cfg(test)]
impl ManualThread {
    /// A syncer whose thread is this.
    pub(crate) fn syncer() -> (Syncer, ManualThread) {
        let (syncer, shared, done_tx) = Syncer::unstarted();
        (syncer, ManualThread { shared, done_tx })
    }

    /// Starts the job waiting (as the thread does when it takes it).
    pub(crate) fn start(&self) -> Option<(u64, SyncJob)> {
        self.shared.lock().next.take()
    }

    /// Reports `epoch` done with `result`.
    pub(crate) fn report(&self, epoch: u64, result: Result<(), String>) {
        let done = SyncDone {
            epoch,
            result,
            took: Duration::ZERO,
        };
        self.done_tx.send(done).unwrap();
    }

    /// The thread is gone: dispatches fail from now on.
    pub(crate) fn close(&self) {
        self.shared.close();
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Under a real-time policy (the benchmarks' `chrt -f`, a deployment's), raises the calling
/// thread one priority above the thread that started it (the event loop, on the same core).
/// At equal priority a woken real-time thread waits until the running one blocks, so a sync
/// thread woken for a job, or by its fsync completing, would wait for the loop's whole pass
/// (hundreds of µs of replies) before it starts the next fsync. It only ever blocks in the
/// kernel, so running first costs the loop a few µs per commit. Without a real-time policy the
/// normal scheduler runs a woken thread early by itself; nothing changes then.
fn above_the_loop() {
    // SAFETY: sched_getscheduler takes no pointers; pid 0 is this thread.
    let policy = unsafe { libc::sched_getscheduler(0) };
    if policy != libc::SCHED_FIFO && policy != libc::SCHED_RR {
        return;
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_getparam writes one sched_param into `param`, which outlives the call.
    if unsafe { libc::sched_getparam(0, &mut param) } != 0 {
        return;
    }
    // SAFETY: takes no pointers.
    if param.sched_priority >= unsafe { libc::sched_get_priority_max(policy) } {
        return;
    }
    param.sched_priority += 1;
    // SAFETY: sched_setscheduler reads `param` during the call only; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        tracing::warn!(
            "the sync thread cannot run above the event loop's real-time priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Fsyncs a directory's entries. A directory that no longer exists (its channel was removed
/// meanwhile) has nothing left to make durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match crate::data_dir::sync_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn run_job(job: &SyncJob) -> Result<(), String> {
    let mut first_error = None;
    for file in &job.files {
        if let Err(e) = file.sync_data() {
            first_error.get_or_insert(format!("fdatasync: {e}"));
        }
    }
    for dir in &job.dirs {
        if let Err(e) = sync_dir(dir) {
            first_error.get_or_insert(format!("fsync of directory {}: {e}", dir.display()));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Drops the ranges of the jobs synced from the page cache ([`SyncJob::with_uncache`]), as long
/// as no fsync of this thread ever failed. Once one has, never again: Linux reports a failed
/// writeback once per open file, so a later fsync of the same file succeeds while the pages
/// that failed sit clean in the page cache — their only good copy, which a restart's replay
/// reads.
#[derive(Default)]
struct Uncacher {
    a_sync_failed: bool,
}

impl Uncacher {
    fn drop_after(&mut self, ranges: &[(Arc<File>, Range<u64>)], synced: bool) {
        self.a_sync_failed |= !synced;
        if self.a_sync_failed {
            return;
        }
        for (file, range) in ranges {
            crate::page_cache::drop_range(file, range);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn epochs_complete_in_order_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut syncer = Syncer::spawn("test-sync", move || {
            let _ = tx.send(());
        })
        .unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        assert_eq!(syncer.current_epoch(), 1);
        let epoch = syncer
            .dispatch(SyncJob {
                files: vec![file],
                dirs: vec![dir.path().to_path_buf()],
                ..SyncJob::default()
            })
            .unwrap();
        assert_eq!(epoch, 1);
        assert_eq!(syncer.current_epoch(), 2);
        rx.recv().unwrap();
        let done = syncer.poll().unwrap();
        assert_eq!((done.epoch, done.result), (1, Ok(())));
        assert!(!syncer.is_busy());

        syncer
            .dispatch(SyncJob {
                files: vec![],
                // Not a directory (a path through a file): the fsync cannot be done.
                dirs: vec![dir.path().join("f").join("under-a-file")],
                ..SyncJob::default()
            })
            .unwrap();
        rx.recv().unwrap();
        let done = syncer.poll().unwrap();
        assert_eq!(done.epoch, 2);
        assert!(done.result.unwrap_err().contains("under-a-file"));
        assert_eq!(syncer.failures, 1);
    }

    // cached_pages and disk_backed_tempdir: `testkit::page_cache`'s, which this crate cannot
    // use (testkit uses it).
    fn page_bytes() -> usize {
        crate::page_cache::page_bytes() as usize
    }

    /// How many pages of `range` of `file` are in the page cache (`mincore` of a mapping that
    /// is never touched, so it faults nothing in).
    fn cached_pages(file: &File, range: Range<u64>) -> usize {
        let len = usize::try_from(range.end - range.start).unwrap();
        let mut resident = vec![0u8; len.div_ceil(page_bytes())];
        // SAFETY: a read-only shared mapping of `len` bytes of the open file, never read and
        // unmapped before returning; mincore writes one byte per page of it into `resident`,
        // which has that many.
        unsafe {
            let offset = libc::off_t::try_from(range.start).unwrap();
            let fd = file.as_raw_fd();
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                offset,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            assert_eq!(libc::mincore(addr, len, resident.as_mut_ptr()), 0);
            libc::munmap(addr, len);
        }
        resident.iter().filter(|&&byte| byte & 1 == 1).count()
    }

    /// A directory on a disk-backed file system: the kernel keeps tmpfs pages whatever it is
    /// advised, so a tmpfs `/tmp` would make the page-cache tests fail; then the crate's own.
    fn disk_backed_tempdir() -> tempfile::TempDir {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs writes into `stats`, a zeroed struct of its type, during the call.
        let f_type = unsafe {
            let mut stats: libc::statfs = std::mem::zeroed();
            assert_eq!(libc::statfs(path.as_ptr(), &mut stats), 0);
            stats.f_type as i64
        };
        if f_type == TMPFS_MAGIC {
            return tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        }
        dir
    }

    /// A file of `mib` MiB written in 8-KiB steps, as a log's groups are (small folios, none
    /// across a MiB), and the pages of a MiB.
    fn written_file(dir: &std::path::Path, mib: u64) -> (Arc<File>, usize) {
        let path = dir.join("log");
        let file = File::options()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&path);
        let file = Arc::new(file.unwrap());
        for offset in (0..mib << 20).step_by(8192) {
            std::os::unix::fs::FileExt::write_all_at(&*file, &[1u8; 8192], offset).unwrap();
        }
        let pages_per_mib = (1 << 20) / page_bytes();
        assert_eq!(
            cached_pages(&file, 0..mib << 20),
            mib as usize * pages_per_mib
        );
        (file, pages_per_mib)
    }

    /// Dispatches `job` and waits until the thread is done with it, dropping its ranges too
    /// (an empty job after it: the thread drops a job's ranges before it takes the next).
    fn run_through(syncer: &mut Syncer, woken: &mpsc::Receiver<()>, job: SyncJob) -> SyncDone {
        syncer.dispatch(job).unwrap();
        woken.recv().unwrap();
        let done = syncer.poll().unwrap();
        syncer.dispatch(SyncJob::default()).unwrap();
        woken.recv().unwrap();
        assert_eq!(syncer.poll().unwrap().result, Ok(()));
        done
    }

    fn waking_syncer() -> (Syncer, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let syncer = Syncer::spawn("test-sync", move || {
            let _ = tx.send(());
        });
        (syncer.unwrap(), rx)
    }

    /// A synced job's uncache ranges leave the page cache, those ranges only.
    #[test]
    fn a_synced_jobs_uncache_ranges_leave_the_page_cache() {
        const MIB: u64 = 1 << 20;
        let dir = disk_backed_tempdir();
        let (mut syncer, woken) = waking_syncer();
        let (file, pages_per_mib) = written_file(dir.path(), 3);
        let job = SyncJob::new(vec![Arc::clone(&file)], vec![]).with_uncache(vec![
            (Arc::clone(&file), 0..MIB),
            (Arc::clone(&file), 2 * MIB..3 * MIB),
        ]);
        assert_eq!(run_through(&mut syncer, &woken, job).result, Ok(()));
        assert_eq!(cached_pages(&file, 0..MIB), 0);
        assert_eq!(
            cached_pages(&file, MIB..2 * MIB),
            pages_per_mib,
            "only the ranges named"
        );
        assert_eq!(cached_pages(&file, 2 * MIB..3 * MIB), 0);
    }

    /// Once an fsync of the thread failed, no range is dropped, not even a later successful
    /// job's: Linux reports a failed writeback once per open file, so the later fsync of the
    /// same file succeeds while the page cache holds the only good copy.
    #[test]
    fn after_a_failed_fsync_no_range_leaves_the_page_cache() {
        const MIB: u64 = 1 << 20;
        let dir = disk_backed_tempdir();
        let (mut syncer, woken) = waking_syncer();
        let (file, pages_per_mib) = written_file(dir.path(), 2);
        let not_a_dir = dir.path().join("log").join("under-a-file");
        let failing = SyncJob::new(vec![Arc::clone(&file)], vec![not_a_dir])
            .with_uncache(vec![(Arc::clone(&file), 0..MIB)]);
        assert!(run_through(&mut syncer, &woken, failing).result.is_err());
        assert_eq!(
            cached_pages(&file, 0..MIB),
            pages_per_mib,
            "kept after a failed job"
        );
        let later = SyncJob::new(vec![Arc::clone(&file)], vec![])
            .with_uncache(vec![(Arc::clone(&file), 0..2 * MIB)]);
        assert_eq!(run_through(&mut syncer, &woken, later).result, Ok(()));
        assert_eq!(
            cached_pages(&file, 0..2 * MIB),
            2 * pages_per_mib,
            "kept for good"
        );
    }

    /// What the thread does with a job, without its fsyncs: takes it, reports it done.
    fn finish(shared: &Shared, done_tx: &mpsc::Sender<SyncDone>) -> (u64, SyncJob) {
        let (epoch, job) = shared.take(&Gathering::default()).unwrap();
        let report = SyncDone {
            epoch,
            result: Ok(()),
            took: Duration::ZERO,
        };
        done_tx.send(report).unwrap();
        (epoch, job)
    }

    #[test]
    fn jobs_dispatched_while_one_is_synced_join_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut syncer, shared, done_tx) = Syncer::unstarted();
        let first = Arc::new(File::create(dir.path().join("first")).unwrap());
        let second = Arc::new(File::create(dir.path().join("second")).unwrap());
        let job = |files: &[&Arc<File>], dirs: &[&str]| SyncJob {
            files: files.iter().map(|f| Arc::clone(f)).collect(),
            dirs: dirs.iter().map(PathBuf::from).collect(),
            ..SyncJob::default()
        };
        // Nothing started yet: the second dispatch joins the first (each file once).
        assert_eq!(syncer.dispatch(job(&[&first], &[])).unwrap(), 1);
        assert_eq!(syncer.dispatch(job(&[&first], &["d"])).unwrap(), 1);
        assert_eq!(syncer.current_epoch(), 2);
        // The thread starts epoch 1; what comes now waits for epoch 2, and joins it.
        let (epoch, started) = {
            let mut queue = shared.lock();
            queue.next.take().unwrap()
        };
        assert_eq!((epoch, started.files.len(), started.dirs.len()), (1, 1, 1));
        assert_eq!(syncer.dispatch(job(&[&second], &[])).unwrap(), 2);
        assert_eq!(syncer.dispatch(job(&[&first, &second], &["d"])).unwrap(), 2);
        assert_eq!(syncer.dispatch(job(&[], &["d", "e"])).unwrap(), 2);
        assert!(syncer.is_busy());
        assert!(syncer.poll().is_none());
        // Epoch 1 done: reported in order, epoch 2 still outstanding.
        done_tx
            .send(SyncDone {
                epoch: 1,
                result: Ok(()),
                took: Duration::ZERO,
            })
            .unwrap();
        assert_eq!(syncer.poll().unwrap().epoch, 1);
        assert!(syncer.is_busy());
        let (epoch, joined) = finish(&shared, &done_tx);
        assert_eq!((epoch, joined.files.len(), joined.dirs.len()), (2, 2, 2));
        assert_eq!(syncer.wait().unwrap().epoch, 2);
        assert!(syncer.wait().is_none());
        assert!(!syncer.is_busy());
        assert_eq!(syncer.completed, 2);
        // The next job opens epoch 3; once the loop's side is gone the thread ends.
        assert_eq!(syncer.dispatch(SyncJob::default()).unwrap(), 3);
        drop(syncer);
        assert_eq!(shared.take(&Gathering::default()).unwrap().0, 3);
        assert!(shared.take(&Gathering::default()).is_none());
    }

    #[test]
    fn the_sync_thread_runs_above_a_real_time_loop_only() {
        let policy_after = |rt_priority: Option<i32>| {
            std::thread::spawn(move || {
                if let Some(priority) = rt_priority {
                    let param = libc::sched_param {
                        sched_priority: priority,
                    };
                    // SAFETY: reads `param` during the call only; pid 0 is this thread.
                    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
                        return None;
                    }
                }
                above_the_loop();
                let mut param = libc::sched_param { sched_priority: 0 };
                // SAFETY: writes one sched_param into `param`; pid 0 is this thread.
                unsafe { libc::sched_getparam(0, &mut param) };
                // SAFETY: takes no pointers.
                Some((unsafe { libc::sched_getscheduler(0) }, param.sched_priority))
            })
            .join()
            .unwrap()
        };
        assert_eq!(policy_after(None), Some((libc::SCHED_OTHER, 0)));
        // Real-time priorities need CAP_SYS_NICE (or RLIMIT_RTPRIO); without it there is
        // nothing to raise.
        match policy_after(Some(10)) {
            Some(raised) => assert_eq!(raised, (libc::SCHED_FIFO, 11)),
            None => eprintln!("no real-time priority allowed here: only the normal case checked"),
        }
        // SAFETY: takes no pointers.
        let max = unsafe { libc::sched_get_priority_max(libc::SCHED_FIFO) };
        if let Some(top) = policy_after(Some(max)) {
            assert_eq!(top, (libc::SCHED_FIFO, max));
        }
    }

    #[test]
    fn policies_parse_by_their_three_names_only() {
        #[derive(Deserialize)]
        struct Section {
            policy: DurabilityPolicy,
        }
        for (text, policy) in [
            ("none", DurabilityPolicy::None),
            ("interval", DurabilityPolicy::Interval),
            ("always", DurabilityPolicy::Always),
        ] {
            let parsed: Section = toml::from_str(&format!("policy = \"{text}\"")).unwrap();
            assert_eq!(parsed.policy, policy);
            assert_eq!(policy.syncs(), policy != DurabilityPolicy::None);
            assert_eq!(policy.waits_for_sync(), policy == DurabilityPolicy::Always);
        }
        for bad in ["\"sometimes\"", "\"Always\"", "1"] {
            assert!(
                toml::from_str::<Section>(&format!("policy = {bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(Syncer::for_policy(DurabilityPolicy::None, "x", || {})
            .unwrap()
            .is_none());
        assert!(Syncer::for_policy(DurabilityPolicy::Interval, "x", || {})
            .unwrap()
            .is_some());
    }

    #[test]
    fn interval_keys_are_checked_naming_the_key() {
        assert!(check_interval_ms("dht.durability_interval_ms", 1).is_ok());
        assert!(check_interval_ms("dht.durability_interval_ms", 3_600_000).is_ok());
        for bad in [0, 3_600_001] {
            let err = check_interval_ms("dht.durability_interval_ms", bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "bad value for dht.durability_interval_ms: {bad} is not between 1 and 3600000"
                )
            );
        }
    }

    #[test]
    fn the_interval_timer_is_due_once_its_interval_has_passed() {
        let start = Instant::now();
        let mut timer = IntervalTimer::new(Duration::from_millis(100), start);
        assert!(!timer.is_due(start));
        assert_eq!(timer.remaining(start), Duration::from_millis(100));
        let later = start + Duration::from_millis(99);
        assert!(!timer.is_due(later));
        assert_eq!(timer.remaining(later), Duration::from_millis(1));
        let due = start + Duration::from_millis(100);
        assert!(timer.is_due(due));
        assert_eq!(timer.remaining(due), Duration::ZERO);
        timer.restart(due);
        assert!(!timer.is_due(due + Duration::from_millis(50)));
        // A clock reading before the restart (another caller's older `now`) is not due.
        assert!(!timer.is_due(start));
    }

    #[test]
    fn a_job_is_held_until_the_last_commits_writers_wait_or_the_window_passes() {
        let window = Duration::from_micros(300);
        // The last commit answered 3 replies while 2 waited for the next one: 5 writers.
        let gathering = Gathering::after(3, 2, window, last_commit_window);
        assert_eq!(gathering.writers, 5);
        assert_eq!(gathering.window, window);
        // Fewer waiting: held for the rest of the window.
        assert_eq!(gathering.hold_for(2, Duration::ZERO), Some(window));
        let held = Duration::from_micros(100);
        assert_eq!(
            gathering.hold_for(4, held),
            Some(Duration::from_micros(200))
        );
        // Every writer back, or the window spent: started.
        assert_eq!(gathering.hold_for(5, Duration::ZERO), None);
        assert_eq!(gathering.hold_for(7, Duration::ZERO), None);
        assert_eq!(gathering.hold_for(4, window), None);
        // No reply waits (`interval`), or the thread has just started: never held.
        assert_eq!(gathering.hold_for(0, Duration::ZERO), None);
        assert_eq!(Gathering::default().hold_for(1, Duration::ZERO), None);
        // A slow commit holds no longer than the bound.
        let slow = Gathering::after(3, 2, Duration::from_secs(2), last_commit_window);
        assert_eq!(slow.window, MAX_GATHER_WINDOW);
    }

    /// A syncer whose thread holds jobs for `window` whatever its commits take, and the
    /// receiver of its wake-ups.
    fn gathering_syncer(window: fn(Duration) -> Duration) -> (Syncer, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let syncer = Syncer::spawn_gathering("test-sync", window, move || {
            let _ = tx.send(());
        })
        .unwrap();
        (syncer, rx)
    }

    /// The next report, waiting for the thread's wake-up (at most 10 s).
    fn next_done(syncer: &mut Syncer, woken: &mpsc::Receiver<()>) -> SyncDone {
        woken.recv_timeout(Duration::from_secs(10)).unwrap();
        syncer.poll().unwrap()
    }

    fn job_with(file: &Arc<File>, waiting_replies: usize) -> SyncJob {
        SyncJob::new(vec![Arc::clone(file)], vec![]).with_waiting_replies(waiting_replies)
    }

    #[test]
    fn writers_answered_by_a_commit_join_the_next_one_held_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        // A window far longer than the test: only the writers' return starts the commit.
        let (mut syncer, woken) = gathering_syncer(|_| Duration::from_secs(3600));
        assert_eq!(syncer.dispatch(job_with(&file, 3)).unwrap(), 1);
        assert_eq!(next_done(&mut syncer, &woken).epoch, 1);
        // One of the three writers is back: its commit is held for the other two, which join
        // it (the same epoch) as they come, and the commit starts with the third.
        assert_eq!(syncer.dispatch(job_with(&file, 1)).unwrap(), 2);
        assert_eq!(syncer.dispatch(job_with(&file, 1)).unwrap(), 2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(syncer.poll().is_none(), "held for the third writer");
        assert_eq!(syncer.dispatch(job_with(&file, 1)).unwrap(), 2);
        let done = next_done(&mut syncer, &woken);
        assert_eq!((done.epoch, done.result), (2, Ok(())));
        // A job no reply waits for is never held.
        assert_eq!(syncer.dispatch(job_with(&file, 0)).unwrap(), 3);
        assert_eq!(next_done(&mut syncer, &woken).epoch, 3);
    }

    #[test]
    fn a_held_job_starts_once_the_window_has_passed_or_the_loop_has_gone() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        let (mut syncer, woken) = gathering_syncer(|_| Duration::from_millis(20));
        syncer.dispatch(job_with(&file, 50)).unwrap();
        next_done(&mut syncer, &woken);
        // Only one of the 50 writers comes back: the commit waits out its window, no more.
        let before = Instant::now();
        assert_eq!(syncer.dispatch(job_with(&file, 1)).unwrap(), 2);
        let done = next_done(&mut syncer, &woken);
        assert_eq!((done.epoch, done.result), (2, Ok(())));
        assert!(
            before.elapsed() >= Duration::from_millis(20),
            "held for the window"
        );

        // Shutdown: a job held for writers that will not come is synced at once.
        let (mut syncer, woken) = gathering_syncer(|_| Duration::from_secs(3600));
        syncer.dispatch(job_with(&file, 50)).unwrap();
        next_done(&mut syncer, &woken);
        syncer.dispatch(job_with(&file, 1)).unwrap();
        syncer.shared.close();
        let done = syncer.wait().unwrap();
        assert_eq!((done.epoch, done.result), (2, Ok(())));
    }
}
