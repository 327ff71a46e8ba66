//! Pop: remove and return a channel's oldest record (Ok with the value as the whole body), or
//! NotFound with an empty body when the channel is empty or does not exist. Pop never creates a
//! channel. (The reference answered 500 for a missing channel and 200 + empty value for an empty
//! one; one "nothing there" status is simpler for clients.)
//!
//! Which storage Pop reads on a subscribed channel, and when it refuses (BadRequest: no
//! default subscriber), is the engine's rule ([`crate::engine::Engine::pop_with`]). The value is
//! answered from the ring's map, once it is gone from the ring (nothing writes over it before
//! the next push).

use crate::service::QueueNode;
use node_core::protocol::queue::{check_channel_name, decode_channel};
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let channel = decode_channel(request.body)?;
    check_channel_name(channel)?;
    if node
        .engine
        .pop_with(channel, |value| reply.ok(value))?
        .is_none()
    {
        reply.send(Status::NotFound, &[]);
    }
    Ok(Handled::Replied)
}
