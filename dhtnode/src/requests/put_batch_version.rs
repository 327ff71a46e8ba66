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
use node_core::protocol::dht::VersionBatchReply;
use node_core::protocol::Status;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let (outcome, mark) =
        super::put_batch::with_batch(node, request.body, |engine, channel, _, records| {
            let items = super::redist_batch_version::versioned_items(records)?;
            Ok(engine.put_version_batch(channel, &items, BatchFrom::Client)?)
        })?;
    let answer = VersionBatchReply {
        applied: outcome.stored,
        skipped: outcome.present,
    };
    let mut body = Vec::with_capacity(16);
    answer.encode(&mut body);
    Ok(node.acknowledge(mark, reply, Status::Ok, &body))
}
