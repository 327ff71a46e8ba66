//! GetSize: the bucket files and bytes on disk of all channels together.

use super::bad_request;
use crate::service::LogfilesNode;
use node_core::protocol::wire::decode_empty;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    if let Err(error) = decode_empty(request.body) {
        return bad_request(reply, error);
    }
    let size = node.engine.size();
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
