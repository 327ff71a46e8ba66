//! [`AsyncQueueClient`]: [`QueueClient`]'s operations as `async fn`s, and [`AsyncConsumer`].
//!
//! Push, PushMulti, Pop and the producer's batches are sent from the task to the nodes in the
//! blocking client's round-robin order, each answer judged by the same rules
//! (`failover::judge_write` for pushes, `queue::PopWalk` for pops, the producer's shared
//! `ProducerCore`). A consumer merges every node's stream and acknowledges what was taken: it
//! is the blocking [`crate::queue::Consumer`] itself, polled by the task over a stream set the
//! task polls (no thread of its own), so that a record counts as processed exactly when the
//! blocking consumer's rule says (the next `next`). Subscribe, opening a consumer, stopping it
//! (it waits for the nodes' confirmations) and the fan-outs run on tokio's blocking pool.

use super::bridge::blocking;
use super::reopen::ReopenTimer;
use super::transport::{AsyncPending, Transport};
use crate::error::ClientError;
use crate::failover::{judge_write, WriteStep};
use crate::partial::Partial;
use crate::queue::{
    check_channel_count, next_node, push_elsewhere, ConsumeSpec, Consumer, PopWalk, ProducerCore,
    QueueClient, QueueSize, Resend, NO_ADDR, PRODUCER_WINDOW,
};
use node_core::protocol::queue as wire;
use node_core::protocol::RequestCode;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A connected queue cluster, for tokio. Clone it freely: clones share the connections.
#[derive(Clone)]
pub struct AsyncQueueClient {
    queue: Arc<QueueClient>,
    transport: Transport,
}

impl AsyncQueueClient {
    cluster_constructors!(AsyncQueueClient, QueueClient);
    topology_changes!(queue, QueueClient);

    /// The async face of a blocking client; both may be used at once.
    pub fn from_blocking(queue: Arc<QueueClient>) -> AsyncQueueClient {
        let transport = Transport::of(queue.client());
        AsyncQueueClient { queue, transport }
    }

    /// The blocking client underneath.
    pub fn blocking(&self) -> &Arc<QueueClient> {
        &self.queue
    }

    /// [`QueueClient::push`]: pushes `value` on one node; returns that node's index.
    pub async fn push(&self, channel: &str, value: &[u8]) -> Result<usize, ClientError> {
        let body = self.queue.encode_push(channel, value)?;
        self.push_body(wire::PUSH, body, "Push").await
    }

    /// [`QueueClient::push_multi`]: pushes `value` to every channel of `channels` on one node.
    pub async fn push_multi(&self, channels: &[&str], value: &[u8]) -> Result<usize, ClientError> {
        let body = self.queue.encode_push_multi(channels, value)?;
        self.push_body(wire::PUSH_MULTI, body, "PushMulti").await
    }

    async fn push_body(
        &self,
        code: RequestCode,
        body: Vec<u8>,
        request: &str,
    ) -> Result<usize, ClientError> {
        let mut last_error = None;
        for node in self.queue.rotation() {
            let result = self.transport.request(node, code, body.clone()).await;
            match judge_write(result, push_elsewhere, request) {
                WriteStep::Stored(_) => return Ok(node),
                WriteStep::Next(error) => last_error = Some(error),
                WriteStep::Failed(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoNodes))
    }

    /// [`QueueClient::pop`]: one record from whichever node has one; `None` when every node
    /// answered that the channel is empty.
    pub async fn pop(&self, channel: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let popped = self.pop_partial(channel).await?;
        match popped.value {
            Some(value) => Ok(Some(value)),
            None => popped.complete(),
        }
    }

    /// [`QueueClient::pop_partial`]: the record popped, if one was, and the nodes that could
    /// not be asked.
    pub async fn pop_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<Option<Vec<u8>>>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let mut walk = PopWalk::default();
        for node in self.queue.rotation() {
            let addr = self.queue.client().node_addr(node).unwrap_or(NO_ADDR);
            let answer = self.transport.request(node, wire::POP, body.clone()).await;
            if let Some(done) = walk.take(addr, answer) {
                return done;
            }
        }
        walk.finish()
    }

    /// [`QueueClient::consume`]: see [`AsyncConsumer`].
    pub async fn consume(
        &self,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
    ) -> Result<AsyncConsumer, ClientError> {
        AsyncConsumer::open(self, channel, subscriber, max_batch_records, false).await
    }

    /// [`QueueClient::consume_partial`]: starts without the nodes that are down and consumes
    /// from them once they are back.
    pub async fn consume_partial(
        &self,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
    ) -> Result<AsyncConsumer, ClientError> {
        AsyncConsumer::open(self, channel, subscriber, max_batch_records, true).await
    }

    /// [`QueueClient::subscribe`].
    pub async fn subscribe(&self, channel: &str, subscriber: &str) -> Result<(), ClientError> {
        let (queue, channel, subscriber) = (
            self.queue.clone(),
            channel.to_string(),
            subscriber.to_string(),
        );
        blocking(move || queue.subscribe(&channel, &subscriber)).await
    }

    /// [`QueueClient::get_channels`].
    pub async fn get_channels(&self) -> Result<Vec<String>, ClientError> {
        let queue = self.queue.clone();
        blocking(move || queue.get_channels()).await
    }

    /// [`QueueClient::get_channels_partial`].
    pub async fn get_channels_partial(&self) -> Result<Partial<Vec<String>>, ClientError> {
        let queue = self.queue.clone();
        blocking(move || queue.get_channels_partial()).await
    }

    /// [`QueueClient::get_size`].
    pub async fn get_size(&self) -> Result<QueueSize, ClientError> {
        let queue = self.queue.clone();
        blocking(move || queue.get_size()).await
    }

    /// [`QueueClient::get_size_partial`].
    pub async fn get_size_partial(&self) -> Result<Partial<QueueSize>, ClientError> {
        let queue = self.queue.clone();
        blocking(move || queue.get_size_partial()).await
    }

    /// [`QueueClient::get_channel_size_partial`].
    pub async fn get_channel_size_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<QueueSize>, ClientError> {
        let (queue, channel) = (self.queue.clone(), channel.to_string());
        blocking(move || queue.get_channel_size_partial(&channel)).await
    }

    /// [`QueueClient::get_channel_size_per_node`].
    pub async fn get_channel_size_per_node(
        &self,
        channel: &str,
    ) -> Result<Vec<(SocketAddr, QueueSize)>, ClientError> {
        let (queue, channel) = (self.queue.clone(), channel.to_string());
        blocking(move || queue.get_channel_size_per_node(&channel)).await
    }

    /// [`QueueClient::get_channel_size_per_node_partial`].
    pub async fn get_channel_size_per_node_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<Vec<(SocketAddr, QueueSize)>>, ClientError> {
        let (queue, channel) = (self.queue.clone(), channel.to_string());
        blocking(move || queue.get_channel_size_per_node_partial(&channel)).await
    }

    /// [`QueueClient::producer`]: a streaming push (Produce), see [`AsyncProducer`].
    pub fn producer(&self, channels: &[&str]) -> AsyncProducer {
        AsyncProducer {
            queue: self.queue.clone(),
            transport: self.transport.clone(),
            core: ProducerCore::new(channels),
            in_flight: VecDeque::new(),
        }
    }

    /// [`QueueClient::get_channel_size`].
    pub async fn get_channel_size(&self, channel: &str) -> Result<QueueSize, ClientError> {
        let (queue, channel) = (self.queue.clone(), channel.to_string());
        blocking(move || queue.get_channel_size(&channel)).await
    }

    /// [`QueueClient::remove_channel`].
    pub async fn remove_channel(&self, channel: &str) -> Result<(), ClientError> {
        let (queue, channel) = (self.queue.clone(), channel.to_string());
        blocking(move || queue.remove_channel(&channel)).await
    }
}

impl std::fmt::Debug for AsyncQueueClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncQueueClient")
            .field("queue", &self.queue)
            .finish()
    }
}

/// A streaming push (Produce) for tokio: [`crate::queue::Producer`]'s batches, window and
/// rules (values a node did not store go to the next; see there), sent from the task. Create
/// with [`AsyncQueueClient::producer`]; call [`AsyncProducer::finish`] at the end (dropping a
/// producer sends nothing more: values not yet acknowledged may be lost).
pub struct AsyncProducer {
    queue: Arc<QueueClient>,
    transport: Transport,
    core: ProducerCore,
    /// Batches sent and not yet acknowledged, oldest first, with their values and how many
    /// nodes in a row stored nothing of them.
    in_flight: VecDeque<(AsyncPending, Vec<Vec<u8>>, usize)>,
}

impl AsyncProducer {
    /// Values acknowledged as stored so far.
    pub fn stored(&self) -> u64 {
        self.core.stored
    }

    /// [`crate::queue::Producer::send`]: queues one value; sends a batch when one is full.
    pub async fn send(&mut self, value: Vec<u8>) -> Result<(), ClientError> {
        if let Some(values) = self.core.queue_value(&self.queue, value)? {
            self.dispatch(values, 0).await?;
        }
        Ok(())
    }

    /// Sends the values queued so far and waits until every batch is acknowledged.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if let Some(values) = self.core.take_batch() {
            self.dispatch(values, 0).await?;
        }
        while !self.in_flight.is_empty() {
            if let Some((rest, fruitless)) = self.settle_oldest().await? {
                self.dispatch(rest, fruitless).await?;
            }
        }
        Ok(())
    }

    /// Flushes, and returns how many values were stored in all.
    pub async fn finish(mut self) -> Result<u64, ClientError> {
        self.flush().await?;
        Ok(self.core.stored)
    }

    /// Sends `values` as one batch to the next node, first making room in the window. What
    /// the oldest batch's node did not store goes out first, as the blocking producer does
    /// (a work list here, where the blocking one recurses).
    async fn dispatch(
        &mut self,
        values: Vec<Vec<u8>>,
        fruitless: usize,
    ) -> Result<(), ClientError> {
        let mut to_send = VecDeque::from([(values, fruitless)]);
        while let Some((values, fruitless)) = to_send.pop_front() {
            check_channel_count(&self.queue, self.core.channels.len())?;
            if self.in_flight.len() >= PRODUCER_WINDOW {
                to_send.push_front((values, fruitless));
                if let Some(rest) = self.settle_oldest().await? {
                    to_send.push_front(rest);
                }
                continue;
            }
            let body = self.core.body(&values);
            let node = next_node(&self.queue)?;
            let pending = self.transport.submit(node, wire::PRODUCE, body).await?;
            self.in_flight.push_back((pending, values, fruitless));
        }
        Ok(())
    }

    /// Awaits the oldest batch's acknowledgement; returns what its node did not store.
    async fn settle_oldest(&mut self) -> Result<Option<Resend>, ClientError> {
        let Some((pending, values, fruitless)) = self.in_flight.pop_front() else {
            return Ok(None);
        };
        let outcome = pending.wait().await;
        self.core.judge(&self.queue, outcome, values, fruitless)
    }
}

impl std::fmt::Debug for AsyncProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProducer")
            .field("channels", &self.core.channels)
            .field("unacknowledged_batches", &self.in_flight.len())
            .field("stored", &self.core.stored)
            .finish()
    }
}

/// A channel consumed on every node as one subscriber, for tokio: [`crate::queue::Consumer`]
/// itself, polled by the task (its streams deliver into a queue the task polls; no thread of
/// its own), with its rules: a record counts as processed at the next `next`;
/// [`AsyncConsumer::give_back`]; [`AsyncConsumer::stop`] acknowledges and gives back the rest.
/// Dropping it without `stop` does what `stop` does, on tokio's blocking pool (it waits for
/// the nodes' confirmations).
pub struct AsyncConsumer {
    /// `None` only once `stop` took it.
    consumer: Option<Consumer<'static>>,
    /// Wakes the task when a failed node's stream is due to be opened again.
    reopen: ReopenTimer,
}

impl AsyncConsumer {
    async fn open(
        client: &AsyncQueueClient,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
        partial: bool,
    ) -> Result<AsyncConsumer, ClientError> {
        let (queue, channel, subscriber) = (
            client.queue.clone(),
            channel.to_string(),
            subscriber.to_string(),
        );
        // Subscribing and opening wait for every node: on the blocking pool.
        let consumer = blocking(move || {
            let spec = ConsumeSpec {
                channel: &channel,
                subscriber: &subscriber,
                max_batch_records,
                partial,
            };
            Consumer::open_for_task(queue, &spec)
        })
        .await?;
        Ok(AsyncConsumer {
            consumer: Some(consumer),
            reopen: ReopenTimer::default(),
        })
    }

    /// The next record from any node, waiting up to `timeout`: `Ok(None)` when none came in
    /// time (and, once finished, at once). The record returned before counts as processed.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ClientError> {
        let next = std::future::poll_fn(|cx| self.poll_record(cx));
        match tokio::time::timeout(timeout, next).await {
            Ok(record) => record,
            Err(_) => Ok(None),
        }
    }

    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Vec<u8>>, ClientError>> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        loop {
            if let Poll::Ready(record) = consumer.poll_record(cx) {
                return Poll::Ready(record);
            }
            // Due: poll the consumer again, which reopens the failed node's stream.
            std::task::ready!(self.reopen.poll_due(consumer.next_reopen(), cx));
        }
    }

    /// The record `next` returned last was not processed: it goes back to its node's queue
    /// when the consumer stops (see [`crate::queue::Consumer::give_back`]).
    pub fn give_back(&mut self) -> Result<(), ClientError> {
        if let Some(consumer) = self.consumer.as_mut() {
            consumer.give_back();
        }
        Ok(())
    }

    /// The nodes not consumed from now, with why.
    pub async fn missing(&self) -> Result<Vec<(SocketAddr, ClientError)>, ClientError> {
        Ok(self
            .consumer
            .as_ref()
            .map(Consumer::missing)
            .unwrap_or_default())
    }

    /// Acknowledges everything taken, waits for the nodes to confirm, and stops every stream.
    pub async fn stop(mut self) -> Result<(), ClientError> {
        match self.consumer.take() {
            Some(consumer) => blocking(move || consumer.stop()).await,
            None => Ok(()),
        }
    }
}

impl Drop for AsyncConsumer {
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        // The blocking consumer's drop waits for the acknowledgements: not on a worker.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(consumer))),
            Err(_) => drop(consumer),
        }
    }
}

impl std::fmt::Debug for AsyncConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConsumer")
            .field("consumer", &self.consumer)
            .finish()
    }
}
