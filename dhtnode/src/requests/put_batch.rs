//! PutBatch: store an LZ4 batch of records in one channel, all or nothing (every record is
//! checked before any is stored: the engine's [`crate::engine::Engine::put_batch`]). Listeners
//! see each record. The reply is `u64 stored`.

use crate::service::DhtNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::decode_put_batch;
use node_core::protocol::wire::put_u64;
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let (channel, batch) = decode_put_batch(request.body)?;
    let DhtNode {
        engine,
        batch_scratch,
        ..
    } = node;
    let mark = engine.log().position();
    let records = decode_batch(batch, batch_scratch)
        .map_err(|error| ErrorReply::bad_request(format!("batch: {error}")))?;
    let stored = engine.put_protocol_batch(channel, batch, records)?;
    let mut body = Vec::with_capacity(8);
    put_u64(&mut body, stored);
    Ok(node.acknowledge(mark, reply, Status::Ok, body))
}
