//! [`ClientOptions`]: timeouts, credentials, TLS and limits of a `Client`, with their defaults.

use crate::error::ClientError;
use crate::replication::{ReadFrom, WriteQuorum};
use crate::tls::ClientTls;
use node_core::auth::Key;
use node_core::protocol::codes::INITIAL_STREAM_CREDIT;
use node_core::protocol::frame::DEFAULT_MAX_FRAME_BYTES;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Limit on a TCP connect, and on each read or write of the handshake that follows; also
    /// the wait for the liveness probe (a GetVersion) sent after a request timed out: no
    /// answer within it counts the node down (`crate::probe`).
    pub connect_timeout_ms: u64,
    /// Limit on a blocking request, from submission to its Reply (and, for a stream, on the
    /// wait for each next event).
    pub request_timeout_ms: u64,
    /// One bound on the client's requests together, counted from the end of `connect` (its
    /// connections and handshakes); 0 (the default): none. No request waits past it (each
    /// waits `request_timeout_ms`, or less when that would take it past), and a request made
    /// after it fails at once with `ClientError::Timeout`, unsent. For one-shot tools (swarmctl's
    /// `--timeout-ms`): a dht client's range lookup at connect and the command's request then
    /// share one wait, instead of each waiting in turn. It changes nothing of how a client
    /// starts: nodes that do not answer in time count as down, as with `request_timeout_ms`.
    pub total_timeout_ms: u64,
    /// Name and key, used when a node asks for authentication.
    pub credentials: Option<(String, Key)>,
    /// `Some`: connect over TLS and verify each node's certificate ([`crate::tls`]). Default
    /// none: in clear.
    pub tls: Option<ClientTls>,
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
    /// Start even when nodes cannot be reached (connection refused or timed out, node shutting
    /// down or at its connection limit), even all of them: those start down (requests to them
    /// fail at once with `ClientError::NodeDown`) and are reconnected in the background. Other
    /// errors (wrong kind, version, authentication) still fail `connect`. The dht, logfiles and
    /// queue clients always set it: a cluster serves with nodes down. Default false (a plain
    /// `Client::connect` fails with the first node's error).
    pub allow_down_nodes: bool,
    /// How often a cluster client opened from a topology file (`open_topology`) looks whether
    /// the file changed, in milliseconds; 0: never (only `reload_topology` reads it again).
    /// Default 1000.
    pub topology_watch_ms: u64,
    /// dht only: how many members of a key's replica set must store a write (Put, Remove,
    /// PutBatch, RemoveChannel, Update) before it is acknowledged. `None`: the topology's
    /// `write_quorum`, else every live member, at least one ([`WriteQuorum::AllLive`]).
    pub write_quorum: Option<WriteQuorum>,
    /// dht only: which live member of a key's replica set reads go to first. `None`: the
    /// topology's `read_from`, else the first live member ([`ReadFrom::First`]).
    pub read_from: Option<ReadFrom>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout_ms: 2000,
            request_timeout_ms: 10_000,
            total_timeout_ms: 0,
            credentials: None,
            tls: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES + 1024 * 1024,
            max_request_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: 1024,
            stream_window: 16,
            allow_incomplete_ranges: false,
            allow_down_nodes: false,
            topology_watch_ms: 1000,
            write_quorum: None,
            read_from: None,
        }
    }
}

/// Bytes a Put request spends besides its value: the channel name's length byte and the key.
const PUT_OVERHEAD_BYTES: usize = 1 + 8;

impl ClientOptions {
    /// The largest value one request can carry to `channel` (a dht or logfiles Put, a queue
    /// Push): `max_request_bytes` less the request's other fields. A larger value fails with
    /// `ClientError::ValueTooBig` before anything is sent; nodes may accept less (their
    /// `max_value_bytes`, default 1 MiB, answered with the ValueTooBig status).
    pub fn max_value_bytes(&self, channel: &str) -> usize {
        (self.max_request_bytes as usize).saturating_sub(PUT_OVERHEAD_BYTES + channel.len())
    }

    /// `Err(ClientError::ValueTooBig)` for a value larger than [`ClientOptions::max_value_bytes`].
    pub(crate) fn check_value(&self, channel: &str, len: usize) -> Result<(), ClientError> {
        let max = self.max_value_bytes(channel);
        if len > max {
            return Err(ClientError::ValueTooBig { len, max });
        }
        Ok(())
    }

    /// The stream window actually used: never below the initial credit.
    pub(crate) fn effective_window(&self) -> u32 {
        self.stream_window.max(INITIAL_STREAM_CREDIT)
    }
}
