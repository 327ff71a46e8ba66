//! [`Consumer`]: one channel's records from every node of the cluster, as one subscriber.
//!
//! One Consume stream runs per node, all in one [`StreamSet`], so [`Consumer::next`] waits on
//! every node at once. Each Item is an LZ4 batch of records; the consumer hands them out one by
//! one and keeps a node's records in their order.
//!
//! Acknowledgement (at least once): a record counts as processed once the caller asks for the
//! next one (or stops the consumer). The consumer acknowledges processed records to their node
//! (ConsumeAck, cumulative) when it has handed out everything it holds from that node, at least
//! every [`ACK_EVERY`] records, and when it stops; the node then forgets them. Records not
//! acknowledged when a stream ends (the process died, the connection dropped) go back to the
//! front of the node's queue and are delivered again, to this consumer or another. Records a
//! failed stream had already delivered but the caller had not yet taken are dropped here for
//! the same reason: they will come again.
//!
//! A node ends its stream with Ok when the channel is removed there; once every node has, the
//! consumer is finished ([`Consumer::is_finished`]). A stream that fails (connection lost, node
//! stopped) makes `next` return that error once; it is opened again on a later call (at most
//! once a second). While its node is down (`ClientError::NodeDown`) it waits quietly, and is
//! opened again as soon as the node is back; [`Consumer::missing`] lists the nodes not
//! consumed from now. `QueueClient::consume` needs every node at the start;
//! `consume_partial` starts without the nodes that are down.

use crate::client::Client;
use crate::error::ClientError;
use crate::reply::StreamEvent;
use crate::stream_set::{StreamSet, StreamTag};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::queue::{self as wire, ConsumeAckRequest, ConsumeRequest};
use node_core::protocol::Status;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a failed node's stream waits before it is opened again.
const REOPEN_DELAY: Duration = Duration::from_secs(1);
/// Processed records are acknowledged at least this often.
pub const ACK_EVERY: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Running {
        tag: StreamTag,
        request_id: u64,
    },
    /// The channel was removed on this node.
    Ended,
    Failed {
        reopen_at: Instant,
    },
}

#[derive(Debug)]
struct NodeStream {
    /// The node's index in the client.
    index: usize,
    state: NodeState,
    /// Why the node is not consumed from now (while failed).
    why: Option<ClientError>,
    /// Records of the current stream handed to the caller, and acknowledged.
    handed: u64,
    acked: u64,
    /// Records of this node in the buffer.
    buffered: usize,
}

/// A channel consumed on every node. Create with [`super::QueueClient::consume`]. Call
/// [`Consumer::stop`] when done: it acknowledges what was taken, so nothing is delivered twice.
/// Dropping a consumer does the same, without reporting errors.
pub struct Consumer<'a> {
    client: ClientRef<'a>,
    set: StreamSet,
    channel: String,
    subscriber: String,
    max_batch_records: u32,
    addrs: Vec<SocketAddr>,
    nodes: Vec<NodeStream>,
    /// Records received and not yet handed out, with their node.
    buffer: VecDeque<(usize, Vec<u8>)>,
    scratch: Vec<u8>,
    finished: bool,
    stopped: bool,
    /// The node (slot) of the record `next` returned last, until the following call.
    last: Option<usize>,
}

/// The client a consumer acknowledges through: its queue client's, borrowed, or shared with
/// the async consumer, which owns what it uses.
enum ClientRef<'a> {
    Borrowed(&'a Client),
    #[cfg(feature = "async")]
    Shared(std::sync::Arc<super::QueueClient>),
}

impl ClientRef<'_> {
    fn get(&self) -> &Client {
        match self {
            ClientRef::Borrowed(client) => client,
            #[cfg(feature = "async")]
            ClientRef::Shared(queue) => queue.client(),
        }
    }
}

/// What a consumer is opened with.
pub(crate) struct ConsumeSpec<'s> {
    pub channel: &'s str,
    pub subscriber: &'s str,
    pub max_batch_records: u32,
    /// Start without the nodes that are down (`consume_partial`).
    pub partial: bool,
}

impl<'a> Consumer<'a> {
    /// Opens a Consume stream on every active node of `client`; with `partial`, a node that
    /// is down is left to be opened once it is back instead of failing the whole.
    pub(super) fn open(
        client: &'a Client,
        channel: &str,
        subscriber: &str,
        max_batch_records: u32,
        partial: bool,
    ) -> Result<Consumer<'a>, ClientError> {
        let spec = ConsumeSpec {
            channel,
            subscriber,
            max_batch_records,
            partial,
        };
        Consumer::open_in(ClientRef::Borrowed(client), client.stream_set(), &spec)
    }

    /// [`Consumer::open`] of a consumer a tokio task polls (the async client's): it shares
    /// the queue client, and its streams deliver into a queue the task polls.
    #[cfg(feature = "async")]
    pub(crate) fn open_for_task(
        queue: std::sync::Arc<super::QueueClient>,
        spec: &ConsumeSpec<'_>,
    ) -> Result<Consumer<'static>, ClientError> {
        let set = queue.client().stream_set_async();
        Consumer::open_in(ClientRef::Shared(queue), set, spec)
    }

    fn open_in(
        client: ClientRef<'a>,
        set: StreamSet,
        spec: &ConsumeSpec<'_>,
    ) -> Result<Consumer<'a>, ClientError> {
        let ConsumeSpec {
            channel,
            subscriber,
            max_batch_records,
            partial,
        } = *spec;
        let indices = client.get().active_nodes();
        let addrs = indices
            .iter()
            .filter_map(|&node| client.get().node_addr(node))
            .collect();
        let mut consumer = Consumer {
            client,
            set,
            channel: channel.to_string(),
            subscriber: subscriber.to_string(),
            max_batch_records,
            addrs,
            nodes: Vec::new(),
            buffer: VecDeque::new(),
            scratch: Vec::new(),
            finished: false,
            stopped: false,
            last: None,
        };
        for (slot, index) in indices.into_iter().enumerate() {
            consumer.nodes.push(NodeStream {
                index,
                state: NodeState::Ended,
                why: None,
                handed: 0,
                acked: 0,
                buffered: 0,
            });
            match consumer.start(slot) {
                Ok(state) => consumer.nodes[slot].state = state,
                Err(error) if partial && error.is_node_down() => consumer.fail(slot, error),
                Err(error) => return Err(error),
            }
        }
        Ok(consumer)
    }

    /// The nodes not consumed from now (their stream failed or could not be opened, and is due
    /// to be opened again), with the error that stopped it.
    pub fn missing(&self) -> Vec<(SocketAddr, ClientError)> {
        self.nodes
            .iter()
            .zip(&self.addrs)
            .filter_map(|(stream, addr)| match (&stream.state, &stream.why) {
                (NodeState::Failed { .. }, Some(error)) => Some((*addr, error.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// True once the channel was removed on every node (and everything received was taken).
    pub fn is_finished(&self) -> bool {
        self.finished && self.buffer.is_empty()
    }

    /// The next record from any node, waiting up to `timeout`: `Ok(None)` when none came in
    /// time (and, once finished, at once). The record returned before counts as processed. An
    /// `Err` concerns one node, whose stream is opened again on a later call.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(taken) = self.take_buffered() {
                return Ok(Some(taken));
            }
            if self.finished {
                return Ok(None);
            }
            self.reopen_due()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait_until = self.next_reopen().map_or(deadline, |at| at.min(deadline));
            let wait = wait_until.saturating_duration_since(now);
            if self.set.is_empty() {
                std::thread::sleep(wait);
            } else {
                self.receive(wait)?;
            }
        }
    }

    /// The record before counts as processed (acknowledged when due); the next buffered
    /// record, if any, is handed out.
    fn take_buffered(&mut self) -> Option<Vec<u8>> {
        self.last = None;
        self.acknowledge(false);
        let (node, value) = self.buffer.pop_front()?;
        let stream = &mut self.nodes[node];
        stream.buffered -= 1;
        stream.handed += 1;
        self.last = Some(node);
        Some(value)
    }

    /// The record `next` returned last was not processed (say, it could not be written out):
    /// it is not acknowledged, and goes back to its node's queue when the consumer stops, with
    /// the records after it. Call it right after that `next`, then stop the consumer.
    pub fn give_back(&mut self) {
        if let Some(node) = self.last.take() {
            let stream = &mut self.nodes[node];
            if stream.handed > stream.acked {
                stream.handed -= 1;
            }
        }
    }

    /// Acknowledges everything taken, waits for the nodes to confirm, and stops every stream:
    /// records delivered but not taken go back to their nodes' queues.
    pub fn stop(mut self) -> Result<(), ClientError> {
        self.finish_streams()
    }

    fn finish_streams(&mut self) -> Result<(), ClientError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pending = self.acknowledge(true);
        let mut first_error = None;
        for ack in pending {
            if let Err(error) = ack.wait().and_then(|reply| reply.into_result()) {
                first_error.get_or_insert(error);
            }
        }
        for stream in &self.nodes {
            if let NodeState::Running { tag, .. } = stream.state {
                self.set.close(tag);
            }
        }
        self.buffer.clear();
        first_error.map_or(Ok(()), Err)
    }

    /// Sends ConsumeAck for every running stream with processed, unacknowledged records: all of
    /// them with `all`, else those whose node has nothing left in the buffer or at least
    /// [`ACK_EVERY`] processed. Returns the requests, to wait for them (or drop: fire and forget).
    fn acknowledge(&mut self, all: bool) -> Vec<crate::reply::Pending> {
        let mut sent = Vec::new();
        for stream in self.nodes.iter_mut() {
            let NodeState::Running { request_id, .. } = stream.state else {
                continue;
            };
            let due = stream.handed > stream.acked
                && (all || stream.buffered == 0 || stream.handed - stream.acked >= ACK_EVERY);
            if !due {
                continue;
            }
            let mut body = Vec::with_capacity(16);
            ConsumeAckRequest {
                consume_id: request_id,
                records: stream.handed,
            }
            .encode(&mut body);
            match self
                .client
                .get()
                .submit(stream.index, wire::CONSUME_ACK, &body)
            {
                Ok(pending) => {
                    stream.acked = stream.handed;
                    sent.push(pending);
                }
                // The stream will fail too; its records come again.
                Err(error) => tracing::debug!(%error, "ConsumeAck not sent"),
            }
        }
        sent
    }

    /// Waits up to `wait` for one event and takes it in.
    fn receive(&mut self, wait: Duration) -> Result<(), ClientError> {
        match self.set.next_timeout(wait) {
            Some((tag, event)) => self.take_in(tag, event),
            None => Ok(()),
        }
    }

    /// [`Consumer::next`] for a task (the async consumer): the next record, `Ok(None)` once
    /// finished, or `Pending` until one comes (the task is woken then). A failed node's reopen
    /// is due at [`Consumer::next_reopen`]: the caller polls again then (a timer of its own).
    /// Acknowledgements are sent from the task, as `next` sends them.
    #[cfg(feature = "async")]
    pub(crate) fn poll_record(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<Vec<u8>>, ClientError>> {
        use std::task::Poll;
        loop {
            if let Some(taken) = self.take_buffered() {
                return Poll::Ready(Ok(Some(taken)));
            }
            if self.finished {
                return Poll::Ready(Ok(None));
            }
            if let Err(error) = self.reopen_due() {
                return Poll::Ready(Err(error));
            }
            let Poll::Ready(Some((tag, event))) = self.set.poll_next_event(cx) else {
                return Poll::Pending;
            };
            if let Err(error) = self.take_in(tag, event) {
                return Poll::Ready(Err(error));
            }
        }
    }

    /// Takes one event of the set in: a batch of records into the buffer, a stream's end.
    fn take_in(
        &mut self,
        tag: StreamTag,
        event: Result<StreamEvent, ClientError>,
    ) -> Result<(), ClientError> {
        let Some(node) = self.node_of(tag) else {
            return Ok(());
        };
        let addr = self.addrs[node];
        match event {
            Ok(StreamEvent::Item { code, body }) if code == wire::ITEM_RECORD_BATCH => {
                let records = decode_batch(&body, &mut self.scratch)
                    .map_err(|e| ClientError::protocol(addr, format!("Consume batch: {e}")));
                match records {
                    Ok(records) => {
                        for (_, value) in records {
                            self.buffer.push_back((node, value.to_vec()));
                            self.nodes[node].buffered += 1;
                        }
                        Ok(())
                    }
                    Err(error) => {
                        self.set.close(tag);
                        self.fail(node, error.clone());
                        Err(error)
                    }
                }
            }
            Ok(StreamEvent::Item { code, .. }) => {
                self.set.close(tag);
                let error = ClientError::protocol(
                    addr,
                    format!("Consume sent an item of unknown code {code}"),
                );
                self.fail(node, error.clone());
                Err(error)
            }
            Ok(StreamEvent::End(reply)) if reply.status == Status::Ok => {
                self.nodes[node].state = NodeState::Ended;
                if self
                    .nodes
                    .iter()
                    .all(|stream| stream.state == NodeState::Ended)
                {
                    self.finished = true;
                }
                Ok(())
            }
            Ok(StreamEvent::End(reply)) => {
                let error = reply
                    .into_result()
                    .err()
                    .unwrap_or_else(|| ClientError::protocol(addr, "Consume ended NotFound"));
                self.fail(node, error.clone());
                Err(error)
            }
            Err(error) => {
                self.fail(node, error.clone());
                Err(error)
            }
        }
    }

    fn node_of(&self, tag: StreamTag) -> Option<usize> {
        self.nodes.iter().position(
            |stream| matches!(stream.state, NodeState::Running { tag: running, .. } if running == tag),
        )
    }

    /// The node's stream failed: what it delivered and was not taken will come again.
    fn fail(&mut self, node: usize, error: ClientError) {
        self.buffer.retain(|(from, _)| *from != node);
        let stream = &mut self.nodes[node];
        stream.buffered = 0;
        stream.state = NodeState::Failed {
            reopen_at: Instant::now() + REOPEN_DELAY,
        };
        stream.why = Some(error);
    }

    /// When the next failed node's stream is due to be opened again.
    pub(crate) fn next_reopen(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter_map(|stream| match stream.state {
                NodeState::Failed { reopen_at } => Some(reopen_at),
                _ => None,
            })
            .min()
    }

    fn reopen_due(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        for node in 0..self.nodes.len() {
            if matches!(self.nodes[node].state, NodeState::Failed { reopen_at } if reopen_at <= now)
            {
                match self.start(node) {
                    Ok(state) => {
                        let stream = &mut self.nodes[node];
                        stream.state = state;
                        stream.why = None;
                        stream.handed = 0;
                        stream.acked = 0;
                    }
                    // Waits quietly for the node to come back.
                    Err(error @ ClientError::NodeDown { .. }) => self.fail(node, error),
                    Err(error) => {
                        self.fail(node, error.clone());
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, slot: usize) -> Result<NodeState, ClientError> {
        let mut body = Vec::new();
        ConsumeRequest {
            channel: &self.channel,
            subscriber: &self.subscriber,
            max_batch_records: self.max_batch_records,
        }
        .encode(&mut body);
        let index = self.nodes[slot].index;
        let tag = self.set.open(index, wire::CONSUME, &body)?;
        let request_id = self.set.request_id(tag).unwrap_or(0);
        Ok(NodeState::Running { tag, request_id })
    }
}

impl Drop for Consumer<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.finish_streams() {
            tracing::debug!(%error, "stopping a consumer");
        }
    }
}

impl std::fmt::Debug for Consumer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("channel", &self.channel)
            .field("subscriber", &self.subscriber)
            .field("nodes", &self.nodes)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}
