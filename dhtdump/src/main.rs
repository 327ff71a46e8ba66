//! The `dhtdump` daemon: the backup sidecar of one dht node. Parses the command line, loads the
//! config, opens the logs, installs the signal handlers and runs the dump loop
//! ([`dhtdump::cycle::run`]) until SIGTERM/SIGINT (or, with `--oneshot`, until one cycle has
//! completed).
//!
//! At start it connects to its node once: a node it cannot reach (wrong address, node down,
//! refused credentials) is an ERROR in root.log and on stderr at once, and ends a `--oneshot`
//! run; in periodic mode the cycles keep retrying.
//!
//! Exit status: 0 after a completed `--oneshot` cycle, a stop by SIGTERM/SIGINT in periodic
//! mode, or a valid `--check-config`; 1 with a one-line reason on stderr when the config,
//! credentials, logs or data directory are unusable (a data directory another process holds, a
//! dht node say, included), when a `--oneshot` run cannot reach its node at start, runs past its
//! `--timeout`, or is stopped before its cycle completed (its dumps are then not all fresh).

use clap::Parser;
use dhtdump::config::{DumpConfig, Overrides};
use dhtdump::cycle::{self, Ended, Mode, Schedule, Sidecar};
use dhtdump::stats::{self, Stats};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// With --oneshot: give up (exit 1, the dump in progress abandoned) when the cycle has not
    /// completed after this many seconds.
    #[arg(long, value_name = "SECONDS", requires = "oneshot", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Check the configuration (and the credentials and token files), print the effective
    /// configuration and exit: 0 when valid, 1 with a message naming the key at fault.
    #[arg(long)]
    check_config: bool,
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("dhtdump: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    node_core::metrics::process::mark_start();
    let args = Args::parse();
    match run(&args) {
        Ok(code) | Err(code) => code,
    }
}

/// Logs why dhtdump cannot start, and says it on stderr.
fn cannot_start(message: impl std::fmt::Display) -> ExitCode {
    tracing::error!("cannot start: {message}");
    fail(message)
}

/// Start-up, the dump loop, and the exit status; each step that fails ends the run with its
/// exit status (`Err`).
fn run(args: &Args) -> Result<ExitCode, ExitCode> {
    let overrides = Overrides {
        node: args.node.clone(),
        data_dir: args.data_dir.clone(),
        log_dir: args.log_dir.clone(),
    };
    let config = DumpConfig::load(args.config.as_deref(), &overrides).map_err(fail)?;
    let credentials = config.load_credentials().map_err(fail)?;
    let tls = config.load_tls().map_err(fail)?;
    if args.check_config {
        return Ok(print_config(&config));
    }
    let (logs, _log_guard) =
        node_core::log::init(&config.log.dir, &config.log.level).map_err(fail)?;
    let mode = if args.oneshot {
        Mode::Oneshot
    } else {
        Mode::Periodic
    };
    log_start(&config, mode);
    // Held until exit: the dht node takes the same lock, so dhtdump is refused on a directory a
    // node (or another dhtdump) writes, and a node on dhtdump's directory is refused meanwhile;
    // both would rename the same `<ch>.dump.tmp` and `<ch>.dump`.
    let _data_lock =
        node_core::data_lock::DataDirLock::acquire(&config.data_dir).map_err(cannot_start)?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload_key = Arc::new(AtomicBool::new(false));
    dhtdump::signals::install(Arc::clone(&stop), Arc::clone(&reload_key), logs.clone())
        .map_err(|err| fail(format!("cannot install signal handlers: {err}")))?;
    let stats = Arc::new(Stats::default());
    let _metrics = start_metrics(&config, &stats).map_err(cannot_start)?;
    let mut sidecar = Sidecar::new(
        &config,
        (credentials, tls),
        Arc::clone(&stats),
        Arc::clone(&stop),
    )
    .map_err(cannot_start)?
    .reloading_key(&config, reload_key);
    check_node(&mut sidecar, &config, mode)?;
    let timed_out = Arc::new(AtomicBool::new(false));
    if let Some(seconds) = args.timeout {
        start_timeout(seconds, Arc::clone(&stop), Arc::clone(&timed_out))
            .map_err(|err| fail(format!("cannot start the timeout thread: {err}")))?;
    }
    node_core::systemd::init_watchdog();
    stats.set_ready();
    node_core::systemd::ready(&format!(
        "dumping dht node {} to {}",
        config.node,
        config.data_dir.display()
    ));
    let stats_stop = Arc::new(AtomicBool::new(false));
    let stats_thread = start_stats(&config, mode, stats, &logs, &stats_stop)?;
    let schedule = Schedule {
        period: config.period(),
        min_wait: config.min_wait(),
        retry_wait: config.retry_wait(),
    };
    let ended = cycle::run(&mut sidecar, &schedule, mode);
    stats_stop.store(true, Ordering::SeqCst);
    if let Some(handle) = stats_thread {
        let _ = handle.join();
    }
    // Joins the writer thread: any dump it still had is abandoned (its temporary file deleted).
    drop(sidecar);
    Ok(exit_status(
        ended,
        timed_out.load(Ordering::SeqCst),
        args.timeout,
    ))
}

/// The stats.log writer of a periodic run (a oneshot run writes none).
fn start_stats(
    config: &DumpConfig,
    mode: Mode,
    stats: Arc<Stats>,
    logs: &node_core::log::NodeLogs,
    stop: &Arc<AtomicBool>,
) -> Result<Option<std::thread::JoinHandle<()>>, ExitCode> {
    if mode == Mode::Oneshot {
        return Ok(None);
    }
    let interval = Duration::from_secs(u64::from(config.log.stats_interval_s));
    stats::spawn_writer(stats, logs.clone(), interval, Arc::clone(stop))
        .map(Some)
        .map_err(|err| fail(format!("cannot start the stats thread: {err}")))
}

/// `--check-config`: the effective configuration on stdout.
fn print_config(config: &DumpConfig) -> ExitCode {
    match toml::to_string(config) {
        Ok(text) => {
            println!("# dhtdump: configuration OK; the effective configuration follows.\n{text}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(format!("cannot print the configuration: {err}")),
    }
}

fn log_start(config: &DumpConfig, mode: Mode) {
    tracing::info!(
        "starting dhtdump {} ({}): node {}, data_dir {}, period_s {}, min_wait_s {}, \
         retry_wait_s {}",
        env!("CARGO_PKG_VERSION"),
        if mode == Mode::Oneshot {
            "oneshot"
        } else {
            "periodic"
        },
        config.node,
        config.data_dir.display(),
        config.period_s,
        config.min_wait_s,
        config.retry_wait_s
    );
}

/// The `/metrics` listener, when the config has one.
fn start_metrics(
    config: &DumpConfig,
    stats: &Arc<Stats>,
) -> Result<Option<node_core::metrics::MetricsServer>, String> {
    let identity = node_core::metrics::Identity {
        kind: "dhtdump".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let source: Arc<dyn node_core::metrics::MetricsSource> = stats.clone();
    node_core::metrics::MetricsServer::start(&config.metrics, identity, source)
}

/// Connects to the node at start: a node out of reach ends a `--oneshot` run; in periodic mode
/// the cycles keep trying it.
fn check_node(sidecar: &mut Sidecar, config: &DumpConfig, mode: Mode) -> Result<(), ExitCode> {
    if let Err(err) = sidecar.check_node() {
        tracing::error!("cannot reach dht node {}: {err}", config.node);
        if mode == Mode::Oneshot {
            return Err(ExitCode::FAILURE);
        }
        tracing::info!("the dump cycles will keep trying it (retry_wait_s after each failure)");
    }
    Ok(())
}

/// How the run ended, as an exit status (logged; on stderr too when a signal cut a
/// `--oneshot` run short).
fn exit_status(ended: Ended, timed_out: bool, timeout_s: Option<u64>) -> ExitCode {
    match ended {
        Ended::Done | Ended::Stopped => {
            tracing::info!("dhtdump stopped");
            ExitCode::SUCCESS
        }
        Ended::StoppedIncomplete if timed_out => {
            let message = format!(
                "the dump did not complete within --timeout {}s; the dump in progress was \
                 abandoned and the previous dump files are untouched",
                timeout_s.unwrap_or_default()
            );
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
        Ended::StoppedIncomplete => {
            let message = "stopped by a signal before the dump completed";
            tracing::error!("{message}");
            fail(message)
        }
    }
}

/// `--timeout`: after `seconds`, stops the run as a signal would, noting why.
fn start_timeout(
    seconds: u64,
    stop: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("timeout".into())
        .spawn(move || {
            // Not util::sleep_unless_stopped: that pings the systemd watchdog, which only the
            // thread doing the work may do.
            let deadline = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < deadline {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(dhtdump::util::STOP_CHECK_INTERVAL);
            }
            timed_out.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        })
        .map(drop)
}
