//! The `dhtnode` daemon: parses the command line and runs the node until SIGTERM/SIGINT.
//!
//! Which hash range the node starts with: `--range` if given (it is then written to the state
//! file, with a warning when that held another range); else the range in
//! `data_dir/dht-state.toml` (set by an earlier Redistribute or `--range`); else the config's
//! `dht.range_min` / `dht.range_max`. A redistribution the state file says is unfinished is
//! resumed (unless `--range` changed the range, which abandons it with a warning). A node with
//! `dht.replica_peers` starts catching up from them ([`dhtnode::catch_up`]).

use clap::Parser;
use client::tls::{ClientTls, TlsSettings};
use dht_persist::loader::{LoadOptions, LoadReport, OutOfRangePolicy};
use dht_persist::wal::writer::MIN_SEGMENT_BYTES;
use dht_persist::wal::{LogOptions, LogWriter};
use dht_persist::{DumpScheduler, DumpThread};
use dhtnode::catch_up::{worker::Tuning as CatchUpTuning, CatchUpConfig};
use dhtnode::config::NodeConfig;
use dhtnode::durability::LogSync;
use dhtnode::engine::log::{is_disk_full, start_writer};
use dhtnode::engine::EngineLog;
use dhtnode::engine::{Engine, EngineLimits, ListenerLimits};
use dhtnode::peer::PeerLogin;
use dhtnode::persist::{self, Replayed, MAX_DUMP_POSITION};
use dhtnode::redistribution::{random_instance, RedistributionConfig, Tuning};
use dhtnode::service::DhtNode;
use dhtnode::state::{self, NodeState, PendingRedistribution};
use node_core::auth::Credentials;
use node_core::config::{CommonArgs, TlsSection};
use node_core::daemon;
use node_core::protocol::dht::HashRange;
use node_core::server::durability::DurabilityPolicy;
use node_core::server::Wakeups;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The dht node: an in-memory, hash-ranged key/value store.
#[derive(Parser, Debug)]
#[command(name = "dhtnode", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The hash range this node owns, as MIN:MAX in hex. Overrides the range in
    /// data_dir/dht-state.toml and the config's dht.range_min/range_max, and is written to the
    /// state file. ffffffffffffffff:0000000000000000 is the empty range.
    #[arg(long, value_name = "MIN:MAX", value_parser = HashRange::parse)]
    range: Option<HashRange>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    daemon::run::<NodeConfig, _, _>("dhtnode", &args.common, |config, wakeups| {
        tracing::info!("{}", node_core::heap_pages::describe());
        let (range, pending) = choose_range(config, args.range)?;
        let (engine, report) = load_engine(config, range, pending.is_some())?;
        let mut node = start_node(config, engine, wakeups)?;
        // The dumps loaded are the backups once the next cycle completes; with none loaded,
        // nothing is a backup yet and the first cycle deletes no segment.
        let loaded_positions = report.channels.iter().map(|c| c.log_position);
        node.set_backup_position(loaded_positions.min().unwrap_or(0));
        if let Some(pending) = pending {
            node.resume_redistribution(pending)
                .map_err(|err| format!("cannot resume the unfinished redistribution: {err}"))?;
        }
        if !config.dht.replica_peers.is_empty() {
            let catch_up = catch_up_config(config)?;
            node.start_catch_up(catch_up)
                .map_err(|err| format!("cannot start the catch-up thread: {err}"))?;
        }
        Ok(node)
    })
}

/// The TLS of a redistribution's connections to the other dht nodes: `[tls] peer_ca_file` is
/// the CA to trust, and the node's own certificate goes along for targets that require one.
fn peer_tls(tls: &TlsSection) -> Result<Option<ClientTls>, String> {
    let Some(ca_file) = &tls.peer_ca_file else {
        if tls.cert_file.is_some() {
            tracing::warn!(
                "TLS is on but tls.peer_ca_file is not set: a redistribution connects to the \
                 other dht nodes in clear, which fails if they serve TLS"
            );
        }
        return Ok(None);
    };
    let settings = TlsSettings {
        ca_file: ca_file.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        server_name: None,
    };
    ClientTls::load(&settings)
        .map(Some)
        .map_err(|err| format!("tls.peer_ca_file: {err}"))
}

/// How the node catches up from `dht.replica_peers`: as `dht.replica_client` from the
/// credentials file, over `[tls] peer_ca_file`.
fn catch_up_config(config: &NodeConfig) -> Result<CatchUpConfig, String> {
    let name = &config.dht.replica_client;
    let credentials = match (&config.auth.credentials_file, name.is_empty()) {
        // Refused by the config's validation.
        (None, _) | (_, true) => None,
        (Some(path), false) => {
            let credentials = Credentials::load(path).map_err(|err| err.to_string())?;
            let key = credentials.get(name).cloned().ok_or_else(|| {
                format!(
                    "dht.replica_client: {} has no key for {name:?}",
                    path.display()
                )
            })?;
            Some((name.clone(), key))
        }
    };
    Ok(CatchUpConfig {
        peers: config.dht.replica_peers.clone(),
        login: PeerLogin {
            credentials,
            tls: peer_tls(&config.tls)?,
        },
        tuning: CatchUpTuning::default(),
    })
}

/// The engine with the dumps loaded and the change log replayed over them, writing its log from
/// there on. `redistributing`: an unfinished redistribution still has records to move, so records
/// outside the range are loaded whatever `dht.out_of_range` says.
fn load_engine(
    config: &NodeConfig,
    range: HashRange,
    redistributing: bool,
) -> Result<(Engine, LoadReport), String> {
    let limits = EngineLimits {
        size_limit_bytes: config.dht.size_limit_bytes,
        max_channels: config.dht.max_channels as usize,
        max_value_bytes: config.dht.max_value_bytes as usize,
    };
    let listener_limits = ListenerLimits {
        max_events: config.dht.listen_queue_events as usize,
        max_bytes: config.dht.listen_queue_bytes as usize,
        max_total_bytes: usize::try_from(config.dht.listen_total_bytes).unwrap_or(usize::MAX),
    };
    let mut engine = Engine::new(range, limits, listener_limits);
    engine.set_tombstone_limits(dhtnode::engine::TombstoneLimits {
        max_tombstones: config.dht.tombstone_limit,
        ttl_s: config.dht.tombstone_ttl_s,
    });
    let mut policy: OutOfRangePolicy = config
        .dht
        .out_of_range
        .parse()
        .map_err(|err| format!("dht.out_of_range: {err}"))?;
    if redistributing && policy != OutOfRangePolicy::Load {
        tracing::info!(
            "dht.out_of_range is {policy}, but records outside the range are loaded: an \
             unfinished redistribution still has to move them"
        );
        policy = OutOfRangePolicy::Load;
    }
    let load_options = LoadOptions {
        policy,
        range,
        max_value_bytes: limits.max_value_bytes,
    };
    let report = dhtnode::persist::load(&config.data_dir, &load_options, &mut engine)
        .map_err(|err| err.to_string())?;
    let size = engine.size();
    tracing::info!(
        "loaded {} channels from {}: {} records, {} bytes",
        report.channels.len(),
        config.data_dir.display(),
        size.records,
        size.bytes
    );
    check_dump_positions(&report)?;
    let gap_policy = config
        .dht
        .log_gap
        .parse::<dht_persist::loader::LogGapPolicy>()
        .map_err(|err| format!("dht.log_gap: {err}"))?;
    let replayed = dhtnode::persist::replay(
        &config.data_dir,
        &report,
        &load_options,
        gap_policy,
        &mut engine,
    )
    .map_err(|err| err.to_string())?;
    engine.set_log(open_log(config, &replayed)?);
    Ok((engine, report))
}

/// Refuses to start on a dump that records a log position no log can reach (a damaged or
/// forged header), naming it, rather than overflow past it.
fn check_dump_positions(report: &LoadReport) -> Result<(), String> {
    match report
        .channels
        .iter()
        .find(|channel| channel.log_position > MAX_DUMP_POSITION)
    {
        Some(channel) => Err(format!(
            "the dump of channel {} records log position {}, past the largest a change log \
             reaches ({MAX_DUMP_POSITION}): the dump is damaged or forged (`dumptool info` shows \
             its header)",
            channel.channel, channel.log_position
        )),
        None => Ok(()),
    }
}

/// The node over a loaded engine: its dump scheduler and thread, the redistribution settings
/// and the change log's sync thread.
fn start_node(config: &NodeConfig, engine: Engine, wakeups: Wakeups) -> Result<DhtNode, String> {
    let thread = DumpThread::spawn(config.data_dir.clone()).map_err(|err| {
        format!(
            "cannot start the dump writer in {}: {err}",
            config.data_dir.display()
        )
    })?;
    thread.set_compression(config.dht.dump_compression());
    let period =
        (config.dht.dump_period_s > 0).then(|| Duration::from_secs(config.dht.dump_period_s));
    let dumper = DumpScheduler::new(thread, period);
    let credentials = match &config.auth.credentials_file {
        Some(path) => Some(Arc::new(
            Credentials::load(path).map_err(|err| err.to_string())?,
        )),
        None => None,
    };
    let redistribution = RedistributionConfig {
        data_dir: Some(config.data_dir.clone()),
        credentials,
        tls: peer_tls(&config.tls)?,
        memory_multiplier: config.dht.redistribution_memory_multiplier,
        instance: random_instance(),
        tuning: Tuning::default(),
    };
    let interval = Duration::from_millis(u64::from(config.dht.durability_interval_ms));
    let logging = engine.log().is_writing();
    let log_sync = LogSync::new(config.dht.durability, interval, logging, wakeups.clone())
        .map_err(|err| format!("cannot start the change log's sync thread: {err}"))?;
    Ok(DhtNode::new(
        engine,
        wakeups,
        Some(dumper),
        redistribution,
        log_sync,
        config.dht.max_log_bytes,
    ))
}

/// Whether `writer`'s segment is the log's first (a log begun afresh: none before it).
fn begins_the_log(writer: &LogWriter) -> bool {
    dht_persist::wal::segment::list_segments(writer.dir()).is_ok_and(|listing| {
        listing.segments.first().map(|first| first.number) == Some(writer.segment().0)
    })
}

/// The largest change-log segment the node starts (each is reserved on disk when started, so
/// a node that starts often, or many nodes on one disk, reserve at most this each).
const MAX_SEGMENT_BYTES: u64 = 16 << 20;

/// The change log the engine writes from now on (after the replay): a writer continuing past
/// the log's end and every dump's position, with its segments reserved on disk; or, under
/// `durability = "none"`, no writer, dumps covering what was replayed.
fn open_log(config: &NodeConfig, replayed: &Replayed) -> Result<EngineLog, String> {
    let position = replayed.end.last_seq.max(replayed.highest_dump_position);
    if config.dht.durability == DurabilityPolicy::None {
        return Ok(if position > 0 {
            EngineLog::fixed(position, replayed.end.dir.clone())
        } else {
            EngineLog::none()
        });
    }
    let options = LogOptions {
        segment_bytes: (config.dht.max_log_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
        ..LogOptions::default()
    };
    let (writer, reserving) = match start_writer(&replayed.end, position + 1, options) {
        Ok(started) => started,
        Err(error) if is_disk_full(&error) => {
            tracing::error!(
                "the change log cannot start: {error}. The node serves reads; every change is \
                 refused (InternalError) until the disk has room"
            );
            let end = replayed.end.clone();
            return Ok(EngineLog::pending(end, position + 1, options, &error));
        }
        Err(error) => return Err(format!("cannot start the change log: {error}")),
    };
    if !reserving {
        tracing::warn!(
            "the file system of {} cannot reserve space (fallocate): a full disk will fail a \
             change log write after its change was applied, which stops the node",
            writer.dir().display()
        );
    }
    if position > replayed.end.last_seq && begins_the_log(&writer) {
        let segment = writer.segment().0;
        persist::record_jump_base(
            writer.dir(),
            segment,
            position + 1,
            &replayed.dump_positions,
        );
    }
    tracing::info!(
        "change log ({} durability) continues at position {} in {}",
        match config.dht.durability {
            DurabilityPolicy::Always => "always",
            _ => "interval",
        },
        position + 1,
        writer.segment().1.display()
    );
    Ok(EngineLog::writing(writer))
}

/// The range to start with, and an unfinished redistribution to resume (see the module doc).
fn choose_range(
    config: &NodeConfig,
    command_line: Option<HashRange>,
) -> Result<(HashRange, Option<PendingRedistribution>), String> {
    let configured = config.dht.range().map_err(|err| err.to_string())?;
    let saved = state::load(&config.data_dir).map_err(|err| err.to_string())?;
    let state_path = config.data_dir.join(state::STATE_FILE);
    let Some(range) = command_line else {
        return Ok(match saved {
            Some(saved) => {
                tracing::info!(
                    "hash range {} from {} (it takes precedence over the config's range {configured})",
                    saved.range,
                    state_path.display()
                );
                (saved.range, saved.redistribution)
            }
            None => {
                tracing::info!("hash range {configured} from the config");
                (configured, None)
            }
        });
    };
    let range = range.normalized();
    let mut pending = None;
    match saved {
        Some(saved) if saved.range != range => {
            tracing::warn!(
                "--range {range} overrides the range {} that {} holds; the state file now says {range}",
                saved.range,
                state_path.display()
            );
            if saved.redistribution.is_some() {
                tracing::warn!(
                    "the unfinished redistribution to {} is abandoned: --range changed the range \
                     (records outside {range} stay until another Redistribute moves them)",
                    saved.range
                );
            }
        }
        Some(saved) => {
            tracing::info!(
                "hash range {range} from --range (as {} says)",
                state_path.display()
            );
            pending = saved.redistribution;
        }
        None => tracing::info!("hash range {range} from --range"),
    }
    let new_state = NodeState {
        range,
        redistribution: pending.clone(),
    };
    state::save(&config.data_dir, &new_state).map_err(|err| err.to_string())?;
    Ok((range, pending))
}
