//! The queue node as a server [`Service`]: the channels and their rings ([`Channels`]), the
//! `[queue]` config that sizes new rings, the running consumers ([`Consumers`]) and the request
//! handlers (in [`crate::requests`]).
//!
//! Start-up ([`QueueNode::open`]): open every ring in the data directory, then import the
//! reference node's files found there (`.rq` dumps, disk overflow; see
//! [`crate::engine::reference`]), all or nothing, and move them to `imported/`.
//!
//! Writes go through [`QueueNode::push`] (Push, PushMulti, Produce): all checks before any
//! write, then the consumers waiting on the written storages are woken.

use crate::config::QueueSection;
use crate::consumers::Consumers;
use crate::engine::names::split_storage_name;
use crate::engine::queues::OpenReport;
use crate::engine::reference;
use crate::engine::ring::RingSize;
use crate::engine::{Channels, QueueError, Queues, QueuesConfig};
use crate::requests;
use node_core::metrics::Families;
use node_core::protocol::queue::{self, QueueSize};
use node_core::protocol::{NodeKind, RequestCode};
use node_core::server::{Handled, Reply, Request, Service, Wakeups};
use std::collections::BTreeMap;
use std::path::Path;

/// The largest value a node takes when its frames are at most `max_frame_bytes`: a consumer must
/// be able to receive it alone in one LZ4 batch item (batch header, record header and LZ4's
/// worst-case growth of 1/255 plus a few bytes).
pub fn max_value_for_frames(max_frame_bytes: u32) -> u64 {
    u64::from(max_frame_bytes).saturating_sub(64) * 255 / 256
}

/// What start-up found.
#[derive(Debug, Default)]
pub struct StartReport {
    pub rings: OpenReport,
    /// Records imported from reference files, and where the files went.
    pub imported_records: u64,
    pub imported_files: Vec<std::path::PathBuf>,
    pub imported_to: Option<std::path::PathBuf>,
}

/// The metrics of one ring: a channel's, or one subscriber's copy of it (`subscriber=""`: the
/// plain queue or the default subscriber's).
fn storage_metrics(out: &mut Families, labels: &[(&str, &str)], size: &RingSize, consumers: u64) {
    let gauges = [
        (
            "swarm_queue_records",
            "Records queued (not yet acknowledged), per channel and subscriber.",
            size.records as f64,
        ),
        (
            "swarm_queue_used_bytes",
            "Ring bytes in use (headers and padding included), per channel and subscriber.",
            size.used_bytes as f64,
        ),
        (
            "swarm_queue_capacity_bytes",
            "Ring capacity, per channel and subscriber.",
            size.capacity_bytes as f64,
        ),
        (
            "swarm_queue_fill_ratio",
            "Used bytes / capacity (0 to 1), per channel and subscriber: 1 refuses pushes.",
            size.used_bytes as f64 / size.capacity_bytes.max(1) as f64,
        ),
        (
            "swarm_queue_consumers_per_queue",
            "Consume streams reading this queue, per channel and subscriber.",
            consumers as f64,
        ),
    ];
    for (name, help, value) in gauges {
        out.gauge(name, help, labels, value);
    }
}

pub struct QueueNode {
    pub(crate) channels: Channels,
    pub(crate) config: QueueSection,
    pub(crate) wakeups: Wakeups,
    pub(crate) consumers: Consumers,
    /// No value above this is taken (see [`max_value_for_frames`]).
    pub(crate) max_value_bytes: u64,
    /// Record copies written (a push to a channel with 3 subscribers counts 3), and records
    /// taken for good (popped, or acknowledged by a consumer).
    pub(crate) pushed_records: u64,
    pub(crate) removed_records: u64,
    /// Records given back to their queue by consumers that left without acknowledging them.
    pub(crate) redelivered_records: u64,
    /// Where Pop copies the value it takes, reused so a Pop allocates nothing.
    pub(crate) pop_scratch: Vec<u8>,
    /// The batch a Consume builds and sends within its turn, shared by all of them.
    pub(crate) consume_scratch: Vec<u8>,
}

impl QueueNode {
    /// Opens the rings in `data_dir` and imports reference files found there.
    pub fn open(
        data_dir: &Path,
        config: QueueSection,
        max_frame_bytes: u32,
        wakeups: Wakeups,
    ) -> Result<(QueueNode, StartReport), String> {
        let sync = config.sync_mode().map_err(|err| err.to_string())?;
        let (queues, rings) = Queues::open(QueuesConfig {
            data_dir: data_dir.to_path_buf(),
            memory_limit_bytes: config.memory_limit_bytes,
            sync,
        })
        .map_err(|err| format!("cannot open the queues in {}: {err}", data_dir.display()))?;
        let mut node = QueueNode::new(queues, config, max_frame_bytes, wakeups);
        let mut report = StartReport {
            rings,
            ..StartReport::default()
        };
        let found = reference::scan(data_dir).map_err(|err| {
            format!(
                "cannot read the reference queue files in {}: {err}",
                data_dir.display()
            )
        })?;
        if !found.is_empty() {
            let config = node.config.clone();
            let capacity_for = |channel: &str| config.channel_size_for(channel);
            report.imported_records = node
                .channels
                .import(&found.storages, &capacity_for)
                .map_err(|err| {
                    format!(
                        "cannot import the reference queue files in {}: {err}",
                        data_dir.display()
                    )
                })?;
            node.channels
                .sync_all()
                .map_err(|err| format!("cannot sync the imported records: {err}"))?;
            report.imported_to = Some(
                reference::move_imported(data_dir, &found.files)
                    .map_err(|err| format!("imported, but cannot move the files aside: {err}"))?,
            );
            report.imported_files = found.files;
        }
        Ok((node, report))
    }

    pub fn new(
        queues: Queues,
        config: QueueSection,
        max_frame_bytes: u32,
        wakeups: Wakeups,
    ) -> QueueNode {
        QueueNode {
            channels: Channels::new(queues),
            config,
            wakeups,
            consumers: Consumers::default(),
            max_value_bytes: max_value_for_frames(max_frame_bytes),
            pushed_records: 0,
            removed_records: 0,
            redelivered_records: 0,
            pop_scratch: Vec::new(),
            consume_scratch: Vec::new(),
        }
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Pushes `values` (in order) to every storage of every channel of `channels`, creating
    /// missing channels. Without `partial`, all or nothing: every check passes before anything
    /// is written (Push, PushMulti). With `partial`, value limits and the memory limit are
    /// checked for all values first, then values are stored in order until one does not fit
    /// into every ring (Produce). Returns the number of values stored.
    pub(crate) fn push(
        &mut self,
        channels: &[&str],
        values: &[&[u8]],
        partial: bool,
    ) -> Result<u64, QueueError> {
        if values.is_empty() {
            // An empty Produce batch stores nothing, and creates no channel either.
            return Ok(0);
        }
        let one;
        let many: Vec<u64>;
        let lens: &[u64] = match values {
            [value] => {
                one = [value.len() as u64];
                &one
            }
            _ => {
                many = values.iter().map(|value| value.len() as u64).collect();
                &many
            }
        };
        if let Some(&len) = lens.iter().find(|&&len| len > self.max_value_bytes) {
            return Err(crate::engine::RingError::ValueTooBig {
                len,
                max: self.max_value_bytes,
            }
            .into());
        }
        let config = &self.config;
        let capacity_for = |channel: &str| config.channel_size_for(channel);
        let targets = self
            .channels
            .prepare(channels, lens, &capacity_for, partial)?;
        let mut iter = values.iter().copied();
        let stored = self.channels.push_prepared(&targets, &mut iter)?;
        if stored > 0 {
            for name in targets.names() {
                self.pushed_records += stored;
                self.consumers.wake_storage(name, &self.wakeups);
            }
        }
        Ok(stored)
    }

    /// Σ over the storages of `channel` (zeros for a missing channel).
    pub(crate) fn channel_size(&self, channel: &str) -> QueueSize {
        let mut total = QueueSize::default();
        for name in self.channels.storages(channel) {
            if let Some(ring) = self.channels.ring(&name) {
                total.add(&to_queue_size(ring.size()));
            }
        }
        total
    }

    /// Σ over every storage of the node.
    pub(crate) fn total_size(&self) -> QueueSize {
        let mut total = QueueSize::default();
        for name in self.channels.queues().names() {
            if let Some(size) = self.channels.queues().size(name) {
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

    fn admin_only(&self, code: RequestCode) -> bool {
        queue::is_admin_request(code)
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        queue::opens_stream(code)
    }

    fn acts_on_running_stream(&self, code: RequestCode) -> bool {
        queue::acts_on_running_stream(code)
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        requests::dispatch(self, request, reply)
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.channels
            .sync_all()
            .map(|()| tracing::info!("queues synced to disk"))
            .map_err(|error| format!("cannot sync the queues to disk: {error}"))
    }

    fn metrics(&self, out: &mut Families) {
        out.counters(&[
            ("swarm_queue_pushed_records_total", "Record copies written (a push to a channel with 3 subscribers counts 3).", self.pushed_records),
            ("swarm_queue_removed_records_total", "Records taken for good (popped, or acknowledged by a consumer).", self.removed_records),
            ("swarm_queue_redelivered_records_total", "Records given back to the front of their queue by consumers that left without acknowledging them.", self.redelivered_records),
        ]);
        out.gauge(
            "swarm_queue_consumers",
            "Consume streams running.",
            &[],
            self.consumers.len() as f64,
        );
        let consumers = self.consumers.per_storage();
        let mut channels: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for storage in self.channels.queues().names() {
            let Some(size) = self.channels.queues().size(storage) else {
                continue;
            };
            let (subscriber, channel) = split_storage_name(storage);
            let labels = [
                ("channel", channel),
                ("subscriber", subscriber.unwrap_or("")),
            ];
            storage_metrics(
                out,
                &labels,
                &size,
                consumers.get(storage).copied().unwrap_or(0),
            );
            let total = channels.entry(channel).or_default();
            total.0 += size.records;
            total.1 += size.value_bytes;
        }
        for (channel, (records, bytes)) in channels {
            let labels = [("channel", channel)];
            out.gauge(
                "swarm_channel_records",
                "Records stored per channel (queue: summed over its subscribers' queues).",
                &labels,
                records as f64,
            );
            out.gauge("swarm_channel_bytes", "Bytes stored per channel (queue: value bytes, summed over its subscribers' queues).", &labels, bytes as f64);
        }
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        let total = self.total_size();
        out.push(("total_records".into(), total.records));
        out.push(("total_bytes".into(), total.value_bytes));
        out.push(("total_used_bytes".into(), total.used_bytes));
        out.push(("total_capacity_bytes".into(), total.capacity_bytes));
        out.push(("consumers".into(), self.consumers.len() as u64));
        out.push(("pushed_records".into(), self.pushed_records));
        out.push(("removed_records".into(), self.removed_records));
        for name in self.channels.queues().names() {
            if let Some(size) = self.channels.queues().size(name) {
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
