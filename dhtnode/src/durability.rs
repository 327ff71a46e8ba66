//! When the node's replies to changes may leave, by `dht.durability` (issue #18): the change
//! log's group is written out before any reply is sent ([`LogSync::before_output`], once per
//! event-loop pass), and fsynced by the shared group-commit thread
//! ([`node_core::server::durability::Syncer`]): every `durability_interval_ms` under
//! "interval"; under "always" a change is answered only after the fsync of its group
//! ([`AwaitCommit`]), and changes arriving together share one fsync. Under "none" there is no
//! log and nothing here runs.
//!
//! A failed fsync under "always" answers the changes of its group NotDurable: they are applied
//! and written to the log (a restart replays them unless the machine lost the page cache).

use crate::engine::Engine;
use crate::service::DhtNode;
use node_core::protocol::Status;
use node_core::server::durability::{DurabilityPolicy, IntervalTimer, SyncDone, SyncJob, Syncer};
use node_core::server::{Handled, Reply, StreamHandle, StreamOut, StreamStep, StreamTask, Wakeups};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The fsync side of the change log (see the module doc).
pub struct LogSync {
    policy: DurabilityPolicy,
    syncer: Option<Syncer>,
    /// Changes (under "always") answered in this pass, not yet handed to a group commit.
    unsent: Vec<Rc<AckSlot>>,
    /// Changes (under "always") waiting for their group commit, in epoch order.
    waiting: VecDeque<(u64, Rc<AckSlot>)>,
    /// The group commits outstanding, oldest first: their epoch and the log position each
    /// makes durable.
    dispatched: VecDeque<(u64, u64)>,
    timer: IntervalTimer,
    wakeups: Wakeups,
}

impl LogSync {
    /// The fsync side for `policy`; no thread when the engine keeps no log.
    pub fn new(
        policy: DurabilityPolicy,
        interval: Duration,
        logging: bool,
        wakeups: Wakeups,
    ) -> std::io::Result<LogSync> {
        let waker = wakeups.loop_waker();
        let policy = if logging {
            policy
        } else {
            DurabilityPolicy::None
        };
        let syncer = Syncer::for_policy(policy, "dht-log-sync", move || {
            if let Some(waker) = &waker {
                let _ = waker.wake();
            }
        })?;
        Ok(LogSync {
            policy,
            syncer,
            unsent: Vec::new(),
            waiting: VecDeque::new(),
            dispatched: VecDeque::new(),
            timer: IntervalTimer::new(interval, Instant::now()),
            wakeups,
        })
    }

    pub fn policy(&self) -> DurabilityPolicy {
        self.policy
    }

    pub fn syncer(&self) -> Option<&Syncer> {
        self.syncer.as_ref()
    }

    /// Changes waiting for their group commit.
    pub fn awaiting_fsync(&self) -> usize {
        self.waiting.len() + self.unsent.len()
    }

    /// Answers a change request: at once, or under "always", when the request logged a change
    /// (the log's position moved past `mark`), after the fsync of its group.
    pub fn acknowledge(
        &mut self,
        engine: &Engine,
        mark: Option<u64>,
        reply: &mut Reply<'_>,
        status: Status,
        body: Vec<u8>,
    ) -> Handled<DhtNode> {
        let logged = engine.log().position() != mark;
        let waits = self.syncer.is_some() && self.policy.waits_for_sync();
        if !(waits && logged) {
            reply.send(status, &body);
            return Handled::Replied;
        }
        let slot = Rc::new(AckSlot {
            outcome: RefCell::new(None),
            handle: Cell::new(None),
        });
        self.unsent.push(Rc::clone(&slot));
        Handled::Stream(Box::new(AwaitCommit { slot, status, body }))
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
        if self.policy.waits_for_sync() && !self.unsent.is_empty() {
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
        while let Some(done) = self.syncer.as_mut().and_then(Syncer::wait) {
            self.on_done(engine, done);
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
        self.syncer.as_ref().is_some_and(|syncer| !syncer.is_busy())
    }

    /// Hands everything written so far to the sync thread.
    fn dispatch(&mut self, engine: &mut Engine) {
        engine.log_mut().write_out();
        let Some(writer) = engine.log_mut().writer_mut() else {
            return;
        };
        let (job, seq) = match writer.sync_request() {
            Some(request) => (
                SyncJob {
                    files: request.files,
                    dirs: request.dirs,
                },
                request.seq,
            ),
            // Everything written was asked for by an earlier commit.
            None if self.unsent.is_empty() => return,
            None => (SyncJob::default(), writer.written_seq()),
        };
        let Some(syncer) = &mut self.syncer else {
            return;
        };
        let epoch = match syncer.dispatch(job) {
            Ok(epoch) => epoch,
            Err(error) => {
                tracing::error!("change log group commit: {error}");
                let unsent = std::mem::take(&mut self.unsent);
                self.waiting
                    .extend(unsent.into_iter().map(|slot| (u64::MAX, slot)));
                self.answer_waiting(u64::MAX, &Err(error));
                return;
            }
        };
        match self.dispatched.back_mut() {
            // The job joined the one waiting to start.
            Some((last, last_seq)) if *last == epoch => *last_seq = (*last_seq).max(seq),
            _ => self.dispatched.push_back((epoch, seq)),
        }
        let unsent = std::mem::take(&mut self.unsent);
        self.waiting
            .extend(unsent.into_iter().map(|slot| (epoch, slot)));
    }

    fn poll(&mut self, engine: &mut Engine) {
        while let Some(done) = self.syncer.as_mut().and_then(Syncer::poll) {
            self.on_done(engine, done);
        }
    }

    fn on_done(&mut self, engine: &mut Engine, done: SyncDone) {
        let mut synced_seq = None;
        while let Some(&(epoch, seq)) = self.dispatched.front() {
            if epoch > done.epoch {
                break;
            }
            self.dispatched.pop_front();
            synced_seq = Some(seq);
        }
        match &done.result {
            Ok(()) => {
                let writer = engine.log_mut().writer_mut();
                if let (Some(writer), Some(seq)) = (writer, synced_seq) {
                    writer.mark_synced(seq);
                }
            }
            Err(error) => tracing::error!(
                "change log fsync (group commit {}) FAILED: {error}; its changes are applied \
                 and written, not confirmed durable",
                done.epoch
            ),
        }
        self.answer_waiting(done.epoch, &done.result);
    }

    /// Answers every change of `epoch` and before.
    fn answer_waiting(&mut self, epoch: u64, synced: &Result<(), String>) {
        while self.waiting.front().is_some_and(|(e, _)| *e <= epoch) {
            let Some((_, slot)) = self.waiting.pop_front() else {
                break;
            };
            *slot.outcome.borrow_mut() = Some(synced.clone());
            if let Some(handle) = slot.handle.get() {
                self.wakeups.wake(handle);
            }
        }
    }
}

/// Where a group commit leaves its outcome for one waiting change.
struct AckSlot {
    outcome: RefCell<Option<Result<(), String>>>,
    /// The change's stream, once it has waited (to wake it).
    handle: Cell<Option<StreamHandle>>,
}

/// A change waiting for its group commit; ends with the change's reply.
struct AwaitCommit {
    slot: Rc<AckSlot>,
    status: Status,
    body: Vec<u8>,
}

impl StreamTask<DhtNode> for AwaitCommit {
    fn is_deferred_reply(&self) -> bool {
        true
    }

    fn resume(&mut self, _node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        match self.slot.outcome.borrow_mut().take() {
            Some(Ok(())) => out.finish(self.status, &self.body),
            Some(Err(error)) => out.finish_error(
                Status::NotDurable,
                format!(
                    "the change is stored and in the change log, but the log's fsync failed: \
                     {error}"
                ),
            ),
            None => {
                self.slot.handle.set(Some(out.handle()));
                return StreamStep::Wait;
            }
        }
        StreamStep::Done
    }

    fn held_bytes(&self) -> usize {
        self.body.capacity()
    }
}
