//! [`StreamSet`]: several streams, on any nodes of one `Client`, delivering into one queue, so
//! that one thread waits on all of them at once (a dht Listen merged over every node, say)
//! instead of polling each stream in turn with short timeouts.
//!
//! Owns the set's shared channel and its members. Each member is an ordinary stream on the
//! wire, with its own request id, credit and Stop; only where its frames are delivered differs:
//! the I/O thread sends them, tagged with the member's [`StreamTag`], into the set's one
//! channel. Flow control is per member exactly as for a [`crate::Stream`]: credit is granted
//! back as the caller takes a member's items, so a caller that stops calling
//! [`StreamSet::next_timeout`] pauses every member once its window is used up.
//!
//! Tags are never reused within a set, so frames still on their way from a member that was
//! closed (or ended) are recognised and dropped.
//!
//! A set is waited on by a thread ([`StreamSet::next_timeout`]) or, made with
//! [`StreamSet::new_async`], polled by a tokio task ([`StreamSet::poll_next_event`]): the same
//! members, credit and tags, only the queue differs. An async set never waits for an in-flight
//! slot when it opens a member (the task's thread must not block): with none free, the open
//! fails at once with `TooManyInFlight`.

use crate::client::send_request;
use crate::error::ClientError;
use crate::reply::{StreamControl, StreamEvent};
use crate::shared::{Routed, Shared, Sink};
use node_core::protocol::RequestCode;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names one member of a [`StreamSet`]; unique for the set's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamTag(pub u64);

/// A set of streams read through one queue. Create with [`crate::Client::stream_set`].
///
/// Dropping the set stops and cancels every member still running.
pub struct StreamSet {
    shared: Arc<Shared>,
    queue: Queue,
    members: HashMap<u64, StreamControl>,
    next_tag: u64,
}

/// Where the I/O thread delivers the members' frames. It holds at most the members' windows
/// of items plus one final message each: the node sends items only against credit.
enum Queue {
    /// A thread waits on it.
    Blocking {
        tx: Sender<(u64, Routed)>,
        rx: Receiver<(u64, Routed)>,
    },
    /// A task polls it.
    #[cfg(feature = "async")]
    Async {
        tx: tokio::sync::mpsc::UnboundedSender<(u64, Routed)>,
        rx: tokio::sync::mpsc::UnboundedReceiver<(u64, Routed)>,
    },
}

impl StreamSet {
    pub(crate) fn new(shared: Arc<Shared>) -> StreamSet {
        let (tx, rx) = mpsc::channel();
        StreamSet::with_queue(shared, Queue::Blocking { tx, rx })
    }

    /// A set a tokio task polls ([`StreamSet::poll_next_event`]) instead of a thread waiting.
    #[cfg(feature = "async")]
    pub(crate) fn new_async(shared: Arc<Shared>) -> StreamSet {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        StreamSet::with_queue(shared, Queue::Async { tx, rx })
    }

    fn with_queue(shared: Arc<Shared>, queue: Queue) -> StreamSet {
        StreamSet {
            shared,
            queue,
            members: HashMap::new(),
            next_tag: 1,
        }
    }

    /// Starts a streaming request on node `node` as a new member of the set.
    pub fn open(
        &mut self,
        node: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<StreamTag, ClientError> {
        let tag = self.next_tag;
        let (sink, deadline) = match &self.queue {
            Queue::Blocking { tx, .. } => {
                let tx = tx.clone();
                (
                    Sink::Shared { tag, tx },
                    self.shared.request_deadline(node)?,
                )
            }
            #[cfg(feature = "async")]
            Queue::Async { tx, .. } => {
                let tx = tx.clone();
                (Sink::AsyncShared { tag, tx }, Instant::now())
            }
        };
        let ticket = send_request(&self.shared, node, code, body.to_vec(), deadline, sink)?;
        self.next_tag += 1;
        self.members.insert(tag, StreamControl::open(ticket));
        Ok(StreamTag(tag))
    }

    /// Members still running (their End or error not yet taken).
    /// `Ok` when a stream on node `node` would be opened now; else the error it would fail
    /// with at once (the node known to be down, retired).
    pub(crate) fn check_node(&self, node: usize) -> Result<(), ClientError> {
        self.shared.node(node)?.check()
    }

    /// The address of node `node`.
    pub(crate) fn node_addr(&self, node: usize) -> Option<std::net::SocketAddr> {
        self.shared.node(node).ok().map(|info| info.addr)
    }

    pub fn running(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `tag` is still running.
    pub fn contains(&self, tag: StreamTag) -> bool {
        self.members.contains_key(&tag.0)
    }

    /// The node a running member was opened on.
    pub fn node_of(&self, tag: StreamTag) -> Option<usize> {
        self.members.get(&tag.0).map(|member| member.ticket.node)
    }

    /// The request id on the wire of a running member (a queue Consume's acknowledgements name
    /// it).
    pub fn request_id(&self, tag: StreamTag) -> Option<u64> {
        self.members
            .get(&tag.0)
            .map(|member| member.ticket.request_id)
    }

    /// Asks a member's node to end it; its remaining items and its End still arrive.
    pub fn stop(&mut self, tag: StreamTag) {
        if let Some(member) = self.members.get_mut(&tag.0) {
            member.stop();
        }
    }

    /// Forgets a member at once: stops and cancels it; nothing more of it is delivered.
    pub fn close(&mut self, tag: StreamTag) {
        self.members.remove(&tag.0);
    }

    /// The next event of any member, waiting up to `timeout`; `None` when the time passed
    /// without one, or at once when no member is running. A member's `End` or error is its
    /// last event: it leaves the set then. (An async set is not waited on: only what is there
    /// now is taken.)
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Option<(StreamTag, Result<StreamEvent, ClientError>)> {
        let deadline = Instant::now() + timeout;
        while !self.members.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let (tag, routed) = match &mut self.queue {
                Queue::Blocking { rx, .. } => match rx.recv_timeout(remaining) {
                    Ok(message) => message,
                    // The set holds a sender itself, so the channel never disconnects.
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
                },
                #[cfg(feature = "async")]
                Queue::Async { rx, .. } => rx.try_recv().ok()?,
            };
            if let Some(event) = self.take(tag, routed) {
                return Some(event);
            }
        }
        None
    }

    /// [`StreamSet::next_timeout`] for a task: the next event of any member, or `Pending`
    /// (the task is woken when one comes); `Ready(None)` at once when no member is running.
    #[cfg(feature = "async")]
    pub(crate) fn poll_next_event(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(StreamTag, Result<StreamEvent, ClientError>)>> {
        use std::task::Poll;
        while !self.members.is_empty() {
            let message = match &mut self.queue {
                Queue::Blocking { rx, .. } => rx.try_recv().ok(),
                Queue::Async { rx, .. } => match rx.poll_recv(cx) {
                    Poll::Ready(message) => message,
                    Poll::Pending => return Poll::Pending,
                },
            };
            // The set holds a sender itself, so the queue never closes; a blocking set's
            // empty queue is not waited on here.
            let Some((tag, routed)) = message else {
                return Poll::Pending;
            };
            if let Some(event) = self.take(tag, routed) {
                return Poll::Ready(Some(event));
            }
        }
        Poll::Ready(None)
    }

    /// One message from the queue as its member's event; `None` for a member closed meanwhile.
    fn take(
        &mut self,
        tag: u64,
        routed: Routed,
    ) -> Option<(StreamTag, Result<StreamEvent, ClientError>)> {
        let member = self.members.get_mut(&tag)?; // left over from a closed member
        let event = member.on_event(routed);
        if member.ticket.finished {
            self.members.remove(&tag);
        }
        Some((StreamTag(tag), event))
    }
}

impl std::fmt::Debug for StreamSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSet")
            .field("running", &self.members.len())
            .finish_non_exhaustive()
    }
}
