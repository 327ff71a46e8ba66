//! The `queuenode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use node_core::config::CommonArgs;
use node_core::daemon;
use queuenode::config::NodeConfig;
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
    daemon::run::<NodeConfig, _, _>("queuenode", &args.common, |config, wakeups| {
        let (node, report) = QueueNode::open(
            &config.data_dir,
            config.queue.clone(),
            config.server.max_frame_bytes,
            wakeups,
        )?;
        let queues = node.engine().channels().queues();
        let records: u64 = queues
            .names()
            .filter_map(|name| queues.size(name))
            .map(|size| size.records)
            .sum();
        tracing::info!(
            "opened {} rings in {}: {} records, {} bytes of ring capacity; {} torn records cut, \
             {} corrupt ring files moved aside",
            report.rings.rings,
            config.data_dir.display(),
            records,
            queues.total_capacity_bytes(),
            report.rings.records_cut,
            report.rings.corrupt.len()
        );
        if let Some(moved_to) = &report.imported_to {
            tracing::info!(
                "imported {} records from {} reference queue files; the files moved to {}",
                report.imported_records,
                report.imported_files.len(),
                moved_to.display()
            );
        }
        Ok(node)
    })
}
