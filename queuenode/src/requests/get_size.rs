//! GetSize: records, value bytes, used ring bytes and ring capacity over every storage of the
//! node.

use super::bad_request;
use crate::service::QueueNode;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    if let Err(error) = decode_empty(request.body) {
        return bad_request(reply, error);
    }
    let size = node.total_size();
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
