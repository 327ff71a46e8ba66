//! [`ClientOptions`]: timeouts, credentials and limits of a `Client`, with their defaults.

use node_core::auth::Key;
use node_core::protocol::codes::INITIAL_STREAM_CREDIT;
use node_core::protocol::frame::DEFAULT_MAX_FRAME_BYTES;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit on a TCP connect, and on each read or write of the handshake that follows.
    pub connect_timeout_ms: u64,
    /// Limit on a blocking request, from submission to its Reply (and, for a stream, on the
    /// wait for each next event).
    pub request_timeout_ms: u64,
    /// Name and key, used when a node asks for authentication.
    pub credentials: Option<(String, Key)>,
    /// Largest frame body accepted from a node. A node sends at most its own `max_frame_bytes`
    /// (default 16 MiB); the default here adds 1 MiB of slack so a node configured a little
    /// higher still works. Anything larger is a protocol error that closes the connection.
    pub max_frame_bytes: u32,
    /// Largest request body the client sends: a node closes the connection on a frame above
    /// its limit (failing every other request on it), so the client refuses such a request
    /// up front. Default: the node's default limit, 16 MiB.
    pub max_request_bytes: u32,
    /// Requests in flight per connection (default 1024, the node's default `max_in_flight`).
    /// A submit beyond it blocks until a Reply frees a slot, or fails with `TooManyInFlight`
    /// when none frees within `request_timeout_ms`.
    pub max_in_flight: usize,
    /// Items a stream may have on their way to the client (at least the 4 every stream starts
    /// with). Larger windows keep bulk streams moving over long links; each item may be up to
    /// `max_frame_bytes`, so this also bounds what a stream can buffer in the client.
    pub stream_window: u32,
    /// dht only: accept a cluster whose hash ranges leave gaps or overlap (default false:
    /// `DhtClient::connect` refuses it with `ClientError::Topology`). For tools that must work
    /// on a partial cluster; a key no node owns then fails with `ClientError::NoNodeForKey`,
    /// and a key several nodes own goes to the first of them in node order.
    pub allow_incomplete_ranges: bool,
    /// Start even when some nodes cannot be reached (connection refused or timed out, node
    /// shutting down or at its connection limit), as long as one can: those start disconnected
    /// and requests to them reconnect with the usual backoff. Other errors (wrong kind, version,
    /// authentication) still fail `connect`. The logfiles and queue clients, which write to any
    /// one node, always set it; default false.
    pub allow_down_nodes: bool,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout_ms: 2000,
            request_timeout_ms: 10_000,
            credentials: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES + 1024 * 1024,
            max_request_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: 1024,
            stream_window: 16,
            allow_incomplete_ranges: false,
            allow_down_nodes: false,
        }
    }
}

impl ClientOptions {
    /// The stream window actually used: never below the initial credit.
    pub(crate) fn effective_window(&self) -> u32 {
        self.stream_window.max(INITIAL_STREAM_CREDIT)
    }
}
