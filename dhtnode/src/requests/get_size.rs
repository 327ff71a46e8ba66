//! GetSize: records and bytes of all channels together.

use super::bad_request;
use crate::service::DhtNode;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    if let Err(error) = decode_empty(request.body) {
        return bad_request(reply, error);
    }
    let size = node.engine.size();
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
