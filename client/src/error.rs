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

impl ClientError {
    /// Whether this connect failure means the node is down or busy for now (retrying later may
    /// work), rather than that it is the wrong node or refuses us.
    pub fn is_node_down(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Timeout { .. }
                | ClientError::ConnectionLimit { .. }
                | ClientError::ShuttingDown { .. }
                | ClientError::Disconnected { .. }
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
            | UpdateConflict { node, .. } => Some(*node),
            NoSuchNode { .. } | NoNodes | Setup(_) | Topology(_) | NoNodeForKey { .. } => None,
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
    }
}
