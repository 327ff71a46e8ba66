//! The last minutes of request rate and p99 latency, for the page's plots: one point per
//! collection, at most `capacity` of them (older ones are dropped), for the cluster and for
//! each node. Every series has one entry per point (`None`: no figure then, e.g. the node was
//! down), so the page draws them against one time axis. A node that left the topology keeps
//! its series until its last figure has scrolled out.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// The most points kept, whatever `--history-s` and `--interval-ms` ask (about 30 minutes at
/// the default interval); with at most `MAX_NODES` series this bounds the memory and the size
/// of `/api/history`.
pub const MAX_POINTS: usize = 1800;

/// One collection's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub t_ms: u64,
    pub requests_per_s: Option<f64>,
    pub p99_us: Option<f64>,
    /// Per node address: requests per second and p99 (µs).
    pub nodes: BTreeMap<String, (Option<f64>, Option<f64>)>,
}

#[derive(Debug, Default, Serialize)]
pub struct Series {
    pub requests_per_s: VecDeque<Option<f64>>,
    pub p99_us: VecDeque<Option<f64>>,
}

impl Series {
    fn push(&mut self, (rate, p99): (Option<f64>, Option<f64>)) {
        self.requests_per_s.push_back(rate);
        self.p99_us.push_back(p99);
    }

    fn pop_front(&mut self) {
        self.requests_per_s.pop_front();
        self.p99_us.pop_front();
    }

    fn is_blank(&self) -> bool {
        self.requests_per_s
            .iter()
            .chain(&self.p99_us)
            .all(Option::is_none)
    }
}

/// `/api/history`: the series, oldest first.
#[derive(Debug, Serialize)]
pub struct History {
    /// The number of the newest point (the `seq` of the state it came with).
    pub seq: u64,
    pub capacity: usize,
    pub t_ms: VecDeque<u64>,
    pub cluster: Series,
    pub nodes: BTreeMap<String, Series>,
}

impl History {
    pub fn new(capacity: usize) -> History {
        History {
            seq: 0,
            capacity: capacity.clamp(1, MAX_POINTS),
            t_ms: VecDeque::new(),
            cluster: Series::default(),
            nodes: BTreeMap::new(),
        }
    }

    /// Adds the point of collection number `seq`.
    pub fn push(&mut self, seq: u64, point: &Point) {
        self.seq = seq;
        let len = self.t_ms.len();
        for (addr, figures) in &point.nodes {
            // A node seen for the first time gets blanks for the points before it.
            let series = self.nodes.entry(addr.clone()).or_insert_with(|| Series {
                requests_per_s: std::iter::repeat_n(None, len).collect(),
                p99_us: std::iter::repeat_n(None, len).collect(),
            });
            series.push(*figures);
        }
        for (addr, series) in &mut self.nodes {
            if !point.nodes.contains_key(addr) {
                series.push((None, None));
            }
        }
        self.t_ms.push_back(point.t_ms);
        self.cluster.push((point.requests_per_s, point.p99_us));
        while self.t_ms.len() > self.capacity {
            self.t_ms.pop_front();
            self.cluster.pop_front();
            self.nodes.values_mut().for_each(Series::pop_front);
        }
        self.nodes.retain(|_, series| !series.is_blank());
        debug_assert!(self.nodes.values().all(
            |s| s.requests_per_s.len() == self.t_ms.len() && s.p99_us.len() == self.t_ms.len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_ms: u64, nodes: &[(&str, f64)]) -> Point {
        Point {
            t_ms,
            requests_per_s: Some(nodes.iter().map(|(_, rate)| rate).sum()),
            p99_us: Some(10.0),
            nodes: nodes
                .iter()
                .map(|(addr, rate)| (addr.to_string(), (Some(*rate), Some(10.0))))
                .collect(),
        }
    }

    #[test]
    fn the_history_keeps_its_last_points_aligned() {
        let mut history = History::new(3);
        history.push(0, &point(1, &[("a", 1.0)]));
        history.push(0, &point(2, &[("a", 2.0), ("b", 5.0)]));
        history.push(0, &point(3, &[("b", 6.0)]));
        history.push(0, &point(4, &[("b", 7.0)]));
        assert_eq!(history.t_ms, [2, 3, 4]);
        assert_eq!(
            history.cluster.requests_per_s,
            [Some(7.0), Some(6.0), Some(7.0)]
        );
        assert_eq!(history.nodes["a"].requests_per_s, [Some(2.0), None, None]);
        assert_eq!(
            history.nodes["b"].requests_per_s,
            [Some(5.0), Some(6.0), Some(7.0)]
        );
        // Once a's last figure scrolls out, its series goes.
        history.push(0, &point(5, &[("b", 8.0)]));
        assert!(!history.nodes.contains_key("a"));
    }

    #[test]
    fn a_node_first_seen_late_is_padded_and_capacity_is_bounded() {
        let mut history = History::new(10);
        history.push(0, &point(1, &[("a", 1.0)]));
        history.push(0, &point(2, &[("a", 1.0), ("b", 2.0)]));
        assert_eq!(history.nodes["b"].requests_per_s, [None, Some(2.0)]);
        assert_eq!(History::new(usize::MAX).capacity, MAX_POINTS);
        assert_eq!(History::new(0).capacity, 1);
    }
}
