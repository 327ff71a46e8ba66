//! The dht client's hybrid logical clock: the versions its replicated writes carry.
//!
//! A version is a `u64`: the top 48 bits are Unix milliseconds, the low 16 bits a counter
//! (docs/protocol.md §6.11). [`Clock::next`] never returns the same version twice and never
//! goes back, even when the system clock does; [`Clock::observe`] moves it past a version read
//! from a node (GetWithVersion), so a write that follows a read is always newer than what was
//! read, whatever the two machines' clocks say. Nodes keep the higher version of a key, so the
//! members of a replica set converge whatever order writes reach them in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the counter below the milliseconds.
const COUNTER_BITS: u32 = 16;

#[derive(Debug, Default)]
pub(crate) struct Clock {
    last: AtomicU64,
}

impl Clock {
    /// A version greater than every version this clock gave or observed, and not below the
    /// wall clock's.
    pub(crate) fn next(&self) -> u64 {
        let wall = wall_version();
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(wall.max(last.saturating_add(1)))
            })
            .unwrap_or(0);
        wall.max(previous.saturating_add(1))
    }

    /// Moves the clock past `version` (read from a node), so the next version is greater.
    pub(crate) fn observe(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }
}

/// The wall clock as a version: milliseconds since the epoch, counter 0.
fn wall_version() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    (ms & ((1 << (64 - COUNTER_BITS)) - 1)) << COUNTER_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_only_grow_and_carry_the_wall_clock() {
        let clock = Clock::default();
        let first = clock.next();
        let wall_ms = first >> COUNTER_BITS;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        assert!(now_ms - wall_ms < 60_000, "{wall_ms} vs {now_ms}");
        let mut last = first;
        for _ in 0..100_000 {
            let next = clock.next();
            assert!(next > last);
            last = next;
        }
    }

    #[test]
    fn a_version_read_from_a_node_puts_the_clock_past_it() {
        let clock = Clock::default();
        // A node's clock an hour ahead of ours.
        let ahead = clock.next() + (3_600_000 << COUNTER_BITS);
        clock.observe(ahead);
        assert!(clock.next() > ahead);
        // An older version read changes nothing.
        let now = clock.next();
        clock.observe(1);
        assert!(clock.next() > now);
    }

    #[test]
    fn threads_never_get_the_same_version() {
        let clock = std::sync::Arc::new(Clock::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = std::sync::Arc::clone(&clock);
                std::thread::spawn(move || (0..10_000).map(|_| clock.next()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
