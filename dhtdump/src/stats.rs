//! dhtdump's counters and its stats.log line, written every `log.stats_interval_s` (not in
//! `--oneshot` mode) by a small thread:
//!
//! `records_written:N bytes_written:B last_cycle_ms:M channel/<name>/records_written:N
//! channel/<name>/bytes_written:B ...`
//!
//! - `records_written`, `bytes_written`: records and dump-file bytes of the channel dumps that
//!   completed since the previous line (reset after every line);
//! - `last_cycle_ms`: how long the last complete cycle took (0 before the first one);
//! - `channel/<name>/...`: records and file bytes of that channel's last complete dump. A
//!   channel the node no longer has is dropped from the line.
//!
//! The same figures, cumulative, are dhtdump's `/metrics` ([`Stats`] is its
//! [`MetricsSource`]; docs/operations.md, "Metrics").

use node_core::log::NodeLogs;
use node_core::metrics::{Families, MetricsSource};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    records_written: u64,
    bytes_written: u64,
    last_cycle_ms: u64,
    channels: BTreeMap<String, ChannelStats>,
    /// Cumulative, for `/metrics`.
    records_total: u64,
    bytes_total: u64,
    cycles: u64,
    cycle_failures: u64,
    /// When the last complete cycle ended (or dhtdump started, before the first).
    last_cycle_end: Instant,
    /// Whether the last attempt to reach the node succeeded (`None` before the first).
    node_up: Option<bool>,
    ready: bool,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            records_written: 0,
            bytes_written: 0,
            last_cycle_ms: 0,
            channels: BTreeMap::new(),
            records_total: 0,
            bytes_total: 0,
            cycles: 0,
            cycle_failures: 0,
            last_cycle_end: Instant::now(),
            node_up: None,
            ready: false,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct ChannelStats {
    records: u64,
    bytes: u64,
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A channel dump completed: `records` records in a file of `bytes` bytes.
    pub fn channel_dumped(&self, channel: &str, records: u64, bytes: u64) {
        let mut inner = self.lock();
        inner.records_written += records;
        inner.bytes_written += bytes;
        inner.records_total += records;
        inner.bytes_total += bytes;
        inner
            .channels
            .insert(channel.to_string(), ChannelStats { records, bytes });
    }

    /// The node no longer has `channel`.
    pub fn channel_removed(&self, channel: &str) {
        self.lock().channels.remove(channel);
    }

    pub fn cycle_done(&self, took: Duration) {
        let mut inner = self.lock();
        inner.last_cycle_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        inner.cycles += 1;
        inner.last_cycle_end = Instant::now();
    }

    pub fn cycle_failed(&self) {
        self.lock().cycle_failures += 1;
    }

    /// Whether the last attempt to reach the node (connect, list its channels) worked.
    pub fn node_reachable(&self, up: bool) {
        self.lock().node_up = Some(up);
    }

    /// dhtdump runs its loop (`swarm_ready`).
    pub fn set_ready(&self) {
        self.lock().ready = true;
    }

    /// The line for the interval just ended; resets the interval counters.
    pub fn take_line(&self) -> String {
        let mut inner = self.lock();
        let mut line = format!(
            "records_written:{} bytes_written:{} last_cycle_ms:{}",
            inner.records_written, inner.bytes_written, inner.last_cycle_ms
        );
        for (name, channel) in &inner.channels {
            let _ = write!(
                line,
                " channel/{name}/records_written:{} channel/{name}/bytes_written:{}",
                channel.records, channel.bytes
            );
        }
        inner.records_written = 0;
        inner.bytes_written = 0;
        line
    }
}

impl MetricsSource for Stats {
    fn collect(&self, out: &mut Families) {
        let inner = self.lock();
        out.counters(&[
            (
                "swarm_dhtdump_cycles_total",
                "Dump cycles completed (every channel of the node dumped).",
                inner.cycles,
            ),
            (
                "swarm_dhtdump_cycle_failures_total",
                "Dump cycles that failed (retried after retry_wait_s).",
                inner.cycle_failures,
            ),
            (
                "swarm_dhtdump_records_written_total",
                "Records written to dump files.",
                inner.records_total,
            ),
            (
                "swarm_dhtdump_written_bytes_total",
                "Dump file bytes written.",
                inner.bytes_total,
            ),
        ]);
        out.gauge(
            "swarm_dhtdump_dump_age_seconds",
            "Seconds since the last complete dump cycle ended (since start when none has).",
            &[],
            inner.last_cycle_end.elapsed().as_secs_f64(),
        );
        if inner.cycles > 0 {
            out.gauge(
                "swarm_dhtdump_cycle_duration_seconds",
                "How long the last complete dump cycle took.",
                &[],
                inner.last_cycle_ms as f64 / 1000.0,
            );
        }
        if let Some(up) = inner.node_up {
            out.gauge(
                "swarm_dhtdump_node_up",
                "1 when the last attempt to reach the dht node worked, 0 when it failed.",
                &[],
                f64::from(u8::from(up)),
            );
        }
        for (name, channel) in &inner.channels {
            let labels = [("channel", name.as_str())];
            out.gauge(
                "swarm_dhtdump_channel_records",
                "Records in the channel's last complete dump.",
                &labels,
                channel.records as f64,
            );
            out.gauge(
                "swarm_dhtdump_channel_bytes",
                "File bytes of the channel's last complete dump.",
                &labels,
                channel.bytes as f64,
            );
        }
    }

    fn ready(&self) -> bool {
        self.lock().ready
    }
}

/// Starts the thread that writes a stats line every `interval` until `stop` is set.
pub fn spawn_writer(
    stats: Arc<Stats>,
    logs: NodeLogs,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            while crate::util::sleep_unless_stopped(
                &stop,
                next.saturating_duration_since(Instant::now()),
            ) {
                if let Err(err) = logs.write_stats_line(&stats.take_line()) {
                    tracing::warn!("cannot write stats.log: {err}");
                }
                next += interval;
                // After a long stall (suspended machine), do not write a burst of lines.
                let now = Instant::now();
                if next < now {
                    next = now + interval;
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_counters_reset_channel_figures_stay() {
        let stats = Stats::default();
        assert_eq!(
            stats.take_line(),
            "records_written:0 bytes_written:0 last_cycle_ms:0"
        );
        stats.channel_dumped("b", 10, 1000);
        stats.channel_dumped("a", 5, 500);
        stats.cycle_done(Duration::from_millis(1234));
        assert_eq!(
            stats.take_line(),
            "records_written:15 bytes_written:1500 last_cycle_ms:1234 \
             channel/a/records_written:5 channel/a/bytes_written:500 \
             channel/b/records_written:10 channel/b/bytes_written:1000"
        );
        stats.channel_removed("b");
        assert_eq!(
            stats.take_line(),
            "records_written:0 bytes_written:0 last_cycle_ms:1234 \
             channel/a/records_written:5 channel/a/bytes_written:500"
        );
    }
}
