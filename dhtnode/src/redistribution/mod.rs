//! Redistribution: handing the records outside a node's new range to the nodes that own them now
//! (the Redistribute request), without stopping readers or writers.
//!
//! Who does what:
//! - The **event loop** (this module's [`Redistributor`]) starts a redistribution: it checks
//!   the request, writes the new range and the pending redistribution to the state file
//!   ([`crate::state`]) *before* anything changes, switches the engine to the new range (from
//!   then on writes outside it are WrongNode), arms the memory guard, and starts the worker.
//!   Later it deletes records for the worker (the engine is the loop's alone), in slices so
//!   that requests keep being served, and wakes the Progress streams.
//! - The **worker thread** ([`worker`]) walks every channel shard by shard (under each shard's
//!   lock, like the dump writer), sends the records outside the new range, with their versions,
//!   and then the tombstones outside it to their new owners — every member of the owning
//!   replica set — in LZ4 batches (RedistBatchVersion, applied by version, so a newer write that
//!   reached the new owner first is never replaced and a copy sent twice changes nothing), and,
//!   once every member has made them durable (RedistCommit: it dumps the channel and names its
//!   process instance, which must be the one that stored the batches), asks the loop to delete
//!   them here — each only if it still has the value that was sent. Failed sends are retried
//!   with backoff; records a pass could not hand over are tried again in the next pass, until
//!   none is left.
//!
//! One redistribution runs at a time; another Redistribute gets Busy. A client that
//! disconnects from its Progress stream does not stop it; neither does anything but the node's
//! own shutdown, after which the node resumes it at start (the state file says it is pending).
//!
//! Why the receiver must dump before the sender deletes: dht nodes keep records in memory, so a
//! receiver killed after acknowledging a batch would lose it, and with it the only copy. The
//! instance id closes the other hole: a receiver restarted between batch and commit has a new
//! instance, its commit does not vouch for the earlier batches, and they are sent again.
//!
//! Records removed here after they were sent (a client's Remove reaching the old node) would
//! come back to life on the receiver; the worker finds them when it deletes (the value is gone)
//! and removes them on the receiver too, with an Update that removes only the value it sent.

pub mod worker;

use crate::engine::{Channel, Engine};
use crate::state::{self, NodeState, PendingRedistribution};
use node_core::auth::Credentials;
use node_core::protocol::dht::{
    HashRange, RedistributeDone, RedistributeRequest, RedistributeTarget, RedistributionProgress,
    RedistributionState,
};
use node_core::server::{StreamHandle, Wakeups};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Records the loop deletes per call of [`Redistributor::background`]: a few hundred
/// microseconds of work, so requests are not held up.
const DELETES_PER_STEP: usize = 4096;
/// Progress streams the node keeps handles of (each a client watching); more are refused.
const MAX_PROGRESS_STREAMS: usize = 64;

/// How a node redistributes; from its config, or set by tests.
#[derive(Debug, Clone)]
pub struct RedistributionConfig {
    /// Where the state file lives; `None` keeps nothing on disk (unit tests).
    pub data_dir: Option<PathBuf>,
    /// The node's credentials file: the key of the admin who asked for a redistribution is
    /// what the node authenticates with towards the targets. `None` when auth is off.
    pub credentials: Option<Arc<Credentials>>,
    /// TLS towards the targets (`[tls] peer_ca_file`): the CA their certificates chain to, and
    /// this node's certificate for targets that require one. `None`: in clear.
    pub tls: Option<client::tls::ClientTls>,
    /// While the node's own redistribution runs, records moved in may grow it to at most this
    /// multiple of its size when that redistribution started.
    pub memory_multiplier: f64,
    /// This node process's random id (see RedistCommit).
    pub instance: u64,
    pub tuning: Tuning,
}

/// Timings and sizes of the worker (defaults suit production; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Records handed to one target before the worker asks it to commit (besides at the end
    /// of each channel): bounds what the worker remembers (16 bytes a record).
    pub commit_records: usize,
    /// Pause after the first failed attempt; doubled after each further one, up to
    /// `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// Failed attempts at one batch or commit before the worker leaves that target for the
    /// rest of the pass (its records wait for the next pass).
    pub attempts_per_target: u32,
    /// Pause between passes when records were left over.
    pub pass_pause: Duration,
    /// Limit on each request to a target (a commit dumps a whole channel there).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            commit_records: 1 << 20,
            retry_first: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            attempts_per_target: 8,
            pass_pause: Duration::from_secs(1),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl RedistributionConfig {
    /// No state file, no credentials (tests of the engine side).
    pub fn in_memory() -> RedistributionConfig {
        RedistributionConfig {
            data_dir: None,
            credentials: None,
            tls: None,
            memory_multiplier: 1.1,
            instance: random_instance(),
            tuning: Tuning::default(),
        }
    }
}

/// A fresh random process instance id.
pub fn random_instance() -> u64 {
    match node_core::auth::random_nonce() {
        Ok(bytes) => {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            u64::from_le_bytes(first)
        }
        // No OS randomness (never seen on Linux): time and pid still differ between runs.
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}

/// What the worker and the loop share: the progress (read by streams and GetRedistribution)
/// and the stop flag.
#[derive(Debug, Default)]
pub struct Progress {
    moved: AtomicU64,
    total: AtomicU64,
    failures: AtomicU64,
    stranded: AtomicU64,
    last_error: Mutex<String>,
    /// Bumped on every change, so the loop knows when to wake the Progress streams.
    generation: AtomicU64,
    finished: AtomicBool,
    cancel: AtomicBool,
}

impl Progress {
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn add_moved(&self, count: u64) {
        self.moved.fetch_add(count, Ordering::Relaxed);
        self.bump();
    }

    pub(crate) fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.bump();
    }

    pub(crate) fn set_stranded(&self, stranded: u64) {
        self.stranded.store(stranded, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, error: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = error;
        self.bump();
    }

    pub(crate) fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.bump();
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> RedistributionProgress {
        RedistributionProgress {
            moved: self.moved.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    pub fn done(&self) -> RedistributeDone {
        RedistributeDone {
            moved: self.moved.load(Ordering::Relaxed),
            stranded: self.stranded.load(Ordering::Relaxed),
        }
    }
}

/// The worker's request to the loop: delete these records (key, value hash) of `channel` if
/// they are still as sent; the answer lists the ones that were not.
pub(crate) struct DeleteRequest {
    pub channel: String,
    pub data: Arc<Channel>,
    pub entries: Vec<(u64, u64)>,
    pub reply: SyncSender<DeleteOutcome>,
}

#[derive(Debug, Default)]
pub(crate) struct DeleteOutcome {
    pub removed: u64,
    /// Records that were no longer here, or no longer as sent: removed here meanwhile.
    pub gone: Vec<(u64, u64)>,
}

/// A delete request being worked through.
struct DeleteJob {
    request: DeleteRequest,
    next: usize,
    outcome: DeleteOutcome,
}

struct Running {
    progress: Arc<Progress>,
    requests: Receiver<DeleteRequest>,
    job: Option<DeleteJob>,
    thread: Option<JoinHandle<()>>,
    range: HashRange,
}

/// Why a Redistribute was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a redistribution is already running on this node ({moved} of {total} records moved); wait for it to finish")]
    Busy { moved: u64, total: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("the new range was not applied: {0}")]
    State(#[from] state::StateError),
    #[error("cannot start the redistribution thread: {0}")]
    Spawn(std::io::Error),
}

/// The loop's side of redistributions (see the module doc).
pub struct Redistributor {
    config: RedistributionConfig,
    wakeups: Wakeups,
    running: Option<Running>,
    /// The progress of the last redistribution (running or finished), for GetRedistribution.
    last: Option<Arc<Progress>>,
    /// Progress streams to wake when the progress changes.
    streams: Vec<StreamHandle>,
    woken_generation: u64,
}

impl Redistributor {
    /// The node's credentials after a reload: redistributions started from now on log in to
    /// their targets with the admin's key from this set (a running one keeps the key it has).
    pub fn set_credentials(&mut self, credentials: Arc<Credentials>) {
        self.config.credentials = Some(credentials);
    }

    pub fn new(config: RedistributionConfig, wakeups: Wakeups) -> Redistributor {
        Redistributor {
            config,
            wakeups,
            running: None,
            last: None,
            streams: Vec::new(),
            woken_generation: 0,
        }
    }

    pub fn instance(&self) -> u64 {
        self.config.instance
    }

    /// Checks and starts a redistribution asked for by client `admin` (empty: anonymous).
    pub fn start(
        &mut self,
        engine: &mut Engine,
        request: RedistributeRequest,
        admin: &str,
    ) -> Result<Arc<Progress>, StartError> {
        if let Some(running) = &self.running {
            let progress = running.progress.snapshot();
            return Err(StartError::Busy {
                moved: progress.moved,
                total: progress.total,
            });
        }
        request.check(engine.range()).map_err(StartError::Invalid)?;
        let range = request.range.normalized();
        let pending = PendingRedistribution {
            admin: admin.to_string(),
            targets: request.targets,
        };
        if let Some(dir) = &self.config.data_dir {
            state::save(
                dir,
                &NodeState {
                    range,
                    redistribution: Some(pending.clone()),
                },
            )?;
        }
        tracing::info!(
            "redistribution asked for by {}: range {} -> {range}, targets: {}",
            if admin.is_empty() {
                "an anonymous client"
            } else {
                admin
            },
            engine.range(),
            describe_targets(&pending.targets)
        );
        engine.set_range(range);
        self.launch(engine, pending)
    }

    /// Resumes a redistribution the state file says is unfinished (at start; the engine has
    /// the new range already).
    pub fn resume(
        &mut self,
        engine: &mut Engine,
        pending: PendingRedistribution,
    ) -> Result<Arc<Progress>, StartError> {
        tracing::info!(
            "resuming the unfinished redistribution to range {}: targets {}",
            engine.range(),
            describe_targets(&pending.targets)
        );
        self.launch(engine, pending)
    }

    fn launch(
        &mut self,
        engine: &mut Engine,
        pending: PendingRedistribution,
    ) -> Result<Arc<Progress>, StartError> {
        let start_bytes = engine.size().bytes;
        let cap = (start_bytes as f64 * self.config.memory_multiplier) as u64;
        let progress = Arc::new(Progress::default());
        let (requests_tx, requests) = mpsc::sync_channel(1);
        let context = worker::Context {
            range: engine.range(),
            targets: pending.targets,
            channels: engine
                .channels()
                .map(|(name, data)| (name.to_string(), Arc::clone(data)))
                .collect(),
            progress: Arc::clone(&progress),
            to_loop: requests_tx,
            waker: self.wakeups.loop_waker(),
            credentials: client_credentials(self.config.credentials.as_deref(), &pending.admin),
            tls: self.config.tls.clone(),
            data_dir: self.config.data_dir.clone(),
            tuning: self.config.tuning,
        };
        let thread = std::thread::Builder::new()
            .name("dht-redistribute".into())
            .spawn(move || worker::run(context))
            .map_err(StartError::Spawn)?;
        engine.set_redistribution_cap(Some(cap));
        tracing::info!(
            "redistribution started: records moved in may grow this node to {cap} bytes \
             ({} × {start_bytes})",
            self.config.memory_multiplier
        );
        self.running = Some(Running {
            progress: Arc::clone(&progress),
            requests,
            job: None,
            thread: Some(thread),
            range: engine.range(),
        });
        self.last = Some(Arc::clone(&progress));
        Ok(progress)
    }

    /// Deletes records for the worker, a slice at a time; notices the end of a redistribution.
    /// Returns true while deletions are waiting.
    pub fn background(&mut self, engine: &mut Engine) -> bool {
        let Some(running) = &mut self.running else {
            return false;
        };
        if running.job.is_none() {
            // Empty: nothing asked; disconnected: the worker ended (noticed below).
            if let Ok(request) = running.requests.try_recv() {
                running.job = Some(DeleteJob {
                    request,
                    next: 0,
                    outcome: DeleteOutcome::default(),
                });
            }
        }
        if let Some(job) = &mut running.job {
            let end = (job.next + DELETES_PER_STEP).min(job.request.entries.len());
            let entries = &job.request.entries[job.next..end];
            let removed =
                match engine.remove_moved_batch(&job.request.channel, &job.request.data, entries) {
                    Ok(removed) => removed,
                    Err(error) => {
                        // The change log refused the deletes (a full disk): nothing was
                        // removed; the records stay here, outside the range, until a retry.
                        tracing::warn!("redistribution: deleting moved records waits: {error}");
                        return false;
                    }
                };
            for (&(key, hash), removed) in entries.iter().zip(removed) {
                if removed {
                    job.outcome.removed += 1;
                } else {
                    job.outcome.gone.push((key, hash));
                }
            }
            job.next = end;
            if job.next >= job.request.entries.len() {
                if let Some(job) = running.job.take() {
                    // The worker waits for this; if it is gone, so is its redistribution.
                    let _ = job.request.reply.send(job.outcome);
                }
            }
            // More to delete, or the worker's next request may follow at once.
            return true;
        }
        if running.progress.is_finished() {
            self.finish(engine);
        }
        false
    }

    /// Wakes the Progress streams when there is news (at most once a tick).
    pub fn tick(&mut self, engine: &mut Engine) {
        if self
            .running
            .as_ref()
            .is_some_and(|running| running.progress.is_finished() && running.job.is_none())
        {
            self.finish(engine);
        }
        let generation = self.last.as_ref().map_or(0, |p| p.generation());
        if generation != self.woken_generation {
            self.woken_generation = generation;
            for handle in &self.streams {
                self.wakeups.wake(*handle);
            }
        }
    }

    fn finish(&mut self, engine: &mut Engine) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        if let Some(thread) = running.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the redistribution thread panicked");
            }
        }
        engine.set_redistribution_cap(None);
        let progress = running.progress.snapshot();
        let done = running.progress.done();
        if running.progress.is_cancelled() {
            tracing::info!(
                "redistribution to {} stopped by the shutdown after moving {} of {} records; \
                 it resumes at the next start",
                running.range,
                progress.moved,
                progress.total
            );
        } else {
            tracing::info!(
                "redistribution to {} done: {} records moved, {} failed attempts, {} stranded",
                running.range,
                done.moved,
                progress.failures,
                done.stranded
            );
        }
        for handle in &self.streams {
            self.wakeups.wake(*handle);
        }
    }

    /// Registers a Progress stream for wakeups; false when too many are registered.
    pub fn watch(&mut self, handle: StreamHandle) -> bool {
        if self.streams.contains(&handle) {
            return true;
        }
        if self.streams.len() >= MAX_PROGRESS_STREAMS {
            return false;
        }
        self.streams.push(handle);
        true
    }

    pub fn unwatch(&mut self, handle: StreamHandle) {
        self.streams.retain(|watched| *watched != handle);
    }

    /// What GetRedistribution reports.
    pub fn state(&self, engine: &Engine) -> RedistributionState {
        RedistributionState {
            range: engine.range(),
            running: self.running.is_some(),
            instance: self.config.instance,
            progress: self
                .last
                .as_ref()
                .map(|progress| progress.snapshot())
                .unwrap_or_default(),
        }
    }

    /// Stops the worker at the next step (node shutdown); the state file keeps the
    /// redistribution pending, so it resumes at the next start.
    pub fn shutdown(&mut self) {
        if let Some(running) = &mut self.running {
            running.progress.cancel.store(true, Ordering::Relaxed);
            // Answer the worker's pending deletion (nothing deleted) so it notices at once.
            running.job = None;
            tracing::info!("stopping the running redistribution for the shutdown");
        }
    }
}

/// Name and key for the worker's connections: the admin's key from the node's credentials.
fn client_credentials(
    credentials: Option<&Credentials>,
    admin: &str,
) -> Option<(String, node_core::auth::Key)> {
    let credentials = credentials?;
    match credentials.get(admin) {
        Some(key) => Some((admin.to_string(), key.clone())),
        None => {
            tracing::warn!(
                "the node's credentials file has no key for {admin:?}: the redistribution \
                 connects to its targets without credentials"
            );
            None
        }
    }
}

fn describe_targets(targets: &[RedistributeTarget]) -> String {
    if targets.is_empty() {
        return "none".into();
    }
    targets
        .iter()
        .map(|t| format!("{} {}", t.address, t.range))
        .collect::<Vec<_>>()
        .join(", ")
}
