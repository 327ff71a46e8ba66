//! RedistBatch (admins only when authentication is on): the PutBatch of a redistribution. The
//! records of an LZ4 batch are stored only where their key has no value yet, so a newer value
//! written here since the move began is never replaced by the old node's copy. All or nothing:
//! every key must be inside this node's range (WrongNode), every value valid, and the node
//! must stay under its size limit and, while its own redistribution runs, under the
//! redistribution memory guard (OutOfMemory; the sender retries later). Listeners see every
//! record stored. The reply names this process's instance, which RedistCommit must repeat.

use crate::service::DhtNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{decode_put_batch, RedistBatchReply};
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let (channel, batch) = decode_put_batch(request.body)?;
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    let instance = node.redistributor.instance();
    let DhtNode {
        engine,
        batch_scratch,
        ..
    } = node;
    let mark = engine.log().position();
    let records = decode_batch(batch, batch_scratch)
        .map_err(|error| ErrorReply::bad_request(format!("batch: {error}")))?;
    let outcome = engine.put_absent_batch(channel, records)?;
    let answer = RedistBatchReply {
        stored: outcome.stored,
        present: outcome.present,
        instance,
    };
    let mut body = Vec::new();
    answer.encode(&mut body);
    Ok(node.acknowledge(mark, reply, Status::Ok, body))
}
