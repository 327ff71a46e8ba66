//! swarmctl: the operator's command line onto swarm nodes, built on the client library.
//!
//! Owns argument parsing and the exit convention: 0 on success; on failure one line
//! `swarmctl: <reason>` on stderr and status 1 (usage errors: clap's message and status 2).
//! Each subcommand lives in its own `cmd_*` module with an `Args` struct and a `run` function;
//! groups of verbs (`dht put ...`, later `log ...`, `queue ...`) slot in the same way, as one
//! more variant of [`Command`] and one more module. A command that only needs to fail quietly
//! (`dht exists` printing `false`) returns [`SilentFailure`]: status 1, no message.

mod cmd_dht;
mod cmd_log;
mod cmd_ping;
mod cmd_queue;
mod cmd_stats;
mod targets;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The command-line face of the swarm client.
#[derive(Debug, Parser)]
#[command(name = "swarmctl", version, about)]
#[command(group(clap::ArgGroup::new("target").args(["node", "nodes"])))]
struct Cli {
    #[command(flatten)]
    targets: targets::TargetArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Handshake with each node and ask its version; prints kind, versions and round trip.
    Ping(cmd_ping::Args),
    /// Print each node's live counters.
    Stats(cmd_stats::Args),
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

/// Exit with status 1 without a message: the command's output already said it all.
#[derive(Debug)]
struct SilentFailure;

impl std::fmt::Display for SilentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(silent failure)")
    }
}

impl std::error::Error for SilentFailure {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `--node`/`--nodes` may come before or after the subcommand (they are global), which clap
    // cannot require by itself: checked here, with clap's usage error and exit status 2.
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
        Command::Dht(args) => cmd_dht::run(&cli.targets, args),
        Command::Log(args) => cmd_log::run(&cli.targets, args),
        Command::Queue(args) => cmd_queue::run(&cli.targets, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<SilentFailure>() => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("swarmctl: {}", one_line(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Every failure is reported in one line, whatever the verb: a message may span several (a
/// regular expression's parse error points at the pattern on a line of its own).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
