//! The dht requests, one module each: its decoding, its checks and its execution. [`dispatch`]
//! routes a request by code; the helpers here turn decoding and engine errors into replies.

mod exists;
mod get;
mod get_all;
mod get_channel_size;
mod get_channels;
mod get_redistribution;
mod get_responsible_range;
mod get_size;
mod listen;
mod put;
mod put_batch;
mod redist_batch;
mod redist_commit;
mod redistribute;
mod remove;
mod remove_channel;
mod update;

use crate::engine::EngineError;
use crate::service::DhtNode;
use node_core::protocol::wire::WireError;
use node_core::protocol::{dht, Status};
use node_core::server::{Handled, Reply, Request};

pub(crate) fn dispatch(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    match request.code {
        dht::PUT => put::handle(node, request, reply),
        dht::GET => get::handle(node, request, reply),
        dht::EXISTS => exists::handle(node, request, reply),
        dht::REMOVE => remove::handle(node, request, reply),
        dht::GET_ALL => get_all::handle(node, request, reply),
        dht::GET_CHANNELS => get_channels::handle(node, request, reply),
        dht::GET_CHANNEL_SIZE => get_channel_size::handle(node, request, reply),
        dht::GET_SIZE => get_size::handle(node, request, reply),
        dht::REMOVE_CHANNEL => remove_channel::handle(node, request, reply),
        dht::GET_RESPONSIBLE_RANGE => get_responsible_range::handle(node, request, reply),
        dht::PUT_BATCH => put_batch::handle(node, request, reply),
        dht::LISTEN => listen::handle(node, request, reply),
        dht::UPDATE => update::handle(node, request, reply),
        dht::REDISTRIBUTE => redistribute::handle(node, request, reply),
        dht::REDIST_BATCH => redist_batch::handle(node, request, reply),
        dht::REDIST_COMMIT => redist_commit::handle(node, request, reply),
        dht::GET_REDISTRIBUTION => get_redistribution::handle(node, request, reply),
        // request_name() lists exactly the codes above, so the core never passes another.
        code => {
            reply.error(
                Status::UnsupportedRequest,
                format!("request code {} is not a dht request", code.0),
            );
            Handled::Replied
        }
    }
}

/// Replies BadRequest naming the field that did not decode.
fn bad_request(reply: &mut Reply<'_>, error: WireError) -> Handled<DhtNode> {
    reply.error(Status::BadRequest, error);
    Handled::Replied
}

/// Replies the status of an engine error, with its message.
fn engine_error(reply: &mut Reply<'_>, error: EngineError) -> Handled<DhtNode> {
    reply.error(error.status(), error);
    Handled::Replied
}

/// Replies Ok with an empty body, or the error.
fn done(reply: &mut Reply<'_>, result: Result<(), EngineError>) -> Handled<DhtNode> {
    match result {
        Ok(()) => reply.ok(&[]),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
