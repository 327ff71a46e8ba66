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
//!   a record. Unreachable nodes are skipped; `None` only when every node answered that its
//!   channel is empty: when nothing was found and a node could not be asked, `pop` fails with
//!   that node's error (`pop_partial` says `None` and lists the nodes it could not ask). A node
//!   that refuses (a subscribed channel without a default subscriber) is skipped too, and its
//!   error returned when no node had a record.
//! - **consume** ([`Consumer`]) streams from every node at once, acknowledging what the caller
//!   has taken (`consume_partial` starts without the nodes that are down and takes them in when
//!   they are back); **subscribe**, **get_channels** (union), **get_size** /
//!   **get_channel_size** (sums) and **remove_channel** fan out to every node and need all of
//!   them (the `*_partial` reads answer from the nodes that can, [`crate::Partial`]).
//! - A node known to be down (`ClientError::NodeDown`) is skipped by pushes and pops at once.
//! - **Membership**: [`QueueClient::open_topology`] follows a topology file, connecting to the
//!   nodes added to it and retiring those removed, with no restart.
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

#[cfg(feature = "async")]
pub(crate) use consumer::ConsumeSpec;
pub use consumer::Consumer;
pub use producer::Producer;
#[cfg(feature = "async")]
pub(crate) use producer::{next_node, ProducerCore, Resend, WINDOW as PRODUCER_WINDOW};

pub use node_core::protocol::queue::QueueSize;

use crate::client::Client;
use crate::error::ClientError;
use crate::failover::{judge_write, WriteStep};
use crate::follow::{self, Follower};
use crate::node_set::NodeChanges;
use crate::options::ClientOptions;
use crate::partial::Partial;
use crate::reply::Reply;
use crate::round_robin::RoundRobin;
use crate::topology::Topology;
use node_core::protocol::queue::{self as wire, PushMultiRequest, PushRequest, SubscribeRequest};
use node_core::protocol::{NodeKind, RequestCode, Status};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// A connected queue cluster. `Send + Sync`: share it between threads with `Arc`.
#[derive(Debug)]
pub struct QueueClient {
    client: Client,
    /// Round-robin position of the next push and pop.
    writes: RoundRobin,
    /// Set when the client follows a topology file.
    follower: Option<Follower>,
}

impl QueueClient {
    /// Connects to every node (each must be a queue node). Nodes that are down do not stop it:
    /// pushes go to the others, and the client reconnects to them in the background.
    pub fn connect(
        nodes: &[SocketAddr],
        options: ClientOptions,
    ) -> Result<QueueClient, ClientError> {
        QueueClient::start(nodes, options, None)
    }

    fn start(
        nodes: &[SocketAddr],
        options: ClientOptions,
        follower: Option<Follower>,
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
            follower,
        })
    }

    /// Connects to the `[queue]` nodes of the topology file at `path` and follows the file:
    /// nodes added to it are connected to, nodes removed are retired, with no restart.
    pub fn open_topology(
        path: &Path,
        options: ClientOptions,
    ) -> Result<Arc<QueueClient>, ClientError> {
        let (_, nodes, options, follower) = follow::open(path, NodeKind::Queue, options)?;
        let queue = Arc::new(QueueClient::start(&nodes, options, Some(follower))?);
        follow::spawn(&queue);
        Ok(queue)
    }

    /// Re-reads the followed topology file now (see [`QueueClient::open_topology`]).
    pub fn reload_topology(&self) -> Result<NodeChanges, ClientError> {
        let topology = follow::reload(self.follower.as_ref())?;
        self.apply_topology(&topology)
    }

    /// Makes the `[queue]` nodes of `topology` this client's nodes.
    pub fn apply_topology(&self, topology: &Topology) -> Result<NodeChanges, ClientError> {
        follow::apply(&self.client, topology, NodeKind::Queue)
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

    /// Node indices handed out so far (see [`Client::node_count`]).
    pub fn node_count(&self) -> usize {
        self.client.node_count()
    }

    /// Active node indices starting at the next round-robin position.
    pub(crate) fn rotation(&self) -> impl Iterator<Item = usize> {
        self.writes.order_of(self.client.active_nodes())
    }

    /// Pushes `value` to `channel` on one node (see the module documentation); returns the
    /// index of the node that stored it.
    pub fn push(&self, channel: &str, value: &[u8]) -> Result<usize, ClientError> {
        let body = self.encode_push(channel, value)?;
        self.push_body(wire::PUSH, &body, "Push")
    }

    /// A Push's body, once the value passed the client's checks (blocking and async pushes).
    pub(crate) fn encode_push(&self, channel: &str, value: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.client.options().check_value(channel, value.len())?;
        let mut body = Vec::with_capacity(channel.len() + 1 + value.len());
        PushRequest { channel, value }.encode(&mut body);
        Ok(body)
    }

    /// Pushes `value` to every channel of `channels` (1 to 64) on one node, all or nothing (see
    /// the module documentation); returns the index of the node that stored it.
    pub fn push_multi(&self, channels: &[&str], value: &[u8]) -> Result<usize, ClientError> {
        let body = self.encode_push_multi(channels, value)?;
        self.push_body(wire::PUSH_MULTI, &body, "PushMulti")
    }

    /// A PushMulti's body, once the channel count passed the check (blocking and async).
    pub(crate) fn encode_push_multi(
        &self,
        channels: &[&str],
        value: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        check_channel_count(self, channels.len())?;
        let mut body = Vec::new();
        PushMultiRequest {
            channels: channels.to_vec(),
            value,
        }
        .encode(&mut body);
        Ok(body)
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
            let result = self.client.request(node, code, body);
            match judge_write(result, push_elsewhere, request) {
                WriteStep::Stored(_) => return Ok(node),
                WriteStep::Next(error) => last_error = Some(error),
                WriteStep::Failed(error) => return Err(error),
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
    /// subscriber's records. Fails when a node cannot be reached now.
    pub fn consume(
        &self,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
    ) -> Result<Consumer<'_>, ClientError> {
        Consumer::open(&self.client, channel, subscriber, max_batch_records, false)
    }

    /// [`QueueClient::consume`] that starts without the nodes that are down and consumes from
    /// them once they are back ([`Consumer::missing`] lists the nodes not consumed from now).
    pub fn consume_partial(
        &self,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
    ) -> Result<Consumer<'_>, ClientError> {
        Consumer::open(&self.client, channel, subscriber, max_batch_records, true)
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
    /// documentation); `None` when every node answered that the channel is empty. When no node
    /// had a record and a node could not be asked, fails with that node's error.
    pub fn pop(&self, channel: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let popped = self.pop_partial(channel)?;
        match popped.value {
            Some(value) => Ok(Some(value)),
            None => popped.complete(),
        }
    }

    /// [`QueueClient::pop`] over the nodes that can be asked: the record popped, if one was,
    /// and the nodes that could not be asked (a `None` with nodes missing means "empty on the
    /// nodes that answered").
    pub fn pop_partial(&self, channel: &str) -> Result<Partial<Option<Vec<u8>>>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let mut walk = PopWalk::default();
        for node in self.rotation() {
            let addr = self.client.node_addr(node).unwrap_or(NO_ADDR);
            if let Some(done) = walk.take(addr, self.client.request(node, wire::POP, &body)) {
                return done;
            }
        }
        walk.finish()
    }

    /// The names of every channel on any node: sorted, each once.
    pub fn get_channels(&self) -> Result<Vec<String>, ClientError> {
        self.get_channels_partial()?.complete()
    }

    /// [`QueueClient::get_channels`] of the nodes that answer, with those that could not.
    pub fn get_channels_partial(&self) -> Result<Partial<Vec<String>>, ClientError> {
        self.client.channel_names_partial(wire::GET_CHANNELS)
    }

    /// Records, bytes, used ring bytes and capacity over every channel of every node.
    pub fn get_size(&self) -> Result<QueueSize, ClientError> {
        self.get_size_partial()?.complete()
    }

    /// [`QueueClient::get_size`] summed over the nodes that answer, with those that could not.
    pub fn get_size_partial(&self) -> Result<Partial<QueueSize>, ClientError> {
        Ok(self.sizes(wire::GET_SIZE, &[], "GetSize")?.map(sum))
    }

    /// The size of one channel summed over every node (zeros for a missing channel).
    pub fn get_channel_size(&self, channel: &str) -> Result<QueueSize, ClientError> {
        self.get_channel_size_partial(channel)?.complete()
    }

    /// [`QueueClient::get_channel_size`] over the nodes that answer, with those that could not.
    pub fn get_channel_size_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<QueueSize>, ClientError> {
        Ok(self.get_channel_size_per_node_partial(channel)?.map(sum))
    }

    /// The size of one channel on each node, in node order.
    pub fn get_channel_size_per_node(
        &self,
        channel: &str,
    ) -> Result<Vec<(SocketAddr, QueueSize)>, ClientError> {
        self.get_channel_size_per_node_partial(channel)?.complete()
    }

    /// [`QueueClient::get_channel_size_per_node`] of the nodes that answer, with those that
    /// could not.
    pub fn get_channel_size_per_node_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<Vec<(SocketAddr, QueueSize)>>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        self.sizes(wire::GET_CHANNEL_SIZE, &body, "GetChannelSize")
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

    /// One size request on every node that can answer, decoded per node.
    fn sizes(
        &self,
        code: RequestCode,
        body: &[u8],
        request: &str,
    ) -> Result<Partial<Vec<(SocketAddr, QueueSize)>>, ClientError> {
        self.client
            .fan_out_decoded(code, body, request, QueueSize::decode)
    }
}

impl follow::Follows for QueueClient {
    fn follower(&self) -> Option<&Follower> {
        self.follower.as_ref()
    }

    fn apply(&self, topology: &Topology) -> Result<NodeChanges, ClientError> {
        self.apply_topology(topology)
    }
}

/// The sum of per-node sizes.
fn sum(sizes: Vec<(SocketAddr, QueueSize)>) -> QueueSize {
    let mut total = QueueSize::default();
    for (_, size) in &sizes {
        total.add(size);
    }
    total
}

/// Refuses a channel list the nodes would refuse (before anything is sent).
pub(crate) fn check_channel_count(queue: &QueueClient, count: usize) -> Result<(), ClientError> {
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
        ClientError::NodeDown { .. }
            | ClientError::Connect { .. }
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
/// The address reported for a node index that is gone (it cannot be: indices are never reused).
pub(crate) const NO_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// A pop walking the nodes in turn: what their answers add up to so far. The blocking and the
/// async clients feed it the same way.
pub(crate) struct PopWalk {
    result: Partial<Option<Vec<u8>>>,
    /// The first refusal (a status error): the pop's error if no node had a record.
    refused: Option<ClientError>,
}

impl Default for PopWalk {
    fn default() -> PopWalk {
        PopWalk {
            result: Partial::new(None),
            refused: None,
        }
    }
}

impl PopWalk {
    /// Takes node `addr`'s answer; `Some` when the pop is decided (a record, or an error no
    /// other node can change).
    pub(crate) fn take(
        &mut self,
        addr: SocketAddr,
        answer: Result<Reply, ClientError>,
    ) -> Option<Result<Partial<Option<Vec<u8>>>, ClientError>> {
        match answer.and_then(Reply::into_result) {
            Ok(reply) if reply.status == Status::Ok => {
                self.result.value = Some(reply.body);
                Some(Ok(std::mem::replace(&mut self.result, Partial::new(None))))
            }
            Ok(_) => None,
            Err(error) if unreachable(&error) => {
                self.result.missing.push((addr, error));
                None
            }
            Err(error @ ClientError::Status { .. }) => {
                self.refused = self.refused.take().or(Some(error));
                None
            }
            Err(error) => Some(Err(error)),
        }
    }

    /// Every node answered without a record.
    pub(crate) fn finish(self) -> Result<Partial<Option<Vec<u8>>>, ClientError> {
        match self.refused {
            Some(error) => Err(error),
            None => Ok(self.result),
        }
    }
}

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
