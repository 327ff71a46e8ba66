//! Consume: a stream of a channel's records in LZ4 batches, as subscriber `subscriber` (empty:
//! the default subscriber). It subscribes first (see Subscribe: creates the channel; the first
//! subscriber takes over the queued records), so consumers under one name share that storage's
//! records and each name gets its own copy of every later push.
//!
//! Each Item is one batch (item code 1, docs/protocol.md §4) of up to `max_batch_records`
//! records and about 64 KiB of values; a record's key is its sequence number in the storage
//! (the same when it is delivered again). Records are taken as soon as they are there: when the
//! storage is empty the stream waits, and a push to it wakes it.
//!
//! Acknowledgement: records sent stay in the ring, handed out, until the client acknowledges
//! them with ConsumeAck (cumulative count, on the same connection). At most
//! `MAX_UNACKED_BATCHES` batches wait for it; then the stream pauses until an ack comes. When
//! the stream ends without them being acknowledged (Stop, a dropped connection, shutdown), its
//! unacknowledged records go back to the front of the storage, for the next consumer or Pop:
//! nothing is lost, and a record is delivered again only if its consumer did not acknowledge it.
//! Across a crash the same holds (the ring persists only what was acknowledged).
//!
//! The stream ends with Ok when its channel is removed (RemoveChannel).
//!
//! Memory: a batch is built in the node's shared buffer and sent within the turn, so between
//! turns a Consume holds only its entry in the consumer registry (with at most
//! `MAX_UNACKED_BATCHES` spans), which it reports to the stream memory budgets.

use super::{bad_request, check_channel, check_subscriber, engine_error};
use crate::consumers::{Consumer, ConsumerId, MAX_UNACKED_BATCHES};
use crate::engine::Span;
use crate::service::QueueNode;
use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::queue::{ConsumeRequest, ITEM_RECORD_BATCH};
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request, StreamOut, StreamStep, StreamTask};

/// Value bytes a batch aims at.
const BATCH_VALUE_BYTES: u64 = 64 * 1024;
/// Records per batch unless the client asks for fewer.
const DEFAULT_BATCH_RECORDS: usize = 4096;
/// A batch buffer grown beyond this (one large value) is given back after use.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<QueueNode> {
    let consume = match ConsumeRequest::decode(request.body) {
        Ok(consume) => consume,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel(reply, consume.channel)
        .and_then(|()| check_subscriber(reply, consume.subscriber))
    {
        return handled;
    }
    let capacity = node.config.channel_size_for(consume.channel);
    let storage = match node
        .channels
        .subscribe(consume.channel, consume.subscriber, capacity)
    {
        Ok((storage, _)) => storage,
        Err(error) => return engine_error(reply, error),
    };
    let max_batch_records = match consume.max_batch_records {
        0 => DEFAULT_BATCH_RECORDS,
        n => (n as usize).min(DEFAULT_BATCH_RECORDS),
    };
    let storage_len = storage.len();
    let id = node.consumers.add(
        storage,
        (request.client.peer, request.request_id),
        max_batch_records,
    );
    Handled::Stream(Box::new(Consume { id, storage_len }))
}

struct Consume {
    id: ConsumerId,
    /// The length of its storage's name, which the registry keeps (for `held_bytes`).
    storage_len: usize,
}

impl StreamTask<QueueNode> for Consume {
    fn resume(&mut self, node: &mut QueueNode, out: &mut StreamOut<'_>) -> StreamStep {
        let Some(consumer) = node.consumers.get_mut(self.id) else {
            out.finish(Status::InternalError, b"consumer lost");
            return StreamStep::Done;
        };
        consumer.handle.get_or_insert(out.handle());
        let ring = match node.channels.ring_mut(&consumer.storage) {
            Some(ring) if !consumer.ended => ring,
            _ => {
                // The channel was removed.
                node.consumers.remove(self.id);
                out.finish(Status::Ok, &[]);
                return StreamStep::Done;
            }
        };
        if consumer.unacked.len() >= MAX_UNACKED_BATCHES {
            consumer.waiting_for_ack = true;
            return StreamStep::Wait;
        }
        // The node's buffer, filled and sent within this turn.
        let mut raw = std::mem::take(&mut node.consume_scratch);
        raw.clear();
        let mut count = 0u32;
        let taken = ring.take_with(
            consumer.max_batch_records,
            BATCH_VALUE_BYTES,
            |seq, value| {
                append_record(&mut raw, seq, value);
                count += 1;
            },
        );
        let step = match taken {
            None => {
                node.consumers.wait_for_records(self.id);
                StreamStep::Wait
            }
            Some(span) => {
                consumer.unacked.push_back(span);
                consumer.sent += u64::from(count);
                out.item_with(ITEM_RECORD_BATCH, |body| encode_batch(&raw, count, body));
                StreamStep::Continue
            }
        };
        if raw.capacity() <= KEEP_BUFFER_BYTES {
            node.consume_scratch = raw;
        }
        step
    }

    /// Its registry entry: the consumer, its storage's name, its unacknowledged spans (at most
    /// `MAX_UNACKED_BATCHES`) and the two map entries that find it.
    fn held_bytes(&self) -> usize {
        std::mem::size_of::<Consumer>()
            + self.storage_len
            + MAX_UNACKED_BATCHES * std::mem::size_of::<Span>()
            + 64
    }

    fn cancel(&mut self, node: &mut QueueNode) {
        let Some(consumer) = node.consumers.remove(self.id) else {
            return;
        };
        if consumer.ended || consumer.unacked.is_empty() {
            return;
        }
        if let Some(ring) = node.channels.ring_mut(&consumer.storage) {
            for span in consumer.unacked {
                let records = span.end_seq - span.first_seq;
                match ring.give_back(span) {
                    Ok(()) => node.redelivered_records += records,
                    Err(error) => {
                        tracing::error!(
                            storage = consumer.storage,
                            "cannot give records back: {error}"
                        );
                    }
                }
            }
        }
        node.consumers
            .wake_storage(&consumer.storage, &node.wakeups);
    }
}
