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
//! Across a crash the same holds (the ring persists only what was acknowledged). These are the
//! engine's rules ([`crate::engine::consumers`]); this module encodes the batches.
//!
//! The stream ends with Ok when its channel is removed (RemoveChannel).
//!
//! Memory: a batch is built in the node's shared buffer and sent within the turn, so between
//! turns a Consume holds only its entry in the consumer registry (with at most
//! `MAX_UNACKED_BATCHES` spans), which it reports to the stream memory budgets.

use super::check_subscriber;
use crate::engine::{Consumed, ConsumerId, Engine};
use crate::service::QueueNode;
use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::queue::{check_channel_name, ConsumeRequest, ITEM_RECORD_BATCH};
use node_core::protocol::Status;
use node_core::server::{
    Handled, Outcome, Reply, Request, StreamHandle, StreamOut, StreamStep, StreamTask,
};

/// Value bytes a batch aims at.
const BATCH_VALUE_BYTES: u64 = 64 * 1024;
/// Records per batch unless the client asks for fewer.
const DEFAULT_BATCH_RECORDS: usize = 4096;
/// A batch buffer grown beyond this (one large value) is given back after use.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;

pub(super) fn handle(
    node: &mut QueueNode,
    request: &Request<'_>,
    _reply: &mut Reply<'_>,
) -> Outcome<QueueNode> {
    let consume = ConsumeRequest::decode(request.body)?;
    check_channel_name(consume.channel)?;
    check_subscriber(consume.subscriber)?;
    let max_batch_records = match consume.max_batch_records {
        0 => DEFAULT_BATCH_RECORDS,
        n => (n as usize).min(DEFAULT_BATCH_RECORDS),
    };
    let key = (request.client.peer, request.request_id);
    let (id, storage_len) =
        node.engine
            .start_consumer(consume.channel, consume.subscriber, key, max_batch_records)?;
    Ok(Handled::Stream(Box::new(Consume { id, storage_len })))
}

struct Consume {
    id: ConsumerId,
    /// The length of its storage's name, which the registry keeps (for `held_bytes`).
    storage_len: usize,
}

impl StreamTask<QueueNode> for Consume {
    fn resume(&mut self, node: &mut QueueNode, out: &mut StreamOut<'_>) -> StreamStep {
        // The node's buffer, filled and sent within this turn.
        let mut raw = std::mem::take(&mut node.consume_scratch);
        raw.clear();
        let mut count = 0u32;
        let consumed =
            node.engine
                .consume(self.id, out.handle(), BATCH_VALUE_BYTES, |seq, value| {
                    append_record(&mut raw, seq, value);
                    count += 1;
                });
        let step = match consumed {
            Consumed::Batch(span) => {
                assert_eq!(
                    u64::from(count),
                    span.end_seq - span.first_seq,
                    "batch count"
                );
                out.item_with(ITEM_RECORD_BATCH, |body| encode_batch(&raw, count, body));
                StreamStep::Continue
            }
            Consumed::WaitForRecords | Consumed::WaitForAck => StreamStep::Wait,
            Consumed::Ended => {
                out.finish(Status::Ok, &[]);
                StreamStep::Done
            }
            Consumed::Lost => {
                out.finish(Status::InternalError, b"consumer lost");
                StreamStep::Done
            }
        };
        if raw.capacity() <= KEEP_BUFFER_BYTES {
            node.consume_scratch = raw;
        }
        step
    }

    /// Its entry in the engine's consumer registry.
    fn held_bytes(&self) -> usize {
        Engine::<StreamHandle>::consumer_held_bytes(self.storage_len)
    }

    fn cancel(&mut self, node: &mut QueueNode) {
        node.engine.end_consumer(self.id);
        // Nothing else runs after a cancel: wake the consumers that can take the records back.
        node.wake_consumers();
    }
}
