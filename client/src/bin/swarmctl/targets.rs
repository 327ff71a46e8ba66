//! Which nodes a command talks to, and how: the `--node`/`--nodes`, `--key-file`, `--name`,
//! `--tls-*` and `--timeout-ms` options; and the arguments every verb shares (channel names, values).
//!
//! The options may go before or after the verb (`swarmctl --node X ping`, `swarmctl dht get ch 1
//! --node X`). They are not clap "global" options, because a global given both before and after
//! the subcommand keeps only the later values, which would drop nodes without a word; instead
//! [`hoist_global_options`] moves them before the verb, where every `--node` adds up.
//!
//! With `--nodes FILE` the topology's sections are kept apart, one client per kind, so that a
//! node listed under the wrong kind is reported as such. With `--node` the kind is not checked;
//! nor with a `--nodes FILE` that is a plain list of `HOST:PORT` lines (blank lines and `#`
//! comments allowed; the reference's dhtredist nodes file), which is taken like that many
//! `--node`s.

use crate::outcome::Usage;
use client::tls::{ClientTls, TlsSettings};
use client::topology::{load_credentials, resolve};
use client::{ClientOptions, NodeKind, Topology};
use node_core::protocol::channels::{valid_channel_name, MAX_CHANNEL_NAME_LEN};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What a channel name may be, for the argument help.
pub const CHANNEL_HELP: &str =
    "Channel name: 1 to 100 characters of A-Z a-z 0-9 _ - (e.g. users, access-log)";
/// What a key may be, for the argument help.
pub const KEY_HELP: &str =
    "Key: a number from 0 to 2^64-1, decimal (42) or hex with 0x (0x2a); `_` may separate digits";
/// What a value may be, for the argument help.
pub const VALUE_HELP: &str = "Value: the bytes as given (1 byte to 16 MiB less a few bytes; nodes \
                              accept up to their max_value_bytes, 1 MiB by default), or - to read \
                              them from standard input";

#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct TargetArgs {
    /// A node to talk to (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    node: Vec<String>,
    /// A topology file, or a plain list of HOST:PORT lines: talk to every node it lists.
    #[arg(long, value_name = "FILE")]
    nodes: Option<PathBuf>,
    /// Client key file (`name:hexkey` lines), for nodes that require authentication. Overrides
    /// the topology's `[credentials]`.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Which entry of the key file to use (needed when it holds several).
    #[arg(long, value_name = "NAME", requires = "key_file")]
    name: Option<String>,
    /// How long to wait, in milliseconds, for each node's connection and handshake (default
    /// 2000) and for the answers (default 10000). A dht verb of one request (put, get, exists,
    /// remove, channels, size, remove-channel, ranges, ready) waits MS in all once connected:
    /// the range lookup every dht verb starts with and its request share that wait, so a node
    /// that stalls fails it after about MS (`timed out after MS ms`, status 3). getall,
    /// listen, mirror and redistribute, and the other commands, wait up to MS for each answer.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Connect over TLS, trusting the CA certificates of this PEM file. Overrides the topology's
    /// `[tls]`.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: the client's certificate (PEM), for nodes that require one (mutual TLS).
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls-ca: the name the nodes' certificates carry, instead of each node's IP address.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// One group of nodes to connect to: all of one kind (from a topology), or the `--node` list.
pub struct Target {
    pub kind: Option<NodeKind>,
    pub nodes: Vec<SocketAddr>,
}

/// The options [`TargetArgs`] holds; each takes a value (`--node X` or `--node=X`).
const GLOBAL_OPTIONS: [&str; 9] = [
    "--node",
    "--nodes",
    "--key-file",
    "--name",
    "--timeout-ms",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
    "--tls-server-name",
];

/// Moves the global options (and their values) given after the verb to before it, so that
/// clap sees all of them in one place. Stops at `--`: what follows is taken as it is.
pub fn hoist_global_options(args: Vec<OsString>) -> Vec<OsString> {
    let is_global = |arg: &OsStr| {
        let text = arg.to_string_lossy();
        GLOBAL_OPTIONS
            .iter()
            .find(|option| text == **option || text.starts_with(&format!("{option}=")))
            .map(|option| text.len() == option.len()) // true: the value is the next argument
    };
    let mut iter = args.into_iter();
    let mut front: Vec<OsString> = iter.next().into_iter().collect(); // the program name
                                                                      // Up to the verb: global options and their values, --help, --version.
    let mut rest: Vec<OsString> = Vec::new();
    while let Some(arg) = iter.next() {
        match is_global(&arg) {
            Some(takes_value) => {
                front.push(arg);
                if takes_value {
                    front.extend(iter.next());
                }
            }
            None if arg.to_string_lossy().starts_with('-') && arg != "--" => front.push(arg),
            None => {
                rest.push(arg);
                break;
            }
        }
    }
    // After the verb: hoist the global options until `--`.
    let mut after = Vec::new();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            after.push(arg);
            after.extend(iter.by_ref());
            break;
        }
        match is_global(&arg) {
            Some(takes_value) => {
                front.push(arg);
                if takes_value {
                    front.extend(iter.next());
                }
            }
            None => after.push(arg),
        }
    }
    front.extend(rest);
    front.extend(after);
    front
}

impl TargetArgs {
    /// The `--nodes` file, if one was given.
    pub fn nodes_file(&self) -> Option<&std::path::Path> {
        self.nodes.as_deref()
    }

    /// Whether `--timeout-ms` was given.
    pub fn timeout_given(&self) -> bool {
        self.timeout_ms.is_some()
    }

    /// Whether `--node` or `--nodes` was given.
    pub fn has_target(&self) -> bool {
        !self.node.is_empty() || self.nodes.is_some()
    }

    /// The groups of nodes named on the command line, in order, and the options to use.
    pub fn resolve(&self) -> Result<(Vec<Target>, ClientOptions), Box<dyn std::error::Error>> {
        let mut options = ClientOptions::default();
        if let Some(ms) = self.timeout_ms {
            options.connect_timeout_ms = ms;
            options.request_timeout_ms = ms;
        }
        let targets = match &self.nodes {
            Some(path) => match plain_node_list(path) {
                Some(nodes) => vec![Target {
                    kind: None,
                    nodes: nodes.map_err(Usage)?,
                }],
                None => {
                    let topology = Topology::load(path)?;
                    options.credentials = topology.credentials().cloned();
                    options.tls = topology.tls().cloned();
                    topology_targets(&topology)
                }
            },
            None => vec![Target {
                kind: None,
                nodes: self.node_addrs().map_err(Usage)?,
            }],
        };
        if let Some(key_file) = &self.key_file {
            options.credentials = Some(load_credentials(key_file, self.name.as_deref())?);
        }
        if let Some(ca_file) = &self.tls_ca {
            let settings = TlsSettings {
                ca_file: ca_file.clone(),
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
                server_name: self.tls_server_name.clone(),
            };
            options.tls = Some(ClientTls::load(&settings)?);
        }
        if targets.iter().all(|target| target.nodes.is_empty()) {
            return Err(Usage("the topology lists no nodes".into()).into());
        }
        Ok((targets, options))
    }

    /// The nodes of one kind: the topology's section of that kind, or the `--node`s.
    pub fn resolve_kind(
        &self,
        kind: NodeKind,
    ) -> Result<(Vec<SocketAddr>, ClientOptions), Box<dyn std::error::Error>> {
        let (targets, options) = self.resolve()?;
        let nodes: Vec<SocketAddr> = targets
            .into_iter()
            .filter(|target| target.kind.is_none() || target.kind == Some(kind))
            .flat_map(|target| target.nodes)
            .collect();
        if nodes.is_empty() {
            return Err(Usage(format!("the topology lists no [{kind}] nodes")).into());
        }
        Ok((nodes, options))
    }

    /// The topology file, when `--nodes` names one (not a plain list).
    pub fn topology(&self) -> Option<Topology> {
        let path = self.nodes.as_ref()?;
        if plain_node_list(path).is_some() {
            return None;
        }
        Topology::load(path).ok()
    }

    fn node_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.node
            .iter()
            .map(|entry| resolve(entry).map_err(|why| format!("--node {entry}: {why}")))
            .collect()
    }
}

/// A channel argument: refused here (a usage error, before any connection) unless it is a
/// valid channel name.
pub fn channel_arg(text: &str) -> Result<String, String> {
    if valid_channel_name(text) {
        return Ok(text.to_string());
    }
    Err(format!(
        "{text:?} is not a channel name: 1 to {MAX_CHANNEL_NAME_LEN} characters of A-Z a-z \
         0-9 _ -"
    ))
}

/// A value argument: its bytes as given (not necessarily UTF-8), or `-` for the bytes of
/// standard input, at most `limit` of them: a larger value is a usage error, found without
/// reading more than `limit + 1` bytes.
pub fn value_arg(value: &OsStr, limit: usize) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let too_big = |what: &str| {
        Usage(format!(
            "{what} exceeds the value limit of {limit} bytes (the most one request carries; a \
             node takes at most its max_value_bytes, 1 MiB by default)"
        ))
    };
    if value != "-" {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(value);
        if bytes.len() > limit {
            return Err(too_big(&format!("value of {} bytes", bytes.len())).into());
        }
        return Ok(bytes.to_vec());
    }
    // Room for the limit and one byte more, taken at once: no growth copies, and only the
    // pages actually read count (a 100 MB stdin costs about `limit`, not 100 MB).
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut bytes = Vec::with_capacity(limit.saturating_add(1));
    std::io::stdin().lock().take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(too_big("the value on standard input").into());
    }
    Ok(bytes)
}

/// The nodes of a plain list file (every non-blank, non-comment line a `HOST:PORT`), or `None`
/// when the file is not one (a topology, or unreadable: the topology loader then says why).
fn plain_node_list(path: &std::path::Path) -> Option<Result<Vec<SocketAddr>, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    // A topology has `[section]` lines and `key = "value"` lines; a node list has neither
    // (an IPv6 entry `[::1]:10000` does not end with `]`).
    let topology_line =
        |line: &&str| line.contains(['"', '=']) || (line.starts_with('[') && line.ends_with(']'));
    if entries.is_empty() || entries.iter().any(topology_line) {
        return None;
    }
    Some(
        entries
            .iter()
            .map(|entry| {
                resolve(entry).map_err(|why| format!("{}: {entry}: {why}", path.display()))
            })
            .collect(),
    )
}

fn topology_targets(topology: &Topology) -> Vec<Target> {
    [NodeKind::Dht, NodeKind::Logfiles, NodeKind::Queue]
        .into_iter()
        .map(|kind| Target {
            kind: Some(kind),
            nodes: topology.nodes(kind).to_vec(),
        })
        .filter(|target| !target.nodes.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted(args: &[&str]) -> Vec<String> {
        hoist_global_options(args.iter().map(OsString::from).collect())
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn global_options_after_the_verb_move_before_it() {
        assert_eq!(
            hoisted(&["swarmctl", "--node", "a:1", "dht", "get", "ch", "7", "--node", "b:2"]),
            ["swarmctl", "--node", "a:1", "--node", "b:2", "dht", "get", "ch", "7"]
        );
        assert_eq!(
            hoisted(&[
                "swarmctl",
                "ping",
                "--timeout-ms=5",
                "--key-file",
                "k",
                "--nodes",
                "t"
            ]),
            [
                "swarmctl",
                "--timeout-ms=5",
                "--key-file",
                "k",
                "--nodes",
                "t",
                "ping"
            ]
        );
        // After `--`, nothing moves: a value may look like an option.
        assert_eq!(
            hoisted(&["swarmctl", "dht", "put", "ch", "1", "--", "--node"]),
            ["swarmctl", "dht", "put", "ch", "1", "--", "--node"]
        );
        assert_eq!(hoisted(&["swarmctl", "--help"]), ["swarmctl", "--help"]);
    }

    #[test]
    fn channel_names_are_checked_here() {
        assert_eq!(channel_arg("users-1_x"), Ok("users-1_x".to_string()));
        for bad in ["", "a b", "ü", &"x".repeat(101)] {
            let message = channel_arg(bad).expect_err(bad);
            assert!(message.contains("is not a channel name"), "{message}");
        }
    }

    #[test]
    fn a_value_over_the_limit_is_a_usage_error() {
        assert_eq!(value_arg(OsStr::new("abc"), 3).expect("fits"), b"abc");
        let error = value_arg(OsStr::new("abcd"), 3).expect_err("too big");
        assert!(error.is::<Usage>());
        assert!(
            error
                .to_string()
                .starts_with("value of 4 bytes exceeds the value limit of 3 bytes"),
            "{error}"
        );
    }
}
