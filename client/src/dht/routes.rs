//! What a [`super::DhtClient`] knows of its cluster's ranges, and how it learns changes.
//!
//! The client asks every node GetRedistribution (its range, and whether a redistribution runs
//! there) at connect, and again ([`Routes`] refresh) when a node answers WrongNode, when
//! [`super::DhtClient::refresh_ranges`] is called, before a GetAll, and when a read finds
//! nothing while a move may be under way and what it knows is older than [`MAX_AGE`]. A node
//! that does not know GetRedistribution (an older node) is asked GetResponsibleRange instead.
//!
//! A refresh after a WrongNode is lenient: a node that cannot be reached keeps what was known
//! of it, so one node down does not stop requests to the others. A node that is down keeps the
//! last range this process saw it answer, else the range the topology states for it; a node
//! that comes back (a new connection: `Client::node_generation`) is asked again before a keyed
//! request is routed to it.

use super::ranges::RangeTable;
use super::{body_error, HashRange};
use crate::client::Client;
use crate::error::ClientError;
use crate::reply::Pending;
use node_core::protocol::dht::{self as wire, hash_position, RedistributionState};
use node_core::protocol::Status;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How old the knowledge of running redistributions may be before a read that found nothing
/// asks again (a move that finished meanwhile costs the fallback reads at most this long).
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One refresh's picture of the cluster, one entry per node index (retired nodes own nothing).
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    pub table: RangeTable,
    /// Per node: a redistribution was running there at the last answer.
    pub redistributing: Vec<bool>,
    /// Per node: whether its range is known (it answered, or it is down and its range was
    /// stated in the topology or seen earlier by this process). A node down since before the
    /// client ever saw it may have none: its entry in `table` is then empty.
    pub known: Vec<bool>,
    /// Per node: its connection count (`Client::node_generation`) when it was asked; a node
    /// that reconnected since is asked again before a request is routed to it.
    pub generations: Vec<u64>,
    pub fetched: Instant,
    /// Bumped by every refresh, so concurrent requests that met the same WrongNode refresh once.
    pub version: u64,
    /// Two nodes claim the same positions (computed once, when the routes are made).
    pub overlapping: bool,
}

impl Routes {
    fn new(learned: Vec<Learned>, version: u64) -> Routes {
        let table = RangeTable::new(learned.iter().map(|node| (node.addr, node.range)).collect());
        let overlapping = table
            .problems()
            .iter()
            .any(|problem| matches!(problem, super::RangeProblem::Overlap { .. }));
        Routes {
            table,
            redistributing: learned.iter().map(|node| node.running).collect(),
            known: learned.iter().map(|node| node.known).collect(),
            generations: learned.iter().map(|node| node.generation).collect(),
            fetched: Instant::now(),
            version,
            overlapping,
        }
    }

    /// Whether records may be on other nodes than their owner: some node is moving records,
    /// or two nodes claim the same positions (a move is starting).
    pub fn moving(&self) -> bool {
        self.overlapping || self.redistributing.iter().any(|running| *running)
    }

    /// Whether some node's range is unknown (see `known`).
    pub fn has_unknown(&self) -> bool {
        self.known.iter().any(|known| !known)
    }

    /// The nodes whose range is unknown.
    pub fn unknown_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.known.len()).filter(|node| !self.known[*node])
    }

    /// The node to send `key` to: its owner; else, when the key lies where no known range
    /// reaches, the one node whose range is unknown (the request then fails at once, that node
    /// being down, or learns its range, the node being back); `OwnerDown` when several such
    /// nodes could own it, `NoNodeForKey` when none.
    pub fn route(&self, key: u64) -> Result<usize, ClientError> {
        if let Some(owner) = self.table.owner(key) {
            return Ok(owner);
        }
        let unknown: Vec<usize> = self.unknown_nodes().collect();
        match unknown.as_slice() {
            [] => self.table.route(key),
            [only] => Ok(*only),
            several => Err(ClientError::OwnerDown {
                key,
                position: hash_position(key),
                candidates: several
                    .iter()
                    .filter_map(|n| self.table.entries().get(*n).map(|(addr, _)| *addr))
                    .collect(),
            }),
        }
    }

    /// The members of the replica set `key` goes to, in node order: [`Routes::route`]'s node
    /// and every node of exactly its range (a node of unknown range alone).
    ///
    /// While ranges overlap (a redistribution is switching the nodes to their new ranges, not
    /// all at the same moment), every node whose known range holds the key, so that a write
    /// reaches every member of a set whose members do not have the same range yet; a node
    /// that no longer takes the key answers WrongNode, and the write goes round again with
    /// the ranges read anew (docs/replication.md, "Redistribution").
    pub fn members(&self, key: u64) -> Result<Vec<usize>, ClientError> {
        let owner = self.route(key)?;
        if !self.overlapping {
            return Ok(self.members_of(owner));
        }
        let entries = self.table.entries();
        Ok((0..entries.len())
            .filter(|&node| {
                node == owner
                    || (self.known.get(node) == Some(&true)
                        && entries[node].1.is_responsible_for(key))
            })
            .collect())
    }

    /// The members of node `node`'s replica set (itself alone when its range is unknown or
    /// empty).
    pub fn members_of(&self, node: usize) -> Vec<usize> {
        match self.known.get(node) {
            Some(true) => {
                let members = self.table.members(node);
                if members.is_empty() {
                    vec![node]
                } else {
                    members
                }
            }
            _ => vec![node],
        }
    }

    /// Nodes outside `owner`'s replica set that may hold `key` now: those moving records
    /// away, and those whose range also claims it. In node order.
    pub fn other_holders(&self, key: u64, owner: Option<usize>) -> Vec<usize> {
        let set = owner
            .map(|owner| self.members_of(owner))
            .unwrap_or_default();
        self.table
            .entries()
            .iter()
            .enumerate()
            .filter(|(index, (_, range))| {
                !set.contains(index)
                    && Some(*index) != owner
                    && (self.redistributing[*index] || range.is_responsible_for(key))
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// A key per replica set for node `node`: its range when known and not empty (the members
    /// of a set share it), else the node alone.
    pub fn set_of(&self, node: usize) -> SetId {
        match (self.known.get(node), self.table.entries().get(node)) {
            (Some(true), Some((_, range))) if !range.is_empty() => SetId::Range(*range),
            _ => SetId::Node(node),
        }
    }
}

/// Which replica set a node belongs to, as [`Routes::set_of`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SetId {
    Range(HashRange),
    Node(usize),
}

/// What is known of one node after a refresh.
struct Learned {
    addr: SocketAddr,
    range: HashRange,
    running: bool,
    known: bool,
    generation: u64,
}

/// What one node said.
struct NodeAnswer {
    range: HashRange,
    running: bool,
}

/// The last range each node (by address) answered in this process, so that a client started
/// while a node is down knows where that node's keys are (see `fetch`).
fn remembered() -> &'static Mutex<HashMap<SocketAddr, HashRange>> {
    static SEEN: OnceLock<Mutex<HashMap<SocketAddr, HashRange>>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Asks every node its range and redistribution state. A node that cannot answer because it
/// is down (or, with `previous`, for any reason: lenient) keeps what is known of it: the last
/// range it answered in this process, else the range `stated` for it (the topology's), else
/// none. Without `previous` (at connect) any other error fails the whole fetch. Returns the
/// routes and the first error met.
pub(crate) fn fetch(
    client: &Client,
    previous: Option<&Routes>,
    stated: &HashMap<SocketAddr, HashRange>,
) -> Result<(Routes, Option<ClientError>), ClientError> {
    let statuses = client.node_statuses();
    let asked: Vec<(u64, Option<Result<Pending, ClientError>>)> = statuses
        .iter()
        .map(|status| {
            let generation = client.node_generation(status.index);
            let pending = (!status.is_retired())
                .then(|| client.submit(status.index, wire::GET_REDISTRIBUTION, &[]));
            (generation, pending)
        })
        .collect();
    let mut learned = Vec::with_capacity(asked.len());
    let mut first_error = None;
    for (status, (generation, pending)) in statuses.iter().zip(asked) {
        let (node, addr) = (status.index, status.addr);
        let mut entry = Learned {
            addr,
            range: HashRange::EMPTY,
            running: false,
            known: true,
            generation,
        };
        let Some(pending) = pending else {
            learned.push(entry); // retired: owns nothing
            continue;
        };
        match pending
            .and_then(Pending::wait)
            .and_then(|reply| node_answer(client, node, reply))
        {
            Ok(answer) => {
                remember(addr, answer.range);
                (entry.range, entry.running) = (answer.range, answer.running);
            }
            Err(error) if previous.is_some() || error.is_node_down() => {
                tracing::debug!(%error, "range refresh: keeping what is known of {addr}");
                let known = recall(addr).or_else(|| stated.get(&addr).copied());
                entry.range = known.unwrap_or(HashRange::EMPTY);
                entry.known = known.is_some();
                entry.running = previous
                    .and_then(|previous| previous.redistributing.get(node).copied())
                    .unwrap_or(false);
                first_error.get_or_insert(error);
            }
            Err(error) => return Err(error),
        }
        learned.push(entry);
    }
    let version = previous.map_or(0, |previous| previous.version + 1);
    Ok((Routes::new(learned, version), first_error))
}

fn remember(addr: SocketAddr, range: HashRange) {
    let mut seen = remembered().lock().unwrap_or_else(PoisonError::into_inner);
    seen.insert(addr, range);
}

fn recall(addr: SocketAddr) -> Option<HashRange> {
    let seen = remembered().lock().unwrap_or_else(PoisonError::into_inner);
    seen.get(&addr).copied()
}

fn node_answer(
    client: &Client,
    node: usize,
    reply: crate::Reply,
) -> Result<NodeAnswer, ClientError> {
    let addr = reply.node;
    if reply.status == Status::UnsupportedRequest {
        // A node from before redistributions: it only knows its range.
        let body = client
            .request(node, wire::GET_RESPONSIBLE_RANGE, &[])?
            .ok_body()?;
        let range =
            wire::decode_range(&body).map_err(|e| body_error(addr, "GetResponsibleRange", e))?;
        return Ok(NodeAnswer {
            range,
            running: false,
        });
    }
    let body = reply.ok_body()?;
    let state =
        RedistributionState::decode(&body).map_err(|e| body_error(addr, "GetRedistribution", e))?;
    Ok(NodeAnswer {
        range: state.range,
        running: state.running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_core::protocol::dht::split_evenly;

    fn routes(ranges: &[HashRange]) -> Routes {
        let learned = ranges
            .iter()
            .enumerate()
            .map(|(index, range)| Learned {
                addr: SocketAddr::from(([127, 0, 0, 1], 1 + index as u16)),
                range: *range,
                running: false,
                known: true,
                generation: 0,
            })
            .collect();
        Routes::new(learned, 0)
    }

    /// A key whose position lies in `range`.
    fn key_in(range: HashRange) -> u64 {
        (0u64..)
            .find(|key| range.is_responsible_for(*key))
            .expect("a key")
    }

    #[test]
    fn while_ranges_overlap_a_key_goes_to_every_node_that_claims_it() {
        let (halves, thirds) = (split_evenly(2), split_evenly(3));
        // Tiling: the set of equal ranges only.
        let settled = routes(&[halves[0], halves[0], halves[1], halves[1]]);
        assert_eq!(settled.members(key_in(thirds[0])).unwrap(), vec![0, 1]);
        // Node 0 has switched to its new range, node 1 (same set) not yet: a key both keep
        // goes to both, a key leaving the set to the member that still holds it.
        let switching = routes(&[thirds[0], halves[0], halves[1], halves[1]]);
        assert!(switching.overlapping);
        assert_eq!(switching.members(key_in(thirds[0])).unwrap(), vec![0, 1]);
        let leaving = HashRange::new(thirds[1].min, halves[0].max);
        assert_eq!(switching.members(key_in(leaving)).unwrap(), vec![1]);
        // The receiving set switched first: the old holder and both new members.
        let receiving = routes(&[halves[0], halves[0], thirds[1], thirds[1]]);
        assert_eq!(
            receiving.members(key_in(leaving)).unwrap(),
            vec![0, 1, 2, 3]
        );
    }
}
