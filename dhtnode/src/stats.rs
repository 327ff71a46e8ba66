//! The dht node's counters: the pairs of GetStats and stats.log, and the families of `/metrics`
//! (every metric is documented in docs/operations.md, "Metrics").

use crate::service::DhtNode;
use dht_persist::DumpScheduler;
use node_core::metrics::Families;
use std::time::Instant;

/// The dump metrics (docs/operations.md, "Metrics").
fn dumper_metrics(dumper: &DumpScheduler, out: &mut Families) {
    let (age, took) = dumper.dump_age(Instant::now());
    out.gauge(
        "swarm_dht_dump_age_seconds",
        "Seconds since the last complete dump cycle ended (since start when none has).",
        &[],
        age.as_secs_f64(),
    );
    if let Some(took) = took {
        out.gauge(
            "swarm_dht_dump_duration_seconds",
            "How long the last complete dump cycle took.",
            &[],
            took.as_secs_f64(),
        );
    }
    out.gauge(
        "swarm_dht_dumping",
        "1 while a dump is being written.",
        &[],
        f64::from(u8::from(dumper.is_dumping())),
    );
    out.counter(
        "swarm_dht_dumps_total",
        "Channel dumps written since start.",
        &[],
        dumper.dumps_written() as f64,
    );
    out.counter(
        "swarm_dht_dump_failures_total",
        "Channel dumps that failed since start (the previous dump file was kept).",
        &[],
        dumper.failures() as f64,
    );
}

pub(crate) fn metrics(node: &DhtNode, out: &mut Families) {
    for name in node.engine.channel_names() {
        let size = node.engine.channel_size(name);
        let labels = [("channel", name)];
        out.gauge(
            "swarm_channel_records",
            "Records stored per channel.",
            &labels,
            size.records as f64,
        );
        out.gauge(
            "swarm_channel_bytes",
            "Bytes stored per channel (dht: Σ 8 + value length).",
            &labels,
            size.bytes as f64,
        );
    }
    out.gauge(
        "swarm_dht_listeners",
        "Listen and Mirror streams registered.",
        &[],
        node.engine.listener_count() as f64,
    );
    out.gauge(
        "swarm_dht_tombstones",
        "Tombstones kept (keys removed by RemoveVersion, until dht.tombstone_ttl_s).",
        &[],
        node.engine.tombstone_count() as f64,
    );
    let redistribution = node.redistributor.state(&node.engine);
    let progress = &redistribution.progress;
    out.gauges(&[
        (
            "swarm_dht_redistribution_running",
            "1 while this node moves records to others.",
            u64::from(redistribution.running),
        ),
        (
            "swarm_dht_redistribution_moved_records",
            "Records moved by the running (or last) redistribution.",
            progress.moved,
        ),
        (
            "swarm_dht_redistribution_total_records",
            "Records the running (or last) redistribution has to move.",
            progress.total,
        ),
        (
            "swarm_dht_redistribution_failures",
            "Failed attempts of the running (or last) redistribution.",
            progress.failures,
        ),
    ]);
    if let Some(dumper) = &node.dumper {
        dumper_metrics(dumper, out);
    }
}

pub(crate) fn stats(node: &DhtNode, out: &mut Vec<(String, u64)>) {
    let size = node.engine.size();
    out.push(("total_records".into(), size.records));
    out.push(("total_bytes".into(), size.bytes));
    out.push(("listeners".into(), node.engine.listener_count() as u64));
    out.push(("tombstones".into(), node.engine.tombstone_count()));
    let redistribution = node.redistributor.state(&node.engine);
    out.push(("redistributing".into(), u64::from(redistribution.running)));
    out.push(("redistribution_moved".into(), redistribution.progress.moved));
    if let Some(dumper) = &node.dumper {
        out.push(("dumping".into(), u64::from(dumper.is_dumping())));
        out.push(("dump_failures".into(), dumper.failures()));
        // Dump age against the period: what `swarmctl health` checks.
        let period_s = dumper.period().map_or(0, |period| period.as_secs());
        out.push(("dump_period_s".into(), period_s));
        let age_s = dumper.last_dump_age(Instant::now()).as_secs();
        out.push(("last_dump_age_s".into(), age_s));
    }
    log_stats(node, out);
    for name in node.engine.channel_names() {
        let size = node.engine.channel_size(name);
        out.push((format!("channel/{name}/records"), size.records));
        out.push((format!("channel/{name}/bytes"), size.bytes));
    }
}

/// The change log's counters (absent under `durability = "none"`).
fn log_stats(node: &DhtNode, out: &mut Vec<(String, u64)>) {
    if !node.engine.log().is_writing() {
        return;
    }
    let position = node.engine.log().position().unwrap_or(0);
    out.push(("log_position".into(), position));
    out.push(("log_bytes".into(), node.log_bytes()));
    let sync = &node.log_sync;
    out.push((
        "log_writes_awaiting_fsync".into(),
        sync.awaiting_fsync() as u64,
    ));
    if let Some(syncer) = sync.syncer() {
        out.push(("log_fsyncs".into(), syncer.completed));
        out.push(("log_fsync_failures".into(), syncer.failures));
    }
}
