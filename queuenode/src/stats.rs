//! The queue node's counters: the pairs of GetStats and stats.log, and the families of
//! `/metrics` (every metric is documented in docs/operations.md, "Metrics").

use crate::engine::names::split_storage_name;
use crate::engine::{Engine, RingSize};
use node_core::metrics::Families;
use node_core::server::StreamHandle;
use std::collections::BTreeMap;

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

pub(crate) fn metrics(engine: &Engine<StreamHandle>, out: &mut Families) {
    let counters = engine.counters();
    out.counters(&[
        ("swarm_queue_pushed_records_total", "Record copies written (a push to a channel with 3 subscribers counts 3).", counters.pushed_records),
        ("swarm_queue_removed_records_total", "Records taken for good (popped, or acknowledged by a consumer).", counters.removed_records),
        ("swarm_queue_redelivered_records_total", "Records given back to the front of their queue by consumers that left without acknowledging them.", counters.redelivered_records),
    ]);
    out.gauge(
        "swarm_queue_consumers",
        "Consume streams running.",
        &[],
        engine.consumer_count() as f64,
    );
    let consumers = engine.consumers_per_storage();
    let queues = engine.channels().queues();
    let mut channels: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for storage in queues.names() {
        let Some(size) = queues.size(storage) else {
            continue;
        };
        let (subscriber, channel) = split_storage_name(storage);
        let labels = [
            ("channel", channel),
            ("subscriber", subscriber.unwrap_or("")),
        ];
        let consumers = consumers.get(storage).copied().unwrap_or(0);
        storage_metrics(out, &labels, &size, consumers);
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
        out.gauge(
            "swarm_channel_bytes",
            "Bytes stored per channel (queue: value bytes, summed over its subscribers' queues).",
            &labels,
            bytes as f64,
        );
    }
}

pub(crate) fn stats(engine: &Engine<StreamHandle>, out: &mut Vec<(String, u64)>) {
    let total = engine.total_size();
    let counters = engine.counters();
    out.push(("total_records".into(), total.records));
    out.push(("total_bytes".into(), total.value_bytes));
    out.push(("total_used_bytes".into(), total.used_bytes));
    out.push(("total_capacity_bytes".into(), total.capacity_bytes));
    out.push(("consumers".into(), engine.consumer_count() as u64));
    out.push(("pushed_records".into(), counters.pushed_records));
    out.push(("removed_records".into(), counters.removed_records));
    let queues = engine.channels().queues();
    for name in queues.names() {
        if let Some(size) = queues.size(name) {
            out.push((format!("channel/{name}/records"), size.records));
            out.push((format!("channel/{name}/bytes"), size.value_bytes));
            out.push((
                format!("channel/{name}/fill_percent"),
                u64::from(size.fill_percent()),
            ));
        }
    }
}
