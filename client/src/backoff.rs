//! Reconnect backoff for one node.
//!
//! Owns the schedule: after a failed connect, the next attempt waits 50 ms, then 100, 200, ...
//! doubling up to 5 s; a successful connect resets it. While the wait runs, requests to the node
//! fail at once with the last connect error instead of each hanging for a connect timeout, so a
//! dead node costs its callers microseconds, not seconds.

use crate::error::ClientError;
use std::time::{Duration, Instant};

pub(crate) const FIRST_DELAY: Duration = Duration::from_millis(50);
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Backoff {
    next_delay: Duration,
    retry_at: Option<Instant>,
    last_error: Option<ClientError>,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next_delay: FIRST_DELAY,
            retry_at: None,
            last_error: None,
        }
    }

    /// `Err(last connect error)` while a wait is running; `Ok` when a connect may be tried.
    pub(crate) fn check(&self, now: Instant) -> Result<(), ClientError> {
        match (self.retry_at, &self.last_error) {
            (Some(retry_at), Some(error)) if now < retry_at => Err(error.clone()),
            _ => Ok(()),
        }
    }

    /// Records a failed connect and starts the next wait.
    pub(crate) fn on_failure(&mut self, now: Instant, error: ClientError) {
        self.retry_at = Some(now + self.next_delay);
        self.next_delay = (self.next_delay * 2).min(MAX_DELAY);
        self.last_error = Some(error);
    }

    pub(crate) fn on_success(&mut self) {
        *self = Backoff::new();
    }

    #[cfg(test)]
    fn wait(&self, now: Instant) -> Duration {
        self.retry_at
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn refused() -> ClientError {
        let node = SocketAddr::from(([127, 0, 0, 1], 1));
        ClientError::from_io(
            node,
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )
    }

    #[test]
    fn delays_double_from_50ms_to_a_5s_cap() {
        let mut backoff = Backoff::new();
        let now = Instant::now();
        assert!(backoff.check(now).is_ok());
        let mut seen = Vec::new();
        for _ in 0..10 {
            backoff.on_failure(now, refused());
            seen.push(backoff.wait(now).as_millis());
        }
        assert_eq!(seen, [50, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn fails_fast_during_the_wait_then_allows_a_retry() {
        let mut backoff = Backoff::new();
        let now = Instant::now();
        backoff.on_failure(now, refused());
        let error = backoff
            .check(now + Duration::from_millis(10))
            .expect_err("waiting");
        assert!(error.to_string().ends_with("connection refused"));
        assert!(backoff.check(now + FIRST_DELAY).is_ok());
        backoff.on_success();
        backoff.on_failure(now, refused());
        assert_eq!(
            backoff.wait(now),
            FIRST_DELAY,
            "success resets the schedule"
        );
    }
}
