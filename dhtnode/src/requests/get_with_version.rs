//! GetWithVersion: a key's record with its version (Ok: `u64 version`, value), or NotFound
//! with the version of its tombstone, or NotFound empty when the node holds nothing of it
//! (docs/protocol.md §6.11). WrongNode as Get: nothing held and the key outside the range.

use crate::engine::VersionedRead;
use crate::service::DhtNode;
use node_core::protocol::dht::KeyRequest;
use node_core::protocol::wire::put_u64;
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let get = KeyRequest::decode(request.body)?;
    // Answered from inside the lookup, as Get: the value lives in a locked shard.
    let read = node
        .engine
        .read_versioned(get.channel, get.key, |version, value| {
            reply.send_with(Status::Ok, |body| {
                put_u64(body, version);
                body.extend_from_slice(value);
            })
        })?;
    match read {
        VersionedRead::Found(()) => {}
        VersionedRead::Tombstone(version) => reply.send(Status::NotFound, &version.to_le_bytes()),
        VersionedRead::Absent => reply.send(Status::NotFound, &[]),
    }
    Ok(Handled::Replied)
}
