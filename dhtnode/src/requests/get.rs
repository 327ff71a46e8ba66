//! Get: the value of a key (Ok with the value as the body), or NotFound. A record this node
//! holds is returned even outside its range (a redistribution has not moved it yet); an absent
//! key outside the range is WrongNode, so a client with an old idea of the ranges learns that
//! the record may be elsewhere. A missing channel is not created.

use crate::service::DhtNode;
use node_core::protocol::dht::KeyRequest;
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let get = KeyRequest::decode(request.body)?;
    let engine = &node.engine;
    // The value is answered from inside the engine's lookup: it lives in a locked shard, and
    // copying it out would cost an allocation per Get.
    engine.with_value(get.channel, get.key, |value| match value {
        Some(value) => {
            reply.ok(value);
            Ok(())
        }
        None if engine.is_responsible_for(get.key) => {
            reply.send(Status::NotFound, &[]);
            Ok(())
        }
        None => Err(engine.wrong_node(get.key)),
    })??;
    Ok(Handled::Replied)
}
