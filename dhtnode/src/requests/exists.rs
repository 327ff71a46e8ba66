//! Exists: Ok if the key has a record, NotFound if not. Like Get
//! ([`crate::engine::Engine::read`]): a record held outside the range is found; an absent key
//! outside the range is WrongNode.

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
    match node.engine.read(exists.channel, exists.key, |_| ())? {
        Some(()) => reply.ok(&[]),
        None => reply.send(Status::NotFound, &[]),
    }
    Ok(Handled::Replied)
}
