//! [`Client`]: the handle callers use. Owns connecting (eagerly, to every node), starting and
//! stopping the I/O thread, and the request API: blocking, pipelined and streaming, plus the
//! requests every node answers.
//!
//! A `Client` is `Send + Sync`; share it between threads with `Arc`. All its nodes' traffic
//! goes over one connection per node, driven by one background thread. Dropping the `Client`
//! stops that thread; requests still outstanding then fail with `ClientError::Closed`.

use crate::common::{self, VersionInfo};
use crate::error::ClientError;
use crate::handshake::{self, Opened};
use crate::io_thread::{IoThread, WAKER_TOKEN};
use crate::node_set::{NodeChanges, NodeStatus};
use crate::options::ClientOptions;
use crate::partial::Partial;
use crate::reply::{Pending, Reply, Stream, Ticket};
use crate::shared::{Command, Shared, Sink, COMMAND_QUEUE_LEN};
use crate::stream_set::StreamSet;
use crate::topology::Topology;
use mio::{Poll, Waker};
use node_core::auth;
use node_core::protocol::wire::WireError;
use node_core::protocol::{NodeKind, RequestCode};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Client {
    shared: Arc<Shared>,
    io_thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects to every node (in parallel) and checks each is a swarm node of our protocol
    /// version, of kind `wanted_kind` if given, and accepts our credentials. Fails with the
    /// error of the first node (in `nodes` order) that failed, unless
    /// [`ClientOptions::allow_down_nodes`] is set and every failure only says a node is down:
    /// those nodes then start down (see [`Client::node_status`]) and are reconnected in the
    /// background.
    pub fn connect(
        nodes: &[SocketAddr],
        wanted_kind: Option<NodeKind>,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        check_options(&options)?;
        let opened = open_all(nodes, wanted_kind, &options);
        let first_error = opened.iter().find_map(|result| result.as_ref().err());
        if let Some(error) = first_error {
            let tolerated = options.allow_down_nodes
                && opened
                    .iter()
                    .all(|result| result.as_ref().err().is_none_or(ClientError::is_node_down));
            if !tolerated {
                return Err(error.clone());
            }
        }
        Client::start(nodes, wanted_kind, options, opened)
    }

    /// Connects to the nodes of one kind listed in a topology. The topology's credentials are
    /// used unless `options` brings its own.
    pub fn from_topology(
        topology: &Topology,
        kind: NodeKind,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let (nodes, options) = topology.connection(kind, options)?;
        Client::connect(nodes, Some(kind), options)
    }

    fn start(
        nodes: &[SocketAddr],
        wanted: Option<NodeKind>,
        options: ClientOptions,
        opened: Vec<Result<Opened, ClientError>>,
    ) -> Result<Client, ClientError> {
        let setup =
            |what: &str, e: std::io::Error| ClientError::Setup(format!("cannot {what}: {e}"));
        let poll = Poll::new().map_err(|e| setup("create the client's poller", e))?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)
            .map_err(|e| setup("create the client's waker", e))?;
        let (commands_tx, commands) = mpsc::sync_channel(COMMAND_QUEUE_LEN);
        let shared = Arc::new(Shared::new(commands_tx, waker, nodes, options));
        let io = IoThread::new(poll, Arc::clone(&shared), commands, opened, wanted);
        let io_thread = std::thread::Builder::new()
            .name("swarm-client-io".into())
            .spawn(move || io.run())
            .map_err(|e| setup("start the client's I/O thread", e))?;
        Ok(Client {
            shared,
            io_thread: Some(io_thread),
        })
    }

    /// Node indices handed out so far, retired ones included: indices run from 0 to this, and
    /// one index names one node for the life of the client.
    pub fn node_count(&self) -> usize {
        self.shared.node_count()
    }

    /// The indices of the nodes that are not retired, in index order.
    pub fn active_nodes(&self) -> Vec<usize> {
        self.shared.active_indices()
    }

    /// How node `index` is doing, as the client last saw it; `None` for an index never handed
    /// out. Costs no request.
    pub fn node_status(&self, index: usize) -> Option<NodeStatus> {
        self.shared.node(index).ok().map(|node| node.status(index))
    }

    /// [`Client::node_status`] of every index.
    pub fn node_statuses(&self) -> Vec<NodeStatus> {
        self.shared
            .all_nodes()
            .iter()
            .enumerate()
            .map(|(index, node)| node.status(index))
            .collect()
    }

    /// `Ok` when a request to node `index` would be sent now; else the error it would fail
    /// with at once (node down, retired, no such index).
    pub(crate) fn check_node(&self, index: usize) -> Result<(), ClientError> {
        self.shared.node(index)?.check()
    }

    /// How many connections to node `index` were opened so far (0 while it never was up): a
    /// change means the node came back, and what was learnt of it may be stale.
    pub(crate) fn node_generation(&self, index: usize) -> u64 {
        self.route_stamp(index).unwrap_or(0)
    }

    /// [`Client::node_generation`], or `None` for a retired node (or an index never handed
    /// out): what a dht route was made with, compared on every keyed request.
    pub(crate) fn route_stamp(&self, index: usize) -> Option<u64> {
        self.shared.route_stamp(index)
    }

    /// Adds a node: connects to it in the background (requests to it wait for that first
    /// connect) and returns its index. A node already among the active ones keeps its index.
    pub fn add_node(&self, addr: SocketAddr) -> Result<usize, ClientError> {
        let existing = self
            .shared
            .all_nodes()
            .iter()
            .position(|node| node.addr == addr && !node.is_retired());
        if let Some(index) = existing {
            return Ok(index);
        }
        let index = self.shared.push_node(addr)?;
        self.shared.send(Command::AddNode, index)?;
        Ok(index)
    }

    /// Retires node `index`: requests to it fail with `ClientError::NodeRetired` from now on
    /// (those in flight too), its connection is closed, and the index is never used again.
    pub fn retire_node(&self, index: usize) -> Result<(), ClientError> {
        let node = self.shared.node(index)?;
        if !node.is_retired() {
            node.retire();
            self.shared.send(Command::Retire { node: index }, index)?;
        }
        Ok(())
    }

    /// Makes `addrs` the client's nodes: adds those it does not have (in the given order) and
    /// retires the active ones not listed. Nodes kept keep their indices.
    pub fn set_nodes(&self, addrs: &[SocketAddr]) -> Result<NodeChanges, ClientError> {
        let mut changes = NodeChanges::default();
        for status in self.node_statuses() {
            if !status.is_retired() && !addrs.contains(&status.addr) {
                self.retire_node(status.index)?;
                changes.removed.push((status.index, status.addr));
            }
        }
        for &addr in addrs {
            let before = self.node_count();
            let index = self.add_node(addr)?;
            if index >= before {
                changes.added.push((index, addr));
            }
        }
        Ok(changes)
    }

    /// The channels of every node (GetChannels of any kind: `code`), as one sorted list without
    /// duplicates; fails when a node cannot answer.
    pub fn channel_names(&self, code: RequestCode) -> Result<Vec<String>, ClientError> {
        self.channel_names_partial(code)?.complete()
    }

    /// [`Client::channel_names`] of the nodes that answer, and the nodes that could not
    /// (down, unreachable, too slow: [`ClientError::is_node_down`]).
    pub fn channel_names_partial(
        &self,
        code: RequestCode,
    ) -> Result<Partial<Vec<String>>, ClientError> {
        let lists = self.fan_out_decoded(code, &[], "GetChannels", |body| {
            node_core::protocol::channels::decode_channel_names(body)
        })?;
        Ok(lists.map(|lists| {
            let names: std::collections::BTreeSet<String> =
                lists.into_iter().flat_map(|(_, names)| names).collect();
            names.into_iter().collect()
        }))
    }

    /// [`Client::fan_out_partial`] with every answer decoded by `decode` (a protocol error
    /// naming `request` and the node if it cannot be). An error status fails the whole; a
    /// NotFound answer (a channel that node never had) is left out.
    pub(crate) fn fan_out_decoded<T>(
        &self,
        code: RequestCode,
        body: &[u8],
        request: &str,
        decode: impl Fn(&[u8]) -> Result<T, WireError>,
    ) -> Result<Partial<Vec<(SocketAddr, T)>>, ClientError> {
        let replies = self.fan_out_partial(code, body)?;
        let mut decoded = Vec::with_capacity(replies.value.len());
        for (node, reply) in replies.value {
            let reply = reply.into_result()?;
            if reply.status == node_core::protocol::Status::NotFound {
                continue;
            }
            let value = decode(&reply.body)
                .map_err(|e| ClientError::protocol(node, format!("{request} reply: {e}")))?;
            decoded.push((node, value));
        }
        Ok(Partial {
            value: decoded,
            missing: replies.missing,
        })
    }

    /// Sends one request to every active node at once (pipelined), then collects the replies in
    /// node order, each with its node's address. Fails with the first transport error.
    pub fn fan_out(
        &self,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Vec<(SocketAddr, Reply)>, ClientError> {
        self.fan_out_partial(code, body)?.complete()
    }

    /// [`Client::fan_out`] that leaves out the nodes that cannot answer (down, unreachable, too
    /// slow: [`ClientError::is_node_down`]) and lists them with their errors. Any other
    /// transport error fails the whole call. Replies with an error status are returned as they
    /// are.
    pub fn fan_out_partial(
        &self,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Partial<Vec<(SocketAddr, Reply)>>, ClientError> {
        let pending: Vec<(usize, Result<Pending, ClientError>)> = self
            .active_nodes()
            .into_iter()
            .map(|node| (node, self.submit(node, code, body)))
            .collect();
        let mut result = Partial::new(Vec::with_capacity(pending.len()));
        for (node, pending) in pending {
            match pending.and_then(Pending::wait) {
                Ok(reply) => result.value.push((reply.node, reply)),
                Err(error) if error.is_node_down() => {
                    result.missing.push((self.shared.addr(node), error))
                }
                Err(error) => return Err(error),
            }
        }
        Ok(result)
    }

    /// The address of node `index`.
    pub fn node_addr(&self, index: usize) -> Option<SocketAddr> {
        self.shared.node(index).ok().map(|node| node.addr)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.shared.options
    }

    /// Sends a request and waits for its Reply (up to `request_timeout_ms`).
    pub fn request(
        &self,
        node: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Reply, ClientError> {
        self.submit(node, code, body)?.wait()
    }

    /// Sends a request without waiting: submit many, then `wait()` each. Blocks only while the
    /// node's `max_in_flight` requests are outstanding (or the command queue is full).
    pub fn submit(
        &self,
        node: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Pending, ClientError> {
        self.submit_owned(node, code, body.to_vec())
    }

    /// [`Client::submit`] taking the body by value, which saves a copy for large bodies.
    pub fn submit_owned(
        &self,
        node: usize,
        code: RequestCode,
        body: Vec<u8>,
    ) -> Result<Pending, ClientError> {
        let deadline = self.shared.request_deadline(node)?;
        let (reply_to, rx) = mpsc::channel();
        let ticket = send_request(
            &self.shared,
            node,
            code,
            body,
            deadline,
            Sink::Own(reply_to),
        )?;
        Ok(Pending::new(ticket, rx, deadline))
    }

    /// Starts a streaming request (GetAll, Listen, GetRange, Consume, ...).
    pub fn stream(
        &self,
        node: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Stream, ClientError> {
        let deadline = self.shared.request_deadline(node)?;
        let (reply_to, rx) = mpsc::channel();
        let ticket = send_request(
            &self.shared,
            node,
            code,
            body.to_vec(),
            deadline,
            Sink::Own(reply_to),
        )?;
        Ok(Stream::open(ticket, rx))
    }

    /// An empty [`StreamSet`]: streams opened in it (on any nodes of this client) deliver
    /// into one queue, so one thread can wait on all of them at once.
    pub fn stream_set(&self) -> StreamSet {
        StreamSet::new(Arc::clone(&self.shared))
    }

    /// A [`StreamSet`] a tokio task polls (see there).
    #[cfg(feature = "async")]
    pub(crate) fn stream_set_async(&self) -> StreamSet {
        StreamSet::new_async(Arc::clone(&self.shared))
    }

    /// Closes node `node`'s connection now: everything in flight on it fails with
    /// `ClientError::Disconnected`, exactly as if the network had dropped it, and a new one is
    /// opened at once (requests made meanwhile wait for it). For tests of reconnect paths, and
    /// for tools that want a fresh connection. Returns once the I/O thread has the command, not
    /// once it acted on it.
    pub fn disconnect(&self, node: usize) -> Result<(), ClientError> {
        self.shared.node(node)?;
        self.shared.send(Command::Disconnect { node }, node)
    }

    pub fn get_version(&self, node: usize) -> Result<VersionInfo, ClientError> {
        let body = self
            .request(node, RequestCode::GET_VERSION, &[])?
            .ok_body()?;
        common::decode_version(self.shared.addr(node), &body)
    }

    /// The number of client connections the node has open.
    pub fn get_num_connections(&self, node: usize) -> Result<u64, ClientError> {
        let body = self
            .request(node, RequestCode::GET_NUM_CONNECTIONS, &[])?
            .ok_body()?;
        common::decode_num_connections(self.shared.addr(node), &body)
    }

    /// The node's live counters, in the node's order.
    pub fn get_stats(&self, node: usize) -> Result<Vec<(String, u64)>, ClientError> {
        let body = self.request(node, RequestCode::GET_STATS, &[])?.ok_body()?;
        common::decode_stats(self.shared.addr(node), &body)
    }

    /// When a wait of `request_timeout_ms` starting now must end (sooner when
    /// `total_timeout_ms` ends first).
    pub(crate) fn request_deadline(&self) -> Instant {
        self.shared.deadline_in(Duration::from_millis(
            self.shared.options.request_timeout_ms,
        ))
    }

    /// What the async client shares with this one: the nodes, the I/O thread's command channel.
    #[cfg(feature = "async")]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.shut_down();
        if let Some(io_thread) = self.io_thread.take() {
            if io_thread.join().is_err() {
                tracing::error!("client I/O thread panicked");
            }
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<SocketAddr> = self.shared.all_nodes().iter().map(|n| n.addr).collect();
        f.debug_struct("Client")
            .field("nodes", &nodes)
            .finish_non_exhaustive()
    }
}

/// Sends request `code` to node `node`, its frames to go to `reply_to`: fails at once when the
/// node is known to be down or the body is too large, waits (until `deadline`) for an in-flight
/// slot, then hands the request to the I/O thread.
pub(crate) fn send_request(
    shared: &Arc<Shared>,
    node: usize,
    code: RequestCode,
    body: Vec<u8>,
    deadline: Instant,
    reply_to: Sink,
) -> Result<Ticket, ClientError> {
    let info = admit_request(shared, node, &body)?;
    let permit = info
        .limit
        .acquire(deadline)
        .ok_or_else(|| too_many_in_flight(shared, &info))?;
    let (command, ticket) = make_request(shared, &info, node, code, body, reply_to, permit);
    shared.send(command, node)?;
    Ok(ticket)
}

/// [`send_request`] for an async caller: the same checks, the same slot and the same command,
/// waited for without blocking the task's thread.
#[cfg(feature = "async")]
pub(crate) async fn send_request_async(
    shared: &Arc<Shared>,
    node: usize,
    code: RequestCode,
    body: Vec<u8>,
    deadline: Instant,
    reply_to: Sink,
) -> Result<Ticket, ClientError> {
    let info = admit_request(shared, node, &body)?;
    let permit = info
        .limit
        .acquire_async(deadline)
        .await
        .ok_or_else(|| too_many_in_flight(shared, &info))?;
    let (command, ticket) = make_request(shared, &info, node, code, body, reply_to, permit);
    shared.send_async(command, node).await?;
    Ok(ticket)
}

/// The checks made before a request takes a slot: the node exists, is not known to be down
/// (no command, no connect attempt: it fails at once), and the body is within the limit.
fn admit_request(
    shared: &Shared,
    node: usize,
    body: &[u8],
) -> Result<Arc<crate::node_set::NodeInfo>, ClientError> {
    let info = shared.node(node)?;
    info.check()?;
    let max = shared.options.max_request_bytes;
    if body.len() > max as usize {
        return Err(ClientError::RequestTooLarge {
            node: info.addr,
            len: body.len(),
            max,
        });
    }
    Ok(info)
}

fn too_many_in_flight(shared: &Shared, info: &crate::node_set::NodeInfo) -> ClientError {
    ClientError::TooManyInFlight {
        node: info.addr,
        limit: info.limit.max(),
        ms: shared.options.request_timeout_ms,
    }
}

/// The command that opens the request on the I/O thread, and the caller's ticket for it.
fn make_request(
    shared: &Arc<Shared>,
    info: &crate::node_set::NodeInfo,
    node: usize,
    code: RequestCode,
    body: Vec<u8>,
    reply_to: Sink,
    permit: crate::limit::Permit,
) -> (Command, Ticket) {
    let request_id = info.next_request_id();
    let command = Command::Send {
        node,
        request_id,
        code,
        body,
        reply_to,
        permit,
    };
    let ticket = Ticket {
        shared: Arc::clone(shared),
        node,
        request_id,
        finished: false,
        heard_before: info.reads_heard(),
    };
    (command, ticket)
}

/// Refuses a client name the handshake could not carry, before any connection is made.
fn check_options(options: &ClientOptions) -> Result<(), ClientError> {
    if let Some((name, _)) = &options.credentials {
        auth::check_name(name.as_bytes())
            .map_err(|e| ClientError::Setup(format!("client name '{name}': {e}")))?;
    }
    Ok(())
}

/// Opens every node's connection in parallel (so a dead node costs one connect timeout, not
/// one per node); the outcome per node, in node order.
fn open_all(
    nodes: &[SocketAddr],
    wanted: Option<NodeKind>,
    options: &ClientOptions,
) -> Vec<Result<Opened, ClientError>> {
    let results: Vec<Result<Opened, ClientError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|&node| scope.spawn(move || handshake::open(node, wanted, options)))
            .collect();
        handles
            .into_iter()
            .zip(nodes)
            .map(|(handle, &node)| {
                handle.join().unwrap_or_else(|_| {
                    Err(ClientError::Setup(format!(
                        "node {node}: connect thread panicked"
                    )))
                })
            })
            .collect()
    });
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_handles_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Client>();
        send_sync::<Arc<Client>>();
        send::<Pending>();
        send::<Stream>();
    }

    #[test]
    fn connect_needs_nodes() {
        let error = Client::connect(&[], None, ClientOptions::default()).expect_err("no nodes");
        assert!(matches!(error, ClientError::NoNodes));
    }
}
