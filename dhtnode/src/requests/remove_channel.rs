//! RemoveChannel: drop a channel and all its records (admins only when authentication is on).
//! Its Listen streams end; a missing channel is fine (Ok).

use super::{bad_request, engine_error};
use crate::service::DhtNode;
use node_core::protocol::dht::decode_channel;
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
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    match node.engine.remove_channel(channel) {
        Ok(existed) => {
            if let Some(dumper) = &mut node.dumper {
                dumper.channel_removed(channel);
            }
            if existed {
                tracing::info!(
                    "channel {channel} removed by {:?} from {}",
                    request.client.name,
                    request.client.peer
                );
            }
            reply.ok(&[]);
        }
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
