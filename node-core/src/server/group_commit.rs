//! Replies that wait for a group commit ([`GroupCommit`]): the node's [`Syncer`], the epochs
//! dispatched to it with what each covers, and the replies (under `always`) that leave only once
//! their epoch is fsynced. One implementation serves every node that syncs (the dht's change
//! log, the logfiles node's buckets).
//!
//! The path of a reply under `always`: the handler stores the change, then [`GroupCommit::wait`]
//! turns its reply into a stream ([`AwaitCommit`]) holding the reply's status and body. At the
//! end of the event loop's pass the node hands what it wrote to the sync thread
//! ([`GroupCommit::dispatch`]) — also while a commit is in flight: the job then joins the next
//! one, which the thread starts the moment the first ends (pipelined, see [`Syncer::dispatch`]);
//! the replies of the pass wait for that epoch. When the thread reports an epoch done,
//! [`GroupCommit::poll`] answers every reply of that epoch and before, each by its [`Ticket`]
//! (what the node knows of its records) and the node's reading of the commit, and wakes its
//! stream. Shutdown waits for the commits outstanding ([`GroupCommit::drain`]); replies still
//! waiting then are ended by the core (ShuttingDown).

use super::durability::{DurabilityPolicy, SyncDone, SyncJob, Syncer};
use super::service::{Handled, StreamHandle, StreamOut, StreamStep, StreamTask, Wakeups};
use crate::protocol::Status;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

/// The answer a finished commit gives one waiting reply: Ok sends the reply the handler made;
/// an error sends its status and message instead.
pub type CommitAnswer = Result<(), (Status, String)>;

/// What a waiting reply knows of its records, and how a finished commit answers it.
pub trait Ticket: 'static {
    /// What the node makes of a finished commit for its replies (the fsync's result, and for
    /// the logfiles node the records its failed write-outs dropped).
    type Outcome;

    fn answer(&self, outcome: &Self::Outcome) -> CommitAnswer;
}

/// What the node keeps about one dispatched epoch (the dht: the log position it makes durable;
/// logfiles: the write failures before it). A dispatch that joins an epoch waiting to start
/// joins its cover too.
pub trait EpochCover {
    /// Adds `later`, dispatched after `self`.
    fn join(&mut self, later: Self);
}

/// Nothing kept per epoch.
impl EpochCover for () {
    fn join(&mut self, _later: ()) {}
}

/// Where a finished commit leaves its answer for one waiting reply.
struct Slot<T> {
    ticket: T,
    answer: RefCell<Option<CommitAnswer>>,
    /// The reply's stream, once it has waited (to wake it).
    handle: Cell<Option<StreamHandle>>,
}

/// The sync thread, its epochs and the replies waiting for them (see the module doc).
pub struct GroupCommit<T, E> {
    syncer: Syncer,
    /// Epochs dispatched and not yet collected, oldest first, with what each covers: as the
    /// syncer's own list, one being synced, one waiting to start (every later dispatch joins
    /// it), and those done since the loop last collected (it does every pass).
    epochs: VecDeque<(u64, E)>,
    /// Replies made in this pass, not yet handed to a commit.
    unsent: Vec<Rc<Slot<T>>>,
    /// Replies handed to a commit, in epoch order.
    waiting: VecDeque<(u64, Rc<Slot<T>>)>,
    wakeups: Wakeups,
}

impl<T: Ticket, E: EpochCover> GroupCommit<T, E> {
    pub fn new(syncer: Syncer, wakeups: Wakeups) -> Self {
        GroupCommit {
            syncer,
            epochs: VecDeque::with_capacity(4),
            unsent: Vec::new(),
            waiting: VecDeque::new(),
            wakeups,
        }
    }

    /// What a node with `policy` needs: nothing under `none`, else a sync thread named
    /// `thread_name` that wakes the event loop after each commit.
    pub fn for_policy(
        policy: DurabilityPolicy,
        thread_name: &str,
        wakeups: Wakeups,
    ) -> std::io::Result<Option<Self>> {
        let waker = wakeups.loop_waker();
        let syncer = Syncer::for_policy(policy, thread_name, move || {
            if let Some(waker) = &waker {
                let _ = waker.wake();
            }
        })?;
        Ok(syncer.map(|syncer| GroupCommit::new(syncer, wakeups)))
    }

    /// The sync thread's counters.
    pub fn syncer(&self) -> &Syncer {
        &self.syncer
    }

    /// Replies waiting for their commit (handed to one or not yet).
    pub fn awaiting(&self) -> usize {
        self.waiting.len() + self.unsent.len()
    }

    /// Whether replies of this pass wait to be handed to a commit.
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Whether no commit is being synced or waits to start.
    pub fn is_idle(&self) -> bool {
        !self.syncer.is_busy()
    }

    /// The reply `status` + `body` of a change whose records `ticket` names, sent once the
    /// commit of the next dispatch is done (or its error instead).
    pub fn wait<N: ?Sized>(&mut self, ticket: T, status: Status, body: Vec<u8>) -> Handled<N> {
        let slot = Rc::new(Slot {
            ticket,
            answer: RefCell::new(None),
            handle: Cell::new(None),
        });
        self.unsent.push(Rc::clone(&slot));
        Handled::Stream(Box::new(AwaitCommit { slot, status, body }))
    }

    /// Hands `job` (what was written since the last dispatch), covering `cover`, to the sync
    /// thread; the replies of the pass wait for its epoch, which is returned. If the thread
    /// cannot take it, those replies are answered at once by `failed` (given the error and
    /// the cover), and the error is returned.
    pub fn dispatch(
        &mut self,
        job: SyncJob,
        cover: E,
        failed: impl FnOnce(&str, E) -> T::Outcome,
    ) -> Result<u64, String> {
        let job = job.with_waiting_replies(self.unsent.len());
        let epoch = match self.syncer.dispatch(job) {
            Ok(epoch) => epoch,
            Err(error) => {
                let outcome = failed(&error, cover);
                for slot in std::mem::take(&mut self.unsent) {
                    self.answer_slot(&slot, &outcome);
                }
                return Err(error);
            }
        };
        match self.epochs.back_mut() {
            // The job joined the one waiting to start.
            Some((last, covered)) if *last == epoch => covered.join(cover),
            last => {
                debug_assert!(last.is_none_or(|(e, _)| *e < epoch), "epochs open in order");
                self.epochs.push_back((epoch, cover));
            }
        }
        let unsent = std::mem::take(&mut self.unsent);
        self.waiting
            .extend(unsent.into_iter().map(|slot| (epoch, slot)));
        Ok(epoch)
    }

    /// Collects the commits finished: for each, `outcome` reads it (the report and what its
    /// epochs covered) and every reply of its epoch and before is answered by that.
    pub fn poll(&mut self, mut outcome: impl FnMut(&SyncDone, Option<E>) -> T::Outcome) {
        while let Some(done) = self.syncer.poll() {
            self.finish(done, &mut outcome);
        }
    }

    /// Shutdown: waits for every commit outstanding, each read and answered as by
    /// [`poll`](Self::poll).
    pub fn drain(&mut self, mut outcome: impl FnMut(&SyncDone, Option<E>) -> T::Outcome) {
        while let Some(done) = self.syncer.wait() {
            self.finish(done, &mut outcome);
        }
    }

    fn finish(
        &mut self,
        done: SyncDone,
        outcome: &mut impl FnMut(&SyncDone, Option<E>) -> T::Outcome,
    ) {
        let mut covered: Option<E> = None;
        while self.epochs.front().is_some_and(|(e, _)| *e <= done.epoch) {
            let Some((_, cover)) = self.epochs.pop_front() else {
                break;
            };
            match &mut covered {
                Some(earlier) => earlier.join(cover),
                None => covered = Some(cover),
            }
        }
        let outcome = outcome(&done, covered);
        while self.waiting.front().is_some_and(|(e, _)| *e <= done.epoch) {
            let Some((_, slot)) = self.waiting.pop_front() else {
                break;
            };
            self.answer_slot(&slot, &outcome);
        }
    }

    fn answer_slot(&self, slot: &Slot<T>, outcome: &T::Outcome) {
        *slot.answer.borrow_mut() = Some(slot.ticket.answer(outcome));
        if let Some(handle) = slot.handle.get() {
            self.wakeups.wake(handle);
        }
    }
}

/// A reply waiting for its group commit; ends with the reply, or the commit's error.
struct AwaitCommit<T> {
    slot: Rc<Slot<T>>,
    status: Status,
    body: Vec<u8>,
}

impl<T, N: ?Sized> StreamTask<N> for AwaitCommit<T> {
    fn is_deferred_reply(&self) -> bool {
        true
    }

    fn resume(&mut self, _node: &mut N, out: &mut StreamOut<'_>) -> StreamStep {
        match self.slot.answer.borrow_mut().take() {
            Some(Ok(())) => out.finish(self.status, &self.body),
            Some(Err((status, message))) => out.finish_error(status, message),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{self, FrameType};
    use crate::server::durability::ManualThread;

    /// A change's name; a failed commit answers it NotDurable naming it and the error.
    struct Change(&'static str);

    impl Ticket for Change {
        type Outcome = Result<(), String>;

        fn answer(&self, synced: &Result<(), String>) -> CommitAnswer {
            synced
                .clone()
                .map_err(|e| (Status::NotDurable, format!("{}: {e}", self.0)))
        }
    }

    /// The log positions an epoch covers, in the order dispatched.
    #[derive(Debug, Default, PartialEq)]
    struct Covers(Vec<u64>);

    impl EpochCover for Covers {
        fn join(&mut self, later: Covers) {
            self.0.extend(later.0);
        }
    }

    type Commits = GroupCommit<Change, Covers>;

    /// A reply's stream, as the core runs it: resumed, it waits or writes its reply.
    struct Waiter {
        task: Box<dyn StreamTask<()>>,
        handle: StreamHandle,
        out: Vec<u8>,
    }

    impl Waiter {
        fn new(commits: &mut Commits, name: &'static str, id: u64) -> Waiter {
            let Handled::Stream(task) = commits.wait::<()>(Change(name), Status::Ok, vec![7; 3])
            else {
                panic!("a waiting reply is a stream");
            };
            assert!(task.is_deferred_reply());
            assert_eq!(task.held_bytes(), 3);
            let handle = StreamHandle {
                connection_serial: 1,
                slot: 0,
                request_id: id,
            };
            Waiter {
                task,
                handle,
                out: Vec::new(),
            }
        }

        /// Resumes the stream: `None` while it waits, else the reply's status and body.
        fn resume(&mut self) -> Option<(u8, Vec<u8>)> {
            let mut out = StreamOut::new(&mut self.out, self.handle, 0);
            match self.task.resume(&mut (), &mut out) {
                StreamStep::Wait => {
                    assert!(self.out.is_empty());
                    return None;
                }
                step => assert_eq!(step, StreamStep::Done),
            }
            let header = frame::parse_frame(&self.out, 1 << 20).unwrap().unwrap();
            assert_eq!(header.frame_type, FrameType::Reply);
            assert_eq!(header.request_id, self.handle.request_id);
            Some((header.code, self.out[frame::HEADER_LEN..].to_vec()))
        }
    }

    fn commits() -> (Commits, ManualThread, Wakeups) {
        let (syncer, thread) = ManualThread::syncer();
        let wakeups = Wakeups::default();
        (GroupCommit::new(syncer, wakeups.clone()), thread, wakeups)
    }

    fn woken(wakeups: &Wakeups) -> Vec<u64> {
        wakeups.take().iter().map(|h| h.request_id).collect()
    }

    fn not_failed(error: &str, _: Covers) -> Result<(), String> {
        panic!("the dispatch failed: {error}")
    }

    /// Reply "a" (request 1), its pass dispatched (covering position 1), and its commit done:
    /// reported, not yet collected.
    fn first_commit_done(commits: &mut Commits, thread: &ManualThread) -> Waiter {
        let a = Waiter::new(commits, "a", 1);
        commits
            .dispatch(SyncJob::default(), Covers(vec![1]), not_failed)
            .unwrap();
        assert_eq!(thread.start().unwrap().0, 1);
        thread.report(1, Ok(()));
        a
    }

    #[test]
    fn replies_leave_only_once_their_epoch_is_synced_while_the_next_group_forms() {
        let (mut commits, thread, wakeups) = commits();
        let mut a = Waiter::new(&mut commits, "a", 1);
        assert!(commits.has_unsent());
        assert_eq!(
            commits.dispatch(SyncJob::default(), Covers(vec![10]), not_failed),
            Ok(1)
        );
        assert!(!commits.has_unsent() && !commits.is_idle());
        // The job tells the thread how many replies wait for it (what its gathering weighs).
        let (epoch, job) = thread.start().unwrap();
        assert_eq!((epoch, job.waiting_replies), (1, 1));
        // Epoch 1 is being synced: the next passes' replies are handed over at once, and join
        // epoch 2, which waits to start.
        let mut b = Waiter::new(&mut commits, "b", 2);
        assert_eq!(
            commits.dispatch(SyncJob::default(), Covers(vec![20]), not_failed),
            Ok(2)
        );
        let mut c = Waiter::new(&mut commits, "c", 3);
        assert_eq!(
            commits.dispatch(SyncJob::default(), Covers(vec![30]), not_failed),
            Ok(2)
        );
        assert_eq!(commits.awaiting(), 3);
        assert_eq!((a.resume(), b.resume(), c.resume()), (None, None, None));
        let mut read = Vec::new();
        commits.poll(|done, covered| {
            read.push((done.epoch, covered));
            done.result.clone()
        });
        assert!(read.is_empty(), "nothing is done yet");

        thread.report(1, Ok(()));
        commits.poll(|done, covered| {
            read.push((done.epoch, covered));
            done.result.clone()
        });
        assert_eq!(read, vec![(1, Some(Covers(vec![10])))]);
        assert_eq!(woken(&wakeups), vec![1]);
        assert_eq!(a.resume(), Some((Status::Ok as u8, vec![7; 3])));
        assert_eq!((b.resume(), c.resume()), (None, None));
        assert_eq!(commits.awaiting(), 2);

        // Epoch 2 fails: both its replies say so, with the joined cover read once.
        let (epoch, job) = thread.start().unwrap();
        assert_eq!((epoch, job.waiting_replies), (2, 2));
        thread.report(2, Err("fdatasync: EIO".into()));
        read.clear();
        commits.poll(|done, covered| {
            read.push((done.epoch, covered));
            done.result.clone()
        });
        assert_eq!(read, vec![(2, Some(Covers(vec![20, 30])))]);
        assert_eq!(woken(&wakeups), vec![2, 3]);
        let not_durable = |name: &str| {
            let message = format!("{name}: fdatasync: EIO").into_bytes();
            Some((Status::NotDurable as u8, message))
        };
        assert_eq!(b.resume(), not_durable("b"));
        assert_eq!(c.resume(), not_durable("c"));
        assert_eq!(commits.awaiting(), 0);
        assert!(commits.is_idle());
    }

    #[test]
    fn a_reply_answered_before_its_stream_waited_is_sent_at_its_first_turn() {
        let (mut commits, thread, wakeups) = commits();
        let mut a = first_commit_done(&mut commits, &thread);
        commits.poll(|done, _| done.result.clone());
        // Nothing to wake: the stream never waited.
        assert!(woken(&wakeups).is_empty());
        assert_eq!(a.resume(), Some((Status::Ok as u8, vec![7; 3])));
    }

    #[test]
    fn shutdown_drains_every_commit_outstanding_and_a_stopped_thread_fails_the_pass() {
        let (mut commits, thread, wakeups) = commits();
        let mut a = first_commit_done(&mut commits, &thread);
        let mut drained = Vec::new();
        commits.drain(|done, covered| {
            drained.push((done.epoch, covered));
            done.result.clone()
        });
        assert_eq!(drained, vec![(1, Some(Covers(vec![1])))]);
        assert_eq!(a.resume(), Some((Status::Ok as u8, vec![7; 3])));
        // Nothing outstanding: drain returns at once.
        commits.drain(|_, _| panic!("no commit is outstanding"));

        // The thread is gone: the pass's replies are answered by `failed`, with their cover.
        thread.close();
        let mut b = Waiter::new(&mut commits, "b", 2);
        assert_eq!(b.resume(), None);
        let error = commits
            .dispatch(SyncJob::default(), Covers(vec![2]), |error, cover| {
                assert_eq!(cover, Covers(vec![2]));
                Err(error.to_string())
            })
            .unwrap_err();
        assert_eq!(error, "the sync thread has stopped");
        assert_eq!(woken(&wakeups), vec![2]);
        let message = b"b: the sync thread has stopped".to_vec();
        assert_eq!(b.resume(), Some((Status::NotDurable as u8, message)));
        assert_eq!(commits.awaiting(), 0);
    }

    #[test]
    fn no_sync_thread_under_none() {
        let none = GroupCommit::<Change, ()>::for_policy(
            DurabilityPolicy::None,
            "test-sync",
            Wakeups::default(),
        );
        assert!(none.unwrap().is_none());
        let always = GroupCommit::<Change, ()>::for_policy(
            DurabilityPolicy::Always,
            "test-sync",
            Wakeups::default(),
        );
        assert!(always.unwrap().is_some_and(|commits| commits.is_idle()));
    }
}
