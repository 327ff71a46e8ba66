//! The keyed requests of [`DhtClient`]: Put, Get, Exists, Remove, Update (read, then
//! compare-and-swap) and PutBatch, each sent to the node whose range owns the key.

use super::replicas::{Change, Hint, Sent};
use super::DhtClient;
use crate::error::ClientError;
use crate::replication::ReadFrom;
use crate::reply::{Pending, Reply};
use node_core::protocol::batch::{
    decode_batch, BatchBuilder, PushOutcome, DEFAULT_BATCH_TARGET_BYTES,
};
use node_core::protocol::dht::{
    self as wire, value_hash, Expected, KeyRequest, PutRequest, UpdateAction, UpdateRequest,
};
use node_core::protocol::{RequestCode, Status};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How many times [`DhtClient::update`] reads and tries again after a conflict before it gives
/// up with [`ClientError::UpdateConflict`].
pub const UPDATE_TRIES: u32 = 16;
/// PutBatch requests a [`DhtClient::put_batch`] keeps in flight before it waits for the oldest.
const PUT_BATCH_PIPELINE: usize = 16;

/// Where the async client sends a keyed request (see [`DhtClient::quick_route`]).
#[cfg(feature = "async")]
pub(crate) enum QuickRoute {
    /// To this node, now.
    Node(usize),
    /// The request fails with this error, as the blocking client's would.
    Fail(ClientError),
    /// The routes need a refresh or a wait first: the blocking client's path does it.
    Slow,
}

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
    /// Stores `value` under `key` (replacing any value), on every live member of the key's
    /// replica set; acknowledged once `write_quorum` of them stored it (see the module
    /// documentation).
    pub fn put(&self, channel: &str, key: u64, value: &[u8]) -> Result<(), ClientError> {
        // A PutVersion carries 8 bytes more than a Put: the limit is 8 bytes lower.
        let version_bytes = if self.writes_versioned(key) { 8 } else { 0 };
        self.client
            .options()
            .check_value(channel, value.len() + version_bytes)
            .map_err(|_| ClientError::ValueTooBig {
                len: value.len(),
                max: self
                    .client
                    .options()
                    .max_value_bytes(channel)
                    .saturating_sub(version_bytes),
            })?;
        let change = Change::Put {
            channel,
            key,
            value,
        };
        self.write(change)?.1.ok_body().map(drop)
    }

    /// A Put's body, once the value passed the client's checks (blocking and async puts).
    pub(crate) fn put_body(
        &self,
        channel: &str,
        key: u64,
        value: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.client.options().check_value(channel, value.len())?;
        let mut body = Vec::with_capacity(channel.len() + 9 + value.len());
        PutRequest {
            channel,
            key,
            value,
        }
        .encode(&mut body);
        Ok(body)
    }

    /// The value stored under `key`, or `None`: from the first live member of the key's
    /// replica set (or, with `read_from = spread`, the next in turn); a member that has no
    /// record sends the read on to the set's other live members (see the module
    /// documentation).
    pub fn get(&self, channel: &str, key: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let (reply, _) = self.read(wire::GET, channel, key, self.read_from())?;
        Ok((reply.status == Status::Ok).then_some(reply.body))
    }

    /// Whether a record exists under `key`.
    pub fn exists(&self, channel: &str, key: u64) -> Result<bool, ClientError> {
        let (reply, _) = self.read(wire::EXISTS, channel, key, self.read_from())?;
        Ok(reply.status == Status::Ok)
    }

    /// Removes the record under `key` from every live member of its replica set; true if one
    /// of them had it. While a redistribution runs, also on the nodes the record may still be
    /// on.
    pub fn remove(&self, channel: &str, key: u64) -> Result<bool, ClientError> {
        // A RemoveVersion does not say whether there was a record: ask first.
        let existed = match self.writes_versioned(key) {
            true => Some(self.exists(channel, key)?),
            false => None,
        };
        let (owner, reply) = self.write(Change::Remove { channel, key })?;
        let removed = match existed {
            Some(existed) => reply.into_result().map(|_| existed)?,
            None => found(reply)?,
        };
        self.remove_from_holders(channel, key, owner, removed)
    }

    /// Read-modify-write of one record without lost updates: reads the value (Get), asks `f`
    /// what to do with it, and sends an Update that the node applies only if the record is
    /// still as read (absent, or with a value of the same FNV-1a hash). If another writer got
    /// in between (UpdateConflict), it reads again and calls `f` again, up to
    /// [`UPDATE_TRIES`] times, then fails with [`ClientError::UpdateConflict`]. `f` may thus run
    /// several times; only its last decision takes effect. Between tries it pauses a random
    /// while (up to one try's duration, then twice that, four times, ..., at most 100 ms), so
    /// that writers contending for one key fall out of step instead of colliding again and
    /// again. A record found still on its old node during a redistribution cannot be updated
    /// there: the update waits for it to move, up to `request_timeout_ms` (then
    /// [`ClientError::Timeout`] naming the old node).
    pub fn update(
        &self,
        channel: &str,
        key: u64,
        mut f: impl FnMut(Option<&[u8]>) -> UpdateDecision,
    ) -> Result<(), ClientError> {
        let mut last_try = Duration::ZERO;
        let mut last_node = None;
        let deadline = self.client.request_deadline();
        let mut waits = 0u32;
        let mut attempt = 0;
        while attempt < UPDATE_TRIES {
            if attempt > 0 {
                conflict_pause(attempt, last_try);
            }
            let started = Instant::now();
            // From the member the Update goes to: the first live one.
            let (read, owner) = self.read_for_update(channel, key)?;
            if read.node != self.client.node_addr(owner).unwrap_or(read.node)
                && read.status == Status::Ok
            {
                // Still on the node it is moving away from: wait for it to arrive.
                if Instant::now() >= deadline {
                    return Err(ClientError::Timeout {
                        node: read.node,
                        ms: self.client.options().request_timeout_ms,
                    });
                }
                move_pause(waits);
                waits += 1;
                continue;
            }
            let current = (read.status == Status::Ok).then_some(read.body);
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
            let (node, reply) = self.keyed(wire::UPDATE, key, &body)?;
            last_node = Some(node);
            last_try = started.elapsed();
            if reply.status == Status::Ok {
                return self.replicate_update(channel, key, node, reply, &decision);
            }
            if reply.status != Status::UpdateConflict {
                return reply.ok_body().map(drop);
            }
            attempt += 1;
        }
        let node = last_node.unwrap_or_else(|| self.node_for(key).unwrap_or(0));
        Err(ClientError::UpdateConflict {
            node: self
                .client
                .node_addr(node)
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            channel: channel.to_string(),
            key,
            tries: UPDATE_TRIES,
        })
    }

    /// Stores many records: routes each to its replica set, packs them into LZ4 batches of
    /// about 64 KiB per set and sends those as pipelined requests to every live member: a set
    /// of several members gets PutBatchVersion (each record with a fresh version of the
    /// client's clock, so the members converge whatever order two writers' batches reach them
    /// in, docs/replication.md), a set of one PutBatch, as before sets. While ranges overlap (a
    /// redistribution switching replica sets) a record goes to every node whose range holds
    /// its key, as a keyed write does. A batch refused with WrongNode (the ranges changed) is
    /// split up again by the refreshed ranges and sent anew. On error, some batches may have
    /// been stored and others not; putting the same records again is harmless.
    pub fn put_batch<'v>(
        &self,
        channel: &str,
        records: impl IntoIterator<Item = (u64, &'v [u8])>,
    ) -> Result<(), ClientError> {
        self.replay_hints();
        let deadline = self.client.request_deadline();
        let mut rerouted = self.put_batch_once(channel, records)?;
        let mut round = 0;
        while !rerouted.is_empty() {
            if Instant::now() >= deadline {
                let (node, key) = rerouted[0].0;
                return Err(ClientError::WrongNode {
                    node,
                    key,
                    message: "the batch's node kept refusing its keys while the ranges changed"
                        .into(),
                });
            }
            if round > 0 {
                move_pause(round);
            }
            round += 1;
            let records: Vec<(u64, Vec<u8>)> = rerouted
                .into_iter()
                .map(|((_, key), value)| (key, value))
                .collect();
            rerouted =
                self.put_batch_once(channel, records.iter().map(|(k, v)| (*k, v.as_slice())))?;
        }
        Ok(())
    }

    /// One round of [`DhtClient::put_batch`]: the records of batches refused with WrongNode
    /// come back (with the refusing node), after the ranges were refreshed; so do those of a
    /// PutBatchVersion a node does not know (they go as PutBatch from then on). Records are
    /// packed per group of nodes they go to (a replica set; while ranges overlap, every node
    /// whose range holds the key) and each batch goes to every live node of its group.
    #[allow(clippy::type_complexity)]
    fn put_batch_once<'v>(
        &self,
        channel: &str,
        records: impl IntoIterator<Item = (u64, &'v [u8])>,
    ) -> Result<Vec<((SocketAddr, u64), Vec<u8>)>, ClientError> {
        let (routes, version) = self.read_routes(|routes| (routes.clone(), routes.version));
        let versions = self.uses_versions();
        let mut slots: Vec<BatchSlot> = Vec::new();
        let mut by_owner: Vec<Option<usize>> = vec![None; routes.table.entries().len()];
        let mut in_flight = VecDeque::new();
        let mut refused = Vec::new();
        for (key, value) in records {
            let slot = BatchSlot::find(&routes, key, versions, &mut slots, &mut by_owner)?;
            match slots[slot].push(key, value, &self.clock) {
                PushOutcome::Added => continue,
                PushOutcome::Full => {
                    self.send_batch(channel, &mut slots[slot], &mut in_flight, &mut refused)?;
                    let pushed = slots[slot].push(key, value, &self.clock);
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
        for slot in &mut slots {
            if !slot.builder.is_empty() {
                self.send_batch(channel, slot, &mut in_flight, &mut refused)?;
            }
        }
        for batch in in_flight {
            self.settle_batch(batch, &mut refused)?;
        }
        if !refused.is_empty() {
            self.refresh_after(version)?;
        }
        Ok(refused)
    }

    fn send_batch(
        &self,
        channel: &str,
        slot: &mut BatchSlot,
        in_flight: &mut VecDeque<BatchInFlight>,
        refused: &mut Vec<((SocketAddr, u64), Vec<u8>)>,
    ) -> Result<(), ClientError> {
        if in_flight.len() >= PUT_BATCH_PIPELINE {
            if let Some(oldest) = in_flight.pop_front() {
                self.settle_batch(oldest, refused)?;
            }
        }
        let mut batch = Vec::new();
        slot.builder.finish_into(&mut batch);
        let mut body = Vec::with_capacity(channel.len() + 1 + batch.len());
        wire::encode_put_batch(&mut body, channel, &batch);
        let live = self.live_members(&slot.members)?;
        let code = match slot.versioned {
            true => wire::PUT_BATCH_VERSION,
            false => wire::PUT_BATCH,
        };
        let pending = self.submit_to(&live, code, body);
        in_flight.push_back(BatchInFlight {
            channel: channel.to_string(),
            members: slot.members.clone(),
            live: live.len(),
            pending,
            batch,
            versioned: slot.versioned,
        });
        Ok(())
    }

    /// Waits for a batch's replies (every member's): acknowledged by `write_quorum`, or a
    /// WrongNode (or a PutBatchVersion the nodes do not know) that hands its records back for
    /// another round.
    fn settle_batch(
        &self,
        sent: BatchInFlight,
        refused: &mut Vec<((SocketAddr, u64), Vec<u8>)>,
    ) -> Result<(), ClientError> {
        let hint = Hint::Batch(&sent.channel, &sent.batch);
        let reply = match self.settle_write(&sent.members, sent.live, None, sent.pending, hint)? {
            Sent::Done((_, reply))
                if sent.versioned && reply.status == Status::UnsupportedRequest =>
            {
                self.versions_unknown_to(reply.node);
                reply
            }
            Sent::Done((_, reply)) => return reply.ok_body().map(drop),
            Sent::WrongNode(reply) => reply,
        };
        let mut scratch = Vec::new();
        let records = decode_batch(&sent.batch, &mut scratch)
            .map_err(|e| ClientError::Setup(format!("cannot re-read a PutBatch batch: {e}")))?;
        for (key, value) in records {
            let value = match sent.versioned {
                // The client wrote it: a version and the value.
                true => value.get(wire::VERSION_LEN..).unwrap_or_default(),
                false => value,
            };
            refused.push(((reply.node, key), value.to_vec()));
        }
        Ok(())
    }

    /// Sends a keyed request to the first live member of the key's replica set (the owner, in
    /// a cluster of one node per range), and to the next live one when it is lost before it
    /// answers or answers NotReady (catching up); returns the index of the node that answered and its reply. See
    /// [`DhtClient::route_set`] for WrongNode, keys no node owns, and nodes that are down.
    pub(crate) fn keyed(
        &self,
        code: RequestCode,
        key: u64,
        body: &[u8],
    ) -> Result<(usize, Reply), ClientError> {
        self.route_set(key, |members| {
            let mut node = self.first_live(members);
            let mut tried = Vec::with_capacity(members.len());
            loop {
                tried.push(node);
                let answer = self.client.submit(node, code, body).and_then(Pending::wait);
                let reply = match answer {
                    // Catching up with its set (an Update needs the current value): the next
                    // member, as for one that is down.
                    Ok(reply) if reply.status == Status::NotReady => {
                        match next_member(members, &tried, |m| self.client.check_node(m).is_ok()) {
                            Some(next) => {
                                node = next;
                                continue;
                            }
                            None => return Ok(Sent::Done((node, reply))),
                        }
                    }
                    Ok(reply) => reply,
                    // Lost before it answered: the next live member, if any. (An Update the
                    // lost member applied is then applied by the next one instead; the member
                    // that comes back gets the set's value replayed.)
                    Err(error) if error.is_node_down() => {
                        match next_member(members, &tried, |m| self.client.check_node(m).is_ok()) {
                            Some(next) => {
                                node = next;
                                continue;
                            }
                            None => return Err(error),
                        }
                    }
                    Err(error) => return Err(error),
                };
                return Ok(match reply.status {
                    Status::WrongNode => Sent::WrongNode(reply),
                    _ => Sent::Done((node, reply)),
                });
            }
        })
    }

    /// Routes `key` to its replica set and hands the members (in node order, never empty) to
    /// `send`. A WrongNode (the node's range changed) makes the client learn the ranges again
    /// and retry, pausing while the cluster is between ranges, until `request_timeout_ms`;
    /// then the WrongNode becomes [`ClientError::WrongNode`]. A key that no node owns fails
    /// with [`ClientError::NoNodeForKey`] at once, unless a redistribution is running (a node
    /// may not have its new range yet). A member that came back since its range was read has
    /// it read again first.
    pub(crate) fn route_set<T>(
        &self,
        key: u64,
        mut send: impl FnMut(&[usize]) -> Result<Sent<T>, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = self.client.request_deadline();
        let mut attempt = 0u32;
        loop {
            let (route, version, stale) = self.plan_route(key);
            if stale && Instant::now() < deadline {
                self.refresh_after(version)?;
                continue;
            }
            let members = match route {
                Ok(members) => members,
                Err(error) if self.is_moving() && Instant::now() < deadline => {
                    tracing::debug!(%error, "waiting for the ranges to settle");
                    move_pause(attempt);
                    attempt += 1;
                    self.refresh_after(version)?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let reply = match send(&members)? {
                Sent::Done(value) => return Ok(value),
                Sent::WrongNode(reply) => reply,
            };
            if Instant::now() >= deadline {
                return Err(wrong_node(reply, key));
            }
            if attempt > 0 {
                move_pause(attempt);
            }
            attempt += 1;
            self.refresh_after(version)?;
        }
    }

    /// Where `key` goes by the routes as they are: its replica set's members (or the routing
    /// error), the routes' version, and whether they are stale for this key (a member came
    /// back, with a new connection, or was retired since its range was read; or no known node
    /// owns the key, and one whose range is unknown came back, or nodes were added since).
    fn plan_route(&self, key: u64) -> (Result<Vec<usize>, ClientError>, u64, bool) {
        self.read_routes(|routes| {
            let route = routes.members(key);
            let is_stale = |node: usize| {
                routes.generations.get(node).copied() != self.client.route_stamp(node)
            };
            let stale = match &route {
                Ok(members) => members.iter().any(|node| is_stale(*node)),
                Err(_) => {
                    routes.known.len() != self.client.node_count()
                        || routes.unknown_nodes().any(is_stale)
                }
            };
            (route, routes.version, stale)
        })
    }

    /// The async client's route for `key` (`crate::asynchronous`): the owner when the routes
    /// answer without a refresh or a wait, else what [`DhtClient::keyed`] would do first.
    #[cfg(feature = "async")]
    pub(crate) fn quick_route(&self, key: u64) -> QuickRoute {
        match self.plan_route(key) {
            (_, _, true) => QuickRoute::Slow,
            // One node: the request goes there. A replica set's fan-out and failover are the
            // blocking client's.
            (Ok(members), _, false) if members.len() == 1 => QuickRoute::Node(members[0]),
            (Ok(_), _, false) => QuickRoute::Slow,
            (Err(_), _, false) if self.is_moving() => QuickRoute::Slow,
            (Err(error), _, false) => QuickRoute::Fail(error),
        }
    }

    /// Whether a NotFound from a key's owner is the answer as it stands: no record can be on
    /// another node (nothing moves) by routes young enough that [`DhtClient::read`] would not
    /// refresh them first.
    #[cfg(feature = "async")]
    pub(crate) fn owner_answer_is_final(&self) -> bool {
        self.read_routes(|routes| {
            !routes.moving() && routes.fetched.elapsed() <= super::routes::MAX_AGE
        })
    }

    /// The rest of a Remove after the owner answered (`removed`: whether it had the record):
    /// while a redistribution runs, the record is removed from the nodes it may still be on.
    pub(crate) fn remove_from_holders(
        &self,
        channel: &str,
        key: u64,
        owner: usize,
        mut removed: bool,
    ) -> Result<bool, ClientError> {
        let Some(others) = self.holders_while_moving(key, owner)? else {
            return Ok(removed);
        };
        let body = key_body(channel, key);
        for node in others {
            let reply = self.client.request(node, wire::REMOVE, &body)?;
            match reply.status {
                Status::Ok => removed = true,
                Status::NotFound | Status::WrongNode => {}
                _ => return reply.into_result().map(|_| removed),
            }
        }
        Ok(removed)
    }

    /// A read (Get or Exists) that finds the record wherever it is now: at a member of its
    /// replica set (in `order`, failing over past members that are down, and on to the other
    /// live members after a NotFound: [`DhtClient::read_members`]); if not there while records
    /// may be elsewhere, at the nodes a redistribution may still have it on; if not there
    /// either, at the set again (it may have arrived in between: a record leaves its old node
    /// only after its new owner has it). Returns the reply (Ok or NotFound) and the index of
    /// the member that answered.
    pub(crate) fn read(
        &self,
        code: RequestCode,
        channel: &str,
        key: u64,
        order: ReadFrom,
    ) -> Result<(Reply, usize), ClientError> {
        self.replay_hints();
        let body = key_body(channel, key);
        let read_set = |members: &[usize]| self.read_members(code, &body, members, order);
        let (owner, reply) = self.route_set(key, read_set)?;
        let reply = reply.into_result()?;
        if reply.status == Status::Ok {
            return Ok((reply, owner));
        }
        let Some(others) = self.holders_while_moving(key, owner)? else {
            return Ok((reply, owner));
        };
        for node in others {
            let other = self.client.request(node, code, &body)?;
            match other.status {
                Status::Ok => return Ok((other, owner)),
                Status::NotFound | Status::WrongNode => {}
                _ => {
                    return Err(other
                        .into_result()
                        .err()
                        .unwrap_or(ClientError::Setup("a failed reply without an error".into())))
                }
            }
        }
        let (owner, reply) = self.route_set(key, read_set)?;
        Ok((reply.into_result()?, owner))
    }
}

/// A PutBatch sent to the live members of a replica set, waiting for their replies.
struct BatchInFlight {
    channel: String,
    members: Vec<usize>,
    live: usize,
    pending: Vec<(usize, Result<Pending, ClientError>)>,
    /// The batch itself, to route its records again after a WrongNode.
    batch: Vec<u8>,
    /// A PutBatchVersion: every record value starts with its version.
    versioned: bool,
}

/// The batch a [`DhtClient::put_batch`] round fills for one group of nodes.
struct BatchSlot {
    members: Vec<usize>,
    /// Several members and versions in use: PutBatchVersion, each record with a version.
    versioned: bool,
    builder: BatchBuilder,
}

impl BatchSlot {
    fn new(members: Vec<usize>, versions: bool) -> BatchSlot {
        BatchSlot {
            versioned: versions && members.len() > 1,
            members,
            builder: BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES),
        }
    }

    /// The slot of `slots` that `key`'s record goes in, added if it is the first record of its
    /// group: the owner's replica set (`by_owner`: the slot of each owner), or, while ranges
    /// overlap, the nodes whose range holds the key ([`super::routes::Routes::members`]).
    fn find(
        routes: &super::routes::Routes,
        key: u64,
        versions: bool,
        slots: &mut Vec<BatchSlot>,
        by_owner: &mut [Option<usize>],
    ) -> Result<usize, ClientError> {
        if routes.overlapping {
            let members = routes.members(key)?;
            if let Some(slot) = slots.iter().position(|slot| slot.members == members) {
                return Ok(slot);
            }
            slots.push(BatchSlot::new(members, versions));
            return Ok(slots.len() - 1);
        }
        let owner = routes.route(key)?;
        if let Some(slot) = by_owner.get(owner).copied().flatten() {
            return Ok(slot);
        }
        slots.push(BatchSlot::new(routes.members_of(owner), versions));
        if let Some(entry) = by_owner.get_mut(owner) {
            *entry = Some(slots.len() - 1);
        }
        Ok(slots.len() - 1)
    }

    /// Adds a record, with a fresh version of `clock` when the batch is versioned (a later
    /// copy of a key in the batch has the higher version, so it wins, as in a PutBatch).
    fn push(&mut self, key: u64, value: &[u8], clock: &super::clock::Clock) -> PushOutcome {
        match self.versioned {
            true => {
                let version = clock.next().to_le_bytes();
                self.builder.push_with_prefix(key, &version, value)
            }
            false => self.builder.push(key, value),
        }
    }
}

/// The first member of a set not tried yet that `live` accepts.
fn next_member(members: &[usize], tried: &[usize], live: impl Fn(usize) -> bool) -> Option<usize> {
    members
        .iter()
        .copied()
        .find(|member| !tried.contains(member) && live(*member))
}

/// A pause while the cluster is between ranges: 10 ms, 20 ms, ... at most 200 ms.
fn move_pause(attempt: u32) {
    let ms = (10u64 << attempt.min(5)).min(200);
    std::thread::sleep(Duration::from_millis(ms));
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

pub(crate) fn key_body(channel: &str, key: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(channel.len() + 9);
    KeyRequest { channel, key }.encode(&mut body);
    body
}

/// Ok → true, NotFound → false, anything else → its error.
pub(crate) fn found(reply: Reply) -> Result<bool, ClientError> {
    Ok(reply.into_result()?.status == Status::Ok)
}

pub(super) fn wrong_node(reply: Reply, key: u64) -> ClientError {
    ClientError::WrongNode {
        node: reply.node,
        key,
        message: reply.message(),
    }
}
