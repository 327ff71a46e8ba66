//! Produce: one batch of a streaming push. The body names 1 to 64 channels and carries an LZ4
//! batch of values; a producer sends such batches back to back, keeping a bounded number
//! unanswered, and each Reply acknowledges its batch (docs/protocol.md §8.5).
//!
//! Before anything is written: the names and the batch (it must decode and pass its checksum)
//! are checked here; every value (not empty, within every target ring's maximum) and the memory
//! limit for new rings by the engine. A failure refuses the whole batch with that status. Then
//! the values are stored in order, each into every target storage, until one does not fit into
//! all of them ([`crate::engine::Engine::push`], partial): the reply says how many were stored
//! (`u32 stored`); the producer sends the rest elsewhere.

use super::check_channels;
use crate::service::QueueNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::queue::{ProduceReply, ProduceRequest};
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let produce = ProduceRequest::decode(request.body)?;
    check_channels(&produce.channels)?;
    let mut scratch = Vec::new();
    let records = decode_batch(produce.batch, &mut scratch)
        .map_err(|error| ErrorReply::bad_request(format!("Produce batch: {error}")))?;
    let values: Vec<&[u8]> = records.map(|(_, value)| value).collect();
    let stored = node.engine.push(&produce.channels, &values, true)?;
    // At most one batch of values: far below u32::MAX.
    let stored = ProduceReply {
        stored: u32::try_from(stored).unwrap_or(u32::MAX),
    };
    reply.send_with(Status::Ok, |out| stored.encode(out));
    Ok(Handled::Replied)
}
