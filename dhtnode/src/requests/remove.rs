//! Remove: delete a key's record. Ok when it existed (also outside the node's range: a record
//! a redistribution has not moved yet), NotFound when it did not; WrongNode for an absent key
//! outside the node's range. Listeners see the removal.

use super::{bad_request, engine_error};
use crate::service::DhtNode;
use node_core::protocol::dht::KeyRequest;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let remove = match KeyRequest::decode(request.body) {
        Ok(remove) => remove,
        Err(error) => return bad_request(reply, error),
    };
    match node.engine.remove(remove.channel, remove.key) {
        Ok(true) => reply.ok(&[]),
        Ok(false) => reply.send(Status::NotFound, &[]),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
