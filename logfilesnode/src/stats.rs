//! The logfiles node's counters: the pairs of GetStats and stats.log, and the families of
//! `/metrics` (every metric is documented in docs/operations.md, "Metrics").

use crate::service::LogfilesNode;
use node_core::metrics::core::add_latency;
use node_core::metrics::Families;

pub(crate) fn metrics(node: &LogfilesNode, out: &mut Families) {
    let size = node.engine.size();
    out.gauges(&[
        (
            "swarm_logfiles_channels",
            "Channels on disk.",
            node.engine.channel_names().len() as u64,
        ),
        (
            "swarm_logfiles_bucket_files",
            "Bucket files of all channels.",
            size.buckets,
        ),
        (
            "swarm_logfiles_disk_bytes",
            "Bytes of the bucket files of all channels.",
            size.bytes,
        ),
        (
            "swarm_logfiles_buckets_open",
            "Bucket files open for writing.",
            node.engine.open_bucket_count() as u64,
        ),
        (
            "swarm_logfiles_writes_awaiting_fsync",
            "Puts (fsync = always) waiting for their group commit.",
            node.writes_awaiting_fsync() as u64,
        ),
    ]);
    for channel in node.engine.channel_names() {
        let size = node.engine.channel_size(channel);
        out.gauge(
            "swarm_channel_bytes",
            "Bytes stored per channel (logfiles: its bucket files on disk).",
            &[("channel", channel)],
            size.bytes as f64,
        );
    }
    let Some(syncer) = node.syncer() else {
        return;
    };
    out.counter(
        "swarm_logfiles_fsyncs_total",
        "Group commits (one fdatasync of every file written in an epoch) completed.",
        &[],
        syncer.completed as f64,
    );
    out.counter(
        "swarm_logfiles_fsync_failures_total",
        "Group commits that failed (their writes were answered InternalError).",
        &[],
        syncer.failures as f64,
    );
    add_latency(
        out,
        "swarm_logfiles_fsync_duration_seconds",
        "Duration of each group commit.",
        &[],
        &syncer.latency,
    );
}

pub(crate) fn stats(node: &LogfilesNode, out: &mut Vec<(String, u64)>) {
    let size = node.engine.size();
    out.push(("channels".into(), node.engine.channel_names().len() as u64));
    out.push(("total_buckets".into(), size.buckets));
    out.push(("total_bytes".into(), size.bytes));
    out.push((
        "open_buckets".into(),
        node.engine.open_bucket_count() as u64,
    ));
    out.push((
        "writes_awaiting_fsync".into(),
        node.writes_awaiting_fsync() as u64,
    ));
    // How full the disk is: `swarmctl health` warns before Puts start failing.
    match crate::engine::disk_space::disk_space(node.engine.data_dir()) {
        Ok(space) => {
            out.push(("disk_size_bytes".into(), space.size_bytes));
            out.push(("disk_free_bytes".into(), space.free_bytes));
        }
        Err(error) => tracing::debug!(%error, "statvfs of the data directory"),
    }
    if let Some(syncer) = node.syncer() {
        out.push(("group_commits".into(), syncer.completed));
        out.push(("group_commit_failures".into(), syncer.failures));
        let mean_us = syncer
            .total_sync_time
            .as_micros()
            .checked_div(u128::from(syncer.completed))
            .unwrap_or(0);
        out.push(("group_commit_mean_us".into(), mean_us as u64));
    }
}
