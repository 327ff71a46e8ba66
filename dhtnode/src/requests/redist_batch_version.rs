//! RedistBatchVersion (admins only when authentication is on): the versioned RedistBatch, what
//! a redistribution sends (docs/protocol.md §6.7). Its LZ4 batch holds records with their
//! versions and tombstones, laid out as a Mirror's refresh batch; each is applied as a
//! PutVersion or RemoveVersion would be (kept only if newer than what this node holds), so a
//! record moved between replica sets keeps its version and a removal its tombstone, and the
//! members of a set that receive copies from several senders converge. All or nothing: every
//! check passes for the whole batch first ([`crate::engine::Engine::put_version_batch`]). The
//! reply is RedistBatch's, naming this process's instance for RedistCommit.

use crate::service::DhtNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{decode_put_batch, RedistBatchReply, RefreshRecord};
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let (channel, batch) = decode_put_batch(request.body)?;
    // Only admins get here: the core refuses the others before the body is decoded.
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
    // Bounded by the batch: at most 16 MiB uncompressed (§4).
    let items = records
        .map(|(key, value)| RefreshRecord::decode(value).map(|item| (key, item)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ErrorReply::bad_request(format!("batch record: {error}")))?;
    let outcome = engine.put_version_batch(channel, &items)?;
    let answer = RedistBatchReply {
        stored: outcome.stored,
        present: outcome.present,
        instance,
    };
    let mut body = Vec::new();
    answer.encode(&mut body);
    Ok(node.acknowledge(mark, reply, Status::Ok, body))
}
