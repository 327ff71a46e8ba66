//! The queue node as a server [`Service`]: the ring registry ([`Queues`]), the `[queue]` config
//! that sizes new rings, and the request handlers (in [`crate::requests`]).
//!
//! Subscribers (`subscriber@channel` storages) are not served yet: every request works on the
//! storage named by the plain channel. Sizes and removal already cover a channel's subscriber
//! storages (found on disk, e.g. from an imported dump), so they stay right once subscribers come.

use crate::config::QueueSection;
use crate::engine::names::split_storage_name;
use crate::engine::Queues;
use crate::requests;
use node_core::protocol::queue::{self, QueueSize};
use node_core::protocol::{NodeKind, RequestCode};
use node_core::server::{Handled, Reply, Request, Service};

pub struct QueueNode {
    pub(crate) queues: Queues,
    pub(crate) config: QueueSection,
}

impl QueueNode {
    pub fn new(queues: Queues, config: QueueSection) -> QueueNode {
        QueueNode { queues, config }
    }

    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// The storage names belonging to `channel` (its own, and `subscriber@channel` ones).
    pub(crate) fn storages_of(&self, channel: &str) -> Vec<String> {
        self.queues
            .names()
            .filter(|name| split_storage_name(name).1 == channel)
            .map(str::to_string)
            .collect()
    }

    /// The channel names, sorted and without duplicates.
    pub(crate) fn channel_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .queues
            .names()
            .map(|name| split_storage_name(name).1)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Σ over the storages of `channel` (zeros for a missing channel).
    pub(crate) fn channel_size(&self, channel: &str) -> QueueSize {
        let mut total = QueueSize::default();
        for name in self.storages_of(channel) {
            if let Some(size) = self.queues.size(&name) {
                total.add(&to_queue_size(size));
            }
        }
        total
    }

    /// Σ over every storage of the node.
    pub(crate) fn total_size(&self) -> QueueSize {
        let mut total = QueueSize::default();
        for name in self.queues.names() {
            if let Some(size) = self.queues.size(name) {
                total.add(&to_queue_size(size));
            }
        }
        total
    }
}

fn to_queue_size(size: crate::engine::RingSize) -> QueueSize {
    QueueSize {
        records: size.records,
        value_bytes: size.value_bytes,
        used_bytes: size.used_bytes,
        capacity_bytes: size.capacity_bytes,
    }
}

impl Service for QueueNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Queue
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        queue::request_name(code)
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        requests::dispatch(self, request, reply)
    }

    fn shutdown(&mut self) {
        match self.queues.sync_all() {
            Ok(()) => tracing::info!("queues synced to disk"),
            Err(error) => tracing::error!("cannot sync the queues to disk: {error}"),
        }
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        let total = self.total_size();
        out.push(("total_records".into(), total.records));
        out.push(("total_bytes".into(), total.value_bytes));
        out.push(("total_used_bytes".into(), total.used_bytes));
        out.push(("total_capacity_bytes".into(), total.capacity_bytes));
        for name in self.queues.names() {
            if let Some(size) = self.queues.size(name) {
                out.push((format!("channel/{name}/records"), size.records));
                out.push((format!("channel/{name}/bytes"), size.value_bytes));
                out.push((
                    format!("channel/{name}/fill_percent"),
                    u64::from(size.fill_percent()),
                ));
            }
        }
    }
}
