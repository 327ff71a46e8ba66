//! The topology file: which nodes of which kind exist, and the client's credentials.
//!
//! Owns parsing and checking of the TOML file below, and loading of a client key file
//! ([`load_credentials`], shared with `swarmctl --key-file`). Nodes never know each other; this
//! file is the only place the cluster's shape is written down.
//!
//! ```toml
//! [dht]
//! nodes = ["127.0.0.1:10000", "127.0.0.1:10001"]
//! # or, stating each node's hash range (used while the node is down):
//! # nodes = [{ addr = "127.0.0.1:10000", range = "0x0000000000000000:0x7fffffffffffffff" },
//! #          { addr = "127.0.0.1:10001", range = "0x8000000000000000:0xffffffffffffffff" }]
//! # Replica sets (nodes with exactly equal ranges; docs/replication.md), all optional:
//! # replication_factor = 2   # members each set should have: fewer, or fewer live, is reported
//! # write_quorum = "all"     # members that must store a write: "all" live (default), or N
//! # read_from = "first"      # "first" live member (default), or "spread" over live members
//! [logfiles]
//! nodes = ["127.0.0.1:11000"]
//! [queue]
//! nodes = ["127.0.0.1:12000"]
//! [credentials]              # optional
//! key_file = "client.key"    # `name:hexkey` lines; relative to this file's directory
//! name = "alice"             # optional: which entry; without it the file must hold exactly one
//! [tls]                      # optional: every node over TLS (docs/security.md, "TLS")
//! ca_file = "ca.pem"         # the CA the nodes' certificates chain to; relative to this file
//! cert_file = "client.pem"   # optional, with key_file: the client's certificate (mutual TLS)
//! key_file = "client-key.pem"
//! server_name = "swarm.internal"  # optional: the name the certificates carry, instead of
//!                                 # each node's IP address
//! ```
//!
//! `deploy/config/topology.toml` is the example with every key and its default.
//!
//! Every section is optional; unknown keys are refused, so a typo never silently drops a node.
//! A node is `"HOST:PORT"`, or a table `{ addr = "HOST:PORT", range = "MIN:MAX" }` (the range
//! only in `[dht]`, as hex positions with or without `0x`, as `dhtnode --range` takes them); both
//! forms may be mixed. A dht client that starts while a node is down routes that node's keys by
//! the range stated here (they then fail at once, the node being down, instead of being
//! unknown); a node that answers is always routed by the range it reports.

use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::replication::ReplicationSettings;
use crate::tls::{ClientTls, TlsSettings};
use node_core::auth::{self, Credentials, CredentialsError, Key};
use node_core::protocol::dht::HashRange;
use node_core::protocol::NodeKind;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// A refused topology file. The message names the file and the offending key or entry.
#[derive(Debug, thiserror::Error)]
#[error("topology file {}: {reason}", .path.display())]
pub struct TopologyError {
    pub path: PathBuf,
    pub reason: String,
}

/// A client key file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(transparent)]
    Load(#[from] CredentialsError),
    #[error("key file {}: no entry named '{name}'", .path.display())]
    NoSuchName { path: PathBuf, name: String },
}

/// The parsed, checked topology: resolved node addresses per kind, and credentials if given.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    dht: Vec<SocketAddr>,
    /// The range stated for each `dht` node, in the same order.
    dht_ranges: Vec<Option<HashRange>>,
    logfiles: Vec<SocketAddr>,
    queue: Vec<SocketAddr>,
    credentials: Option<(String, Key)>,
    tls: Option<ClientTls>,
    /// The `[dht]` section's replication settings.
    replication: ReplicationSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    dht: Option<RawSection>,
    logfiles: Option<RawSection>,
    queue: Option<RawSection>,
    credentials: Option<RawCredentials>,
    tls: Option<TlsSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    #[serde(default)]
    nodes: Vec<toml::Value>,
    /// `[dht]` only, like the three below (crate::replication).
    replication_factor: Option<toml::Value>,
    write_quorum: Option<toml::Value>,
    read_from: Option<toml::Value>,
}

impl RawSection {
    /// The replication settings; `Err` names a bad one, or one given outside `[dht]`.
    fn replication(&self, section: &str) -> Result<ReplicationSettings, String> {
        let given = [
            ("replication_factor", &self.replication_factor),
            ("write_quorum", &self.write_quorum),
            ("read_from", &self.read_from),
        ];
        if section != "dht" {
            if let Some((name, _)) = given.iter().find(|(_, value)| value.is_some()) {
                return Err(format!("[{section}] {name}: replication is only for [dht]"));
            }
        }
        ReplicationSettings::parse(
            self.replication_factor.as_ref(),
            self.write_quorum.as_ref(),
            self.read_from.as_ref(),
        )
        .map_err(|why| format!("[{section}] {why}"))
    }
}

/// One resolved `nodes` entry.
struct Entry {
    addr: SocketAddr,
    range: Option<HashRange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    key_file: PathBuf,
    name: Option<String>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            path: path.to_path_buf(),
            reason: format!("cannot read: {e}"),
        })?;
        Topology::parse(&text, path)
    }

    /// Parses topology text that was read from `path` (used in messages, and as the base of a
    /// relative `key_file`).
    pub fn parse(text: &str, path: &Path) -> Result<Topology, TopologyError> {
        let fail = |reason: String| TopologyError {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawTopology = toml::from_str(text).map_err(|e| fail(toml_reason(text, &e)))?;
        let mut replication = ReplicationSettings::default();
        let (dht, logfiles, queue) = {
            let mut section = |name, raw: Option<RawSection>| match raw {
                Some(raw) => {
                    let settings = raw.replication(name).map_err(fail)?;
                    if name == "dht" {
                        replication = settings;
                    }
                    resolve_section(name, &raw.nodes).map_err(fail)
                }
                None => Ok(Vec::new()),
            };
            (
                section("dht", raw.dht)?,
                section("logfiles", raw.logfiles)?,
                section("queue", raw.queue)?,
            )
        };
        let addrs = |entries: Vec<Entry>| entries.into_iter().map(|entry| entry.addr).collect();
        if let Some(entry) = logfiles.iter().chain(&queue).find(|e| e.range.is_some()) {
            return Err(fail(format!(
                "node {}: a range is only for [dht] nodes",
                entry.addr
            )));
        }
        let credentials = match raw.credentials {
            Some(creds) => Some(load_section_credentials(&creds, path).map_err(fail)?),
            None => None,
        };
        let tls = match raw.tls {
            // Relative to the topology file, like the key file.
            Some(settings) => {
                let base = path.parent().unwrap_or(Path::new(""));
                let settings = settings.relative_to(base);
                Some(ClientTls::load(&settings).map_err(|e| fail(e.to_string()))?)
            }
            None => None,
        };
        Ok(Topology {
            dht_ranges: dht.iter().map(|entry| entry.range).collect(),
            dht: addrs(dht),
            logfiles: addrs(logfiles),
            queue: addrs(queue),
            credentials,
            tls,
            replication,
        })
    }

    /// The `[dht]` section's replication settings (each `None` where the file is silent).
    pub fn replication(&self) -> ReplicationSettings {
        self.replication
    }

    /// The nodes of one kind, in file order (the order is the node index in a `Client`).
    pub fn nodes(&self, kind: NodeKind) -> &[SocketAddr] {
        match kind {
            NodeKind::Dht => &self.dht,
            NodeKind::Logfiles => &self.logfiles,
            NodeKind::Queue => &self.queue,
        }
    }

    /// The ranges the file states for its `[dht]` nodes, by address.
    pub fn dht_ranges(&self) -> HashMap<SocketAddr, HashRange> {
        self.dht
            .iter()
            .zip(&self.dht_ranges)
            .filter_map(|(addr, range)| range.map(|range| (*addr, range)))
            .collect()
    }

    /// The client name and key from `[credentials]`, if the file has that section.
    pub fn credentials(&self) -> Option<&(String, Key)> {
        self.credentials.as_ref()
    }

    /// The TLS settings of `[tls]`, loaded, if the file has that section.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// What connecting to the nodes of `kind` takes: their addresses (an error if the file lists
    /// none), and `options` with the file's credentials and TLS unless `options` brings its own.
    pub fn connection(
        &self,
        kind: NodeKind,
        mut options: ClientOptions,
    ) -> Result<(&[SocketAddr], ClientOptions), ClientError> {
        let nodes = self.nodes(kind);
        if nodes.is_empty() {
            return Err(ClientError::Setup(format!(
                "the topology lists no {kind} nodes"
            )));
        }
        if options.credentials.is_none() {
            options.credentials = self.credentials().cloned();
        }
        if options.tls.is_none() {
            options.tls = self.tls.clone();
        }
        if kind == NodeKind::Dht {
            options.write_quorum = options.write_quorum.or(self.replication.write_quorum);
            options.read_from = options.read_from.or(self.replication.read_from);
        }
        Ok((nodes, options))
    }
}

/// Loads the client's name and key from a credentials-format file. With `name`, that entry is
/// used (the file may hold several); without, the file must hold exactly one entry.
pub fn load_credentials(
    key_file: &Path,
    name: Option<&str>,
) -> Result<(String, Key), KeyFileError> {
    let Some(name) = name else {
        return Ok(auth::load_client_key(key_file)?);
    };
    let credentials = Credentials::load(key_file)?;
    match credentials.get(name) {
        Some(key) => Ok((name.to_string(), key.clone())),
        None => Err(KeyFileError::NoSuchName {
            path: key_file.to_path_buf(),
            name: name.to_string(),
        }),
    }
}

fn load_section_credentials(
    raw: &RawCredentials,
    topology: &Path,
) -> Result<(String, Key), String> {
    // Relative to the topology file, not the working directory, so a file and its key can be
    // moved together and used from anywhere.
    let base = topology.parent().unwrap_or(Path::new(""));
    let key_file = base.join(&raw.key_file);
    load_credentials(&key_file, raw.name.as_deref())
        .map_err(|e| format!("[credentials] key_file: {e}"))
}

/// Resolves every entry of a section; the error names the section, index and entry.
fn resolve_section(section: &str, entries: &[toml::Value]) -> Result<Vec<Entry>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            resolve_entry(entry)
                .map_err(|why| format!("[{section}] nodes[{index}] = {entry}: {why}"))
        })
        .collect()
}

/// `"HOST:PORT"` or `{ addr = "HOST:PORT", range = "MIN:MAX" }` (range optional).
fn resolve_entry(entry: &toml::Value) -> Result<Entry, String> {
    const FORMS: &str = "expected \"HOST:PORT\" or { addr = \"HOST:PORT\", range = \"MIN:MAX\" }";
    match entry {
        toml::Value::String(addr) => Ok(Entry {
            addr: resolve(addr)?,
            range: None,
        }),
        toml::Value::Table(table) => {
            if let Some(key) = table
                .keys()
                .find(|key| !matches!(key.as_str(), "addr" | "range"))
            {
                return Err(format!("unknown key `{key}`; {FORMS}"));
            }
            let addr = match table.get("addr") {
                Some(toml::Value::String(addr)) => resolve(addr)?,
                Some(_) => return Err("`addr` must be a string \"HOST:PORT\"".into()),
                None => return Err(format!("no `addr`; {FORMS}")),
            };
            let range = match table.get("range") {
                Some(toml::Value::String(range)) => {
                    Some(HashRange::parse(range).map(HashRange::normalized)?)
                }
                Some(_) => return Err("`range` must be a string \"MIN:MAX\"".into()),
                None => None,
            };
            Ok(Entry { addr, range })
        }
        _ => Err(FORMS.into()),
    }
}

/// Resolves `host:port` to its first address.
pub fn resolve(entry: &str) -> Result<SocketAddr, String> {
    let mut addrs = entry
        .to_socket_addrs()
        .map_err(|e| format!("not a valid host:port address ({e})"))?;
    addrs
        .next()
        .ok_or_else(|| "host resolves to no address".to_string())
}

/// One line for a TOML error: the parser's message and the line it concerns. (The parser's own
/// `Display` spans several lines with a source excerpt, which does not fit `swarmctl: <reason>`.)
fn toml_reason(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn write_private(path: &Path, text: &str) {
        let mut file = std::fs::File::create(path).expect("create");
        file.write_all(text.as_bytes()).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    #[test]
    fn parses_a_good_file() {
        let text = r#"
            [dht]
            nodes = ["127.0.0.1:10000", "127.0.0.1:10001"]
            [queue]
            nodes = ["[::1]:12000"]
        "#;
        let topology = Topology::parse(text, Path::new("/etc/swarm/topology.toml")).expect("good");
        assert_eq!(topology.nodes(NodeKind::Dht).len(), 2);
        assert_eq!(
            topology.nodes(NodeKind::Dht)[1],
            "127.0.0.1:10001".parse().expect("addr")
        );
        assert!(topology.nodes(NodeKind::Logfiles).is_empty());
        assert_eq!(
            topology.nodes(NodeKind::Queue)[0],
            "[::1]:12000".parse().expect("addr")
        );
        assert!(topology.credentials().is_none());
    }

    #[test]
    fn refuses_unknown_keys_naming_file_and_key() {
        let text = "[dht]\nnodes = []\nnode = [\"127.0.0.1:1\"]\n";
        let message = Topology::parse(text, Path::new("t.toml"))
            .expect_err("typo")
            .to_string();
        assert!(
            message.starts_with("topology file t.toml: line 3:"),
            "{message}"
        );
        assert!(message.contains("unknown field `node`"), "{message}");

        let message = Topology::parse("[dhtt]\n", Path::new("t.toml"))
            .expect_err("typo")
            .to_string();
        assert!(message.contains("`dhtt`"), "{message}");
    }

    #[test]
    fn refuses_bad_addresses_naming_the_entry() {
        let text = "[logfiles]\nnodes = [\"127.0.0.1:1\", \"localhost\"]\n";
        let message = Topology::parse(text, Path::new("t.toml"))
            .expect_err("no port")
            .to_string();
        assert!(
            message.starts_with("topology file t.toml: [logfiles] nodes[1] = \"localhost\": "),
            "{message}"
        );
    }

    #[test]
    fn dht_nodes_may_state_their_ranges() {
        let text = r#"
            [dht]
            nodes = [{ addr = "127.0.0.1:10000", range = "0:7fffffffffffffff" },
                     "127.0.0.1:10001",
                     { addr = "127.0.0.1:10002", range = "0x8000000000000000:0xffffffffffffffff" }]
        "#;
        let topology = Topology::parse(text, Path::new("t.toml")).expect("good");
        assert_eq!(topology.nodes(NodeKind::Dht).len(), 3);
        let ranges = topology.dht_ranges();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(ranges.len(), 2);
        assert_eq!(
            ranges[&addr(10000)],
            HashRange::new(0, 0x7fff_ffff_ffff_ffff)
        );
        assert_eq!(
            ranges[&addr(10002)],
            HashRange::new(0x8000_0000_0000_0000, u64::MAX)
        );

        for (text, expected) in [
            (
                "[dht]\nnodes = [{ addr = \"127.0.0.1:1\", range = \"zz:1\" }]\n",
                "is not a hex number",
            ),
            (
                "[dht]\nnodes = [{ addr = \"127.0.0.1:1\", rnage = \"0:1\" }]\n",
                "unknown key `rnage`",
            ),
            ("[dht]\nnodes = [{ range = \"0:1\" }]\n", "no `addr`"),
            ("[dht]\nnodes = [7]\n", "expected \"HOST:PORT\""),
            (
                "[queue]\nnodes = [{ addr = \"127.0.0.1:1\", range = \"0:1\" }]\n",
                "a range is only for [dht] nodes",
            ),
        ] {
            let message = Topology::parse(text, Path::new("t.toml"))
                .expect_err(text)
                .to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn dht_replication_settings_are_read_and_checked() {
        use crate::replication::{ReadFrom, WriteQuorum};
        let text = "[dht]\nnodes = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nreplication_factor = 2\n\
                    write_quorum = 2\nread_from = \"spread\"\n";
        let topology = Topology::parse(text, Path::new("t.toml")).expect("good");
        let settings = topology.replication();
        assert_eq!(settings.replication_factor, Some(2));
        assert_eq!(settings.write_quorum, Some(WriteQuorum::Members(2)));
        assert_eq!(settings.read_from, Some(ReadFrom::Spread));
        let (_, options) = topology
            .connection(NodeKind::Dht, ClientOptions::default())
            .expect("nodes");
        assert_eq!(options.write_quorum, Some(WriteQuorum::Members(2)));
        assert_eq!(options.read_from, Some(ReadFrom::Spread));
        // The caller's own settings win.
        let mine = ClientOptions {
            write_quorum: Some(WriteQuorum::AllLive),
            ..ClientOptions::default()
        };
        let (_, options) = topology.connection(NodeKind::Dht, mine).expect("nodes");
        assert_eq!(options.write_quorum, Some(WriteQuorum::AllLive));
        for (text, expected) in [
            (
                "[dht]\nreplication_factor = 0\n",
                "[dht] replication_factor = 0",
            ),
            (
                "[dht]\nwrite_quorum = \"most\"\n",
                "[dht] write_quorum = \"most\"",
            ),
            (
                "[dht]\nread_from = \"last\"\n",
                "[dht] read_from = \"last\"",
            ),
            (
                "[queue]\nwrite_quorum = 1\n",
                "[queue] write_quorum: replication is only for [dht]",
            ),
        ] {
            let message = Topology::parse(text, Path::new("t.toml"))
                .expect_err(text)
                .to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn the_example_file_parses_with_its_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config/topology.toml");
        let topology = Topology::load(&path).expect("the example parses");
        assert_eq!(topology.nodes(NodeKind::Dht).len(), 4);
        assert_eq!(topology.dht_ranges().len(), 4);
        let settings = topology.replication();
        assert_eq!(settings.replication_factor, None);
        assert_eq!(
            settings.write_quorum,
            Some(crate::replication::WriteQuorum::default())
        );
        assert_eq!(
            settings.read_from,
            Some(crate::replication::ReadFrom::default())
        );
    }

    #[test]
    fn key_file_is_relative_to_the_topology_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_private(&dir.path().join("client.key"), &format!("alice:{KEY}\n"));
        let topology_path = dir.path().join("topology.toml");
        let text = "[credentials]\nkey_file = \"client.key\"\n";
        let topology = Topology::parse(text, &topology_path).expect("key found");
        let (name, key) = topology.credentials().expect("credentials");
        assert_eq!(name, "alice");
        assert_eq!(key.len_bytes(), 16);
    }

    #[test]
    fn credentials_name_selects_an_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("all.keys");
        write_private(&key_path, &format!("alice:{KEY}\nbob:{KEY}{KEY}\n"));
        let topology_path = dir.path().join("topology.toml");

        let text = "[credentials]\nkey_file = \"all.keys\"\nname = \"bob\"\n";
        let topology = Topology::parse(text, &topology_path).expect("bob listed");
        assert_eq!(
            topology.credentials().map(|(_, key)| key.len_bytes()),
            Some(32)
        );

        let text = "[credentials]\nkey_file = \"all.keys\"\n";
        let message = Topology::parse(text, &topology_path)
            .expect_err("two entries")
            .to_string();
        assert!(message.contains("[credentials] key_file:") && message.contains("exactly one"));

        let text = "[credentials]\nkey_file = \"all.keys\"\nname = \"carol\"\n";
        let message = Topology::parse(text, &topology_path)
            .expect_err("no carol")
            .to_string();
        assert!(message.contains("no entry named 'carol'"), "{message}");
    }
}
