//! The per-node limit on requests in flight, as permits.
//!
//! Owns [`InFlightLimit`] and its RAII [`Permit`]. A caller takes a permit before it submits a
//! request (blocking until one is free, up to a deadline); the permit travels with the request
//! into the I/O thread's routing table and is released when the request leaves it: its Reply
//! arrived, or its connection failed. Because the client releases a slot only once the node's
//! Reply is in, the client never has more unanswered requests on a connection than the node
//! allows (`max_in_flight`), so it never provokes a TooManyRequests reply.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct InFlightLimit {
    used: Mutex<usize>,
    freed: Condvar,
    /// Wakes the async callers waiting for a slot (the condvar wakes the blocking ones).
    #[cfg(feature = "async")]
    freed_async: tokio::sync::Notify,
    max: usize,
}

/// One request's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    limit: Arc<InFlightLimit>,
}

impl InFlightLimit {
    pub(crate) fn new(max: usize) -> Arc<InFlightLimit> {
        Arc::new(InFlightLimit {
            used: Mutex::new(0),
            freed: Condvar::new(),
            #[cfg(feature = "async")]
            freed_async: tokio::sync::Notify::new(),
            max: max.max(1),
        })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The counter survives a panic elsewhere: it is a plain integer, always consistent.
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot, waiting until `deadline` for one to be freed; `None` if none was.
    pub(crate) fn acquire(self: &Arc<Self>, deadline: Instant) -> Option<Permit> {
        let mut used = self.lock();
        while *used >= self.max {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            used = match self.freed.wait_timeout(used, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *used += 1;
        Some(Permit {
            limit: Arc::clone(self),
        })
    }

    /// Takes a slot if one is free now.
    #[cfg(feature = "async")]
    fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut used = self.lock();
        if *used >= self.max {
            return None;
        }
        *used += 1;
        Some(Permit {
            limit: Arc::clone(self),
        })
    }

    /// [`InFlightLimit::acquire`] for an async caller: the task waits, not its thread.
    #[cfg(feature = "async")]
    pub(crate) async fn acquire_async(self: &Arc<Self>, deadline: Instant) -> Option<Permit> {
        loop {
            // Registered before the check, so a slot freed in between still wakes us.
            let mut freed = std::pin::pin!(self.freed_async.notified());
            freed.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return Some(permit);
            }
            if tokio::time::timeout_at(deadline.into(), freed)
                .await
                .is_err()
            {
                return self.try_acquire();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        *self.lock()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut used = self.limit.lock();
        *used = used.saturating_sub(1);
        drop(used);
        self.limit.freed.notify_one();
        #[cfg(feature = "async")]
        self.limit.freed_async.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn permits_are_bounded_and_released_on_drop() {
        let limit = InFlightLimit::new(2);
        let soon = Instant::now() + Duration::from_millis(20);
        let first = limit.acquire(soon).expect("free slot");
        let _second = limit.acquire(soon).expect("free slot");
        assert!(
            limit.acquire(soon).is_none(),
            "third must wait and time out"
        );
        drop(first);
        assert_eq!(limit.in_use(), 1);
        assert!(limit.acquire(Instant::now()).is_some());
    }

    #[test]
    fn a_waiter_wakes_when_a_slot_frees() {
        let limit = InFlightLimit::new(1);
        let held = limit.acquire(Instant::now()).expect("free slot");
        let waiter = {
            let limit = Arc::clone(&limit);
            std::thread::spawn(move || {
                limit
                    .acquire(Instant::now() + Duration::from_secs(10))
                    .is_some()
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert!(waiter.join().expect("no panic"));
    }
}
