//! PutBatch: store an LZ4 batch of records in one channel, all or nothing (every record is
//! checked before any is stored: the engine's [`crate::engine::Engine::put_batch`]). Listeners
//! see each record. The reply is `u64 stored`. [`with_batch`] decodes a batch request's body
//! for every batch request (PutBatch, PutBatchVersion, RedistBatch, RedistBatchVersion).

use crate::engine::Engine;
use crate::service::DhtNode;
use node_core::protocol::batch::{decode_batch, BatchRecords};
use node_core::protocol::dht::decode_put_batch;
use node_core::protocol::wire::put_u64;
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let (stored, mark) = with_batch(node, request.body, |engine, channel, batch, records| {
        Ok(engine.put_protocol_batch(channel, batch, records)?)
    })?;
    let mut body = Vec::with_capacity(8);
    put_u64(&mut body, stored);
    Ok(node.acknowledge(mark, reply, Status::Ok, &body))
}

/// Decodes a batch request's body (`str8 channel`, then an LZ4 batch, docs/protocol.md §4:
/// BadRequest when it fails its checks) and has `apply` store its records (given the batch as
/// it came too, for the change log). Returns what `apply` did and the change log's position
/// before it, for [`DhtNode::acknowledge`].
pub(super) fn with_batch<R>(
    node: &mut DhtNode,
    body: &[u8],
    apply: impl FnOnce(&mut Engine, &str, &[u8], BatchRecords<'_>) -> Result<R, ErrorReply>,
) -> Result<(R, Option<u64>), ErrorReply> {
    let (channel, batch) = decode_put_batch(body)?;
    let DhtNode {
        engine,
        batch_scratch,
        ..
    } = node;
    let mark = engine.log().position();
    let records = decode_batch(batch, batch_scratch)
        .map_err(|error| ErrorReply::bad_request(format!("batch: {error}")))?;
    Ok((apply(engine, channel, batch, records)?, mark))
}
