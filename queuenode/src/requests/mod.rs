//! The queue requests, one module each: its decoding, its checks and its execution. [`dispatch`]
//! routes a request by code; the helpers here turn decoding and engine errors into replies.

mod consume;
mod consume_ack;
mod get_channel_size;
mod get_channels;
mod get_size;
mod pop;
mod produce;
mod push;
mod push_multi;
mod remove_channel;
mod subscribe;

use crate::engine::QueueError;
use crate::service::QueueNode;
use node_core::protocol::wire::WireError;
use node_core::protocol::{queue, Status};
use node_core::server::{Handled, Reply, Request};

pub(crate) fn dispatch(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    match request.code {
        queue::PUSH => push::handle(node, request, reply),
        queue::POP => pop::handle(node, request, reply),
        queue::GET_CHANNELS => get_channels::handle(node, request, reply),
        queue::GET_CHANNEL_SIZE => get_channel_size::handle(node, request, reply),
        queue::GET_SIZE => get_size::handle(node, request, reply),
        queue::REMOVE_CHANNEL => remove_channel::handle(node, request, reply),
        queue::PUSH_MULTI => push_multi::handle(node, request, reply),
        queue::PRODUCE => produce::handle(node, request, reply),
        queue::CONSUME => consume::handle(node, request, reply),
        queue::CONSUME_ACK => consume_ack::handle(node, request, reply),
        queue::SUBSCRIBE => subscribe::handle(node, request, reply),
        // request_name() lists exactly the codes above, so the core never passes another.
        code => {
            reply.error(
                Status::UnsupportedRequest,
                format!("request code {} is not a queue request", code.0),
            );
            Handled::Replied
        }
    }
}

/// Replies BadRequest naming the field that did not decode.
fn bad_request(reply: &mut Reply<'_>, error: WireError) -> Handled<QueueNode> {
    reply.error(Status::BadRequest, error);
    Handled::Replied
}

/// Replies the status of an engine error, with its message.
fn engine_error(reply: &mut Reply<'_>, error: QueueError) -> Handled<QueueNode> {
    reply.error(error.status(), error);
    Handled::Replied
}

/// Replies BadChannelName unless `channel` is a plain channel name (no `@`).
fn check_channel(reply: &mut Reply<'_>, channel: &str) -> Result<(), Handled<QueueNode>> {
    if queue::valid_channel_name(channel) {
        return Ok(());
    }
    reply.error(
        Status::BadChannelName,
        format!("channel name {channel:?} is not 1 to 100 of A-Z a-z 0-9 _ -"),
    );
    Err(Handled::Replied)
}

/// Replies BadChannelName unless every one of `channels` is a plain channel name.
fn check_channels(reply: &mut Reply<'_>, channels: &[&str]) -> Result<(), Handled<QueueNode>> {
    channels
        .iter()
        .try_for_each(|channel| check_channel(reply, channel))
}

/// Replies BadChannelName unless `subscriber` is a subscriber name (empty is the default one).
fn check_subscriber(reply: &mut Reply<'_>, subscriber: &str) -> Result<(), Handled<QueueNode>> {
    if queue::valid_subscriber_name(subscriber) {
        return Ok(());
    }
    reply.error(
        Status::BadChannelName,
        format!("subscriber name {subscriber:?} is not 0 to 100 of A-Z a-z 0-9 _ -"),
    );
    Err(Handled::Replied)
}
