//! Produce: one batch of a streaming push. The body names 1 to 64 channels and carries an LZ4
//! batch of values; a producer sends such batches back to back, keeping a bounded number
//! unanswered, and each Reply acknowledges its batch (docs/protocol.md §8.5).
//!
//! Before anything is written: the names, the batch (it must decode and pass its checksum), every
//! value (not empty, within every target ring's maximum) and the memory limit for new rings are
//! checked; a failure refuses the whole batch with that status. Then the values are stored in
//! order, each into every target storage, until one does not fit into all of them: the reply
//! says how many were stored (`u32 stored`); the producer sends the rest elsewhere.

use super::{bad_request, check_channels, engine_error};
use crate::service::QueueNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::queue::{ProduceReply, ProduceRequest};
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let produce = match ProduceRequest::decode(request.body) {
        Ok(produce) => produce,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channels(reply, &produce.channels) {
        return handled;
    }
    let mut scratch = Vec::new();
    let records = match decode_batch(produce.batch, &mut scratch) {
        Ok(records) => records,
        Err(error) => {
            reply.error(Status::BadRequest, format!("Produce batch: {error}"));
            return Handled::Replied;
        }
    };
    let values: Vec<&[u8]> = records.map(|(_, value)| value).collect();
    match node.push(&produce.channels, &values, true) {
        Ok(stored) => {
            let stored = ProduceReply {
                stored: stored as u32,
            };
            reply.send_with(Status::Ok, |out| stored.encode(out));
        }
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
