//! Push: append one value to a channel, creating the channel (a ring sized by `[queue]`) on the
//! first push. A subscribed channel gets the value in every subscriber's storage. Checks, in
//! order, before anything is written or created: channel name (here); then the engine's
//! ([`crate::engine::Engine::push`]): value not empty; value not above any target ring's
//! maximum (a quarter of its capacity, at most 16 MiB, and within a frame); the node memory
//! limit (a new ring only); the free space of every target ring (ChannelFull: the record does
//! not fit now; a client tries another node). Ok means the record is in the ring files'
//! mappings and survives a crash of the process.

use crate::service::QueueNode;
use node_core::protocol::queue::{check_channel_name, PushRequest};
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let push = PushRequest::decode(request.body)?;
    check_channel_name(push.channel)?;
    node.engine.push(&[push.channel], &[push.value], false)?;
    reply.ok(&[]);
    Ok(Handled::Replied)
}
