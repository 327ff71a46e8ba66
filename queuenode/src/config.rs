//! The queuenode config file: the shared `[server]`, `[auth]` and `[log]` sections, the data
//! directory and the `[queue]` section (ring sizes, memory limit, sync mode). Every key and its default is documented in `deploy/config/queuenode.toml`.

use crate::engine::SyncMode;
use node_core::config::{AuthSection, ConfigError, LogSection, ServerSection};
use node_core::daemon::DaemonConfig;
use node_core::metrics::MetricsSection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The port queuenode listens on by default (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 12000;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    pub server: ServerSection,
    pub auth: AuthSection,
    pub log: LogSection,
    pub metrics: MetricsSection,
    pub queue: QueueSection,
}

/// Smallest and largest ring (the engine's limits); sizes must be multiples of 8.
pub const MIN_CHANNEL_SIZE_BYTES: u64 = crate::engine::ring::MIN_CAPACITY_BYTES;
pub const MAX_CHANNEL_SIZE_BYTES: u64 = crate::engine::ring::MAX_CAPACITY_BYTES;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Capacity of a new ring (one per channel, or per subscriber of a channel), in bytes.
    pub channel_size_bytes: u64,
    /// Per-channel-prefix ring capacities: the longest prefix of a channel's name found here
    /// decides; channels matching none get `channel_size_bytes`.
    pub channel_size_by_prefix: BTreeMap<String, u64>,
    /// Σ capacity of all rings may not exceed this (0 = no limit). A push that would need a new
    /// ring beyond it fails with OutOfMemory.
    pub memory_limit_bytes: u64,
    /// "on_close" (msync at shutdown; safe against a process crash) or "always" (msync after
    /// every change; safe against a machine crash, slow).
    pub sync: String,
}

impl Default for QueueSection {
    fn default() -> QueueSection {
        QueueSection {
            channel_size_bytes: 64 * 1024 * 1024,
            channel_size_by_prefix: BTreeMap::new(),
            memory_limit_bytes: 0,
            sync: "on_close".into(),
        }
    }
}

impl QueueSection {
    /// The ring capacity for a new storage of `channel`.
    pub fn channel_size_for(&self, channel: &str) -> u64 {
        crate::engine::ring_size_for(
            self.channel_size_bytes,
            &self.channel_size_by_prefix,
            channel,
        )
    }

    /// The ring capacities for the engine.
    pub fn ring_sizes(&self) -> crate::engine::RingSizes {
        crate::engine::RingSizes {
            default_bytes: self.channel_size_bytes,
            by_prefix: self.channel_size_by_prefix.clone(),
        }
    }

    pub fn sync_mode(&self) -> Result<SyncMode, ConfigError> {
        match self.sync.as_str() {
            "on_close" => Ok(SyncMode::OnClose),
            "always" => Ok(SyncMode::Always),
            other => Err(ConfigError::Invalid {
                key: "queue.sync",
                problem: format!("{other:?} is not on_close or always"),
            }),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |key: &'static str, size: u64| {
            if !size.is_multiple_of(8)
                || !(MIN_CHANNEL_SIZE_BYTES..=MAX_CHANNEL_SIZE_BYTES).contains(&size)
            {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!(
                        "{size} is not a multiple of 8 between {MIN_CHANNEL_SIZE_BYTES} and \
                         {MAX_CHANNEL_SIZE_BYTES}"
                    ),
                });
            }
            Ok(())
        };
        check("queue.channel_size_bytes", self.channel_size_bytes)?;
        for (prefix, size) in &self.channel_size_by_prefix {
            if prefix.is_empty() || !node_core::protocol::queue::valid_channel_name(prefix) {
                return Err(ConfigError::Invalid {
                    key: "queue.channel_size_by_prefix",
                    problem: format!("{prefix:?} is not a channel-name prefix"),
                });
            }
            check("queue.channel_size_by_prefix", *size)?;
        }
        self.sync_mode()?;
        Ok(())
    }
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            data_dir: PathBuf::from("data"),
            server: ServerSection::default(),
            auth: AuthSection::default(),
            log: LogSection::default(),
            metrics: MetricsSection::default(),
            queue: QueueSection::default(),
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
        self.queue.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_prefix_decides_the_ring_size() {
        let mut queue = QueueSection::default();
        queue.channel_size_by_prefix.insert("big".into(), 1 << 30);
        queue
            .channel_size_by_prefix
            .insert("big_small".into(), 8192);
        assert_eq!(queue.channel_size_for("other"), 64 << 20);
        assert_eq!(queue.channel_size_for("big_x"), 1 << 30);
        assert_eq!(queue.channel_size_for("big_small_1"), 8192);
        assert!(queue.validate().is_ok());
        queue.channel_size_by_prefix.insert("bad".into(), 4097);
        assert!(queue.validate().is_err());
        let queue = QueueSection {
            sync: "never".into(),
            ..QueueSection::default()
        };
        assert!(queue.validate().is_err());
    }

    /// The example config documents the defaults; it must load and say exactly what the node
    /// does without a file.
    #[test]
    fn example_config_loads_and_matches_the_built_in_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/config/queuenode.toml");
        let loaded: NodeConfig =
            node_core::config::load_file(Some(&path)).expect("example config loads");
        assert_eq!(
            format!("{loaded:?}"),
            format!("{:?}", NodeConfig::default())
        );
    }
}
