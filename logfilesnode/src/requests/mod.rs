//! The logfiles requests, one module each: its decoding, its checks and its execution.
//! [`dispatch`] routes a request by code; the helpers here turn decoding and engine errors into
//! replies. GetRange and GetAll share the scan stream of [`read`].

mod get_all;
mod get_channel_size;
mod get_channels;
mod get_range;
mod get_size;
mod put;
mod put_batch;
mod read;
mod remove_channel;

use crate::engine::EngineError;
use crate::service::LogfilesNode;
use node_core::protocol::wire::WireError;
use node_core::protocol::{logfiles, Status};
use node_core::server::{Handled, Reply, Request};

pub(crate) fn dispatch(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    match request.code {
        logfiles::PUT => put::handle(node, request, reply),
        logfiles::PUT_BATCH => put_batch::handle(node, request, reply),
        logfiles::GET_RANGE => get_range::handle(node, request, reply),
        logfiles::GET_ALL => get_all::handle(node, request, reply),
        logfiles::GET_CHANNELS => get_channels::handle(node, request, reply),
        logfiles::GET_CHANNEL_SIZE => get_channel_size::handle(node, request, reply),
        logfiles::GET_SIZE => get_size::handle(node, request, reply),
        logfiles::REMOVE_CHANNEL => remove_channel::handle(node, request, reply),
        // request_name() lists exactly the codes above, so the core never passes another.
        code => {
            reply.error(
                Status::UnsupportedRequest,
                format!("request code {} is not a logfiles request", code.0),
            );
            Handled::Replied
        }
    }
}

/// Replies BadRequest naming the field that did not decode.
fn bad_request(reply: &mut Reply<'_>, error: WireError) -> Handled<LogfilesNode> {
    reply.error(Status::BadRequest, error);
    Handled::Replied
}

/// Replies the status of an engine error, with its message.
fn engine_error(reply: &mut Reply<'_>, error: EngineError) -> Handled<LogfilesNode> {
    reply.error(error.status(), error);
    Handled::Replied
}

/// Replies BadChannelName unless `channel` is a valid name.
fn check_channel_name(channel: &str, reply: &mut Reply<'_>) -> Result<(), Handled<LogfilesNode>> {
    if crate::valid_channel_name(channel) {
        return Ok(());
    }
    Err(engine_error(
        reply,
        EngineError::BadChannelName(channel.to_string()),
    ))
}
