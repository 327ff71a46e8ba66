//! Update: compare-and-swap. The client read the record (Get), computed a new value, and sends
//! the hash of what it read; the node applies the write (or removal) only if the record is still
//! exactly that, else UpdateConflict and the client reads again. A record removed meanwhile is a
//! change too (the reference re-created it).

use super::{bad_request, done};
use crate::service::DhtNode;
use node_core::protocol::dht::UpdateRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let update = match UpdateRequest::decode(request.body) {
        Ok(update) => update,
        Err(error) => return bad_request(reply, error),
    };
    done(
        reply,
        node.engine
            .update(update.channel, update.key, update.expected, update.action),
    )
}
