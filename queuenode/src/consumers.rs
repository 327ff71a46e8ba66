//! The node's running Consume streams: for each, the storage it reads, the batches it sent that
//! the client has not acknowledged yet, and how to wake it.
//!
//! The registry lives in the node (not in the stream task) because three other parties act on a
//! consumer: a ConsumeAck request (found by connection and request id) acknowledges its batches,
//! a push to its storage wakes it when it waits for records, and RemoveChannel ends it.
//!
//! Bounds: a consumer keeps at most [`MAX_UNACKED_BATCHES`] batches unacknowledged (then it
//! waits for an ack); each consumer is in a storage's waiting list at most once; the number of
//! consumers is bounded by the server's connections × streams per connection.

use crate::engine::Span;
use node_core::server::{StreamHandle, Wakeups};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Batches a consumer may have sent and not had acknowledged; beyond, it waits for an ack.
pub const MAX_UNACKED_BATCHES: usize = 8;

pub(crate) type ConsumerId = u64;

/// One running Consume.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// The storage it reads (`subscriber@channel`).
    pub storage: String,
    /// The connection (peer address) and request id of its Consume: how a ConsumeAck finds it.
    pub key: (SocketAddr, u64),
    /// Learnt on the first resume.
    pub handle: Option<StreamHandle>,
    pub max_batch_records: usize,
    /// Batches sent and not yet acknowledged, oldest first (the first may be partly
    /// acknowledged already: it then starts after the acknowledged records).
    pub unacked: VecDeque<Span>,
    /// Records sent so far.
    pub sent: u64,
    /// Records acknowledged so far (a prefix of those sent).
    pub acked: u64,
    /// Its channel was removed: the stream ends with Ok at its next turn.
    pub ended: bool,
    /// It waits for an ack (too many batches unacknowledged).
    pub waiting_for_ack: bool,
    /// It is in its storage's waiting list (nothing to send).
    waiting_for_records: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Consumers {
    next_id: ConsumerId,
    by_id: HashMap<ConsumerId, Consumer>,
    by_key: HashMap<(SocketAddr, u64), ConsumerId>,
    /// Consumers waiting for records, per storage.
    waiting: HashMap<String, Vec<ConsumerId>>,
}

impl Consumers {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Consumers per storage (`/metrics`).
    pub fn per_storage(&self) -> std::collections::BTreeMap<&str, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for consumer in self.by_id.values() {
            *counts.entry(consumer.storage.as_str()).or_insert(0) += 1;
        }
        counts
    }

    pub fn add(
        &mut self,
        storage: String,
        key: (SocketAddr, u64),
        max_batch_records: usize,
    ) -> ConsumerId {
        self.next_id += 1;
        let id = self.next_id;
        self.by_key.insert(key, id);
        self.by_id.insert(
            id,
            Consumer {
                storage,
                key,
                handle: None,
                max_batch_records,
                unacked: VecDeque::new(),
                sent: 0,
                acked: 0,
                ended: false,
                waiting_for_ack: false,
                waiting_for_records: false,
            },
        );
        id
    }

    pub fn get_mut(&mut self, id: ConsumerId) -> Option<&mut Consumer> {
        self.by_id.get_mut(&id)
    }

    /// The consumer started by request `request_id` on the connection from `peer`.
    pub fn find(&mut self, peer: SocketAddr, request_id: u64) -> Option<&mut Consumer> {
        let id = self.by_key.get(&(peer, request_id))?;
        self.by_id.get_mut(id)
    }

    pub fn remove(&mut self, id: ConsumerId) -> Option<Consumer> {
        let consumer = self.by_id.remove(&id)?;
        if self.by_key.get(&consumer.key) == Some(&id) {
            self.by_key.remove(&consumer.key);
        }
        if consumer.waiting_for_records {
            if let Some(list) = self.waiting.get_mut(&consumer.storage) {
                list.retain(|other| *other != id);
                if list.is_empty() {
                    self.waiting.remove(&consumer.storage);
                }
            }
        }
        Some(consumer)
    }

    /// Puts the consumer in its storage's waiting list (once).
    pub fn wait_for_records(&mut self, id: ConsumerId) {
        if let Some(consumer) = self.by_id.get_mut(&id) {
            if !consumer.waiting_for_records {
                consumer.waiting_for_records = true;
                self.waiting
                    .entry(consumer.storage.clone())
                    .or_default()
                    .push(id);
            }
        }
    }

    /// Wakes every consumer waiting for records of `storage` (they race for them; those that
    /// find nothing wait again).
    pub fn wake_storage(&mut self, storage: &str, wakeups: &Wakeups) {
        if self.waiting.is_empty() {
            return;
        }
        let Some(list) = self.waiting.remove(storage) else {
            return;
        };
        for id in list {
            if let Some(consumer) = self.by_id.get_mut(&id) {
                consumer.waiting_for_records = false;
                if let Some(handle) = consumer.handle {
                    wakeups.wake(handle);
                }
            }
        }
    }

    /// Ends every consumer of `storage` (its channel is being removed): each finishes with Ok
    /// at its next turn. Their unacknowledged batches go with the storage.
    pub fn end_storage(&mut self, storage: &str, wakeups: &Wakeups) {
        self.waiting.remove(storage);
        for consumer in self.by_id.values_mut() {
            if consumer.storage == storage {
                consumer.ended = true;
                consumer.unacked.clear();
                consumer.waiting_for_records = false;
                consumer.waiting_for_ack = false;
                if let Some(handle) = consumer.handle {
                    wakeups.wake(handle);
                }
            }
        }
    }
}
