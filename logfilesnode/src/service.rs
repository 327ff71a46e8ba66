//! The logfiles node as a server [`Service`]: the engine, the request dispatch (in
//! [`crate::requests`]), the flush and fsync timers, the acknowledgement of writes after their
//! group commit when `fsync = "always"` (wake-ups from the sync thread), and the final flush.
//!
//! Group commit: a Put under `always` is appended to its buffer and becomes a stream that waits
//! ([`AwaitCommit`]) for the epoch it was written in. After each pass of the event loop
//! ([`Service::background`]) the node hands the files written in the current epoch to the sync
//! thread — unless a commit is already running, in which case the writes pile up into the next
//! one. When the thread reports back (waking the loop), every write of that epoch and before is
//! answered by what became of its own records ([`WriteOutcome`]): Ok when they are written and
//! fsynced; InternalError when a failed write-out dropped them all (nothing of the write is
//! stored); NotDurable when they are stored but the fsync failed, or (a PutBatch) only some were
//! dropped.

use crate::engine::{Discard, Engine, EpochFailures, WriteOutcome, WriteTickets};
use crate::requests;
use node_core::metrics::Families;
use node_core::protocol::batch::SharedBatch;
use node_core::protocol::logfiles::LogfilesRequest;
use node_core::protocol::{NodeKind, RequestCode, Status};
use node_core::server::durability::{DurabilityPolicy, IntervalTimer, SyncDone, Syncer};
use node_core::server::{
    Handled, Reply, Request, Service, StreamHandle, StreamOut, StreamStep, StreamTask, Wakeups,
};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Timers of the write path.
#[derive(Debug, Clone, Copy)]
pub struct WriteTimers {
    pub flush_interval: Duration,
    pub fsync_interval: Duration,
}

pub struct LogfilesNode {
    pub(crate) engine: Engine,
    wakeups: Wakeups,
    policy: DurabilityPolicy,
    flush_interval: Duration,
    /// The fsync thread (none with `fsync = "none"`).
    syncer: Option<Syncer>,
    /// Writes waiting for their group commit, in epoch order.
    waiting: VecDeque<(u64, Rc<AckSlot>)>,
    /// What went wrong in the epoch of the commit in flight, before it.
    in_flight: EpochFailures,
    last_flush: Instant,
    /// When the next fsync is due under `fsync = "interval"`.
    fsync_timer: IntervalTimer,
    /// Reused by PutBatch to decompress batches without allocating per request.
    pub(crate) batch_scratch: Vec<u8>,
    /// The batch every read fills and sends within its step (none holds one between steps).
    pub(crate) stream_batch: SharedBatch,
}

impl LogfilesNode {
    pub fn new(
        engine: Engine,
        wakeups: Wakeups,
        timers: WriteTimers,
    ) -> std::io::Result<LogfilesNode> {
        let policy = engine.limits().fsync;
        let waker = wakeups.loop_waker();
        let syncer = Syncer::for_policy(policy, "logfiles-sync", move || {
            if let Some(waker) = &waker {
                let _ = waker.wake();
            }
        })?;
        let now = Instant::now();
        Ok(LogfilesNode {
            engine,
            wakeups,
            policy,
            flush_interval: timers.flush_interval,
            syncer,
            waiting: VecDeque::new(),
            in_flight: EpochFailures::default(),
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
        self.waiting.len()
    }

    /// The fsync thread and its counters (none with `fsync = "none"`).
    pub(crate) fn syncer(&self) -> Option<&Syncer> {
        self.syncer.as_ref()
    }

    /// Answers a write that was stored (its records: `tickets`): at once, or (fsync = always)
    /// after its group commit.
    pub(crate) fn acknowledge(
        &mut self,
        reply: &mut Reply<'_>,
        body: &[u8],
        tickets: WriteTickets,
    ) -> Handled<Self> {
        let Some(syncer) = self
            .syncer
            .as_ref()
            .filter(|_| self.policy.waits_for_sync())
        else {
            reply.ok(body);
            return Handled::Replied;
        };
        let slot = Rc::new(AckSlot {
            tickets,
            outcome: RefCell::new(None),
            handle: Cell::new(None),
        });
        self.waiting
            .push_back((syncer.current_epoch(), Rc::clone(&slot)));
        Handled::Stream(Box::new(AwaitCommit {
            slot,
            body: body.to_vec(),
        }))
    }

    /// Starts a group commit of everything written in the current epoch.
    fn dispatch_commit(&mut self) {
        let Some(syncer) = &mut self.syncer else {
            return;
        };
        debug_assert!(!syncer.is_busy());
        let (job, failures) = self.engine.take_sync_job();
        match syncer.dispatch(job) {
            Ok(_) => self.in_flight = failures,
            Err(e) => {
                tracing::error!("group commit: {e}");
                let epoch = syncer.current_epoch();
                self.answer_waiting(epoch, &Err(e), &failures.discards);
            }
        }
    }

    fn on_commit_done(&mut self, done: SyncDone) {
        let before = std::mem::take(&mut self.in_flight);
        let synced = done.result.and(match before.sync_failure {
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
        self.answer_waiting(done.epoch, &synced, &before.discards);
    }

    /// Answers every write of `epoch` and before: its records were fsynced with `synced` as the
    /// result, and `discards` were dropped.
    fn answer_waiting(&mut self, epoch: u64, synced: &Result<(), String>, discards: &[Discard]) {
        while let Some((slot_epoch, _)) = self.waiting.front() {
            if *slot_epoch > epoch {
                break;
            }
            let Some((_, slot)) = self.waiting.pop_front() else {
                break;
            };
            let outcome = WriteOutcome::of(&slot.tickets, discards, synced);
            *slot.outcome.borrow_mut() = Some(outcome);
            if let Some(handle) = slot.handle.get() {
                self.wakeups.wake(handle);
            }
        }
    }

    fn poll_commits(&mut self) {
        while let Some(done) = self.syncer.as_mut().and_then(Syncer::poll) {
            self.on_commit_done(done);
        }
    }

    fn syncer_idle(&self) -> bool {
        self.syncer.as_ref().is_some_and(|s| !s.is_busy())
    }
}

/// Where a group commit leaves its outcome for one waiting write.
struct AckSlot {
    /// The write's records.
    tickets: WriteTickets,
    outcome: RefCell<Option<WriteOutcome>>,
    /// The write's stream, once it has waited (to wake it).
    handle: Cell<Option<StreamHandle>>,
}

/// A write waiting for its group commit; ends with the write's reply.
struct AwaitCommit {
    slot: Rc<AckSlot>,
    body: Vec<u8>,
}

impl StreamTask<LogfilesNode> for AwaitCommit {
    fn is_deferred_reply(&self) -> bool {
        true
    }

    fn resume(&mut self, _node: &mut LogfilesNode, out: &mut StreamOut<'_>) -> StreamStep {
        match self.slot.outcome.borrow_mut().take() {
            Some(WriteOutcome::Durable) => out.finish(Status::Ok, &self.body),
            Some(WriteOutcome::NotStored(e)) => out.finish_error(Status::InternalError, e),
            Some(WriteOutcome::NotDurable(e)) => out.finish_error(Status::NotDurable, e),
            None => {
                self.slot.handle.set(Some(out.handle()));
                return StreamStep::Wait;
            }
        }
        StreamStep::Done
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
        if self.policy.waits_for_sync() && !self.waiting.is_empty() && self.syncer_idle() {
            self.dispatch_commit();
        }
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
        while let Some(done) = self.syncer.as_mut().and_then(Syncer::wait) {
            self.on_commit_done(done);
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
