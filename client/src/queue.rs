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
//! - **pop** asks the nodes in turn (starting round-robin, so no node is favoured) until one has
//!   a record; `None` when every reachable node's channel is empty. Unreachable nodes are
//!   skipped; if no node could be asked at all, the last error is returned.
//! - **get_channels** (union), **get_size** / **get_channel_size** (sums) and
//!   **remove_channel** (every node) fan out to every node and need all of them.
//!
//! ```no_run
//! use client::queue::QueueClient;
//! use client::ClientOptions;
//! let nodes = ["127.0.0.1:10020".parse().unwrap(), "127.0.0.1:10021".parse().unwrap()];
//! let queue = QueueClient::connect(&nodes, ClientOptions::default())?;
//! queue.push("jobs", b"job 1")?;
//! while let Some(value) = queue.pop("jobs")? {
//!     println!("{} bytes", value.len());
//! }
//! # Ok::<(), client::ClientError>(())
//! ```

pub use node_core::protocol::queue::QueueSize;

use crate::client::Client;
use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::reply::Reply;
use crate::topology::Topology;
use node_core::protocol::queue::{self as wire, PushRequest};
use node_core::protocol::{NodeKind, RequestCode, Status};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A connected queue cluster. `Send + Sync`: share it between threads with `Arc`.
#[derive(Debug)]
pub struct QueueClient {
    client: Client,
    /// Round-robin position of the next push and pop.
    next: AtomicUsize,
}

impl QueueClient {
    /// Connects to every node (each must be a queue node).
    pub fn connect(
        nodes: &[SocketAddr],
        options: ClientOptions,
    ) -> Result<QueueClient, ClientError> {
        let client = Client::connect(nodes, Some(NodeKind::Queue), options)?;
        Ok(QueueClient {
            client,
            next: AtomicUsize::new(0),
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
    fn rotation(&self) -> impl Iterator<Item = usize> {
        let count = self.node_count();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        (0..count).map(move |offset| (start + offset) % count)
    }

    /// Pushes `value` to `channel` on one node (see the module documentation); returns the
    /// index of the node that stored it.
    pub fn push(&self, channel: &str, value: &[u8]) -> Result<usize, ClientError> {
        let mut body = Vec::with_capacity(channel.len() + 1 + value.len());
        PushRequest { channel, value }.encode(&mut body);
        let mut last_error = None;
        for node in self.rotation() {
            match self
                .client
                .request(node, wire::PUSH, &body)
                .and_then(Reply::into_result)
            {
                Ok(reply) if reply.status == Status::Ok => return Ok(node),
                Ok(reply) => {
                    return Err(ClientError::protocol(
                        reply.node,
                        format!("Push answered {:?}", reply.status),
                    ))
                }
                Err(error) if push_elsewhere(&error) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoNodes))
    }

    /// Pops one record of `channel` from whichever node has one (see the module
    /// documentation); `None` when the channel is empty on every reachable node.
    pub fn pop(&self, channel: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let mut answered = false;
        let mut last_error = None;
        for node in self.rotation() {
            match self
                .client
                .request(node, wire::POP, &body)
                .and_then(Reply::into_result)
            {
                Ok(reply) if reply.status == Status::Ok => return Ok(Some(reply.body)),
                Ok(_) => answered = true,
                Err(error) if unreachable(&error) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        match last_error {
            Some(error) if !answered => Err(error),
            _ => Ok(None),
        }
    }

    /// The names of every channel on any node: sorted, each once.
    pub fn get_channels(&self) -> Result<Vec<String>, ClientError> {
        let mut names = BTreeSet::new();
        for (node, reply) in self.client.fan_out(wire::GET_CHANNELS, &[])? {
            let body = reply.ok_body()?;
            let decoded = wire::decode_channel_names(&body)
                .map_err(|e| ClientError::protocol(node, format!("GetChannels reply: {e}")))?;
            names.extend(decoded);
        }
        Ok(names.into_iter().collect())
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

/// Whether a node could not be asked at all (down, unreachable, stopping).
fn unreachable(error: &ClientError) -> bool {
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
fn push_elsewhere(error: &ClientError) -> bool {
    unreachable(error)
        || matches!(
            error,
            ClientError::Status {
                status: Status::ChannelFull | Status::OutOfMemory,
                ..
            }
        )
}
