//! The `queuenode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use node_core::config::CommonArgs;
use node_core::daemon;
use queuenode::config::NodeConfig;
use queuenode::engine::{Queues, QueuesConfig};
use queuenode::service::QueueNode;
use std::process::ExitCode;

/// The queue node: fixed-size ring-buffer queues with subscribers.
#[derive(Parser, Debug)]
#[command(name = "queuenode", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::run::<NodeConfig, _, _>("queuenode", &args.common, |config, _wakeups| {
        let sync = config.queue.sync_mode().map_err(|err| err.to_string())?;
        let (queues, report) = Queues::open(QueuesConfig {
            data_dir: config.data_dir.clone(),
            memory_limit_bytes: config.queue.memory_limit_bytes,
            sync,
        })
        .map_err(|err| {
            format!(
                "cannot open the queues in {}: {err}",
                config.data_dir.display()
            )
        })?;
        let size: u64 = queues
            .names()
            .filter_map(|name| queues.size(name))
            .map(|size| size.records)
            .sum();
        tracing::info!(
            "opened {} rings in {}: {} records, {} bytes of ring capacity; {} torn records cut, \
             {} corrupt ring files moved aside",
            report.rings,
            config.data_dir.display(),
            size,
            queues.total_capacity_bytes(),
            report.records_cut,
            report.corrupt.len()
        );
        Ok(QueueNode::new(queues, config.queue.clone()))
    })
}
