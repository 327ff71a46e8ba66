//! [`AsyncQueueClient`]: [`QueueClient`]'s operations as `async fn`s, and [`AsyncConsumer`].
//!
//! Push, PushMulti and Pop are sent from the task to the nodes in the blocking client's
//! round-robin order, each answer judged by the same rules (`failover::judge_write` for pushes,
//! `queue::PopWalk` for pops). A consumer merges every node's stream and acknowledges what was
//! taken: it is the blocking [`crate::queue::Consumer`], run on a thread of its own and driven
//! call by call (lock-step), so that a record counts as processed exactly when the blocking
//! consumer's rule says (the next `next`). Subscribe and the fan-outs run on tokio's blocking
//! pool.

use super::bridge::blocking;
use super::transport::{AsyncPending, Transport};
use crate::error::ClientError;
use crate::failover::{judge_write, WriteStep};
use crate::partial::Partial;
use crate::queue::{
    check_channel_count, next_node, push_elsewhere, PopWalk, ProducerCore, QueueClient, QueueSize,
    Resend, NO_ADDR, PRODUCER_WINDOW,
};
use node_core::protocol::queue as wire;
use node_core::protocol::RequestCode;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

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

/// What the task asks of the consumer's thread.
enum Call {
    Next(
        Duration,
        oneshot::Sender<Result<Option<Vec<u8>>, ClientError>>,
    ),
    GiveBack,
    Missing(oneshot::Sender<Vec<(SocketAddr, ClientError)>>),
    Stop(oneshot::Sender<Result<(), ClientError>>),
}

/// A channel consumed on every node as one subscriber, for tokio: [`crate::queue::Consumer`]'s
/// calls as `async fn`s, with its rules (a record counts as processed at the next `next`;
/// [`AsyncConsumer::give_back`]; [`AsyncConsumer::stop`] acknowledges and gives back the rest).
/// Dropping it without `stop` ends its thread, where the blocking consumer's drop does what
/// `stop` does.
pub struct AsyncConsumer {
    calls: std_mpsc::Sender<Call>,
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
        let (calls, received) = std_mpsc::channel();
        let (opened_tx, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("swarm-queue-consume".into())
            .spawn(move || {
                let consumer = match partial {
                    true => queue.consume_partial(&channel, &subscriber, max_batch_records),
                    false => queue.consume(&channel, &subscriber, max_batch_records),
                };
                match consumer {
                    Ok(consumer) => {
                        if opened_tx.send(Ok(())).is_ok() {
                            serve(consumer, &received);
                        }
                    }
                    Err(error) => {
                        let _ = opened_tx.send(Err(error));
                    }
                }
            })
            .map_err(|e| ClientError::Setup(format!("cannot start a consumer thread: {e}")))?;
        opened.await.map_err(|_| gone())??;
        Ok(AsyncConsumer { calls })
    }

    /// The next record from any node, waiting up to `timeout`: `Ok(None)` when none came in
    /// time. The record returned before counts as processed.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.call(Call::Next(timeout, reply))?;
        answer.await.map_err(|_| gone())?
    }

    /// The record `next` returned last was not processed: it goes back to its node's queue
    /// when the consumer stops (see [`crate::queue::Consumer::give_back`]).
    pub fn give_back(&mut self) -> Result<(), ClientError> {
        self.call(Call::GiveBack)
    }

    /// The nodes not consumed from now, with why.
    pub async fn missing(&self) -> Result<Vec<(SocketAddr, ClientError)>, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.call(Call::Missing(reply))?;
        answer.await.map_err(|_| gone())
    }

    /// Acknowledges everything taken, waits for the nodes to confirm, and stops every stream.
    pub async fn stop(self) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.call(Call::Stop(reply))?;
        answer.await.map_err(|_| gone())?
    }

    fn call(&self, call: Call) -> Result<(), ClientError> {
        self.calls.send(call).map_err(|_| gone())
    }
}

/// The consumer's thread: one call at a time, until `Stop` or the task drops its end.
fn serve(mut consumer: crate::queue::Consumer<'_>, calls: &std_mpsc::Receiver<Call>) {
    while let Ok(call) = calls.recv() {
        match call {
            Call::Next(timeout, reply) => {
                let _ = reply.send(consumer.next(timeout));
            }
            Call::GiveBack => consumer.give_back(),
            Call::Missing(reply) => {
                let _ = reply.send(consumer.missing());
            }
            Call::Stop(reply) => {
                let _ = reply.send(consumer.stop());
                return;
            }
        }
    }
}

fn gone() -> ClientError {
    ClientError::Setup("the consumer's thread ended".into())
}
