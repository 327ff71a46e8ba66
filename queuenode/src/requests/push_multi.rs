//! PushMulti: one value to 1 to 64 channels (`MAX_PUSH_CHANNELS`; a channel named twice gets it
//! once), all or nothing: every name is checked (here), then for every target storage (every
//! subscriber's of a subscribed channel; a new plain ring for a missing channel) the value's
//! size, the memory limit for the new rings together, and the free space, before anything is
//! written ([`crate::engine::Engine::push`]). A refused PushMulti stored nothing anywhere, so a
//! client may retry it on another node without duplicating the record in some channels.

use super::check_channels;
use crate::service::QueueNode;
use node_core::protocol::queue::PushMultiRequest;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let push = PushMultiRequest::decode(request.body)?;
    check_channels(&push.channels)?;
    node.engine.push(&push.channels, &[push.value], false)?;
    reply.ok(&[]);
    Ok(Handled::Replied)
}
