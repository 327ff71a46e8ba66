//! The node server core: a single-threaded mio event loop that accepts connections (up to a
//! limit), runs the handshake, reads frames, dispatches each request to the node's [`Service`],
//! drives streams under credit-based flow control, and writes replies with backpressure.
//!
//! Why one thread: every request is a short in-memory operation, and the peers we measure against
//! (Redis) show one core serves a million pipelined requests a second when the loop does few
//! syscalls per request. Work that blocks (fsync, dumps) belongs on other threads, owned by the
//! node's engine, never on this loop.
//!
//! Layout: [`service`] is the contract a node implements; [`connection`] holds one connection's
//! buffers; [`event_loop`] is the loop; [`common`] answers the requests every node shares
//! without its engine (GetVersion, GetNumConnections, GetStats). For the nodes' own handlers:
//! [`outcome`] is what a handler returns and how refusals are written, and
//! [`channel_requests`] the channel requests every kind shares (GetChannels, GetChannelSize,
//! GetSize, RemoveChannel).
//! [`durability`] is the fsync policy and group commit of the nodes that write to disk (their
//! fsync thread, off this loop); [`group_commit`] holds the replies that wait for a group commit
//! (`always`) until their epoch is fsynced.

pub mod channel_requests;
mod common;
mod connection;
pub mod durability;
mod event_loop;
pub mod group_commit;
pub mod outcome;
pub mod service;

pub use channel_requests::ChannelStore;
pub use outcome::{ErrorReply, Outcome};
pub use service::{
    ClientInfo, Handled, LookAheadFrames, Reply, Request, Service, StreamHandle, StreamOut,
    StreamStep, StreamTask, Wakeups, LOOK_AHEAD_FRAMES,
};

use crate::auth::Credentials;
use crate::log::NodeLogs;
use crate::metrics::MetricsHub;
use crate::protocol::frame::DEFAULT_MAX_FRAME_BYTES;
use crate::signals::SignalSource;
use mio::net::TcpListener;
use mio::{Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub(crate) const LISTENER_TOKEN: Token = Token(0);
pub(crate) const WAKER_TOKEN: Token = Token(1);
pub(crate) const SIGNAL_TOKEN: Token = Token(2);
/// Connection tokens are their slab slot plus this offset.
pub(crate) const FIRST_CONNECTION_TOKEN: usize = 3;

/// TLS handshakes the event loop drives in one pass by default (`server.tls_handshakes_per_pass`).
/// A server handshake costs the loop 0.4-0.6 ms of CPU here (X25519 and the certificate's
/// signature; measured in docs/benchmarks.md, "TLS handshake floods"): 16 of them hold the loop
/// about 7-9 ms per pass, so a request on an established connection waits about that long at
/// most behind a flood, while the node can still complete about 2000 handshakes a second.
pub const DEFAULT_TLS_HANDSHAKES_PER_PASS: usize = 16;

/// Everything the core needs to know; built from a node's config (see
/// [`crate::config`]) or directly by tests.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// Connections beyond this get a ConnectionLimit hello and are closed.
    pub max_connections: usize,
    pub max_frame_bytes: u32,
    /// Unanswered requests (running streams) per connection.
    pub max_in_flight: usize,
    /// Unsent output per connection above which the node stops reading from it and stops
    /// producing stream items for it.
    pub output_buffer_bytes: usize,
    /// Memory the streams of one connection may hold between their turns (cursors, filters,
    /// windows, indexes); at or above it, requests that open a stream get TooManyRequests.
    pub stream_memory_bytes: usize,
    /// The same for the streams of all connections together.
    pub max_stream_memory_bytes: usize,
    pub backlog: i32,
    pub tcp_keepalive_idle_s: u32,
    pub tick_interval_ms: u64,
    /// 0 disables stats.log lines.
    pub stats_interval_s: u64,
    /// How long a graceful shutdown waits for output to drain.
    pub shutdown_timeout_s: u64,
    /// A connection that has not completed its handshake by then is closed.
    pub hello_timeout_ms: u64,
    /// TLS handshakes driven per event-loop pass (at least 1); the others wait, in arrival
    /// order, for the next pass ([`DEFAULT_TLS_HANDSHAKES_PER_PASS`]).
    pub tls_handshakes_per_pass: usize,
    /// `Some` turns authentication on.
    pub credentials: Option<Arc<Credentials>>,
    /// The file `credentials` came from: SIGHUP reads it again (see `event_loop/reload.rs`).
    /// `None` (credentials given directly, or none) leaves the set as it is.
    pub credentials_file: Option<PathBuf>,
    /// Names that may run administrative requests when authentication is on.
    pub admins: Vec<String>,
    /// `Some`: every connection speaks TLS (docs/security.md, "TLS"); SIGHUP reloads it.
    pub tls: Option<crate::tls::ServerTls>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 5000,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: 1024,
            output_buffer_bytes: 4 * 1024 * 1024,
            stream_memory_bytes: 16 * 1024 * 1024,
            max_stream_memory_bytes: 1024 * 1024 * 1024,
            backlog: 1024,
            tcp_keepalive_idle_s: 5,
            tick_interval_ms: 100,
            stats_interval_s: 30,
            shutdown_timeout_s: 30,
            hello_timeout_ms: 10_000,
            tls_handshakes_per_pass: DEFAULT_TLS_HANDSHAKES_PER_PASS,
            credentials: None,
            credentials_file: None,
            admins: vec!["admin".to_string()],
            tls: None,
        }
    }
}

/// Asks a running server to shut down gracefully, from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Err(err) = self.waker.wake() {
            tracing::error!("cannot wake the event loop for shutdown: {err}");
        }
    }
}

/// A bound, not yet running server.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    options: ServerOptions,
    wakeups: Wakeups,
    shutdown_requested: Arc<AtomicBool>,
    waker: Arc<Waker>,
    signals: Option<SignalSource>,
    logs: Option<NodeLogs>,
    /// Where the loop hands a copy of its counters when a scrape asks (see [`crate::metrics`]).
    metrics: Option<Arc<MetricsHub>>,
}

impl Server {
    /// Binds the listening socket. Fails (with the address in the message) if the address is in
    /// use or not ours.
    pub fn bind(options: ServerOptions) -> io::Result<Server> {
        let poll = Poll::new()?;
        let listener = bind_listener(options.listen, options.backlog).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("cannot listen on {}: {err}", options.listen),
            )
        })?;
        let local_addr = listener.local_addr()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        Ok(Server {
            poll,
            listener,
            local_addr,
            options,
            wakeups: Wakeups::with_loop_waker(waker.clone()),
            shutdown_requested: Arc::new(AtomicBool::new(false)),
            waker,
            signals: None,
            logs: None,
            metrics: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The queue through which the node's service wakes waiting streams.
    pub fn wakeups(&self) -> Wakeups {
        self.wakeups.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            requested: self.shutdown_requested.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Makes SIGTERM/SIGINT shut the server down gracefully and SIGHUP reload (reopen the logs,
    /// re-read the credentials file, reload the TLS certificates). Daemons call this; in-process
    /// tests do not.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.signals = Some(SignalSource::register(self.poll.registry(), SIGNAL_TOKEN)?);
        Ok(())
    }

    /// Where stats lines go, and what SIGHUP reopens.
    pub fn set_logs(&mut self, logs: NodeLogs) {
        self.logs = Some(logs);
    }

    /// Feeds the metrics listener's hub (see [`crate::metrics`]).
    pub fn set_metrics(&mut self, hub: Arc<MetricsHub>) {
        self.metrics = Some(hub);
    }

    /// Runs until a graceful shutdown completes, then calls `service.shutdown()`.
    pub fn run<S: Service>(self, service: &mut S) -> io::Result<()> {
        event_loop::EventLoop::new(self, service)?.run()
    }
}

fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarting a node must not wait for TIME_WAIT connections of its previous run.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A server running on its own thread: what in-process tests and embedders use.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl RunningServer {
    /// Shuts the server down gracefully and waits for its thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.shutdown.shutdown();
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Binds and runs a server on a new thread. `make_service` runs on that thread (services are
/// single-threaded) and receives the server's [`Wakeups`].
pub fn spawn<S, F>(options: ServerOptions, make_service: F) -> io::Result<RunningServer>
where
    S: Service + 'static,
    F: FnOnce(Wakeups) -> S + Send + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("server-{}", options.listen))
        .spawn(move || {
            let server = match Server::bind(options) {
                Ok(server) => server,
                Err(err) => {
                    let message = err.to_string();
                    let _ = ready_tx.send(Err(err));
                    return Err(io::Error::other(message));
                }
            };
            let _ = ready_tx.send(Ok((server.local_addr(), server.shutdown_handle())));
            let mut service = make_service(server.wakeups());
            server.run(&mut service)
        })?;
    let (addr, shutdown) = ready_rx
        .recv()
        .map_err(|_| io::Error::other("server thread ended before binding"))??;
    Ok(RunningServer {
        addr,
        shutdown,
        thread: Some(thread),
    })
}
