//! The node's running consumers (Consume streams) and the rules they follow: which storage
//! each reads, the batches it was handed that its client has not acknowledged yet, when it
//! waits (for records, for an ack) and what happens to its records when it ends.
//!
//! - [`Engine::consume`] hands a consumer its next batch (returned batches first, see
//!   [`super::ring`]); at most [`MAX_UNACKED_BATCHES`] wait for an ack, then it waits for one.
//! - [`Engine::ack`] frees the first records a consumer was handed, for good (not delivered
//!   again, not even after a crash), and resumes it if it waited for that ack.
//! - [`Engine::end_consumer`]: a consumer that ends without acknowledging its batches (Stop, a
//!   dropped connection, shutdown) gives them back to the front of its storage, for the next
//!   consumer or Pop: nothing is lost, and a record is delivered again only if it was not
//!   acknowledged.
//! - A push wakes the consumers waiting for records of the storages it wrote; RemoveChannel
//!   ends the consumers of its storages (their unacknowledged batches go with the channel).
//!
//! A consumer's waker (`W`, the server's stream handle) is opaque here: the engine only
//! collects the wakers of consumers to resume ([`Engine::take_woken`]); the service wakes them.
//!
//! Bounds: a consumer keeps at most [`MAX_UNACKED_BATCHES`] batches unacknowledged; each
//! consumer is in a storage's waiting list at most once; the number of consumers is bounded by
//! the server's connections × streams per connection.

use super::ring::{Ring, Span};
use super::{Engine, QueueError};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

/// Batches a consumer may have been handed and not had acknowledged; beyond, it waits for an
/// ack.
pub const MAX_UNACKED_BATCHES: usize = 8;

pub type ConsumerId = u64;

/// How a ConsumeAck finds its consumer: the connection (peer address) and the request id of the
/// Consume.
pub type ConsumerKey = (SocketAddr, u64);

/// One running consumer.
#[derive(Debug)]
struct Consumer<W> {
    /// The storage it reads (`subscriber@channel`).
    storage: String,
    key: ConsumerKey,
    /// How to resume it; learnt on its first turn.
    waker: Option<W>,
    max_batch_records: usize,
    /// Batches handed out and not yet acknowledged, oldest first (the first may be partly
    /// acknowledged already: it then starts after the acknowledged records).
    unacked: VecDeque<Span>,
    /// Records handed out so far.
    sent: u64,
    /// Records acknowledged so far (a prefix of those sent).
    acked: u64,
    /// Its channel was removed: it ends at its next turn.
    ended: bool,
    /// It waits for an ack (too many batches unacknowledged).
    waiting_for_ack: bool,
    /// It is in its storage's waiting list (nothing to hand out).
    waiting_for_records: bool,
}

/// The registry of consumers, found by id (their stream), by key (a ConsumeAck) and by the
/// storage they wait on (a push).
#[derive(Debug)]
pub(super) struct Consumers<W> {
    next_id: ConsumerId,
    by_id: HashMap<ConsumerId, Consumer<W>>,
    by_key: HashMap<ConsumerKey, ConsumerId>,
    /// Consumers waiting for records, per storage.
    waiting: HashMap<String, Vec<ConsumerId>>,
}

impl<W> Default for Consumers<W> {
    fn default() -> Consumers<W> {
        Consumers {
            next_id: 0,
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            waiting: HashMap::new(),
        }
    }
}

/// What a consumer's turn gave it ([`Engine::consume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// A batch was handed out (its records went to the callback, in order).
    Batch(Span),
    /// Nothing to hand out now: it is woken when a push writes to its storage.
    WaitForRecords,
    /// Too many batches unacknowledged: it is woken by the ack that frees one.
    WaitForAck,
    /// Its channel was removed: it is gone from the registry; the stream ends.
    Ended,
    /// No such consumer (a bug: a stream outlived its registration).
    Lost,
}

impl<W: Copy> Consumers<W> {
    fn add(&mut self, storage: String, key: ConsumerKey, max_batch_records: usize) -> ConsumerId {
        self.next_id += 1;
        let id = self.next_id;
        self.by_key.insert(key, id);
        let consumer = Consumer {
            storage,
            key,
            waker: None,
            max_batch_records,
            unacked: VecDeque::new(),
            sent: 0,
            acked: 0,
            ended: false,
            waiting_for_ack: false,
            waiting_for_records: false,
        };
        self.by_id.insert(id, consumer);
        id
    }

    fn remove(&mut self, id: ConsumerId) -> Option<Consumer<W>> {
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
    fn wait_for_records(&mut self, id: ConsumerId) {
        let Some(consumer) = self.by_id.get_mut(&id) else {
            return;
        };
        if !consumer.waiting_for_records {
            consumer.waiting_for_records = true;
            let list = self.waiting.entry(consumer.storage.clone()).or_default();
            list.push(id);
        }
    }

    /// Wakes every consumer waiting for records of `storage` (they race for them; those that
    /// find nothing wait again).
    pub(super) fn wake_storage(&mut self, storage: &str, woken: &mut Vec<W>) {
        if self.waiting.is_empty() {
            return;
        }
        let Some(list) = self.waiting.remove(storage) else {
            return;
        };
        for id in list {
            if let Some(consumer) = self.by_id.get_mut(&id) {
                consumer.waiting_for_records = false;
                woken.extend(consumer.waker);
            }
        }
    }

    /// Ends every consumer of `storage` (its channel is being removed): each ends at its next
    /// turn. Their unacknowledged batches go with the storage.
    pub(super) fn end_storage(&mut self, storage: &str, woken: &mut Vec<W>) {
        self.waiting.remove(storage);
        for consumer in self.by_id.values_mut() {
            if consumer.storage == storage {
                consumer.ended = true;
                consumer.unacked.clear();
                consumer.waiting_for_records = false;
                consumer.waiting_for_ack = false;
                woken.extend(consumer.waker);
            }
        }
    }
}

impl<W: Copy> Engine<W> {
    /// Starts a consumer of `subscriber`'s storage of `channel` (empty: the default
    /// subscriber), subscribing it first ([`Engine::subscribe`]: consumers under one name share
    /// that storage's records). Returns its id and the length of its storage's name (what it
    /// holds, for the stream memory budgets).
    pub fn start_consumer(
        &mut self,
        channel: &str,
        subscriber: &str,
        key: ConsumerKey,
        max_batch_records: usize,
    ) -> Result<(ConsumerId, usize), QueueError> {
        let (storage, _) = self.subscribe(channel, subscriber)?;
        let storage_len = storage.len();
        let id = self.consumers.add(storage, key, max_batch_records);
        Ok((id, storage_len))
    }

    /// A consumer's turn: hands it its next batch of at most its `max_batch_records` records
    /// and about `max_value_bytes` value bytes, calling `each(sequence, value)` for every
    /// record in order; or says why it waits or ends. `waker` resumes it when it waits.
    pub fn consume(
        &mut self,
        id: ConsumerId,
        waker: W,
        max_value_bytes: u64,
        each: impl FnMut(u64, &[u8]),
    ) -> Consumed {
        let Some(consumer) = self.consumers.by_id.get_mut(&id) else {
            return Consumed::Lost;
        };
        consumer.waker.get_or_insert(waker);
        let ring = match self.channels.ring_mut(&consumer.storage) {
            Some(ring) if !consumer.ended => ring,
            _ => {
                self.consumers.remove(id);
                return Consumed::Ended;
            }
        };
        if consumer.unacked.len() >= MAX_UNACKED_BATCHES {
            consumer.waiting_for_ack = true;
            return Consumed::WaitForAck;
        }
        match ring.take_with(consumer.max_batch_records, max_value_bytes, each) {
            None => {
                self.consumers.wait_for_records(id);
                Consumed::WaitForRecords
            }
            Some(span) => {
                assert!(span.end_seq > span.first_seq, "a batch holds a record");
                consumer.unacked.push_back(span);
                consumer.sent += span.end_seq - span.first_seq;
                Consumed::Batch(span)
            }
        }
    }

    /// A ConsumeAck: the client of consumer `key` has processed the first `records` records it
    /// was handed (cumulative). Returns false when no such consumer runs (it ended: a late ack
    /// is harmless). An ack of more records than were handed out is refused; one of fewer than
    /// an earlier ack, or to a consumer whose channel was removed, changes nothing.
    pub fn ack(&mut self, key: ConsumerKey, records: u64) -> Result<bool, QueueError> {
        let Some(consumer) = self
            .consumers
            .by_key
            .get(&key)
            .and_then(|id| self.consumers.by_id.get_mut(id))
        else {
            return Ok(false);
        };
        if records > consumer.sent {
            return Err(QueueError::AckBeyondSent {
                records,
                consume_id: key.1,
                sent: consumer.sent,
            });
        }
        if consumer.ended || records <= consumer.acked {
            return Ok(true);
        }
        let Some(ring) = self.channels.ring_mut(&consumer.storage) else {
            return Ok(true);
        };
        ack_spans(ring, &mut consumer.unacked, records - consumer.acked).map_err(|error| {
            // The spans are the ring's own hand-outs: an error here is a bug.
            tracing::error!(storage = consumer.storage, "ConsumeAck: {error}");
            QueueError::Ack(error)
        })?;
        self.counters.removed_records += records - consumer.acked;
        consumer.acked = records;
        if consumer.waiting_for_ack && consumer.unacked.len() < MAX_UNACKED_BATCHES {
            consumer.waiting_for_ack = false;
            self.woken.extend(consumer.waker);
        }
        Ok(true)
    }

    /// Ends a consumer whose stream ended without finishing (Stop, a dropped connection,
    /// shutdown): its unacknowledged batches go back to the front of its storage, and the
    /// consumers waiting on that storage are woken to take them.
    pub fn end_consumer(&mut self, id: ConsumerId) {
        let Some(consumer) = self.consumers.remove(id) else {
            return;
        };
        if consumer.ended || consumer.unacked.is_empty() {
            return;
        }
        if let Some(ring) = self.channels.ring_mut(&consumer.storage) {
            for span in consumer.unacked {
                let records = span.end_seq - span.first_seq;
                match ring.give_back(span) {
                    Ok(()) => self.counters.redelivered_records += records,
                    Err(error) => {
                        tracing::error!(
                            storage = consumer.storage,
                            "cannot give records back: {error}"
                        );
                    }
                }
            }
        }
        self.consumers
            .wake_storage(&consumer.storage, &mut self.woken);
    }

    /// The memory a consumer holds in the registry between its turns, for the stream memory
    /// budgets: its entry, its storage's name (`storage_len` bytes), its unacknowledged spans
    /// (at most [`MAX_UNACKED_BATCHES`]) and the two map entries that find it.
    pub fn consumer_held_bytes(storage_len: usize) -> usize {
        std::mem::size_of::<Consumer<W>>()
            + storage_len
            + MAX_UNACKED_BATCHES * std::mem::size_of::<Span>()
            + 64
    }

    /// Consumers running.
    pub fn consumer_count(&self) -> usize {
        self.consumers.by_id.len()
    }

    /// Consumers per storage (`/metrics`).
    pub fn consumers_per_storage(&self) -> BTreeMap<&str, u64> {
        let mut counts = BTreeMap::new();
        for consumer in self.consumers.by_id.values() {
            *counts.entry(consumer.storage.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

/// Acknowledges the first `records` records of `unacked` (oldest first) in `ring`, in whole
/// batches and, at the end, the prefix of one (the rest of it stays first in `unacked`).
fn ack_spans(
    ring: &mut Ring,
    unacked: &mut VecDeque<Span>,
    records: u64,
) -> Result<(), super::RingError> {
    let mut todo = records;
    // Each turn of the loop acknowledges at least one record or empties `unacked`, so it runs
    // at most MAX_UNACKED_BATCHES times for whole batches, plus once for a prefix.
    while todo > 0 {
        let Some(span) = unacked.pop_front() else {
            break;
        };
        let len = span.end_seq - span.first_seq;
        if todo >= len {
            ring.ack(span)?;
        } else if let Some(rest) = ring.ack_prefix(span, todo)? {
            assert_eq!(
                rest.end_seq - rest.first_seq,
                len - todo,
                "the prefix's rest"
            );
            unacked.push_front(rest);
        }
        todo -= todo.min(len);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Engine, QueueError, Queues, QueuesConfig, RingSizes, SyncMode};
    use super::{Consumed, ConsumerKey};

    fn engine(dir: &std::path::Path) -> Engine<u32> {
        let (queues, _) = Queues::open(QueuesConfig {
            data_dir: dir.to_path_buf(),
            memory_limit_bytes: 0,
            sync: SyncMode::OnClose,
        })
        .expect("open");
        let sizes = RingSizes {
            default_bytes: 64 * 1024,
            by_prefix: Default::default(),
        };
        Engine::new(queues, sizes, 1024)
    }

    fn key(request_id: u64) -> ConsumerKey {
        ("127.0.0.1:1".parse().expect("address"), request_id)
    }

    /// One consumer turn: the values handed out, or what it said instead.
    fn turn(engine: &mut Engine<u32>, id: u64, waker: u32) -> Result<Vec<Vec<u8>>, Consumed> {
        let mut values = Vec::new();
        match engine.consume(id, waker, 1 << 20, |_, value| values.push(value.to_vec())) {
            Consumed::Batch(_) => Ok(values),
            other => Err(other),
        }
    }

    #[test]
    fn unacknowledged_records_go_back_to_the_front_and_acked_ones_are_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut engine = engine(dir.path());
        for value in [b"a", b"b", b"c"] {
            engine.push(&["ch"], &[value], false).expect("push");
        }
        let (first, _) = engine.start_consumer("ch", "", key(1), 2).expect("start");
        assert_eq!(
            turn(&mut engine, first, 7),
            Ok(vec![b"a".to_vec(), b"b".to_vec()])
        );
        assert!(matches!(
            engine.ack(key(1), 3),
            Err(QueueError::AckBeyondSent { sent: 2, .. })
        ));
        assert_eq!(
            engine.ack(key(1), 1).ok(),
            Some(true),
            "ack of the first record"
        );
        assert_eq!(engine.ack(key(9), 1).ok(), Some(false), "no such consumer");
        engine.end_consumer(first);
        assert_eq!(engine.counters().removed_records, 1);
        assert_eq!(engine.counters().redelivered_records, 1, "b went back");
        let (second, _) = engine.start_consumer("ch", "", key(2), 10).expect("start");
        assert_eq!(
            turn(&mut engine, second, 8),
            Ok(vec![b"b".to_vec(), b"c".to_vec()])
        );
        assert_eq!(turn(&mut engine, second, 8), Err(Consumed::WaitForRecords));
        assert_eq!(engine.take_woken().count(), 0);
        engine.push(&["ch"], &[b"d"], false).expect("push");
        assert_eq!(
            engine.take_woken().collect::<Vec<_>>(),
            [8],
            "a push wakes it"
        );
        engine.remove_channel("ch").expect("remove");
        assert_eq!(
            engine.take_woken().collect::<Vec<_>>(),
            [8],
            "the removal ends it"
        );
        assert_eq!(turn(&mut engine, second, 8), Err(Consumed::Ended));
        assert_eq!(engine.consumer_count(), 0);
    }

    #[test]
    fn a_consumer_waits_for_its_ack_and_pop_needs_a_default_subscriber() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut engine = engine(dir.path());
        let (id, _) = engine
            .start_consumer("ch", "named", key(1), 1)
            .expect("start");
        let values: Vec<[u8; 1]> = (0..=super::MAX_UNACKED_BATCHES as u8)
            .map(|i| [i])
            .collect();
        for value in &values {
            engine.push(&["ch"], &[value], false).expect("push");
        }
        for _ in 0..super::MAX_UNACKED_BATCHES {
            assert!(turn(&mut engine, id, 5).is_ok());
        }
        assert_eq!(turn(&mut engine, id, 5), Err(Consumed::WaitForAck));
        assert_eq!(engine.ack(key(1), 1).ok(), Some(true));
        assert_eq!(
            engine.take_woken().collect::<Vec<_>>(),
            [5],
            "the ack resumes it"
        );
        assert!(matches!(
            engine.pop_with("ch", |_| ()),
            Err(QueueError::NoDefaultSubscriber { .. })
        ));
        assert_eq!(engine.pop_with("missing", |_| ()).ok(), Some(None));
    }
}
