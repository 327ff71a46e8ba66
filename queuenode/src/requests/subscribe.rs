//! Subscribe: register `subscriber` on `channel` (creating the channel if needed), so that its
//! storage receives a copy of every later push. The first subscriber of a channel without
//! subscribers takes over the records queued so far; a new name after that starts empty; a name
//! already subscribed changes nothing. Subscriptions last until RemoveChannel (the rules:
//! `engine::channels`). Errors: BadChannelName, OutOfMemory (a new ring beyond the limit).

use super::check_subscriber;
use crate::engine::Subscribed;
use crate::service::QueueNode;
use node_core::protocol::queue::{check_channel_name, SubscribeRequest};
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let subscribe = SubscribeRequest::decode(request.body)?;
    check_channel_name(subscribe.channel)?;
    check_subscriber(subscribe.subscriber)?;
    let (storage, outcome) = node
        .engine
        .subscribe(subscribe.channel, subscribe.subscriber)?;
    if outcome != Subscribed::Existing {
        tracing::info!(
            "{storage} subscribed ({outcome:?}) by {:?} from {}",
            request.client.name,
            request.client.peer
        );
    }
    reply.ok(&[]);
    Ok(Handled::Replied)
}
