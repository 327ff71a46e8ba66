//! PushMulti: one value to 1 to 64 channels (`MAX_PUSH_CHANNELS`; a channel named twice gets it
//! once), all or nothing: every name is checked, then for every target storage (every
//! subscriber's of a subscribed channel; a new plain ring for a missing channel) the value's
//! size, the memory limit for the new rings together, and the free space, before anything is
//! written. A refused PushMulti stored nothing anywhere, so a client may retry it on another
//! node without duplicating the record in some channels.

use super::{bad_request, check_channels, engine_error};
use crate::service::QueueNode;
use node_core::protocol::queue::PushMultiRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let push = match PushMultiRequest::decode(request.body) {
        Ok(push) => push,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channels(reply, &push.channels) {
        return handled;
    }
    match node.push(&push.channels, &[push.value], false) {
        Ok(_) => reply.ok(&[]),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
