//! The dhtnode config file: the shared `[server]`, `[auth]` and `[log]` sections, the data
//! directory and the node's own `[dht]` section. Every key and its default is documented in
//! `deploy/config/dhtnode.toml`.

use dht_persist::dump::format::DumpCompression;
use dht_persist::loader::LogGapPolicy;
use node_core::config::{AuthSection, ConfigError, LogSection, ServerSection, TlsSection};
use node_core::daemon::DaemonConfig;
use node_core::metrics::MetricsSection;
use node_core::protocol::dht::HashRange;
use node_core::server::durability::{check_interval_ms, DurabilityPolicy};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The port dhtnode listens on by default (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 10000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    pub server: ServerSection,
    pub auth: AuthSection,
    pub tls: TlsSection,
    pub log: LogSection,
    pub metrics: MetricsSection,
    pub dht: DhtSection,
}

/// `[dht]`: the node's range, its limits, Listen queues and dumps.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DhtSection {
    /// Lowest hash position this node owns, 16 hex digits (optional `0x`).
    pub range_min: String,
    /// Highest hash position this node owns. `min > max` is the empty range.
    pub range_max: String,
    /// Σ (8 + value length) of all records the node may hold; 0 = no limit.
    pub size_limit_bytes: u64,
    /// Largest value accepted.
    pub max_value_bytes: u32,
    /// Channels the node may hold (each costs about 130 KiB of tables even when empty).
    pub max_channels: u32,
    /// Changes one Listen stream may have queued before it loses updates.
    pub listen_queue_events: u32,
    /// Bytes of values one Listen stream may have queued.
    pub listen_queue_bytes: u32,
    /// Bytes of values all Listen streams together may have queued.
    pub listen_total_bytes: u64,
    /// Seconds between periodic dumps of every channel; 0 = only at shutdown.
    pub dump_period_s: u64,
    /// How dump files store their blocks: "lz4" (smaller files, one core's compression speed)
    /// or "none" (the records as they are, at the disk's speed). Readers tell the two apart by
    /// the file's header, so changing it needs nothing else.
    pub dump_compression: String,
    /// What to do with dump records outside the node's range at start: load, ignore or fatal.
    pub out_of_range: String,
    /// What to do at start when a dump covers the change log only to a position before the
    /// log's first entry (the changes between are in neither): fatal (refuse to start) or
    /// load (start without them, with an ERROR line).
    pub log_gap: String,
    /// While this node's own redistribution runs, records other nodes move to it may grow it
    /// to at most this multiple of its size when that redistribution started.
    pub redistribution_memory_multiplier: f64,
    /// The change log (`data_dir/wal/`): none (no log; a crash loses the writes since the last
    /// dump), interval (every change written to the log before its reply, fsynced every
    /// `durability_interval_ms`), always (a reply only once its change is fsynced).
    pub durability: DurabilityPolicy,
    /// With durability = "interval": milliseconds between fsyncs of the log.
    pub durability_interval_ms: u32,
    /// Once the change log holds more than this many bytes (GetStats `log_bytes`: headers and
    /// entries, not the zeros written ahead), or more than [`LOG_DATA_MULTIPLE`] × the node's
    /// data once past `service::EARLY_DUMP_FLOOR_BYTES` (64 MiB), the node dumps early so that
    /// the dump's position lets it delete the log's covered segments. At least
    /// [`MIN_MAX_LOG_BYTES`].
    pub max_log_bytes: u64,
    /// Tombstones (keys removed by RemoveVersion) the node keeps over all channels; one more
    /// is refused with OutOfMemory (docs/protocol.md §6.11).
    pub tombstone_limit: u64,
    /// Seconds a tombstone is kept after it was stored: longer than any versioned write may be
    /// delayed or replayed (a replica down, a client retrying).
    pub tombstone_ttl_s: u64,
    /// The other members of this node's replica set, `host:port`: the node catches up from
    /// them at start before it answers reads (docs/replication.md, "Catch-up"). Empty: no
    /// catch-up, ready at once.
    pub replica_peers: Vec<String>,
    /// The name (in `[auth] credentials_file`) whose key the catch-up logs in to the peers
    /// with; empty: anonymous (for peers without authentication).
    pub replica_client: String,
}

/// The most peers `dht.replica_peers` may name.
pub const MAX_REPLICA_PEERS: usize = 16;

/// The longest `dht.tombstone_ttl_s` accepted: a year.
pub const MAX_TOMBSTONE_TTL_S: u64 = 365 * 86_400;
/// The longest `dht.dump_period_s` accepted: a year.
pub const MAX_DUMP_PERIOD_S: u64 = 365 * 86_400;

/// The least `dht.max_log_bytes` accepted.
pub const MIN_MAX_LOG_BYTES: u64 = 1 << 20;
/// A log larger than this multiple of the node's data (Σ record bytes) also starts an early
/// dump (the idea of Redis's auto-aof-rewrite-percentage), once it is past 64 MiB.
pub const LOG_DATA_MULTIPLE: u64 = 2;

impl Default for DhtSection {
    fn default() -> DhtSection {
        DhtSection {
            range_min: "0x0000000000000000".into(),
            range_max: "0xffffffffffffffff".into(),
            size_limit_bytes: 0,
            max_value_bytes: 1024 * 1024,
            max_channels: 1024,
            listen_queue_events: 65_536,
            listen_queue_bytes: 16 * 1024 * 1024,
            listen_total_bytes: 256 * 1024 * 1024,
            dump_period_s: 6 * 3600,
            dump_compression: "lz4".into(),
            out_of_range: "load".into(),
            log_gap: "fatal".into(),
            redistribution_memory_multiplier: 1.1,
            durability: DurabilityPolicy::Interval,
            durability_interval_ms: 1000,
            max_log_bytes: 1 << 30,
            tombstone_limit: 4 * 1024 * 1024,
            tombstone_ttl_s: 86_400,
            replica_peers: Vec::new(),
            replica_client: String::new(),
        }
    }
}

impl DhtSection {
    /// `dump_compression` as parsed ([`DhtSection::validate`] refuses any other name; LZ4 for
    /// one that slipped past it).
    pub fn dump_compression(&self) -> DumpCompression {
        DumpCompression::from_name(&self.dump_compression).unwrap_or_default()
    }

    pub fn range(&self) -> Result<HashRange, ConfigError> {
        HashRange::parse(&format!("{}:{}", self.range_min, self.range_max)).map_err(|problem| {
            ConfigError::Invalid {
                key: "dht.range_min / dht.range_max",
                problem,
            }
        })
    }

    pub fn validate(&self, max_frame_bytes: u32) -> Result<(), ConfigError> {
        self.range()?;
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        // A value must fit in one frame with its request's other fields, and in one batch (GetAll,
        // dump blocks), whose records carry 12 bytes of framing and, in a dump, 9 bytes of kind
        // and version.
        let batch_limit = (node_core::protocol::batch::MAX_BATCH_UNCOMPRESSED_BYTES
            - 12
            - dht_persist::dump::entry::ENTRY_PREFIX_LEN) as u32;
        let max_value_limit = max_frame_bytes.saturating_sub(1024).min(batch_limit);
        if self.max_value_bytes == 0 || self.max_value_bytes > max_value_limit {
            return invalid(
                "dht.max_value_bytes",
                format!("{} is not between 1 and {max_value_limit} (server.max_frame_bytes − 1 KiB, and at most 16 MiB − 21)", self.max_value_bytes),
            );
        }
        if self.max_channels == 0 {
            return invalid("dht.max_channels", "must be at least 1".into());
        }
        if self.listen_queue_events == 0 {
            return invalid("dht.listen_queue_events", "must be at least 1".into());
        }
        if self.tombstone_limit == 0 {
            return invalid("dht.tombstone_limit", "must be at least 1".into());
        }
        if !(1..=MAX_TOMBSTONE_TTL_S).contains(&self.tombstone_ttl_s) {
            return invalid(
                "dht.tombstone_ttl_s",
                format!(
                    "{} is not between 1 and {MAX_TOMBSTONE_TTL_S} (a year)",
                    self.tombstone_ttl_s
                ),
            );
        }
        // Past this, the next cycle's time overflows the clock (a panic at start).
        if self.dump_period_s > MAX_DUMP_PERIOD_S {
            return invalid(
                "dht.dump_period_s",
                format!(
                    "{} is not between 0 (dumps at shutdown only) and {MAX_DUMP_PERIOD_S} (a year)",
                    self.dump_period_s
                ),
            );
        }
        if (self.listen_queue_bytes as u64) < self.max_value_bytes as u64 + 24 {
            return invalid(
                "dht.listen_queue_bytes",
                "must hold at least one value of max_value_bytes".into(),
            );
        }
        if self.listen_total_bytes < u64::from(self.listen_queue_bytes) {
            return invalid(
                "dht.listen_total_bytes",
                "must be at least dht.listen_queue_bytes".into(),
            );
        }
        let multiplier = self.redistribution_memory_multiplier;
        if !(1.0..=100.0).contains(&multiplier) {
            return invalid(
                "dht.redistribution_memory_multiplier",
                format!("{multiplier} is not between 1.0 and 100.0"),
            );
        }
        check_interval_ms("dht.durability_interval_ms", self.durability_interval_ms)?;
        if self.max_log_bytes < MIN_MAX_LOG_BYTES {
            return invalid(
                "dht.max_log_bytes",
                format!(
                    "{} is below the least accepted, {MIN_MAX_LOG_BYTES} (1 MiB)",
                    self.max_log_bytes
                ),
            );
        }
        self.validate_peers()?;
        self.validate_names()
    }
}

impl DhtSection {
    /// The keys that take one of a few names: `dump_compression`, `out_of_range`, `log_gap`.
    fn validate_names(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        if DumpCompression::from_name(&self.dump_compression).is_none() {
            return invalid(
                "dht.dump_compression",
                format!("{:?} is not lz4 or none", self.dump_compression),
            );
        }
        if !["load", "ignore", "fatal"].contains(&self.out_of_range.as_str()) {
            return invalid(
                "dht.out_of_range",
                format!("{:?} is not load, ignore or fatal", self.out_of_range),
            );
        }
        if self.log_gap.parse::<LogGapPolicy>().is_err() {
            return invalid(
                "dht.log_gap",
                format!("{:?} is not fatal or load", self.log_gap),
            );
        }
        Ok(())
    }

    /// `replica_peers`: at most [`MAX_REPLICA_PEERS`], each `host:port` with a port, no
    /// duplicates (names are resolved when the node connects, so DNS may come later).
    fn validate_peers(&self) -> Result<(), ConfigError> {
        let invalid = |problem: String| {
            Err(ConfigError::Invalid {
                key: "dht.replica_peers",
                problem,
            })
        };
        if self.replica_peers.len() > MAX_REPLICA_PEERS {
            return invalid(format!(
                "{} peers; at most {MAX_REPLICA_PEERS}",
                self.replica_peers.len()
            ));
        }
        for (index, peer) in self.replica_peers.iter().enumerate() {
            let port = peer
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(port))) if !host.is_empty() && port > 0) {
                return invalid(format!("{peer:?} is not host:port"));
            }
            if self.replica_peers[..index].contains(peer) {
                return invalid(format!("{peer:?} is named twice"));
            }
        }
        Ok(())
    }
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            data_dir: PathBuf::from("data"),
            server: ServerSection::default(),
            auth: AuthSection::default(),
            tls: TlsSection::default(),
            log: LogSection::default(),
            metrics: MetricsSection::default(),
            dht: DhtSection::default(),
        }
    }
}

impl DaemonConfig for NodeConfig {
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&mut self) -> &mut ServerSection {
        &mut self.server
    }
    fn auth(&mut self) -> &mut AuthSection {
        &mut self.auth
    }
    fn tls(&mut self) -> &mut TlsSection {
        &mut self.tls
    }
    fn log(&mut self) -> &mut LogSection {
        &mut self.log
    }
    fn data_dir(&mut self) -> &mut PathBuf {
        &mut self.data_dir
    }
    fn metrics(&mut self) -> &mut MetricsSection {
        &mut self.metrics
    }
    fn validate_node(&self) -> Result<(), ConfigError> {
        self.dht.validate(self.server.max_frame_bytes)?;
        if !self.dht.replica_client.is_empty() && self.auth.credentials_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "dht.replica_client",
                problem:
                    "names a client, but [auth] credentials_file (where its key is) is not set"
                        .into(),
            });
        }
        // Loaded here too, so that --check-config and the start refuse a bad file at once
        // rather than the first redistribution.
        if let Some(path) = &self.tls.peer_ca_file {
            node_core::tls::load_roots("tls.peer_ca_file", path).map_err(|err| {
                ConfigError::Invalid {
                    key: "tls.peer_ca_file",
                    problem: err.to_string(),
                }
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example config documents the defaults; it must load and say exactly what the node
    /// does without a file.
    #[test]
    fn example_config_loads_and_matches_the_built_in_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/dhtnode.toml");
        let loaded: NodeConfig =
            node_core::config::load_file(Some(&path)).expect("example config loads");
        assert_eq!(
            format!("{loaded:?}"),
            format!("{:?}", NodeConfig::default())
        );
    }

    #[test]
    fn replica_peers_must_be_distinct_host_ports() {
        let parse = |peers: &str| {
            let config: NodeConfig =
                toml::from_str(&format!("[dht]\nreplica_peers = [{peers}]\n")).unwrap();
            config.dht.validate(u32::MAX).map_err(|e| e.to_string())
        };
        assert!(parse("").is_ok());
        assert!(parse(r#""10.0.0.2:10000", "dht-b.example:10001""#).is_ok());
        for bad in [
            r#""10.0.0.2""#,
            r#"":10000""#,
            r#""host:0""#,
            r#""host:port""#,
            r#""a:1", "a:1""#,
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("dht.replica_peers"), "{bad}: {error}");
        }
        let many: Vec<String> = (1..=17).map(|port| format!("\"h:{port}\"")).collect();
        assert!(parse(&many.join(", ")).unwrap_err().contains("at most 16"));
    }

    #[test]
    fn durability_keys_are_parsed_and_checked_naming_the_key() {
        let parsed: NodeConfig = toml::from_str(
            "[dht]\ndurability = \"always\"\ndurability_interval_ms = 5\nmax_log_bytes = 1048576\n",
        )
        .unwrap();
        assert_eq!(parsed.dht.durability, DurabilityPolicy::Always);
        assert!(parsed.dht.validate(u32::MAX).is_ok());
        assert!(toml::from_str::<NodeConfig>("[dht]\ndurability = \"sometimes\"\n").is_err());
        for (key, text) in [
            ("dht.durability_interval_ms", "durability_interval_ms = 0"),
            ("dht.max_log_bytes", "max_log_bytes = 1048575"),
        ] {
            let config: NodeConfig = toml::from_str(&format!("[dht]\n{text}\n")).unwrap();
            let error = config.dht.validate(u32::MAX).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
    }

    /// A period so long that the next cycle's time overflows the clock panicked at start
    /// (`Instant + Duration`); it is refused naming the key, up to a year accepted.
    #[test]
    fn a_dump_period_past_a_year_is_refused_naming_the_key() {
        for accepted in ["0", "1", "31536000"] {
            let config: NodeConfig =
                toml::from_str(&format!("[dht]\ndump_period_s = {accepted}\n")).unwrap();
            assert!(config.dht.validate(u32::MAX).is_ok(), "{accepted}");
        }
        for refused in ["31536001", "18446744073709551615"] {
            let config: NodeConfig =
                toml::from_str(&format!("[dht]\ndump_period_s = {refused}\n")).unwrap();
            let error = config.dht.validate(u32::MAX).unwrap_err().to_string();
            assert!(error.contains("dht.dump_period_s"), "{error}");
        }
    }

    #[test]
    fn dump_compression_is_lz4_or_none_and_anything_else_is_refused_naming_the_key() {
        assert_eq!(
            DhtSection::default().dump_compression(),
            DumpCompression::Lz4
        );
        for (text, expected) in [
            ("lz4", DumpCompression::Lz4),
            ("none", DumpCompression::None),
        ] {
            let config: NodeConfig =
                toml::from_str(&format!("[dht]\ndump_compression = \"{text}\"\n")).unwrap();
            assert!(config.dht.validate(u32::MAX).is_ok());
            assert_eq!(config.dht.dump_compression(), expected);
        }
        let config: NodeConfig = toml::from_str("[dht]\ndump_compression = \"zstd\"\n").unwrap();
        let error = config.dht.validate(u32::MAX).unwrap_err().to_string();
        assert!(
            error.contains("dht.dump_compression") && error.contains("\"zstd\" is not lz4 or none"),
            "{error}"
        );
    }
}
