//! The `dhtnode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use node_core::config::CommonArgs;
use node_core::daemon::{self, BareService};
use node_core::protocol::NodeKind;
use std::process::ExitCode;

/// The dht node: an in-memory, hash-ranged key/value store.
#[derive(Parser, Debug)]
#[command(name = "dhtnode", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::run::<dhtnode::config::NodeConfig, _, _>(
        "dhtnode",
        &args.common,
        |_config, _wakeups| Ok(BareService::new(NodeKind::Dht, env!("CARGO_PKG_VERSION"))),
    )
}
