//! The queue cluster's client: [`QueueClient`].
//!
//! Queue nodes never know each other and hold independent channels; a channel of the cluster is
//! the union of that channel on every node. So:
//!
//! - **push** goes to one node, chosen round-robin. A node that refuses the record because it is
//!   full (ChannelFull, OutOfMemory), is shutting down, or cannot be reached (connect failure,
//!   disconnect, timeout) is skipped and the next node is tried; the push fails only when every
//!   node refused it, with the last node's error. A timed-out push may still have been stored
//!   by the slow node, so a record can then be stored twice (delivery is at least once).
//! - **push_multi** (one value to several channels) goes to one node the same way; a node
//!   stores it in every channel or in none, so trying the next node never duplicates it.
//! - **produce** ([`Producer`]) streams values in batches, each to the next node round-robin,
//!   with a bounded number of batches unacknowledged; what a full node did not store goes to the
//!   next node.
//! - **pop** asks the nodes in turn (starting round-robin, so no node is favoured) until one has
//!   a record; `None` when every reachable node's channel is empty. Unreachable nodes are
//!   skipped; if no node could be asked at all, the last error is returned. A node that refuses
//!   (a subscribed channel without a default subscriber) is skipped too, and its error returned
//!   when no node had a record.
//! - **consume** ([`Consumer`]) streams from every node at once, acknowledging what the caller
//!   has taken; **subscribe**, **get_channels** (union), **get_size** / **get_channel_size**
//!   (sums) and **remove_channel** fan out to every node and need all of them.
//!
//! ```no_run
//! use client::queue::QueueClient;
//! use client::ClientOptions;
//! use std::time::Duration;
//! let nodes = ["127.0.0.1:12000".parse().unwrap(), "127.0.0.1:12001".parse().unwrap()];
//! let queue = QueueClient::connect(&nodes, ClientOptions::default())?;
//! queue.push("jobs", b"job 1")?;
//! while let Some(value) = queue.pop("jobs")? {
//!     println!("{} bytes", value.len());
//! }
//! let mut producer = queue.producer(&["jobs"]);
//! for n in 0..1000 {
//!     producer.send(format!("job {n}").into_bytes())?;
//! }
//! producer.finish()?;
//! let mut consumer = queue.consume("jobs", "workers", 0)?;
//! while let Some(value) = consumer.next(Duration::from_secs(1))? {
//!     println!("{} bytes", value.len());
//! }
//! consumer.stop()?;
//! # Ok::<(), client::ClientError>(())
//! ```

mod consumer;
mod producer;

pub use consumer::Consumer;
pub use producer::Producer;

pub use node_core::protocol::queue::QueueSize;

use crate::client::Client;
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::reply::Reply;
use crate::round_robin::RoundRobin;
use crate::topology::Topology;
use node_core::protocol::queue::{self as wire, PushMultiRequest, PushRequest, SubscribeRequest};
use node_core::protocol::{NodeKind, RequestCode, Status};
use std::net::SocketAddr;

/// A connected queue cluster. `Send + Sync`: share it between threads with `Arc`.
#[derive(Debug)]
pub struct QueueClient {
    client: Client,
    /// Round-robin position of the next push and pop.
    writes: RoundRobin,
}

impl QueueClient {
    /// Connects to every node (each must be a queue node).
    pub fn connect(
        nodes: &[SocketAddr],
        options: ClientOptions,
    ) -> Result<QueueClient, ClientError> {
        // Pushes go to any one node: a node that is down at start must not stop the client.
        let options = ClientOptions {
            allow_down_nodes: true,
            ..options
        };
        let client = Client::connect(nodes, Some(NodeKind::Queue), options)?;
        Ok(QueueClient {
            client,
            writes: RoundRobin::starting_at(0),
        })
    }

    /// Connects to the `[queue]` nodes of a topology, with its credentials unless `options`
    /// brings its own.
    pub fn from_topology(
        topology: &Topology,
        options: ClientOptions,
    ) -> Result<QueueClient, ClientError> {
        let (nodes, options) = topology.connection(NodeKind::Queue, options)?;
        QueueClient::connect(nodes, options)
    }

    /// The transport underneath, for requests this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn node_count(&self) -> usize {
        self.client.node_count()
    }

    /// Node indexes starting at the next round-robin position.
    pub(crate) fn rotation(&self) -> impl Iterator<Item = usize> {
        self.writes.order(self.node_count())
    }

    /// Pushes `value` to `channel` on one node (see the module documentation); returns the
    /// index of the node that stored it.
    pub fn push(&self, channel: &str, value: &[u8]) -> Result<usize, ClientError> {
        let mut body = Vec::with_capacity(channel.len() + 1 + value.len());
        PushRequest { channel, value }.encode(&mut body);
        self.push_body(wire::PUSH, &body, "Push")
    }

    /// Pushes `value` to every channel of `channels` (1 to 64) on one node, all or nothing (see
    /// the module documentation); returns the index of the node that stored it.
    pub fn push_multi(&self, channels: &[&str], value: &[u8]) -> Result<usize, ClientError> {
        check_channel_count(self, channels.len())?;
        let mut body = Vec::new();
        PushMultiRequest {
            channels: channels.to_vec(),
            value,
        }
        .encode(&mut body);
        self.push_body(wire::PUSH_MULTI, &body, "PushMulti")
    }

    /// Sends a push-like request to the nodes in turn until one stores it.
    fn push_body(
        &self,
        code: RequestCode,
        body: &[u8],
        request: &str,
    ) -> Result<usize, ClientError> {
        let mut last_error = None;
        for node in self.rotation() {
            match self
                .client
                .request(node, code, body)
                .and_then(Reply::into_result)
            {
                Ok(reply) if reply.status == Status::Ok => return Ok(node),
                Ok(reply) => {
                    return Err(ClientError::protocol(
                        reply.node,
                        format!("{request} answered {:?}", reply.status),
                    ))
                }
                Err(error) if push_elsewhere(&error) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoNodes))
    }

    /// A streaming push of values to every channel of `channels` (1 to 64): see [`Producer`].
    pub fn producer(&self, channels: &[&str]) -> Producer<'_> {
        Producer::new(self, channels)
    }

    /// Consumes `channel` on every node as `subscriber` ("" = the default subscriber, which Pop
    /// shares), at most `max_batch_records` records per batch (0 = the node's default): see
    /// [`Consumer`]. Subscribes on every node first, so from now on each node keeps this
    /// subscriber's records.
    pub fn consume(
        &self,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
    ) -> Result<Consumer<'_>, ClientError> {
        Consumer::open(&self.client, channel, subscriber, max_batch_records)
    }

    /// Subscribes `subscriber` to `channel` on every node: from now on each node keeps a copy of
    /// every record pushed to the channel for this subscriber (the first subscriber of a channel
    /// also takes over what is queued). Needs every node.
    pub fn subscribe(&self, channel: &str, subscriber: &str) -> Result<(), ClientError> {
        let mut body = Vec::new();
        SubscribeRequest {
            channel,
            subscriber,
        }
        .encode(&mut body);
        for (_, reply) in self.client.fan_out(wire::SUBSCRIBE, &body)? {
            reply.ok_body()?;
        }
        Ok(())
    }

    /// Pops one record of `channel` from whichever node has one (see the module
    /// documentation); `None` when the channel is empty on every reachable node.
    pub fn pop(&self, channel: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let mut answered = false;
        let mut last_error = None;
        let mut refused = None;
        for node in self.rotation() {
            match self
                .client
                .request(node, wire::POP, &body)
                .and_then(Reply::into_result)
            {
                Ok(reply) if reply.status == Status::Ok => return Ok(Some(reply.body)),
                Ok(_) => answered = true,
                Err(error) if unreachable(&error) => last_error = Some(error),
                Err(error @ ClientError::Status { .. }) => refused = refused.or(Some(error)),
                Err(error) => return Err(error),
            }
        }
        if let Some(error) = refused {
            return Err(error);
        }
        match last_error {
            Some(error) if !answered => Err(error),
            _ => Ok(None),
        }
    }

    /// The names of every channel on any node: sorted, each once.
    pub fn get_channels(&self) -> Result<Vec<String>, ClientError> {
        self.client.channel_names(wire::GET_CHANNELS)
    }

    /// Records, bytes, used ring bytes and capacity over every channel of every node.
    pub fn get_size(&self) -> Result<QueueSize, ClientError> {
        self.sum_sizes(wire::GET_SIZE, &[], "GetSize")
    }

    /// The size of one channel summed over every node (zeros for a missing channel).
    pub fn get_channel_size(&self, channel: &str) -> Result<QueueSize, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        self.sum_sizes(wire::GET_CHANNEL_SIZE, &body, "GetChannelSize")
    }

    /// The size of one channel on each node, in node order.
    pub fn get_channel_size_per_node(
        &self,
        channel: &str,
    ) -> Result<Vec<(SocketAddr, QueueSize)>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        self.client
            .fan_out(wire::GET_CHANNEL_SIZE, &body)?
            .into_iter()
            .map(|(node, reply)| {
                let body = reply.ok_body()?;
                let size = QueueSize::decode(&body).map_err(|e| {
                    ClientError::protocol(node, format!("GetChannelSize reply: {e}"))
                })?;
                Ok((node, size))
            })
            .collect()
    }

    /// Removes a channel from every node (admins only when authentication is on).
    pub fn remove_channel(&self, channel: &str) -> Result<(), ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        for (_, reply) in self.client.fan_out(wire::REMOVE_CHANNEL, &body)? {
            reply.into_result()?;
        }
        Ok(())
    }

    fn sum_sizes(
        &self,
        code: RequestCode,
        body: &[u8],
        request: &str,
    ) -> Result<QueueSize, ClientError> {
        let mut total = QueueSize::default();
        for (node, reply) in self.client.fan_out(code, body)? {
            let body = reply.ok_body()?;
            let size = QueueSize::decode(&body)
                .map_err(|e| ClientError::protocol(node, format!("{request} reply: {e}")))?;
            total.add(&size);
        }
        Ok(total)
    }
}

/// Refuses a channel list the nodes would refuse (before anything is sent).
fn check_channel_count(queue: &QueueClient, count: usize) -> Result<(), ClientError> {
    if (1..=wire::MAX_PUSH_CHANNELS).contains(&count) {
        return Ok(());
    }
    Err(refused_by_client(
        queue,
        Status::BadRequest,
        &format!(
            "{count} channels; a push names 1 to {}",
            wire::MAX_PUSH_CHANNELS
        ),
    ))
}

/// The error for a request the client refuses before sending it, as a node would (named after
/// the first node).
fn refused_by_client(queue: &QueueClient, status: Status, message: &str) -> ClientError {
    ClientError::Status {
        node: queue
            .client
            .node_addr(0)
            .unwrap_or(([0, 0, 0, 0], 0).into()),
        status,
        message: format!("refused by the client: {message}"),
    }
}

/// Whether a node could not be asked at all (down, unreachable, stopping).
pub(crate) fn unreachable(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout { .. }
            | ClientError::ShuttingDown { .. }
            | ClientError::Status {
                status: Status::ShuttingDown,
                ..
            }
    )
}

/// Whether a push refused with `error` should be tried on another node.
pub(crate) fn push_elsewhere(error: &ClientError) -> bool {
    unreachable(error)
        || matches!(
            error,
            ClientError::Status {
                status: Status::ChannelFull | Status::OutOfMemory,
                ..
            }
        )
}
