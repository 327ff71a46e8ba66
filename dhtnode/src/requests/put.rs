//! Put: store a value under a key (overwriting), creating the channel if needed.
//!
//! Decoding is the protocol's [`PutRequest`] (the client encodes with the same codec). The
//! checks are rules of the data, so they are the engine's ([`crate::engine::Engine::put`]),
//! which every write shares; in order: channel name, channel limit, key in range, value not
//! empty, value size, node size limit. Nothing changes unless all pass.

use crate::service::DhtNode;
use node_core::protocol::dht::PutRequest;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let put = PutRequest::decode(request.body)?;
    node.engine.put(put.channel, put.key, put.value)?;
    reply.ok(&[]);
    Ok(Handled::Replied)
}
