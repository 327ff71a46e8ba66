//! RedistBatch (admins only when authentication is on): the PutBatch of a redistribution. The
//! records of an LZ4 batch are stored only where their key has no value yet, so a newer value
//! written here since the move began is never replaced by the old node's copy. All or nothing:
//! every key must be inside this node's range (WrongNode), every value valid, and the node
//! must stay under its size limit and, while its own redistribution runs, under the
//! redistribution memory guard (OutOfMemory; the sender retries later). Listeners see every
//! record stored. The reply names this process's instance, which RedistCommit must repeat.
//! [`handle_with`] is what it shares with RedistBatchVersion.

use crate::engine::{AbsentBatchOutcome, Engine};
use crate::service::DhtNode;
use node_core::protocol::batch::BatchRecords;
use node_core::protocol::dht::RedistBatchReply;
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    handle_with(node, request, reply, |engine, channel, records| {
        Ok(engine.put_absent_batch(channel, records)?)
    })
}

/// A redistribution batch: decodes the channel and the LZ4 batch, has `apply` store its
/// records, and answers with the counts and this process's instance, once the change log
/// says (docs/protocol.md §6.10).
pub(super) fn handle_with(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
    apply: impl FnOnce(&mut Engine, &str, BatchRecords<'_>) -> Result<AbsentBatchOutcome, ErrorReply>,
) -> Outcome<DhtNode> {
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    let instance = node.redistributor.instance();
    let (outcome, mark) =
        super::put_batch::with_batch(node, request.body, |engine, channel, _, records| {
            apply(engine, channel, records)
        })?;
    let answer = RedistBatchReply {
        stored: outcome.stored,
        present: outcome.present,
        instance,
    };
    let mut body = Vec::new();
    answer.encode(&mut body);
    Ok(node.acknowledge(mark, reply, Status::Ok, &body))
}
