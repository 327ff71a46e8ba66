//! The `logfilesnode` daemon: parses the command line, opens the data directory (cutting torn
//! tails left by an unclean stop) and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use logfilesnode::config::NodeConfig;
use logfilesnode::engine::{Engine, EngineLimits};
use logfilesnode::service::{LogfilesNode, WriteTimers};
use node_core::config::CommonArgs;
use node_core::daemon;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The logfiles node: a time-bucketed on-disk append store.
#[derive(Parser, Debug)]
#[command(name = "logfilesnode", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::run::<NodeConfig, _, _>("logfilesnode", &args.common, |config, wakeups| {
        let section = &config.logfiles;
        let limits = EngineLimits {
            max_value_bytes: section.max_value_bytes as usize,
            write_buffer_bytes: section.write_buffer_bytes as usize,
            max_open_buckets: section.max_open_buckets as usize,
            max_open_buckets_per_channel: section.max_open_buckets_per_channel as usize,
            max_channels: section.max_channels as usize,
            fsync: section.fsync,
            index_interval_bytes: section.index_interval_bytes,
        };
        let started = Instant::now();
        let (engine, report) =
            Engine::open(&config.data_dir, limits).map_err(|err| err.to_string())?;
        if report.journal_buckets > 0 {
            tracing::warn!(
                "the node had stopped uncleanly: checked the tails of {} buckets, cut {}",
                report.journal_buckets,
                report.cut.len()
            );
        }
        let size = engine.size();
        tracing::info!(
            "opened {}: {} channels, {} bucket files, {} bytes, in {} ms; fsync = {:?}",
            config.data_dir.display(),
            engine.channel_names().len(),
            size.buckets,
            size.bytes,
            started.elapsed().as_millis(),
            section.fsync
        );
        let timers = WriteTimers {
            flush_interval: Duration::from_millis(u64::from(section.flush_interval_ms)),
            fsync_interval: Duration::from_millis(u64::from(section.fsync_interval_ms)),
        };
        LogfilesNode::new(engine, wakeups, timers)
            .map_err(|err| format!("cannot start the fsync thread: {err}"))
    })
}
