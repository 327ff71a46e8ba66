//! GetSize: records and bytes of all channels together.

use crate::service::DhtNode;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    _request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let size = node.engine.size();
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
