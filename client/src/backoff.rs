//! Reconnect backoff for one node.
//!
//! Owns the schedule of background reconnects: after a failed connect, the next attempt waits
//! 50 ms, then 100, 200, ... doubling up to 4 s; a successful connect resets it. The cap is 4 s
//! (not more) so that a node that comes back is reached again within 5 s, connect included.
//! While the wait runs, requests to the node fail at once (`ClientError::NodeDown`, see
//! `node_set`), so a dead node costs its callers microseconds, not a connect timeout each.

use std::time::{Duration, Instant};

pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(50);
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(4);

#[derive(Debug)]
pub(crate) struct Backoff {
    next_delay: Duration,
    retry_at: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next_delay: FIRST_DELAY,
            retry_at: None,
        }
    }

    /// When the next reconnect is due after a failed connect; `None` after a success.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Records a failed connect and starts the next wait.
    pub(crate) fn on_failure(&mut self, now: Instant) {
        self.retry_at = Some(now + self.next_delay);
        self.next_delay = (self.next_delay * 2).min(MAX_DELAY);
    }

    pub(crate) fn on_success(&mut self) {
        *self = Backoff::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(backoff: &Backoff, now: Instant) -> Duration {
        backoff
            .retry_at()
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }

    #[test]
    fn delays_double_from_50ms_to_a_4s_cap() {
        let mut backoff = Backoff::new();
        let now = Instant::now();
        assert!(backoff.retry_at().is_none());
        let mut seen = Vec::new();
        for _ in 0..10 {
            backoff.on_failure(now);
            seen.push(wait(&backoff, now).as_millis());
        }
        assert_eq!(seen, [50, 100, 200, 400, 800, 1600, 3200, 4000, 4000, 4000]);
    }

    #[test]
    fn success_resets_the_schedule() {
        let mut backoff = Backoff::new();
        let now = Instant::now();
        backoff.on_failure(now);
        backoff.on_failure(now);
        backoff.on_success();
        assert!(backoff.retry_at().is_none());
        backoff.on_failure(now);
        assert_eq!(wait(&backoff, now), FIRST_DELAY);
    }
}
