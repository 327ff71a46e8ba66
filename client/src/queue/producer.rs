//! [`Producer`]: a streaming push. Values are collected into LZ4 batches (about 64 KiB, at most
//! 4096 values); each batch is one Produce request to the next node round-robin, and its Reply
//! acknowledges it, saying how many of its values the node stored (docs/protocol.md §8.5).
//!
//! At most [`WINDOW`] batches are unacknowledged at a time: sending one more first waits for
//! the oldest reply. That bounds the client's memory (it keeps every unacknowledged value, to
//! send it elsewhere if needed) and the node's backlog, like a stream's credit.
//!
//! Values a node did not store (its ring was full, or it could not be reached) go to the next
//! node; a batch fails only when no node stored any of what was left of it after a full round.
//! A node that dropped the connection with the batch in flight may have stored it: it is sent
//! again elsewhere, so a value may then be stored twice (at least once, never lost). Order is
//! kept per node; across nodes a queue cluster has no order anyway.

use super::{check_channel_count, push_elsewhere, refused_by_client, QueueClient};
use crate::error::ClientError;
use crate::reply::{Pending, Reply};
use node_core::protocol::batch::{append_record, encode_batch, DEFAULT_BATCH_TARGET_BYTES};
use node_core::protocol::queue::{self as wire, ProduceReply, ProduceRequest};
use node_core::protocol::Status;
use std::collections::VecDeque;

/// Batches sent and not yet acknowledged.
pub const WINDOW: usize = 8;
/// Values per batch at most.
pub const MAX_BATCH_VALUES: usize = 4096;

struct InFlight {
    pending: Pending,
    values: Vec<Vec<u8>>,
    /// Nodes tried in a row without storing anything of these values.
    fruitless: usize,
}

/// A streaming push to one or more channels. Create with [`QueueClient::producer`]; call
/// [`Producer::finish`] at the end (dropping a producer sends nothing more: values not yet
/// acknowledged may be lost).
pub struct Producer<'a> {
    queue: &'a QueueClient,
    core: ProducerCore,
    in_flight: VecDeque<InFlight>,
}

impl<'a> Producer<'a> {
    pub(super) fn new(queue: &'a QueueClient, channels: &[&str]) -> Producer<'a> {
        Producer {
            queue,
            core: ProducerCore::new(channels),
            in_flight: VecDeque::new(),
        }
    }

    /// Values acknowledged as stored so far.
    pub fn stored(&self) -> u64 {
        self.core.stored
    }

    /// Queues one value; sends a batch when one is full (waiting for the oldest batch's
    /// acknowledgement when [`WINDOW`] are unacknowledged). Empty values are refused here, as
    /// a node would refuse the whole batch holding one.
    pub fn send(&mut self, value: Vec<u8>) -> Result<(), ClientError> {
        if let Some(values) = self.core.queue_value(self.queue, value)? {
            self.dispatch(values, 0)?;
        }
        Ok(())
    }

    /// Sends the values queued so far and waits until every batch is acknowledged.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        if let Some(values) = self.core.take_batch() {
            self.dispatch(values, 0)?;
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest()?;
        }
        Ok(())
    }

    /// Flushes, and returns how many values were stored in all.
    pub fn finish(mut self) -> Result<u64, ClientError> {
        self.flush()?;
        Ok(self.core.stored)
    }

    /// Sends `values` as one batch to the next node, first making room in the window.
    fn dispatch(&mut self, values: Vec<Vec<u8>>, fruitless: usize) -> Result<(), ClientError> {
        check_channel_count(self.queue, self.core.channels.len())?;
        while self.in_flight.len() >= WINDOW {
            self.complete_oldest()?;
        }
        let body = self.core.body(&values);
        let node = next_node(self.queue)?;
        let pending = self
            .queue
            .client()
            .submit_owned(node, wire::PRODUCE, body)?;
        self.in_flight.push_back(InFlight {
            pending,
            values,
            fruitless,
        });
        Ok(())
    }

    /// Waits for the oldest batch's acknowledgement; sends what it did not store elsewhere.
    fn complete_oldest(&mut self) -> Result<(), ClientError> {
        let Some(batch) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcome = batch.pending.wait();
        let rest = self
            .core
            .judge(self.queue, outcome, batch.values, batch.fruitless)?;
        match rest {
            Some((values, fruitless)) => self.dispatch(values, fruitless),
            None => Ok(()),
        }
    }
}

/// Values a node did not store, to send to the next node, with how many nodes in a row stored
/// nothing of them.
pub(crate) type Resend = (Vec<Vec<u8>>, usize);

/// What the blocking [`Producer`] and the async one (`asynchronous::AsyncProducer`) share:
/// the values being collected, the count stored, a batch's request body, and the judgement of
/// its reply. Only how a batch is sent and awaited differs.
pub(crate) struct ProducerCore {
    pub(crate) channels: Vec<String>,
    batch: Vec<Vec<u8>>,
    batch_bytes: usize,
    pub(crate) stored: u64,
}

impl ProducerCore {
    pub(crate) fn new(channels: &[&str]) -> ProducerCore {
        ProducerCore {
            channels: channels.iter().map(|channel| channel.to_string()).collect(),
            batch: Vec::new(),
            batch_bytes: 0,
            stored: 0,
        }
    }

    /// Queues one value (an empty one is refused); returns the batch to send once it is full.
    pub(crate) fn queue_value(
        &mut self,
        queue: &QueueClient,
        value: Vec<u8>,
    ) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        if value.is_empty() {
            let message = "values must not be empty";
            return Err(refused_by_client(queue, Status::EmptyValue, message));
        }
        self.batch_bytes += value.len();
        self.batch.push(value);
        if self.batch_bytes >= DEFAULT_BATCH_TARGET_BYTES || self.batch.len() >= MAX_BATCH_VALUES {
            return Ok(self.take_batch());
        }
        Ok(None)
    }

    /// The values queued, if any, as the next batch.
    pub(crate) fn take_batch(&mut self) -> Option<Vec<Vec<u8>>> {
        self.batch_bytes = 0;
        (!self.batch.is_empty()).then(|| std::mem::take(&mut self.batch))
    }

    /// The Produce request body of one batch of `values` to every channel.
    pub(crate) fn body(&self, values: &[Vec<u8>]) -> Vec<u8> {
        let mut raw = Vec::with_capacity(values.iter().map(|v| v.len() + 12).sum());
        for value in values {
            append_record(&mut raw, 0, value);
        }
        let mut batch = Vec::new();
        encode_batch(&raw, values.len() as u32, &mut batch);
        let channels: Vec<&str> = self.channels.iter().map(String::as_str).collect();
        let mut body = Vec::with_capacity(batch.len() + 256);
        ProduceRequest {
            channels,
            batch: &batch,
        }
        .encode(&mut body);
        body
    }

    /// Counts what a batch's reply says was stored; returns the values to send to the next
    /// node with their fruitless count, `None` when all were stored. Fails when every node in
    /// a row stored nothing of them, or on an error that another node would not change.
    pub(crate) fn judge(
        &mut self,
        queue: &QueueClient,
        outcome: Result<Reply, ClientError>,
        values: Vec<Vec<u8>>,
        fruitless: usize,
    ) -> Result<Option<Resend>, ClientError> {
        let outcome = outcome.and_then(|reply| {
            let node = reply.node;
            let body = reply.ok_body()?;
            ProduceReply::decode(&body)
                .map_err(|e| ClientError::protocol(node, format!("Produce reply: {e}")))
        });
        let (stored, error) = match outcome {
            Ok(reply) => ((reply.stored as usize).min(values.len()), None),
            Err(error) if push_elsewhere(&error) => (0, Some(error)),
            Err(error) => return Err(error),
        };
        self.stored += stored as u64;
        if stored == values.len() {
            return Ok(None);
        }
        let fruitless = if stored > 0 { 0 } else { fruitless + 1 };
        if fruitless >= queue.node_count() {
            return Err(error.unwrap_or_else(|| {
                let message = "every node's ring is full for the rest of a Produce batch";
                refused_by_client(queue, Status::ChannelFull, message)
            }));
        }
        Ok(Some((values.into_iter().skip(stored).collect(), fruitless)))
    }
}

/// The next node round-robin that is not known to be down.
pub(crate) fn next_node(queue: &QueueClient) -> Result<usize, ClientError> {
    let client = queue.client();
    let mut last_error = None;
    for node in queue.rotation() {
        match client.check_node(node) {
            Ok(()) => return Ok(node),
            Err(error) if push_elsewhere(&error) => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or(ClientError::NoNodes))
}

impl std::fmt::Debug for Producer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("channels", &self.core.channels)
            .field("queued", &self.core.batch.len())
            .field("unacknowledged_batches", &self.in_flight.len())
            .field("stored", &self.core.stored)
            .finish()
    }
}
