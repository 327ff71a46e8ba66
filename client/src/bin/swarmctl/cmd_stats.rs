//! `swarmctl stats`: each node's live counters, one `name value` per line under a
//! `# HOST:PORT` heading; a node that cannot be asked gets `# HOST:PORT down: <reason>` (or
//! `error: <reason>`) and no counters. Every node is reported; if any failed, the status is 3
//! (with `swarmctl: N of M nodes failed` on stderr).

use crate::cmd_ping::nodes_failed;
use crate::probe::{probe_all, Probe};
use crate::targets::TargetArgs;
use crate::CmdResult;
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(targets: &TargetArgs, _args: &Args) -> CmdResult {
    let probes = probe_all(targets)?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for probe in &probes {
        let addr = probe.addr;
        let stats = probe
            .client
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|client| client.get_stats(0));
        match stats {
            Ok(stats) => {
                writeln!(out, "# {addr}")?;
                for (name, value) in stats {
                    writeln!(out, "{name} {value}")?;
                }
            }
            Err(error) => {
                failed += 1;
                writeln!(out, "# {addr} {}", Probe::describe(&error))?;
            }
        }
    }
    nodes_failed(failed, probes.len(), &mut out)
}
