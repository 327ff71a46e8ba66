//! GetChannels: the names of the node's channels, sorted.

use crate::service::LogfilesNode;
use node_core::protocol::logfiles::encode_channel_names;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    _request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    reply.send_with(Status::Ok, |out| {
        encode_channel_names(out, node.engine.channel_names())
    });
    Handled::Replied
}
