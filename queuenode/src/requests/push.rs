//! Push: append one value to a channel, creating the channel (a ring sized by `[queue]`) on the
//! first push. A subscribed channel gets the value in every subscriber's storage. Checks, in
//! order, before anything is written or created: channel name; value not empty; value not above
//! any target ring's maximum (a quarter of its capacity, at most 16 MiB, and within a frame);
//! the node memory limit (a new ring only); the free space of every target ring (ChannelFull:
//! the record does not fit now; a client tries another node). Ok means the record is in the ring
//! files' mappings and survives a crash of the process.

use super::{bad_request, check_channel, engine_error};
use crate::service::QueueNode;
use node_core::protocol::queue::PushRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let push = match PushRequest::decode(request.body) {
        Ok(push) => push,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel(reply, push.channel) {
        return handled;
    }
    match node.push(&[push.channel], &[push.value], false) {
        Ok(_) => reply.ok(&[]),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
