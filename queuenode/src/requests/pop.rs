//! Pop: remove and return a channel's oldest record (Ok with the value as the whole body), or
//! NotFound with an empty body when the channel is empty or does not exist. Pop never creates a
//! channel. (The reference answered 500 for a missing channel and 200 + empty value for an empty
//! one; one "nothing there" status is simpler for clients.)
//!
//! On a subscribed channel Pop reads the default subscriber's storage (`@channel`), the one a
//! Consume without a subscriber name reads, so Pop and such consumers share one queue. A channel
//! whose subscribers all have names refuses Pop with BadRequest (whose copy should it take?), as
//! the reference refused it; its readers must Consume under a subscriber name.

use super::{bad_request, check_channel, engine_error};
use crate::engine::PopSource;
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
    let storage = match node.channels.pop_source(channel) {
        PopSource::Storage(storage) => storage,
        PopSource::Missing => {
            reply.send(Status::NotFound, &[]);
            return Handled::Replied;
        }
        PopSource::Subscribed(subscribers) => {
            reply.error(
                Status::BadRequest,
                format!(
                    "channel {channel:?} has subscribers ({}) and no default subscriber: Pop \
                     cannot choose a copy; consume it with a subscriber name",
                    subscribers.join(", ")
                ),
            );
            return Handled::Replied;
        }
    };
    let Some(ring) = node.channels.ring_mut(&storage) else {
        reply.send(Status::NotFound, &[]);
        return Handled::Replied;
    };
    // Taken into a reused buffer and acknowledged before the reply: no allocation per Pop, and
    // the value is only answered once it is gone from the ring.
    let scratch = &mut node.pop_scratch;
    scratch.clear();
    let Some(span) = ring.take_with(1, u64::MAX, |_, value| scratch.extend_from_slice(value))
    else {
        reply.send(Status::NotFound, &[]);
        return Handled::Replied;
    };
    if let Err(error) = ring.ack(span) {
        return engine_error(reply, error.into());
    }
    node.removed_records += 1;
    reply.ok(&node.pop_scratch);
    if node.pop_scratch.capacity() > 1024 * 1024 {
        // One huge value must not pin its buffer for the node's life.
        node.pop_scratch = Vec::new();
    }
    Handled::Replied
}
