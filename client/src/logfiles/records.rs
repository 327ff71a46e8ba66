//! [`LogRecords`]: the records of a GetRange or GetAll over every node, merged by key.
//!
//! Every node's stream is opened at once, so the nodes read their disks in parallel. The merge
//! is a k-way merge: it holds the next record of each node (its *head*) in a min-heap keyed by
//! `(key, node index)` and always yields the smallest. A node's stream in ascending key order
//! (GetRange always is; GetAll is unless a node holds records in a bucket their key does not
//! belong to) thus comes out merged in ascending key order; records with equal keys come node by
//! node in node order, and in the order the node sent them within one node.
//!
//! Memory is bounded: nothing is collected. Per node the merge holds at most one decoded batch
//! (about 64 KiB) plus what the stream's credit window lets the node send ahead
//! (`ClientOptions::stream_window` batches); credit is granted back only as batches are taken,
//! so a caller that stops iterating pauses every node.
//!
//! The first error of any node (a status such as BadRequest for a regular expression that does
//! not compile, a dropped connection, a timeout, a batch that fails its checksum) is yielded
//! once, naming the node, and ends the iteration; the other nodes' streams are stopped. Streams
//! are not resumed (docs/protocol.md §7.3): the caller asks again.
//!
//! A partial read (`LogClient::get_range_partial`, `get_all_partial`) instead leaves out a node
//! that cannot be read: one that is down when the read starts, or whose stream is lost in the
//! middle (down, dropped, too slow: `ClientError::is_node_down`; the records it sent before
//! are delivered). [`LogRecords::missing`] lists them; other errors still end the iteration.

use crate::client::Client;
use crate::error::ClientError;
use crate::reply::{Stream, StreamEvent};
use node_core::protocol::batch::{decode_batch, decode_uncompressed_batch};
use node_core::protocol::logfiles::{ITEM_RECORD_BATCH, ITEM_RECORD_BATCH_UNCOMPRESSED};
use node_core::protocol::RequestCode;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;

/// One node's side of the merge.
struct NodeStream {
    addr: SocketAddr,
    /// `None` once the node's stream ended.
    stream: Option<Stream>,
    /// Decoded records not yet yielded, in the node's order.
    ready: VecDeque<(u64, Vec<u8>)>,
}

/// The records of a read over every node, merged in key order (see the module documentation);
/// yields `Ok((key, value))` for each, or one `Err` after which it ends. Dropping it stops every
/// node's stream.
pub struct LogRecords {
    request: &'static str,
    nodes: Vec<NodeStream>,
    /// The head of every node that has one: `(key, node index)`, smallest first.
    heads: BinaryHeap<Reverse<(u64, usize)>>,
    /// A node whose head was just yielded and whose next record is not yet in `heads`.
    refill: Option<usize>,
    started: bool,
    done: bool,
    scratch: Vec<u8>,
    /// Leave out the nodes that cannot be read instead of failing.
    partial: bool,
    missing: Vec<(SocketAddr, ClientError)>,
}

impl LogRecords {
    /// Opens the stream `code` on every active node of `client` (with `partial`, on those that
    /// are not down), with the body `body_for` makes for the node's address.
    pub(super) fn open(
        client: &Client,
        code: RequestCode,
        request: &'static str,
        body_for: impl Fn(SocketAddr) -> Vec<u8>,
        partial: bool,
    ) -> Result<LogRecords, ClientError> {
        let active = client.active_nodes();
        let mut nodes = Vec::with_capacity(active.len());
        let mut missing = Vec::new();
        for node in active {
            let addr = client.node_addr(node).ok_or(ClientError::NoSuchNode {
                index: node,
                count: client.node_count(),
            })?;
            match client.stream(node, code, &body_for(addr)) {
                Ok(stream) => nodes.push(NodeStream {
                    addr,
                    stream: Some(stream),
                    ready: VecDeque::new(),
                }),
                Err(error) if partial && error.is_node_down() => missing.push((addr, error)),
                Err(error) => return Err(error),
            }
        }
        Ok(LogRecords {
            request,
            heads: BinaryHeap::with_capacity(nodes.len()),
            nodes,
            refill: None,
            started: false,
            done: false,
            scratch: Vec::new(),
            partial,
            missing,
        })
    }

    /// The nodes a partial read left out, with their errors (see the module documentation);
    /// final once the iteration has ended.
    pub fn missing(&self) -> &[(SocketAddr, ClientError)] {
        &self.missing
    }

    /// Whether the iteration ended with every node read (false while it runs).
    pub fn is_complete(&self) -> bool {
        self.done && self.missing.is_empty()
    }

    /// Makes sure node `index` has a record ready, reading its stream as needed; after this
    /// its `ready` is empty only if its stream has ended.
    fn fill(&mut self, index: usize) -> Result<(), ClientError> {
        let node = &mut self.nodes[index];
        while node.ready.is_empty() {
            let Some(stream) = node.stream.as_mut() else {
                return Ok(());
            };
            let event = match stream.next() {
                Some(Ok(event)) => event,
                Some(Err(error)) if self.partial && error.is_node_down() => {
                    node.stream = None;
                    self.missing.push((node.addr, error));
                    return Ok(());
                }
                Some(Err(error)) => return Err(error),
                None => {
                    node.stream = None;
                    return Ok(());
                }
            };
            match event {
                StreamEvent::Item { code, body }
                    if code == ITEM_RECORD_BATCH || code == ITEM_RECORD_BATCH_UNCOMPRESSED =>
                {
                    let records = if code == ITEM_RECORD_BATCH {
                        decode_batch(&body, &mut self.scratch)
                    } else {
                        decode_uncompressed_batch(&body)
                    };
                    let records = records.map_err(|e| {
                        ClientError::protocol(node.addr, format!("{} batch: {e}", self.request))
                    })?;
                    node.ready
                        .extend(records.map(|(key, value)| (key, value.to_vec())));
                }
                StreamEvent::Item { code, .. } => {
                    return Err(ClientError::protocol(
                        node.addr,
                        format!(
                            "{} stream sent an item of unknown code {code}",
                            self.request
                        ),
                    ))
                }
                StreamEvent::End(reply) => {
                    node.stream = None;
                    reply.into_result()?;
                }
            }
        }
        Ok(())
    }

    /// Reads node `index` up to its next record and enters it in the heap, if it has one.
    fn enter(&mut self, index: usize) -> Result<(), ClientError> {
        self.fill(index)?;
        if let Some((key, _)) = self.nodes[index].ready.front() {
            self.heads.push(Reverse((*key, index)));
        }
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<(u64, Vec<u8>)>, ClientError> {
        if !self.started {
            self.started = true;
            for index in 0..self.nodes.len() {
                self.enter(index)?;
            }
        }
        if let Some(index) = self.refill.take() {
            self.enter(index)?;
        }
        let Some(Reverse((_, index))) = self.heads.pop() else {
            return Ok(None);
        };
        let record = self.nodes[index].ready.pop_front();
        // The node's next record is read on the next call, so this one reaches the caller
        // without waiting for the node.
        self.refill = Some(index);
        Ok(record)
    }
}

impl Iterator for LogRecords {
    type Item = Result<(u64, Vec<u8>), ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                // Dropping the streams stops and cancels them on their nodes.
                self.nodes.clear();
                self.heads.clear();
                Some(Err(error))
            }
        }
    }
}

impl std::fmt::Debug for LogRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.nodes.iter().filter(|n| n.stream.is_some()).count();
        f.debug_struct("LogRecords")
            .field("request", &self.request)
            .field("nodes", &self.nodes.len())
            .field("running", &running)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
