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

use super::set_streams::SetStreams;
use crate::client::Client;
use crate::error::ClientError;
use crate::reply::StreamEvent;
use crate::stream_set::StreamSet;
use node_core::protocol::dht as wire;
use node_core::protocol::dht::ListenItem;
use node_core::protocol::Status;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// A channel's change stream over every node. Create with [`super::DhtClient::listen`].
/// Dropping it stops every node's stream.
pub struct Listener {
    channel: String,
    /// One Listen per replica set, failing over ([`SetStreams`]).
    streams: SetStreams,
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
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let streams = SetStreams::open(set, client, wire::LISTEN, body, partial, slots)?;
        Ok(Listener {
            channel: channel.to_string(),
            streams,
            finished: false,
        })
    }

    /// The nodes not listened to now (their stream failed or could not be opened, and is due
    /// to be opened again), with the error that stopped it. Changes made there meanwhile are
    /// not delivered.
    pub fn missing(&self) -> Vec<(SocketAddr, ClientError)> {
        self.streams.missing()
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
            let Some((slot, event)) = self.streams.next_event(deadline)? else {
                return Ok(None);
            };
            if let Some(change) = self.on_slot_event(slot, event) {
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
            if let Err(error) = self.streams.reopen_due() {
                return Poll::Ready(Some(Err(error)));
            }
            let Poll::Ready(Some((tag, event))) = self.streams.set.poll_next_event(cx) else {
                return Poll::Pending;
            };
            let Some(slot) = self.streams.slot_of(tag) else {
                continue;
            };
            if let Some(change) = self.on_slot_event(slot, event) {
                return Poll::Ready(Some(change));
            }
        }
    }

    /// When the next failed node's stream is due to be opened again.
    #[cfg(feature = "async")]
    pub(crate) fn next_reopen(&self) -> Option<Instant> {
        self.streams.next_reopen()
    }

    /// One event of slot `slot`'s stream as a change for the caller; `None` when it is none
    /// of the caller's business (one node's channel removed while others run).
    fn on_slot_event(
        &mut self,
        slot: usize,
        event: Result<StreamEvent, ClientError>,
    ) -> Option<Result<ListenEvent, ClientError>> {
        let addr = self.streams.addr(slot);
        match event {
            Ok(StreamEvent::Item { code, body }) => match decode_item(addr, code, &body) {
                Ok(event) => Some(Ok(event)),
                Err(error) => {
                    self.streams.abandon(slot, error.clone());
                    Some(Err(error))
                }
            },
            Ok(StreamEvent::End(reply)) if reply.status == Status::Ok => {
                if self.streams.end(slot) {
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
                self.streams.fail(slot, error.clone());
                Some(Err(error))
            }
            Err(error) => {
                self.streams.fail(slot, error.clone());
                Some(Err(error))
            }
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("channel", &self.channel)
            .field("streams", &self.streams)
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
