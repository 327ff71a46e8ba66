//! bounded-http: the project's one HTTP listener, behind every daemon's `/metrics` (node-core's
//! `metrics::http`, feature `server`) and `swarmctl dashboard` (client's `dashboard::http`).
//!
//! A caller says what its paths answer ([`Site`]); this crate owns everything else, the same for
//! both listeners: the thread and its one-thread tokio runtime, hyper's HTTP/1.1, the limits, and
//! the checks a request passes before its site sees it.
//!
//! Limits (documented in docs/operations.md, "Metrics" and "Dashboard", and docs/security.md,
//! "The HTTP listeners"):
//! - at most [`MAX_CONNECTIONS`] open at once; one more is closed as soon as it is accepted;
//! - a request head of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] headers (431 beyond), read
//!   within [`HEAD_READ_TIMEOUT`] from the moment the listener waits for it (an idle keep-alive
//!   connection too) however slowly it trickles in; no request body is ever read;
//! - a connection is closed after [`CONNECTION_LIFETIME`] (after the answer in progress, which
//!   gets [`CLOSING_GRACE`]; a client opens another);
//! - two threads whatever the clients do: the one reading and writing every connection, and one
//!   computing answers one after the other (a site may block: a scrape waits for the event loop).
//!
//! Checks, in this order: on a loopback address the `Host` header must name the listener (its
//! address, or `localhost`, `127.0.0.1`, `[::1]` with its port), else 421, so that a web page
//! elsewhere cannot read it through DNS rebinding; with a bearer token, `Authorization: Bearer
//! <token>` (compared in constant time), else 401; `GET` or `HEAD`, else 405. The site answers
//! the rest (its 404s included).
//!
//! # Why a crate of its own
//!
//! Two crates need it: node-core, for the daemons, and the client crate, for swarmctl. Inside
//! node-core it would be a third feature unrelated to the swarm protocol, that the client library
//! would turn on beside the protocol; as a crate of its own it depends on no other crate of the
//! workspace, node-core's `server` feature pulls it in for the daemons, and the client gets no
//! server parts. hyper rather than `tiny_http` because hyper bounds what a client may send (head
//! bytes, header count, the time to send a head) and serves every connection from one thread.

mod access;
mod answer;
mod serve;

pub use answer::Answer;
pub use hyper::body::Bytes;
pub use hyper::{header, StatusCode};

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// Connections open at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// hyper's smallest read buffer: a request head must fit in it.
pub const MAX_HEAD_BYTES: usize = 8192;
pub const MAX_HEADERS: usize = 32;
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long the answer in progress may take once a connection's lifetime is over.
pub const CLOSING_GRACE: Duration = Duration::from_secs(10);

/// What a listener serves: the answer to a `GET` or `HEAD` of `path` (without its query) that
/// passed the checks. Called on the listener's answering thread, one request at a time, so it
/// may block; while it does, other requests wait for their answers (not for their heads).
pub trait Site: Send + Sync + 'static {
    fn answer(&self, path: &str) -> Answer;
}

/// How a listener is started.
pub struct Options {
    /// The serving thread's name (`metrics-http`, `dashboard-http`).
    pub thread_name: String,
    /// When set, every request must send `Authorization: Bearer <token>` (401 otherwise).
    pub bearer_token: Option<String>,
    /// Told of a failed accept (out of descriptors, say), which is retried after a pause.
    pub on_accept_error: fn(&std::io::Error),
}

/// A running listener; dropping it stops it (connections are closed, the thread joined).
pub struct HttpListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl HttpListener {
    /// Serves `listener` (bound by the caller, which decides where it may listen) on a thread of
    /// its own.
    pub fn start(
        listener: std::net::TcpListener,
        site: Arc<dyn Site>,
        options: Options,
    ) -> std::io::Result<HttpListener> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = serve::runtime()?;
        let shared = serve::Shared {
            site,
            access: access::Access::new(addr, options.bearer_token.as_deref()),
            on_accept_error: options.on_accept_error,
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(options.thread_name)
            .spawn(move || serve::run(runtime, listener, shared, stopped))?;
        Ok(HttpListener {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Blocks while the listener serves (until it fails: it does not stop by itself).
    pub fn wait(mut self) -> std::io::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the HTTP listener's thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
