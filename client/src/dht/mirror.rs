//! [`ChannelMirror`]: a channel's records with their versions, then its changes, from every node
//! (the Mirror request, docs/protocol.md §6.12), merged into one sequence.
//!
//! One Mirror stream runs per node, all in one [`StreamSet`]; events of one node keep their
//! order, which is the order of that node's changes, so a caller that applies them in order
//! holds what the nodes hold (each key lives on one node, or on the members of one replica set,
//! whose copies converge by version). A refresh's batches are handed out one record at a time.
//!
//! Unlike a Listen, a Mirror that loses a node is not opened again by itself: the copy would
//! miss the changes made meanwhile, so the error is returned and the caller starts a new
//! Mirror (with a refresh) when it wants a faithful copy again. An [`MirrorEvent::Overflow`]
//! means the same.

use crate::client::Client;
use crate::error::ClientError;
use crate::reply::StreamEvent;
use crate::stream_set::{StreamSet, StreamTag};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{self as wire, MirrorItem, MirrorRequest, RefreshRecord};
use node_core::protocol::Status;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// What a Mirror asks of each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorOptions {
    /// Start with a refresh of everything the nodes hold (records and tombstones).
    pub initial_refresh: bool,
    /// Repeat the refresh with this period (seconds; 0: never).
    pub periodic_refresh_s: u32,
}

impl Default for MirrorOptions {
    fn default() -> MirrorOptions {
        MirrorOptions {
            initial_refresh: true,
            periodic_refresh_s: 0,
        }
    }
}

/// One event of a [`ChannelMirror`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorEvent {
    /// A refresh begins on `node`, which holds this many records and tombstones of the channel.
    RefreshStarted {
        node: SocketAddr,
        records: u64,
        tombstones: u64,
    },
    /// A record as a refresh found it.
    Record {
        key: u64,
        version: u64,
        value: Vec<u8>,
    },
    /// A tombstone as a refresh found it: the key was removed by a removal of this version.
    Tombstone { key: u64, version: u64 },
    /// `node`'s refresh has sent everything: this many records and tombstones.
    RefreshDone {
        node: SocketAddr,
        records: u64,
        tombstones: u64,
    },
    /// A write (version 0: one without a version).
    Changed {
        key: u64,
        version: u64,
        value: Vec<u8>,
    },
    /// A removal (version 0: one without a version).
    Removed { key: u64, version: u64 },
    /// `node` dropped `lost` changes: the copy is no longer faithful.
    Overflow { node: SocketAddr, lost: u64 },
    /// The channel was removed on every node; nothing follows.
    ChannelRemoved,
}

/// A channel's Mirror over every node. Create with [`super::DhtClient::mirror`]; dropping it
/// stops every node's stream.
pub struct ChannelMirror {
    set: StreamSet,
    /// Per node: its address and its stream (`None` once it ended or failed).
    addrs: Vec<SocketAddr>,
    tags: Vec<Option<StreamTag>>,
    /// Events decoded and not handed out yet (the records of a refresh batch).
    pending: VecDeque<MirrorEvent>,
    finished: bool,
}

impl ChannelMirror {
    /// Opens a Mirror stream on every active node of `client`.
    pub(super) fn open(
        client: &Client,
        channel: &str,
        options: MirrorOptions,
    ) -> Result<ChannelMirror, ClientError> {
        let mut body = Vec::new();
        MirrorRequest {
            channel,
            initial_refresh: options.initial_refresh,
            periodic_refresh_s: options.periodic_refresh_s,
        }
        .encode(&mut body);
        let mut mirror = ChannelMirror {
            set: client.stream_set(),
            addrs: Vec::new(),
            tags: Vec::new(),
            pending: VecDeque::new(),
            finished: false,
        };
        for node in client.active_nodes() {
            let Some(addr) = client.node_addr(node) else {
                continue; // retired meanwhile
            };
            let tag = mirror.set.open(node, wire::MIRROR, &body)?;
            mirror.addrs.push(addr);
            mirror.tags.push(Some(tag));
        }
        Ok(mirror)
    }

    /// The nodes mirrored.
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The next event from any node, waiting up to `timeout`: `Ok(None)` when none came in
    /// time (and, once finished, at once). An `Err` concerns one node, whose stream is over:
    /// the others run on.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<MirrorEvent>, ClientError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            let Some((tag, event)) = self.set.next_timeout(timeout) else {
                return Ok(None);
            };
            let Some(slot) = self.tags.iter().position(|t| *t == Some(tag)) else {
                continue;
            };
            let addr = self.addrs[slot];
            match event {
                Ok(StreamEvent::Item { code, body }) => {
                    if let Err(error) = self.decode(addr, code, &body) {
                        self.set.close(tag);
                        self.tags[slot] = None;
                        return Err(error);
                    }
                }
                Ok(StreamEvent::End(reply)) => {
                    self.tags[slot] = None;
                    if reply.status != Status::Ok {
                        return Err(reply.into_result().err().unwrap_or_else(|| {
                            ClientError::protocol(addr, "Mirror ended NotFound")
                        }));
                    }
                    if self.tags.iter().all(Option::is_none) {
                        self.finished = true;
                        self.pending.push_back(MirrorEvent::ChannelRemoved);
                    }
                }
                Err(error) => {
                    self.tags[slot] = None;
                    return Err(error);
                }
            }
        }
    }

    /// Decodes one item of `node` into `pending`.
    fn decode(&mut self, node: SocketAddr, code: u8, body: &[u8]) -> Result<(), ClientError> {
        decode_item(node, code, body, &mut self.pending)
    }
}

/// Decodes one Mirror item (`code`, `body`) of `node` into `out`: a refresh batch becomes one
/// event per record and tombstone. Shared with every reader of raw Mirror streams (a dht
/// node's catch-up).
pub fn decode_item(
    node: SocketAddr,
    code: u8,
    body: &[u8],
    out: &mut VecDeque<MirrorEvent>,
) -> Result<(), ClientError> {
    let bad = |e: &dyn std::fmt::Display| ClientError::protocol(node, format!("Mirror: {e}"));
    let event = match MirrorItem::decode(code, body).map_err(|e| bad(&e))? {
        MirrorItem::RefreshBatch { batch } => {
            let mut scratch = Vec::new();
            for (key, raw) in decode_batch(batch, &mut scratch).map_err(|e| bad(&e))? {
                let event = match RefreshRecord::decode(raw).map_err(|e| bad(&e))? {
                    RefreshRecord::Record { version, value } => MirrorEvent::Record {
                        key,
                        version,
                        value: value.to_vec(),
                    },
                    RefreshRecord::Tombstone { version } => MirrorEvent::Tombstone { key, version },
                };
                out.push_back(event);
            }
            return Ok(());
        }
        MirrorItem::Changed {
            key,
            version,
            value,
        } => MirrorEvent::Changed {
            key,
            version,
            value: value.to_vec(),
        },
        MirrorItem::Removed { key, version } => MirrorEvent::Removed { key, version },
        MirrorItem::Overflow { lost } => MirrorEvent::Overflow { node, lost },
        MirrorItem::RefreshStarted(counts) => MirrorEvent::RefreshStarted {
            node,
            records: counts.records,
            tombstones: counts.tombstones,
        },
        MirrorItem::RefreshDone(counts) => MirrorEvent::RefreshDone {
            node,
            records: counts.records,
            tombstones: counts.tombstones,
        },
    };
    out.push_back(event);
    Ok(())
}

impl std::fmt::Debug for ChannelMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelMirror")
            .field("nodes", &self.addrs)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
