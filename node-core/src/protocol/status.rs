//! Status codes: the `code` byte of a Reply frame (docs/protocol.md §3).

/// The outcome of a request. `Ok` and `NotFound` carry the request's result in the reply body;
/// every other status carries a human-readable UTF-8 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    WrongNode = 10,
    BadChannelName = 11,
    EmptyValue = 12,
    ValueTooBig = 13,
    OutOfMemory = 14,
    ChannelFull = 15,
    NotPermitted = 16,
    BadRequest = 17,
    UnsupportedRequest = 18,
    UnsupportedVersion = 19,
    InternalError = 20,
    UpdateConflict = 21,
    FrameTooLarge = 22,
    TooManyRequests = 23,
    ShuttingDown = 24,
    Busy = 25,
    /// A write's records (some or all) were stored but are not confirmed durable; see
    /// docs/protocol.md §3.
    NotDurable = 26,
    /// A dht replica is catching up with its replica set and does not answer reads yet; read
    /// from another member of its set (docs/protocol.md §3, §6.13).
    NotReady = 27,
}

/// The longest error message a node puts in a reply body; longer ones are cut.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

impl Status {
    pub const ALL: [Status; 20] = [
        Status::Ok,
        Status::NotFound,
        Status::WrongNode,
        Status::BadChannelName,
        Status::EmptyValue,
        Status::ValueTooBig,
        Status::OutOfMemory,
        Status::ChannelFull,
        Status::NotPermitted,
        Status::BadRequest,
        Status::UnsupportedRequest,
        Status::UnsupportedVersion,
        Status::InternalError,
        Status::UpdateConflict,
        Status::FrameTooLarge,
        Status::TooManyRequests,
        Status::ShuttingDown,
        Status::Busy,
        Status::NotDurable,
        Status::NotReady,
    ];

    pub fn from_u8(code: u8) -> Option<Status> {
        Status::ALL
            .iter()
            .copied()
            .find(|status| *status as u8 == code)
    }

    /// Whether the reply body is a result (true) or an error message (false).
    pub fn is_success(self) -> bool {
        matches!(self, Status::Ok | Status::NotFound)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotFound => "not found",
            Status::WrongNode => "wrong node (key outside this node's range)",
            Status::BadChannelName => "bad channel name",
            Status::EmptyValue => "empty value",
            Status::ValueTooBig => "value too big",
            Status::OutOfMemory => "out of memory (node size limit reached)",
            Status::ChannelFull => "channel full",
            Status::NotPermitted => "not permitted",
            Status::BadRequest => "bad request",
            Status::UnsupportedRequest => "unsupported request",
            Status::UnsupportedVersion => "unsupported version",
            Status::InternalError => "internal error",
            Status::UpdateConflict => "update conflict (record changed since it was read)",
            Status::FrameTooLarge => "frame too large",
            Status::TooManyRequests => "too many requests in flight on this connection",
            Status::ShuttingDown => "node shutting down",
            Status::Busy => "busy (an exclusive operation is already running on the node)",
            Status::NotDurable => "stored but not confirmed durable",
            Status::NotReady => {
                "not ready (this replica is catching up; read from another member of its set)"
            }
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An error a request is answered with: its status, and (its `Display`) the message for people.
/// Engines implement it for their errors, so every handler turns an error into a reply the
/// same way (`node_core::server::replies::error`).
pub trait StatusError: std::fmt::Display {
    fn status(&self) -> Status;
}

/// A body that does not decode is the sender's mistake.
impl StatusError for super::wire::WireError {
    fn status(&self) -> Status {
        Status::BadRequest
    }
}

impl StatusError for super::channels::BadChannelName {
    fn status(&self) -> Status {
        Status::BadChannelName
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_and_unknown_codes_are_refused() {
        for status in Status::ALL {
            assert_eq!(Status::from_u8(status as u8), Some(status));
        }
        let known: Vec<u8> = Status::ALL.iter().map(|s| *s as u8).collect();
        for code in 0..=255u8 {
            assert_eq!(Status::from_u8(code).is_some(), known.contains(&code));
        }
    }
}
