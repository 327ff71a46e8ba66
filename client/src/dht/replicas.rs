//! Replica sets in the dht client: the members a keyed request goes to, and what their answers
//! mean together.
//!
//! A replica set is the nodes whose ranges are exactly equal ([`super::RangeTable`]); every
//! keyed request is routed to its key's set ([`DhtClient::route_set`]), and this module decides
//! which members then get it:
//!
//! - **Writes** (Put, Remove, PutBatch, and an Update's copy to the other members) go to every
//!   member that is not known to be down, all at once (submitted, then waited for: the I/O
//!   thread carries them in parallel), and are acknowledged when `write_quorum` members stored
//!   them ([`crate::WriteQuorum`]; by default every member that is live, at least one). A
//!   member lost while the write is in flight no longer counts as live. A refusal by a member
//!   (a value too big, out of memory) fails the write, as does a quorum not met
//!   ([`ClientError::QuorumNotMet`]); the write may then be on some members.
//! - **Reads** (Get, Exists) go to the first live member (or, with `read_from = spread`, the
//!   next in turn) and on to the next when one is down or answers NotReady (it is catching up
//!   with its set, docs/protocol.md §6.13; writes still go to it): a member known to be down is skipped
//!   without a request, so a dead member costs nothing once the client saw it go. A NotFound
//!   is passed on to the other live members before it is believed (a member that restarted
//!   without its data answers NotFound for what the others hold): a miss costs one round trip
//!   per live member, one after the other.
//!
//! A set of one member (a cluster of one node per range) gets exactly the requests it got
//! before sets existed, and the same errors.

use super::routes::SetId;
use super::{show_range, DhtClient, ReplicaSet};
use crate::error::ClientError;
use crate::partial::Partial;
use crate::replication::{ReadFrom, WriteQuorum};
use crate::reply::{Pending, Reply};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{
    self as wire, KeyRequest, PutRequest, PutVersionRequest, RemoveVersionRequest, VersionedLookup,
};
use node_core::protocol::{RequestCode, Status};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

/// What sending a keyed request to a key's replica set came to.
pub(crate) enum Sent<T> {
    /// The answer.
    Done(T),
    /// A member does not own the key (its range changed): learn the ranges and try again.
    WrongNode(Reply),
}

/// One keyed write, as the caller asked for it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change<'a> {
    Put {
        channel: &'a str,
        key: u64,
        value: &'a [u8],
    },
    Remove {
        channel: &'a str,
        key: u64,
    },
}

impl Change<'_> {
    pub(crate) fn key(&self) -> u64 {
        match self {
            Change::Put { key, .. } | Change::Remove { key, .. } => *key,
        }
    }

    pub(crate) fn channel(&self) -> &str {
        match self {
            Change::Put { channel, .. } | Change::Remove { channel, .. } => channel,
        }
    }

    /// The request without a version: Put, Remove.
    pub(crate) fn plain(&self) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        match *self {
            Change::Put {
                channel,
                key,
                value,
            } => {
                PutRequest {
                    channel,
                    key,
                    value,
                }
                .encode(&mut body);
                (wire::PUT, body)
            }
            Change::Remove { channel, key } => {
                KeyRequest { channel, key }.encode(&mut body);
                (wire::REMOVE, body)
            }
        }
    }

    /// The request with `version`: PutVersion, RemoveVersion.
    pub(crate) fn versioned(&self, version: u64) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        match *self {
            Change::Put {
                channel,
                key,
                value,
            } => {
                PutVersionRequest {
                    channel,
                    key,
                    version,
                    value,
                }
                .encode(&mut body);
                (wire::PUT_VERSION, body)
            }
            Change::Remove { channel, key } => {
                RemoveVersionRequest {
                    channel,
                    key,
                    version,
                }
                .encode(&mut body);
                (wire::REMOVE_VERSION, body)
            }
        }
    }
}

/// What a write that a member missed leaves as hints for it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hint<'a> {
    Key(&'a str, u64),
    /// The keys of a PutBatch batch.
    Batch(&'a str, &'a [u8]),
}

/// A replica set with its members' health, as [`DhtClient::replica_sets`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHealth {
    pub set: ReplicaSet,
    /// The members' addresses, in node order.
    pub addrs: Vec<SocketAddr>,
    /// The members not known to be down, in node order.
    pub live: Vec<usize>,
}

impl DhtClient {
    /// The write quorum in force (options, else topology, else every live member).
    pub fn write_quorum(&self) -> WriteQuorum {
        self.client.options().write_quorum.unwrap_or_default()
    }

    /// Where reads start (options, else topology, else the first live member).
    pub fn read_from(&self) -> ReadFrom {
        self.client.options().read_from.unwrap_or_default()
    }

    /// Every replica set (one per distinct range, even of one member) as last learned, with
    /// which members are live now.
    pub fn replica_sets(&self) -> Vec<SetHealth> {
        let sets = self.read_routes(|routes| routes.table.replica_sets());
        sets.into_iter()
            .map(|set| SetHealth {
                addrs: set
                    .members
                    .iter()
                    .filter_map(|&node| self.client.node_addr(node))
                    .collect(),
                live: set
                    .members
                    .iter()
                    .copied()
                    .filter(|&node| self.client.check_node(node).is_ok())
                    .collect(),
                set,
            })
            .collect()
    }

    /// Writes to the key's replica set: every live member, acknowledged by `write_quorum`.
    /// A set of several members gets the versioned request (PutVersion, RemoveVersion) with a
    /// fresh version of the client's clock, unless the nodes do not know versions (the first
    /// UnsupportedRequest makes this client use Put and Remove from then on); a set of one, the
    /// plain request, as without sets. Returns the member whose reply stands for the set's (an
    /// Ok one if any) and that reply.
    pub(crate) fn write(&self, change: Change<'_>) -> Result<(usize, Reply), ClientError> {
        self.replay_hints();
        loop {
            let versioned = self.uses_versions();
            let (node, reply) = self.route_set(change.key(), |members| {
                let (code, body) = match members.len() > 1 && versioned {
                    true => change.versioned(self.clock.next()),
                    false => change.plain(),
                };
                let live = self.live_members(members)?;
                let pending = self.submit_to(&live, code, body);
                let hint = Hint::Key(change.channel(), change.key());
                self.settle_write(members, live.len(), None, pending, hint)
            })?;
            if versioned && reply.status == Status::UnsupportedRequest {
                self.versions_unknown_to(reply.node);
                continue;
            }
            return Ok((node, reply));
        }
    }

    /// `node` answered a versioned write UnsupportedRequest: this client writes without
    /// versions from now on (PutVersion, RemoveVersion, PutBatchVersion become Put, Remove,
    /// PutBatch), and says so once.
    pub(crate) fn versions_unknown_to(&self, node: SocketAddr) {
        if !self.versions_unsupported.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                %node,
                "the dht nodes do not know versioned writes (PutVersion, PutBatchVersion): \
                 replicated writes go as Put, Remove and PutBatch, and replicas written in \
                 different orders may differ"
            );
        }
    }

    /// Whether replicated writes carry versions (until a node said it does not know them).
    pub(crate) fn uses_versions(&self) -> bool {
        !self.versions_unsupported.load(Ordering::Acquire)
    }

    /// Whether `key`'s set has several members and its writes carry versions.
    pub(crate) fn writes_versioned(&self, key: u64) -> bool {
        self.uses_versions()
            && self.read_routes(|routes| routes.members(key).is_ok_and(|m| m.len() > 1))
    }

    /// The first member not known to be down; the first member if all are.
    pub(crate) fn first_live(&self, members: &[usize]) -> usize {
        debug_assert!(!members.is_empty(), "a replica set has members");
        members
            .iter()
            .copied()
            .find(|&node| self.client.check_node(node).is_ok())
            .or_else(|| members.first().copied())
            .unwrap_or(0)
    }

    /// The members a write goes to: those not known to be down. Fails when none is live (with
    /// the first member's error: a set of one fails as its node does) or, with a quorum of N
    /// members, when fewer than N are live.
    pub(crate) fn live_members(&self, members: &[usize]) -> Result<Vec<usize>, ClientError> {
        let mut live = Vec::with_capacity(members.len());
        let mut first_error = None;
        for &node in members {
            match self.client.check_node(node) {
                Ok(()) => live.push(node),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if live.is_empty() {
            return Err(first_error.unwrap_or(ClientError::NoNodes));
        }
        let required = self.write_quorum().required(live.len());
        if live.len() < required {
            return Err(self.quorum_error(members, live.len(), required, None));
        }
        Ok(live)
    }

    /// Submits one request to each of `nodes` (pipelined); a submit that fails is the
    /// member's answer.
    pub(crate) fn submit_to(
        &self,
        nodes: &[usize],
        code: RequestCode,
        body: Vec<u8>,
    ) -> Vec<(usize, Result<Pending, ClientError>)> {
        let mut submitted = Vec::with_capacity(nodes.len());
        let Some((&last, rest)) = nodes.split_last() else {
            return submitted;
        };
        for &node in rest {
            submitted.push((node, self.client.submit_owned(node, code, body.clone())));
        }
        submitted.push((last, self.client.submit_owned(last, code, body)));
        submitted
    }

    /// Waits for every member's answer to a write sent to `live` members of the set `members`
    /// (`already`: a member that stored it before, e.g. the Update the write copies) and judges
    /// them together: a WrongNode sends the write round again; a refusal is the answer; else
    /// the write stands when `write_quorum` members stored it (Ok, or NotFound for a Remove).
    pub(crate) fn settle_write(
        &self,
        members: &[usize],
        live: usize,
        already: Option<(usize, Reply)>,
        pending: Vec<(usize, Result<Pending, ClientError>)>,
        hint: Hint<'_>,
    ) -> Result<Sent<(usize, Reply)>, ClientError> {
        let mut stored = usize::from(already.is_some());
        let mut stored_on: Vec<usize> = already.iter().map(|(node, _)| *node).collect();
        let mut best = already;
        let (mut wrong, mut refused, mut lost, mut lost_count) = (None, None, None, 0);
        for (node, pending) in pending {
            match pending.and_then(Pending::wait) {
                Ok(reply) if reply.status == Status::WrongNode => {
                    wrong.get_or_insert(reply);
                }
                Ok(reply) if matches!(reply.status, Status::Ok | Status::NotFound) => {
                    stored += 1;
                    stored_on.push(node);
                    let better = best
                        .as_ref()
                        .is_none_or(|(_, best)| best.status != Status::Ok);
                    if better {
                        best = Some((node, reply));
                    }
                }
                Ok(reply) => {
                    refused.get_or_insert((node, reply));
                }
                Err(error) if error.is_node_down() => {
                    lost_count += 1;
                    lost.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        if let Some(reply) = wrong {
            return Ok(Sent::WrongNode(reply));
        }
        if let Some(refused) = refused {
            return Ok(Sent::Done(refused));
        }
        if stored > 0 && members.len() > stored {
            self.leave_hints(members, &stored_on, hint);
        }
        let still_live = live.saturating_sub(lost_count);
        let required = self.write_quorum().required(still_live);
        match (best, lost) {
            (Some(best), _) if stored >= required => Ok(Sent::Done(best)),
            // Nothing stored anywhere: the one node's error, as without sets.
            (None, Some(error)) => Err(error),
            _ => Err(self.quorum_error(members, still_live, required, Some(stored))),
        }
    }

    /// Hints for the members of `members` that did not store a write (see `hints`).
    fn leave_hints(&self, members: &[usize], stored_on: &[usize], hint: Hint<'_>) {
        for &node in members.iter().filter(|node| !stored_on.contains(node)) {
            match hint {
                Hint::Key(channel, key) => self.hints.record(node, channel, [key]),
                Hint::Batch(channel, batch) => {
                    let mut scratch = Vec::new();
                    match decode_batch(batch, &mut scratch) {
                        Ok(records) => {
                            self.hints
                                .record(node, channel, records.map(|(key, _)| key))
                        }
                        Err(error) => tracing::warn!(%error, "a PutBatch batch without hints"),
                    }
                }
            }
        }
    }

    fn quorum_error(
        &self,
        members: &[usize],
        live: usize,
        required: usize,
        stored: Option<usize>,
    ) -> ClientError {
        let range = self.read_routes(|routes| {
            members
                .first()
                .and_then(|&node| routes.table.entries().get(node))
                .map(|(_, range)| show_range(range))
                .unwrap_or_default()
        });
        ClientError::QuorumNotMet {
            range,
            members: members
                .iter()
                .filter_map(|&node| self.client.node_addr(node))
                .collect(),
            live,
            required,
            stored,
        }
    }

    /// A read (Get, Exists) of a replica set: the members in `order`, skipping those known to
    /// be down and those that fail as down or answer NotReady; an Ok (or a refusal) is the answer; a NotFound is
    /// the answer only once every live member said it. When no member could answer, the first
    /// one's error (a set of one fails as its node does).
    pub(crate) fn read_members(
        &self,
        code: RequestCode,
        body: &[u8],
        members: &[usize],
        order: ReadFrom,
    ) -> Result<Sent<(usize, Reply)>, ClientError> {
        let (mut not_found, mut first_error) = (None, None);
        for node in self.read_order(members, order) {
            let answer = self
                .client
                .check_node(node)
                .and_then(|()| self.client.submit(node, code, body))
                .and_then(Pending::wait);
            match answer {
                Ok(reply) if reply.status == Status::WrongNode => {
                    return Ok(Sent::WrongNode(reply))
                }
                Ok(reply) if reply.status == Status::NotFound => {
                    not_found.get_or_insert((node, reply));
                }
                // Catching up with its set: as if down, for reads.
                Ok(reply) if reply.status == Status::NotReady => {
                    if let Err(error) = reply.into_result() {
                        first_error.get_or_insert(error);
                    }
                }
                Ok(reply) => return Ok(Sent::Done((node, reply))),
                Err(error) if error.is_node_down() => {
                    first_error.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        match (not_found, first_error) {
            (Some(answer), _) => Ok(Sent::Done(answer)),
            (None, Some(error)) => Err(error),
            (None, None) => Err(ClientError::NoNodes),
        }
    }

    /// The members in the order a read tries them: node order, or with `Spread` starting at
    /// the next member in turn.
    fn read_order(&self, members: &[usize], order: ReadFrom) -> Vec<usize> {
        let start = match order {
            ReadFrom::First => 0,
            ReadFrom::Spread if members.is_empty() => 0,
            ReadFrom::Spread => self.read_turn.fetch_add(1, Ordering::Relaxed) % members.len(),
        };
        let mut order: Vec<usize> = members[start..]
            .iter()
            .chain(&members[..start])
            .copied()
            .collect();
        if self.hints.any() {
            // A member with writes still to replay may hold old values: the others first.
            order.sort_by_key(|&node| self.hints.has(node));
        }
        order
    }

    /// Copies an Update that `node` applied (its Ok `reply`) to its replica set, acknowledged
    /// by `write_quorum`: with versions, a PutVersion (or RemoveVersion) of the new value with
    /// a fresh version to every live member, `node` included, so that the Update's result has
    /// a version like every other write (the Update itself stores version 0) and the members
    /// converge whatever else is written meanwhile; without versions, a Put (or Remove) to the
    /// other live members, counting `node`.
    pub(crate) fn replicate_update(
        &self,
        channel: &str,
        key: u64,
        node: usize,
        reply: Reply,
        decision: &super::UpdateDecision,
    ) -> Result<(), ClientError> {
        let members = self.read_routes(|routes| routes.members_of(node));
        let change = match decision {
            super::UpdateDecision::Write(value) => Change::Put {
                channel,
                key,
                value,
            },
            super::UpdateDecision::Remove => Change::Remove { channel, key },
            super::UpdateDecision::Leave => return reply.ok_body().map(drop),
        };
        if members.len() < 2 {
            return reply.ok_body().map(drop);
        }
        let versioned = self.uses_versions();
        let live: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&member| {
                (versioned || member != node) && self.client.check_node(member).is_ok()
            })
            .collect();
        let ((code, body), already, counted) = match versioned {
            true => (change.versioned(self.clock.next()), None, live.len()),
            false => (change.plain(), Some((node, reply)), live.len() + 1),
        };
        let pending = self.submit_to(&live, code, body);
        let hint = Hint::Key(channel, key);
        match self.settle_write(&members, counted, already, pending, hint)? {
            Sent::Done((_, reply)) => reply.ok_body().map(drop),
            Sent::WrongNode(reply) => Err(super::keyed::wrong_node(reply, key)),
        }
    }

    /// An Update's read of the current value, at the set's first live member: with versions
    /// (a set of several members), GetWithVersion, whose version the clock observes so that
    /// the Update's copy is newer than what it replaces; the reply is then shaped as a Get's.
    pub(crate) fn read_for_update(
        &self,
        channel: &str,
        key: u64,
    ) -> Result<(Reply, usize), ClientError> {
        if !self.writes_versioned(key) {
            return self.read(wire::GET, channel, key, ReadFrom::First);
        }
        let (mut reply, node) =
            match self.read(wire::GET_WITH_VERSION, channel, key, ReadFrom::First) {
                Err(ClientError::Status {
                    status: Status::UnsupportedRequest,
                    ..
                }) => {
                    self.versions_unsupported.store(true, Ordering::Release);
                    return self.read(wire::GET, channel, key, ReadFrom::First);
                }
                other => other?,
            };
        let found = reply.status == Status::Ok;
        match wire::decode_versioned_lookup(found, &reply.body) {
            Ok(VersionedLookup::Found { version, value }) => {
                self.clock.observe(version);
                reply.body = value.to_vec();
            }
            Ok(VersionedLookup::Tombstone { version }) => {
                self.clock.observe(version);
                reply.body.clear();
            }
            Ok(VersionedLookup::Absent) => {}
            Err(error) => return Err(super::body_error(reply.node, "GetWithVersion", error)),
        }
        Ok((reply, node))
    }

    /// A fan-out's answers counted once per replica set: of the members that answered, the
    /// first in node order stands for its set; a member that could not answer is missing only
    /// when no member of its set answered. The answers are in node order.
    pub(crate) fn one_per_set<T>(
        &self,
        answers: Partial<Vec<(SocketAddr, T)>>,
    ) -> Partial<Vec<(SocketAddr, T)>> {
        let set_of = self.set_lookup();
        let mut answered: HashSet<SetId> = HashSet::new();
        let mut value = Vec::with_capacity(answers.value.len());
        for (addr, answer) in answers.value {
            match set_of(&addr) {
                Some(set) if !answered.insert(set) => {}
                _ => value.push((addr, answer)),
            }
        }
        Partial {
            value,
            missing: Self::uncovered(&set_of, &answered, answers.missing),
        }
    }

    /// A fan-out's answers, all kept, with a member that could not answer missing only when
    /// no member of its set answered.
    pub(crate) fn covered_by_sets<T>(
        &self,
        answers: Partial<Vec<(SocketAddr, T)>>,
    ) -> Partial<Vec<(SocketAddr, T)>> {
        let set_of = self.set_lookup();
        let answered: HashSet<SetId> = answers
            .value
            .iter()
            .filter_map(|(addr, _)| set_of(addr))
            .collect();
        Partial {
            missing: Self::uncovered(&set_of, &answered, answers.missing),
            value: answers.value,
        }
    }

    /// With a quorum of N members, fails unless every replica set of more than one member had
    /// N answers in `answers` (a whole-channel write: RemoveChannel).
    pub(crate) fn check_set_quorums<T>(
        &self,
        answers: &Partial<Vec<(SocketAddr, T)>>,
    ) -> Result<(), ClientError> {
        let WriteQuorum::Members(required) = self.write_quorum() else {
            return Ok(());
        };
        for health in self.replica_sets() {
            let stored = health
                .addrs
                .iter()
                .filter(|addr| answers.value.iter().any(|(answered, _)| answered == *addr))
                .count();
            if health.set.members.len() > 1 && stored < required as usize {
                return Err(self.quorum_error(
                    &health.set.members,
                    health.live.len(),
                    required as usize,
                    Some(stored),
                ));
            }
        }
        Ok(())
    }

    /// Which set the node at an address is in, by the routes as they are now.
    fn set_lookup(&self) -> impl Fn(&SocketAddr) -> Option<SetId> {
        let nodes: Vec<(SocketAddr, SetId)> = self.read_routes(|routes| {
            (0..routes.table.entries().len())
                .map(|node| (routes.table.entries()[node].0, routes.set_of(node)))
                .collect()
        });
        move |addr| {
            nodes
                .iter()
                .find(|(known, _)| known == addr)
                .map(|(_, set)| *set)
        }
    }

    fn uncovered(
        set_of: &impl Fn(&SocketAddr) -> Option<SetId>,
        answered: &HashSet<SetId>,
        missing: Vec<(SocketAddr, ClientError)>,
    ) -> Vec<(SocketAddr, ClientError)> {
        missing
            .into_iter()
            .filter(|(addr, _)| set_of(addr).is_none_or(|set| !answered.contains(&set)))
            .collect()
    }
}
