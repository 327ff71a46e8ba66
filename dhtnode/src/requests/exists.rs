//! Exists: Ok if the key has a record, NotFound if not. Like Get: a record held outside the
//! range is found; an absent key outside the range is WrongNode.

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
    let exists = match KeyRequest::decode(request.body) {
        Ok(exists) => exists,
        Err(error) => return bad_request(reply, error),
    };
    match node
        .engine
        .with_value(exists.channel, exists.key, |value| value.is_some())
    {
        Ok(true) => reply.ok(&[]),
        Ok(false) if node.engine.is_responsible_for(exists.key) => {
            reply.send(Status::NotFound, &[])
        }
        Ok(false) => return engine_error(reply, node.engine.wrong_node(exists.key)),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
