//! The queue requests, one module each: its decoding (with the protocol's codec, which the
//! client shares), its checks of names and its execution (calls into [`crate::engine`], which
//! keeps the rules of the data: push, pop, subscribers, consumers and their acks). [`dispatch`]
//! turns a code into a [`QueueRequest`] and routes it with one exhaustive `match`;
//! GetChannels, GetChannelSize, GetSize and RemoveChannel are node-core's
//! ([`node_core::server::channel_requests`]) over the engine's [`ChannelStore`].

mod consume;
mod consume_ack;
mod pop;
mod produce;
mod push;
mod push_multi;
mod subscribe;

use crate::engine::{Engine, QueueError};
use crate::service::QueueNode;
use node_core::protocol::queue::{self, QueueRequest, QueueSize};
use node_core::protocol::{NodeKind, Status};
use node_core::server::channel_requests as channels;
use node_core::server::outcome::{finish, unsupported};
use node_core::server::{ChannelStore, ErrorReply, Handled, Reply, Request, StreamHandle};

pub(crate) fn dispatch(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let Some(kind) = QueueRequest::from_code(request.code) else {
        return unsupported(reply, request.code, NodeKind::Queue);
    };
    let outcome = match kind {
        QueueRequest::Push => push::handle(node, request, reply),
        QueueRequest::Pop => pop::handle(node, request, reply),
        QueueRequest::GetChannels => channels::get_channels(&node.engine, request, reply),
        QueueRequest::GetChannelSize => channels::get_channel_size(&node.engine, request, reply),
        QueueRequest::GetSize => channels::get_size(&node.engine, request, reply),
        QueueRequest::RemoveChannel => channels::remove_channel(&mut node.engine, request, reply),
        QueueRequest::PushMulti => push_multi::handle(node, request, reply),
        QueueRequest::Produce => produce::handle(node, request, reply),
        QueueRequest::Consume => consume::handle(node, request, reply),
        QueueRequest::ConsumeAck => consume_ack::handle(node, request, reply),
        QueueRequest::Subscribe => subscribe::handle(node, request, reply),
    };
    finish(reply, outcome)
}

/// The queue's channels for the shared channel requests: a size sums the channel's storages
/// (records, value bytes, used ring bytes, capacity); a removal deletes every storage's ring
/// file and ends their consumers with Ok.
impl ChannelStore for Engine<StreamHandle> {
    type Size = QueueSize;
    type Error = QueueError;

    fn channel_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.channels().channel_names()
    }

    fn channel_size(&self, channel: &str) -> QueueSize {
        Engine::channel_size(self, channel)
    }

    fn total_size(&self) -> QueueSize {
        Engine::total_size(self)
    }

    fn remove_channel(&mut self, channel: &str) -> Result<Option<String>, QueueError> {
        let storages = Engine::remove_channel(self, channel)?;
        Ok((!storages.is_empty()).then(|| format!("{} storages", storages.len())))
    }
}

/// Refuses every name of `channels` that is not a plain channel name (the one check, in
/// order).
fn check_channels(channels: &[&str]) -> Result<(), ErrorReply> {
    for channel in channels {
        queue::check_channel_name(channel)?;
    }
    Ok(())
}

/// Refuses a subscriber name that is not one (empty is the default subscriber): BadChannelName,
/// as for a channel.
fn check_subscriber(subscriber: &str) -> Result<(), ErrorReply> {
    if queue::valid_subscriber_name(subscriber) {
        return Ok(());
    }
    Err(ErrorReply::new(
        Status::BadChannelName,
        format!("subscriber name {subscriber:?} is not 0 to 100 of A-Z a-z 0-9 _ -"),
    ))
}
