//! The requests every node answers, whatever its kind (docs/protocol.md §5): GetVersion,
//! GetNumConnections and GetStats.

use super::service::{Reply, Service};
use crate::protocol::wire::{put_str8, put_u16, put_u32, put_u64, put_u8};
use crate::protocol::{RequestCode, Status, PROTOCOL_VERSION};

/// Writes the reply to a common request and returns its status. None takes a body: one that
/// comes with a body gets BadRequest (the sender and the node disagree on the request).
pub(crate) fn answer<S: Service + ?Sized>(
    code: RequestCode,
    body_len: usize,
    service: &S,
    connections_open: u64,
    stats: &[(String, u64)],
    reply: &mut Reply<'_>,
) -> Status {
    if let Some(name) = code.common_name().filter(|_| body_len > 0) {
        reply.error(
            Status::BadRequest,
            format!("{name} takes no body; {body_len} bytes came"),
        );
        return Status::BadRequest;
    }
    match code {
        RequestCode::GET_VERSION => reply.send_with(Status::Ok, |out| {
            put_u16(out, PROTOCOL_VERSION);
            put_u8(out, service.kind() as u8);
            put_str8(out, service.software_version());
        }),
        RequestCode::GET_NUM_CONNECTIONS => {
            reply.send_with(Status::Ok, |out| put_u64(out, connections_open))
        }
        RequestCode::GET_STATS => reply.send_with(Status::Ok, |out| {
            put_u32(out, stats.len() as u32);
            for (name, value) in stats {
                put_str8(out, name);
                put_u64(out, *value);
            }
        }),
        _ => reply.error(
            Status::UnsupportedRequest,
            format!(
                "request code {} is reserved for requests every node answers, and unknown",
                code.0
            ),
        ),
    }
    reply.status().unwrap_or(Status::InternalError)
}
