//! Request codes (the `code` byte of a Request frame) and control codes (of a Control frame).
//!
//! Codes 1–15 are answered by every node; 16–47 belong to dht, 48–79 to logfiles, 80–111 to
//! queue (docs/protocol.md §5). Node-specific codes are added here as each node is built, so the
//! client and the nodes share one table.

/// A request code. Kept as a newtype over `u8` rather than an enum because a node must be able to
/// receive codes it does not know and answer them with `UnsupportedRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestCode(pub u8);

impl RequestCode {
    pub const GET_VERSION: RequestCode = RequestCode(1);
    pub const GET_NUM_CONNECTIONS: RequestCode = RequestCode(2);
    pub const GET_STATS: RequestCode = RequestCode(3);

    /// Whether every node kind answers this code (the server core handles these itself).
    pub fn is_common(self) -> bool {
        (1..16).contains(&self.0)
    }

    /// The name of a common request, used in logs and stats.
    pub fn common_name(self) -> Option<&'static str> {
        match self {
            RequestCode::GET_VERSION => Some("GetVersion"),
            RequestCode::GET_NUM_CONNECTIONS => Some("GetNumConnections"),
            RequestCode::GET_STATS => Some("GetStats"),
            _ => None,
        }
    }
}

/// A control code: flow control of a running stream (docs/protocol.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCode {
    /// Body `u32 n`: the client can take `n` more Items.
    Credit = 1,
    /// Empty body: end the stream now.
    Stop = 2,
}

impl ControlCode {
    pub fn from_u8(code: u8) -> Option<ControlCode> {
        match code {
            1 => Some(ControlCode::Credit),
            2 => Some(ControlCode::Stop),
            _ => None,
        }
    }
}

/// Items of credit a stream starts with, before the client grants any.
pub const INITIAL_STREAM_CREDIT: u32 = 4;
/// The most credit a stream can hold; grants beyond it are capped.
pub const MAX_STREAM_CREDIT: u32 = 1 << 20;
