//! When the node's replies to changes may leave, by `dht.durability` (issue #18): the change
//! log's group is written out before any reply is sent ([`LogSync::before_output`], once per
//! event-loop pass), and fsynced by the shared group-commit thread
//! ([`node_core::server::durability::Syncer`]): every `durability_interval_ms` under
//! "interval"; under "always" a change is answered only after the fsync of its group (its reply
//! waits in node-core's [`GroupCommit`]), and changes arriving together share one fsync. Under
//! "none" there is no log and nothing here runs.
//!
//! A failed fsync under "always" answers the changes of its group NotDurable: they are applied
//! and written to the log (a restart replays them unless the machine lost the page cache).

use crate::engine::Engine;
use crate::service::DhtNode;
use node_core::protocol::Status;
use node_core::server::durability::{DurabilityPolicy, IntervalTimer, SyncDone, SyncJob, Syncer};
use node_core::server::group_commit::{CommitAnswer, EpochCover, GroupCommit, Ticket};
use node_core::server::{Handled, Reply, Wakeups};
use std::time::{Duration, Instant};

/// The fsync side of the change log (see the module doc).
pub struct LogSync {
    policy: DurabilityPolicy,
    /// The sync thread, its epochs (each with the log position it makes durable) and the
    /// changes (under "always") waiting for them; none without a log or under "none".
    commits: Option<GroupCommit<Logged, Covered>>,
    timer: IntervalTimer,
}

/// A change written to the log, waiting for its group's fsync.
struct Logged;

impl Ticket for Logged {
    /// The fsync's result.
    type Outcome = Result<(), String>;

    fn answer(&self, synced: &Result<(), String>) -> CommitAnswer {
        synced.clone().map_err(|error| {
            let message = format!(
                "the change is stored and in the change log, but the log's fsync failed: {error}"
            );
            (Status::NotDurable, message)
        })
    }
}

/// The log position a group commit makes durable.
struct Covered(u64);

impl EpochCover for Covered {
    fn join(&mut self, later: Covered) {
        self.0 = self.0.max(later.0);
    }
}

impl LogSync {
    /// The fsync side for `policy`; no thread when the engine keeps no log.
    pub fn new(
        policy: DurabilityPolicy,
        interval: Duration,
        logging: bool,
        wakeups: Wakeups,
    ) -> std::io::Result<LogSync> {
        let policy = if logging {
            policy
        } else {
            DurabilityPolicy::None
        };
        Ok(LogSync {
            policy,
            commits: GroupCommit::for_policy(policy, "dht-log-sync", wakeups)?,
            timer: IntervalTimer::new(interval, Instant::now()),
        })
    }

    pub fn policy(&self) -> DurabilityPolicy {
        self.policy
    }

    pub fn syncer(&self) -> Option<&Syncer> {
        self.commits.as_ref().map(GroupCommit::syncer)
    }

    /// Changes waiting for their group commit.
    pub fn awaiting_fsync(&self) -> usize {
        self.commits.as_ref().map_or(0, GroupCommit::awaiting)
    }

    /// Answers a change request: at once, or under "always", when the request logged a change
    /// (the log's position moved past `mark`), after the fsync of its group.
    pub fn acknowledge(
        &mut self,
        engine: &Engine,
        mark: Option<u64>,
        reply: &mut Reply<'_>,
        status: Status,
        body: &[u8],
    ) -> Handled<DhtNode> {
        let logged = engine.log().position() != mark;
        match &mut self.commits {
            // Only a reply that waits for its fsync needs its body on the heap.
            Some(commits) if logged && self.policy.waits_for_sync() => {
                commits.wait(Logged, status, body.to_vec())
            }
            _ => {
                reply.send(status, body);
                Handled::Replied
            }
        }
    }

    /// Writes the log's group out: called before any reply is sent.
    pub fn before_output(&mut self, engine: &mut Engine) {
        engine.log_mut().write_out();
    }

    /// After each pass: collects finished commits, and under "always" hands the changes of the
    /// pass to a group commit: the next one, which starts the moment the one in flight is done
    /// (see [`Syncer::dispatch`]), so an fsync never waits for the loop to finish a pass.
    pub fn background(&mut self, engine: &mut Engine) {
        self.poll(engine);
        if self.commits.as_ref().is_some_and(GroupCommit::has_unsent) {
            self.dispatch(engine);
        }
    }

    /// On the node's tick: under "interval", an fsync when one is due.
    pub fn tick(&mut self, engine: &mut Engine, now: Instant) {
        self.poll(engine);
        if self.policy == DurabilityPolicy::Interval && self.timer.is_due(now) && self.idle() {
            self.timer.restart(now);
            self.dispatch(engine);
        }
    }

    /// Shutdown: the commit in flight, then everything written, fsynced here.
    pub fn shutdown(&mut self, engine: &mut Engine) -> Result<(), String> {
        if let Some(commits) = &mut self.commits {
            commits.drain(|done, covered| on_done(engine, done, covered));
        }
        engine.log_mut().write_out();
        let Some(writer) = engine.log_mut().writer_mut() else {
            return Ok(());
        };
        writer
            .sync_now()
            .map_err(|error| format!("cannot fsync the change log: {error}"))?;
        if let Err(error) = writer.release_reserved() {
            tracing::warn!("change log: cannot give back the space reserved past its end: {error}");
        }
        Ok(())
    }

    fn idle(&self) -> bool {
        self.commits.as_ref().is_some_and(GroupCommit::is_idle)
    }

    /// Hands everything written so far to the sync thread.
    fn dispatch(&mut self, engine: &mut Engine) {
        engine.log_mut().write_out();
        let (Some(writer), Some(commits)) = (engine.log_mut().writer_mut(), &mut self.commits)
        else {
            return;
        };
        let (job, seq) = match writer.sync_request() {
            Some(request) => (
                SyncJob::new(request.files, request.dirs).with_uncache(request.uncache),
                request.seq,
            ),
            // Everything written was asked for by an earlier commit.
            None if !commits.has_unsent() => return,
            None => (SyncJob::default(), writer.written_seq()),
        };
        let failed = |error: &str, _| Err(error.to_string());
        if let Err(error) = commits.dispatch(job, Covered(seq), failed) {
            tracing::error!("change log group commit: {error}");
        }
    }

    fn poll(&mut self, engine: &mut Engine) {
        if let Some(commits) = &mut self.commits {
            commits.poll(|done, covered| on_done(engine, done, covered));
        }
    }
}

/// A group commit is done: what it covered is durable (or its failure is logged); returns
/// what its changes are told.
fn on_done(engine: &mut Engine, done: &SyncDone, covered: Option<Covered>) -> Result<(), String> {
    match &done.result {
        Ok(()) => {
            let writer = engine.log_mut().writer_mut();
            if let (Some(writer), Some(Covered(seq))) = (writer, covered) {
                writer.mark_synced(seq);
            }
        }
        Err(error) => tracing::error!(
            "change log fsync (group commit {}) FAILED: {error}; its changes are applied \
             and written, not confirmed durable",
            done.epoch
        ),
    }
    done.result.clone()
}
