//! Which nodes a command talks to, and how: the `--node`/`--nodes`, `--key-file`,
//! `--name` and `--timeout-ms` options, turned into connected clients.
//!
//! These options go before the subcommand (`swarmctl --node X ping`). They are deliberately not
//! clap "global" options: a global given again after the subcommand silently replaces the
//! earlier value instead of adding to it, which would drop nodes without a word.
//!
//! With `--nodes FILE` the topology's sections are kept apart, one client per kind, so that a
//! node listed under the wrong kind is reported as such. With `--node` the kind is not checked;
//! nor with a `--nodes FILE` that is a plain list of `HOST:PORT` lines (blank lines and `#`
//! comments allowed; the reference's dhtredist nodes file), which is taken like that many
//! `--node`s.

use client::topology::{load_credentials, resolve};
use client::{Client, ClientOptions, NodeKind, Topology};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[group(skip)]
pub struct TargetArgs {
    /// A node to talk to (repeatable).
    #[arg(long, value_name = "HOST:PORT", global = true)]
    node: Vec<String>,
    /// A topology file, or a plain list of HOST:PORT lines: talk to every node it lists.
    #[arg(long, value_name = "FILE", global = true)]
    nodes: Option<PathBuf>,
    /// Client key file (`name:hexkey` lines), for nodes that require authentication. Overrides
    /// the topology's `[credentials]`.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Which entry of the key file to use (needed when it holds several).
    #[arg(long, value_name = "NAME", requires = "key_file")]
    name: Option<String>,
    /// Limit on connecting and on each request, in milliseconds.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

/// One group of nodes to connect to: all of one kind (from a topology), or the `--node` list.
pub struct Target {
    pub kind: Option<NodeKind>,
    pub nodes: Vec<SocketAddr>,
}

impl TargetArgs {
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
                    nodes: nodes?,
                }],
                None => {
                    let topology = Topology::load(path)?;
                    options.credentials = topology.credentials().cloned();
                    topology_targets(&topology)
                }
            },
            None => vec![Target {
                kind: None,
                nodes: self.node_addrs()?,
            }],
        };
        if let Some(key_file) = &self.key_file {
            options.credentials = Some(load_credentials(key_file, self.name.as_deref())?);
        }
        if targets.iter().all(|target| target.nodes.is_empty()) {
            return Err("the topology lists no nodes".into());
        }
        Ok((targets, options))
    }

    /// The dht nodes named on the command line (`--node`s, or the topology's `[dht]` section)
    /// and the options to use.
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
            return Err(format!("the topology lists no [{kind}] nodes").into());
        }
        Ok((nodes, options))
    }
}

/// A value argument: its bytes as given (not necessarily UTF-8), or `-` for the bytes of
/// standard input.
pub fn value_arg(value: &std::ffi::OsStr) -> std::io::Result<Vec<u8>> {
    if value != "-" {
        return Ok(std::os::unix::ffi::OsStrExt::as_bytes(value).to_vec());
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes)?;
    Ok(bytes)
}

impl TargetArgs {
    fn node_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.node
            .iter()
            .map(|entry| resolve(entry).map_err(|why| format!("--node {entry}: {why}")))
            .collect()
    }
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

/// Connects to every group; fails with the first node that cannot be reached or is wrong.
pub fn connect_all(args: &TargetArgs) -> Result<Vec<Client>, Box<dyn std::error::Error>> {
    let (targets, options) = args.resolve()?;
    let mut clients = Vec::with_capacity(targets.len());
    for target in targets {
        clients.push(Client::connect(
            &target.nodes,
            target.kind,
            options.clone(),
        )?);
    }
    Ok(clients)
}
