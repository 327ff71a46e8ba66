//! Get: the value of a key (Ok with the value as the body), or NotFound. A missing channel is
//! not created. Which keys are found and which are WrongNode (an absent key outside the
//! node's range) is the engine's rule ([`crate::engine::Engine::read`]).

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
    // The value is answered from inside the engine's lookup: it lives in a locked shard, and
    // copying it out would cost an allocation per Get.
    if node
        .engine
        .read(get.channel, get.key, |value| reply.ok(value))?
        .is_none()
    {
        reply.send(Status::NotFound, &[]);
    }
    Ok(Handled::Replied)
}
