//! Listen: a stream of a channel's changes in the order they happened: Changed (key and new
//! value), Removed (key), Overflow (how many changes this listener lost because it fell behind
//! and its queue filled), until the channel is removed, which ends the stream with Ok.

use super::{bad_request, engine_error};
use crate::engine::{ListenEvent, ListenerId};
use crate::service::DhtNode;
use node_core::protocol::dht::{decode_channel, ITEM_CHANGED, ITEM_OVERFLOW, ITEM_REMOVED};
use node_core::protocol::wire::put_u64;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request, StreamOut, StreamStep, StreamTask};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let channel = match decode_channel(request.body) {
        Ok(channel) => channel,
        Err(error) => return bad_request(reply, error),
    };
    match node.engine.subscribe(channel) {
        Ok(id) => Handled::Stream(Box::new(Listen {
            channel: channel.to_string(),
            id,
            registered: false,
        })),
        Err(error) => engine_error(reply, error),
    }
}

struct Listen {
    channel: String,
    id: ListenerId,
    /// Whether the node knows this stream's handle (learnt on the first resume).
    registered: bool,
}

impl Listen {
    fn end(&mut self, node: &mut DhtNode) {
        node.engine.unsubscribe(&self.channel, self.id);
        node.listen_streams.remove(&self.id);
    }
}

impl StreamTask<DhtNode> for Listen {
    fn resume(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        if !self.registered {
            node.listen_streams.insert(self.id, out.handle());
            self.registered = true;
        }
        match node.engine.next_listen_event(self.id) {
            None => StreamStep::Wait,
            Some(ListenEvent::Changed { key, value }) => {
                out.item_with(ITEM_CHANGED, |body| {
                    put_u64(body, key);
                    body.extend_from_slice(&value);
                });
                StreamStep::Continue
            }
            Some(ListenEvent::Removed { key }) => {
                out.item_with(ITEM_REMOVED, |body| put_u64(body, key));
                StreamStep::Continue
            }
            Some(ListenEvent::Lost(count)) => {
                out.item_with(ITEM_OVERFLOW, |body| put_u64(body, count));
                StreamStep::Continue
            }
            Some(ListenEvent::ChannelRemoved) => {
                self.end(node);
                out.finish(Status::Ok, &[]);
                StreamStep::Done
            }
        }
    }

    fn cancel(&mut self, node: &mut DhtNode) {
        self.end(node);
    }
}
