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

#[cfg(test)]
mod tests {
    use super::dht::DhtRequest;
    use super::logfiles::LogfilesRequest;
    use super::queue::QueueRequest;
    use super::RequestCode;

    /// Checks one kind's table: every code in the kind's block (docs/protocol.md §5), decoded
    /// back to its request, listed once in code order; every other code of the block unknown.
    fn check_table(
        block: std::ops::RangeInclusive<u8>,
        codes: &[(RequestCode, &'static str)],
        from_code: impl Fn(RequestCode) -> Option<&'static str>,
    ) {
        for pair in codes.windows(2) {
            assert!(pair[0].0 < pair[1].0, "ALL is in code order: {pair:?}");
        }
        for code in block.clone() {
            let listed = codes.iter().find(|(listed, _)| listed.0 == code);
            assert_eq!(from_code(RequestCode(code)), listed.map(|(_, name)| *name));
        }
        for (code, name) in codes {
            assert!(
                block.contains(&code.0),
                "{name} = {} outside {block:?}",
                code.0
            );
            assert!(name.chars().next().is_some_and(|c| c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn each_kind_has_one_table_of_codes_in_its_own_block() {
        let dht: Vec<_> = DhtRequest::ALL
            .iter()
            .map(|r| (r.code(), r.name()))
            .collect();
        check_table(16..=47, &dht, |code| {
            DhtRequest::from_code(code).map(DhtRequest::name)
        });
        let logfiles: Vec<_> = LogfilesRequest::ALL
            .iter()
            .map(|r| (r.code(), r.name()))
            .collect();
        check_table(48..=79, &logfiles, |code| {
            LogfilesRequest::from_code(code).map(LogfilesRequest::name)
        });
        let queue: Vec<_> = QueueRequest::ALL
            .iter()
            .map(|r| (r.code(), r.name()))
            .collect();
        check_table(80..=111, &queue, |code| {
            QueueRequest::from_code(code).map(QueueRequest::name)
        });
        // The wire codes are the protocol's (docs/protocol.md §6-§8): a few fixed points.
        assert_eq!(super::dht::PUT, RequestCode(16));
        assert_eq!(super::dht::GET_REDISTRIBUTION, RequestCode(32));
        assert_eq!(super::logfiles::REMOVE_CHANNEL, RequestCode(55));
        assert_eq!(super::queue::SUBSCRIBE, RequestCode(90));
        assert_eq!(super::dht::MIRROR, RequestCode(36));
        assert_eq!(super::dht::SET_READY, RequestCode(37));
        assert_eq!(DhtRequest::ALL.len(), 24);
        assert_eq!(LogfilesRequest::ALL.len(), 8);
        assert_eq!(QueueRequest::ALL.len(), 11);
    }

    #[test]
    fn request_rules_are_the_documented_ones() {
        let admin: Vec<_> = DhtRequest::ALL.iter().filter(|r| r.admin_only()).collect();
        assert_eq!(
            admin,
            [
                &DhtRequest::RemoveChannel,
                &DhtRequest::Redistribute,
                &DhtRequest::RedistBatch,
                &DhtRequest::RedistCommit,
                &DhtRequest::SetReady,
                &DhtRequest::RedistBatchVersion
            ]
        );
        let streams: Vec<_> = DhtRequest::ALL
            .iter()
            .filter(|r| r.opens_stream())
            .collect();
        assert_eq!(
            streams,
            [
                &DhtRequest::GetAll,
                &DhtRequest::Listen,
                &DhtRequest::Redistribute,
                &DhtRequest::Mirror
            ]
        );
        assert!(LogfilesRequest::ALL
            .iter()
            .all(|r| r.admin_only() == (*r == LogfilesRequest::RemoveChannel)));
        assert!(LogfilesRequest::ALL.iter().all(|r| r.opens_stream()
            == matches!(r, LogfilesRequest::GetRange | LogfilesRequest::GetAll)));
        for request in QueueRequest::ALL {
            assert_eq!(
                request.admin_only(),
                *request == QueueRequest::RemoveChannel
            );
            assert_eq!(request.opens_stream(), *request == QueueRequest::Consume);
            assert_eq!(
                request.acts_on_running_stream(),
                *request == QueueRequest::ConsumeAck
            );
        }
    }
}
