//! [`AsyncDhtClient`]: [`DhtClient`]'s operations as `async fn`s and streams.
//!
//! It wraps a [`DhtClient`] and shares all it knows: the nodes and their health, the routes
//! (hash ranges, redistributions), the topology it follows. Put, Get, Exists and Remove are
//! sent from the task: routed by the same routes ([`DhtClient::quick_route`]), encoded by the
//! same codec, their replies judged as the blocking client judges them. Whatever needs the
//! routes refreshed or a wait first (the node routed to reconnected since its range was read,
//! a WrongNode, a NotFound while records may be on another node, a redistribution in progress)
//! is handed to the blocking client's own code on tokio's blocking pool, so those rules exist
//! once. So is every keyed request to a replica set of several members (its fan-out, failover
//! and versions: `dht::replicas`); a set of one goes from the task as before. Update, PutBatch and the fan-outs run there too; GetAll and Listen run on a thread of
//! their own (`bridge`).

use super::bridge::{blocking, forward_all, ThreadStream};
use super::reopen::ReopenTimer;
use super::transport::Transport;
use crate::dht::{
    found, key_body, DhtClient, GetAllOptions, ListenEvent, Listener, QuickRoute, UpdateDecision,
};
use crate::error::ClientError;
use crate::partial::Partial;
use crate::reply::Reply;
use node_core::protocol::dht::{self as wire, SizeInfo};
use node_core::protocol::{RequestCode, Status};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A connected dht cluster, for tokio. Clone it freely: clones share the connections.
#[derive(Clone)]
pub struct AsyncDhtClient {
    dht: Arc<DhtClient>,
    transport: Transport,
}

/// Where a keyed request ended up in the task.
enum Quick {
    /// The owner answered this, and it is the answer.
    Answer(usize, Reply),
    /// The blocking client must take over.
    Slow,
}

impl AsyncDhtClient {
    cluster_constructors!(AsyncDhtClient, DhtClient);
    topology_changes!(dht, DhtClient);

    /// The async face of a blocking client; both may be used at once.
    pub fn from_blocking(dht: Arc<DhtClient>) -> AsyncDhtClient {
        let transport = Transport::of(dht.client());
        AsyncDhtClient { dht, transport }
    }

    /// The blocking client underneath: ranges, node health, topology.
    pub fn blocking(&self) -> &Arc<DhtClient> {
        &self.dht
    }

    /// [`DhtClient::put`].
    pub async fn put(&self, channel: &str, key: u64, value: &[u8]) -> Result<(), ClientError> {
        let body = self.dht.put_body(channel, key, value)?;
        match self.quick(wire::PUT, key, body).await? {
            Quick::Answer(_, reply) => reply.ok_body().map(drop),
            Quick::Slow => {
                let (dht, channel, value) = (self.dht.clone(), channel.to_string(), value.to_vec());
                blocking(move || dht.put(&channel, key, &value)).await
            }
        }
    }

    /// [`DhtClient::get`].
    pub async fn get(&self, channel: &str, key: u64) -> Result<Option<Vec<u8>>, ClientError> {
        if let Some(reply) = self.quick_read(wire::GET, channel, key).await? {
            return Ok((reply.status == Status::Ok).then_some(reply.body));
        }
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || dht.get(&channel, key)).await
    }

    /// [`DhtClient::exists`].
    pub async fn exists(&self, channel: &str, key: u64) -> Result<bool, ClientError> {
        if let Some(reply) = self.quick_read(wire::EXISTS, channel, key).await? {
            return Ok(reply.status == Status::Ok);
        }
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || dht.exists(&channel, key)).await
    }

    /// [`DhtClient::remove`]: true if there was a record.
    pub async fn remove(&self, channel: &str, key: u64) -> Result<bool, ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        match self
            .quick(wire::REMOVE, key, key_body(&channel, key))
            .await?
        {
            Quick::Answer(owner, reply) => {
                let removed = found(reply)?;
                if self.dht.owner_answer_is_final() {
                    return Ok(removed);
                }
                blocking(move || dht.remove_from_holders(&channel, key, owner, removed)).await
            }
            Quick::Slow => blocking(move || dht.remove(&channel, key)).await,
        }
    }

    /// [`DhtClient::update`] (its reads, retries and pauses), on tokio's blocking pool.
    pub async fn update<F>(&self, channel: &str, key: u64, f: F) -> Result<(), ClientError>
    where
        F: FnMut(Option<&[u8]>) -> UpdateDecision + Send + 'static,
    {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || dht.update(&channel, key, f)).await
    }

    /// [`DhtClient::put_batch`], on tokio's blocking pool.
    pub async fn put_batch(
        &self,
        channel: &str,
        records: Vec<(u64, Vec<u8>)>,
    ) -> Result<(), ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || {
            let records = records.iter().map(|(key, value)| (*key, value.as_slice()));
            dht.put_batch(&channel, records)
        })
        .await
    }

    /// [`DhtClient::get_all`]: every record of a channel over every node, as a stream; an
    /// error is its last item.
    pub fn get_all(
        &self,
        channel: &str,
        options: GetAllOptions,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        self.get_all_with(channel, options, false)
    }

    /// [`DhtClient::get_all_partial`]: every record over the nodes that can be read; once the
    /// stream ended, [`ThreadStream::missing`] lists the nodes skipped, with why.
    pub fn get_all_partial(
        &self,
        channel: &str,
        options: GetAllOptions,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        self.get_all_with(channel, options, true)
    }

    fn get_all_with(
        &self,
        channel: &str,
        options: GetAllOptions,
        partial: bool,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        ThreadStream::spawn("swarm-dht-getall", move |sender| {
            let mut records = match partial {
                true => dht.get_all_partial(&channel, options),
                false => dht.get_all(&channel, options),
            };
            forward_all(&mut records, sender);
            if partial {
                sender.set_missing(records.missing());
            }
        })
    }

    /// [`DhtClient::listen`]: a channel's changes on every node, as a stream
    /// ([`AsyncListener`], polled by the task: no thread of its own). An error item concerns
    /// one node, which is listened to again later; the stream goes on. It ends after
    /// [`ListenEvent::ChannelRemoved`].
    pub async fn listen(&self, channel: &str) -> Result<AsyncListener, ClientError> {
        self.listen_with(channel, false).await
    }

    /// [`DhtClient::listen_partial`]: starts without the nodes that are down, and listens to
    /// them once they are back.
    pub async fn listen_partial(&self, channel: &str) -> Result<AsyncListener, ClientError> {
        self.listen_with(channel, true).await
    }

    async fn listen_with(
        &self,
        channel: &str,
        partial: bool,
    ) -> Result<AsyncListener, ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        // Opening waits for each node's slot and command queue: on the blocking pool.
        let listener = blocking(move || dht.listen_for_task(&channel, partial)).await?;
        Ok(AsyncListener {
            listener,
            reopen: ReopenTimer::default(),
        })
    }

    /// [`DhtClient::get_channels`].
    pub async fn get_channels(&self) -> Result<Vec<String>, ClientError> {
        let dht = self.dht.clone();
        blocking(move || dht.get_channels()).await
    }

    /// [`DhtClient::get_channels_partial`].
    pub async fn get_channels_partial(&self) -> Result<Partial<Vec<String>>, ClientError> {
        let dht = self.dht.clone();
        blocking(move || dht.get_channels_partial()).await
    }

    /// [`DhtClient::get_size`].
    pub async fn get_size(&self) -> Result<SizeInfo, ClientError> {
        let dht = self.dht.clone();
        blocking(move || dht.get_size()).await
    }

    /// [`DhtClient::get_size_partial`].
    pub async fn get_size_partial(&self) -> Result<Partial<SizeInfo>, ClientError> {
        let dht = self.dht.clone();
        blocking(move || dht.get_size_partial()).await
    }

    /// [`DhtClient::get_channel_size`].
    pub async fn get_channel_size(&self, channel: &str) -> Result<SizeInfo, ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || dht.get_channel_size(&channel)).await
    }

    /// [`DhtClient::get_channel_size_partial`].
    pub async fn get_channel_size_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<SizeInfo>, ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || dht.get_channel_size_partial(&channel)).await
    }

    /// [`DhtClient::remove_channel`].
    pub async fn remove_channel(&self, channel: &str) -> Result<(), ClientError> {
        let (dht, channel) = (self.dht.clone(), channel.to_string());
        blocking(move || dht.remove_channel(&channel)).await
    }

    /// [`DhtClient::refresh_ranges`].
    pub async fn refresh_ranges(&self) -> Result<(), ClientError> {
        let dht = self.dht.clone();
        blocking(move || dht.refresh_ranges()).await
    }

    /// A keyed request from the task: to the owner when the routes say so without a refresh,
    /// its reply unless it is WrongNode (the ranges changed: the blocking path refreshes and
    /// retries).
    async fn quick(
        &self,
        code: RequestCode,
        key: u64,
        body: Vec<u8>,
    ) -> Result<Quick, ClientError> {
        let node = match self.dht.quick_route(key) {
            QuickRoute::Node(node) => node,
            QuickRoute::Fail(error) => return Err(error),
            QuickRoute::Slow => return Ok(Quick::Slow),
        };
        let reply = self.transport.request(node, code, body).await?;
        Ok(match reply.status {
            Status::WrongNode => Quick::Slow,
            _ => Quick::Answer(node, reply),
        })
    }

    /// Get or Exists from the task: the owner's Ok, or its NotFound when no other node can
    /// hold the record ([`DhtClient::owner_answer_is_final`]); `None` hands the read to the
    /// blocking path, which also asks the nodes records are moving from.
    async fn quick_read(
        &self,
        code: RequestCode,
        channel: &str,
        key: u64,
    ) -> Result<Option<Reply>, ClientError> {
        let Quick::Answer(_, reply) = self.quick(code, key, key_body(channel, key)).await? else {
            return Ok(None);
        };
        let reply = reply.into_result()?;
        if reply.status == Status::Ok || self.dht.owner_answer_is_final() {
            return Ok(Some(reply));
        }
        Ok(None)
    }
}

/// A channel's changes on every node, for tokio: the blocking [`crate::dht::Listener`] (its
/// merging, its reopening of a failed node's stream, its flow control), polled by the task.
/// The I/O thread delivers every node's stream into one queue the task polls; credit is
/// granted back as the task takes changes, so a task that stops polling pauses the nodes.
/// Dropping it stops every node's stream. No thread is held per listener.
pub struct AsyncListener {
    listener: Listener,
    /// Wakes the task when a failed node's stream is due to be opened again.
    reopen: ReopenTimer,
}

impl AsyncListener {
    /// The next change; `None` after [`ListenEvent::ChannelRemoved`]. No wait limit applies
    /// (wrap it in `tokio::time::timeout` for one).
    pub async fn next(&mut self) -> Option<Result<ListenEvent, ClientError>> {
        std::future::poll_fn(|cx| self.poll_change(cx)).await
    }

    /// [`crate::dht::Listener::missing`]: the nodes not listened to now, with why.
    pub fn missing(&self) -> Vec<(std::net::SocketAddr, ClientError)> {
        self.listener.missing()
    }

    /// True once [`ListenEvent::ChannelRemoved`] was returned.
    pub fn is_finished(&self) -> bool {
        self.listener.is_finished()
    }

    pub fn channel(&self) -> &str {
        self.listener.channel()
    }

    fn poll_change(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<ListenEvent, ClientError>>> {
        loop {
            if let Poll::Ready(change) = self.listener.poll_change(cx) {
                return Poll::Ready(change);
            }
            // Due: poll the listener again, which reopens the failed node's stream.
            std::task::ready!(self.reopen.poll_due(self.listener.next_reopen(), cx));
        }
    }
}

impl futures_core::Stream for AsyncListener {
    type Item = Result<ListenEvent, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_change(cx)
    }
}

impl std::fmt::Debug for AsyncListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncListener")
            .field("listener", &self.listener)
            .finish()
    }
}

impl std::fmt::Debug for AsyncDhtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDhtClient")
            .field("dht", &self.dht)
            .finish()
    }
}
