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
use crate::options::ClientOptions;
use crate::reply::{Pending, Reply, Stream, Ticket};
use crate::shared::{Command, Shared, Sink, COMMAND_QUEUE_LEN};
use crate::stream_set::StreamSet;
use crate::topology::Topology;
use mio::{Poll, Waker};
use node_core::auth;
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
    /// error of the first node (in `nodes` order) that failed.
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
                && opened.iter().any(Result::is_ok)
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

    pub fn node_count(&self) -> usize {
        self.shared.nodes.len()
    }

    /// The channels of every node (GetChannels of any kind: `code`), as one sorted list without
    /// duplicates.
    pub fn channel_names(&self, code: RequestCode) -> Result<Vec<String>, ClientError> {
        let mut names = std::collections::BTreeSet::new();
        for (node, reply) in self.fan_out(code, &[])? {
            let body = reply.ok_body()?;
            let decoded = node_core::protocol::channels::decode_channel_names(&body)
                .map_err(|e| ClientError::protocol(node, format!("GetChannels reply: {e}")))?;
            names.extend(decoded);
        }
        Ok(names.into_iter().collect())
    }

    /// Sends one request to every node at once (pipelined), then collects the replies in node
    /// order, each with its node's address. Fails with the first transport error.
    pub fn fan_out(
        &self,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Vec<(SocketAddr, Reply)>, ClientError> {
        let pending: Vec<Pending> = (0..self.node_count())
            .map(|node| self.submit(node, code, body))
            .collect::<Result<_, _>>()?;
        pending
            .into_iter()
            .map(|pending| pending.wait().map(|reply| (reply.node, reply)))
            .collect()
    }

    /// The address of node `index`, as given to `connect`.
    pub fn node_addr(&self, index: usize) -> Option<SocketAddr> {
        self.shared.nodes.get(index).map(|node| node.addr)
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
        let deadline = Instant::now() + self.request_timeout();
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
        let deadline = Instant::now() + self.request_timeout();
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

    /// Closes node `node`'s connection now: everything in flight on it fails with
    /// `ClientError::Disconnected`, exactly as if the network had dropped it, and the next
    /// request reconnects. For tests of reconnect paths, and for tools that want a fresh
    /// connection. Returns once the I/O thread has the command, not once it acted on it.
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

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.shared.options.request_timeout_ms)
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
        let nodes: Vec<SocketAddr> = self.shared.nodes.iter().map(|n| n.addr).collect();
        f.debug_struct("Client")
            .field("nodes", &nodes)
            .finish_non_exhaustive()
    }
}

/// Takes an in-flight slot and a request id, and hands the request to the I/O thread; its
/// frames will go to `reply_to`.
pub(crate) fn send_request(
    shared: &Arc<Shared>,
    node: usize,
    code: RequestCode,
    body: Vec<u8>,
    deadline: Instant,
    reply_to: Sink,
) -> Result<Ticket, ClientError> {
    let info = shared.node(node)?;
    let max = shared.options.max_request_bytes;
    if body.len() > max as usize {
        return Err(ClientError::RequestTooLarge {
            node: info.addr,
            len: body.len(),
            max,
        });
    }
    let permit = info
        .limit
        .acquire(deadline)
        .ok_or(ClientError::TooManyInFlight {
            node: info.addr,
            limit: info.limit.max(),
            ms: shared.options.request_timeout_ms,
        })?;
    let request_id = shared.next_request_id(node);
    let command = Command::Send {
        node,
        request_id,
        code,
        body,
        reply_to,
        permit,
    };
    shared.send(command, node)?;
    Ok(Ticket {
        shared: Arc::clone(shared),
        node,
        request_id,
        finished: false,
    })
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
/// one per node); returns them in node order, or the first node's error.
/// Connects to every node in parallel; the outcome per node, in node order.
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
