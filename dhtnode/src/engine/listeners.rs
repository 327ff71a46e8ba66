//! Listen subscriptions: for each listener, a bounded queue of the changes made to its channel
//! since it subscribed, in order.
//!
//! Values are copied into the queue when the change happens (not read back when sent), so a
//! listener sees every intermediate value, not just the latest. When a queue is full — its own
//! bounds, or the node-wide bound on all listeners' queued bytes — the change is dropped and
//! counted in a loss marker at the place where it would have been, so the consumer learns exactly
//! where it lost updates and how many.

use slab::Slab;
use std::collections::VecDeque;

pub type ListenerId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// A write; `version` is 0 for a write without one.
    Changed {
        key: u64,
        value: Box<[u8]>,
        version: u64,
    },
    /// A removal: `version` is a RemoveVersion's (0 for one without); `record` says whether a
    /// record was removed (a RemoveVersion of an absent key only sets a tombstone, which a
    /// Listen does not report and a Mirror does).
    Removed {
        key: u64,
        version: u64,
        record: bool,
    },
    /// This many changes were dropped here because the queue was full.
    Lost(u64),
    /// The channel was removed; nothing follows.
    ChannelRemoved,
}

/// The bounds of the listeners' queues.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Events one listener may have queued.
    pub max_events: usize,
    /// Bytes one listener may have queued.
    pub max_bytes: usize,
    /// Bytes all listeners together may have queued: many listeners that never read must not
    /// add up to unbounded memory.
    pub max_total_bytes: usize,
}

struct Listener {
    events: VecDeque<ListenEvent>,
    queued_bytes: usize,
    /// Already in the ready list (each listener is listed once however many events it got).
    listed_ready: bool,
}

impl Listener {
    /// Queues a copy of `event` if it fits this listener's and the node's bounds; otherwise
    /// counts it in a loss marker. Copies only what is kept.
    fn push(&mut self, event: &ListenEvent, limits: ListenerLimits, total_bytes: &mut usize) {
        let bytes = event_bytes(event);
        let full = self.events.len() >= limits.max_events
            || self.queued_bytes + bytes > limits.max_bytes
            || *total_bytes + bytes > limits.max_total_bytes;
        let always_fits = matches!(event, ListenEvent::ChannelRemoved);
        if full && !always_fits {
            // One marker may exceed the bound: it is what tells the consumer it lost updates.
            match self.events.back_mut() {
                Some(ListenEvent::Lost(count)) => *count += 1,
                _ => self.events.push_back(ListenEvent::Lost(1)),
            }
            return;
        }
        self.queued_bytes += bytes;
        *total_bytes += bytes;
        self.events.push_back(event.clone());
    }
}

/// Bytes an event counts for in the bounds (markers count nothing: they are not kept per loss).
fn event_bytes(event: &ListenEvent) -> usize {
    match event {
        ListenEvent::Changed { value, .. } => 24 + value.len(),
        ListenEvent::Lost(_) => 0,
        _ => 24,
    }
}

/// Every listener of the node, and which ones have something new for their stream.
pub struct Listeners {
    listeners: Slab<Listener>,
    limits: ListenerLimits,
    ready: Vec<ListenerId>,
    /// Bytes queued over all listeners.
    total_bytes: usize,
}

impl Listeners {
    pub fn new(limits: ListenerLimits) -> Listeners {
        Listeners {
            listeners: Slab::new(),
            limits,
            ready: Vec::new(),
            total_bytes: 0,
        }
    }

    pub fn add(&mut self) -> ListenerId {
        self.listeners.insert(Listener {
            events: VecDeque::new(),
            queued_bytes: 0,
            listed_ready: false,
        })
    }

    pub fn remove(&mut self, id: ListenerId) {
        if let Some(listener) = self.listeners.try_remove(id) {
            self.total_bytes -= listener.queued_bytes;
        }
    }

    pub fn count(&self) -> usize {
        self.listeners.len()
    }

    /// Bytes queued over all listeners.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Queues `event` for each of `ids`.
    pub fn notify(&mut self, ids: &[ListenerId], event: &ListenEvent) {
        for &id in ids {
            let Some(listener) = self.listeners.get_mut(id) else {
                continue;
            };
            listener.push(event, self.limits, &mut self.total_bytes);
            if !listener.listed_ready {
                listener.listed_ready = true;
                self.ready.push(id);
            }
        }
    }

    /// The next event for a listener, if any.
    pub fn next_event(&mut self, id: ListenerId) -> Option<ListenEvent> {
        let listener = self.listeners.get_mut(id)?;
        let event = listener.events.pop_front()?;
        let bytes = event_bytes(&event);
        debug_assert!(bytes <= listener.queued_bytes && bytes <= self.total_bytes);
        listener.queued_bytes -= bytes;
        self.total_bytes -= bytes;
        Some(event)
    }

    /// Listeners that were given events since the last call, each once.
    pub fn take_ready(&mut self) -> Vec<ListenerId> {
        let ready = std::mem::take(&mut self.ready);
        for id in &ready {
            if let Some(listener) = self.listeners.get_mut(*id) {
                listener.listed_ready = false;
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(key: u64) -> ListenEvent {
        ListenEvent::Changed {
            key,
            value: Box::from(&b"v"[..]),
            version: 0,
        }
    }

    fn removed(key: u64) -> ListenEvent {
        ListenEvent::Removed {
            key,
            version: 0,
            record: true,
        }
    }

    #[test]
    fn events_arrive_in_order_and_overflow_is_marked_where_it_happened() {
        let mut listeners = Listeners::new(ListenerLimits {
            max_events: 2,
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 30,
        });
        let id = listeners.add();
        for key in 0..5 {
            listeners.notify(&[id], &changed(key));
        }
        assert_eq!(listeners.next_event(id), Some(changed(0)));
        assert_eq!(listeners.next_event(id), Some(changed(1)));
        listeners.notify(&[id], &removed(9));
        assert_eq!(listeners.next_event(id), Some(ListenEvent::Lost(3)));
        assert_eq!(listeners.next_event(id), Some(removed(9)));
        assert_eq!(listeners.next_event(id), None);
        assert_eq!(
            listeners.take_ready(),
            vec![id],
            "listed once however many events"
        );
    }

    #[test]
    fn channel_removal_is_delivered_even_to_a_full_queue() {
        let mut listeners = Listeners::new(ListenerLimits {
            max_events: 1,
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 30,
        });
        let id = listeners.add();
        listeners.notify(&[id], &changed(1));
        listeners.notify(&[id], &ListenEvent::ChannelRemoved);
        assert_eq!(listeners.next_event(id), Some(changed(1)));
        assert_eq!(listeners.next_event(id), Some(ListenEvent::ChannelRemoved));
    }

    #[test]
    fn the_node_wide_bound_caps_all_listeners_together() {
        let mut listeners = Listeners::new(ListenerLimits {
            max_events: 100,
            max_bytes: 1 << 20,
            max_total_bytes: 50,
        });
        let (first, second) = (listeners.add(), listeners.add());
        let big = ListenEvent::Changed {
            key: 1,
            value: Box::from(&[0u8; 20][..]),
            version: 0,
        };
        listeners.notify(&[first, second], &big);
        assert_eq!(
            listeners.total_bytes(),
            44,
            "only the first copy fits the node's 50 bytes"
        );
        assert_eq!(listeners.next_event(second), Some(ListenEvent::Lost(1)));
        assert!(matches!(
            listeners.next_event(first),
            Some(ListenEvent::Changed { .. })
        ));
        assert_eq!(listeners.total_bytes(), 0);
    }

    #[test]
    fn byte_bound_counts_values() {
        let mut listeners = Listeners::new(ListenerLimits {
            max_events: 100,
            max_bytes: 50,
            max_total_bytes: 1 << 30,
        });
        let id = listeners.add();
        listeners.notify(
            &[id],
            &ListenEvent::Changed {
                key: 1,
                value: Box::from(&[0u8; 20][..]),
                version: 0,
            },
        );
        listeners.notify(
            &[id],
            &ListenEvent::Changed {
                key: 2,
                value: Box::from(&[0u8; 20][..]),
                version: 0,
            },
        );
        assert!(matches!(
            listeners.next_event(id),
            Some(ListenEvent::Changed { key: 1, .. })
        ));
        assert_eq!(listeners.next_event(id), Some(ListenEvent::Lost(1)));
    }
}
