//! Parses arbitrary bytes as the TOML config file of each daemon (dhtnode, logfilesnode,
//! queuenode, dhtdump) and, when it parses, runs every check the daemon runs at start
//! (`node_core::daemon::load_config` without the file read: `[server]`, `[auth]`, `[log]`, then
//! the node's own section; dhtdump's `DumpConfig::validate`), plus what a node derives from an
//! accepted config (listen address, bind-security rule, dht range, queue ring sizes).
//!
//! `load_file` reads the file, refuses more than 1 MB and non-UTF-8, then does `toml::from_str`;
//! this target starts at `toml::from_str`. Nothing may panic, and formatting any error must not
//! panic either.

use node_core::config::{check_bind_security, ConfigError};
use node_core::daemon::DaemonConfig;

/// What `load_config` runs after parsing (without the command-line overrides).
fn validate<C: DaemonConfig>(mut config: C) -> Result<C, ConfigError> {
    config.server().validate(C::DEFAULT_PORT)?;
    config.auth().validate()?;
    config.log().validate()?;
    config.validate_node()?;
    let addr = config.server().listen_addr(C::DEFAULT_PORT)?;
    let _ = check_bind_security(&addr, config.auth());
    Ok(config)
}

fn node<C: DaemonConfig + std::fmt::Debug>(text: &str, accepted: impl FnOnce(&C)) {
    match toml::from_str::<C>(text) {
        Ok(config) => match validate(config) {
            Ok(config) => {
                let _ = format!("{config:?}");
                accepted(&config);
            }
            Err(error) => {
                let _ = error.to_string();
            }
        },
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    node::<dhtnode::config::NodeConfig>(text, |config| {
        let range = config.dht.range().expect("a validated config has a range");
        let _ = range.normalized();
    });
    node::<logfilesnode::config::NodeConfig>(text, |_| {});
    node::<queuenode::config::NodeConfig>(text, |config| {
        config
            .queue
            .sync_mode()
            .expect("a validated config has a sync mode");
        for channel in ["a", "ch", "big_small", "x-1"] {
            let size = config.queue.channel_size_for(channel);
            assert!(
                size.is_multiple_of(8)
                    && (queuenode::config::MIN_CHANNEL_SIZE_BYTES
                        ..=queuenode::config::MAX_CHANNEL_SIZE_BYTES)
                        .contains(&size),
                "validated config gives ring size {size} for {channel}"
            );
        }
    });
    match toml::from_str::<dhtdump::config::DumpConfig>(text) {
        Ok(config) => match config.validate() {
            Ok(()) => {
                let _ = (config.period(), config.min_wait(), config.retry_wait());
            }
            Err(error) => {
                let _ = error.to_string();
            }
        },
        Err(error) => {
            let _ = error.to_string();
        }
    }
}
