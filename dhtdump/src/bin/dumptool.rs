//! dumptool: inspect, export and import dht dump files (and read reference `.tcm` files), and
//! inspect, check and repair a dht node's change log.
//!
//! Dump verbs: exit status 0 on success; on failure one line `dumptool: <reason>` on stderr and
//! status 1 (usage errors: clap's message and status 2). Change-log verbs: the statuses of
//! `logfiles_check` (0 clean, 1 problems, 2 usage, 3 repaired). The work is done by
//! [`dhtdump::tool`] and [`dhtdump::log_tool`].

use clap::{Parser, Subcommand};
use dhtdump::log_tool::{self, RepairOptions, EXIT_USAGE};
use dhtdump::tool::{self, ExportTarget};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Exit status of info, export, import: 0 success, 1 failure, 2 usage error.
Exit status of log-info and log-check (as logfiles_check's):
  0  the change log reads whole and every check passes
  1  problems: a torn tail, damage, a gap, a missing segment or an unreadable file (with
     --repair: not everything could be repaired)
  2  usage error, no change log in DIR, or DIR is in use by a node (--repair)
  3  --repair found problems and repaired all of them (a new check exits 0)";

/// Inspect, export and import dht dump files; inspect, check and repair a node's change log.
#[derive(Debug, Parser)]
#[command(name = "dumptool", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what each file holds (format, channel, creation time, records, value bytes) and
    /// whether it passes every check; `.tcm` files get the reference importer's report. Exits 1
    /// if any file fails.
    Info {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Write a dump's (or a `.tcm` file's) records as text lines `<16 hex digits>:<base64>`.
    Export {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write to this file (through a temporary file) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Build a dump file OUT from text lines `<16 hex digits>:<base64>` (or a reference `.tcm`
    /// file with --tcm), through a temporary file renamed into place.
    Import {
        /// IN is a reference `.tcm` file, not text lines.
        #[arg(long)]
        tcm: bool,
        /// The channel named in OUT's header (default: OUT's file name up to its first '.').
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        #[arg(value_name = "IN")]
        input: PathBuf,
        #[arg(value_name = "OUT")]
        output: PathBuf,
    },
    /// Show a node's change log: each segment with its positions (sequence numbers), entries
    /// per kind, records and bytes, then whether every check passes (CRC, sequence, bodies).
    LogInfo {
        /// The node's data directory (its log is DIR/wal), or a log directory itself.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Also print every entry: position, kind, channel, key or record count.
        #[arg(long)]
        entries: bool,
    },
    /// Verify a node's change log: every segment header, entry CRC, body and sequence number,
    /// told apart as torn tail (what a crash leaves) or damage in the middle. Reading a live
    /// node's log may show its last write as a torn tail.
    LogCheck {
        /// The node's data directory (its log is DIR/wal), or a log directory itself.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Cut a torn tail (the node must be stopped: this takes the data directory's lock).
        #[arg(long)]
        repair: bool,
        /// With --repair: also give up the log from a damaged place on (or from a gap or
        /// missing segment), moving those bytes to DATA_DIR/corrupt/wal.<unix seconds>/. The
        /// changes in them are lost unless a dump holds them.
        #[arg(long, requires = "repair")]
        discard_after_damage: bool,
    },
}

/// Runs a verb; returns the exit status.
fn run(command: Command) -> u8 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let log_result = match command {
        Command::LogInfo { dir, entries } => log_tool::log_info(&dir, entries, &mut out),
        Command::LogCheck {
            dir,
            repair,
            discard_after_damage,
        } => {
            let options = RepairOptions {
                repair,
                discard_after_damage,
            };
            log_tool::log_check(&dir, options, &mut out)
        }
        Command::Info { files } => return dump_status(info(&files, &mut out)),
        Command::Export {
            file,
            output,
            force,
        } => return dump_status(export(&file, output.as_deref(), force)),
        Command::Import {
            tcm,
            channel,
            force,
            input,
            output,
        } => return dump_status(import(&input, &output, tcm, channel.as_deref(), force)),
    };
    log_result.unwrap_or_else(|err| {
        eprintln!("dumptool: {}", err.0);
        EXIT_USAGE
    })
}

/// A dump verb's status: 0, or 1 with its reason on stderr.
fn dump_status(result: Result<(), String>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(reason) => {
            eprintln!("dumptool: {reason}");
            1
        }
    }
}

fn info(files: &[PathBuf], out: &mut impl std::io::Write) -> Result<(), String> {
    let failures = tool::info(files, out)?;
    if failures > 0 {
        return Err(format!(
            "{failures} of {} files failed their checks",
            files.len()
        ));
    }
    Ok(())
}

fn export(file: &Path, output: Option<&Path>, force: bool) -> Result<(), String> {
    let target = match output {
        Some(path) => ExportTarget::File { path, force },
        None => ExportTarget::Stdout,
    };
    let records = tool::export(file, target)?;
    if let Some(path) = output {
        eprintln!("exported {records} records to {}", path.display());
    }
    Ok(())
}

fn import(
    input: &Path,
    output: &Path,
    tcm: bool,
    channel: Option<&str>,
    force: bool,
) -> Result<(), String> {
    let summary = tool::import(input, output, tcm, channel, force)?;
    println!(
        "imported {} records ({} value bytes) into {} (channel {})",
        summary.records,
        summary.value_bytes,
        output.display(),
        summary.channel
    );
    Ok(())
}

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse().command))
}
