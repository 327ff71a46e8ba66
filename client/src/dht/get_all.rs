//! [`GetAll`]: every record of a channel over every node of the cluster, as an iterator, resumed
//! where it broke off when a node's connection drops.
//!
//! Nodes are read **one after the other**, in node order: memory stays bounded by one stream
//! window (plus one decoded batch), and a caller that stops iterating pauses exactly one node.
//! A tool that wants the nodes read in parallel can run one [`GetAll`] per node itself with
//! [`GetAll::single_node`].
//!
//! Resuming: each record's key is remembered as its batch is decoded. When the stream from a
//! node fails with a transport error (the connection dropped, or the node went quiet past the
//! request timeout), the client reconnects and starts that node's GetAll again with
//! `resume_after` = the last key received, so the node continues after it and every record is
//! delivered exactly once. A node is tried again at most [`MAX_RESUMES`] times in a row without
//! receiving anything in between (waiting 50 ms, 100 ms, ... up to 1 s between tries); then the
//! iterator yields the last error and ends.

use super::DhtClient;
use crate::error::ClientError;
use crate::reply::{Stream, StreamEvent};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{self as wire, GetAllRequest, MAX_FILTER_LEN};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// Attempts to resume one node's stream in a row, without progress in between.
pub const MAX_RESUMES: u32 = 8;
const FIRST_RESUME_DELAY: Duration = Duration::from_millis(50);
const MAX_RESUME_DELAY: Duration = Duration::from_secs(1);

/// What a [`GetAll`] asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetAllOptions {
    /// Keys only: every record comes with an empty value.
    pub keys_only: bool,
    /// Only records whose value contains these bytes (at most 4096 of them). `None` or empty:
    /// every record.
    pub filter: Option<Vec<u8>>,
}

/// The records of a channel, node after node; yields `Ok((key, value))` for each, or one
/// `Err` after which it ends. See the module documentation for the order and for resuming.
pub struct GetAll<'a> {
    dht: &'a DhtClient,
    channel: String,
    options: GetAllOptions,
    /// The nodes still to read, front first.
    nodes: VecDeque<usize>,
    stream: Option<Stream>,
    /// The last key received from the current node: where a resumed stream starts after.
    last_key: Option<u64>,
    /// Resumes of the current node since it last delivered anything.
    failures: u32,
    resumes: u64,
    ready: VecDeque<(u64, Vec<u8>)>,
    scratch: Vec<u8>,
    done: bool,
}

impl<'a> GetAll<'a> {
    pub(super) fn new(dht: &'a DhtClient, channel: &str, options: GetAllOptions) -> GetAll<'a> {
        GetAll::over(dht, channel, options, (0..dht.node_count()).collect())
    }

    /// The records of one node only (index as in [`DhtClient::client`]), with the same
    /// resuming.
    pub fn single_node(
        dht: &'a DhtClient,
        node: usize,
        channel: &str,
        options: GetAllOptions,
    ) -> GetAll<'a> {
        GetAll::over(dht, channel, options, VecDeque::from([node]))
    }

    fn over(
        dht: &'a DhtClient,
        channel: &str,
        options: GetAllOptions,
        nodes: VecDeque<usize>,
    ) -> GetAll<'a> {
        GetAll {
            dht,
            channel: channel.to_string(),
            options,
            nodes,
            stream: None,
            last_key: None,
            failures: 0,
            resumes: 0,
            ready: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
        }
    }

    /// How many times a node's stream was resumed after a dropped connection, so far.
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    fn addr(&self, node: usize) -> SocketAddr {
        self.dht.ranges.entries()[node].0
    }

    fn open(&mut self, node: usize) -> Result<Stream, ClientError> {
        let filter = self.options.filter.as_deref().unwrap_or_default();
        if filter.len() > MAX_FILTER_LEN {
            return Err(ClientError::Setup(format!(
                "GetAll filter of {} bytes exceeds the limit of {MAX_FILTER_LEN}",
                filter.len()
            )));
        }
        let mut body = Vec::new();
        GetAllRequest {
            channel: &self.channel,
            keys_only: self.options.keys_only,
            resume_after: self.last_key,
            filter,
        }
        .encode(&mut body);
        self.dht.client.stream(node, wire::GET_ALL, &body)
    }

    /// Takes one event of the current node's stream; `Ok(false)` when that node is done.
    fn on_event(&mut self, node: usize, event: StreamEvent) -> Result<bool, ClientError> {
        match event {
            StreamEvent::Item { code, body } if code == wire::ITEM_RECORD_BATCH => {
                let addr = self.addr(node);
                let records = decode_batch(&body, &mut self.scratch)
                    .map_err(|e| ClientError::protocol(addr, format!("GetAll batch: {e}")))?;
                for (key, value) in records {
                    self.ready.push_back((key, value.to_vec()));
                    self.last_key = Some(key);
                }
                self.failures = 0;
                Ok(true)
            }
            StreamEvent::Item { code, .. } => Err(ClientError::protocol(
                self.addr(node),
                format!("GetAll stream sent an item of unknown code {code}"),
            )),
            // NotFound: a node that has never had the channel; nothing to read there.
            StreamEvent::End(reply) if reply.status.is_success() => Ok(false),
            StreamEvent::End(reply) => reply.into_result().map(|_| false),
        }
    }

    /// Decides what a failure of the current node's stream means: `Ok` to try again (after a
    /// pause), `Err` to give up.
    fn on_failure(&mut self, error: ClientError) -> Result<(), ClientError> {
        let resumable = matches!(
            error,
            ClientError::Disconnected { .. }
                | ClientError::Timeout { .. }
                | ClientError::Connect { .. }
                | ClientError::ConnectionLimit { .. }
        );
        if !resumable || self.failures >= MAX_RESUMES {
            return Err(error);
        }
        tracing::debug!(%error, last_key = ?self.last_key, "GetAll resuming");
        let delay = FIRST_RESUME_DELAY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_RESUME_DELAY);
        self.failures += 1;
        self.resumes += 1;
        self.stream = None;
        std::thread::sleep(delay);
        Ok(())
    }

    /// Reads until records are ready, the end, or an error.
    fn fill(&mut self) -> Result<(), ClientError> {
        while self.ready.is_empty() {
            let Some(&node) = self.nodes.front() else {
                self.done = true;
                return Ok(());
            };
            if self.stream.is_none() {
                match self.open(node) {
                    Ok(stream) => self.stream = Some(stream),
                    Err(error) => {
                        self.on_failure(error)?;
                        continue;
                    }
                }
            }
            let event = self.stream.as_mut().and_then(Iterator::next);
            let more = match event {
                Some(Ok(event)) => self.on_event(node, event)?,
                Some(Err(error)) => {
                    self.on_failure(error)?;
                    continue;
                }
                None => false,
            };
            if !more {
                self.stream = None;
                self.nodes.pop_front();
                self.last_key = None;
                self.failures = 0;
            }
        }
        Ok(())
    }
}

impl Iterator for GetAll<'_> {
    type Item = Result<(u64, Vec<u8>), ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.ready.pop_front() {
            return Some(Ok(record));
        }
        if self.done {
            return None;
        }
        if let Err(error) = self.fill() {
            self.done = true;
            self.stream = None;
            self.ready.clear();
            return Some(Err(error));
        }
        self.ready.pop_front().map(Ok)
    }
}

impl std::fmt::Debug for GetAll<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetAll")
            .field("channel", &self.channel)
            .field("nodes_left", &self.nodes.len())
            .field("last_key", &self.last_key)
            .field("resumes", &self.resumes)
            .finish_non_exhaustive()
    }
}
