//! swarmctl: the operator's command line onto swarm nodes, built on the client library.
//!
//! Owns argument parsing and the exit convention ([`EXIT_STATUSES`], also in `--help`): 0
//! success; 1 absent, empty or false (`get`, `exists`, `pop`); 2 usage error (clap's message,
//! or one line `swarmctl: <reason>` for a bad channel name, key, value, file); 3 a node or the
//! cluster failed, partial results included (one line `swarmctl: <reason>` on stderr, after
//! whatever could be printed). `health` has its own: 0 healthy, 1 degraded, 2 usage. Writing
//! into a closed pipe (`swarmctl ... | head`) ends quietly with 0.
//!
//! Each subcommand lives in its own `cmd_*` module with an `Args` struct and a `run` function;
//! groups of verbs (`dht put ...`, `log ...`, `queue ...`) slot in the same way, as one more
//! variant of [`Command`] and one more module. Commands signal the statuses other than 3 with
//! the error types of [`outcome`].

mod cmd_dht;
mod cmd_health;
mod cmd_log;
mod cmd_ping;
mod cmd_queue;
mod cmd_stats;
mod dashboard;
mod outcome;
mod print;
mod probe;
mod targets;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The exit statuses, as `--help` shows them.
const EXIT_STATUSES: &str = "\
Exit status: 0 success; 1 absent, empty or false (get, exists, pop); 2 usage error (command \
line, channel name, key, value, files); 3 a node or the cluster failed, partial results \
included. health: 0 healthy, 1 degraded, 2 usage. Writing into a closed pipe ends quietly \
with 0.

Options --node, --nodes, --key-file, --name, --tls-* and --timeout-ms go before or after the
verb.";

/// The command-line face of the swarm client.
#[derive(Debug, Parser)]
#[command(name = "swarmctl", version, about, after_help = EXIT_STATUSES)]
struct Cli {
    #[command(flatten)]
    targets: targets::TargetArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Handshake with each node and ask its version; prints kind, versions and round trip, or
    /// why a node is down, for every node.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml ping")]
    Ping(cmd_ping::Args),
    /// Print each node's live counters (or why it is down).
    #[command(after_help = "Example: swarmctl --node 127.0.0.1:10000 stats")]
    Stats(cmd_stats::Args),
    /// One verdict for the whole topology: every node reachable, of the expected kind and
    /// version; dht ranges tiling the hash space; dump age against the dump period; queue fill;
    /// logfiles disk use; open connections. Exit 0 healthy, 1 degraded.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml health --json")]
    Health(cmd_health::Args),
    /// Serve a live web page of the whole topology: every node up or down with kind, version
    /// and uptime; the dht ranges over the hash space; replica sets; channels; queue fill; dump
    /// age; request rate and p99 latency over the last minutes. Runs until interrupted.
    #[command(
        after_help = "Example: swarmctl --nodes cluster.toml dashboard --listen 127.0.0.1:9300"
    )]
    Dashboard(dashboard::Args),
    /// Records and channels of a dht cluster: put, get, exists, remove, getall, listen,
    /// channels, size, remove-channel, ranges, redistribute.
    Dht(cmd_dht::Args),
    /// Records and channels of a logfiles cluster: put, getrange, getall, channels, size,
    /// remove-channel.
    Log(cmd_log::Args),
    /// Values and channels of a queue cluster: push, pop, consume, subscribe, channels, size,
    /// remove-channel.
    Queue(cmd_queue::Args),
}

/// A failed command: its message is the whole of what the user sees.
type CmdResult = Result<(), Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args = targets::hoist_global_options(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    if !cli.targets.has_target() {
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "the following required arguments were not provided:\n  \
                 <--node <HOST:PORT>|--nodes <FILE>>",
            )
            .exit();
    }
    let result = match &cli.command {
        Command::Ping(args) => cmd_ping::run(&cli.targets, args),
        Command::Stats(args) => cmd_stats::run(&cli.targets, args),
        Command::Health(args) => cmd_health::run(&cli.targets, args),
        Command::Dashboard(args) => dashboard::run(&cli.targets, args),
        Command::Dht(args) => cmd_dht::run(&cli.targets, args),
        Command::Log(args) => cmd_log::run(&cli.targets, args),
        Command::Queue(args) => cmd_queue::run(&cli.targets, args),
    };
    outcome::exit(result)
}
