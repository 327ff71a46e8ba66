//! Put: append one record to a channel (creating it). Acknowledged per the fsync policy
//! ([`LogfilesNode::acknowledge`]).
//!
//! Decoding is the protocol's [`PutRequest`] (the client encodes with the same codec). The
//! checks are rules of the data, so they are the engine's ([`crate::engine::Engine::put`]),
//! shared with PutBatch; in order: channel name and the channel limit, empty value, value size.

use crate::service::LogfilesNode;
use node_core::protocol::logfiles::PutRequest;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let put = PutRequest::decode(request.body)?;
    let tickets = node.engine.put(put.channel, put.key, put.value)?;
    Ok(node.acknowledge(reply, &[], tickets))
}
