//! RemoveChannel: drop a channel with every storage (subscribers included) and delete their ring
//! files, freeing their space at once (admins only when authentication is on). The channel's
//! running Consume streams end with Ok (their unacknowledged records go with the channel). A
//! missing channel is fine (Ok).

use super::{bad_request, check_channel, engine_error};
use crate::service::QueueNode;
use node_core::protocol::queue::decode_channel;
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
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    for storage in node.channels.storages(channel) {
        node.consumers.end_storage(&storage, &node.wakeups);
    }
    match node.channels.remove_channel(channel) {
        Ok(storages) if !storages.is_empty() => tracing::info!(
            "channel {channel} removed ({} storages) by {:?} from {}",
            storages.len(),
            request.client.name,
            request.client.peer
        ),
        Ok(_) => {}
        Err(error) => return engine_error(reply, error),
    }
    reply.ok(&[]);
    Handled::Replied
}
