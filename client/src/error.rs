//! [`ClientError`]: every way a request through the client can fail.
//!
//! Owns the error type and its messages. Every message that concerns a node starts with
//! `node HOST:PORT:` and then says why, so an operator reading one line of output knows where to
//! look. Handshake refusals (wrong kind, wrong version, authentication) are distinct variants so
//! callers and tests can match on them rather than on text.
//!
//! The type is `Clone` because one failure often answers many requests at once (a dropped
//! connection fails everything in flight on it; a failed connect is reported again to every
//! request made during the backoff that follows).

use node_core::protocol::{NodeKind, Status, PROTOCOL_VERSION};
use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;

impl ClientError {
    /// Whether the node could not answer because it is down, unreachable, stopping, busy or
    /// too slow for now (retrying later may work), rather than because it is the wrong node,
    /// refuses us, or refused the request itself. A fan-out leaves such a node out of a partial
    /// result ([`crate::Partial`]); [`ClientError::NodeDown`] is the error of a node already
    /// known to be down.
    /// Whether the node answered NotReady: a dht replica catching up with its replica set
    /// (docs/protocol.md §6.13), which a read fails over from as from a member that is down;
    /// writes still go to it.
    pub fn is_not_ready(&self) -> bool {
        matches!(
            self,
            ClientError::Status {
                status: Status::NotReady,
                ..
            }
        )
    }

    pub fn is_node_down(&self) -> bool {
        matches!(
            self,
            ClientError::NodeDown { .. }
                | ClientError::OwnerDown { .. }
                | ClientError::Connect { .. }
                | ClientError::Timeout { .. }
                | ClientError::ConnectionLimit { .. }
                | ClientError::ShuttingDown { .. }
                | ClientError::Disconnected { .. }
                | ClientError::Status {
                    status: Status::ShuttingDown,
                    ..
                }
        )
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection (or the handshake's I/O) failed: refused, unreachable, timed out.
    #[error("node {node}: {reason}")]
    Connect {
        node: SocketAddr,
        kind: io::ErrorKind,
        reason: String,
    },
    /// TLS failed: the node's certificate was refused (unknown CA, wrong name, expired), the
    /// node refused ours, or the peer does not speak TLS. Not a node being down: retrying does
    /// not help until the certificates or settings change.
    #[error("node {node}: TLS: {reason}")]
    Tls { node: SocketAddr, reason: String },
    #[error("node {node}: not a swarm node (bad magic {})", show_magic(.magic))]
    NotSwarmNode { node: SocketAddr, magic: [u8; 4] },
    #[error(
        "node {node}: unsupported protocol version {version} (client speaks {PROTOCOL_VERSION})"
    )]
    UnsupportedVersion { node: SocketAddr, version: u16 },
    #[error("node {node}: is a {actual} node, expected {expected}")]
    WrongKind {
        node: SocketAddr,
        actual: NodeKind,
        expected: NodeKind,
    },
    #[error("node {node}: authentication failed")]
    AuthFailed { node: SocketAddr },
    #[error("node {node}: requires authentication but no credentials were given")]
    AuthRequired { node: SocketAddr },
    #[error("node {node}: connection limit reached")]
    ConnectionLimit { node: SocketAddr },
    #[error("node {node}: shutting down")]
    ShuttingDown { node: SocketAddr },
    #[error("node {node}: request timed out after {ms} ms")]
    Timeout { node: SocketAddr, ms: u64 },
    /// The connection dropped while the request was in flight (or before it was sent).
    #[error("node {node}: disconnected")]
    Disconnected { node: SocketAddr },
    /// The node answered with a status other than Ok/NotFound; `message` is the reply body.
    #[error("node {node}: {}", status_text(.status, .message))]
    Status {
        node: SocketAddr,
        status: Status,
        message: String,
    },
    /// The node broke the wire contract (bad frame, undecodable reply body, ...).
    #[error("node {node}: protocol error: {reason}")]
    Protocol { node: SocketAddr, reason: String },
    #[error("node {node}: {limit} requests already in flight; no slot freed within {ms} ms")]
    TooManyInFlight {
        node: SocketAddr,
        limit: usize,
        ms: u64,
    },
    #[error("node {node}: request body of {len} bytes exceeds the frame limit of {max} bytes")]
    RequestTooLarge {
        node: SocketAddr,
        len: usize,
        max: u32,
    },
    /// The `Client` was dropped (its I/O thread stopped) while this request was outstanding.
    #[error("node {node}: client shut down")]
    Closed { node: SocketAddr },
    /// The node is known to be down: its last connect failed for `reason` (its connection
    /// dropped and it could not be reached again, or it was never reachable), and it has been
    /// down since `since`. Requests to it fail at once with this error, without a connect
    /// attempt, while the client reconnects in the background (50 ms, then doubling up to 4 s
    /// between tries); once it is back, requests go to it again.
    #[error("node {node}: down: {reason}")]
    NodeDown {
        node: SocketAddr,
        reason: String,
        since: SystemTime,
    },
    /// The node was removed from the client's nodes (a topology change); its index stays
    /// retired for the life of the client.
    #[error("node {node}: removed from the client's topology")]
    NodeRetired { node: SocketAddr },
    /// No live dht node owns the key, and the nodes that are down include some whose range the
    /// client never learned (not stated in the topology, never seen by this process): one of
    /// them owns it.
    #[error(
        "no live node owns key 0x{key:016x} (hash position 0x{position:016x}); it belongs to \
         one of the dht nodes that are down and whose range this client never learned: {}",
        show_addrs(.candidates)
    )]
    OwnerDown {
        key: u64,
        position: u64,
        candidates: Vec<SocketAddr>,
    },
    /// A value larger than any request can carry (the request limit `max_request_bytes` less
    /// the request's other fields), refused before anything is sent. Nodes may allow less
    /// (their `max_value_bytes`); they answer such values with the ValueTooBig status.
    #[error("value of {len} bytes exceeds the value limit of {max} bytes")]
    ValueTooBig { len: usize, max: usize },
    #[error("no node with index {index}: the client has {count} nodes")]
    NoSuchNode { index: usize, count: usize },
    #[error("no nodes given")]
    NoNodes,
    /// Bad client options, or the client could not set up its I/O thread.
    #[error("{0}")]
    Setup(String),
    /// The dht nodes' hash ranges do not tile the hash space (gaps or overlaps); the message
    /// lists each problem with the nodes concerned.
    #[error("{0}")]
    Topology(String),
    /// No node of the client's dht cluster owns the key (a cluster with gaps, accepted with
    /// `allow_incomplete_ranges`).
    #[error("no node owns key 0x{key:016x} (hash position 0x{position:016x})")]
    NoNodeForKey { key: u64, position: u64 },
    /// The node the client routed a key to says it does not own it, and kept saying so while
    /// the client re-read the cluster's ranges and retried, until the request timeout.
    #[error("node {node}: does not own key 0x{key:016x} (the client re-read the cluster's ranges and retried until the request timeout): {message}")]
    WrongNode {
        node: SocketAddr,
        key: u64,
        message: String,
    },
    /// Too few members of a dht replica set stored a write (or were live to take it) for the
    /// client's `write_quorum`. `stored` members did store it: the write may be on those, and
    /// is not acknowledged; writing it again is harmless.
    #[error(
        "replica set {range} ({}): the write needs {required} member(s) to store it \
         (write_quorum) but {live} of {} are live{}",
        show_addrs(.members),
        .members.len(),
        show_stored(*.stored)
    )]
    QuorumNotMet {
        /// The set's range, as `0x…:0x…`.
        range: String,
        members: Vec<SocketAddr>,
        live: usize,
        required: usize,
        /// `None`: refused before anything was sent.
        stored: Option<usize>,
    },
    /// An update kept meeting concurrent writers.
    #[error("node {node}: update of key 0x{key:016x} in channel '{channel}' conflicted with other writers {tries} times in a row; gave up")]
    UpdateConflict {
        node: SocketAddr,
        channel: String,
        key: u64,
        tries: u32,
    },
}

impl ClientError {
    /// The node the error concerns, when it concerns one.
    pub fn node(&self) -> Option<SocketAddr> {
        use ClientError::*;
        match self {
            Connect { node, .. }
            | Tls { node, .. }
            | NotSwarmNode { node, .. }
            | UnsupportedVersion { node, .. }
            | WrongKind { node, .. }
            | AuthFailed { node }
            | AuthRequired { node }
            | ConnectionLimit { node }
            | ShuttingDown { node }
            | Timeout { node, .. }
            | Disconnected { node }
            | Status { node, .. }
            | Protocol { node, .. }
            | TooManyInFlight { node, .. }
            | RequestTooLarge { node, .. }
            | Closed { node }
            | WrongNode { node, .. }
            | UpdateConflict { node, .. }
            | NodeDown { node, .. }
            | NodeRetired { node } => Some(*node),
            NoSuchNode { .. }
            | NoNodes
            | Setup(_)
            | Topology(_)
            | NoNodeForKey { .. }
            | OwnerDown { .. }
            | QuorumNotMet { .. }
            | ValueTooBig { .. } => None,
        }
    }

    /// The message without its leading `node HOST:PORT: `: what went wrong, for a line that
    /// names the node already.
    pub fn reason(&self) -> String {
        let text = self.to_string();
        match self.node() {
            Some(node) => text
                .strip_prefix(&format!("node {node}: "))
                .map_or_else(|| text.clone(), str::to_string),
            None => text,
        }
    }

    /// A `Connect` error from an I/O error, with the OS's wording made readable
    /// ("connection refused" rather than "Connection refused (os error 111)").
    pub(crate) fn from_io(node: SocketAddr, error: &io::Error) -> ClientError {
        ClientError::Connect {
            node,
            kind: error.kind(),
            reason: io_reason(error),
        }
    }

    pub(crate) fn protocol(node: SocketAddr, reason: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            node,
            reason: reason.into(),
        }
    }
}

/// Short lower-case wording for the common connect failures; the OS text for the rest.
fn io_reason(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::HostUnreachable => "host unreachable".into(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        io::ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => error.to_string(),
    }
}

fn show_addrs(addrs: &[SocketAddr]) -> String {
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    shown.join(", ")
}

fn show_stored(stored: Option<usize>) -> String {
    match stored {
        None => "; nothing was sent".to_string(),
        Some(stored) => format!(", and {stored} stored it (it may be there, unacknowledged)"),
    }
}

fn status_text(status: &Status, message: &str) -> String {
    if message.is_empty() {
        status.name().to_string()
    } else {
        format!("{}: {message}", status.name())
    }
}

/// Shows the four bytes as hex and, where printable, as text: `48 54 54 50 "HTTP"`.
fn show_magic(magic: &[u8; 4]) -> String {
    let hex: Vec<String> = magic.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = magic
        .iter()
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    format!("{} \"{text}\"", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10000))
    }

    #[test]
    fn messages_name_the_node_and_the_reason() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ClientError::from_io(addr(), &refused).to_string(),
            "node 127.0.0.1:10000: connection refused"
        );
        let magic = ClientError::NotSwarmNode {
            node: addr(),
            magic: *b"HTTP",
        };
        assert_eq!(
            magic.to_string(),
            "node 127.0.0.1:10000: not a swarm node (bad magic 48 54 54 50 \"HTTP\")"
        );
        let version = ClientError::UnsupportedVersion {
            node: addr(),
            version: 2,
        };
        assert_eq!(
            version.to_string(),
            "node 127.0.0.1:10000: unsupported protocol version 2 (client speaks 1)"
        );
        let kind = ClientError::WrongKind {
            node: addr(),
            actual: NodeKind::Queue,
            expected: NodeKind::Dht,
        };
        assert_eq!(
            kind.to_string(),
            "node 127.0.0.1:10000: is a queue node, expected dht"
        );
        let status = ClientError::Status {
            node: addr(),
            status: Status::ValueTooBig,
            message: "value of 20 bytes exceeds 10".into(),
        };
        assert_eq!(
            status.to_string(),
            "node 127.0.0.1:10000: value too big: value of 20 bytes exceeds 10"
        );
        assert_eq!(status.node(), Some(addr()));
        assert_eq!(
            status.reason(),
            "value too big: value of 20 bytes exceeds 10"
        );
        let down = ClientError::NodeDown {
            node: addr(),
            reason: "connection refused".into(),
            since: SystemTime::now(),
        };
        assert_eq!(
            down.to_string(),
            "node 127.0.0.1:10000: down: connection refused"
        );
        assert!(down.is_node_down());
        assert!(!ClientError::NodeRetired { node: addr() }.is_node_down());
        assert_eq!(
            ClientError::ValueTooBig { len: 20, max: 10 }.to_string(),
            "value of 20 bytes exceeds the value limit of 10 bytes"
        );
    }

    #[test]
    fn a_quorum_not_met_names_the_set_its_members_and_how_many_are_live() {
        let quorum = ClientError::QuorumNotMet {
            range: "0x0000000000000000:0x7fffffffffffffff".into(),
            members: vec![addr(), SocketAddr::from(([127, 0, 0, 1], 10001))],
            live: 1,
            required: 2,
            stored: None,
        };
        assert_eq!(
            quorum.to_string(),
            "replica set 0x0000000000000000:0x7fffffffffffffff (127.0.0.1:10000, \
             127.0.0.1:10001): the write needs 2 member(s) to store it (write_quorum) but 1 of \
             2 are live; nothing was sent"
        );
    }
}
