//! GetSize: the bucket files and bytes on disk of all channels together.

use crate::service::LogfilesNode;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    _request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let size = node.engine.size();
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
