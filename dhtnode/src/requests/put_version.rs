//! PutVersion: store a record with its version if the version is newer than what the node
//! holds of the key (record or tombstone); otherwise change nothing (docs/protocol.md §6.11).
//! The checks are Put's ([`crate::engine::Engine::put_version`]); the reply (Ok with `u8
//! applied`) waits for the change log as `dht.durability` says when the record was stored, and
//! goes at once when nothing changed.

use crate::service::DhtNode;
use node_core::protocol::dht::{applied_body, PutVersionRequest};
use node_core::protocol::Status;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let put = PutVersionRequest::decode(request.body)?;
    let mark = node.log_mark();
    let applied = node
        .engine
        .put_version(put.channel, put.key, put.version, put.value)?;
    Ok(node.acknowledge(mark, reply, Status::Ok, &applied_body(applied)))
}
