//! PutBatchVersion: PutBatch with a version on every item (docs/protocol.md §6.14), what a
//! client writes a batch to the members of a replica set with. The LZ4 batch is laid out as a
//! RedistBatchVersion's (record values `u64 version` + value, or the version alone for a
//! tombstone); all or nothing, every check passes for the whole batch first, then each item is
//! applied as a PutVersion or RemoveVersion of its version would be (kept only if newer than
//! what the node holds: [`crate::engine::Engine::put_version_batch`]), so two writers' batches
//! of the same keys leave every member with the same records whatever order they arrive in.
//! Unlike RedistBatchVersion it is not an admin request and not held to the redistribution
//! memory guard (as PutBatch). The reply is `u64 applied`, `u64 skipped`, once the change log
//! says (§6.10).

use crate::engine::BatchFrom;
use crate::service::DhtNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{decode_put_batch, VersionBatchReply};
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
    let items = super::redist_batch_version::versioned_items(records)?;
    let outcome = engine.put_version_batch(channel, &items, BatchFrom::Client)?;
    let answer = VersionBatchReply {
        applied: outcome.stored,
        skipped: outcome.present,
    };
    let mut body = Vec::with_capacity(16);
    answer.encode(&mut body);
    Ok(node.acknowledge(mark, reply, Status::Ok, body))
}
