//! Talking to every node of the command line on its own, for the commands that report on each
//! node (`ping`, `stats`, `health`): a node that is down, of the wrong kind or refusing us is a
//! line of the report, not the end of the command.
//!
//! Owns [`probe_all`]: one connect per node, all at once (so a dead node costs one connect
//! timeout, not one per node), each a `Client` of its own.

use crate::targets::TargetArgs;
use client::{Client, ClientError, ClientOptions, NodeKind};
use std::net::SocketAddr;

/// One node of the command line: where it is, what the topology says it is, and the client
/// connected to it (or why there is none).
pub struct Probe {
    pub addr: SocketAddr,
    /// The topology section it is listed in; `None` for `--node`s and plain lists.
    pub kind: Option<NodeKind>,
    pub client: Result<Client, ClientError>,
}

impl Probe {
    /// `down: <reason>` for a node that is down or unreachable, `error: <reason>` for one that
    /// answers wrongly (wrong kind or version, authentication).
    pub fn describe(error: &ClientError) -> String {
        let word = if error.is_node_down() {
            "down"
        } else {
            "error"
        };
        format!("{word}: {}", Probe::why(error))
    }

    /// What went wrong, without the node's name; for a node the client already knows to be
    /// down, the reason it went down (not `down: <reason>`).
    pub fn why(error: &ClientError) -> String {
        match error {
            ClientError::NodeDown { reason, .. } => reason.clone(),
            _ => error.reason(),
        }
    }
}

/// Connects to every node named on the command line, in parallel; one [`Probe`] per node, in
/// command-line (topology) order.
pub fn probe_all(targets: &TargetArgs) -> Result<Vec<Probe>, Box<dyn std::error::Error>> {
    let (nodes, options) = probe_targets(targets)?;
    Ok(connect_all(&nodes, &options))
}

/// A node to probe: its address and the kind its topology section says (`None`: unchecked).
pub type ProbeTarget = (SocketAddr, Option<NodeKind>);

/// The nodes named on the command line, each with the kind its topology section says, in
/// command-line (topology) order; and the options to connect with.
pub fn probe_targets(
    targets: &TargetArgs,
) -> Result<(Vec<ProbeTarget>, ClientOptions), Box<dyn std::error::Error>> {
    let (groups, options) = targets.resolve()?;
    let nodes = groups
        .iter()
        .flat_map(|group| group.nodes.iter().map(|addr| (*addr, group.kind)))
        .collect();
    Ok((nodes, options))
}

/// Connects to `nodes`, each on its own, all at once.
pub fn connect_all(
    nodes: &[(SocketAddr, Option<NodeKind>)],
    options: &ClientOptions,
) -> Vec<Probe> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|&(addr, kind)| scope.spawn(move || Probe::connect(addr, kind, options)))
            .collect();
        handles
            .into_iter()
            .zip(nodes)
            .map(|(handle, &(addr, kind))| {
                handle.join().unwrap_or_else(|_| Probe {
                    addr,
                    kind,
                    client: Err(ClientError::Setup(format!(
                        "node {addr}: connect thread panicked"
                    ))),
                })
            })
            .collect()
    })
}

impl Probe {
    /// Connects to one node, checking its kind when `kind` says one.
    pub fn connect(addr: SocketAddr, kind: Option<NodeKind>, options: &ClientOptions) -> Probe {
        Probe {
            addr,
            kind,
            client: Client::connect(&[addr], kind, options.clone()),
        }
    }
}
