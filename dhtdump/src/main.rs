//! The `dhtdump` daemon: the backup sidecar of one dht node. Parses the command line, loads the
//! config, opens the logs, installs the signal handlers and runs the dump loop
//! ([`dhtdump::cycle::run`]) until SIGTERM/SIGINT (or, with `--oneshot`, until one cycle has
//! completed).
//!
//! Exit status: 0 after a completed `--oneshot` cycle or a stop by SIGTERM/SIGINT in periodic
//! mode; 1 with a one-line reason on stderr when the config, credentials, logs or data directory
//! are unusable (a data directory another process holds, a dht node say, included), or when a `--oneshot` run is stopped before its cycle completed (its dumps are
//! then not all fresh).

use clap::Parser;
use dhtdump::config::{DumpConfig, Overrides};
use dhtdump::cycle::{self, Dumper, Ended, Mode, Schedule};
use dhtdump::stats::{self, Stats};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Backup sidecar of a dht node: periodically writes every channel of the node to dump files
/// that the node loads at start.
#[derive(Parser, Debug)]
#[command(name = "dhtdump", version)]
struct Args {
    /// TOML config file; without it, built-in defaults (node 127.0.0.1:10000, data_dir "data").
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The dht node to dump; overrides `node` from the config file.
    #[arg(long, value_name = "HOST:PORT")]
    node: Option<String>,
    /// Where to write the dump files; overrides `data_dir` from the config file.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory for root.log and stats.log; overrides `log.dir` from the config file.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Dump once, at once (no random delay, no stats.log lines), retrying after retry_wait_s
    /// until the dump completes or a signal stops it; then exit.
    #[arg(short = 'o', long)]
    oneshot: bool,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("dhtdump: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        node: args.node.clone(),
        data_dir: args.data_dir.clone(),
        log_dir: args.log_dir.clone(),
    };
    let config = match DumpConfig::load(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(err) => return fail(err),
    };
    let credentials = match config.load_credentials() {
        Ok(credentials) => credentials,
        Err(err) => return fail(err),
    };
    let (logs, _log_guard) = match node_core::log::init(&config.log.dir, &config.log.level) {
        Ok(logs) => logs,
        Err(err) => return fail(err),
    };
    let mode = if args.oneshot {
        Mode::Oneshot
    } else {
        Mode::Periodic
    };
    tracing::info!(
        "starting dhtdump {} ({}): node {}, data_dir {}, period_s {}, min_wait_s {}, \
         retry_wait_s {}",
        env!("CARGO_PKG_VERSION"),
        if args.oneshot { "oneshot" } else { "periodic" },
        config.node,
        config.data_dir.display(),
        config.period_s,
        config.min_wait_s,
        config.retry_wait_s
    );
    // Held until exit: the dht node takes the same lock, so dhtdump is refused on a directory a
    // node (or another dhtdump) writes, and a node on dhtdump's directory is refused meanwhile;
    // both would rename the same `<ch>.dump.tmp` and `<ch>.dump`.
    let _data_lock = match node_core::data_lock::DataDirLock::acquire(&config.data_dir) {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return fail(err);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(err) = dhtdump::signals::install(Arc::clone(&stop), logs.clone()) {
        return fail(format!("cannot install signal handlers: {err}"));
    }
    let stats = Arc::new(Stats::default());
    let mut dumper = match Dumper::new(&config, credentials, Arc::clone(&stats), Arc::clone(&stop))
    {
        Ok(dumper) => dumper,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return fail(err);
        }
    };
    let stats_stop = Arc::new(AtomicBool::new(false));
    let stats_thread = match mode {
        Mode::Oneshot => None,
        Mode::Periodic => {
            let interval = Duration::from_secs(u64::from(config.log.stats_interval_s));
            match stats::spawn_writer(stats, logs.clone(), interval, Arc::clone(&stats_stop)) {
                Ok(handle) => Some(handle),
                Err(err) => return fail(format!("cannot start the stats thread: {err}")),
            }
        }
    };
    let schedule = Schedule {
        period: config.period(),
        min_wait: config.min_wait(),
        retry_wait: config.retry_wait(),
    };
    let ended = cycle::run(&mut dumper, &schedule, mode);
    stats_stop.store(true, Ordering::SeqCst);
    if let Some(handle) = stats_thread {
        let _ = handle.join();
    }
    // Joins the writer thread: any dump it still had is abandoned (its temporary file deleted).
    drop(dumper);
    match ended {
        Ended::Done | Ended::Stopped => {
            tracing::info!("dhtdump stopped");
            ExitCode::SUCCESS
        }
        Ended::StoppedIncomplete => {
            let message = "stopped by a signal before the dump completed";
            tracing::error!("{message}");
            fail(message)
        }
    }
}
