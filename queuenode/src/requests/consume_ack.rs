//! ConsumeAck: the client has processed the first `records` records of its Consume `consume_id`
//! (on this connection). The node frees them for good (they will not be delivered again, not even
//! after a crash) and resumes the stream if it was waiting for this ack (the engine's rules:
//! [`crate::engine::Engine::ack`]).
//!
//! Replies: Ok empty; NotFound when no such Consume runs on this connection (it ended: a late
//! ack is harmless); BadRequest when `records` exceeds what the stream sent. An ack of fewer
//! records than an earlier one changes nothing.

use crate::service::QueueNode;
use node_core::protocol::queue::ConsumeAckRequest;
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let ack = ConsumeAckRequest::decode(request.body)?;
    let key = (request.client.peer, ack.consume_id);
    if node.engine.ack(key, ack.records)? {
        reply.ok(&[]);
    } else {
        reply.send(Status::NotFound, &[]);
    }
    Ok(Handled::Replied)
}
