//! The queuenode config file: the shared `[server]`, `[auth]` and `[log]` sections and the data
//! directory. Every key and its default is documented in `deploy/config/queuenode.toml`.

use node_core::config::{AuthSection, LogSection, ServerSection};
use node_core::daemon::DaemonConfig;
use serde::Deserialize;
use std::path::PathBuf;

/// The port queuenode listens on by default (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 10020;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    pub server: ServerSection,
    pub auth: AuthSection,
    pub log: LogSection,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            data_dir: PathBuf::from("data"),
            server: ServerSection::default(),
            auth: AuthSection::default(),
            log: LogSection::default(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
