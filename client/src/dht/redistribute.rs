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

use super::show_range;
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
///
/// Replica sets are planned as one: the nodes whose current ranges are equal form a set (as
/// for the client, docs/replication.md), the nodes with the empty range form new sets of the
/// same size in the order given, and the strategy plans one range per set (by its first
/// member), which every member of the set gets. So a set keeps its replication factor: every
/// set must have the same number of members, and the new nodes must come in whole sets.
pub fn plan(
    nodes: &[(SocketAddr, HashRange)],
    strategy: Strategy,
) -> Result<Vec<NodeRange>, String> {
    if nodes.is_empty() {
        return Err("no nodes".into());
    }
    let sets = group_sets(nodes)?;
    let firsts: Vec<(SocketAddr, HashRange)> = sets.iter().map(|set| nodes[set[0]]).collect();
    let new = match strategy {
        Strategy::Even => plan_even(&firsts),
        Strategy::Split => plan_split(&firsts)?,
    };
    if let Some(problem) = tiling_problems(&new).first() {
        return Err(format!(
            "the planned ranges would not tile the hash space: {problem}"
        ));
    }
    let mut planned: Vec<NodeRange> = nodes
        .iter()
        .map(|&(addr, old)| NodeRange {
            addr,
            old,
            new: HashRange::EMPTY,
        })
        .collect();
    for (set, range) in sets.iter().zip(new) {
        for &member in set {
            planned[member].new = range.normalized();
        }
    }
    Ok(planned)
}

/// The replica sets of `nodes` for a plan, each as node indexes in node order: the sets of
/// equal current ranges (in the order of their first members), then the nodes with the empty
/// range in groups of the sets' size, in the order given. Fails, naming them, when the sets
/// differ in size or the empty nodes do not make whole sets.
pub fn group_sets(nodes: &[(SocketAddr, HashRange)]) -> Result<Vec<Vec<usize>>, String> {
    let mut sets: Vec<Vec<usize>> = Vec::new();
    let mut empty = Vec::new();
    for (index, (_, range)) in nodes.iter().enumerate() {
        if range.is_empty() {
            empty.push(index);
            continue;
        }
        match sets.iter_mut().find(|set| nodes[set[0]].1 == *range) {
            Some(set) => set.push(index),
            None => sets.push(vec![index]),
        }
    }
    let factor = sets.first().map_or(1, Vec::len);
    if let Some(other) = sets.iter().find(|set| set.len() != factor) {
        return Err(format!(
            "the replica sets differ in size: {} has {factor} member(s), {} has {}; a \
             redistribution keeps every set's replication factor, so all sets must have the \
             same number of members",
            show_range(&nodes[sets[0][0]].1),
            show_range(&nodes[other[0]].1),
            other.len()
        ));
    }
    if !empty.len().is_multiple_of(factor) {
        let listed: Vec<String> = empty.iter().map(|&i| nodes[i].0.to_string()).collect();
        return Err(format!(
            "{} node(s) with the empty range ({}) do not make whole replica sets of {factor} \
             (the replication factor of the cluster's sets)",
            empty.len(),
            listed.join(", ")
        ));
    }
    sets.extend(empty.chunks(factor).map(<[usize]>::to_vec));
    Ok(sets)
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
/// node whose new range overlaps its old one, except the members of its own set (their new
/// range is its own). Each member of a set that gives records away sends them to every member
/// of the set that takes them.
pub fn request_for(plan: &[NodeRange], index: usize) -> RedistributeRequest {
    let me = plan[index];
    let targets = plan
        .iter()
        .enumerate()
        .filter(|(other, node)| *other != index && node.new != me.new && node.new.overlaps(&me.old))
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
    fn replica_sets_are_planned_whole_and_keep_their_size() {
        let halves = split_evenly(2);
        let thirds = split_evenly(3);
        let node = |port| addr([127, 0, 0, 1], port);
        // Two sets of two, and two new nodes: a third set.
        let nodes = [
            (node(1), halves[0]),
            (node(2), halves[0]),
            (node(3), halves[1]),
            (node(4), halves[1]),
            (node(5), HashRange::EMPTY),
            (node(6), HashRange::EMPTY),
        ];
        assert_eq!(
            group_sets(&nodes).unwrap(),
            vec![vec![0, 1], vec![2, 3], vec![4, 5]]
        );
        let planned = plan(&nodes, Strategy::Even).unwrap();
        let new: Vec<HashRange> = planned.iter().map(|node| node.new).collect();
        assert_eq!(
            new,
            vec![thirds[0], thirds[0], thirds[1], thirds[1], thirds[2], thirds[2]]
        );
        // A member of the first set sends to both members of the second set, not to its peer.
        let request = request_for(&planned, 0);
        assert_eq!(request.range, thirds[0]);
        let targets: Vec<SocketAddr> = request.targets.iter().map(|t| t.address).collect();
        assert_eq!(targets, vec![node(3), node(4)]);
        assert_eq!(request.check(halves[0]), Ok(()));
        // The second set gives to the third (both members) and takes from the first.
        let request = request_for(&planned, 3);
        let targets: Vec<SocketAddr> = request.targets.iter().map(|t| t.address).collect();
        assert_eq!(targets, vec![node(5), node(6)]);
        assert_eq!(request.check(halves[1]), Ok(()));
        assert!(request_for(&planned, 5).targets.is_empty());

        // One new node cannot make a set of two; sets of different sizes are refused.
        let error = plan(&nodes[..5], Strategy::Even).unwrap_err();
        assert!(
            error.contains("do not make whole replica sets of 2"),
            "{error}"
        );
        assert!(error.contains("127.0.0.1:5"), "{error}");
        let uneven = [nodes[0], nodes[1], nodes[2]];
        let error = plan(&uneven, Strategy::Even).unwrap_err();
        assert!(error.contains("the replica sets differ in size"), "{error}");
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
