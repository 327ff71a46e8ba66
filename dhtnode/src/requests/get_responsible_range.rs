//! GetResponsibleRange: the node's share of the hash space, `[min, max]` of hash positions.

use crate::service::DhtNode;
use node_core::protocol::dht::encode_range;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    decode_empty(request.body)?;
    let range = node.engine.range();
    reply.send_with(Status::Ok, |out| encode_range(out, range));
    Ok(Handled::Replied)
}
