//! The client's one I/O thread: owns the connections to all nodes of a `Client` and
//! multiplexes the requests of every caller thread over one connection per node.
//!
//! Loop: wait for readiness (sockets, or the waker that callers and connect threads ring), or
//! for the next background reconnect that is due; then service ready sockets (read and route
//! frames, write pending output), take finished connects, take callers' commands (new requests,
//! credit/stop, cancels, node changes), start the reconnects that are due, and flush every
//! connection with output, so that a burst of commands leaves in as few writes as possible.
//!
//! Connects never block this thread: a connect runs on a short-lived thread that hands the
//! finished connection back through a channel. That channel is unbounded in type but holds at
//! most one result per node, since a node has at most one connect under way.
//!
//! Reconnecting is the I/O thread's business, not the callers': a connection that drops is
//! opened again at once (requests made meanwhile wait for it); a connect that fails marks the
//! node down (`node_set`), so requests to it fail at once, and the next attempt follows the
//! node's backoff (50 ms doubling to 4 s) until one succeeds and the node is up again.

use crate::error::ClientError;
use crate::handshake::{self, Opened};
use crate::session::{Link, Session};
use crate::shared::{Command, Routed, Shared};
use mio::event::Event;
use mio::{Events, Interest, Poll, Token};
use node_core::protocol::NodeKind;
use node_core::tls::Transport;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

/// The waker's token; node `i`'s socket uses `Token(i)`.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);
/// Readiness events handled per poll; more simply wait for the next round.
const EVENTS_CAPACITY: usize = 256;

struct ConnectDone {
    node: usize,
    result: Result<Opened, ClientError>,
}

pub(crate) struct IoThread {
    poll: Poll,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    connects_tx: Sender<ConnectDone>,
    connects: Receiver<ConnectDone>,
    sessions: Vec<Session>,
    wanted: Option<NodeKind>,
}

impl IoThread {
    /// Takes the outcome of `Client::connect`'s first connect to each node (in node order): a
    /// node that failed starts down, with its first background reconnect due after 50 ms.
    pub(crate) fn new(
        poll: Poll,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        opened: Vec<Result<Opened, ClientError>>,
        wanted: Option<NodeKind>,
    ) -> IoThread {
        let (connects_tx, connects) = mpsc::channel();
        let max_frame = shared.options.max_frame_bytes;
        let sessions = shared
            .all_nodes()
            .into_iter()
            .map(|node| Session::new(node, max_frame))
            .collect();
        let mut io = IoThread {
            poll,
            shared,
            commands,
            connects_tx,
            connects,
            sessions,
            wanted,
        };
        for (node, opened) in opened.into_iter().enumerate() {
            io.on_connect_done(node, opened);
        }
        io
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = self
                .next_retry()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(%error, "client I/O thread: poll failed; closing all connections");
                break;
            }
            for event in events.iter() {
                if event.token() != WAKER_TOKEN {
                    self.on_socket_event(event);
                }
            }
            if self.shared.is_shut_down() {
                break;
            }
            self.take_connects();
            self.take_commands();
            self.retry_due();
            self.flush_all();
        }
        self.close_all();
    }

    fn on_socket_event(&mut self, event: &Event) {
        let node = event.token().0;
        let Some(session) = self.sessions.get_mut(node) else {
            return;
        };
        // An event for a link that is no longer up is a leftover: spurious events are normal.
        let Link::Up(stream) = &session.link else {
            return;
        };
        let mut result = Ok(());
        if event.is_error() {
            if let Ok(Some(error)) | Err(error) = stream.socket().take_error() {
                tracing::debug!(node = %session.addr, %error, "socket error");
                result = Err(ClientError::Disconnected { node: session.addr });
            }
        }
        if result.is_ok() && (event.is_readable() || event.is_read_closed()) {
            result = session.read_ready();
        }
        if result.is_ok() && event.is_writable() {
            result = session.flush();
        }
        if let Err(error) = result {
            self.lose_connection(node, error);
        }
    }

    fn take_commands(&mut self) {
        self.shared.clear_wake();
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.on_command(command),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send {
                node,
                request_id,
                code,
                body,
                reply_to,
                permit,
            } => match self.ready_for_request(node) {
                Ok(()) => {
                    self.sessions[node].queue_request(request_id, code, &body, reply_to, permit)
                }
                Err(error) => {
                    let _ = reply_to.send(Routed::Failed(error));
                }
            },
            Command::Control {
                node,
                request_id,
                code,
                body,
            } => {
                if let Some(session) = self.sessions.get_mut(node) {
                    session.queue_control(request_id, code, &body);
                }
            }
            Command::Cancel { node, request_id } => {
                if let Some(session) = self.sessions.get_mut(node) {
                    session.requests.abandon(request_id);
                }
            }
            Command::Disconnect { node } => {
                if let Some(session) = self.sessions.get(node) {
                    let error = ClientError::Disconnected { node: session.addr };
                    self.lose_connection(node, error);
                }
            }
            Command::Unresponsive { node } => self.give_up_on(node),
            Command::AddNode => self.sync_nodes(),
            Command::Retire { node } => self.retire(node),
        }
    }

    /// `Ok` when a request to `node` can be queued now: the link is up, or being opened while
    /// the node is not known to be down. Otherwise the error to fail it with at once (a caller
    /// checked the node's health just before, so this only catches a change in between).
    fn ready_for_request(&mut self, node: usize) -> Result<(), ClientError> {
        if node >= self.sessions.len() {
            // A request for an added node may overtake the AddNode command.
            self.sync_nodes();
        }
        let Some(session) = self.sessions.get_mut(node) else {
            return Err(ClientError::NoSuchNode {
                index: node,
                count: self.sessions.len(),
            });
        };
        session.info.check()?;
        if matches!(session.link, Link::Idle) {
            // Down nodes fail in `check`; an idle link of a node not down is one whose connect
            // was never started (defensive): start it, the request waits for it.
            session.link = Link::Connecting;
            self.start_connect(node);
        }
        Ok(())
    }

    /// Starts a session, and its first connect, for every node appended to the shared list.
    fn sync_nodes(&mut self) {
        let nodes = self.shared.all_nodes();
        let max_frame = self.shared.options.max_frame_bytes;
        for (index, node) in nodes.into_iter().enumerate().skip(self.sessions.len()) {
            tracing::debug!(node = %node.addr, index, "node added");
            let retired = node.is_retired();
            self.sessions.push(Session::new(node, max_frame));
            if !retired {
                self.sessions[index].link = Link::Connecting;
                self.start_connect(index);
            }
        }
    }

    fn retire(&mut self, node: usize) {
        if node >= self.sessions.len() {
            self.sync_nodes();
        }
        let Some(session) = self.sessions.get(node) else {
            return;
        };
        let error = ClientError::NodeRetired { node: session.addr };
        tracing::debug!(node = %session.addr, "node retired");
        self.close_connection(node, error);
    }

    /// When the earliest background reconnect is due, if any node waits for one.
    fn next_retry(&self) -> Option<Instant> {
        self.sessions
            .iter()
            .filter(|session| matches!(session.link, Link::Idle) && !session.info.is_retired())
            .filter_map(|session| session.backoff.retry_at())
            .min()
    }

    /// Starts the background reconnects that are due.
    fn retry_due(&mut self) {
        let now = Instant::now();
        for node in 0..self.sessions.len() {
            let session = &mut self.sessions[node];
            let due = matches!(session.link, Link::Idle)
                && !session.info.is_retired()
                && session.backoff.retry_at().is_some_and(|at| at <= now);
            if due {
                session.link = Link::Connecting;
                self.start_connect(node);
            }
        }
    }

    fn start_connect(&mut self, node: usize) {
        let addr = self.sessions[node].addr;
        let shared = Arc::clone(&self.shared);
        let done = self.connects_tx.clone();
        let wanted = self.wanted;
        let spawned = std::thread::Builder::new()
            .name("swarm-client-connect".into())
            .spawn(move || {
                let result = handshake::open(addr, wanted, &shared.options);
                // If the I/O thread is gone, so is the client: the connection is just dropped.
                if done.send(ConnectDone { node, result }).is_ok() {
                    shared.wake();
                }
            });
        if let Err(error) = spawned {
            let reason = format!("cannot start a connect thread: {error}");
            let error = ClientError::Setup(format!("node {addr}: {reason}"));
            self.on_connect_done(node, Err(error));
        }
    }

    fn take_connects(&mut self) {
        while let Ok(ConnectDone { node, result }) = self.connects.try_recv() {
            self.on_connect_done(node, result);
        }
    }

    fn on_connect_done(&mut self, node: usize, result: Result<Opened, ClientError>) {
        let addr = self.sessions[node].addr;
        if self.sessions[node].info.is_retired() {
            // Retired while connecting: the new connection is simply dropped.
            self.sessions[node].link = Link::Idle;
            return;
        }
        let registered = result.and_then(|opened| {
            tracing::debug!(node = %addr, kind = %opened.kind, admin = opened.admin, "handshake done");
            let socket = mio::net::TcpStream::from_std(opened.stream);
            let mut transport = match opened.tls {
                Some(session) => Transport::with_tls(socket, session.into()),
                None => Transport::plain(socket),
            };
            self.poll
                .registry()
                .register(transport.socket_mut(), Token(node), Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| ClientError::Setup(format!("node {addr}: cannot watch the socket: {e}")))?;
            Ok(transport)
        });
        let session = &mut self.sessions[node];
        debug_assert!(!session.is_up(), "two connects under way for one node");
        match registered {
            Ok(stream) => {
                session.link = Link::Up(stream);
                session.backoff.on_success();
                session.info.set_up();
            }
            Err(error) => {
                tracing::debug!(node = %addr, %error, "connect failed");
                self.mark_down(node, error);
            }
        }
    }

    /// Counts `node` down for `error`: requests to it fail at once, what waited for its connect
    /// fails as they will (node down), and the next connect follows the backoff.
    fn mark_down(&mut self, node: usize, error: ClientError) {
        let session = &mut self.sessions[node];
        session.take_link();
        session.link = Link::Idle;
        session.info.set_down(error);
        session.requests.fail_all(&session.info.down_error());
        session.backoff.on_failure(Instant::now());
    }

    /// The node's connection is up but the node answers nothing (`crate::probe`): closes it,
    /// failing what is in flight with `Timeout`, and counts the node down. A connection that
    /// is already gone (dropped, or being opened again) is left to that path.
    fn give_up_on(&mut self, node: usize) {
        let Some(session) = self.sessions.get(node) else {
            return;
        };
        if !session.is_up() {
            return;
        }
        let error = ClientError::Timeout {
            node: session.addr,
            ms: self.shared.options.request_timeout_ms,
        };
        self.close_connection(node, error.clone());
        self.mark_down(node, error);
    }

    fn flush_all(&mut self) {
        for node in 0..self.sessions.len() {
            let session = &mut self.sessions[node];
            if session.is_up() && session.has_output() {
                if let Err(error) = session.flush() {
                    self.lose_connection(node, error);
                }
            }
        }
    }

    /// The connection of node `node` failed (dropped, or broke the protocol): closes it, fails
    /// what was in flight on it with `error`, and opens a new one at once. Only a failed
    /// connect marks the node down and starts the backoff.
    fn lose_connection(&mut self, node: usize, error: ClientError) {
        self.close_connection(node, error);
        let session = &mut self.sessions[node];
        if session.info.is_retired() || !matches!(session.link, Link::Idle) {
            return;
        }
        session.info.set_connecting();
        session.link = Link::Connecting;
        self.start_connect(node);
    }

    /// Closes node `node`'s connection and fails what was in flight on it with `error`.
    fn close_connection(&mut self, node: usize, error: ClientError) {
        let session = &mut self.sessions[node];
        tracing::debug!(node = %session.addr, %error, in_flight = session.requests.len(), "closing connection");
        if let Some(mut transport) = session.take_link() {
            transport.close_notify();
            let _ = self.poll.registry().deregister(transport.socket_mut());
        }
        session.requests.fail_all(&error);
    }

    /// The client is going away: everything outstanding fails with `Closed`.
    fn close_all(&mut self) {
        for node in 0..self.sessions.len() {
            let addr = self.sessions[node].addr;
            self.close_connection(node, ClientError::Closed { node: addr });
        }
    }
}
