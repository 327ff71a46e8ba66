//! The swarm wire protocol, version 1 (specified in `docs/protocol.md`).
//!
//! This module owns every byte that crosses a socket: the handshake ([`handshake`]), the frame
//! header ([`frame`]), status codes ([`status`]), request and control codes ([`codes`]), the
//! field codec used inside frame bodies ([`wire`]) and LZ4 record batches ([`batch`]). It does no
//! I/O and knows nothing of sockets or storage, so the client and every node share it.

pub mod batch;
pub mod channels;
pub mod codes;
pub mod dht;
pub mod frame;
pub mod handshake;
pub mod logfiles;
pub mod queue;
pub mod status;
pub mod wire;

pub use codes::{ControlCode, RequestCode};
pub use frame::{FrameHeader, FrameType, HEADER_LEN};
pub use status::Status;

/// The protocol version this code speaks. A node and a client must agree on it exactly.
pub const PROTOCOL_VERSION: u16 = 1;

/// The kind of node at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Dht = 1,
    Logfiles = 2,
    Queue = 3,
}

impl NodeKind {
    pub fn from_u8(value: u8) -> Option<NodeKind> {
        match value {
            1 => Some(NodeKind::Dht),
            2 => Some(NodeKind::Logfiles),
            3 => Some(NodeKind::Queue),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Dht => "dht",
            NodeKind::Logfiles => "logfiles",
            NodeKind::Queue => "queue",
        }
    }
}

impl std::fmt::Display for NodeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
