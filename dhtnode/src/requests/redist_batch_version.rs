//! RedistBatchVersion (admins only when authentication is on): the versioned RedistBatch, what
//! a redistribution sends (docs/protocol.md §6.7). Its LZ4 batch holds records with their
//! versions and tombstones, laid out as a Mirror's refresh batch; each is applied as a
//! PutVersion or RemoveVersion would be (kept only if newer than what this node holds), so a
//! record moved between replica sets keeps its version and a removal its tombstone, and the
//! members of a set that receive copies from several senders converge. All or nothing: every
//! check passes for the whole batch first ([`crate::engine::Engine::put_version_batch`]). The
//! reply is RedistBatch's ([`super::redist_batch::handle_with`]). [`versioned_items`] reads
//! such a batch's items, for PutBatchVersion too.

use crate::engine::BatchFrom;
use crate::service::DhtNode;
use node_core::protocol::batch::BatchRecords;
use node_core::protocol::dht::RefreshRecord;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    super::redist_batch::handle_with(node, request, reply, |engine, channel, records| {
        let items = versioned_items(records)?;
        Ok(engine.put_version_batch(channel, &items, BatchFrom::Redistribution)?)
    })
}

/// The items of a versioned batch (record values `u64 version` + value, or the version alone
/// for a tombstone): BadRequest for a record value shorter than a version. Bounded by the
/// batch: at most 16 MiB uncompressed, 20 bytes an item at least (docs/protocol.md §4).
pub(super) fn versioned_items(
    records: BatchRecords<'_>,
) -> Result<Vec<(u64, RefreshRecord<'_>)>, ErrorReply> {
    records
        .map(|(key, value)| RefreshRecord::decode(value).map(|item| (key, item)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ErrorReply::bad_request(format!("batch record: {error}")))
}
