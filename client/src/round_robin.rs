//! The order in which a write client tries its nodes: round-robin from a random start (so that
//! many short-lived clients, e.g. one `swarmctl` per record, do not all pick the first node),
//! each call starting one node further, every node tried once.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub(crate) fn new() -> RoundRobin {
        RoundRobin::starting_at(random_start())
    }

    pub(crate) fn starting_at(start: usize) -> RoundRobin {
        RoundRobin {
            next: AtomicUsize::new(start),
        }
    }

    /// `nodes` (the active node indices) in the order to try them for the next write.
    pub(crate) fn order_of(&self, nodes: Vec<usize>) -> impl Iterator<Item = usize> {
        let count = nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
        (0..count).map(move |offset| nodes[(start + offset) % count])
    }
}

/// A random starting point. A fresh `RandomState` is randomly keyed: a random number without a
/// dependency.
fn random_start() -> usize {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // Only the low bits matter (it is taken modulo the node count); usize holds them.
    (random & u64::from(u32::MAX)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_once_each_call_one_further() {
        let rr = RoundRobin::new();
        let nodes = vec![0, 2, 5];
        let first: Vec<usize> = rr.order_of(nodes.clone()).collect();
        let second: Vec<usize> = rr.order_of(nodes.clone()).collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, nodes);
        let at = |node| nodes.iter().position(|n| *n == node).expect("listed");
        assert_eq!(at(second[0]), (at(first[0]) + 1) % 3);
        assert_eq!(rr.order_of(Vec::new()).count(), 0);
    }
}
