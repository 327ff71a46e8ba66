//! RemoveVersion: if the version is newer than what the node holds of the key, remove the
//! record (if any) and keep a tombstone of that version, so that an older write arriving later
//! cannot bring it back (docs/protocol.md §6.11). Ok with `u8 applied`, after the change log
//! when something changed.

use crate::service::DhtNode;
use node_core::protocol::dht::{applied_body, RemoveVersionRequest};
use node_core::protocol::Status;
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let remove = RemoveVersionRequest::decode(request.body)?;
    let mark = node.log_mark();
    let applied = node
        .engine
        .remove_version(remove.channel, remove.key, remove.version)?;
    Ok(node.acknowledge(mark, reply, Status::Ok, &applied_body(applied)))
}
