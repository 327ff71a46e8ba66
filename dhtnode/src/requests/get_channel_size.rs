//! GetChannelSize: records and bytes of one channel (zeros for a missing channel).

use super::{bad_request, engine_error};
use crate::engine::EngineError;
use crate::service::DhtNode;
use node_core::protocol::dht::{decode_channel, valid_channel_name};
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let channel = match decode_channel(request.body) {
        Ok(channel) => channel,
        Err(error) => return bad_request(reply, error),
    };
    if !valid_channel_name(channel) {
        return engine_error(reply, EngineError::BadChannelName(channel.to_string()));
    }
    let size = node.engine.channel_size(channel);
    reply.send_with(Status::Ok, |out| size.encode(out));
    Handled::Replied
}
