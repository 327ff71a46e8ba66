//! The logfiles node as a server [`Service`]: the engine, the request dispatch (in
//! [`crate::requests`]), the flush and fsync timers, the acknowledgement of writes after their
//! group commit when `fsync = "always"` (wake-ups from the sync thread), and the final flush.
//!
//! Group commit (node-core's [`GroupCommit`], shared with the dht node): a Put under `always`
//! is appended to its buffer and its reply waits, as a stream, for the epoch it is handed to.
//! After each pass of the event loop ([`Service::background`]) the node writes the buffers out
//! and hands the files written to the sync thread — also while a commit is being synced: they
//! then join the next commit, which the thread starts the moment the one in flight is done, so
//! the disk never waits for the loop's pass (pipelined). When the thread reports back (waking
//! the loop), every write of that epoch and before is answered by what became of its own records
//! ([`WriteOutcome`]): Ok when they are written and fsynced; InternalError when a failed
//! write-out dropped them all (nothing of the write is stored); NotDurable when they are stored
//! but the fsync failed, or (a PutBatch) only some were dropped.

use crate::engine::{Discard, Engine, EpochFailures, WriteOutcome, WriteTickets};
use crate::requests;
use node_core::metrics::Families;
use node_core::protocol::batch::SharedBatch;
use node_core::protocol::logfiles::LogfilesRequest;
use node_core::protocol::{NodeKind, RequestCode, Status};
use node_core::server::durability::{DurabilityPolicy, IntervalTimer, SyncDone, Syncer};
use node_core::server::group_commit::{CommitAnswer, EpochCover, GroupCommit, Ticket};
use node_core::server::{Handled, Reply, Request, Service, Wakeups};
use std::time::{Duration, Instant};

/// Timers of the write path.
#[derive(Debug, Clone, Copy)]
pub struct WriteTimers {
    pub flush_interval: Duration,
    pub fsync_interval: Duration,
}

pub struct LogfilesNode {
    pub(crate) engine: Engine,
    policy: DurabilityPolicy,
    flush_interval: Duration,
    /// The fsync thread, its epochs (each with the write failures before it) and the writes
    /// (`fsync = "always"`) waiting for them; none with `fsync = "none"`.
    commits: Option<GroupCommit<WriteTickets, EpochFailures>>,
    last_flush: Instant,
    /// When the next fsync is due under `fsync = "interval"`.
    fsync_timer: IntervalTimer,
    /// Reused by PutBatch to decompress batches without allocating per request.
    pub(crate) batch_scratch: Vec<u8>,
    /// The batch every read fills and sends within its step (none holds one between steps).
    pub(crate) stream_batch: SharedBatch,
}

/// What a group commit tells each of its writes: its fsync's result (failed too when a write
/// or fsync before it failed) and the records its epochs' failed write-outs dropped.
pub struct Committed {
    synced: Result<(), String>,
    discards: Vec<Discard>,
}

impl Ticket for WriteTickets {
    type Outcome = Committed;

    fn answer(&self, committed: &Committed) -> CommitAnswer {
        match WriteOutcome::of(self, &committed.discards, &committed.synced) {
            WriteOutcome::Durable => Ok(()),
            WriteOutcome::NotStored(e) => Err((Status::InternalError, e)),
            WriteOutcome::NotDurable(e) => Err((Status::NotDurable, e)),
        }
    }
}

impl EpochCover for EpochFailures {
    fn join(&mut self, later: EpochFailures) {
        if self.failure.is_none() {
            self.failure = later.failure;
        }
        if self.sync_failure.is_none() {
            self.sync_failure = later.sync_failure;
        }
        self.discards.extend(later.discards);
    }
}

impl LogfilesNode {
    pub fn new(
        engine: Engine,
        wakeups: Wakeups,
        timers: WriteTimers,
    ) -> std::io::Result<LogfilesNode> {
        let policy = engine.limits().fsync;
        let now = Instant::now();
        Ok(LogfilesNode {
            engine,
            policy,
            flush_interval: timers.flush_interval,
            commits: GroupCommit::for_policy(policy, "logfiles-sync", wakeups)?,
            last_flush: now,
            fsync_timer: IntervalTimer::new(timers.fsync_interval, now),
            batch_scratch: Vec::new(),
            stream_batch: SharedBatch::default(),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Writes (`fsync = "always"`) waiting for their group commit.
    pub(crate) fn writes_awaiting_fsync(&self) -> usize {
        self.commits.as_ref().map_or(0, GroupCommit::awaiting)
    }

    /// The fsync thread and its counters (none with `fsync = "none"`).
    pub(crate) fn syncer(&self) -> Option<&Syncer> {
        self.commits.as_ref().map(GroupCommit::syncer)
    }

    /// Answers a write that was stored (its records: `tickets`): at once, or (fsync = always)
    /// after its group commit.
    pub(crate) fn acknowledge(
        &mut self,
        reply: &mut Reply<'_>,
        body: &[u8],
        tickets: WriteTickets,
    ) -> Handled<Self> {
        match &mut self.commits {
            Some(commits) if self.policy.waits_for_sync() => {
                commits.wait(tickets, Status::Ok, body.to_vec())
            }
            _ => {
                reply.ok(body);
                Handled::Replied
            }
        }
    }

    /// Hands everything written since the last commit to the sync thread: a commit of its own,
    /// or, while one is being synced, the next one (see the module doc).
    fn dispatch_commit(&mut self) {
        let Some(commits) = &mut self.commits else {
            return;
        };
        let (job, failures) = self.engine.take_sync_job();
        let failed = |error: &str, failures: EpochFailures| Committed {
            synced: Err(error.to_string()),
            discards: failures.discards,
        };
        if let Err(e) = commits.dispatch(job, failures, failed) {
            tracing::error!("group commit: {e}");
        }
    }

    /// Under `always`, hands the writes of the pass to a group commit, whether or not one is
    /// being synced (see the module doc).
    fn hand_over_writes(&mut self) {
        if self.commits.as_ref().is_some_and(GroupCommit::has_unsent) {
            self.dispatch_commit();
        }
    }

    fn poll_commits(&mut self) {
        if let Some(commits) = &mut self.commits {
            commits.poll(on_commit_done);
        }
    }

    fn syncer_idle(&self) -> bool {
        self.commits.as_ref().is_some_and(GroupCommit::is_idle)
    }
}

/// A group commit is done; `before`: what went wrong in its epochs before it. Returns what its
/// writes are told.
fn on_commit_done(done: &SyncDone, before: Option<EpochFailures>) -> Committed {
    let before = before.unwrap_or_default();
    let synced = done.result.clone().and(match before.sync_failure {
        Some(e) => Err(e),
        None => Ok(()),
    });
    match (&synced, before.failure) {
        (Err(e), _) => tracing::error!("group commit of epoch {} failed: {e}", done.epoch),
        (Ok(()), Some(e)) => tracing::error!(
            "group commit of epoch {}: a write failed before it ({e}); the writes it \
             concerns are answered InternalError or NotDurable",
            done.epoch
        ),
        (Ok(()), None) => {}
    }
    Committed {
        synced,
        discards: before.discards,
    }
}

impl Service for LogfilesNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Logfiles
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        LogfilesRequest::from_code(code).map(LogfilesRequest::name)
    }

    fn admin_only(&self, code: RequestCode) -> bool {
        LogfilesRequest::from_code(code).is_some_and(LogfilesRequest::admin_only)
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        LogfilesRequest::from_code(code).is_some_and(LogfilesRequest::opens_stream)
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        requests::dispatch(self, request, reply)
    }

    fn background(&mut self, _now: Instant) -> bool {
        self.poll_commits();
        self.hand_over_writes();
        // Nothing more until the sync thread wakes the loop or a request arrives.
        false
    }

    fn tick(&mut self, now: Instant) {
        self.poll_commits();
        if now.duration_since(self.last_flush) >= self.flush_interval {
            self.engine.flush_all();
            self.last_flush = now;
        }
        if self.policy == DurabilityPolicy::Interval
            && self.fsync_timer.is_due(now)
            && self.syncer_idle()
            && self.engine.has_unsynced()
        {
            self.dispatch_commit();
            self.fsync_timer.restart(now);
        }
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if let Some(commits) = &mut self.commits {
            commits.drain(on_commit_done);
        }
        match self.engine.close() {
            Ok(()) => {
                tracing::info!("every bucket written and fsynced");
                Ok(())
            }
            Err(e) => Err(format!(
                "{e}; the open-bucket journal is kept so the next start checks the tails"
            )),
        }
    }

    fn metrics(&self, out: &mut Families) {
        crate::stats::metrics(self, out);
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        crate::stats::stats(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineLimits;

    fn node(dir: &std::path::Path) -> LogfilesNode {
        let limits = EngineLimits {
            max_value_bytes: 1024,
            write_buffer_bytes: 64 * 1024,
            max_open_buckets: 16,
            max_open_buckets_per_channel: 4,
            max_channels: 16,
            fsync: DurabilityPolicy::Always,
            index_interval_bytes: crate::storage::DEFAULT_INDEX_INTERVAL_BYTES,
        };
        let (engine, _) = Engine::open(dir, limits).unwrap();
        let timers = WriteTimers {
            flush_interval: Duration::from_secs(60),
            fsync_interval: Duration::from_secs(60),
        };
        LogfilesNode::new(engine, Wakeups::default(), timers).unwrap()
    }

    /// A Put under `always`, as its handler leaves it: stored, its reply waiting.
    fn put(node: &mut LogfilesNode, key: u64) {
        let tickets = node.engine.put("c", key, b"record").unwrap();
        let commits = node.commits.as_mut().unwrap();
        let Handled::Stream(_waiting) = commits.wait::<LogfilesNode>(tickets, Status::Ok, vec![])
        else {
            panic!("a Put under always waits for its commit");
        };
    }

    #[test]
    fn writes_go_to_the_next_commit_while_one_is_being_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = node(dir.path());
        put(&mut node, 1);
        node.hand_over_writes();
        let commits = node.commits.as_ref().unwrap();
        assert!(!commits.has_unsent());
        // Outstanding until the loop collects it, whatever the thread has done meanwhile.
        assert!(!commits.is_idle());
        // The next pass's write is handed over at once (it joins the commit waiting to start,
        // which the thread begins the moment the first is done), not held until the loop has
        // seen the first commit end.
        put(&mut node, 2);
        node.hand_over_writes();
        let commits = node.commits.as_ref().unwrap();
        assert!(!commits.has_unsent());
        assert_eq!(commits.awaiting(), 2);
        node.shutdown().unwrap();
        let commits = node.commits.as_ref().unwrap();
        assert_eq!(commits.awaiting(), 0);
        assert!(commits.syncer().completed >= 1);
        assert_eq!(commits.syncer().failures, 0);
    }
}
