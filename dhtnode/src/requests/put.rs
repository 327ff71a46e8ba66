//! Put: store a value under a key (overwriting), creating the channel if needed.
//!
//! Decoding is the protocol's [`PutRequest`] (the client encodes with the same codec). The
//! checks are rules of the data, so they are the engine's ([`crate::engine::Engine::put`]),
//! which every write shares; in order: channel name, channel limit, key in range, value not
//! empty, value size, node size limit, then the change log takes it. Nothing changes unless
//! all pass. The reply waits for the log as `dht.durability` says ([`DhtNode::acknowledge`]).

use crate::service::DhtNode;
use node_core::protocol::dht::PutRequest;
use node_core::protocol::Status;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let put = PutRequest::decode(request.body)?;
    let mark = node.log_mark();
    node.engine.put(put.channel, put.key, put.value)?;
    Ok(node.acknowledge(mark, reply, Status::Ok, &[]))
}
