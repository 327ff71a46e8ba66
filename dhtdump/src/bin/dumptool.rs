//! dumptool: inspect, export and import dht dump files (and read reference `.tcm` files).
//!
//! Exit status 0 on success; on failure one line `dumptool: <reason>` on stderr and status 1
//! (usage errors: clap's message and status 2). The work is done by [`dhtdump::tool`].

use clap::{Parser, Subcommand};
use dhtdump::tool::{self, ExportTarget};
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect, export and import dht dump files.
#[derive(Debug, Parser)]
#[command(name = "dumptool", version)]
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
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Info { files } => {
            let stdout = std::io::stdout();
            let failures = tool::info(&files, &mut stdout.lock())?;
            if failures > 0 {
                return Err(format!(
                    "{failures} of {} files failed their checks",
                    files.len()
                ));
            }
            Ok(())
        }
        Command::Export {
            file,
            output,
            force,
        } => {
            let target = match &output {
                Some(path) => ExportTarget::File { path, force },
                None => ExportTarget::Stdout,
            };
            let records = tool::export(&file, target)?;
            if let Some(path) = output {
                eprintln!("exported {records} records to {}", path.display());
            }
            Ok(())
        }
        Command::Import {
            tcm,
            channel,
            force,
            input,
            output,
        } => {
            let summary = tool::import(&input, &output, tcm, channel.as_deref(), force)?;
            println!(
                "imported {} records ({} value bytes) into {} (channel {})",
                summary.records,
                summary.value_bytes,
                output.display(),
                summary.channel
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("dumptool: {reason}");
            ExitCode::FAILURE
        }
    }
}
