//! [`Listener`]: one channel's changes on every node of the cluster, merged into one sequence.
//!
//! One Listen stream runs per node, all in one [`StreamSet`], so a single `next` waits on every
//! node at once and returns whichever change comes first; changes of one node keep their order
//! (changes to one key always come from its one node, so they stay in order too). Each stream
//! is flow-controlled as usual: a caller that stops reading pauses the nodes, and a node whose
//! listener falls too far behind drops changes and says so with [`ListenEvent::Overflow`].
//!
//! A node ends its stream with Ok when the channel is removed there; once every node has,
//! `next` returns [`ListenEvent::ChannelRemoved`] and the listener is finished.
//!
//! When one node's stream fails (its connection dropped, the node shut down), `next` returns
//! that error once; the listener then opens the node's stream again on later calls (at most
//! once a second). While the node is down (`ClientError::NodeDown`) it waits quietly, and opens
//! the stream again as soon as the node is back (within a second of the client reconnecting).
//! Changes on that node between the failure and the new stream are not delivered; the error is
//! the caller's notice of that, and [`Listener::missing`] lists the nodes not listened to now.
//!
//! Replica sets: the members of a set hold the same changes, so a set is listened to once, on
//! its first live member. When that stream fails, it is opened again at once on another live
//! member of the set (the error is still returned once: changes between the failure and the
//! new stream are not delivered), and a set whose every member is down waits as a node does.
//!
//! [`super::DhtClient::listen`] needs every node at the start; `listen_partial` starts without
//! the nodes that are down and listens to them once they are back.

use crate::client::Client;
use crate::error::ClientError;
use crate::reply::StreamEvent;
use crate::stream_set::{StreamSet, StreamTag};
use node_core::protocol::dht as wire;
use node_core::protocol::dht::ListenItem;
use node_core::protocol::Status;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a failed node's stream waits before it is opened again.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// One change of a listened channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// The record was written (Put, PutBatch, Update); `value` is its new value.
    Changed { key: u64, value: Vec<u8> },
    /// The record was removed.
    Removed { key: u64 },
    /// A node dropped `lost` changes because this listener fell behind.
    Overflow { lost: u64 },
    /// The channel was removed on every node; nothing follows.
    ChannelRemoved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Running(StreamTag),
    /// The channel was removed on this node (its stream ended with Ok).
    Ended,
    /// The stream failed (or could not be opened); open it again at this time.
    Failed {
        reopen_at: Instant,
    },
}

/// Why a node is not listened to now (for [`Listener::missing`]).
type Missing = Option<ClientError>;

/// A channel's change stream over every node. Create with [`super::DhtClient::listen`].
/// Dropping it stops every node's stream.
pub struct Listener {
    set: StreamSet,
    channel: String,
    /// Per listened replica set (a slot): its members, the member listened to (its client
    /// index and address), the stream state, and why it is not listened to (while failed).
    members: Vec<Vec<usize>>,
    /// Per slot: the member whose stream failed last, passed over while another is live.
    avoid: Vec<Option<usize>>,
    indices: Vec<usize>,
    addrs: Vec<SocketAddr>,
    nodes: Vec<NodeState>,
    why: Vec<Missing>,
    finished: bool,
}

impl Listener {
    /// Opens a Listen stream on each slot of `slots` (the members of one replica set each, in
    /// node order: a node alone when it has no replica); with `partial`, a slot none of whose
    /// members is up is left to be opened once one is back instead of failing the whole.
    pub(super) fn open(
        client: &Client,
        channel: &str,
        partial: bool,
        slots: Vec<Vec<usize>>,
    ) -> Result<Listener, ClientError> {
        Listener::open_in(client.stream_set(), client, channel, partial, slots)
    }

    /// [`Listener::open`] in a set of the caller's (a thread's or a task's).
    pub(crate) fn open_in(
        set: StreamSet,
        client: &Client,
        channel: &str,
        partial: bool,
        slots: Vec<Vec<usize>>,
    ) -> Result<Listener, ClientError> {
        let indices: Vec<usize> = slots.iter().map(|members| members[0]).collect();
        let mut listener = Listener {
            set,
            channel: channel.to_string(),
            addrs: indices
                .iter()
                .filter_map(|&node| client.node_addr(node))
                .collect(),
            avoid: vec![None; slots.len()],
            members: slots,
            indices,
            nodes: Vec::new(),
            why: Vec::new(),
            finished: false,
        };
        debug_assert_eq!(listener.addrs.len(), listener.indices.len());
        for slot in 0..listener.indices.len() {
            listener.nodes.push(NodeState::Ended);
            listener.why.push(None);
            match listener.start(slot) {
                Ok(tag) => listener.nodes[slot] = NodeState::Running(tag),
                Err(error) if partial && error.is_node_down() => listener.fail(slot, error),
                Err(error) => return Err(error),
            }
        }
        Ok(listener)
    }

    /// The nodes not listened to now (their stream failed or could not be opened, and is due
    /// to be opened again), with the error that stopped it. Changes made there meanwhile are
    /// not delivered.
    pub fn missing(&self) -> Vec<(SocketAddr, ClientError)> {
        self.nodes
            .iter()
            .zip(&self.why)
            .zip(&self.addrs)
            .filter_map(|((state, why), addr)| match (state, why) {
                (NodeState::Failed { .. }, Some(error)) => Some((*addr, error.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// True once [`ListenEvent::ChannelRemoved`] was returned.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next change from any node, waiting up to `timeout`: `Ok(None)` when none came in
    /// time (and, once finished, at once). An `Err` concerns one node, whose stream is opened
    /// again on a later call; the others run on.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<ListenEvent>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.finished {
                return Ok(None);
            }
            self.reopen_due()?;
            let now = Instant::now();
            // Wake in time for a due reopen, so a failed node comes back on schedule even
            // while the others are quiet.
            let wait_until = self.next_reopen().map_or(deadline, |at| at.min(deadline));
            let wait = wait_until.saturating_duration_since(now);
            if self.set.is_empty() {
                // Only failed nodes are left (were all ended, we would be finished).
                std::thread::sleep(wait);
            } else if let Some(event) = self.take(wait)? {
                return Ok(Some(event));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Waits up to `wait` for one event of the set and turns it into a listen event.
    fn take(&mut self, wait: Duration) -> Result<Option<ListenEvent>, ClientError> {
        loop {
            let Some((tag, event)) = self.set.next_timeout(wait) else {
                return Ok(None);
            };
            if let Some(change) = self.on_set_event(tag, event) {
                return change.map(Some);
            }
        }
    }

    /// [`Listener::next`] for a task (the async client's listener): the next change, or
    /// `Pending` until one comes (the task is woken then). A failed node's reopen is due at
    /// [`Listener::next_reopen`]: the caller polls again then (a timer of its own).
    #[cfg(feature = "async")]
    pub(crate) fn poll_change(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<ListenEvent, ClientError>>> {
        use std::task::Poll;
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            if let Err(error) = self.reopen_due() {
                return Poll::Ready(Some(Err(error)));
            }
            let Poll::Ready(Some((tag, event))) = self.set.poll_next_event(cx) else {
                return Poll::Pending;
            };
            if let Some(change) = self.on_set_event(tag, event) {
                return Poll::Ready(Some(change));
            }
        }
    }

    /// One event of the set as a change for the caller; `None` when it is none of the
    /// caller's business (an unknown member, one node's channel removed while others run).
    fn on_set_event(
        &mut self,
        tag: StreamTag,
        event: Result<StreamEvent, ClientError>,
    ) -> Option<Result<ListenEvent, ClientError>> {
        let node = self.node_of(tag)?;
        let addr = self.addrs[node];
        match event {
            Ok(StreamEvent::Item { code, body }) => match decode_item(addr, code, &body) {
                Ok(event) => Some(Ok(event)),
                Err(error) => {
                    self.set.close(tag);
                    self.fail(node, error.clone());
                    Some(Err(error))
                }
            },
            Ok(StreamEvent::End(reply)) if reply.status == Status::Ok => {
                self.nodes[node] = NodeState::Ended;
                if self.nodes.iter().all(|state| *state == NodeState::Ended) {
                    self.finished = true;
                    return Some(Ok(ListenEvent::ChannelRemoved));
                }
                None
            }
            Ok(StreamEvent::End(reply)) => {
                let error = reply
                    .into_result()
                    .err()
                    .unwrap_or_else(|| ClientError::protocol(addr, "Listen ended NotFound"));
                self.fail(node, error.clone());
                Some(Err(error))
            }
            Err(error) => {
                self.fail(node, error.clone());
                Some(Err(error))
            }
        }
    }

    fn node_of(&self, tag: StreamTag) -> Option<usize> {
        self.nodes
            .iter()
            .position(|state| *state == NodeState::Running(tag))
    }

    /// The stream of `slot` failed: it is opened again after [`REOPEN_DELAY`], or at once on
    /// another live member of its replica set.
    fn fail(&mut self, slot: usize, error: ClientError) {
        let failed = self.indices[slot];
        self.avoid[slot] = Some(failed);
        let other_live = self.members[slot]
            .iter()
            .any(|&member| member != failed && self.set.check_node(member).is_ok());
        let delay = if other_live {
            Duration::ZERO
        } else {
            REOPEN_DELAY
        };
        self.nodes[slot] = NodeState::Failed {
            reopen_at: Instant::now() + delay,
        };
        self.why[slot] = Some(error);
    }

    /// When the next failed node's stream is due to be opened again.
    pub(crate) fn next_reopen(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter_map(|state| match state {
                NodeState::Failed { reopen_at } => Some(*reopen_at),
                _ => None,
            })
            .min()
    }

    /// Opens again every failed node's stream that is due; the first failure to open is
    /// returned (that node waits another delay), except that of a node known to be down,
    /// which waits quietly for it to come back.
    fn reopen_due(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        for node in 0..self.nodes.len() {
            if matches!(self.nodes[node], NodeState::Failed { reopen_at } if reopen_at <= now) {
                match self.start(node) {
                    Ok(tag) => {
                        self.nodes[node] = NodeState::Running(tag);
                        self.why[node] = None;
                    }
                    Err(error @ ClientError::NodeDown { .. }) => self.fail(node, error),
                    Err(error) => {
                        self.fail(node, error.clone());
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the stream of `slot` on the first live member of its set, passing over the one
    /// that failed last while another is live.
    fn start(&mut self, slot: usize) -> Result<StreamTag, ClientError> {
        let members = &self.members[slot];
        let live = |member: &&usize| self.set.check_node(**member).is_ok();
        let member = members
            .iter()
            .filter(live)
            .find(|member| Some(**member) != self.avoid[slot])
            .or_else(|| members.iter().find(live))
            .or_else(|| members.first())
            .copied()
            .unwrap_or(self.indices[slot]);
        if member != self.indices[slot] {
            if let Some(addr) = self.set.node_addr(member) {
                self.indices[slot] = member;
                self.addrs[slot] = addr;
            }
        }
        let mut body = Vec::new();
        wire::encode_channel(&mut body, &self.channel);
        self.set.open(self.indices[slot], wire::LISTEN, &body)
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("channel", &self.channel)
            .field("nodes", &self.nodes)
            .field("finished", &self.finished)
            .finish()
    }
}

/// Decodes one Listen item (docs/protocol.md §6): 1 Changed `u64 key` + value (the rest),
/// 2 Removed `u64 key`, 3 Overflow `u64 lost`.
pub(crate) fn decode_item(
    node: SocketAddr,
    code: u8,
    body: &[u8],
) -> Result<ListenEvent, ClientError> {
    let item =
        ListenItem::decode(code, body).map_err(|e| super::body_error(node, "Listen item", e))?;
    Ok(match item {
        ListenItem::Changed { key, value } => ListenEvent::Changed {
            key,
            value: value.to_vec(),
        },
        ListenItem::Removed { key } => ListenEvent::Removed { key },
        ListenItem::Overflow { lost } => ListenEvent::Overflow { lost },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10000))
    }

    #[test]
    fn items_decode_by_code() {
        let mut changed = 7u64.to_le_bytes().to_vec();
        changed.extend_from_slice(b"value");
        assert_eq!(
            decode_item(node(), wire::ITEM_CHANGED, &changed).expect("changed"),
            ListenEvent::Changed {
                key: 7,
                value: b"value".to_vec()
            }
        );
        assert_eq!(
            decode_item(node(), wire::ITEM_REMOVED, &9u64.to_le_bytes()).expect("removed"),
            ListenEvent::Removed { key: 9 }
        );
        assert_eq!(
            decode_item(node(), wire::ITEM_OVERFLOW, &3u64.to_le_bytes()).expect("overflow"),
            ListenEvent::Overflow { lost: 3 }
        );
        let short = decode_item(node(), wire::ITEM_REMOVED, &[1, 2])
            .expect_err("short")
            .to_string();
        assert!(short.contains("Listen item"), "{short}");
        assert!(decode_item(node(), wire::ITEM_REMOVED, &[0; 9]).is_err());
        assert!(decode_item(node(), 42, &[0; 8]).is_err());
    }
}
