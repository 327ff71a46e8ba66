//! GetChannelSize: a channel's bucket files and their bytes on disk (zeros for a missing one).

use super::{bad_request, check_channel_name};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::decode_channel;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let channel = match decode_channel(request.body) {
        Ok(channel) => channel,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel_name(channel, reply) {
        return handled;
    }
    let size = node.engine.channel_size(channel);
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
