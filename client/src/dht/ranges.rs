//! The client's routing table for a dht cluster: which node owns which part of the hash space,
//! which node a key goes to, and what is wrong when the nodes' ranges do not tile the space.
//!
//! The choice of node uses [`HashRange::is_responsible_for`], the very function the node uses to
//! accept or refuse a key (WrongNode), so client and node cannot disagree about ownership.
//!
//! Nodes whose ranges are exactly equal form a **replica set** ([`ReplicaSet`]): they own the
//! same keys, and are one owner as far as tiling goes (an overlap is two ranges that share
//! positions without being equal). A set's members are in node order; its first member is
//! [`RangeTable::owner`]'s answer, so a cluster of one node per range routes as it always did.

use crate::error::ClientError;
use node_core::protocol::dht::{hash_position, tiling_problems, HashRange, TilingProblem};
use std::net::SocketAddr;

/// One thing wrong with a cluster's ranges, with the nodes concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeProblem {
    /// Hash positions `from..=to` belong to no node.
    Gap { from: u64, to: u64 },
    /// Hash positions `from..=to` belong to both `first` and `second`.
    Overlap {
        first: SocketAddr,
        second: SocketAddr,
        from: u64,
        to: u64,
    },
}

impl std::fmt::Display for RangeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeProblem::Gap { from, to } => write!(
                f,
                "hash positions 0x{from:016x}..0x{to:016x} are owned by no node"
            ),
            RangeProblem::Overlap {
                first,
                second,
                from,
                to,
            } => write!(
                f,
                "hash positions 0x{from:016x}..0x{to:016x} are owned by both {first} and {second}"
            ),
        }
    }
}

/// The nodes of a dht cluster with their hash ranges, in node order (the order of the
/// addresses given to `DhtClient::connect`, which is also the client's node index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeTable {
    nodes: Vec<(SocketAddr, HashRange)>,
}

impl RangeTable {
    pub fn new(nodes: Vec<(SocketAddr, HashRange)>) -> RangeTable {
        RangeTable { nodes }
    }

    pub fn entries(&self) -> &[(SocketAddr, HashRange)] {
        &self.nodes
    }

    /// The index of the node that owns `key`: the first node, in node order, whose range is
    /// responsible for it (in a tiling cluster there is exactly one).
    pub fn owner(&self, key: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|(_, range)| range.is_responsible_for(key))
    }

    /// [`RangeTable::owner`], or the error that says no node owns the key.
    pub fn route(&self, key: u64) -> Result<usize, ClientError> {
        self.owner(key).ok_or(ClientError::NoNodeForKey {
            key,
            position: hash_position(key),
        })
    }

    /// The members of node `index`'s replica set, in node order: every node whose range equals
    /// its range (itself included); empty for a node that owns nothing or does not exist.
    pub fn members(&self, index: usize) -> Vec<usize> {
        let Some((_, range)) = self.nodes.get(index) else {
            return Vec::new();
        };
        if range.is_empty() {
            return Vec::new();
        }
        (0..self.nodes.len())
            .filter(|other| self.nodes[*other].1 == *range)
            .collect()
    }

    /// Every replica set (one per distinct non-empty range, even of one member), in
    /// hash-space order.
    pub fn replica_sets(&self) -> Vec<ReplicaSet> {
        let mut sets: Vec<ReplicaSet> = Vec::new();
        for (index, (_, range)) in self.nodes.iter().enumerate() {
            if range.is_empty() {
                continue;
            }
            match sets.iter_mut().find(|set| set.range == *range) {
                Some(set) => set.members.push(index),
                None => sets.push(ReplicaSet {
                    range: *range,
                    members: vec![index],
                }),
            }
        }
        sets.sort_by_key(|set| (set.range.min, set.range.max));
        sets
    }

    /// Every gap and overlap, in hash-space order of discovery; empty when the ranges tile the
    /// space exactly. Nodes with the empty range own nothing and are never a problem, and the
    /// members of a replica set after its first are one owner with it.
    pub fn problems(&self) -> Vec<RangeProblem> {
        let ranges: Vec<HashRange> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(index, (_, range))| {
                let repeated = self.nodes[..index].iter().any(|(_, r)| r == range);
                if repeated {
                    HashRange::EMPTY
                } else {
                    *range
                }
            })
            .collect();
        tiling_problems(&ranges)
            .into_iter()
            .map(|problem| match problem {
                TilingProblem::Gap { from, to } => RangeProblem::Gap { from, to },
                TilingProblem::Overlap { first, second } => {
                    let (a, b) = (self.nodes[first].1, self.nodes[second].1);
                    RangeProblem::Overlap {
                        first: self.nodes[first].0,
                        second: self.nodes[second].0,
                        from: a.min.max(b.min),
                        to: a.max.min(b.max),
                    }
                }
            })
            .collect()
    }

    /// `Err(ClientError::Topology)` listing every problem, unless the ranges tile the space.
    pub fn check(&self) -> Result<(), ClientError> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let ranges: Vec<String> = self
            .nodes
            .iter()
            .map(|(addr, range)| format!("{addr} {}", show_range(range)))
            .collect();
        Err(ClientError::Topology(format!(
            "the dht nodes' hash ranges do not tile the hash space: {} (ranges: {}); fix the \
             nodes' ranges, or set allow_incomplete_ranges (swarmctl dht \
             --allow-incomplete-ranges) to work on a partial cluster",
            listed.join("; "),
            ranges.join(", ")
        )))
    }
}

/// Nodes that own exactly the same range: one owner, kept in step by the client (see the
/// module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSet {
    pub range: HashRange,
    /// Node indices, in node order; the first is the keys' owner in routing.
    pub members: Vec<usize>,
}

/// `0x…:0x…`, or `empty` for the empty range.
pub fn show_range(range: &HashRange) -> String {
    if range.is_empty() {
        "empty".to_string()
    } else {
        range.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_core::protocol::dht::split_evenly;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn table(ranges: &[HashRange]) -> RangeTable {
        RangeTable::new(
            ranges
                .iter()
                .enumerate()
                .map(|(index, range)| (addr(10000 + index as u16), *range))
                .collect(),
        )
    }

    #[test]
    fn each_key_goes_to_the_one_node_whose_range_holds_its_position() {
        let thirds = split_evenly(3);
        let table = table(&thirds);
        assert!(table.problems().is_empty());
        // Positions are bit-reversed keys: key 0 sits at 0, key 2 at a quarter of the space,
        // key 1 at half, key 3 at three quarters.
        assert_eq!(table.owner(0), Some(0));
        assert_eq!(table.owner(2), Some(0));
        assert_eq!(table.owner(1), Some(1));
        assert_eq!(table.owner(3), Some(2));
        assert_eq!(table.owner(u64::MAX), Some(2));
        // The boundaries themselves: the keys at each range's first and last position.
        for (index, range) in thirds.iter().enumerate() {
            assert_eq!(table.owner(range.min.reverse_bits()), Some(index));
            assert_eq!(table.owner(range.max.reverse_bits()), Some(index));
        }
        // Sequential keys spread over all three nodes, about evenly.
        let mut counts = [0usize; 3];
        for key in 0..30_000u64 {
            let owner = table.route(key).expect("tiled");
            assert!(thirds[owner].is_responsible_for(key));
            counts[owner] += 1;
        }
        for count in counts {
            assert!((9_000..=11_000).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn a_gap_is_reported_with_its_positions_and_routing_there_fails() {
        let table = table(&[
            HashRange::new(0, 0x3fff_ffff_ffff_ffff),
            HashRange::new(0x8000_0000_0000_0000, u64::MAX),
        ]);
        assert_eq!(
            table.problems(),
            vec![RangeProblem::Gap {
                from: 0x4000_0000_0000_0000,
                to: 0x7fff_ffff_ffff_ffff
            }]
        );
        let message = table.check().expect_err("gap").to_string();
        assert!(
            message.contains(
                "hash positions 0x4000000000000000..0x7fffffffffffffff are owned by no node"
            ),
            "{message}"
        );
        assert!(
            message.contains("127.0.0.1:10000 0x0000000000000000:0x3fffffffffffffff"),
            "{message}"
        );
        // Key 2 sits at position 0x4000…: in the gap.
        let error = table.route(2).expect_err("in the gap").to_string();
        assert_eq!(
            error,
            "no node owns key 0x0000000000000002 (hash position 0x4000000000000000)"
        );
        assert_eq!(table.route(1).expect("top half"), 1);
    }

    #[test]
    fn an_overlap_names_both_nodes_and_the_shared_positions() {
        let table = table(&[
            HashRange::new(0, 0x8000_0000_0000_00ff),
            HashRange::new(0x8000_0000_0000_0000, u64::MAX),
        ]);
        let problems = table.problems();
        assert_eq!(
            problems,
            vec![RangeProblem::Overlap {
                first: addr(10000),
                second: addr(10001),
                from: 0x8000_0000_0000_0000,
                to: 0x8000_0000_0000_00ff,
            }]
        );
        assert_eq!(
            problems[0].to_string(),
            "hash positions 0x8000000000000000..0x80000000000000ff are owned by both \
             127.0.0.1:10000 and 127.0.0.1:10001"
        );
        assert!(table.check().is_err());
        // A key in the overlap goes to the first node in node order.
        assert_eq!(table.owner(1), Some(0));
    }

    #[test]
    fn equal_ranges_are_one_replica_set_and_no_overlap() {
        let halves = split_evenly(2);
        // Two sets of two, in mixed node order, and a node that owns nothing.
        let table = table(&[halves[1], halves[0], halves[0], HashRange::EMPTY, halves[1]]);
        assert!(table.problems().is_empty(), "{:?}", table.problems());
        assert!(table.check().is_ok());
        assert_eq!(
            table.replica_sets(),
            vec![
                ReplicaSet {
                    range: halves[0],
                    members: vec![1, 2]
                },
                ReplicaSet {
                    range: halves[1],
                    members: vec![0, 4]
                },
            ]
        );
        assert_eq!(table.members(2), vec![1, 2]);
        assert_eq!(table.members(3), Vec::<usize>::new());
        assert_eq!(table.members(9), Vec::<usize>::new());
        // The owner is the set's first member in node order.
        assert_eq!(table.owner(0), Some(1));
        assert_eq!(table.owner(1), Some(0));
        // A range that overlaps a set's without being equal is still an overlap, reported once.
        let mut ranges = vec![halves[0], halves[0], halves[1]];
        ranges.push(HashRange::new(0, 0x10));
        let problems = table_problems(&ranges);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(matches!(
            problems[0],
            RangeProblem::Overlap { to: 0x10, .. }
        ));
    }

    fn table_problems(ranges: &[HashRange]) -> Vec<RangeProblem> {
        table(ranges).problems()
    }

    #[test]
    fn missing_ends_and_empty_nodes() {
        let table = table(&[HashRange::EMPTY, HashRange::new(0x10, u64::MAX - 1)]);
        let lines: Vec<String> = table.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "hash positions 0x0000000000000000..0x000000000000000f are owned by no node",
                "hash positions 0xffffffffffffffff..0xffffffffffffffff are owned by no node",
            ]
        );
        assert_eq!(show_range(&HashRange::EMPTY), "empty");
        let full = RangeTable::new(vec![
            (addr(1), HashRange::EMPTY),
            (addr(2), HashRange::FULL),
        ]);
        assert!(full.check().is_ok());
        assert_eq!(full.owner(12345), Some(1));
    }
}
