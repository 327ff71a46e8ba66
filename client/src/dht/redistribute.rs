//! Changing a running dht cluster's ranges: planning the new ranges ([`plan`]), the request
//! each node gets ([`request_for`]), running it ([`Redistribution`], the node's Progress
//! stream) and asking a node how its redistribution goes ([`state`]). `swarmctl dht
//! redistribute` is built on these; docs/operations.md ("Growing a dht") is the runbook.
//!
//! Strategies (the reference's `dhtredist -s extend|subdivide`):
//! - [`Strategy::Even`]: the whole hash space split evenly over every node, in the order of
//!   their current ranges (nodes with the empty range last, in the order given). Always tiles;
//!   may move more than needed.
//! - [`Strategy::Split`]: per host (IP address): when the host's empty nodes are a multiple of
//!   its nodes with a range, each such node's range is split into equal parts, the node keeps
//!   the first and the empty nodes on the same host take the others (only the new nodes' share
//!   moves, and it never leaves the host); otherwise the host's whole range (its nodes' ranges
//!   must be contiguous) is split evenly among all its nodes.
//!
//! Every node whose range changes gets a Redistribute naming its new range and, as targets,
//! every other node whose new range overlaps its old one.

use crate::client::Client;
use crate::error::ClientError;
use crate::reply::{Stream, StreamEvent};
use node_core::protocol::dht::{
    self as wire, split_evenly, split_range, tiling_problems, HashRange, RedistributeDone,
    RedistributeRequest, RedistributeTarget, RedistributionProgress, RedistributionState,
};
use node_core::protocol::Status;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How new ranges are computed (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Even,
    Split,
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Strategy, String> {
        match text {
            "even" => Ok(Strategy::Even),
            "split" => Ok(Strategy::Split),
            other => Err(format!("strategy {other:?} is not even or split")),
        }
    }
}

/// One node's range before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRange {
    pub addr: SocketAddr,
    pub old: HashRange,
    pub new: HashRange,
}

impl NodeRange {
    pub fn changes(&self) -> bool {
        self.old.normalized() != self.new.normalized()
    }
}

/// New ranges for `nodes` (address, current range), in the same order. Fails when the
/// strategy cannot apply, or when the result would not tile the hash space.
pub fn plan(
    nodes: &[(SocketAddr, HashRange)],
    strategy: Strategy,
) -> Result<Vec<NodeRange>, String> {
    if nodes.is_empty() {
        return Err("no nodes".into());
    }
    let new = match strategy {
        Strategy::Even => plan_even(nodes),
        Strategy::Split => plan_split(nodes)?,
    };
    let planned: Vec<NodeRange> = nodes
        .iter()
        .zip(new)
        .map(|(&(addr, old), new)| NodeRange {
            addr,
            old,
            new: new.normalized(),
        })
        .collect();
    let ranges: Vec<HashRange> = planned.iter().map(|node| node.new).collect();
    if let Some(problem) = tiling_problems(&ranges).first() {
        return Err(format!(
            "the planned ranges would not tile the hash space: {problem}"
        ));
    }
    Ok(planned)
}

/// Node indexes in the order of their current ranges (empty ranges last, stable).
fn by_range(nodes: &[(SocketAddr, HashRange)], indexes: &[usize]) -> Vec<usize> {
    let mut sorted = indexes.to_vec();
    sorted.sort_by_key(|&i| {
        let range = nodes[i].1;
        (range.is_empty(), range.min)
    });
    sorted
}

fn plan_even(nodes: &[(SocketAddr, HashRange)]) -> Vec<HashRange> {
    let order = by_range(nodes, &(0..nodes.len()).collect::<Vec<_>>());
    let parts = split_evenly(nodes.len());
    let mut new = vec![HashRange::EMPTY; nodes.len()];
    for (part, index) in parts.into_iter().zip(order) {
        new[index] = part;
    }
    new
}

fn plan_split(nodes: &[(SocketAddr, HashRange)]) -> Result<Vec<HashRange>, String> {
    let mut hosts: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for (index, (addr, _)) in nodes.iter().enumerate() {
        hosts.entry(addr.ip()).or_default().push(index);
    }
    let mut new: Vec<HashRange> = nodes.iter().map(|(_, range)| *range).collect();
    for (host, members) in hosts {
        let sorted = by_range(nodes, &members);
        let owning: Vec<usize> = sorted
            .iter()
            .copied()
            .filter(|&i| !nodes[i].1.is_empty())
            .collect();
        let empty: Vec<usize> = sorted
            .iter()
            .copied()
            .filter(|&i| nodes[i].1.is_empty())
            .collect();
        if empty.is_empty() {
            continue;
        }
        if owning.is_empty() {
            return Err(format!(
                "host {host} has only nodes with the empty range: nothing there to split (use \
                 --strategy even)"
            ));
        }
        if empty.len().is_multiple_of(owning.len()) {
            let per_node = empty.len() / owning.len();
            for (n, &index) in owning.iter().enumerate() {
                let parts = split_range(nodes[index].1, per_node + 1);
                new[index] = parts[0];
                for (j, part) in parts.into_iter().skip(1).enumerate() {
                    new[empty[n * per_node + j]] = part;
                }
            }
            continue;
        }
        // The host's whole range, split evenly among all its nodes.
        let ranges: Vec<HashRange> = owning.iter().map(|&i| nodes[i].1).collect();
        let whole = HashRange::new(ranges[0].min, ranges[ranges.len() - 1].max);
        let contiguous = ranges
            .windows(2)
            .all(|pair| pair[0].max.checked_add(1) == Some(pair[1].min));
        if !contiguous {
            return Err(format!(
                "host {host}: its nodes' ranges are not contiguous, so they cannot be split \
                 among its {} nodes (use --strategy even)",
                members.len()
            ));
        }
        let parts = split_range(whole, sorted.len());
        for (part, index) in parts.into_iter().zip(owning.iter().chain(empty.iter())) {
            new[*index] = part;
        }
    }
    Ok(new)
}

/// The fraction of `old`'s positions that `new` does not keep (what leaves the node, if its
/// records are spread evenly over its range).
pub fn leaving_fraction(old: HashRange, new: HashRange) -> f64 {
    if old.is_empty() {
        return 0.0;
    }
    let width = |range: HashRange| -> f64 {
        if range.is_empty() {
            0.0
        } else {
            (range.max - range.min) as f64 + 1.0
        }
    };
    let kept = if old.overlaps(&new) {
        width(HashRange::new(old.min.max(new.min), old.max.min(new.max)))
    } else {
        0.0
    };
    1.0 - kept / width(old)
}

/// The Redistribute for node `index` of a plan: its new range, and as targets every other
/// node whose new range overlaps its old one.
pub fn request_for(plan: &[NodeRange], index: usize) -> RedistributeRequest {
    let me = plan[index];
    let targets = plan
        .iter()
        .enumerate()
        .filter(|(other, node)| *other != index && node.new.overlaps(&me.old))
        .map(|(_, node)| RedistributeTarget {
            address: node.addr,
            range: node.new,
        })
        .collect();
    RedistributeRequest {
        range: me.new,
        targets,
    }
}

/// What a running [`Redistribution`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedistEvent {
    Progress(RedistributionProgress),
    Done(RedistributeDone),
}

/// One node's Redistribute, running: its Progress stream.
pub struct Redistribution {
    stream: Stream,
    addr: SocketAddr,
    done: bool,
}

impl Redistribution {
    /// Sends the Redistribute to node `node` of `client`. Refusals (Busy, BadRequest,
    /// NotPermitted) come as the first event's error.
    pub fn start(
        client: &Client,
        node: usize,
        request: &RedistributeRequest,
    ) -> Result<Redistribution, ClientError> {
        let addr = client.node_addr(node).ok_or(ClientError::NoSuchNode {
            index: node,
            count: client.node_count(),
        })?;
        let mut body = Vec::new();
        request.encode(&mut body);
        let stream = client.stream(node, wire::REDISTRIBUTE, &body)?;
        Ok(Redistribution {
            stream,
            addr,
            done: false,
        })
    }

    /// The next event, waiting at most `wait`: `Some(Ok(None))` when nothing came in that
    /// time (a redistribution that retries a failing node may be quiet for a while), `None`
    /// after the end.
    pub fn next(&mut self, wait: Duration) -> Option<Result<Option<RedistEvent>, ClientError>> {
        if self.done {
            return None;
        }
        let event = match self.stream.next_timeout(wait)? {
            Ok(event) => event,
            Err(ClientError::Timeout { .. }) => return Some(Ok(None)),
            Err(error) => {
                self.done = true;
                return Some(Err(error));
            }
        };
        let addr = self.addr;
        let result = match event {
            StreamEvent::Item { code, body } if code == wire::ITEM_PROGRESS => {
                RedistributionProgress::decode(&body)
                    .map(|progress| Some(RedistEvent::Progress(progress)))
                    .map_err(|e| super::body_error(addr, "Redistribute progress", e))
            }
            StreamEvent::Item { code, .. } => Err(ClientError::protocol(
                addr,
                format!("Redistribute stream sent an item of unknown code {code}"),
            )),
            StreamEvent::End(reply) => {
                self.done = true;
                if reply.status == Status::Ok {
                    RedistributeDone::decode(&reply.body)
                        .map(|done| Some(RedistEvent::Done(done)))
                        .map_err(|e| super::body_error(addr, "Redistribute", e))
                } else {
                    reply.ok_body().map(|_| None)
                }
            }
        };
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }
}

/// Node `node`'s range and redistribution state.
pub fn state(client: &Client, node: usize) -> Result<RedistributionState, ClientError> {
    let reply = client.request(node, wire::GET_REDISTRIBUTION, &[])?;
    let addr = reply.node;
    let body = reply.ok_body()?;
    RedistributionState::decode(&body).map_err(|e| super::body_error(addr, "GetRedistribution", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn even_keeps_the_order_of_the_ranges_and_puts_new_nodes_last() {
        let halves = split_evenly(2);
        let nodes = [
            (addr([127, 0, 0, 1], 3), HashRange::EMPTY),
            (addr([127, 0, 0, 1], 2), halves[1]),
            (addr([127, 0, 0, 1], 1), halves[0]),
        ];
        let plan = plan(&nodes, Strategy::Even).unwrap();
        let thirds = split_evenly(3);
        assert_eq!(plan[2].new, thirds[0]);
        assert_eq!(plan[1].new, thirds[1]);
        assert_eq!(plan[0].new, thirds[2]);
        // Node 1 (old upper half) gives its upper third to the new node and keeps the rest.
        let request = request_for(&plan, 1);
        assert_eq!(request.range, thirds[1]);
        assert_eq!(
            request.targets,
            vec![RedistributeTarget {
                address: nodes[0].0,
                range: thirds[2]
            }]
        );
        assert_eq!(request.check(halves[1]), Ok(()));
        // Node 2 (old lower half) gives the upper part of its half to node 1.
        let request = request_for(&plan, 2);
        assert_eq!(request.targets.len(), 1);
        assert_eq!(request.targets[0].address, nodes[1].0);
        assert_eq!(request.check(halves[0]), Ok(()));
        // The new node gives nothing.
        assert!(request_for(&plan, 0).targets.is_empty());
        assert!((leaving_fraction(halves[0], thirds[0]) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(leaving_fraction(HashRange::EMPTY, thirds[2]), 0.0);
    }

    #[test]
    fn split_halves_each_node_onto_the_new_nodes_of_its_host() {
        let halves = split_evenly(2);
        let quarters = split_evenly(4);
        let nodes = [
            (addr([10, 0, 0, 1], 1), halves[0]),
            (addr([10, 0, 0, 2], 1), halves[1]),
            (addr([10, 0, 0, 1], 2), HashRange::EMPTY),
            (addr([10, 0, 0, 2], 2), HashRange::EMPTY),
        ];
        let plan = plan(&nodes, Strategy::Split).unwrap();
        let new: Vec<HashRange> = plan.iter().map(|node| node.new).collect();
        assert_eq!(
            new,
            vec![quarters[0], quarters[2], quarters[1], quarters[3]]
        );
        // Three nodes on one host, one of them new: the host's range is split three ways.
        let one_host = [
            (addr([127, 0, 0, 1], 1), halves[0]),
            (addr([127, 0, 0, 1], 2), halves[1]),
            (addr([127, 0, 0, 1], 3), HashRange::EMPTY),
        ];
        let plan = super::plan(&one_host, Strategy::Split).unwrap();
        let new: Vec<HashRange> = plan.iter().map(|node| node.new).collect();
        assert_eq!(new, split_evenly(3));
        // A host with new nodes only has nothing to split.
        let lonely = [
            (addr([10, 0, 0, 1], 1), HashRange::FULL),
            (addr([10, 0, 0, 2], 1), HashRange::EMPTY),
        ];
        assert!(super::plan(&lonely, Strategy::Split)
            .unwrap_err()
            .contains("only nodes with the empty range"));
    }
}
