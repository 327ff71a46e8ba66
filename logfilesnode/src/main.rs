//! The `logfilesnode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.

use clap::Parser;
use node_core::config::CommonArgs;
use node_core::daemon::{self, BareService};
use node_core::protocol::NodeKind;
use std::process::ExitCode;

/// The logfiles node: a time-bucketed on-disk append store.
#[derive(Parser, Debug)]
#[command(name = "logfilesnode", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::run::<logfilesnode::config::NodeConfig, _, _>(
        "logfilesnode",
        &args.common,
        |_config, _wakeups| {
            Ok(BareService::new(
                NodeKind::Logfiles,
                env!("CARGO_PKG_VERSION"),
            ))
        },
    )
}
