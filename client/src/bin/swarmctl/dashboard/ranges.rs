//! The dht ranges as the page draws them: the hash space cut into spans, each owned by one
//! *group* (a gap when none, an overlap when several), where a group is the nodes whose ranges
//! are exactly equal. A group of two or more nodes is a replica set: the nodes a replicated
//! cluster keeps in step (docs/operations.md, "Dashboard"); its nodes share the span, so a
//! replica set is not an overlap. Positions are hash positions (the bit-reversed key,
//! `node_core::protocol::dht::hash_position`), exact as hex, and as fractions of the space
//! for drawing.

use client::dht::HashRange;
use serde::Serialize;
use std::net::SocketAddr;

/// The size of the hash space, 2^64.
const SPACE: f64 = 18_446_744_073_709_551_616.0;

/// One dht node as the page knows it: its state (`up`, `down`, `error`) and its range (`None`
/// when it never answered and the topology states none).
pub struct RangeNode {
    pub addr: SocketAddr,
    pub state: &'static str,
    pub range: Option<HashRange>,
}

#[derive(Debug, Serialize)]
pub struct RangeView {
    /// Groups of nodes with equal, non-empty ranges, in hash-space order.
    pub groups: Vec<Group>,
    /// The whole hash space, from 0 to 2^64 - 1, in order.
    pub spans: Vec<Span>,
    /// Nodes that own nothing (the empty range).
    pub empty: Vec<String>,
    /// Nodes whose range is not known.
    pub unknown: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub id: usize,
    pub min: String,
    pub max: String,
    pub from: f64,
    pub to: f64,
    /// Its nodes, with their states.
    pub members: Vec<Member>,
    /// Two or more nodes own exactly this range.
    pub replica_set: bool,
}

#[derive(Debug, Serialize)]
pub struct Member {
    pub addr: String,
    pub state: &'static str,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Span {
    pub min: String,
    pub max: String,
    pub from: f64,
    pub to: f64,
    /// `owned`, `gap` or `overlap`.
    pub kind: &'static str,
    /// The ids of the groups that own it.
    pub groups: Vec<usize>,
}

/// Groups the nodes by range and cuts the space into spans.
pub fn view(nodes: &[RangeNode]) -> RangeView {
    let mut groups: Vec<Group> = Vec::new();
    let mut ranges: Vec<HashRange> = Vec::new();
    let (mut empty, mut unknown) = (Vec::new(), Vec::new());
    let mut known: Vec<(&RangeNode, HashRange)> = Vec::new();
    for node in nodes {
        match node.range {
            None => unknown.push(node.addr.to_string()),
            Some(range) if range.is_empty() => empty.push(node.addr.to_string()),
            Some(range) => known.push((node, range)),
        }
    }
    known.sort_by_key(|(_, range)| (range.min, range.max));
    for (node, range) in known {
        let member = Member {
            addr: node.addr.to_string(),
            state: node.state,
        };
        match ranges.last() {
            Some(last) if *last == range => {
                let group = groups.last_mut().expect("a group per range");
                group.members.push(member);
                group.replica_set = true;
            }
            _ => {
                groups.push(group(groups.len(), range, member));
                ranges.push(range);
            }
        }
    }
    RangeView {
        spans: spans(&ranges),
        groups,
        empty,
        unknown,
    }
}

fn group(id: usize, range: HashRange, member: Member) -> Group {
    Group {
        id,
        min: hex(range.min),
        max: hex(range.max),
        from: fraction(u128::from(range.min)),
        to: fraction(u128::from(range.max) + 1),
        members: vec![member],
        replica_set: false,
    }
}

/// The space cut at every range's start and end, each piece with the groups (indices into
/// `ranges`) that own it; neighbours with the same owners are one span.
fn spans(ranges: &[HashRange]) -> Vec<Span> {
    let end = 1u128 << 64;
    let mut cuts: Vec<u128> = vec![0, end];
    for range in ranges {
        cuts.push(u128::from(range.min));
        cuts.push(u128::from(range.max) + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut spans: Vec<Span> = Vec::new();
    for pair in cuts.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let owners: Vec<usize> = ranges
            .iter()
            .enumerate()
            .filter(|(_, range)| u128::from(range.min) <= from && to <= u128::from(range.max) + 1)
            .map(|(index, _)| index)
            .collect();
        match spans.last_mut() {
            Some(last) if last.groups == owners => {
                last.max = hex_of(to - 1);
                last.to = fraction(to);
            }
            _ => spans.push(Span {
                min: hex_of(from),
                max: hex_of(to - 1),
                from: fraction(from),
                to: fraction(to),
                kind: match owners.len() {
                    0 => "gap",
                    1 => "owned",
                    _ => "overlap",
                },
                groups: owners,
            }),
        }
    }
    spans
}

fn fraction(position: u128) -> f64 {
    position as f64 / SPACE
}

fn hex(position: u64) -> String {
    format!("0x{position:016x}")
}

/// A position below 2^64 (every cut but the end, less one, is).
fn hex_of(position: u128) -> String {
    hex(u64::try_from(position).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16, state: &'static str, range: Option<(u64, u64)>) -> RangeNode {
        RangeNode {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            state,
            range: range.map(|(min, max)| HashRange::new(min, max)),
        }
    }

    fn kinds(view: &RangeView) -> Vec<(&str, &str, &str)> {
        view.spans
            .iter()
            .map(|s| (s.kind, s.min.as_str(), s.max.as_str()))
            .collect()
    }

    #[test]
    fn a_tiling_cluster_is_owned_spans_only() {
        let view = view(&[
            node(2, "up", Some((0x8000_0000_0000_0000, u64::MAX))),
            node(1, "up", Some((0, 0x7fff_ffff_ffff_ffff))),
        ]);
        assert_eq!(
            kinds(&view),
            [
                ("owned", "0x0000000000000000", "0x7fffffffffffffff"),
                ("owned", "0x8000000000000000", "0xffffffffffffffff"),
            ]
        );
        assert_eq!(view.groups[0].members[0].addr, "127.0.0.1:1");
        assert_eq!(view.groups[0].from, 0.0);
        assert_eq!(view.groups[1].to, 1.0);
        assert!(view.groups.iter().all(|g| !g.replica_set));
    }

    #[test]
    fn gaps_overlaps_and_replica_sets_are_told_apart() {
        let view = view(&[
            node(1, "up", Some((0, 0x5fff_ffff_ffff_ffff))),
            node(
                2,
                "up",
                Some((0x4000_0000_0000_0000, 0x7fff_ffff_ffff_ffff)),
            ),
            node(
                3,
                "up",
                Some((0x8000_0000_0000_0000, 0xdfff_ffff_ffff_ffff)),
            ),
            node(
                4,
                "down",
                Some((0x8000_0000_0000_0000, 0xdfff_ffff_ffff_ffff)),
            ),
            node(5, "up", Some((1, 0))),
            node(6, "down", None),
        ]);
        assert_eq!(
            kinds(&view),
            [
                ("owned", "0x0000000000000000", "0x3fffffffffffffff"),
                ("overlap", "0x4000000000000000", "0x5fffffffffffffff"),
                ("owned", "0x6000000000000000", "0x7fffffffffffffff"),
                ("owned", "0x8000000000000000", "0xdfffffffffffffff"),
                ("gap", "0xe000000000000000", "0xffffffffffffffff"),
            ]
        );
        assert_eq!(view.spans[1].groups, [0, 1]);
        let set = &view.groups[2];
        assert!(set.replica_set);
        let members: Vec<(&str, &str)> = set
            .members
            .iter()
            .map(|m| (m.addr.as_str(), m.state))
            .collect();
        assert_eq!(members, [("127.0.0.1:3", "up"), ("127.0.0.1:4", "down")]);
        assert_eq!(view.empty, ["127.0.0.1:5"]);
        assert_eq!(view.unknown, ["127.0.0.1:6"]);
    }

    #[test]
    fn no_known_range_is_one_gap_over_the_whole_space() {
        let view = view(&[node(1, "down", None)]);
        assert_eq!(
            kinds(&view),
            [("gap", "0x0000000000000000", "0xffffffffffffffff")]
        );
        assert_eq!((view.spans[0].from, view.spans[0].to), (0.0, 1.0));
    }
}
