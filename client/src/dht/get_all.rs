//! [`GetAll`]: every record of a channel over every node of the cluster, as an iterator, resumed
//! where it broke off when a node's connection drops.
//!
//! Nodes are read **one after the other**, in node order: memory stays bounded by one stream
//! window (plus one decoded batch), and a caller that stops iterating pauses exactly one node.
//! A tool that wants the nodes read in parallel can run one [`GetAll`] per node itself with
//! [`GetAll::single_node`].
//!
//! During a redistribution (a node reports one running, or two nodes claim the same positions)
//! a record may briefly be on two nodes, its old one and its new one. Then the client reads in
//! two phases: first, from every node, the records *outside* that node's range (those not moved
//! yet) whose owner does not have the key (asked with pipelined Exists: a key the owner has was
//! written there during the move, or has just arrived, and the owner's copy is the current
//! one), remembering their keys; then, from every node, the records *inside* its range,
//! skipping the keys already delivered. A record moves only from outside its old node's range
//! to inside its new node's, and leaves the old node only after the new one has it, so each
//! record is delivered exactly once whether it moved before, during or after the walk. What
//! this costs: one Exists per record still to move, and 8 bytes (plus hash-set overhead) per
//! such record delivered, at most [`MAX_MOVING_KEYS`] of them. A redistribution that *starts* while a GetAll runs is not seen by it: records moving
//! then may be delivered twice or missed; read again after the move (swarmctl waits for it).
//! Before it starts, a GetAll asks the nodes their ranges, and waits (up to
//! `request_timeout_ms`) while two nodes claim the same positions: that happens only in the
//! moment a redistribution is being started.
//!
//! Replica sets: a set is read once, from one member (the first live one when the walk plans
//! its streams). When that member is lost (down, or its connection dropped and it cannot be
//! reached again), the set's stream continues on another live member of the set with
//! `resume_after` = the last key received: the order of a channel's records is fixed by the
//! keys alone, the same on every member. What the members hold differently (a write that
//! reached one of them only, a member that missed writes while it was down) is read as the
//! member that serves the stream holds it.
//!
//! Resuming: each record's key is remembered as its batch is decoded. When the stream from a
//! node fails with a transport error (the connection dropped, or the node went quiet past the
//! request timeout), the client reconnects and starts that node's GetAll again with
//! `resume_after` = the last key received, so the node continues after it and every record is
//! delivered exactly once. A node is tried again at most [`MAX_RESUMES`] times in a row without
//! receiving anything in between (waiting 50 ms, 100 ms, ... up to 1 s between tries); then the
//! iterator yields the last error and ends.

use super::DhtClient;
use crate::error::ClientError;
use crate::reply::{Stream, StreamEvent};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{
    self as wire, GetAllRequest, GetAllScope, KeyRequest, MAX_FILTER_LEN,
};
use node_core::protocol::Status;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Attempts to resume one node's stream in a row, without progress in between.
pub const MAX_RESUMES: u32 = 8;
/// Records still to move that a GetAll during a redistribution may remember (see the module
/// doc); beyond it, it fails and asks to read again after the move.
pub const MAX_MOVING_KEYS: usize = 8 << 20;
/// Exists requests in flight while checking a batch of records still on their old node.
const EXISTS_PIPELINE: usize = 256;
const FIRST_RESUME_DELAY: Duration = Duration::from_millis(50);
const MAX_RESUME_DELAY: Duration = Duration::from_secs(1);

/// What a [`GetAll`] asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetAllOptions {
    /// Keys only: every record comes with an empty value.
    pub keys_only: bool,
    /// Only records whose value contains these bytes (at most 4096 of them). `None` or empty:
    /// every record.
    pub filter: Option<Vec<u8>>,
}

/// The records of a channel, node after node; yields `Ok((key, value))` for each, or one
/// `Err` after which it ends. See the module documentation for the order and for resuming.
pub struct GetAll<'a> {
    dht: &'a DhtClient,
    channel: String,
    options: GetAllOptions,
    /// The node streams still to read, front first: node index and which of its records.
    legs: VecDeque<(usize, GetAllScope)>,
    /// Whether the legs were decided (the first `next` asks the nodes their ranges).
    planned: bool,
    /// Keys delivered by `OutsideRange` legs, skipped by `InsideRange` ones.
    moving_keys: HashSet<u64>,
    /// The ranges the legs were planned with (whose owner to ask about a record still on its
    /// old node); `None` for a single node's GetAll.
    table: Option<super::RangeTable>,
    stream: Option<Stream>,
    /// The last key received from the current node: where a resumed stream starts after.
    last_key: Option<u64>,
    /// Resumes of the current node since it last delivered anything.
    failures: u32,
    resumes: u64,
    ready: VecDeque<(u64, Vec<u8>)>,
    scratch: Vec<u8>,
    done: bool,
    /// Skip the nodes that cannot be read instead of failing ([`DhtClient::get_all_partial`]).
    partial: bool,
    /// Per node a leg reads: the other members of its replica set, for failover.
    replicas: HashMap<usize, Vec<usize>>,
    /// Members of the current leg's set already given up on.
    abandoned: Vec<usize>,
    /// The nodes skipped, with their errors.
    missing: Vec<(SocketAddr, ClientError)>,
}

impl<'a> GetAll<'a> {
    pub(super) fn new(
        dht: &'a DhtClient,
        channel: &str,
        options: GetAllOptions,
        partial: bool,
    ) -> GetAll<'a> {
        let mut get_all = GetAll::over(dht, channel, options, VecDeque::new(), false);
        get_all.partial = partial;
        get_all
    }

    /// The records of one node only (index as in [`DhtClient::client`]), with the same
    /// resuming.
    pub fn single_node(
        dht: &'a DhtClient,
        node: usize,
        channel: &str,
        options: GetAllOptions,
    ) -> GetAll<'a> {
        GetAll::over(
            dht,
            channel,
            options,
            VecDeque::from([(node, GetAllScope::All)]),
            true,
        )
    }

    fn over(
        dht: &'a DhtClient,
        channel: &str,
        options: GetAllOptions,
        legs: VecDeque<(usize, GetAllScope)>,
        planned: bool,
    ) -> GetAll<'a> {
        GetAll {
            dht,
            channel: channel.to_string(),
            options,
            legs,
            planned,
            moving_keys: HashSet::new(),
            table: None,
            stream: None,
            last_key: None,
            failures: 0,
            resumes: 0,
            ready: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
            partial: false,
            missing: Vec::new(),
            replicas: HashMap::new(),
            abandoned: Vec::new(),
        }
    }

    /// How many times a node's stream was resumed after a dropped connection, so far.
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// The nodes a partial GetAll ([`DhtClient::get_all_partial`]) skipped because they could
    /// not be read (down, or lost for good in the middle: their records received before that
    /// were delivered), with their errors. Complete only once the iteration has ended; empty
    /// for a GetAll that fails instead.
    pub fn missing(&self) -> &[(SocketAddr, ClientError)] {
        &self.missing
    }

    /// Whether the iteration ended with every node read (false while it runs).
    pub fn is_complete(&self) -> bool {
        self.done && self.missing.is_empty()
    }

    fn addr(&self, node: usize) -> SocketAddr {
        self.dht
            .client
            .node_addr(node)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Decides the node streams: every record of every node, or, while records are moving,
    /// the two phases of the module doc.
    fn plan(&mut self) -> Result<(), ClientError> {
        let deadline = self.dht.client.request_deadline();
        let mut pause = Duration::from_millis(10);
        let routes = loop {
            let version = self.dht.read_routes(|routes| routes.version);
            self.dht.refresh_after(version)?;
            let routes = self.dht.read_routes(Clone::clone);
            if !routes.overlapping || Instant::now() >= deadline {
                break routes;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        };
        self.dht.replay_hints();
        let nodes = self.one_member_per_set(&routes);
        self.table = Some(routes.table.clone());
        self.legs = if routes.moving() {
            nodes
                .iter()
                .map(|&node| (node, GetAllScope::OutsideRange))
                .chain(nodes.iter().map(|&node| (node, GetAllScope::InsideRange)))
                .collect()
        } else {
            nodes.iter().map(|&node| (node, GetAllScope::All)).collect()
        };
        self.planned = true;
        Ok(())
    }

    /// The nodes to read: of each replica set, its first live member (its first member when
    /// none is live), remembering the others for failover; nodes of unknown range alone.
    fn one_member_per_set(&mut self, routes: &super::routes::Routes) -> Vec<usize> {
        let mut chosen = Vec::new();
        let mut seen = HashSet::new();
        for node in self.dht.client.active_nodes() {
            if !seen.insert(routes.set_of(node)) {
                continue;
            }
            let members: Vec<usize> = routes
                .members_of(node)
                .into_iter()
                .filter(|member| {
                    !self
                        .dht
                        .client
                        .node_status(*member)
                        .is_some_and(|s| s.is_retired())
                })
                .collect();
            // A member with writes still to replay may hold old values: the others first.
            let fresh: Vec<usize> = members
                .iter()
                .copied()
                .filter(|member| !self.dht.hints.has(*member))
                .collect();
            let first = match fresh.iter().any(|m| self.dht.client.check_node(*m).is_ok()) {
                true => self.dht.first_live(&fresh),
                false => self.dht.first_live(&members),
            };
            let others = members.into_iter().filter(|m| *m != first).collect();
            self.replicas.insert(first, others);
            chosen.push(first);
        }
        chosen
    }

    /// After the current leg's node was lost: continue the leg on another live member of its
    /// replica set (resuming after the last key received), if there is one.
    fn fail_over(&mut self, error: &ClientError) -> bool {
        let Some(&(node, scope)) = self.legs.front() else {
            return false;
        };
        let Some(others) = self.replicas.get(&node) else {
            return false;
        };
        let next = others.iter().copied().find(|member| {
            !self.abandoned.contains(member) && self.dht.client.check_node(*member).is_ok()
        });
        let Some(next) = next else {
            return false;
        };
        tracing::debug!(%error, "GetAll: continuing the replica set's stream on another member");
        let mut set: Vec<usize> = others.iter().copied().filter(|m| *m != next).collect();
        set.push(node);
        self.replicas.insert(next, set);
        self.abandoned.push(node);
        for leg in self.legs.iter_mut().filter(|(leg, _)| *leg == node) {
            leg.0 = next;
        }
        debug_assert_eq!(self.legs.front(), Some(&(next, scope)));
        self.stream = None;
        self.failures = 0;
        true
    }

    fn open(&mut self, node: usize, scope: GetAllScope) -> Result<Stream, ClientError> {
        let filter = self.options.filter.as_deref().unwrap_or_default();
        if filter.len() > MAX_FILTER_LEN {
            return Err(ClientError::Setup(format!(
                "GetAll filter of {} bytes exceeds the limit of {MAX_FILTER_LEN}",
                filter.len()
            )));
        }
        let mut body = Vec::new();
        GetAllRequest {
            channel: &self.channel,
            keys_only: self.options.keys_only,
            resume_after: self.last_key,
            filter,
            scope,
        }
        .encode(&mut body);
        self.dht.client.stream(node, wire::GET_ALL, &body)
    }

    /// Takes one event of the current node's stream; `Ok(false)` when that node is done.
    fn on_event(
        &mut self,
        node: usize,
        scope: GetAllScope,
        event: StreamEvent,
    ) -> Result<bool, ClientError> {
        match event {
            StreamEvent::Item { code, body } if code == wire::ITEM_RECORD_BATCH => {
                let addr = self.addr(node);
                let records = decode_batch(&body, &mut self.scratch)
                    .map_err(|e| ClientError::protocol(addr, format!("GetAll batch: {e}")))?;
                let mut batch: Vec<(u64, Vec<u8>)> =
                    records.map(|(key, value)| (key, value.to_vec())).collect();
                if let Some((key, _)) = batch.last() {
                    self.last_key = Some(*key);
                }
                match scope {
                    GetAllScope::All => self.ready.extend(batch),
                    GetAllScope::InsideRange => self.ready.extend(
                        batch
                            .into_iter()
                            .filter(|(key, _)| !self.moving_keys.contains(key)),
                    ),
                    GetAllScope::OutsideRange => {
                        // On two old nodes at once: delivered already.
                        batch.retain(|(key, _)| !self.moving_keys.contains(key));
                        let batch = self.not_at_owner(node, batch)?;
                        if self.moving_keys.len() + batch.len() > MAX_MOVING_KEYS {
                            return Err(ClientError::Setup(format!(
                                "GetAll during a redistribution: more than {MAX_MOVING_KEYS} \
                                 records are still to move; read again after the move"
                            )));
                        }
                        self.moving_keys.extend(batch.iter().map(|(key, _)| *key));
                        self.ready.extend(batch);
                    }
                }
                self.failures = 0;
                Ok(true)
            }
            StreamEvent::Item { code, .. } => Err(ClientError::protocol(
                self.addr(node),
                format!("GetAll stream sent an item of unknown code {code}"),
            )),
            // NotFound: a node that has never had the channel; nothing to read there.
            StreamEvent::End(reply) if reply.status.is_success() => Ok(false),
            StreamEvent::End(reply) => reply.into_result().map(|_| false),
        }
    }

    /// The records of a batch read from `node` outside its range whose owner does not have
    /// the key: a record both there and here was written at its new owner during the move
    /// (or has just arrived there); the owner's copy is the one delivered, in the second phase.
    fn not_at_owner(
        &self,
        node: usize,
        batch: Vec<(u64, Vec<u8>)>,
    ) -> Result<Vec<(u64, Vec<u8>)>, ClientError> {
        let client = &self.dht.client;
        let mut kept = Vec::with_capacity(batch.len());
        let mut rest = batch.into_iter().peekable();
        while rest.peek().is_some() {
            let mut asked = Vec::with_capacity(EXISTS_PIPELINE);
            for (key, value) in rest.by_ref().take(EXISTS_PIPELINE) {
                let owner = self.table.as_ref().and_then(|table| table.owner(key));
                let pending = match owner {
                    Some(owner) if owner != node => {
                        let mut body = Vec::with_capacity(self.channel.len() + 9);
                        KeyRequest {
                            channel: &self.channel,
                            key,
                        }
                        .encode(&mut body);
                        Some(client.submit_owned(owner, wire::EXISTS, body)?)
                    }
                    _ => None,
                };
                asked.push((key, value, pending));
            }
            for (key, value, pending) in asked {
                let at_owner = match pending {
                    None => false,
                    Some(pending) => {
                        let reply = pending.wait()?;
                        match reply.status {
                            Status::Ok => true,
                            Status::NotFound | Status::WrongNode => false,
                            _ => return reply.into_result().map(|_| Vec::new()),
                        }
                    }
                };
                if !at_owner {
                    kept.push((key, value));
                }
            }
        }
        Ok(kept)
    }

    /// Decides what a failure of the current node's stream means: `Ok` to try again (after a
    /// pause) or, in a partial GetAll, to go on with the next node; `Err` to give up.
    fn on_failure(&mut self, error: ClientError) -> Result<(), ClientError> {
        let resumable = matches!(
            error,
            ClientError::Disconnected { .. }
                | ClientError::Timeout { .. }
                | ClientError::Connect { .. }
                | ClientError::ConnectionLimit { .. }
                | ClientError::NodeDown { .. }
        );
        // Lost for now, or catching up with its set (NotReady): another member of its replica
        // set takes over at once.
        let not_ready = error.is_not_ready();
        let lost = not_ready
            || matches!(error, ClientError::NodeDown { .. })
            || (resumable
                && self.failures >= 1
                && self.dht.client.check_node(self.current()).is_err());
        if lost && self.fail_over(&error) {
            return Ok(());
        }
        // A partial GetAll does not wait for a node known to be down.
        let known_down = matches!(error, ClientError::NodeDown { .. });
        if self.partial && (not_ready || resumable && (known_down || self.failures >= MAX_RESUMES))
        {
            self.skip_node(error);
            return Ok(());
        }
        if !resumable || self.failures >= MAX_RESUMES {
            return Err(error);
        }
        tracing::debug!(%error, last_key = ?self.last_key, "GetAll resuming");
        let delay = FIRST_RESUME_DELAY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_RESUME_DELAY);
        self.failures += 1;
        self.resumes += 1;
        self.stream = None;
        std::thread::sleep(delay);
        Ok(())
    }

    /// The node of the current leg.
    fn current(&self) -> usize {
        self.legs.front().map_or(0, |(node, _)| *node)
    }

    /// Leaves the current node out (a partial GetAll): its remaining legs are dropped, and it
    /// is listed in `missing`.
    fn skip_node(&mut self, error: ClientError) {
        let Some(&(node, _)) = self.legs.front() else {
            return;
        };
        tracing::debug!(%error, "partial GetAll: leaving a node out");
        self.legs.retain(|(leg_node, _)| *leg_node != node);
        self.stream = None;
        self.last_key = None;
        self.failures = 0;
        self.missing.push((self.addr(node), error));
    }

    /// Reads until records are ready, the end, or an error.
    fn fill(&mut self) -> Result<(), ClientError> {
        if !self.planned {
            self.plan()?;
        }
        while self.ready.is_empty() {
            let Some(&(node, scope)) = self.legs.front() else {
                self.done = true;
                return Ok(());
            };
            if self.stream.is_none() {
                match self.open(node, scope) {
                    Ok(stream) => self.stream = Some(stream),
                    Err(error) => {
                        self.on_failure(error)?;
                        continue;
                    }
                }
            }
            let event = self.stream.as_mut().and_then(Iterator::next);
            let more = match event {
                Some(Ok(event)) => match self.on_event(node, scope, event) {
                    Ok(more) => more,
                    // The node is catching up with its set: another member takes the leg.
                    Err(error) if error.is_not_ready() => {
                        self.on_failure(error)?;
                        continue;
                    }
                    Err(error) => return Err(error),
                },
                Some(Err(error)) => {
                    self.on_failure(error)?;
                    continue;
                }
                None => false,
            };
            if !more {
                self.stream = None;
                self.legs.pop_front();
                self.last_key = None;
                self.failures = 0;
                self.abandoned.clear();
            }
        }
        Ok(())
    }
}

impl Iterator for GetAll<'_> {
    type Item = Result<(u64, Vec<u8>), ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.ready.pop_front() {
            return Some(Ok(record));
        }
        if self.done {
            return None;
        }
        if let Err(error) = self.fill() {
            self.done = true;
            self.stream = None;
            self.ready.clear();
            return Some(Err(error));
        }
        self.ready.pop_front().map(Ok)
    }
}

impl std::fmt::Debug for GetAll<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetAll")
            .field("channel", &self.channel)
            .field("streams_left", &self.legs.len())
            .field("last_key", &self.last_key)
            .field("resumes", &self.resumes)
            .finish_non_exhaustive()
    }
}
