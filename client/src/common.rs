//! The requests every node answers (docs/protocol.md §5): GetVersion, GetNumConnections,
//! GetStats. Owns decoding their reply bodies; undecodable bodies are protocol errors that name
//! the request and the field.

use crate::error::ClientError;
use node_core::protocol::wire::{Reader, WireError};
use node_core::protocol::NodeKind;
use std::net::SocketAddr;

/// A node's answer to GetVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub protocol_version: u16,
    pub kind: NodeKind,
    /// The node program's version, e.g. `0.1.0`.
    pub software_version: String,
}

/// Smallest stats entry on the wire: an empty `str8` name and a `u64`.
const MIN_STAT_ENTRY_BYTES: usize = 1 + 8;

fn body_error(node: SocketAddr, request: &str, error: WireError) -> ClientError {
    ClientError::protocol(node, format!("{request} reply: {error}"))
}

pub(crate) fn decode_version(node: SocketAddr, body: &[u8]) -> Result<VersionInfo, ClientError> {
    let fail = |e| body_error(node, "GetVersion", e);
    let mut reader = Reader::new(body);
    let protocol_version = reader.u16("protocol_version").map_err(fail)?;
    let raw_kind = reader.u8("kind").map_err(fail)?;
    let software_version = reader.str8("software_version").map_err(fail)?.to_string();
    reader.finish().map_err(fail)?;
    let kind = NodeKind::from_u8(raw_kind).ok_or_else(|| {
        ClientError::protocol(
            node,
            format!("GetVersion reply: unknown node kind {raw_kind}"),
        )
    })?;
    Ok(VersionInfo {
        protocol_version,
        kind,
        software_version,
    })
}

pub(crate) fn decode_num_connections(node: SocketAddr, body: &[u8]) -> Result<u64, ClientError> {
    let fail = |e| body_error(node, "GetNumConnections", e);
    let mut reader = Reader::new(body);
    let count = reader.u64("connections").map_err(fail)?;
    reader.finish().map_err(fail)?;
    Ok(count)
}

pub(crate) fn decode_stats(
    node: SocketAddr,
    body: &[u8],
) -> Result<Vec<(String, u64)>, ClientError> {
    let fail = |e| body_error(node, "GetStats", e);
    let mut reader = Reader::new(body);
    let count = reader.u32("count").map_err(fail)? as usize;
    // The count comes from the network: allocate for no more entries than the body can hold.
    let mut stats = Vec::with_capacity(count.min(reader.remaining() / MIN_STAT_ENTRY_BYTES));
    for _ in 0..count {
        let name = reader.str8("name").map_err(fail)?.to_string();
        let value = reader.u64("value").map_err(fail)?;
        stats.push((name, value));
    }
    reader.finish().map_err(fail)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_core::protocol::wire::{put_str8, put_u16, put_u32, put_u64, put_u8};

    fn node() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10000))
    }

    #[test]
    fn version_decodes_and_refuses_unknown_kind() {
        let mut body = Vec::new();
        put_u16(&mut body, 1);
        put_u8(&mut body, 3);
        put_str8(&mut body, "0.1.0");
        let info = decode_version(node(), &body).expect("valid");
        assert_eq!(info.kind, NodeKind::Queue);
        assert_eq!(info.software_version, "0.1.0");
        body[2] = 9;
        assert!(decode_version(node(), &body).is_err());
        let error = decode_version(node(), &body[..1])
            .expect_err("short")
            .to_string();
        assert!(
            error.contains("GetVersion reply: field `protocol_version`"),
            "{error}"
        );
    }

    #[test]
    fn stats_decode_and_survive_a_lying_count() {
        let mut body = Vec::new();
        put_u32(&mut body, 2);
        put_str8(&mut body, "requests");
        put_u64(&mut body, 42);
        put_str8(&mut body, "bytes");
        put_u64(&mut body, 7);
        let stats = decode_stats(node(), &body).expect("valid");
        assert_eq!(
            stats,
            [("requests".to_string(), 42), ("bytes".to_string(), 7)]
        );
        body[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_stats(node(), &body).is_err());
    }

    #[test]
    fn num_connections_refuses_trailing_bytes() {
        assert_eq!(
            decode_num_connections(node(), &5u64.to_le_bytes()).expect("valid"),
            5
        );
        assert!(decode_num_connections(node(), &[0; 9]).is_err());
    }
}
