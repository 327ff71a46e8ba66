//! `swarmctl ping`: one line per node, `HOST:PORT kind=dht version=0.1.0 protocol=1 rtt=0.123ms`,
//! where rtt is one GetVersion round trip on the already open connection.

use crate::targets::{connect_all, TargetArgs};
use crate::CmdResult;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(targets: &TargetArgs, _args: &Args) -> CmdResult {
    let clients = connect_all(targets)?;
    let mut out = std::io::stdout().lock();
    for client in &clients {
        for node in 0..client.node_count() {
            let started = Instant::now();
            let version = client.get_version(node)?;
            let rtt_ms = started.elapsed().as_secs_f64() * 1000.0;
            let addr = client
                .node_addr(node)
                .map(|a| a.to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{addr} kind={} version={} protocol={} rtt={rtt_ms:.3}ms",
                version.kind, version.software_version, version.protocol_version
            )?;
        }
    }
    Ok(())
}
