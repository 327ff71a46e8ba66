//! GetChannelSize: records, value bytes, used ring bytes and ring capacity of one channel, summed
//! over its storages (zeros for a missing channel, which is not created).

use super::{bad_request, check_channel};
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
    let size = node.channel_size(channel);
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
