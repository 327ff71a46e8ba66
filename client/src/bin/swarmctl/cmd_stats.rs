//! `swarmctl stats`: each node's live counters, one `name value` per line under a
//! `# HOST:PORT` heading.

use crate::targets::{connect_all, TargetArgs};
use crate::CmdResult;
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(targets: &TargetArgs, _args: &Args) -> CmdResult {
    let clients = connect_all(targets)?;
    let mut out = std::io::stdout().lock();
    for client in &clients {
        for node in 0..client.node_count() {
            let stats = client.get_stats(node)?;
            let addr = client
                .node_addr(node)
                .map(|a| a.to_string())
                .unwrap_or_default();
            writeln!(out, "# {addr}")?;
            for (name, value) in stats {
                writeln!(out, "{name} {value}")?;
            }
        }
    }
    Ok(())
}
