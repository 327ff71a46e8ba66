//! RemoveChannel: drop a channel with every storage (subscribers included) and delete their ring
//! files, freeing their space at once (admins only when authentication is on). A missing channel
//! is fine (Ok). (Ending the channel's consumers comes with Consume.)

use super::{bad_request, check_channel, engine_error};
use crate::service::QueueNode;
use node_core::protocol::queue::decode_channel;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let channel = match decode_channel(request.body) {
        Ok(channel) => channel,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel(reply, channel) {
        return handled;
    }
    if !request.client.admin {
        reply.error(
            Status::NotPermitted,
            format!("removing channel {channel:?} needs an admin client"),
        );
        return Handled::Replied;
    }
    let storages = node.storages_of(channel);
    for name in &storages {
        if let Err(error) = node.queues.remove(name) {
            return engine_error(reply, error);
        }
    }
    if !storages.is_empty() {
        tracing::info!(
            "channel {channel} removed ({} storages) by {:?} from {}",
            storages.len(),
            request.client.name,
            request.client.peer
        );
    }
    reply.ok(&[]);
    Handled::Replied
}
