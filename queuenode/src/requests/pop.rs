//! Pop: remove and return a channel's oldest record (Ok with the value as the whole body), or
//! NotFound with an empty body when the channel is empty or does not exist. Pop never creates a
//! channel. (The reference answered 500 for a missing channel and 200 + empty value for an empty
//! one; one "nothing there" status is simpler for clients.)

use super::{bad_request, check_channel, engine_error};
use crate::service::QueueNode;
use node_core::protocol::queue::decode_channel;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let channel = match decode_channel(request.body) {
        Ok(channel) => channel,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel(reply, channel) {
        return handled;
    }
    let Some(ring) = node.queues.get_mut(channel) else {
        reply.send(Status::NotFound, &[]);
        return Handled::Replied;
    };
    match ring.pop() {
        Ok(Some(value)) => reply.ok(&value),
        Ok(None) => reply.send(Status::NotFound, &[]),
        Err(error) => return engine_error(reply, error.into()),
    }
    Handled::Replied
}
