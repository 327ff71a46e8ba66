//! The `dhtnode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use dhtnode::config::NodeConfig;
use dhtnode::dump::loader::{LoadOptions, OutOfRangePolicy};
use dhtnode::dump::writer::DumpThread;
use dhtnode::dumping::Dumper;
use dhtnode::engine::{Engine, EngineLimits, ListenerLimits};
use dhtnode::service::DhtNode;
use node_core::config::CommonArgs;
use node_core::daemon;
use node_core::protocol::dht::HashRange;
use std::process::ExitCode;
use std::time::Duration;

/// The dht node: an in-memory, hash-ranged key/value store.
#[derive(Parser, Debug)]
#[command(name = "dhtnode", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The hash range this node owns, as MIN:MAX in hex (overrides dht.range_min/range_max).
    /// ffffffffffffffff:0000000000000000 is the empty range.
    #[arg(long, value_name = "MIN:MAX", value_parser = HashRange::parse)]
    range: Option<HashRange>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::run::<NodeConfig, _, _>("dhtnode", &args.common, |config, wakeups| {
        let range = match args.range {
            Some(range) => range,
            None => config.dht.range().map_err(|err| err.to_string())?,
        };
        tracing::info!("hash range {range}");
        let limits = EngineLimits {
            size_limit_bytes: config.dht.size_limit_bytes,
            max_channels: config.dht.max_channels as usize,
            max_value_bytes: config.dht.max_value_bytes as usize,
        };
        let listener_limits = ListenerLimits {
            max_events: config.dht.listen_queue_events as usize,
            max_bytes: config.dht.listen_queue_bytes as usize,
            max_total_bytes: usize::try_from(config.dht.listen_total_bytes).unwrap_or(usize::MAX),
        };
        let mut engine = Engine::new(range, limits, listener_limits);
        let policy: OutOfRangePolicy = config
            .dht
            .out_of_range
            .parse()
            .map_err(|err| format!("dht.out_of_range: {err}"))?;
        let load_options = LoadOptions {
            policy,
            range,
            max_value_bytes: limits.max_value_bytes,
        };
        let report = dhtnode::loading::load(&config.data_dir, &load_options, &mut engine)
            .map_err(|err| err.to_string())?;
        let size = engine.size();
        tracing::info!(
            "loaded {} channels from {}: {} records, {} bytes",
            report.channels.len(),
            config.data_dir.display(),
            size.records,
            size.bytes
        );
        let thread = DumpThread::spawn(config.data_dir.clone()).map_err(|err| {
            format!(
                "cannot start the dump writer in {}: {err}",
                config.data_dir.display()
            )
        })?;
        let period =
            (config.dht.dump_period_s > 0).then(|| Duration::from_secs(config.dht.dump_period_s));
        let dumper = Dumper::new(thread, period);
        Ok(DhtNode::new(engine, wakeups, Some(dumper)))
    })
}
