//! [`ChannelMirror`]: a channel's records with their versions, then its changes, from every
//! replica set (the Mirror request, docs/protocol.md §6.12), merged into one sequence.
//!
//! One Mirror stream runs per replica set, on its first live member (a node without replicas
//! is a set of one), all in one [`StreamSet`]: the members of a set hold the same records and
//! changes, so mirroring each of them would deliver every change once per member. Events of
//! one set keep their order, which is the order of that member's changes, so a caller that
//! applies them in order holds what the nodes hold. A refresh's batches are handed out one
//! record at a time.
//!
//! When a set's stream fails (its member went down, the stream ended with an error), `next`
//! returns the error once and the Mirror is opened again, with the options it started with,
//! on another live member of the set at once, or on the first member back after a second
//! (failing over as a Listen does: [`super::set_streams`]). With a refresh, the new stream's
//! refresh (its RefreshStarted … RefreshDone) makes the copy faithful again, by version;
//! without one, the changes made between the failure and the new stream are missed. An
//! [`MirrorEvent::Overflow`] means the copy is no longer faithful: start a new Mirror.

use super::set_streams::SetStreams;
use crate::client::Client;
use crate::error::ClientError;
use crate::reply::StreamEvent;
use crate::stream_set::StreamSet;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{self as wire, MirrorItem, MirrorRequest, RefreshRecord};
use node_core::protocol::Status;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// A channel's Mirror over every replica set. Create with [`super::DhtClient::mirror`];
/// dropping it stops every stream.
pub struct ChannelMirror {
    /// One Mirror per replica set, failing over ([`SetStreams`]).
    streams: SetStreams,
    /// Events decoded and not handed out yet (the records of a refresh batch).
    pending: VecDeque<MirrorEvent>,
    finished: bool,
}

impl ChannelMirror {
    /// Opens a Mirror stream on each slot of `slots` (the members of one replica set each).
    pub(super) fn open(
        client: &Client,
        channel: &str,
        options: MirrorOptions,
        slots: Vec<Vec<usize>>,
    ) -> Result<ChannelMirror, ClientError> {
        let mut body = Vec::new();
        MirrorRequest {
            channel,
            initial_refresh: options.initial_refresh,
            periodic_refresh_s: options.periodic_refresh_s,
        }
        .encode(&mut body);
        let set: StreamSet = client.stream_set();
        Ok(ChannelMirror {
            streams: SetStreams::open(set, client, wire::MIRROR, body, false, slots)?,
            pending: VecDeque::new(),
            finished: false,
        })
    }

    /// The nodes mirrored: one member of each replica set (the one streamed now, or last).
    pub fn nodes(&self) -> &[SocketAddr] {
        self.streams.addrs()
    }

    /// The next event from any set, waiting up to `timeout`: `Ok(None)` when none came in
    /// time (and, once finished, at once). An `Err` concerns one set, whose stream is opened
    /// again (see the module documentation): the others run on.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<MirrorEvent>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            let Some((slot, event)) = self.streams.next_event(deadline)? else {
                return Ok(None);
            };
            let addr = self.streams.addr(slot);
            match event {
                Ok(StreamEvent::Item { code, body }) => {
                    if let Err(error) = decode_item(addr, code, &body, &mut self.pending) {
                        self.streams.abandon(slot, error.clone());
                        return Err(error);
                    }
                }
                Ok(StreamEvent::End(reply)) if reply.status == Status::Ok => {
                    if self.streams.end(slot) {
                        self.finished = true;
                        self.pending.push_back(MirrorEvent::ChannelRemoved);
                    }
                }
                Ok(StreamEvent::End(reply)) => {
                    let error = reply
                        .into_result()
                        .err()
                        .unwrap_or_else(|| ClientError::protocol(addr, "Mirror ended NotFound"));
                    self.streams.fail(slot, error.clone());
                    return Err(error);
                }
                Err(error) => {
                    self.streams.fail(slot, error.clone());
                    return Err(error);
                }
            }
        }
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
            .field("streams", &self.streams)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
