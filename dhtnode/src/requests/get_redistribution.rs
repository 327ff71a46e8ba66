//! GetRedistribution: the node's range now, whether a redistribution runs, and the progress of
//! the running (or last) one. Clients read it to learn range changes and to know when records
//! may still be on their old node; `swarmctl dht ranges` shows it.

use crate::service::DhtNode;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    decode_empty(request.body)?;
    let state = node.redistributor.state(&node.engine);
    reply.send_with(Status::Ok, |out| state.encode(out));
    Ok(Handled::Replied)
}
