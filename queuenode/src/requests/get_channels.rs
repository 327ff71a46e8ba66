//! GetChannels: the names of the node's channels, sorted (each once, whatever its subscribers).

use super::bad_request;
use crate::service::QueueNode;
use node_core::protocol::queue::encode_channel_names;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    if let Err(error) = decode_empty(request.body) {
        return bad_request(reply, error);
    }
    let names = node.channels.channel_names();
    reply.send_with(Status::Ok, |out| encode_channel_names(out, names));
    Handled::Replied
}
