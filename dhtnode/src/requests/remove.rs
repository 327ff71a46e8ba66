//! Remove: delete a key's record. Ok when it existed (also outside the node's range: a record
//! a redistribution has not moved yet), NotFound when it did not; WrongNode for an absent key
//! outside the node's range. Listeners see the removal.

use crate::service::DhtNode;
use node_core::protocol::dht::KeyRequest;
use node_core::protocol::Status;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let remove = KeyRequest::decode(request.body)?;
    let mark = node.log_mark();
    let status = if node.engine.remove(remove.channel, remove.key)? {
        Status::Ok
    } else {
        Status::NotFound
    };
    Ok(node.acknowledge(mark, reply, status, &[]))
}
