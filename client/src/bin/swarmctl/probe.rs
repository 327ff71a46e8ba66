//! Talking to every node of the command line on its own, for the commands that report on each
//! node (`ping`, `stats`, `health`): a node that is down, of the wrong kind or refusing us is a
//! line of the report, not the end of the command.
//!
//! Owns [`probe_all`]: one connect per node, all at once (so a dead node costs one connect
//! timeout, not one per node), each a `Client` of its own.

use crate::targets::TargetArgs;
use client::{Client, ClientError, NodeKind};
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
        format!("{word}: {}", error.reason())
    }
}

/// Connects to every node named on the command line, in parallel; one [`Probe`] per node, in
/// command-line (topology) order.
pub fn probe_all(targets: &TargetArgs) -> Result<Vec<Probe>, Box<dyn std::error::Error>> {
    let (groups, options) = targets.resolve()?;
    let nodes: Vec<(SocketAddr, Option<NodeKind>)> = groups
        .iter()
        .flat_map(|group| group.nodes.iter().map(|addr| (*addr, group.kind)))
        .collect();
    let clients: Vec<Result<Client, ClientError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|&(addr, kind)| {
                let options = options.clone();
                scope.spawn(move || Client::connect(&[addr], kind, options))
            })
            .collect();
        handles
            .into_iter()
            .zip(&nodes)
            .map(|(handle, (addr, _))| {
                handle.join().unwrap_or_else(|_| {
                    Err(ClientError::Setup(format!(
                        "node {addr}: connect thread panicked"
                    )))
                })
            })
            .collect()
    });
    Ok(nodes
        .into_iter()
        .zip(clients)
        .map(|((addr, kind), client)| Probe { addr, kind, client })
        .collect())
}
