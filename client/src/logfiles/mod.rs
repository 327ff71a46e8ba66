//! The logfiles cluster's client: [`LogClient`].
//!
//! Logfiles nodes never know each other and own no keys (docs/protocol.md §7.1): any node may
//! hold any key, and one key may have records on several nodes. So:
//!
//! - **Writes** (`put`, `put_batch`) go to **one** node each, chosen round-robin (starting at a
//!   random node, so that many short-lived clients, such as `swarmctl log put` runs, do not all
//!   write to the first node). A node that
//!   cannot take the request at all — it is down or unreachable (connect failure, the connection
//!   dropped), shutting down, or at its connection or request limit — is skipped and the next
//!   node is tried; the write fails only when every node was skipped, with the last node's
//!   error. A node that *answers* with an error (EmptyValue, ValueTooBig, BadChannelName,
//!   InternalError) fails the write at once: the next node would refuse it too, or the error
//!   needs an operator. A request that timed out is not tried elsewhere either: the slow node
//!   may still store it, and a retry could store the record twice. A connection that dropped
//!   while a write was in flight can in rare cases mean the node stored it before it went away;
//!   the retry then stores it twice (writes are at least once).
//!   A node known to be down (`ClientError::NodeDown`) is skipped at once, at no cost.
//! - **Reads** (`get_range`, `get_all`) open a stream on **every** node at once and merge them
//!   by key ([`LogRecords`]): a GetRange comes out in ascending key order over the whole
//!   cluster. A read needs every node: a node that is down fails the read, naming it, rather
//!   than leave its records out silently. `get_range_partial` and `get_all_partial` read the
//!   nodes that can be read and say which could not ([`LogRecords::missing`]). Each node is
//!   asked for LZ4 or uncompressed batches ([`ReadBatches`]): by default uncompressed from a
//!   node on a loopback address, LZ4 from the others; with a stream window of
//!   [`READ_STREAM_WINDOW`] batches per node unless the options choose another
//!   (docs/benchmarks.md, "logfiles").
//! - **channels** (union, sorted), **size** (sums) and **remove_channel** (every node) fan out
//!   to every node as well; `channels_partial`, `size_partial` and `size_per_node_partial`
//!   answer from the nodes that can, with those that could not ([`crate::Partial`]).
//! - **Membership**: [`LogClient::open_topology`] follows a topology file, connecting to the
//!   nodes added to it and retiring those removed, with no restart.
//!
//! ```no_run
//! use client::logfiles::{LogClient, ValueFilter};
//! use client::ClientOptions;
//! let nodes = ["127.0.0.1:11000".parse().unwrap(), "127.0.0.1:11001".parse().unwrap()];
//! let logs = LogClient::connect(&nodes, ClientOptions::default())?;
//! logs.put("access", 1_462_196_230, b"GET /index.html 200")?;
//! let filter = ValueFilter::Regex(r" 5\d\d$".into());
//! for record in logs.get_range("access", 1_462_190_000, 1_462_199_999, &filter)? {
//!     let (key, value) = record?;
//!     println!("{key}\t{}", String::from_utf8_lossy(&value));
//! }
//! # Ok::<(), client::ClientError>(())
//! ```

mod filter;
mod records;

pub use filter::{literal_pattern, ValueFilter};
pub use node_core::protocol::logfiles::DiskSize;
pub use records::LogRecords;

use crate::client::Client;
use crate::error::ClientError;
use crate::failover::{judge_write, WriteStep};
use crate::follow::{self, Follower};
use crate::node_set::NodeChanges;
use crate::options::ClientOptions;
use crate::partial::Partial;
use crate::reply::{Pending, Reply};
use crate::round_robin::RoundRobin;
use crate::topology::Topology;
use node_core::protocol::batch::{BatchBuilder, PushOutcome, DEFAULT_BATCH_TARGET_BYTES};
use node_core::protocol::logfiles::{
    self as wire, GetAllRequest, GetRangeRequest, PutRequest, ReadFlags,
};
use node_core::protocol::wire::Reader;
use node_core::protocol::{NodeKind, RequestCode, Status};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// PutBatch requests a [`LogClient::put_batch`] keeps in flight before it waits for the oldest.
const PUT_BATCH_PIPELINE: usize = 16;

/// How the nodes send the records of a read (`get_range`, `get_all`): the request's flags byte
/// (docs/protocol.md §7.3).
///
/// LZ4 costs a node about as much CPU as reading the bucket (measured: one node core sends
/// 0.8 GB/s of bucket bytes as LZ4 batches, well over 1 GB/s uncompressed) and shrinks log
/// lines about 5:1. So on a link slower than the node can compress (under about 5 Gbit/s, e.g.
/// 1 Gbit/s between hosts) LZ4 moves more records per second; on loopback, and on links of
/// 10 Gbit/s and more, uncompressed batches do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadBatches {
    /// Uncompressed from nodes on a loopback address, LZ4 from the others (the default).
    #[default]
    Auto,
    /// LZ4 from every node (what every node sends a client that does not ask).
    Lz4,
    /// Uncompressed from every node: for fast links (10 Gbit/s and up).
    Uncompressed,
}

impl ReadBatches {
    /// Whether a read asks the node at `addr` for uncompressed batches.
    pub fn uncompressed_from(self, addr: SocketAddr) -> bool {
        match self {
            ReadBatches::Auto => addr.ip().is_loopback(),
            ReadBatches::Lz4 => false,
            ReadBatches::Uncompressed => true,
        }
    }
}

/// A connected logfiles cluster. `Send + Sync`: share it between threads with `Arc`.
#[derive(Debug)]
pub struct LogClient {
    client: Client,
    /// The order the next write tries the nodes in.
    writes: RoundRobin,
    /// How reads ask for their batches.
    read_batches: ReadBatches,
    /// Set when the client follows a topology file.
    follower: Option<Follower>,
}

/// A PutBatch sent and not yet answered, kept whole so it can go to another node.
struct SentBatch {
    node: usize,
    records: u32,
    body: Vec<u8>,
    pending: Pending,
}

/// The stream window of a [`LogClient`] whose options leave `stream_window` at its default:
/// batches a read may have on their way from each node (64 KiB each uncompressed, so up to 4 MiB
/// per node). At the client's general default of 16, a node reading at disk speed over loopback
/// stops for credit every few batches (docs/benchmarks.md, "logfiles").
pub const READ_STREAM_WINDOW: u32 = 64;

impl LogClient {
    /// Connects to every node (each must be a logfiles node). Nodes that are down do not stop
    /// it: writes go to the others, and the client reconnects to them in the background. The
    /// stream window is [`READ_STREAM_WINDOW`] unless `options` sets one other than the default.
    pub fn connect(nodes: &[SocketAddr], options: ClientOptions) -> Result<LogClient, ClientError> {
        LogClient::start(nodes, options, None)
    }

    fn start(
        nodes: &[SocketAddr],
        options: ClientOptions,
        follower: Option<Follower>,
    ) -> Result<LogClient, ClientError> {
        let stream_window = if options.stream_window == ClientOptions::default().stream_window {
            READ_STREAM_WINDOW
        } else {
            options.stream_window
        };
        // Writes go to any one node: a node that is down at start must not stop the client.
        let options = ClientOptions {
            allow_down_nodes: true,
            stream_window,
            ..options
        };
        let client = Client::connect(nodes, Some(NodeKind::Logfiles), options)?;
        Ok(LogClient {
            client,
            writes: RoundRobin::new(),
            read_batches: ReadBatches::default(),
            follower,
        })
    }

    /// Connects to the `[logfiles]` nodes of the topology file at `path` and follows the file:
    /// nodes added to it are connected to, nodes removed are retired, with no restart.
    pub fn open_topology(
        path: &Path,
        options: ClientOptions,
    ) -> Result<Arc<LogClient>, ClientError> {
        let (_, nodes, options, follower) = follow::open(path, NodeKind::Logfiles, options)?;
        let logs = Arc::new(LogClient::start(&nodes, options, Some(follower))?);
        follow::spawn(&logs);
        Ok(logs)
    }

    /// Re-reads the followed topology file now (see [`LogClient::open_topology`]).
    pub fn reload_topology(&self) -> Result<NodeChanges, ClientError> {
        let topology = follow::reload(self.follower.as_ref())?;
        self.apply_topology(&topology)
    }

    /// Makes the `[logfiles]` nodes of `topology` this client's nodes.
    pub fn apply_topology(&self, topology: &Topology) -> Result<NodeChanges, ClientError> {
        follow::apply(&self.client, topology, NodeKind::Logfiles)
    }

    /// The same client, its reads asking for batches as `read_batches` says.
    pub fn with_read_batches(self, read_batches: ReadBatches) -> LogClient {
        LogClient {
            read_batches,
            ..self
        }
    }

    /// How reads ask for their batches.
    pub fn read_batches(&self) -> ReadBatches {
        self.read_batches
    }

    /// Opens the read `code` on every active node (with `partial`, on those that are not
    /// down), each with the body `encode` makes for the flags its address gets.
    fn open_read(
        &self,
        code: RequestCode,
        request: &'static str,
        encode: impl Fn(ReadFlags, &mut Vec<u8>),
        partial: bool,
    ) -> Result<LogRecords, ClientError> {
        let body_for = |addr: SocketAddr| {
            let mut body = Vec::new();
            let uncompressed = self.read_batches.uncompressed_from(addr);
            encode(ReadFlags { uncompressed }, &mut body);
            body
        };
        LogRecords::open(&self.client, code, request, body_for, partial)
    }

    /// Connects to the `[logfiles]` nodes of a topology, with its credentials unless `options`
    /// brings its own.
    pub fn from_topology(
        topology: &Topology,
        options: ClientOptions,
    ) -> Result<LogClient, ClientError> {
        let (nodes, options) = topology.connection(NodeKind::Logfiles, options)?;
        LogClient::connect(nodes, options)
    }

    /// The transport underneath, for requests this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Node indices handed out so far (see [`Client::node_count`]).
    pub fn node_count(&self) -> usize {
        self.client.node_count()
    }

    /// Active node indices starting at the next round-robin position.
    pub(crate) fn rotation(&self) -> impl Iterator<Item = usize> {
        self.writes.order_of(self.client.active_nodes())
    }

    /// Appends a record with `key` and `value` to `channel` on one node (see the module
    /// documentation); returns the index of the node that stored it. The node acknowledges
    /// according to its fsync policy (docs/protocol.md §7.4).
    pub fn put(&self, channel: &str, key: u64, value: &[u8]) -> Result<usize, ClientError> {
        let body = self.put_body(channel, key, value)?;
        let (node, reply) = self.write_round_robin(wire::PUT, &body, None)?;
        put_stored(node, reply)
    }

    /// A Put's body, once the value passed the client's checks (blocking and async puts).
    pub(crate) fn put_body(
        &self,
        channel: &str,
        key: u64,
        value: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.client.options().check_value(channel, value.len())?;
        let mut body = Vec::with_capacity(channel.len() + 9 + value.len());
        PutRequest {
            channel,
            key,
            value,
        }
        .encode(&mut body);
        Ok(body)
    }

    /// Appends many records to `channel`: packs them, in the given order, into LZ4 batches of at
    /// most 64 KiB uncompressed (a single larger record goes alone in its batch) and sends each
    /// batch as one PutBatch to one node, round-robin, skipping nodes that are down as `put`
    /// does. Up to 16 batches are in flight at once. Returns the number of records stored.
    ///
    /// A node stores a batch all or nothing (a batch with an empty value fails whole with
    /// EmptyValue), but batches are independent: on error, the batches before the failed one
    /// are stored, no further batch is sent, and those already in flight behind it (up to 15)
    /// may or may not have been stored.
    pub fn put_batch<'v>(
        &self,
        channel: &str,
        records: impl IntoIterator<Item = (u64, &'v [u8])>,
    ) -> Result<u64, ClientError> {
        let mut builder = BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES);
        let mut in_flight = VecDeque::new();
        let mut stored = 0u64;
        for (key, value) in records {
            match builder.push(key, value) {
                PushOutcome::Added => {}
                PushOutcome::Full => {
                    stored += self.send_batch(channel, &mut builder, &mut in_flight)?;
                    if builder.push(key, value) != PushOutcome::Added {
                        // An empty builder takes any record below the hard limit, and TooBig
                        // was ruled out by the first push; this is unreachable.
                        return Err(too_big(key, value.len()));
                    }
                }
                PushOutcome::TooBig => return Err(too_big(key, value.len())),
            }
        }
        if !builder.is_empty() {
            stored += self.send_batch(channel, &mut builder, &mut in_flight)?;
        }
        while let Some(sent) = in_flight.pop_front() {
            stored += self.finish_batch(sent)?;
        }
        Ok(stored)
    }

    /// Compresses the builder's records and sends them; first waits for the oldest batch when
    /// the pipeline is full, returning the records it stored.
    fn send_batch(
        &self,
        channel: &str,
        builder: &mut BatchBuilder,
        in_flight: &mut VecDeque<SentBatch>,
    ) -> Result<u64, ClientError> {
        let mut stored = 0;
        if in_flight.len() >= PUT_BATCH_PIPELINE {
            if let Some(oldest) = in_flight.pop_front() {
                stored = self.finish_batch(oldest)?;
            }
        }
        let records = builder.record_count();
        let mut batch = Vec::new();
        builder.finish_into(&mut batch);
        let mut body = Vec::with_capacity(channel.len() + 1 + batch.len());
        wire::encode_put_batch(&mut body, channel, &batch);
        let mut last_error = None;
        for node in self.rotation() {
            match self.client.submit(node, wire::PUT_BATCH, &body) {
                Ok(pending) => {
                    in_flight.push_back(SentBatch {
                        node,
                        records,
                        body,
                        pending,
                    });
                    return Ok(stored);
                }
                Err(error) if node_unavailable(&error) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoNodes))
    }

    /// Waits for a batch's reply; a node that could not take it passes it on to the others.
    fn finish_batch(&self, sent: SentBatch) -> Result<u64, ClientError> {
        let reply = match sent.pending.wait().and_then(Reply::into_result) {
            Ok(reply) => reply,
            Err(error) if node_unavailable(&error) => {
                self.write_round_robin(wire::PUT_BATCH, &sent.body, Some(sent.node))?
                    .1
            }
            Err(error) => return Err(error),
        };
        if reply.status != Status::Ok {
            return Err(ClientError::protocol(
                reply.node,
                format!("PutBatch answered {:?}", reply.status),
            ));
        }
        let mut reader = Reader::new(&reply.body);
        let stored = reader
            .u64("records")
            .and_then(|stored| reader.finish().map(|()| stored))
            .map_err(|e| ClientError::protocol(reply.node, format!("PutBatch reply: {e}")))?;
        if stored != u64::from(sent.records) {
            return Err(ClientError::protocol(
                reply.node,
                format!(
                    "PutBatch stored {stored} records of a batch of {}",
                    sent.records
                ),
            ));
        }
        Ok(stored)
    }

    /// Sends a write to the next node round-robin (never to `skip`), passing it on to the next
    /// node while nodes are unavailable; returns the node that took it and its Ok reply.
    fn write_round_robin(
        &self,
        code: RequestCode,
        body: &[u8],
        skip: Option<usize>,
    ) -> Result<(usize, Reply), ClientError> {
        let mut last_error = None;
        for node in self.rotation().filter(|node| Some(*node) != skip) {
            let result = self.client.request(node, code, body);
            match judge_write(result, node_unavailable, "a write") {
                WriteStep::Stored(reply) => return Ok((node, reply)),
                WriteStep::Next(error) => last_error = Some(error),
                WriteStep::Failed(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoNodes))
    }

    /// The records of `channel` with keys from `from` to `to`, both inclusive, whose value
    /// passes `filter`, from every node, in ascending key order (see [`LogRecords`]). `from >
    /// to` is an empty result; so is a channel that does not exist.
    pub fn get_range(
        &self,
        channel: &str,
        from: u64,
        to: u64,
        filter: &ValueFilter,
    ) -> Result<LogRecords, ClientError> {
        self.range_read(channel, from, to, filter, false)
    }

    /// [`LogClient::get_range`] from the nodes that can be read; [`LogRecords::missing`]
    /// lists the others.
    pub fn get_range_partial(
        &self,
        channel: &str,
        from: u64,
        to: u64,
        filter: &ValueFilter,
    ) -> Result<LogRecords, ClientError> {
        self.range_read(channel, from, to, filter, true)
    }

    fn range_read(
        &self,
        channel: &str,
        from: u64,
        to: u64,
        filter: &ValueFilter,
        partial: bool,
    ) -> Result<LogRecords, ClientError> {
        let request = GetRangeRequest {
            channel,
            from,
            to,
            filter: filter.wire()?,
        };
        self.open_read(
            wire::GET_RANGE,
            "GetRange",
            |flags, body| request.encode_with(flags, body),
            partial,
        )
    }

    /// Every record of `channel` whose value passes `filter`, from every node, merged by key
    /// (see [`LogRecords`]).
    pub fn get_all(&self, channel: &str, filter: &ValueFilter) -> Result<LogRecords, ClientError> {
        self.all_read(channel, filter, false)
    }

    /// [`LogClient::get_all`] from the nodes that can be read; [`LogRecords::missing`] lists
    /// the others.
    pub fn get_all_partial(
        &self,
        channel: &str,
        filter: &ValueFilter,
    ) -> Result<LogRecords, ClientError> {
        self.all_read(channel, filter, true)
    }

    fn all_read(
        &self,
        channel: &str,
        filter: &ValueFilter,
        partial: bool,
    ) -> Result<LogRecords, ClientError> {
        let request = GetAllRequest {
            channel,
            filter: filter.wire()?,
        };
        self.open_read(
            wire::GET_ALL,
            "GetAll",
            |flags, body| request.encode_with(flags, body),
            partial,
        )
    }

    /// The names of every channel on any node: sorted, each once.
    pub fn channels(&self) -> Result<Vec<String>, ClientError> {
        self.channels_partial()?.complete()
    }

    /// [`LogClient::channels`] of the nodes that answer, with those that could not.
    pub fn channels_partial(&self) -> Result<Partial<Vec<String>>, ClientError> {
        self.client.channel_names_partial(wire::GET_CHANNELS)
    }

    /// Bucket files and their bytes on disk, of one channel (`Some`) or of every channel
    /// (`None`), summed over every node. A channel that does not exist is zeros.
    pub fn size(&self, channel: Option<&str>) -> Result<DiskSize, ClientError> {
        self.size_partial(channel)?.complete()
    }

    /// [`LogClient::size`] summed over the nodes that answer, with those that could not.
    pub fn size_partial(&self, channel: Option<&str>) -> Result<Partial<DiskSize>, ClientError> {
        Ok(self.size_per_node_partial(channel)?.map(|sizes| {
            let mut total = DiskSize::default();
            for (_, size) in sizes {
                total.buckets += size.buckets;
                total.bytes += size.bytes;
            }
            total
        }))
    }

    /// As [`LogClient::size`], per node, in node order.
    pub fn size_per_node(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<(SocketAddr, DiskSize)>, ClientError> {
        self.size_per_node_partial(channel)?.complete()
    }

    /// [`LogClient::size_per_node`] of the nodes that answer, with those that could not.
    pub fn size_per_node_partial(
        &self,
        channel: Option<&str>,
    ) -> Result<Partial<Vec<(SocketAddr, DiskSize)>>, ClientError> {
        let mut body = Vec::new();
        let (code, request) = match channel {
            Some(channel) => {
                wire::encode_channel(&mut body, channel);
                (wire::GET_CHANNEL_SIZE, "GetChannelSize")
            }
            None => (wire::GET_SIZE, "GetSize"),
        };
        self.client
            .fan_out_decoded(code, &body, request, DiskSize::decode)
    }

    /// Removes a channel from every node (admins only when authentication is on); a channel
    /// that does not exist is not an error. Every node is asked even when one fails; the first
    /// failure, in node order, is returned and names its node.
    pub fn remove_channel(&self, channel: &str) -> Result<(), ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let submitted: Vec<Result<Pending, ClientError>> = self
            .client
            .active_nodes()
            .into_iter()
            .map(|node| self.client.submit(node, wire::REMOVE_CHANNEL, &body))
            .collect();
        let mut first_error = None;
        for result in submitted {
            let outcome = result
                .and_then(Pending::wait)
                .and_then(Reply::ok_body)
                .map(drop);
            if let Err(error) = outcome {
                tracing::debug!(%error, channel, "RemoveChannel failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Whether a node could not take a request at all, so that it can go to another node without
/// having been stored: down, unreachable, stopping, or at a limit.
/// A Put's Ok reply from `node`: its index, or a protocol error if the reply has a body.
pub(crate) fn put_stored(node: usize, reply: Reply) -> Result<usize, ClientError> {
    if !reply.body.is_empty() {
        return Err(ClientError::protocol(
            reply.node,
            format!("Put reply: {} unexpected bytes", reply.body.len()),
        ));
    }
    Ok(node)
}

pub(crate) fn node_unavailable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::NodeDown { .. }
            | ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::ShuttingDown { .. }
            | ClientError::ConnectionLimit { .. }
            | ClientError::Status {
                status: Status::ShuttingDown | Status::TooManyRequests,
                ..
            }
    )
}

impl follow::Follows for LogClient {
    fn follower(&self) -> Option<&Follower> {
        self.follower.as_ref()
    }

    fn apply(&self, topology: &Topology) -> Result<NodeChanges, ClientError> {
        self.apply_topology(topology)
    }
}

fn too_big(key: u64, len: usize) -> ClientError {
    ClientError::Setup(format!(
        "record with key {key} and a value of {len} bytes is too big for a batch"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_asks_loopback_nodes_for_uncompressed_batches_and_the_others_for_lz4() {
        let v4: SocketAddr = "127.0.0.1:11000".parse().unwrap();
        let v4_other: SocketAddr = "127.3.2.1:11000".parse().unwrap();
        let v6: SocketAddr = "[::1]:11000".parse().unwrap();
        let remote: SocketAddr = "10.0.0.7:11000".parse().unwrap();
        for addr in [v4, v4_other, v6] {
            assert!(ReadBatches::Auto.uncompressed_from(addr), "{addr}");
        }
        assert!(!ReadBatches::Auto.uncompressed_from(remote));
        assert!(ReadBatches::Uncompressed.uncompressed_from(remote));
        assert!(!ReadBatches::Lz4.uncompressed_from(v4));
        assert_eq!(ReadBatches::default(), ReadBatches::Auto);
    }
}
