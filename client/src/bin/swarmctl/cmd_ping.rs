//! `swarmctl ping`: one line per node, `HOST:PORT kind=dht version=0.1.0 protocol=1 rtt=0.123ms`,
//! where rtt is one GetVersion round trip on the already open connection; for a node that
//! cannot be asked, `HOST:PORT down: <reason>` (down, unreachable) or `HOST:PORT error:
//! <reason>` (wrong kind, authentication, ...). Every node is reported; if any failed, a last
//! line `swarmctl: N of M nodes failed` goes to stderr and the status is 3.

use crate::outcome::{ExitWith, FAILURE};
use crate::probe::{probe_all, Probe};
use crate::targets::TargetArgs;
use crate::CmdResult;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(targets: &TargetArgs, _args: &Args) -> CmdResult {
    let probes = probe_all(targets)?;
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for probe in &probes {
        let addr = probe.addr;
        let answer = probe
            .client
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|client| {
                let started = Instant::now();
                let version = client.get_version(0)?;
                Ok((version, started.elapsed().as_secs_f64() * 1000.0))
            });
        match answer {
            Ok((version, rtt_ms)) => writeln!(
                out,
                "{addr} kind={} version={} protocol={} rtt={rtt_ms:.3}ms",
                version.kind, version.software_version, version.protocol_version
            )?,
            Err(error) => {
                failed += 1;
                writeln!(out, "{addr} {}", Probe::describe(&error))?;
            }
        }
    }
    nodes_failed(failed, probes.len(), &mut out)
}

/// Ends a per-node report: `Ok` when every node answered, else the summary line and status 3.
pub fn nodes_failed(failed: usize, total: usize, out: &mut impl Write) -> CmdResult {
    out.flush()?;
    if failed == 0 {
        return Ok(());
    }
    let _ = writeln!(
        std::io::stderr(),
        "swarmctl: {failed} of {total} nodes failed"
    );
    Err(ExitWith(FAILURE).into())
}
