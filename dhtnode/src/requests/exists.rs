//! Exists: Ok if the key has a record, NotFound if not. Like Get: a record held outside the
//! range is found; an absent key outside the range is WrongNode.

use crate::service::DhtNode;
use node_core::protocol::dht::KeyRequest;
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let exists = KeyRequest::decode(request.body)?;
    let engine = &node.engine;
    if engine.with_value(exists.channel, exists.key, |value| value.is_some())? {
        reply.ok(&[]);
    } else if engine.is_responsible_for(exists.key) {
        reply.send(Status::NotFound, &[]);
    } else {
        return Err(engine.wrong_node(exists.key).into());
    }
    Ok(Handled::Replied)
}
