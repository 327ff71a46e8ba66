//! GetChannels: the names of the node's channels, sorted.

use super::bad_request;
use crate::service::DhtNode;
use node_core::protocol::dht::encode_channel_names;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    if let Err(error) = decode_empty(request.body) {
        return bad_request(reply, error);
    }
    reply.send_with(Status::Ok, |out| {
        encode_channel_names(out, node.engine.channel_names())
    });
    Handled::Replied
}
