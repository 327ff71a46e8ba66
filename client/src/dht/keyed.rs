//! The keyed requests of [`DhtClient`]: Put, Get, Exists, Remove, Update (read, then
//! compare-and-swap) and PutBatch, each sent to the node whose range owns the key.

use super::DhtClient;
use crate::error::ClientError;
use crate::reply::{Pending, Reply};
use node_core::protocol::batch::{BatchBuilder, PushOutcome, DEFAULT_BATCH_TARGET_BYTES};
use node_core::protocol::dht::{
    self as wire, value_hash, Expected, KeyRequest, PutRequest, UpdateAction, UpdateRequest,
};
use node_core::protocol::{RequestCode, Status};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many times [`DhtClient::update`] reads and tries again after a conflict before it gives
/// up with [`ClientError::UpdateConflict`].
pub const UPDATE_TRIES: u32 = 16;
/// PutBatch requests a [`DhtClient::put_batch`] keeps in flight before it waits for the oldest.
const PUT_BATCH_PIPELINE: usize = 16;

/// What an [`DhtClient::update`] callback decides, given the record's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateDecision {
    /// Store this value (creating the record if it was absent).
    Write(Vec<u8>),
    /// Remove the record.
    Remove,
    /// Change nothing.
    Leave,
}

impl DhtClient {
    /// Stores `value` under `key` (replacing any value).
    pub fn put(&self, channel: &str, key: u64, value: &[u8]) -> Result<(), ClientError> {
        let mut body = Vec::with_capacity(channel.len() + 9 + value.len());
        PutRequest {
            channel,
            key,
            value,
        }
        .encode(&mut body);
        self.keyed(wire::PUT, key, body)?.ok_body().map(drop)
    }

    /// The value stored under `key`, or `None`.
    pub fn get(&self, channel: &str, key: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let reply = self
            .keyed(wire::GET, key, key_body(channel, key))?
            .into_result()?;
        Ok((reply.status == Status::Ok).then_some(reply.body))
    }

    /// Whether a record exists under `key`.
    pub fn exists(&self, channel: &str, key: u64) -> Result<bool, ClientError> {
        found(self.keyed(wire::EXISTS, key, key_body(channel, key))?)
    }

    /// Removes the record under `key`; true if there was one.
    pub fn remove(&self, channel: &str, key: u64) -> Result<bool, ClientError> {
        found(self.keyed(wire::REMOVE, key, key_body(channel, key))?)
    }

    /// Read-modify-write of one record without lost updates: reads the value (Get), asks `f`
    /// what to do with it, and sends an Update that the node applies only if the record is
    /// still as read (absent, or with a value of the same FNV-1a hash). If another writer got
    /// in between (UpdateConflict), it reads again and calls `f` again, up to
    /// [`UPDATE_TRIES`] times, then fails with [`ClientError::UpdateConflict`]. `f` may thus run
    /// several times; only its last decision takes effect. Between tries it pauses a random
    /// while (up to one try's duration, then twice that, four times, ..., at most 100 ms), so
    /// that writers contending for one key fall out of step instead of colliding again and
    /// again.
    pub fn update(
        &self,
        channel: &str,
        key: u64,
        mut f: impl FnMut(Option<&[u8]>) -> UpdateDecision,
    ) -> Result<(), ClientError> {
        let node = self.ranges.route(key)?;
        let mut last_try = Duration::ZERO;
        for attempt in 0..UPDATE_TRIES {
            if attempt > 0 {
                conflict_pause(attempt, last_try);
            }
            let started = Instant::now();
            let current = self.get(channel, key)?;
            let expected = match &current {
                None => Expected::Absent,
                Some(value) => Expected::Hash(value_hash(value)),
            };
            let decision = f(current.as_deref());
            let action = match &decision {
                UpdateDecision::Leave => return Ok(()),
                UpdateDecision::Remove if current.is_none() => return Ok(()),
                UpdateDecision::Remove => UpdateAction::Remove,
                UpdateDecision::Write(value) => UpdateAction::Write(value),
            };
            let mut body = Vec::new();
            UpdateRequest {
                channel,
                key,
                expected,
                action,
            }
            .encode(&mut body);
            let reply = self.keyed(wire::UPDATE, key, body)?;
            last_try = started.elapsed();
            if reply.status != Status::UpdateConflict {
                return reply.ok_body().map(drop);
            }
        }
        Err(ClientError::UpdateConflict {
            node: self.ranges.entries()[node].0,
            channel: channel.to_string(),
            key,
            tries: UPDATE_TRIES,
        })
    }

    /// Stores many records: routes each to its node, packs them into LZ4 batches of about
    /// 64 KiB per node and sends those as pipelined PutBatch requests. On error, some batches
    /// may have been stored and others not; putting the same records again is harmless.
    pub fn put_batch<'v>(
        &self,
        channel: &str,
        records: impl IntoIterator<Item = (u64, &'v [u8])>,
    ) -> Result<(), ClientError> {
        let mut builders: Vec<BatchBuilder> = (0..self.node_count())
            .map(|_| BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES))
            .collect();
        let mut in_flight = VecDeque::new();
        for (key, value) in records {
            let node = self.ranges.route(key)?;
            match builders[node].push(key, value) {
                PushOutcome::Added => continue,
                PushOutcome::Full => {
                    self.send_batch(node, channel, &mut builders[node], &mut in_flight)?;
                    let pushed = builders[node].push(key, value);
                    debug_assert_eq!(pushed, PushOutcome::Added);
                }
                PushOutcome::TooBig => {
                    return Err(ClientError::Setup(format!(
                        "record 0x{key:016x} of {} bytes is too big for a batch",
                        value.len()
                    )))
                }
            }
        }
        for (node, builder) in builders.iter_mut().enumerate() {
            if !builder.is_empty() {
                self.send_batch(node, channel, builder, &mut in_flight)?;
            }
        }
        for pending in in_flight {
            pending.wait()?.ok_body()?;
        }
        Ok(())
    }

    fn send_batch(
        &self,
        node: usize,
        channel: &str,
        builder: &mut BatchBuilder,
        in_flight: &mut VecDeque<Pending>,
    ) -> Result<(), ClientError> {
        if in_flight.len() >= PUT_BATCH_PIPELINE {
            if let Some(oldest) = in_flight.pop_front() {
                oldest.wait()?.ok_body()?;
            }
        }
        let mut batch = Vec::new();
        builder.finish_into(&mut batch);
        let mut body = Vec::with_capacity(channel.len() + 1 + batch.len());
        wire::encode_put_batch(&mut body, channel, &batch);
        in_flight.push_back(self.client.submit_owned(node, wire::PUT_BATCH, body)?);
        Ok(())
    }

    /// Sends a keyed request to the key's node. The reply comes back as is, except that
    /// WrongNode becomes [`ClientError::WrongNode`].
    fn keyed(&self, code: RequestCode, key: u64, body: Vec<u8>) -> Result<Reply, ClientError> {
        let node = self.ranges.route(key)?;
        let reply = self.client.submit_owned(node, code, body)?.wait()?;
        wrong_node(reply, key)
    }
}

/// A random pause before try `attempt` (1-based) of an update: up to the duration of the last
/// try (its Get and Update round trips) times 2^(attempt-1), at least 50 µs, at most 100 ms.
/// Scaling by the round trip keeps contending writers apart whether the node answers in
/// microseconds or, under load, in milliseconds.
fn conflict_pause(attempt: u32, last_try: Duration) {
    use std::hash::{BuildHasher, Hasher};
    let base_us = last_try.as_micros().clamp(50, 100_000) as u64;
    let bound_us = (base_us << (attempt - 1).min(10)).min(100_000);
    // A fresh RandomState is randomly keyed: a random number without a dependency.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    std::thread::sleep(Duration::from_micros(random % (bound_us + 1)));
}

fn key_body(channel: &str, key: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(channel.len() + 9);
    KeyRequest { channel, key }.encode(&mut body);
    body
}

/// Ok → true, NotFound → false, anything else → its error.
fn found(reply: Reply) -> Result<bool, ClientError> {
    Ok(reply.into_result()?.status == Status::Ok)
}

fn wrong_node(reply: Reply, key: u64) -> Result<Reply, ClientError> {
    if reply.status == Status::WrongNode {
        return Err(ClientError::WrongNode {
            node: reply.node,
            key,
            message: reply.message(),
        });
    }
    Ok(reply)
}
