//! Get: the value of a key (Ok with the value as the body), or NotFound. A record this node
//! holds is returned even outside its range (a redistribution has not moved it yet); an absent
//! key outside the range is WrongNode, so a client with an old idea of the ranges learns that
//! the record may be elsewhere. A missing channel is not created.

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
    let get = match KeyRequest::decode(request.body) {
        Ok(get) => get,
        Err(error) => return bad_request(reply, error),
    };
    let engine = &node.engine;
    let found = engine.with_value(get.channel, get.key, |value| match value {
        Some(value) => {
            reply.ok(value);
            Ok(())
        }
        None if engine.is_responsible_for(get.key) => {
            reply.send(Status::NotFound, &[]);
            Ok(())
        }
        None => Err(engine.wrong_node(get.key)),
    });
    match found {
        Ok(Ok(())) => Handled::Replied,
        Ok(Err(error)) | Err(error) => engine_error(reply, error),
    }
}
