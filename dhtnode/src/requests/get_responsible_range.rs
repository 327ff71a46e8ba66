//! GetResponsibleRange: the node's share of the hash space, `[min, max]` of hash positions.

use super::bad_request;
use crate::service::DhtNode;
use node_core::protocol::dht::encode_range;
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
    let range = node.engine.range();
    reply.send_with(Status::Ok, |out| encode_range(out, range));
    Handled::Replied
}
