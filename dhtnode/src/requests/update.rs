//! Update: compare-and-swap. The client read the record (Get), computed a new value, and sends
//! the hash of what it read; the node applies the write (or removal) only if the record is still
//! exactly that, else UpdateConflict and the client reads again. A record removed meanwhile is a
//! change too (the reference re-created it). The comparison and the write are the engine's
//! ([`crate::engine::Engine::update`]), with the checks of a Put.

use crate::service::DhtNode;
use node_core::protocol::dht::UpdateRequest;
use node_core::protocol::Status;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let update = UpdateRequest::decode(request.body)?;
    let mark = node.log_mark();
    node.engine
        .update(update.channel, update.key, update.expected, update.action)?;
    Ok(node.acknowledge(mark, reply, Status::Ok, &[]))
}
