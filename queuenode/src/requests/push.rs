//! Push: append one value to a channel's ring, creating the ring (sized by `[queue]`) on the
//! first push. Checks, in order, before anything is created: channel name, value not empty,
//! value not above the ring's maximum (a quarter of its capacity, at most 16 MiB); then the node
//! memory limit (a new ring only) and the ring's free space (ChannelFull: the record does not
//! fit now; a client tries another node). Ok means the record is in the ring file's mapping and
//! survives a crash of the process.

use super::{bad_request, check_channel, engine_error};
use crate::engine::ring::max_value_bytes;
use crate::engine::{QueueError, RingError};
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
    if push.value.is_empty() {
        return engine_error(reply, RingError::EmptyValue.into());
    }
    let capacity = match node.queues.get(push.channel) {
        Some(ring) => ring.capacity_bytes(),
        None => node.config.channel_size_for(push.channel),
    };
    let max = max_value_bytes(capacity);
    if push.value.len() as u64 > max {
        let error = RingError::ValueTooBig {
            len: push.value.len() as u64,
            max,
        };
        return engine_error(reply, QueueError::from(error));
    }
    let result = node
        .queues
        .get_or_create(push.channel, capacity)
        .and_then(|ring| ring.push(push.value).map_err(QueueError::from));
    match result {
        Ok(_) => reply.ok(&[]),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
