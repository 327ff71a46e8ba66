//! Configuration the nodes share: the command-line flags every daemon takes ([`CommonArgs`]),
//! the `[server]`, `[auth]`, `[tls]` and `[log]` TOML sections with their built-in defaults and range
//! checks, loading a TOML file into a node's own config type ([`load_file`]), and the rule that
//! a node reachable from the network must authenticate ([`check_bind_security`]).
//!
//! Unknown keys are refused (`deny_unknown_fields`), so a typo never silently falls back to a
//! default; every error names the file, line or key at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest config file accepted, in bytes. Real ones are a few KiB; this only stops a wrong path
/// (a device, a huge log) from being read into memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1_000_000;

const KIB: u32 = 1024;
const MIB: u32 = 1024 * KIB;

/// The port a node listens on when neither the config nor `--listen` says otherwise.
pub const DEFAULT_PORT: u16 = 10000;

/// Flags every daemon takes; each one `#[command(flatten)]`s this into its own clap parser.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// TOML config file; without it the node runs on built-in defaults (listening on
    /// 127.0.0.1 only).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on; overrides `server.listen` from the config file.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// Directory for the node's data; overrides the data directory from the config file.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Directory for root.log and stats.log; overrides `log.dir` from the config file.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Check the configuration (file, command-line overrides, credentials and token files),
    /// print the effective configuration and exit: 0 when it is valid, 1 with a message naming
    /// the key at fault. Starts nothing and binds nothing.
    #[arg(long)]
    pub check_config: bool,
}

impl CommonArgs {
    /// Applies the flags that override shared sections (`--listen`, `--log-dir`). `--config`
    /// and `--data-dir` are the node's to use: the data directory lives in its own section.
    pub fn apply_overrides(&self, server: &mut ServerSection, log: &mut LogSection) {
        if let Some(listen) = &self.listen {
            server.listen = Some(listen.clone());
        }
        if let Some(dir) = &self.log_dir {
            log.dir = dir.clone();
        }
    }
}

/// `[server]`: the listener and the limits that keep one client from exhausting the node.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// `HOST:PORT` to bind. Unset means 127.0.0.1 on the node kind's own port: loopback by
    /// default, because exposing a node is a deliberate act. (An `Option` rather than a default
    /// string so that a `[server]` table without `listen` still gets the node's own port.)
    pub listen: Option<String>,
    /// Connections open at once; more are told "connection limit" and closed.
    pub max_connections: u32,
    /// Largest frame accepted or sent.
    pub max_frame_bytes: u32,
    /// Requests in flight on one connection before the node stops reading from it.
    pub max_in_flight: u32,
    /// Reply bytes buffered per connection before the node stops producing for it.
    pub output_buffer_bytes: u32,
    /// Memory the streams of one connection may hold (cursors, filters, windows, indexes)
    /// before requests that open a stream get TooManyRequests.
    pub stream_memory_bytes: u32,
    /// The same for the streams of all connections together.
    pub max_stream_memory_bytes: u64,
    /// Listen backlog handed to the kernel.
    pub backlog: u32,
    /// Idle seconds before TCP keepalive probes start (finds dead peers).
    pub tcp_keepalive_idle_s: u32,
    /// Event-loop timer tick (timeouts, stats, periodic work).
    pub tick_interval_ms: u32,
    /// How long a graceful shutdown waits for in-flight requests before closing connections.
    pub shutdown_timeout_s: u32,
    /// TLS handshakes the event loop drives per pass; the rest wait for the next pass, in
    /// arrival order, so a flood of connects cannot hold up established connections.
    pub tls_handshakes_per_pass: u32,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: None,
            max_connections: 5000,
            max_frame_bytes: 16 * MIB,
            max_in_flight: 1024,
            output_buffer_bytes: 4 * MIB,
            stream_memory_bytes: 16 * MIB,
            max_stream_memory_bytes: 1024 * u64::from(MIB),
            backlog: 1024,
            tcp_keepalive_idle_s: 5,
            tick_interval_ms: 100,
            shutdown_timeout_s: 30,
            tls_handshakes_per_pass: crate::server::DEFAULT_TLS_HANDSHAKES_PER_PASS as u32,
        }
    }
}

impl ServerSection {
    /// Checks every value's range; the error names the first key out of range.
    pub fn validate(&self, default_port: u16) -> Result<(), ConfigError> {
        self.listen_addr(default_port)?;
        check_range("server.max_connections", self.max_connections, 1, 1_000_000)?;
        check_range(
            "server.max_frame_bytes",
            self.max_frame_bytes,
            KIB,
            256 * MIB,
        )?;
        check_range("server.max_in_flight", self.max_in_flight, 1, 65536)?;
        // Below 64 KiB every large reply would stall on backpressure; above 1 GiB a few slow
        // readers could take the machine's memory.
        check_range(
            "server.output_buffer_bytes",
            self.output_buffer_bytes,
            64 * KIB,
            1024 * MIB,
        )?;
        // Below 256 KiB a connection could hardly run a filtered read; above 1 GiB (per
        // connection) or 64 GiB (node-wide) the budget would no longer protect the machine.
        check_range(
            "server.stream_memory_bytes",
            self.stream_memory_bytes,
            256 * KIB,
            1024 * MIB,
        )?;
        check_range(
            "server.max_stream_memory_bytes",
            self.max_stream_memory_bytes,
            u64::from(MIB),
            64 * 1024 * u64::from(MIB),
        )?;
        // The kernel caps the backlog at net.core.somaxconn (65535 at most) anyway.
        check_range("server.backlog", self.backlog, 1, 65535)?;
        // 32767 s is Linux's upper limit for TCP_KEEPIDLE.
        check_range(
            "server.tcp_keepalive_idle_s",
            self.tcp_keepalive_idle_s,
            1,
            32767,
        )?;
        check_range("server.tick_interval_ms", self.tick_interval_ms, 1, 60_000)?;
        check_range(
            "server.shutdown_timeout_s",
            self.shutdown_timeout_s,
            1,
            86_400,
        )?;
        check_range(
            "server.tls_handshakes_per_pass",
            self.tls_handshakes_per_pass,
            1,
            1_000_000,
        )?;
        Ok(())
    }

    /// `listen` as a socket address (an IP literal and a port; host names are not resolved,
    /// so what a node binds never depends on DNS).
    /// Unset, it is 127.0.0.1:`default_port`.
    pub fn listen_addr(&self, default_port: u16) -> Result<SocketAddr, ConfigError> {
        let Some(listen) = &self.listen else {
            return Ok(SocketAddr::from(([127, 0, 0, 1], default_port)));
        };
        listen.parse().map_err(|_| ConfigError::Invalid {
            key: "server.listen",
            problem: format!(
                "{:?} is not an IP address and port (e.g. \"127.0.0.1:{DEFAULT_PORT}\" or \
                 \"[::1]:{DEFAULT_PORT}\")",
                listen
            ),
        })
    }
}

/// `[auth]`: who may connect and who may administer.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Credentials file (`name:hexkey` per line). Without it, clients are not authenticated.
    pub credentials_file: Option<PathBuf>,
    /// Client names allowed to run administrative requests.
    pub admins: Vec<String>,
    /// Allow listening on a non-loopback address without credentials.
    pub insecure: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            credentials_file: None,
            admins: vec!["admin".to_string()],
            insecure: false,
        }
    }
}

impl AuthSection {
    /// Checks that every admin is a valid client name (a typo would otherwise lock admins out
    /// without a word).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (index, name) in self.admins.iter().enumerate() {
            crate::auth::check_name(name.as_bytes()).map_err(|problem| ConfigError::Invalid {
                key: "auth.admins",
                problem: format!("entry {} ({name:?}): {problem}", index + 1),
            })?;
        }
        if matches!(&self.credentials_file, Some(path) if path.as_os_str().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "auth.credentials_file",
                problem: "is empty; give a path or leave the key out".to_string(),
            });
        }
        Ok(())
    }
}

/// `[tls]`: TLS on every connection (docs/security.md, "TLS"). Unset (the default): clients
/// connect in clear. Paths are relative to the working directory; SIGHUP loads them again.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// The node's certificate chain (PEM), its own certificate first.
    pub cert_file: Option<PathBuf>,
    /// The private key of that certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Set: mutual TLS. Clients must present a certificate signed by one of these CAs (PEM).
    pub client_ca_file: Option<PathBuf>,
    /// dht nodes: the CA (PEM) the other dht nodes' certificates chain to, for the connections
    /// a redistribution opens to them (this node's certificate goes along, for mutual TLS).
    /// Other kinds open no connections and do not use it.
    pub peer_ca_file: Option<PathBuf>,
}

impl TlsSection {
    /// Checks that the keys come together: a certificate and its key, or neither; a client CA
    /// only with them. (The files themselves are loaded by `daemon::server_options`.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let empty =
            |path: &Option<PathBuf>| path.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        for (key, path) in [
            ("tls.cert_file", &self.cert_file),
            ("tls.key_file", &self.key_file),
            ("tls.client_ca_file", &self.client_ca_file),
            ("tls.peer_ca_file", &self.peer_ca_file),
        ] {
            if empty(path) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "is empty; give a path or leave the key out".to_string(),
                });
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError::Invalid {
                key: "tls.key_file",
                problem: "is missing: tls.cert_file needs the key of its certificate".into(),
            }),
            (None, Some(_)) => Err(ConfigError::Invalid {
                key: "tls.cert_file",
                problem: "is missing: tls.key_file is set without a certificate".into(),
            }),
            (None, None) if self.client_ca_file.is_some() => Err(ConfigError::Invalid {
                key: "tls.client_ca_file",
                problem: "needs tls.cert_file and tls.key_file: mutual TLS is TLS first".into(),
            }),
            (None, None) if self.peer_ca_file.is_some() => Err(ConfigError::Invalid {
                key: "tls.peer_ca_file",
                problem: "needs tls.cert_file and tls.key_file: the node serves TLS first".into(),
            }),
            _ => Ok(()),
        }
    }

    /// The files to load, when TLS is on.
    pub fn files(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => Some(crate::tls::TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                client_ca_file: self.client_ca_file.clone(),
            }),
            _ => None,
        }
    }
}

/// Log levels accepted by `log.level`, least to most severe.
pub const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// `[log]`: where the logs go, how verbose, how often stats are written.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Directory for root.log and stats.log (relative to the working directory).
    pub dir: PathBuf,
    /// Least severe level written to root.log: one of [`LOG_LEVELS`].
    pub level: String,
    /// Seconds between two stats.log lines.
    pub stats_interval_s: u32,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            dir: PathBuf::from("log"),
            level: "info".to_string(),
            stats_interval_s: 30,
        }
    }
}

impl LogSection {
    /// Checks the level name and the stats interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !LOG_LEVELS.contains(&self.level.as_str()) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                problem: format!("{:?} is not one of {}", self.level, LOG_LEVELS.join(", ")),
            });
        }
        if self.dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "log.dir",
                problem: "is empty; give a directory".to_string(),
            });
        }
        check_range("log.stats_interval_s", self.stats_interval_s, 1, 86_400)
    }
}

/// Refuses a value outside `min..=max`, naming the key.
fn check_range<T>(key: &'static str, value: T, min: T, max: T) -> Result<(), ConfigError>
where
    T: PartialOrd + Copy + std::fmt::Display,
{
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        problem: format!("{value} is not between {min} and {max}"),
    })
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {} is larger than {MAX_CONFIG_FILE_BYTES} bytes", .path.display())]
    TooLarge { path: PathBuf },
    /// `message` is toml's own, which names the line, column and key at fault.
    #[error("config file {}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("bad value for {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error(
        "refusing to listen on {addr} without authentication: it is reachable from other \
         machines. Set auth.credentials_file to a credentials file, or set auth.insecure = true \
         to accept unauthenticated clients deliberately"
    )]
    InsecureBind { addr: SocketAddr },
}

/// Loads a node's config. `None` gives the built-in defaults; otherwise the file is read and
/// parsed as TOML into `T` (whose sections refuse unknown keys).
pub fn load_file<T>(path: Option<&Path>) -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned + Default,
{
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = read_limited(path)?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Reads a text file of at most [`MAX_CONFIG_FILE_BYTES`].
fn read_limited(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("line {line} is not valid UTF-8"),
        }
    })
}

/// Refuses to expose an unauthenticated node: binding anything but loopback (including the
/// wildcard addresses 0.0.0.0 and ::) needs a credentials file or an explicit `insecure = true`.
pub fn check_bind_security(addr: &SocketAddr, auth: &AuthSection) -> Result<(), ConfigError> {
    // to_canonical: ::ffff:127.0.0.1 is loopback too.
    let loopback = addr.ip().to_canonical().is_loopback();
    if loopback || auth.credentials_file.is_some() || auth.insecure {
        return Ok(());
    }
    Err(ConfigError::InsecureBind { addr: *addr })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A node's config as the nodes will write theirs.
    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields, default)]
    struct NodeConfig {
        server: ServerSection,
        auth: AuthSection,
        log: LogSection,
    }

    fn load_text(text: &str) -> Result<NodeConfig, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        load_file(Some(file.path()))
    }

    fn invalid_key(result: Result<(), ConfigError>) -> &'static str {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config: NodeConfig = load_file(None).expect("defaults");
        assert_eq!(config.server.listen, None);
        assert_eq!(config.server.max_connections, 5000);
        assert_eq!(config.server.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(config.server.output_buffer_bytes, 4 * 1024 * 1024);
        assert_eq!(config.auth.admins, ["admin"]);
        assert!(!config.auth.insecure && config.auth.credentials_file.is_none());
        assert_eq!(config.log.dir, Path::new("log"));
        assert_eq!(config.log.level, "info");
        assert_eq!(config.log.stats_interval_s, 30);
        config.server.validate(10000).expect("defaults valid");
        config.auth.validate().expect("defaults valid");
        config.log.validate().expect("defaults valid");
        assert_eq!(
            config.server.listen_addr(11001).expect("default address"),
            "127.0.0.1:11001".parse().expect("address")
        );
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let config = load_text("[server]\nmax_connections = 7\n[log]\nlevel = \"debug\"\n")
            .expect("valid file");
        assert_eq!(config.server.max_connections, 7);
        assert_eq!(config.server.max_in_flight, 1024);
        assert_eq!(config.log.level, "debug");
        assert_eq!(config.log.stats_interval_s, 30);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, key) in [
            ("lisen = \"x\"\n", "lisen"),
            ("[server]\nlisen = \"0.0.0.0:1\"\n", "lisen"),
            ("[log]\nlevl = \"info\"\n", "levl"),
            ("[srever]\n", "srever"),
        ] {
            let message = load_text(text).expect_err("unknown key").to_string();
            assert!(message.contains(key), "{key} not in {message}");
            assert!(message.contains("config file"), "{message}");
        }
    }

    #[test]
    fn type_errors_name_the_line() {
        let message = load_text("[server]\n\nmax_connections = \"many\"\n")
            .expect_err("bad type")
            .to_string();
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("max_connections"), "{message}");
    }

    #[test]
    fn missing_file_names_path() {
        let message = load_file::<NodeConfig>(Some(Path::new("/nonexistent/node.toml")))
            .expect_err("missing")
            .to_string();
        assert!(message.contains("/nonexistent/node.toml"), "{message}");
    }

    #[test]
    fn bad_server_values_name_their_key() {
        let server = ServerSection::default;
        let cases = [
            (
                ServerSection {
                    max_connections: 0,
                    ..server()
                },
                "server.max_connections",
            ),
            (
                ServerSection {
                    max_frame_bytes: 1000,
                    ..server()
                },
                "server.max_frame_bytes",
            ),
            (
                ServerSection {
                    max_in_flight: 65537,
                    ..server()
                },
                "server.max_in_flight",
            ),
            (
                ServerSection {
                    output_buffer_bytes: 1024,
                    ..server()
                },
                "server.output_buffer_bytes",
            ),
            (
                ServerSection {
                    stream_memory_bytes: 1024,
                    ..server()
                },
                "server.stream_memory_bytes",
            ),
            (
                ServerSection {
                    max_stream_memory_bytes: 65 * 1024 * 1024 * 1024,
                    ..server()
                },
                "server.max_stream_memory_bytes",
            ),
            (
                ServerSection {
                    tick_interval_ms: 0,
                    ..server()
                },
                "server.tick_interval_ms",
            ),
            (
                ServerSection {
                    listen: Some("localhost".into()),
                    ..server()
                },
                "server.listen",
            ),
            (
                ServerSection {
                    listen: Some("1.2.3.4:99999".into()),
                    ..server()
                },
                "server.listen",
            ),
        ];
        for (section, key) in cases {
            assert_eq!(invalid_key(section.validate(10000)), key);
        }
    }

    #[test]
    fn bad_log_and_auth_values_name_their_key() {
        let log = LogSection {
            level: "verbose".into(),
            ..LogSection::default()
        };
        let message = log.validate().expect_err("bad level").to_string();
        assert!(
            message.contains("log.level") && message.contains("verbose"),
            "{message}"
        );
        let log = LogSection {
            stats_interval_s: 0,
            ..LogSection::default()
        };
        assert_eq!(invalid_key(log.validate()), "log.stats_interval_s");
        let auth = AuthSection {
            admins: vec!["ad min".into()],
            ..AuthSection::default()
        };
        assert_eq!(invalid_key(auth.validate()), "auth.admins");
    }

    #[test]
    fn tls_keys_come_together() {
        let some = |path: &str| Some(PathBuf::from(path));
        let cases = [
            (some("c.pem"), None, None, Some("tls.key_file")),
            (None, some("k.pem"), None, Some("tls.cert_file")),
            (None, None, some("ca.pem"), Some("tls.client_ca_file")),
            (some(""), some("k.pem"), None, Some("tls.cert_file")),
            (
                some("c.pem"),
                some("k.pem"),
                some(""),
                Some("tls.client_ca_file"),
            ),
            (some("c.pem"), some("k.pem"), None, None),
            (some("c.pem"), some("k.pem"), some("ca.pem"), None),
            (None, None, None, None),
        ];
        let peer_only = TlsSection {
            peer_ca_file: some("ca.pem"),
            ..TlsSection::default()
        };
        assert_eq!(invalid_key(peer_only.validate()), "tls.peer_ca_file");
        for (cert_file, key_file, client_ca_file, refused) in cases {
            let section = TlsSection {
                cert_file,
                key_file,
                client_ca_file,
                peer_ca_file: None,
            };
            match refused {
                Some(key) => assert_eq!(invalid_key(section.validate()), key, "{section:?}"),
                None => {
                    section.validate().expect("valid");
                    assert_eq!(section.files().is_some(), section.cert_file.is_some());
                }
            }
        }
    }

    #[test]
    fn listen_accepts_ipv4_and_ipv6() {
        for listen in ["0.0.0.0:1", "[::1]:10000", "10.1.2.3:80"] {
            let section = ServerSection {
                listen: Some(listen.into()),
                ..ServerSection::default()
            };
            section.validate(10000).expect(listen);
        }
    }

    #[test]
    fn bind_security_truth_table() {
        let open = AuthSection::default();
        let insecure = AuthSection {
            insecure: true,
            ..AuthSection::default()
        };
        let with_creds = AuthSection {
            credentials_file: Some("etc/credentials".into()),
            ..Default::default()
        };
        let cases = [
            ("127.0.0.1:1", true),
            ("127.8.9.10:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("0.0.0.0:1", false),
            ("[::]:1", false),
            ("10.1.2.3:1", false),
        ];
        for (addr, allowed_open) in cases {
            let addr: SocketAddr = addr.parse().expect("test address");
            assert_eq!(
                check_bind_security(&addr, &open).is_ok(),
                allowed_open,
                "{addr}"
            );
            check_bind_security(&addr, &insecure).expect("insecure allows everything");
            check_bind_security(&addr, &with_creds).expect("credentials allow everything");
        }
        let addr: SocketAddr = "0.0.0.0:10000".parse().expect("test address");
        let message = check_bind_security(&addr, &open)
            .expect_err("refused")
            .to_string();
        assert!(message.contains("auth.credentials_file"), "{message}");
        assert!(message.contains("auth.insecure = true"), "{message}");
    }

    #[test]
    fn common_args_override_sections() {
        let args = CommonArgs {
            listen: Some("127.0.0.1:12345".into()),
            log_dir: Some("/var/log/swarm".into()),
            ..CommonArgs::default()
        };
        let (mut server, mut log) = (ServerSection::default(), LogSection::default());
        args.apply_overrides(&mut server, &mut log);
        assert_eq!(server.listen.as_deref(), Some("127.0.0.1:12345"));
        assert_eq!(log.dir, Path::new("/var/log/swarm"));
    }
}
