//! RemoveChannel: delete a channel and all its bucket files (admins only when authentication is
//! on). Reads of it that are running end early with Ok; a missing channel is fine (Ok).

use super::{bad_request, engine_error};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::decode_channel;
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
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    let existed = node.engine.generation(channel).is_some();
    match node.engine.remove_channel(channel) {
        Ok(()) => {
            if existed {
                tracing::info!(
                    "channel {channel} removed by {:?} from {}",
                    request.client.name,
                    request.client.peer
                );
            }
            reply.ok(&[]);
            Handled::Replied
        }
        Err(error) => engine_error(reply, error),
    }
}
