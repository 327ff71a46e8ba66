//! logfiles_check: verifies the bucket files of a logfiles node's data directory and, with
//! `--repair`, truncates damaged ones after saving the cut bytes aside. Parses the command line
//! and calls [`cli::run`], where the work, the output formats and the exit
//! codes are documented (`logfiles_check --help` lists the codes).
//!
//! A crate of its own: the node does not build the tool's report (`serde_json`) and progress
//! bar (`indicatif`); what it shares with the node, the bucket formats and their checks, is
//! `logfilesnode::storage`.

mod cli;

use clap::Parser;
use cli::{Args, EXIT_USAGE};
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    let progress = !args.json && io::stderr().is_terminal();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = cli::run(&args, &mut out, progress);
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(code), Ok(())) => ExitCode::from(code),
        (Ok(_), Err(e)) => {
            eprintln!("logfiles_check: cannot write the report: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        (Err(e), _) => {
            eprintln!("logfiles_check: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
