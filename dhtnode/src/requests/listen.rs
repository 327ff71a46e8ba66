//! Listen: a stream of a channel's changes in the order they happened: Changed (key and new
//! value), Removed (key), Overflow (how many changes this listener lost because it fell behind
//! and its queue filled), until the channel is removed, which ends the stream with Ok.

use crate::engine::{ListenEvent, ListenerId};
use crate::service::DhtNode;
use node_core::protocol::dht::{decode_channel, ListenItem};
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request, StreamOut, StreamStep, StreamTask};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    _reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let channel = decode_channel(request.body)?;
    let id = node.engine.subscribe(channel)?;
    Ok(Handled::Stream(Box::new(Listen {
        channel: channel.to_string(),
        id,
        registered: false,
    })))
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
        let event = loop {
            match node.engine.next_listen_event(self.id) {
                // A RemoveVersion of a key without a record only set a tombstone: no change a
                // Listen reports (docs/protocol.md §6.11).
                Some(ListenEvent::Removed { record: false, .. }) => continue,
                event => break event,
            }
        };
        let item = match event {
            None => return StreamStep::Wait,
            Some(ListenEvent::Changed { key, value, .. }) => {
                let item = ListenItem::Changed { key, value: &value };
                out.item_with(item.code(), |body| item.encode_body(body));
                return StreamStep::Continue;
            }
            Some(ListenEvent::Removed { key, .. }) => ListenItem::Removed { key },
            Some(ListenEvent::Lost(lost)) => ListenItem::Overflow { lost },
            Some(ListenEvent::ChannelRemoved) => {
                self.end(node);
                out.finish(Status::Ok, &[]);
                return StreamStep::Done;
            }
        };
        out.item_with(item.code(), |body| item.encode_body(body));
        StreamStep::Continue
    }

    fn cancel(&mut self, node: &mut DhtNode) {
        self.end(node);
    }

    /// The channel name. The changes queued for the listener are bounded by the engine's
    /// listener limits (per listener and node-wide), not by the stream memory budgets.
    fn held_bytes(&self) -> usize {
        self.channel.capacity()
    }
}
