//! What caller threads and the I/O thread share: the bounded command channel and its waker,
//! the client's nodes (their request-id counters, in-flight limits and health, see `node_set`),
//! and the messages that travel between them ([`Command`] in, [`Routed`] back).
//!
//! Request ids are drawn by the caller from a per-node atomic counter (rather than assigned on
//! the I/O thread) so a caller knows its id at once and can send Control or Cancel for it
//! without a round trip through the I/O thread. The counter lives as long as the `Client`, so
//! an id is never reused on a node, not even across reconnects: a stale Cancel can never hit
//! a newer request.

use crate::error::ClientError;
use crate::limit::Permit;
use crate::node_set::NodeInfo;
use crate::options::ClientOptions;
use crate::reply::Reply;
use mio::Waker;
use node_core::protocol::{ControlCode, RequestCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

/// Node indices a client hands out at most (added nodes take new ones, retired ones are never
/// reused): bounds what a topology that keeps changing can make a long-lived client hold.
pub(crate) const MAX_NODE_INDICES: usize = 65_536;

/// Commands the command channel holds before a submit blocks: enough to keep a deep pipeline
/// to every node busy, small enough that a stalled I/O thread pushes back on callers.
pub(crate) const COMMAND_QUEUE_LEN: usize = 4096;

/// From a caller to the I/O thread.
pub(crate) enum Command {
    /// Open request `request_id` on `node`; its frames go to `reply_to`. The permit is the
    /// request's in-flight slot, released when the request leaves the routing table.
    Send {
        node: usize,
        request_id: u64,
        code: RequestCode,
        body: Vec<u8>,
        reply_to: Sink,
        permit: Permit,
    },
    /// A Control frame (credit, stop) for a running stream.
    Control {
        node: usize,
        request_id: u64,
        code: ControlCode,
        body: Vec<u8>,
    },
    /// The caller no longer waits: drop whatever arrives for this request.
    Cancel { node: usize, request_id: u64 },
    /// Close the node's connection now, failing what is in flight on it with `Disconnected`,
    /// and open a new one.
    Disconnect { node: usize },
    /// The node answered neither a request nor the liveness probe that followed it
    /// (`crate::probe`): close its connection, failing what is in flight on it with `Timeout`,
    /// and count it down as after a failed connect (reconnects follow its backoff).
    Unresponsive { node: usize },
    /// Nodes were appended to the client's list: connect to them.
    AddNode,
    /// The node was retired: close its connection, failing what is in flight on it with
    /// `NodeRetired`, and never reconnect.
    Retire { node: usize },
}

/// Where the frames of one request go: its own channel (a [`crate::Pending`] or
/// [`crate::Stream`]), or a channel shared by several streams (a [`crate::StreamSet`]), where
/// each message carries the tag the set gave that stream.
pub(crate) enum Sink {
    Own(Sender<Routed>),
    Shared {
        tag: u64,
        tx: Sender<(u64, Routed)>,
    },
    /// A request of the async client (`crate::asynchronous`): its task awaits the channel. It
    /// holds what an `Own` one holds (at most the stream window plus one message).
    #[cfg(feature = "async")]
    Async(tokio::sync::mpsc::UnboundedSender<Routed>),
    /// A member of a [`crate::stream_set::StreamSet`] that a task polls: what a `Shared`
    /// one is, for a task.
    #[cfg(feature = "async")]
    AsyncShared {
        tag: u64,
        tx: tokio::sync::mpsc::UnboundedSender<(u64, Routed)>,
    },
}

impl Sink {
    /// `Err` when the receiver is gone (the caller stopped waiting).
    pub(crate) fn send(&self, routed: Routed) -> Result<(), ()> {
        match self {
            Sink::Own(tx) => tx.send(routed).map_err(drop),
            Sink::Shared { tag, tx } => tx.send((*tag, routed)).map_err(drop),
            #[cfg(feature = "async")]
            Sink::Async(tx) => tx.send(routed).map_err(drop),
            #[cfg(feature = "async")]
            Sink::AsyncShared { tag, tx } => tx.send((*tag, routed)).map_err(drop),
        }
    }
}

/// From the I/O thread to the caller waiting on one request. A request's channel holds at most
/// its stream window of Items plus one final message, because the node sends Items only against
/// credit, and the I/O thread refuses (closes the connection on) Items beyond it.
#[derive(Debug)]
pub(crate) enum Routed {
    Item { code: u8, body: Vec<u8> },
    Reply(Reply),
    Failed(ClientError),
}

pub(crate) struct Shared {
    commands: SyncSender<Command>,
    waker: Waker,
    /// Set when a wake is already on its way, so a burst of commands costs one wake syscall.
    wake_pending: AtomicBool,
    shutdown: AtomicBool,
    /// Every node ever given to the client, by index (append-only; see `node_set`).
    nodes: RwLock<Vec<Arc<NodeInfo>>>,
    pub(crate) options: ClientOptions,
    /// When `options.total_timeout_ms` ends (counted from the client's start, after the
    /// handshakes of `connect`), if it is set.
    total_end: Option<Instant>,
}

impl Shared {
    pub(crate) fn new(
        commands: SyncSender<Command>,
        waker: Waker,
        addrs: &[SocketAddr],
        options: ClientOptions,
    ) -> Shared {
        let nodes = addrs
            .iter()
            .map(|&addr| Arc::new(NodeInfo::new(addr, options.max_in_flight)))
            .collect();
        Shared {
            commands,
            waker,
            wake_pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            nodes: RwLock::new(nodes),
            total_end: (options.total_timeout_ms > 0)
                .then(|| Instant::now() + Duration::from_millis(options.total_timeout_ms)),
            options,
        }
    }

    /// When a wait of `timeout` starting now must end: no later than the end of
    /// `total_timeout_ms`.
    pub(crate) fn deadline_in(&self, timeout: Duration) -> Instant {
        let own = Instant::now() + timeout;
        self.total_end.map_or(own, |end| own.min(end))
    }

    /// The deadline of a request to node `node` submitted now ([`Shared::deadline_in`] of
    /// `request_timeout_ms`), or `ClientError::Timeout` when `total_timeout_ms` is over: the
    /// request is not sent.
    pub(crate) fn request_deadline(&self, node: usize) -> Result<Instant, ClientError> {
        let deadline = self.deadline_in(Duration::from_millis(self.options.request_timeout_ms));
        match self.total_end {
            Some(end) if Instant::now() >= end => Err(ClientError::Timeout {
                node: self.addr(node),
                ms: self.options.total_timeout_ms,
            }),
            _ => Ok(deadline),
        }
    }

    fn read_nodes(&self) -> RwLockReadGuard<'_, Vec<Arc<NodeInfo>>> {
        self.nodes.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn node(&self, index: usize) -> Result<Arc<NodeInfo>, ClientError> {
        let nodes = self.read_nodes();
        nodes.get(index).cloned().ok_or(ClientError::NoSuchNode {
            index,
            count: nodes.len(),
        })
    }

    /// Indices handed out so far (retired ones included).
    pub(crate) fn node_count(&self) -> usize {
        self.read_nodes().len()
    }

    /// Every node, by index.
    pub(crate) fn all_nodes(&self) -> Vec<Arc<NodeInfo>> {
        self.read_nodes().clone()
    }

    /// The indices of the nodes not retired (without touching the nodes' reference counts:
    /// every write of the logfiles and queue clients asks).
    pub(crate) fn active_indices(&self) -> Vec<usize> {
        self.read_nodes()
            .iter()
            .enumerate()
            .filter(|(_, node)| !node.is_retired())
            .map(|(index, _)| index)
            .collect()
    }

    /// Appends a node (as connecting) and returns its index (at most [`MAX_NODE_INDICES`]).
    /// The caller then tells the I/O thread ([`Command::AddNode`]); a request for the index
    /// that overtakes that command makes the I/O thread pick the node up all the same.
    pub(crate) fn push_node(&self, addr: SocketAddr) -> Result<usize, ClientError> {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        if nodes.len() >= MAX_NODE_INDICES {
            return Err(ClientError::Setup(format!(
                "cannot add node {addr}: this client has handed out {MAX_NODE_INDICES} node \
                 indices (retired ones are never reused); make a new client"
            )));
        }
        nodes.push(Arc::new(NodeInfo::new(addr, self.options.max_in_flight)));
        Ok(nodes.len() - 1)
    }

    /// Node `index`'s connection count (`node_set`), `None` when it is retired (or unknown);
    /// without touching its reference count: the dht client asks on every keyed request.
    pub(crate) fn route_stamp(&self, index: usize) -> Option<u64> {
        self.read_nodes()
            .get(index)
            .filter(|node| !node.is_retired())
            .map(|node| node.generation())
    }

    pub(crate) fn addr(&self, index: usize) -> SocketAddr {
        self.read_nodes()
            .get(index)
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |n| n.addr)
    }

    /// Hands a command to the I/O thread (blocking while the channel is full). Fails with
    /// `Closed` once the I/O thread has stopped.
    pub(crate) fn send(&self, command: Command, node: usize) -> Result<(), ClientError> {
        self.commands
            .send(command)
            .map_err(|_| ClientError::Closed {
                node: self.addr(node),
            })?;
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.wake();
        }
        Ok(())
    }

    /// [`Shared::send`] for an async caller: a full channel (the I/O thread is 4096 commands
    /// behind) makes the task sleep a little and try again instead of blocking its thread.
    #[cfg(feature = "async")]
    pub(crate) async fn send_async(
        &self,
        mut command: Command,
        node: usize,
    ) -> Result<(), ClientError> {
        use std::sync::mpsc::TrySendError;
        loop {
            match self.commands.try_send(command) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    command = back;
                    tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(ClientError::Closed {
                        node: self.addr(node),
                    })
                }
            }
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.wake();
        }
        Ok(())
    }

    /// Best effort: a failed wake means the poller is gone, and then so is the I/O thread.
    pub(crate) fn wake(&self) {
        if let Err(error) = self.waker.wake() {
            tracing::debug!(%error, "waking the client I/O thread failed");
        }
    }

    /// Called by the I/O thread before it drains the channel: commands sent after this point
    /// wake it again. A read-modify-write (not a plain store) so that it acquires every
    /// caller's `swap(true)` before it, and with it the commands those callers sent.
    pub(crate) fn clear_wake(&self) {
        self.wake_pending.swap(false, Ordering::AcqRel);
    }

    pub(crate) fn shut_down(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.wake();
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}
