//! ConsumeAck: the client has processed the first `records` records of its Consume `consume_id`
//! (on this connection). The node frees them for good (they will not be delivered again, not even
//! after a crash) and resumes the stream if it was waiting for this ack.
//!
//! Replies: Ok empty; NotFound when no such Consume runs on this connection (it ended: a late
//! ack is harmless); BadRequest when `records` exceeds what the stream sent. An ack of fewer
//! records than an earlier one changes nothing.

use super::bad_request;
use crate::consumers::MAX_UNACKED_BATCHES;
use crate::service::QueueNode;
use node_core::protocol::queue::ConsumeAckRequest;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let ack = match ConsumeAckRequest::decode(request.body) {
        Ok(ack) => ack,
        Err(error) => return bad_request(reply, error),
    };
    let Some(consumer) = node.consumers.find(request.client.peer, ack.consume_id) else {
        reply.send(Status::NotFound, &[]);
        return Handled::Replied;
    };
    if ack.records > consumer.sent {
        reply.error(
            Status::BadRequest,
            format!(
                "ConsumeAck of {} records, but Consume {} sent {}",
                ack.records, ack.consume_id, consumer.sent
            ),
        );
        return Handled::Replied;
    }
    if consumer.ended || ack.records <= consumer.acked {
        reply.ok(&[]);
        return Handled::Replied;
    }
    let Some(ring) = node.channels.ring_mut(&consumer.storage) else {
        reply.ok(&[]);
        return Handled::Replied;
    };
    let mut todo = ack.records - consumer.acked;
    while todo > 0 {
        let Some(span) = consumer.unacked.pop_front() else {
            break;
        };
        let len = span.end_seq - span.first_seq;
        let result = if todo >= len {
            ring.ack(span).map(|()| None)
        } else {
            ring.ack_prefix(span, todo)
        };
        match result {
            Ok(rest) => {
                if let Some(rest) = rest {
                    consumer.unacked.push_front(rest);
                }
                todo -= todo.min(len);
            }
            Err(error) => {
                // The spans are the ring's own hand-outs: an error here is a bug.
                tracing::error!(storage = consumer.storage, "ConsumeAck: {error}");
                reply.error(Status::InternalError, format!("acknowledging: {error}"));
                return Handled::Replied;
            }
        }
    }
    node.removed_records += ack.records - consumer.acked;
    consumer.acked = ack.records;
    if consumer.waiting_for_ack && consumer.unacked.len() < MAX_UNACKED_BATCHES {
        consumer.waiting_for_ack = false;
        if let Some(handle) = consumer.handle {
            node.wakeups.wake(handle);
        }
    }
    reply.ok(&[]);
    Handled::Replied
}
