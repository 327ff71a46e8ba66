//! dhtdump's config file: which node to dump, where to, how often, and the shared `[log]`
//! section. Every key and its default is documented in `deploy/config/dhtdump.toml`; without a
//! file the built-in defaults ([`DumpConfig::default`]) apply. Unknown keys are refused
//! (`deny_unknown_fields`) and every bad value is refused with a message naming its key.

use client::tls::{ClientTls, TlsSettings};
use node_core::config::{ConfigError, LogSection};
use node_core::metrics::MetricsSection;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The node dhtdump talks to when neither the config nor `--node` says otherwise.
pub const DEFAULT_NODE: &str = "127.0.0.1:10000";

/// The longest period, pause or retry wait accepted: one year, in seconds.
pub const MAX_SECONDS: u64 = 366 * 86_400;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DumpConfig {
    /// `HOST:PORT` of the dht node to dump (a host name is resolved at each connect).
    pub node: String,
    /// Where the dump files go (created if missing).
    pub data_dir: PathBuf,
    /// Seconds between the starts of two dump cycles.
    pub period_s: u64,
    /// Least pause after a cycle, in seconds, however long the cycle took.
    pub min_wait_s: u64,
    /// Pause before retrying after a failed cycle, in seconds.
    pub retry_wait_s: u64,
    /// The client's credentials, for a node that requires authentication.
    pub credentials: Option<CredentialsSection>,
    /// `[tls]`: connect to the node over TLS (the topology file's section: `ca_file`, optional
    /// `cert_file`/`key_file` and `server_name`; paths relative to the working directory).
    pub tls: Option<TlsSettings>,
    pub log: LogSection,
    pub metrics: MetricsSection,
}

/// `[credentials]`: the key file of the client name dhtdump authenticates as.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    /// A credentials-format file (`name:hexkey` lines), relative to the working directory.
    pub key_file: PathBuf,
    /// Which entry of the file to use; without it the file must hold exactly one entry.
    #[serde(default)]
    pub name: Option<String>,
}

impl Default for DumpConfig {
    fn default() -> DumpConfig {
        DumpConfig {
            node: DEFAULT_NODE.to_string(),
            data_dir: PathBuf::from("data"),
            period_s: 6 * 3600,
            min_wait_s: 60,
            retry_wait_s: 30,
            credentials: None,
            tls: None,
            log: LogSection::default(),
            metrics: MetricsSection::default(),
        }
    }
}

impl DumpConfig {
    /// Loads `path` (or the defaults), applies the command-line overrides and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<DumpConfig, ConfigError> {
        let mut config: DumpConfig = node_core::config::load_file(path)?;
        if let Some(node) = &overrides.node {
            config.node = node.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(dir) = &overrides.log_dir {
            config.log.dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the error names the first key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_node(&self.node)?;
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "is empty; give a directory".into());
        }
        check_seconds("period_s", self.period_s, 1)?;
        check_seconds("min_wait_s", self.min_wait_s, 0)?;
        check_seconds("retry_wait_s", self.retry_wait_s, 1)?;
        if let Some(credentials) = &self.credentials {
            if credentials.key_file.as_os_str().is_empty() {
                return invalid(
                    "credentials.key_file",
                    "is empty; give a path or leave the [credentials] section out".into(),
                );
            }
            if let Some(name) = &credentials.name {
                node_core::auth::check_name(name.as_bytes()).map_err(|problem| {
                    ConfigError::Invalid {
                        key: "credentials.name",
                        problem: format!("{name:?}: {problem}"),
                    }
                })?;
            }
        }
        self.log.validate()?;
        self.metrics.validate()
    }

    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_s)
    }

    pub fn min_wait(&self) -> Duration {
        Duration::from_secs(self.min_wait_s)
    }

    pub fn retry_wait(&self) -> Duration {
        Duration::from_secs(self.retry_wait_s)
    }

    /// The TLS settings of `[tls]`, loaded, if any; the error names the file and the problem.
    pub fn load_tls(&self) -> Result<Option<ClientTls>, String> {
        let Some(settings) = &self.tls else {
            return Ok(None);
        };
        ClientTls::load(settings)
            .map(Some)
            .map_err(|err| err.to_string())
    }

    /// The client name and key from `[credentials]`, if any; the error names the key.
    pub fn load_credentials(&self) -> Result<Option<(String, node_core::auth::Key)>, String> {
        let Some(section) = &self.credentials else {
            return Ok(None);
        };
        client::topology::load_credentials(&section.key_file, section.name.as_deref())
            .map(Some)
            .map_err(|err| format!("credentials.key_file: {err}"))
    }
}

/// Values given on the command line, which take precedence over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub node: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_dir: Option<PathBuf>,
}

/// `HOST:PORT` with a non-empty host and a port from 1 to 65535 (not resolved here: DNS may be
/// down at start-up; each connect resolves again).
fn check_node(node: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        invalid(
            "node",
            format!("{node:?} is not HOST:PORT ({why}), e.g. \"{DEFAULT_NODE}\""),
        )
    };
    if node.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = node.rsplit_once(':') else {
        return bad("no port");
    };
    if host.is_empty() {
        return bad("no host");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bad("the port is not a number from 1 to 65535"),
        Ok(_) => Ok(()),
    }
}

/// Resolves `HOST:PORT` to its first address.
pub fn resolve_node(node: &str) -> Result<SocketAddr, String> {
    let mut addrs = node
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve node address {node:?}: {err}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("node address {node:?} resolves to no address"))
}

fn check_seconds(key: &'static str, value: u64, min: u64) -> Result<(), ConfigError> {
    if (min..=MAX_SECONDS).contains(&value) {
        return Ok(());
    }
    invalid(
        key,
        format!("{value} is not between {min} and {MAX_SECONDS} (one year)"),
    )
}

fn invalid(key: &'static str, problem: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid { key, problem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_text(text: &str) -> Result<DumpConfig, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        DumpConfig::load(Some(file.path()), &Overrides::default())
    }

    /// The example config documents the defaults; it must load and say exactly what dhtdump
    /// does without a file.
    #[test]
    fn example_config_loads_and_matches_the_built_in_defaults() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/dhtdump.toml");
        let loaded =
            DumpConfig::load(Some(&path), &Overrides::default()).expect("example config loads");
        assert_eq!(loaded, DumpConfig::default());
        assert_eq!(loaded.node, "127.0.0.1:10000");
        assert_eq!(loaded.data_dir, Path::new("data"));
        assert_eq!(
            (loaded.period_s, loaded.min_wait_s, loaded.retry_wait_s),
            (21_600, 60, 30)
        );
        DumpConfig::default()
            .validate()
            .expect("defaults are valid");
    }

    #[test]
    fn command_line_overrides_the_file() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"node = \"10.0.0.1:10000\"\ndata_dir = \"x\"\n[log]\ndir = \"l\"\n")
            .expect("write");
        let overrides = Overrides {
            node: Some("localhost:10001".into()),
            data_dir: Some("/srv/dump".into()),
            log_dir: Some("/var/log/dhtdump".into()),
        };
        let config = DumpConfig::load(Some(file.path()), &overrides).expect("loads");
        assert_eq!(config.node, "localhost:10001");
        assert_eq!(config.data_dir, Path::new("/srv/dump"));
        assert_eq!(config.log.dir, Path::new("/var/log/dhtdump"));
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, key) in [
            ("perod_s = 5\n", "perod_s"),
            ("[log]\nlevl = \"info\"\n", "levl"),
            ("[credentials]\nkey_file = \"k\"\nnmae = \"a\"\n", "nmae"),
            ("[dump]\n", "dump"),
        ] {
            let message = load_text(text).expect_err(text).to_string();
            assert!(message.contains(key), "{key} not in {message}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("node = \"127.0.0.1\"\n", "node"),
            ("node = \":10000\"\n", "node"),
            ("node = \"host:0\"\n", "node"),
            ("node = \"host:http\"\n", "node"),
            ("period_s = 0\n", "period_s"),
            ("min_wait_s = 99999999999\n", "min_wait_s"),
            ("retry_wait_s = 0\n", "retry_wait_s"),
            ("data_dir = \"\"\n", "data_dir"),
            ("[credentials]\nkey_file = \"\"\n", "credentials.key_file"),
            (
                "[credentials]\nkey_file = \"k\"\nname = \"a b\"\n",
                "credentials.name",
            ),
            ("[log]\nlevel = \"loud\"\n", "log.level"),
            ("period_s = \"6h\"\n", "period_s"),
        ] {
            let message = load_text(text).expect_err(text).to_string();
            assert!(message.contains(key), "{key} not in {message}");
        }
        for good in [
            "node = \"[::1]:10000\"\n",
            "node = \"dht-3.example:10000\"\n",
        ] {
            load_text(good).expect(good);
        }
    }

    #[test]
    fn credentials_errors_name_the_key() {
        let config = DumpConfig {
            credentials: Some(CredentialsSection {
                key_file: "/nonexistent/client.key".into(),
                name: None,
            }),
            ..DumpConfig::default()
        };
        let message = config.load_credentials().expect_err("missing file");
        assert!(message.contains("credentials.key_file"), "{message}");
        assert!(message.contains("/nonexistent/client.key"), "{message}");
        assert!(matches!(DumpConfig::default().load_credentials(), Ok(None)));
    }
}
