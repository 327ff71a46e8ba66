//! `swarmctl dashboard`: a live web page of the whole topology.
//!
//! swarmctl is the aggregator: it keeps one connection per node (the client library's, which
//! reconnects by itself), asks every node every `--interval-ms` what `swarmctl health` asks
//! (`collect`, `node`, reusing health's checks) and serves one page plus the JSON it polls
//! (`http`). The page (`page/`) is compiled into swarmctl and loads nothing from elsewhere.
//! What it shows and where each figure comes from: docs/operations.md, "Dashboard".
//!
//! The listener binds loopback (default 127.0.0.1:9300); any other address needs
//! `--insecure`, as a node's bind rule does, because the page has no authentication and shows
//! the topology to anyone who can connect. Everything is bounded: nodes ([`MAX_NODES`]),
//! channels per node, history points, HTTP connections and request sizes (`http`).

mod collect;
mod history;
mod http;
mod node;
mod ranges;
mod rates;

use crate::cmd_health::Thresholds;
use crate::outcome::{Usage, FAILURE};
use crate::targets::TargetArgs;
use crate::CmdResult;
use collect::{Board, Collector, MAX_NODES};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The request timeout when `--timeout-ms` is not given: a node that does not answer within
/// it shows as down on the next collection, not a minute later.
const DEFAULT_TIMEOUT_MS: u64 = 2000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to serve the page: an IP address and port (port 0: the OS chooses; the URL is
    /// printed). Only a loopback address unless --insecure.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:9300")]
    listen: String,
    /// Serve on a non-loopback address: anyone who can connect sees the topology (no
    /// authentication, no TLS).
    #[arg(long)]
    insecure: bool,
    /// How often every node is asked, in milliseconds (100 to 60000).
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
    /// How much history the plots show, in seconds (at most 1800 points are kept).
    #[arg(long, value_name = "S", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(10..=86_400))]
    history_s: u64,
    #[command(flatten)]
    thresholds: Thresholds,
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let listen = listen_addr(&args.listen, args.insecure)?;
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Usage(format!("--listen {listen}: cannot listen there: {e}")))?;
    let addr = listener.local_addr()?;
    let (_, mut options) = targets.resolve()?;
    options.allow_down_nodes = true;
    if !targets.timeout_given() {
        options.request_timeout_ms = DEFAULT_TIMEOUT_MS;
    }
    let interval = Duration::from_millis(args.interval_ms);
    let points = usize::try_from(args.history_s * 1000 / args.interval_ms).unwrap_or(usize::MAX);
    let board = Arc::new(Board::new(points));
    let mut collector = Collector::start(targets, options, args.thresholds.clone(), interval)
        .map_err(|e| Usage(e.to_string()))?;
    collector.collect(&board);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "swarmctl dashboard: http://{addr}/ ({} nodes, asked every {} ms; at most {MAX_NODES})",
        collector.node_count(),
        args.interval_ms
    )?;
    out.flush()?;
    drop(out);
    let collecting = Arc::clone(&board);
    std::thread::Builder::new()
        .name("dashboard-collector".into())
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| loop {
                let started = Instant::now();
                collector.collect(&collecting);
                std::thread::sleep(interval.saturating_sub(started.elapsed()));
            });
            // A page that silently stopped changing would be worse than no page: a bug in the
            // collector (its message is already on stderr) ends the dashboard.
            if std::panic::catch_unwind(run).is_err() {
                std::process::exit(i32::from(FAILURE));
            }
        })?;
    http::serve(listener, board)?;
    Ok(())
}

/// `--listen` as an address to bind: an IP literal and port, loopback unless `insecure`.
fn listen_addr(text: &str, insecure: bool) -> Result<SocketAddr, Usage> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        Usage(format!(
            "--listen {text}: not an IP address and port (e.g. 127.0.0.1:9300, [::1]:9300)"
        ))
    })?;
    if !addr.ip().to_canonical().is_loopback() && !insecure {
        return Err(Usage(format!(
            "--listen {addr} is not a loopback address: the dashboard has no authentication \
             and shows the whole topology to anyone who can connect; add --insecure to serve \
             it there anyway"
        )));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_insecure() {
        assert_eq!(
            listen_addr("127.0.0.1:0", false).map_err(|e| e.0),
            Ok("127.0.0.1:0".parse().expect("an address"))
        );
        assert!(listen_addr("[::1]:9300", false).is_ok());
        let refused = listen_addr("0.0.0.0:9300", false).expect_err("not loopback");
        assert!(refused.0.contains("add --insecure"), "{}", refused.0);
        assert!(listen_addr("0.0.0.0:9300", true).is_ok());
        let bad = listen_addr("localhost:9300", false).expect_err("not an IP");
        assert!(bad.0.contains("not an IP address and port"), "{}", bad.0);
    }
}
