//! Subscribe: register `subscriber` on `channel` (creating the channel if needed), so that its
//! storage receives a copy of every later push. The first subscriber of a channel without
//! subscribers takes over the records queued so far; a new name after that starts empty; a name
//! already subscribed changes nothing. Subscriptions last until RemoveChannel (see
//! `engine::channels`). Errors: BadChannelName, OutOfMemory (a new ring beyond the limit).

use super::{bad_request, check_channel, check_subscriber, engine_error};
use crate::engine::Subscribed;
use crate::service::QueueNode;
use node_core::protocol::queue::SubscribeRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let subscribe = match SubscribeRequest::decode(request.body) {
        Ok(subscribe) => subscribe,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel(reply, subscribe.channel)
        .and_then(|()| check_subscriber(reply, subscribe.subscriber))
    {
        return handled;
    }
    let capacity = node.config.channel_size_for(subscribe.channel);
    match node
        .channels
        .subscribe(subscribe.channel, subscribe.subscriber, capacity)
    {
        Ok((storage, outcome)) => {
            if outcome != Subscribed::Existing {
                tracing::info!(
                    "{storage} subscribed ({outcome:?}) by {:?} from {}",
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
