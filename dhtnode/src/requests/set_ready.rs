//! SetReady (admin): an operator's escape for a replica that cannot catch up because every
//! peer is gone for good: the node stops catching up and answers reads from what it has
//! (docs/protocol.md §6.13). Ok with `u8` the state before (0 ready, 1 catching up, 2 forced
//! earlier); a ready node stays as it is.

use crate::service::DhtNode;
use node_core::protocol::wire::{decode_empty, put_u8};
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    decode_empty(request.body)?;
    let before = node.catch_up.force_ready();
    reply.send_with(Status::Ok, |out| put_u8(out, before as u8));
    Ok(Handled::Replied)
}
