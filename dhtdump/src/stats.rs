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

use node_core::log::NodeLogs;
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

#[derive(Debug, Default)]
struct Inner {
    records_written: u64,
    bytes_written: u64,
    last_cycle_ms: u64,
    channels: BTreeMap<String, ChannelStats>,
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
        inner
            .channels
            .insert(channel.to_string(), ChannelStats { records, bytes });
    }

    /// The node no longer has `channel`.
    pub fn channel_removed(&self, channel: &str) {
        self.lock().channels.remove(channel);
    }

    pub fn cycle_done(&self, took: Duration) {
        self.lock().last_cycle_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
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
