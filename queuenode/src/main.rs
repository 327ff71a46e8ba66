//! The `queuenode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use node_core::config::CommonArgs;
use node_core::daemon::{self, BareService};
use node_core::protocol::NodeKind;
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
    daemon::run::<queuenode::config::NodeConfig, _, _>(
        "queuenode",
        &args.common,
        |_config, _wakeups| Ok(BareService::new(NodeKind::Queue, env!("CARGO_PKG_VERSION"))),
    )
}
