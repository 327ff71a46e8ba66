//! Daemon start-up shared by the node binaries: load the config (file, then command-line
//! overrides), check it (and stop there with `--check-config`), turn it into [`ServerOptions`]
//! (credentials and TLS files loaded, bind checked), open the logs, install the signal handlers, start the
//! metrics listener, build the service (loading its data, with systemd `STATUS=` lines), tell
//! systemd `READY=1` once the node is about to serve, run it, and map the outcome to an exit
//! status. A node's `main` is then "parse args, call [`run`] with a function that builds its
//! service".

use crate::auth::Credentials;
use crate::config::{
    self, AuthSection, CommonArgs, ConfigError, LogSection, ServerSection, TlsSection,
};
use crate::metrics::{Identity, MetricsHub, MetricsSection, MetricsServer};
use crate::server::{Server, ServerOptions, Service, Wakeups};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// What every daemon's config holds besides its own section.
pub trait DaemonConfig: serde::de::DeserializeOwned + serde::Serialize + Default {
    /// The port this node kind listens on (on 127.0.0.1) when `server.listen` is unset.
    const DEFAULT_PORT: u16;
    fn server(&mut self) -> &mut ServerSection;
    fn auth(&mut self) -> &mut AuthSection;
    fn tls(&mut self) -> &mut TlsSection;
    fn log(&mut self) -> &mut LogSection;
    fn data_dir(&mut self) -> &mut PathBuf;
    fn metrics(&mut self) -> &mut MetricsSection;
    /// Checks the node's own keys (errors name the key).
    fn validate_node(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// Loads the config file (or the defaults), applies `--listen`, `--data-dir`, `--log-dir`, and
/// validates every section.
pub fn load_config<C: DaemonConfig>(args: &CommonArgs) -> Result<C, ConfigError> {
    let mut config: C = config::load_file(args.config.as_deref())?;
    let mut server = config.server().clone();
    let mut log = config.log().clone();
    args.apply_overrides(&mut server, &mut log);
    *config.server() = server;
    *config.log() = log;
    if let Some(dir) = &args.data_dir {
        *config.data_dir() = dir.clone();
    }
    // An empty path passed --check-config, then failed the start with a bare "No such file
    // or directory" (and a logfiles node wrote its journal into the working directory).
    if config.data_dir().as_os_str().is_empty() {
        return Err(ConfigError::Invalid {
            key: "data_dir",
            problem: "is empty; give a directory".to_string(),
        });
    }
    config.server().validate(C::DEFAULT_PORT)?;
    config.auth().validate()?;
    config.tls().validate()?;
    config.log().validate()?;
    config.metrics().validate()?;
    config.validate_node()?;
    Ok(config)
}

/// `--check-config`: prints the effective configuration (defaults filled in, overrides applied,
/// the listen address resolved) as TOML on stdout, and returns success. The checks were done by
/// [`load_config`] and [`server_options`] before.
pub fn print_effective_config<C: DaemonConfig>(
    program: &str,
    config: &mut C,
    options: &ServerOptions,
) -> ExitCode {
    config.server().listen = Some(options.listen.to_string());
    match toml::to_string(config) {
        Ok(text) => {
            println!("# {program}: configuration OK; the effective configuration follows.\n{text}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(program, format!("cannot print the configuration: {err}")),
    }
}

/// The shared sections a node's [`ServerOptions`] are made of.
pub struct SharedSections<'a> {
    pub server: &'a ServerSection,
    pub auth: &'a AuthSection,
    pub tls: &'a TlsSection,
    pub log: &'a LogSection,
}

/// Turns the shared sections into server options: loads the credentials file and the TLS
/// certificate, key and client CA (an error names the file and the problem), and refuses a
/// non-loopback bind without authentication unless `auth.insecure` says so.
pub fn server_options(
    default_port: u16,
    sections: SharedSections<'_>,
) -> Result<ServerOptions, String> {
    let SharedSections {
        server,
        auth,
        tls,
        log,
    } = sections;
    let listen = server
        .listen_addr(default_port)
        .map_err(|err| err.to_string())?;
    config::check_bind_security(&listen, auth).map_err(|err| err.to_string())?;
    let credentials = match &auth.credentials_file {
        Some(path) => Some(Arc::new(
            Credentials::load(path).map_err(|err| err.to_string())?,
        )),
        None => None,
    };
    let tls = match tls.files() {
        Some(files) => Some(crate::tls::ServerTls::load(files).map_err(|err| err.to_string())?),
        None => None,
    };
    Ok(ServerOptions {
        listen,
        max_connections: server.max_connections as usize,
        max_frame_bytes: server.max_frame_bytes,
        max_in_flight: server.max_in_flight as usize,
        output_buffer_bytes: server.output_buffer_bytes as usize,
        stream_memory_bytes: server.stream_memory_bytes as usize,
        max_stream_memory_bytes: usize::try_from(server.max_stream_memory_bytes)
            .unwrap_or(usize::MAX),
        backlog: i32::try_from(server.backlog).unwrap_or(i32::MAX),
        tcp_keepalive_idle_s: server.tcp_keepalive_idle_s,
        tick_interval_ms: u64::from(server.tick_interval_ms),
        stats_interval_s: u64::from(log.stats_interval_s),
        shutdown_timeout_s: u64::from(server.shutdown_timeout_s),
        tls_handshakes_per_pass: server.tls_handshakes_per_pass as usize,
        credentials,
        credentials_file: auth.credentials_file.clone(),
        admins: auth.admins.clone(),
        tls,
        ..ServerOptions::default()
    })
}

/// Prints `program: message` on stderr and returns the failure exit status.
pub fn fail(program: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{program}: {message}");
    ExitCode::FAILURE
}

/// Runs a daemon whose config is `C`: everything from config loading to the exit status.
/// `make_service` gets the loaded config and the server's wakeup queue.
pub fn run<C, S, F>(program: &str, args: &CommonArgs, make_service: F) -> ExitCode
where
    C: DaemonConfig,
    S: Service,
    F: FnOnce(&mut C, Wakeups) -> Result<S, String>,
{
    crate::metrics::process::mark_start();
    let mut config: C = match load_config(args) {
        Ok(config) => config,
        Err(err) => return fail(program, err),
    };
    let sections = SharedSections {
        server: &config.server().clone(),
        auth: &config.auth().clone(),
        tls: &config.tls().clone(),
        log: &config.log().clone(),
    };
    let options = match server_options(C::DEFAULT_PORT, sections) {
        Ok(options) => options,
        Err(err) => return fail(program, err),
    };
    if args.check_config {
        return print_effective_config(program, &mut config, &options);
    }
    let log = config.log().clone();
    let (logs, _log_guard) = match crate::log::init(&log.dir, &log.level) {
        Ok(logs) => logs,
        Err(err) => return fail(program, err),
    };
    tracing::info!("starting {program} {}", env!("CARGO_PKG_VERSION"));
    // Held until the process exits: a second node on the same data directory is refused.
    let _data_lock = match crate::data_lock::DataDirLock::acquire(&config.data_dir().clone()) {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return fail(program, err);
        }
    };
    let (server, metrics) = match bind_server(program, &mut config, options, logs) {
        Ok(bound) => bound,
        Err(code) => return code,
    };
    let data_dir = config.data_dir().display().to_string();
    tracing::info!(
        "bound {}; loading the data in {data_dir} before serving",
        server.local_addr()
    );
    crate::systemd::progress(&format!("loading the data in {data_dir}"));
    let mut service = match make_service(&mut config, server.wakeups()) {
        Ok(service) => service,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return fail(program, err);
        }
    };
    // The loop starts serving right after this: the port was bound before loading (connections
    // wait in the backlog), and nothing else comes between.
    if let Some((hub, _)) = &metrics {
        hub.set_ready(true);
    }
    crate::systemd::ready(&format!("serving on {}", server.local_addr()));
    match server.run(&mut service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("event loop failed: {err}");
            fail(program, err)
        }
    }
}

/// The `kind` label of a daemon: `dhtnode` → `dht`, `logfilesnode` → `logfiles`.
fn kind_label(program: &str) -> String {
    program.strip_suffix("node").unwrap_or(program).to_string()
}

/// The metrics listener of a daemon: its hub and its HTTP thread (kept until the process ends).
type RunningMetrics = (Arc<MetricsHub>, MetricsServer);

/// What serves a daemon: its server, bound, with signal handlers, logs and the metrics
/// listener (started before the data loads, so that a scrape during a long start sees
/// `swarm_ready 0`, not a dead target), and the systemd watchdog armed. An error has been
/// reported; its exit status is returned.
fn bind_server<C: DaemonConfig>(
    program: &str,
    config: &mut C,
    options: ServerOptions,
    logs: crate::log::NodeLogs,
) -> Result<(Server, Option<RunningMetrics>), ExitCode> {
    let mut server = Server::bind(options).map_err(|err| fail(program, err))?;
    if let Err(err) = server.handle_signals() {
        return Err(fail(
            program,
            format!("cannot install signal handlers: {err}"),
        ));
    }
    server.set_logs(logs);
    let identity = Identity {
        kind: kind_label(program),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let metrics = match crate::metrics::start_for_node(&config.metrics().clone(), identity) {
        Ok(metrics) => metrics,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return Err(fail(program, err));
        }
    };
    if let Some((hub, _)) = &metrics {
        server.set_metrics(hub.clone());
    }
    if let Some(period) = crate::systemd::init_watchdog() {
        tracing::info!(
            "systemd watchdog on: the event loop pings it every {:?}",
            period / 3
        );
    }
    Ok((server, metrics))
}
