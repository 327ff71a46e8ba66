//! Catch-up: a replica that starts with `[dht] replica_peers` syncs from the other members of
//! its replica set before it answers reads (docs/replication.md, "Catch-up";
//! docs/protocol.md §6.13).
//!
//! Who does what:
//! - The **worker thread** ([`worker`]) picks a source among the peers (a ready one; if none is
//!   ready but every peer answers, all of them: a set restarted whole merges what each member
//!   kept), lists its channels, opens a Mirror with refresh per channel, decodes every item
//!   into [`Op`]s and hands them to the loop in bounded messages. Once every channel's
//!   RefreshDone has come and a second listing of the source's channels shows none it has not
//!   mirrored, it sends [`Message::Done`] and closes its mirrors. A source that fails is
//!   dropped and the worker starts over (with backoff), keeping what was applied: versions make
//!   applying twice harmless.
//! - The **event loop** (this module's [`CatchUp`]) applies the ops through the engine's
//!   PutVersion / RemoveVersion entry points (so the change log and Listen and Mirror streams
//!   see them), a slice at a time so that requests keep being served, and turns **ready** when
//!   it reaches `Done` (every op before it applied). Until then the read requests answer
//!   NotReady ([`CatchUp::refuses`]); writes are served as usual.
//!
//! An operator forces ready with SetReady (`swarmctl dht ready`) when the peers are gone for
//! good: the worker stops, and the node serves what it has.

pub mod worker;

use crate::engine::{Engine, EngineError};
use node_core::protocol::dht::DhtRequest;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ops the loop applies per call of [`CatchUp::background`]: about a millisecond of work.
const OPS_PER_STEP: usize = 2048;
/// Messages (each at most one refresh batch's ops, about 64 KiB of values) waiting for the
/// loop: bounds the worker's lead.
const MESSAGE_QUEUE: usize = 8;
/// How long the shutdown waits for the worker to notice it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Apply failures logged one by one; the rest are counted in the final line.
const FAILURES_LOGGED: u64 = 10;

/// Where a node stands (GetStats `catch_up_state`, metric `swarm_dht_catch_up_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CatchUpState {
    /// Serving reads: no peers configured, or caught up.
    Ready = 0,
    /// Catching up: reads are answered NotReady.
    CatchingUp = 1,
    /// An operator forced ready (SetReady) before the catch-up ended.
    Forced = 2,
}

/// How a node catches up; from its config, or set by tests.
#[derive(Debug, Clone, Default)]
pub struct CatchUpConfig {
    /// The other members of the node's replica set, `host:port` (`[dht] replica_peers`).
    pub peers: Vec<String>,
    /// The credentials (`[dht] replica_client`) and TLS (`[tls] peer_ca_file`, as for
    /// redistributions) the worker connects with.
    pub login: crate::peer::PeerLogin,
    pub tuning: worker::Tuning,
}

/// One change to apply, decoded from a Mirror item by the worker.
#[derive(Debug)]
pub(crate) struct Op {
    pub key: u64,
    pub version: u64,
    pub kind: OpKind,
}

#[derive(Debug)]
pub(crate) enum OpKind {
    /// Store if `version` is newer than what is held (PutVersion's rule; a version-0 refresh
    /// record thus fills only a key not held).
    Put(Box<[u8]>),
    /// A write without a version on the source (Changed with version 0): stored
    /// unconditionally, as the source's Put was.
    Overwrite(Box<[u8]>),
    /// Remove and keep a tombstone if `version` is newer (RemoveVersion's rule).
    Remove,
    /// A removal without a version on the source (Removed with version 0): as Remove (19).
    RemoveUnversioned,
}

/// The worker's messages to the loop, in the order it sends them.
#[derive(Debug)]
pub(crate) enum Message {
    Apply {
        channel: String,
        ops: Vec<Op>,
    },
    /// Every channel's refresh arrived; with what the caught-up node learnt from where.
    Done {
        sources: Vec<SocketAddr>,
        channels: u64,
    },
}

/// What the loop applied (the INFO line at the end, GetStats).
#[derive(Debug, Default, Clone, Copy)]
struct Applied {
    records: u64,
    tombstones: u64,
    /// Ops that changed nothing (the node held as new or newer).
    unchanged: u64,
    failed: u64,
}

struct Running {
    messages: Receiver<Message>,
    /// The message being applied, and how far.
    job: Option<(String, Vec<Op>, usize)>,
    thread: Option<JoinHandle<()>>,
    cancel: Arc<AtomicBool>,
}

/// The loop's side of catch-up (see the module doc).
pub struct CatchUp {
    state: CatchUpState,
    running: Option<Running>,
    started: Instant,
    applied: Applied,
    /// The change log refused an op (a full disk): said once until an op applies again.
    log_waiting: bool,
}

impl CatchUp {
    /// A node without peers: ready at once, as before replication.
    pub fn ready() -> CatchUp {
        CatchUp {
            state: CatchUpState::Ready,
            running: None,
            started: Instant::now(),
            applied: Applied::default(),
            log_waiting: false,
        }
    }

    /// Starts the worker: the node is not ready until it is done (or forced).
    pub fn start(
        config: CatchUpConfig,
        waker: Option<Arc<mio::Waker>>,
    ) -> std::io::Result<CatchUp> {
        let (to_loop, messages) = mpsc::sync_channel(MESSAGE_QUEUE);
        let cancel = Arc::new(AtomicBool::new(false));
        tracing::info!(
            "catching up from the replica set's other members ({}) before answering reads",
            config.peers.join(", ")
        );
        let context = worker::Context {
            config,
            to_loop,
            waker,
            cancel: Arc::clone(&cancel),
        };
        let thread = std::thread::Builder::new()
            .name("dht-catch-up".into())
            .spawn(move || worker::run(context))?;
        Ok(CatchUp {
            state: CatchUpState::CatchingUp,
            running: Some(Running {
                messages,
                job: None,
                thread: Some(thread),
                cancel,
            }),
            started: Instant::now(),
            applied: Applied::default(),
            log_waiting: false,
        })
    }

    pub fn state(&self) -> CatchUpState {
        self.state
    }

    pub fn is_ready(&self) -> bool {
        self.state != CatchUpState::CatchingUp
    }

    /// Whether `request` is refused NotReady now: the reads that answer from the node's
    /// records (a catching-up node would answer NotFound for a record it has not caught up
    /// yet), and Update, whose expectation is checked against them. Writes, Listen, Mirror (it
    /// serves what the node has: peers catching up together merge that way), the sizes and the
    /// admin requests are served.
    pub fn refuses(&self, request: DhtRequest) -> bool {
        !self.is_ready()
            && matches!(
                request,
                DhtRequest::Get
                    | DhtRequest::Exists
                    | DhtRequest::GetAll
                    | DhtRequest::GetWithVersion
                    | DhtRequest::Update
            )
    }

    /// Records, tombstones and unchanged ops applied so far (GetStats).
    pub fn applied(&self) -> (u64, u64) {
        (self.applied.records, self.applied.tombstones)
    }

    /// SetReady: the operator says the peers are gone; stop catching up and serve what the
    /// node has. Returns the state before.
    pub fn force_ready(&mut self) -> CatchUpState {
        let before = self.state;
        if before == CatchUpState::CatchingUp {
            tracing::warn!(
                "forced ready by an operator after {:.1} s of catching up ({} records and {} \
                 tombstones applied): reads are answered from what this node has, which may \
                 miss writes its peers took while it was down",
                self.started.elapsed().as_secs_f64(),
                self.applied.records,
                self.applied.tombstones
            );
            self.state = CatchUpState::Forced;
            self.stop();
        }
        before
    }

    /// Applies the worker's ops, a slice at a time; turns ready at its Done. Returns true while
    /// more is waiting.
    pub fn background(&mut self, engine: &mut Engine) -> bool {
        let Some(running) = &mut self.running else {
            return false;
        };
        if running.job.is_none() {
            match running.messages.try_recv() {
                Ok(Message::Apply { channel, ops }) => running.job = Some((channel, ops, 0)),
                Ok(Message::Done { sources, channels }) => {
                    self.finish(&sources, channels);
                    return false;
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    self.worker_gone();
                    return false;
                }
            }
        }
        let Some((channel, ops, next)) = &mut running.job else {
            return false;
        };
        let end = (*next + OPS_PER_STEP).min(ops.len());
        for (index, op) in ops.iter().enumerate().take(end).skip(*next) {
            match apply(engine, channel, op) {
                Ok(outcome) => {
                    self.applied.count(&op.kind, outcome);
                    self.log_waiting = false;
                }
                Err(EngineError::LogUnavailable(error)) => {
                    // Nothing was applied: try again from this op on a later call (the tick).
                    *next = index;
                    if !std::mem::replace(&mut self.log_waiting, true) {
                        tracing::warn!("catch-up: applying waits for the change log: {error}");
                    }
                    return false;
                }
                Err(error) => {
                    self.applied.failed += 1;
                    if self.applied.failed <= FAILURES_LOGGED {
                        tracing::warn!(
                            "catch-up: key 0x{:016x} of channel {channel} not applied: {error}",
                            op.key
                        );
                    }
                }
            }
        }
        *next = end;
        if end >= ops.len() {
            running.job = None;
        }
        true
    }

    /// Joins a worker that has ended (after Done, a forced ready, or the shutdown).
    pub fn tick(&mut self) {
        let finished = self.running.as_ref().is_some_and(|running| {
            running.job.is_none()
                && running
                    .thread
                    .as_ref()
                    .is_none_or(|thread| thread.is_finished())
        });
        if finished && self.state != CatchUpState::CatchingUp {
            self.join();
        }
    }

    /// Stops the worker at its next step (shutdown, forced ready).
    pub fn stop(&mut self) {
        if let Some(running) = &mut self.running {
            running.cancel.store(true, Ordering::Relaxed);
            running.job = None;
            // Unblocks a worker waiting to send: it sees the cancel flag next.
            while running.messages.try_recv().is_ok() {}
        }
    }

    /// Stops and joins the worker (the node's shutdown). A worker stuck in a request to a
    /// peer that does not answer is left behind after [`SHUTDOWN_WAIT`]: it touches nothing of
    /// the node's, and the process is ending.
    pub fn shutdown(&mut self) {
        self.stop();
        let Some(running) = &mut self.running else {
            return;
        };
        let until = Instant::now() + SHUTDOWN_WAIT;
        while running
            .thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
        {
            if Instant::now() >= until {
                tracing::debug!("the catch-up thread is waiting for a peer; not joined");
                self.running = None;
                return;
            }
            while running.messages.try_recv().is_ok() {}
            std::thread::sleep(Duration::from_millis(5));
        }
        self.join();
    }

    fn join(&mut self) {
        if let Some(mut running) = self.running.take() {
            if let Some(thread) = running.thread.take() {
                if thread.join().is_err() {
                    tracing::error!("the catch-up thread panicked");
                }
            }
        }
    }

    fn finish(&mut self, sources: &[SocketAddr], channels: u64) {
        let applied = self.applied;
        self.state = CatchUpState::Ready;
        let sources: Vec<String> = sources.iter().map(ToString::to_string).collect();
        tracing::info!(
            "caught up from {} in {:.1} s: {} records and {} tombstones applied ({} already \
             as new here, {} failed) over {channels} channels; answering reads now",
            sources.join(", "),
            self.started.elapsed().as_secs_f64(),
            applied.records,
            applied.tombstones,
            applied.unchanged,
            applied.failed
        );
    }

    fn worker_gone(&mut self) {
        if self.state == CatchUpState::CatchingUp {
            // Only a panic ends the worker without Done while nothing cancelled it.
            tracing::error!(
                "the catch-up thread ended before it was done: this node stays not ready; \
                 `swarmctl dht ready` forces it (see docs/replication.md)"
            );
        }
        self.join();
    }
}

impl Applied {
    fn count(&mut self, kind: &OpKind, changed: bool) {
        match (kind, changed) {
            (_, false) => self.unchanged += 1,
            (OpKind::Put(_) | OpKind::Overwrite(_), true) => self.records += 1,
            (OpKind::Remove | OpKind::RemoveUnversioned, true) => self.tombstones += 1,
        }
    }
}

/// Applies one op with the rule of the request it stands for; whether it changed anything.
fn apply(engine: &mut Engine, channel: &str, op: &Op) -> Result<bool, EngineError> {
    match &op.kind {
        OpKind::Put(value) => engine.put_version(channel, op.key, op.version, value),
        OpKind::Overwrite(value) => engine.put(channel, op.key, value).map(|()| true),
        OpKind::Remove => engine.remove_version(channel, op.key, op.version),
        OpKind::RemoveUnversioned => engine.remove(channel, op.key),
    }
}
