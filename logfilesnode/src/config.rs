//! The logfilesnode config file: the shared `[server]`, `[auth]` and `[log]` sections, the data
//! directory and the node's own `[logfiles]` section. Every key and its default is documented in
//! `deploy/config/logfilesnode.toml`.

use node_core::config::{AuthSection, ConfigError, LogSection, ServerSection, TlsSection};
use node_core::daemon::DaemonConfig;
use node_core::metrics::MetricsSection;
use node_core::server::durability::{check_interval_ms, DurabilityPolicy};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The port logfilesnode listens on by default (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 11000;

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
    pub logfiles: LogfilesSection,
}

/// `[logfiles]`: limits, write buffering and durability.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogfilesSection {
    /// Largest value accepted, in bytes.
    pub max_value_bytes: u32,
    /// Write buffer of one open bucket file, in bytes (0 = write every record at once).
    pub write_buffer_bytes: u32,
    /// Bucket files open for writing at once, node-wide (each holds a descriptor and a buffer).
    pub max_open_buckets: u32,
    /// Bucket files open for writing at once in one channel.
    pub max_open_buckets_per_channel: u32,
    /// Channels the node may hold.
    pub max_channels: u32,
    /// Buffered records are written to their files at least this often, in milliseconds.
    pub flush_interval_ms: u32,
    /// When a Put is acknowledged and when data is fsynced (docs/protocol.md §7.4): none,
    /// interval or always (the policy type the dht's `durability` key shares).
    pub fsync: DurabilityPolicy,
    /// With fsync = "interval": milliseconds between fsyncs of the files written since.
    pub fsync_interval_ms: u32,
    /// Bytes of records per stretch of a bucket's time index (one index entry per stretch).
    pub index_interval_bytes: u32,
}

impl Default for LogfilesSection {
    fn default() -> LogfilesSection {
        LogfilesSection {
            max_value_bytes: 1024 * 1024,
            write_buffer_bytes: crate::storage::DEFAULT_WRITE_BUFFER_BYTES as u32,
            max_open_buckets: 256,
            max_open_buckets_per_channel: 4,
            max_channels: 10_000,
            flush_interval_ms: 250,
            fsync: DurabilityPolicy::Interval,
            fsync_interval_ms: 1000,
            index_interval_bytes: crate::storage::DEFAULT_INDEX_INTERVAL_BYTES,
        }
    }
}

impl LogfilesSection {
    pub fn validate(&self, max_frame_bytes: u32) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        // A value must fit in one frame with its Put's other fields, in one read batch (12 bytes
        // of framing per record) and in a bucket record.
        let batch_limit = (node_core::protocol::batch::MAX_BATCH_UNCOMPRESSED_BYTES - 12) as u32;
        let max_value_limit = max_frame_bytes
            .saturating_sub(1024)
            .min(batch_limit)
            .min(crate::storage::MAX_VALUE_BYTES as u32);
        if self.max_value_bytes == 0 || self.max_value_bytes > max_value_limit {
            return invalid(
                "logfiles.max_value_bytes",
                format!(
                    "{} is not between 1 and {max_value_limit} (server.max_frame_bytes − 1 KiB, \
                     and at most 16 MiB − 12)",
                    self.max_value_bytes
                ),
            );
        }
        if self.write_buffer_bytes > 64 * 1024 * 1024 {
            return invalid(
                "logfiles.write_buffer_bytes",
                format!("{} is over 64 MiB", self.write_buffer_bytes),
            );
        }
        if !(1..=65_536).contains(&self.max_open_buckets) {
            return invalid(
                "logfiles.max_open_buckets",
                format!("{} is not between 1 and 65536", self.max_open_buckets),
            );
        }
        if self.max_open_buckets_per_channel == 0
            || self.max_open_buckets_per_channel > self.max_open_buckets
        {
            return invalid(
                "logfiles.max_open_buckets_per_channel",
                format!(
                    "{} is not between 1 and logfiles.max_open_buckets ({})",
                    self.max_open_buckets_per_channel, self.max_open_buckets
                ),
            );
        }
        if self.max_channels == 0 {
            return invalid("logfiles.max_channels", "must be at least 1".into());
        }
        if !(1..=3_600_000).contains(&self.flush_interval_ms) {
            return invalid(
                "logfiles.flush_interval_ms",
                format!("{} is not between 1 and 3600000", self.flush_interval_ms),
            );
        }
        check_interval_ms("logfiles.fsync_interval_ms", self.fsync_interval_ms)?;
        let index_range = crate::storage::index::MIN_INDEX_INTERVAL_BYTES
            ..=crate::storage::index::MAX_CONFIG_INDEX_INTERVAL_BYTES;
        if !index_range.contains(&self.index_interval_bytes) {
            return invalid(
                "logfiles.index_interval_bytes",
                format!(
                    "{} is not between {} (4 KiB) and {} (64 MiB)",
                    self.index_interval_bytes,
                    index_range.start(),
                    index_range.end()
                ),
            );
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
            logfiles: LogfilesSection::default(),
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
        self.logfiles.validate(self.server.max_frame_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example config documents the defaults; it must load and say exactly what the node
    /// does without a file.
    #[test]
    fn example_config_loads_and_matches_the_built_in_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/logfilesnode.toml");
        let loaded: NodeConfig =
            node_core::config::load_file(Some(&path)).expect("example config loads");
        assert_eq!(
            format!("{loaded:?}"),
            format!("{:?}", NodeConfig::default())
        );
        loaded.validate_node().expect("the defaults are valid");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        type Spoil = fn(&mut LogfilesSection);
        let cases: [(&str, Spoil); 6] = [
            ("logfiles.max_value_bytes", |s| s.max_value_bytes = 0),
            ("logfiles.max_open_buckets_per_channel", |s| {
                s.max_open_buckets_per_channel = s.max_open_buckets + 1
            }),
            ("logfiles.flush_interval_ms", |s| s.flush_interval_ms = 0),
            ("logfiles.max_channels", |s| s.max_channels = 0),
            ("logfiles.index_interval_bytes", |s| {
                s.index_interval_bytes = 4095
            }),
            ("logfiles.index_interval_bytes", |s| {
                s.index_interval_bytes = 64 * 1024 * 1024 + 1
            }),
        ];
        for (key, spoil) in cases {
            let mut section = LogfilesSection::default();
            spoil(&mut section);
            let err = section.validate(16 * 1024 * 1024).expect_err(key);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn fsync_policy_parses_its_three_names_only() {
        let parsed: NodeConfig = toml::from_str("[logfiles]\nfsync = \"always\"\n").unwrap();
        assert_eq!(parsed.logfiles.fsync, DurabilityPolicy::Always);
        assert!(toml::from_str::<NodeConfig>("[logfiles]\nfsync = \"sometimes\"\n").is_err());
    }
}
