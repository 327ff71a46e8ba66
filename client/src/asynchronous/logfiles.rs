//! [`AsyncLogClient`]: [`LogClient`]'s operations as `async fn`s and streams.
//!
//! Put is sent from the task to the nodes in the blocking client's round-robin order, each
//! answer judged by the same rule (`failover::judge_write`: a node that is down or cannot
//! take the write is skipped for the next). GetRange and GetAll merge every node's stream by
//! key: they run the blocking [`crate::logfiles::LogRecords`] on a thread of their own
//! (`bridge`); PutBatch and the fan-outs run on tokio's blocking pool.

use super::bridge::{blocking, forward_all, ThreadStream};
use super::transport::Transport;
use crate::error::ClientError;
use crate::failover::{judge_write, WriteStep};
use crate::logfiles::{node_unavailable, put_stored, DiskSize, LogClient, LogRecords, ValueFilter};
use crate::partial::Partial;
use node_core::protocol::logfiles as wire;
use std::net::SocketAddr;
use std::sync::Arc;

/// A connected logfiles cluster, for tokio. Clone it freely: clones share the connections.
#[derive(Clone)]
pub struct AsyncLogClient {
    logs: Arc<LogClient>,
    transport: Transport,
}

impl AsyncLogClient {
    cluster_constructors!(AsyncLogClient, LogClient);
    topology_changes!(logs, LogClient);

    /// The async face of a blocking client; both may be used at once.
    pub fn from_blocking(logs: Arc<LogClient>) -> AsyncLogClient {
        let transport = Transport::of(logs.client());
        AsyncLogClient { logs, transport }
    }

    /// The blocking client underneath.
    pub fn blocking(&self) -> &Arc<LogClient> {
        &self.logs
    }

    /// [`LogClient::put`]: appends a record on one node; returns that node's index.
    pub async fn put(&self, channel: &str, key: u64, value: &[u8]) -> Result<usize, ClientError> {
        let body = self.logs.put_body(channel, key, value)?;
        let mut last_error = None;
        for node in self.logs.rotation() {
            let result = self.transport.request(node, wire::PUT, body.clone()).await;
            match judge_write(result, node_unavailable, "a write") {
                WriteStep::Stored(reply) => return put_stored(node, reply),
                WriteStep::Next(error) => last_error = Some(error),
                WriteStep::Failed(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ClientError::NoNodes))
    }

    /// [`LogClient::put_batch`], on tokio's blocking pool; returns the records stored.
    pub async fn put_batch(
        &self,
        channel: &str,
        records: Vec<(u64, Vec<u8>)>,
    ) -> Result<u64, ClientError> {
        let (logs, channel) = (self.logs.clone(), channel.to_string());
        blocking(move || {
            let records = records.iter().map(|(key, value)| (*key, value.as_slice()));
            logs.put_batch(&channel, records)
        })
        .await
    }

    /// [`LogClient::get_range`]: the records with keys from `from` to `to` (inclusive) over
    /// every node, in key order, as a stream; an error is its last item.
    pub fn get_range(
        &self,
        channel: &str,
        from: u64,
        to: u64,
        filter: &ValueFilter,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        self.range_stream(channel, (from, to), filter, false)
    }

    /// [`LogClient::get_range_partial`]: [`AsyncLogClient::get_range`] from the nodes that
    /// can be read; once the stream ended, [`ThreadStream::missing`] lists the others.
    pub fn get_range_partial(
        &self,
        channel: &str,
        from: u64,
        to: u64,
        filter: &ValueFilter,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        self.range_stream(channel, (from, to), filter, true)
    }

    fn range_stream(
        &self,
        channel: &str,
        (from, to): (u64, u64),
        filter: &ValueFilter,
        partial: bool,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        let open = move |logs: &LogClient, channel: &str, filter: &ValueFilter| match partial {
            true => logs.get_range_partial(channel, from, to, filter),
            false => logs.get_range(channel, from, to, filter),
        };
        self.read_stream("swarm-log-range", open, channel, filter, partial)
    }

    /// [`LogClient::get_all`]: every record of a channel over every node, in key order.
    pub fn get_all(
        &self,
        channel: &str,
        filter: &ValueFilter,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        self.read_stream("swarm-log-all", LogClient::get_all, channel, filter, false)
    }

    /// [`LogClient::get_all_partial`]: [`AsyncLogClient::get_all`] from the nodes that can be
    /// read; once the stream ended, [`ThreadStream::missing`] lists the others.
    pub fn get_all_partial(
        &self,
        channel: &str,
        filter: &ValueFilter,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError> {
        self.read_stream(
            "swarm-log-all",
            LogClient::get_all_partial,
            channel,
            filter,
            true,
        )
    }

    /// Runs the blocking read `open` on a thread of its own and streams its records (`bridge`);
    /// a failure to open is the stream's one item. `partial`: the records' missing nodes are
    /// handed over at the end.
    fn read_stream<F>(
        &self,
        name: &str,
        open: F,
        channel: &str,
        filter: &ValueFilter,
        partial: bool,
    ) -> Result<ThreadStream<(u64, Vec<u8>)>, ClientError>
    where
        F: FnOnce(&LogClient, &str, &ValueFilter) -> Result<LogRecords, ClientError>
            + Send
            + 'static,
    {
        let (logs, channel, filter) = (self.logs.clone(), channel.to_string(), filter.clone());
        ThreadStream::spawn(name, move |sender| match open(&logs, &channel, &filter) {
            Ok(mut records) => {
                forward_all(&mut records, sender);
                if partial {
                    sender.set_missing(records.missing());
                }
            }
            Err(error) => {
                sender.push(Err(error));
            }
        })
    }

    /// [`LogClient::channels`].
    pub async fn channels(&self) -> Result<Vec<String>, ClientError> {
        let logs = self.logs.clone();
        blocking(move || logs.channels()).await
    }

    /// [`LogClient::channels_partial`].
    pub async fn channels_partial(&self) -> Result<Partial<Vec<String>>, ClientError> {
        let logs = self.logs.clone();
        blocking(move || logs.channels_partial()).await
    }

    /// [`LogClient::size`].
    pub async fn size(&self, channel: Option<&str>) -> Result<DiskSize, ClientError> {
        let (logs, channel) = (self.logs.clone(), channel.map(str::to_string));
        blocking(move || logs.size(channel.as_deref())).await
    }

    /// [`LogClient::size_partial`].
    pub async fn size_partial(
        &self,
        channel: Option<&str>,
    ) -> Result<Partial<DiskSize>, ClientError> {
        let (logs, channel) = (self.logs.clone(), channel.map(str::to_string));
        blocking(move || logs.size_partial(channel.as_deref())).await
    }

    /// [`LogClient::size_per_node`].
    pub async fn size_per_node(
        &self,
        channel: Option<&str>,
    ) -> Result<Vec<(SocketAddr, DiskSize)>, ClientError> {
        let (logs, channel) = (self.logs.clone(), channel.map(str::to_string));
        blocking(move || logs.size_per_node(channel.as_deref())).await
    }

    /// [`LogClient::size_per_node_partial`].
    pub async fn size_per_node_partial(
        &self,
        channel: Option<&str>,
    ) -> Result<Partial<Vec<(SocketAddr, DiskSize)>>, ClientError> {
        let (logs, channel) = (self.logs.clone(), channel.map(str::to_string));
        blocking(move || logs.size_per_node_partial(channel.as_deref())).await
    }

    /// [`LogClient::remove_channel`].
    pub async fn remove_channel(&self, channel: &str) -> Result<(), ClientError> {
        let (logs, channel) = (self.logs.clone(), channel.to_string());
        blocking(move || logs.remove_channel(&channel)).await
    }
}

impl std::fmt::Debug for AsyncLogClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncLogClient")
            .field("logs", &self.logs)
            .finish()
    }
}
