//! The redistribution worker thread: moves every record outside the node's new range to the
//! target that owns it, pass after pass, until none is left (see the module doc of
//! [`super`] for the protocol it follows and why).
//!
//! Targets whose ranges are equal are the members of one replica set, handled together (a
//! [`Target`]): every record goes to each member, and is deleted here only once every member
//! committed it.
//!
//! One pass: for each channel, for each shard, copy out the records outside the new range
//! with their versions (under the shard's lock, which the event loop takes for one request at
//! a time), then the channel's tombstones outside it, pack each into its target's batch, send
//! full batches to every member (RedistBatchVersion: applied by version, so a copy sent twice,
//! or by several members of the source set, changes nothing), and every
//! [`super::Tuning::commit_records`] records and at the end of the channel ask every member to
//! commit (RedistCommit) and then the loop to delete what the set now holds durably.
//! Tombstones are copied, not deleted here: they expire as every tombstone does.
//! A batch or commit that fails is retried with backoff; after
//! [`super::Tuning::attempts_per_target`] failures the target is left alone for the rest of
//! the pass. After the pass the worker counts what is still to move; if anything is, it waits
//! [`super::Tuning::pass_pause`] and runs another pass. It stops early only when the node
//! shuts down.

use super::{DeleteOutcome, DeleteRequest, Progress, Tuning};
use crate::engine::{Channel, SHARD_COUNT};
use crate::peer::PeerLogin;
use crate::state::{self, NodeState};
use client::{Client, Reply};
use node_core::auth::Key;
use node_core::protocol::batch::{BatchBuilder, PushOutcome, DEFAULT_BATCH_TARGET_BYTES};
use node_core::protocol::dht::{
    self as wire, value_hash, Expected, HashRange, RedistBatchReply, RedistributeTarget,
    RefreshRecord, UpdateAction, UpdateRequest,
};
use node_core::protocol::{RequestCode, Status};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the worker logs its progress to root.log.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Attempts at removing, on a target, a record that was removed here after it was sent.
const COMPENSATION_ATTEMPTS: u32 = 3;
/// Tombstones read from a channel at a time (under its tombstones' lock).
const TOMBSTONE_WINDOW: usize = 1024;

/// Everything the worker needs, handed over by the loop.
pub(crate) struct Context {
    pub range: HashRange,
    pub targets: Vec<RedistributeTarget>,
    pub channels: Vec<(String, Arc<Channel>)>,
    pub progress: Arc<Progress>,
    pub to_loop: SyncSender<DeleteRequest>,
    pub waker: Option<Arc<mio::Waker>>,
    pub credentials: Option<(String, Key)>,
    pub tls: Option<client::tls::ClientTls>,
    pub data_dir: Option<PathBuf>,
    pub tuning: Tuning,
}

/// Why the worker stopped before the end.
#[derive(Debug)]
enum Stop {
    /// The node is shutting down.
    Cancelled,
    /// The event loop no longer answers (it is shutting down).
    LoopGone,
}

/// One member of a target replica set.
struct Member {
    address: SocketAddr,
    client: Option<Client>,
    /// The member's process instance that stored the set's `uncommitted` records.
    instance: Option<u64>,
}

/// A target replica set: the targets of one (new) range, a single node in a cluster of one
/// node per range.
struct Target {
    range: HashRange,
    members: Vec<Member>,
    builder: BatchBuilder,
    /// (key, value hash) of the records in `builder`.
    in_builder: Vec<(u64, u64)>,
    /// Records every member stored and not all have committed yet.
    uncommitted: Vec<(u64, u64)>,
    /// Failed too often in this pass: its records wait for the next pass.
    failing: bool,
}

/// How sending a batch to one member ended.
enum Sent {
    /// Stored by this member process instance.
    Stored(u64),
    /// The channel was removed meanwhile: nothing more to send.
    ChannelGone,
    /// Failed every attempt.
    Failed,
}

/// A record copied out of a shard: key, version, value.
type Copied = (u64, u64, Vec<u8>);

struct Worker {
    context: Context,
    targets: Vec<Target>,
    scratch: Vec<Copied>,
    last_log: Instant,
}

/// The thread's body: runs the redistribution, then reports the end to the loop.
pub(crate) fn run(context: Context) {
    let mut worker = Worker::new(context);
    match worker.run() {
        Ok(()) => worker.persist_done(),
        Err(stop) => tracing::debug!("redistribution worker stopped: {stop:?}"),
    }
    // Close the connections before the loop learns the end (and joins this thread).
    worker.targets.clear();
    worker.context.progress.finish();
    worker.wake_loop();
}

impl Worker {
    fn new(context: Context) -> Worker {
        let mut targets: Vec<Target> = Vec::new();
        for target in &context.targets {
            let member = Member {
                address: target.address,
                client: None,
                instance: None,
            };
            match targets.iter_mut().find(|set| set.range == target.range) {
                Some(set) => set.members.push(member),
                None => targets.push(Target {
                    range: target.range,
                    members: vec![member],
                    builder: BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES),
                    in_builder: Vec::new(),
                    uncommitted: Vec::new(),
                    failing: false,
                }),
            }
        }
        Worker {
            context,
            targets,
            scratch: Vec::new(),
            last_log: Instant::now(),
        }
    }

    fn run(&mut self) -> Result<(), Stop> {
        let (to_move, stranded) = self.count_left()?;
        self.context.progress.set_total(to_move);
        self.context.progress.set_stranded(stranded);
        if stranded > 0 {
            tracing::warn!(
                "{stranded} records outside this node's new range {} are in no target's range \
                 either: they stay here",
                self.context.range
            );
        }
        tracing::info!(
            "redistribution: {to_move} records to move to {} targets",
            self.targets.len()
        );
        // One pass at least: tombstones outside the range move even when no record does.
        let mut passes = 0u64;
        loop {
            passes += 1;
            self.pass()?;
            let left = self.count_left()?.0;
            if left == 0 {
                return Ok(());
            }
            tracing::info!(
                "redistribution: {left} records still to move after pass {passes}; next pass \
                 in {:?}",
                self.context.tuning.pass_pause
            );
            self.pause(self.context.tuning.pass_pause)?;
        }
    }

    fn check_cancel(&self) -> Result<(), Stop> {
        if self.context.progress.is_cancelled() {
            Err(Stop::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps, waking early for a shutdown.
    fn pause(&self, duration: Duration) -> Result<(), Stop> {
        let until = Instant::now() + duration;
        loop {
            self.check_cancel()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let tuning = &self.context.tuning;
        crate::peer::backoff(tuning.retry_first, tuning.retry_max, attempt)
    }

    fn target_for(&self, key: u64) -> Option<usize> {
        self.targets
            .iter()
            .position(|target| target.range.is_responsible_for(key))
    }

    /// Records outside the new range still here: (covered by a target, in no target's range).
    fn count_left(&self) -> Result<(u64, u64), Stop> {
        let (mut covered, mut stranded) = (0u64, 0u64);
        for (_, data) in &self.context.channels {
            if data.is_removed() {
                continue;
            }
            for index in 0..SHARD_COUNT {
                if index % 256 == 0 {
                    self.check_cancel()?;
                }
                let shard = data.shard(index);
                for key in shard.keys() {
                    if self.context.range.is_responsible_for(*key) {
                        continue;
                    }
                    if self.target_for(*key).is_some() {
                        covered += 1;
                    } else {
                        stranded += 1;
                    }
                }
            }
        }
        Ok((covered, stranded))
    }

    fn pass(&mut self) -> Result<(), Stop> {
        for target in &mut self.targets {
            target.failing = false;
        }
        let channels = self.context.channels.clone();
        for (name, data) in &channels {
            for index in 0..SHARD_COUNT {
                self.check_cancel()?;
                if data.is_removed() {
                    break;
                }
                let mut records = std::mem::take(&mut self.scratch);
                records.clear();
                {
                    let shard = data.shard(index);
                    for (key, value) in shard.iter() {
                        if !self.context.range.is_responsible_for(*key) {
                            records.push((*key, value.version(), value.to_vec()));
                        }
                    }
                }
                for (key, version, value) in records.drain(..) {
                    let record = RefreshRecord::Record {
                        version,
                        value: &value,
                    };
                    self.add_to_owner(name, data, key, record)?;
                }
                self.scratch = records;
            }
            self.add_tombstones(name, data)?;
            for target in 0..self.targets.len() {
                self.send(target, name, data)?;
                self.commit(target, name, data)?;
            }
        }
        Ok(())
    }

    /// The channel's tombstones outside the new range, a window at a time.
    fn add_tombstones(&mut self, channel: &str, data: &Arc<Channel>) -> Result<(), Stop> {
        let mut window = Vec::with_capacity(TOMBSTONE_WINDOW);
        let mut after = None;
        loop {
            self.check_cancel()?;
            if data.is_removed() {
                return Ok(());
            }
            let done = data
                .tombstones()
                .window(after, TOMBSTONE_WINDOW, &mut window);
            for (key, tombstone) in window.drain(..) {
                after = Some(key);
                if !self.context.range.is_responsible_for(key) {
                    let version = tombstone.version;
                    self.add_to_owner(channel, data, key, RefreshRecord::Tombstone { version })?;
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Adds a record or tombstone to the batch of the set that owns its key now, if any and
    /// not failing.
    fn add_to_owner(
        &mut self,
        channel: &str,
        data: &Arc<Channel>,
        key: u64,
        record: RefreshRecord<'_>,
    ) -> Result<(), Stop> {
        match self.target_for(key) {
            Some(target) if !self.targets[target].failing => {
                self.add(target, channel, data, key, record)
            }
            _ => Ok(()),
        }
    }

    fn add(
        &mut self,
        target: usize,
        channel: &str,
        data: &Arc<Channel>,
        key: u64,
        record: RefreshRecord<'_>,
    ) -> Result<(), Stop> {
        let mut outcome = record.push_to(&mut self.targets[target].builder, key);
        if outcome == PushOutcome::Full {
            self.send(target, channel, data)?;
            if self.targets[target].failing {
                return Ok(());
            }
            outcome = record.push_to(&mut self.targets[target].builder, key);
        }
        match (outcome, record) {
            // Tombstones are copied, never deleted here: nothing to remember.
            (PushOutcome::Added, RefreshRecord::Tombstone { .. }) => {}
            (PushOutcome::Added, RefreshRecord::Record { value, .. }) => self.targets[target]
                .in_builder
                .push((key, value_hash(value))),
            (PushOutcome::Full | PushOutcome::TooBig, _) => {
                tracing::error!(
                    "redistribution: record 0x{key:016x} of channel {channel} does not fit in \
                     a batch; it stays here"
                );
            }
        }
        if self.targets[target].uncommitted.len() >= self.context.tuning.commit_records {
            self.commit(target, channel, data)?;
        }
        Ok(())
    }

    /// One request to a member of a target set, connecting first if needed; its reply
    /// whatever the status. `Err` says what failed on the way.
    fn request(
        &mut self,
        target: usize,
        member: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Reply, String> {
        let tuning = self.context.tuning;
        let member = &mut self.targets[target].members[member];
        if member.client.is_none() {
            let login = PeerLogin {
                credentials: self.context.credentials.clone(),
                tls: self.context.tls.clone(),
            };
            let client = crate::peer::connect(
                member.address,
                &login,
                tuning.connect_timeout,
                tuning.request_timeout,
            )
            .map_err(|error| error.to_string())?;
            member.client = Some(client);
        }
        let Some(client) = &member.client else {
            return Err(format!("node {}: not connected", member.address));
        };
        client
            .request(0, code, body)
            .map_err(|error| error.to_string())
    }

    /// [`Worker::request`] whose reply must be Ok: its body, or what failed.
    fn request_ok(
        &mut self,
        target: usize,
        member: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.request(target, member, code, body)?
            .ok_body()
            .map_err(|error| error.to_string())
    }

    /// Sends the target's batch to every member, retrying; the records become uncommitted
    /// once every member stored them. A member that fails every attempt makes the whole set
    /// wait for the next pass (its records stay here).
    fn send(&mut self, target: usize, channel: &str, data: &Arc<Channel>) -> Result<(), Stop> {
        if self.targets[target].builder.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::new();
        self.targets[target].builder.finish_into(&mut batch);
        let entries = std::mem::take(&mut self.targets[target].in_builder);
        if self.targets[target].failing {
            return Ok(());
        }
        let mut body = Vec::with_capacity(batch.len() + channel.len() + 1);
        wire::encode_put_batch(&mut body, channel, &batch);
        let mut instances = Vec::with_capacity(self.targets[target].members.len());
        for member in 0..self.targets[target].members.len() {
            match self.send_to(target, member, channel, data, &body)? {
                Sent::Stored(instance) => instances.push(instance),
                Sent::ChannelGone => return Ok(()),
                Sent::Failed => {
                    self.give_up(target);
                    return Ok(());
                }
            }
        }
        self.stored(target, &instances, entries);
        Ok(())
    }

    /// One member's RedistBatchVersion, retried with backoff.
    fn send_to(
        &mut self,
        target: usize,
        member: usize,
        channel: &str,
        data: &Arc<Channel>,
        body: &[u8],
    ) -> Result<Sent, Stop> {
        let attempts = self.context.tuning.attempts_per_target;
        for attempt in 0..attempts {
            self.check_cancel()?;
            if data.is_removed() {
                return Ok(Sent::ChannelGone);
            }
            let address = self.targets[target].members[member].address;
            let error = match self.request_ok(target, member, wire::REDIST_BATCH_VERSION, body) {
                Ok(reply) => match RedistBatchReply::decode(&reply) {
                    Ok(reply) => return Ok(Sent::Stored(reply.instance)),
                    Err(error) => format!("node {address}: RedistBatchVersion reply: {error}"),
                },
                Err(error) => error,
            };
            self.failed(address, "RedistBatchVersion", attempt, &error);
            // Make room elsewhere while this target cannot take more: a receiver that is
            // redistributing itself refuses records (memory guard) until its own records
            // are committed and deleted, and ours may be what it waits for.
            for other in 0..self.targets.len() {
                if other != target && !self.targets[other].failing {
                    self.commit(other, channel, data)?;
                }
            }
            self.pause(self.backoff(attempt))?;
        }
        Ok(Sent::Failed)
    }

    /// Notes records every member of a target set stored (`instances`: each member's process
    /// instance, in member order).
    fn stored(&mut self, target: usize, instances: &[u64], entries: Vec<(u64, u64)>) {
        let target = &mut self.targets[target];
        debug_assert_eq!(instances.len(), target.members.len());
        let restarted = target
            .members
            .iter()
            .zip(instances)
            .find(|(member, instance)| member.instance.is_some_and(|known| known != **instance));
        if let Some((member, _)) = restarted {
            if !target.uncommitted.is_empty() {
                tracing::warn!(
                    "redistribution: node {} restarted since it took {} records that it had \
                     not committed; they are sent again in the next pass",
                    member.address,
                    target.uncommitted.len()
                );
                target.uncommitted.clear();
            }
        }
        for (member, instance) in target.members.iter_mut().zip(instances) {
            member.instance = Some(*instance);
        }
        target.uncommitted.extend(entries);
    }

    fn failed(&mut self, address: SocketAddr, what: &str, attempt: u32, error: &str) {
        let attempts = self.context.tuning.attempts_per_target;
        // The first and the last attempt in root.log; the ones between only at debug level,
        // so that a target down for hours does not fill the log.
        if attempt == 0 || attempt + 1 == attempts {
            tracing::warn!(
                "redistribution: {what} to {address} failed (attempt {} of {attempts}): {error}",
                attempt + 1
            );
        } else {
            tracing::debug!(
                "redistribution: {what} to {address} failed (attempt {} of {attempts}): {error}",
                attempt + 1
            );
        }
        self.context
            .progress
            .failed(format!("{what} to {address}: {error}"));
    }

    fn give_up(&mut self, target: usize) {
        let target = &mut self.targets[target];
        let members: Vec<String> = target
            .members
            .iter()
            .map(|m| m.address.to_string())
            .collect();
        tracing::warn!(
            "redistribution: leaving {} for the rest of this pass; its records are tried again \
             in the next pass",
            members.join(", ")
        );
        target.failing = true;
        target.uncommitted.clear();
        target.in_builder.clear();
        for member in &mut target.members {
            member.instance = None;
            // A fresh connection next time.
            member.client = None;
        }
    }

    /// Has every member of the target set commit the channel, then deletes here what the set
    /// now holds durably.
    fn commit(&mut self, target: usize, channel: &str, data: &Arc<Channel>) -> Result<(), Stop> {
        if self.targets[target].uncommitted.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let mut instances = Vec::with_capacity(self.targets[target].members.len());
        for member in 0..self.targets[target].members.len() {
            match self.commit_on(target, member, &body)? {
                Some(instance) => instances.push(instance),
                None => {
                    self.give_up(target);
                    return Ok(());
                }
            }
        }
        self.committed(target, &instances, channel, data)
    }

    /// One member's RedistCommit, retried with backoff: the instance that committed, or `None`
    /// after the last attempt failed.
    fn commit_on(
        &mut self,
        target: usize,
        member: usize,
        body: &[u8],
    ) -> Result<Option<u64>, Stop> {
        let attempts = self.context.tuning.attempts_per_target;
        for attempt in 0..attempts {
            self.check_cancel()?;
            let address = self.targets[target].members[member].address;
            let error = match self.request_ok(target, member, wire::REDIST_COMMIT, body) {
                Ok(reply) => match wire::decode_instance(&reply) {
                    Ok(instance) => return Ok(Some(instance)),
                    Err(error) => format!("node {address}: RedistCommit reply: {error}"),
                },
                Err(error) => error,
            };
            self.failed(address, "RedistCommit", attempt, &error);
            self.pause(self.backoff(attempt))?;
        }
        Ok(None)
    }

    fn committed(
        &mut self,
        target: usize,
        instances: &[u64],
        channel: &str,
        data: &Arc<Channel>,
    ) -> Result<(), Stop> {
        let entries = std::mem::take(&mut self.targets[target].uncommitted);
        for (member, instance) in self.targets[target].members.iter_mut().zip(instances) {
            if member.instance != Some(*instance) {
                tracing::warn!(
                    "redistribution: node {} restarted before it committed {} records of \
                     channel {channel}; they are sent again in the next pass",
                    member.address,
                    entries.len()
                );
                member.instance = None;
                return Ok(());
            }
        }
        let outcome = self.delete(channel, data, entries)?;
        self.context.progress.add_moved(outcome.removed);
        self.log_progress();
        if !outcome.gone.is_empty() {
            for member in 0..self.targets[target].members.len() {
                self.compensate(target, member, channel, &outcome.gone)?;
            }
        }
        Ok(())
    }

    /// Asks the event loop to delete records (if still as sent) and waits for its answer.
    fn delete(
        &mut self,
        channel: &str,
        data: &Arc<Channel>,
        entries: Vec<(u64, u64)>,
    ) -> Result<DeleteOutcome, Stop> {
        let (reply, answer) = mpsc::sync_channel(1);
        let request = DeleteRequest {
            channel: channel.to_string(),
            data: Arc::clone(data),
            entries,
            reply,
        };
        self.context
            .to_loop
            .send(request)
            .map_err(|_| Stop::LoopGone)?;
        self.wake_loop();
        answer.recv().map_err(|_| Stop::LoopGone)
    }

    /// Records removed here after they were sent: remove them on the target too, but only
    /// the value that was sent (a newer value written there stays).
    fn compensate(
        &mut self,
        target: usize,
        member: usize,
        channel: &str,
        gone: &[(u64, u64)],
    ) -> Result<(), Stop> {
        let address = self.targets[target].members[member].address;
        tracing::info!(
            "redistribution: {} records of channel {channel} were removed here after they were \
             sent to {address}; removing them there",
            gone.len(),
        );
        for &(key, hash) in gone {
            let mut body = Vec::new();
            UpdateRequest {
                channel,
                key,
                expected: Expected::Hash(hash),
                action: UpdateAction::Remove,
            }
            .encode(&mut body);
            for attempt in 0..COMPENSATION_ATTEMPTS {
                self.check_cancel()?;
                let result = self
                    .request(target, member, wire::UPDATE, &body)
                    .and_then(|reply| {
                        match reply.status {
                            // Removed; or changed or removed there since: nothing of ours left.
                            Status::Ok | Status::UpdateConflict | Status::NotFound => Ok(()),
                            _ => reply.ok_body().map(drop).map_err(|e| e.to_string()),
                        }
                    });
                match result {
                    Ok(()) => break,
                    Err(error) => {
                        self.failed(address, "Update (remove)", attempt, &error);
                        if attempt + 1 == COMPENSATION_ATTEMPTS {
                            tracing::error!(
                                "redistribution: record 0x{key:016x} of channel {channel} was \
                                 removed here but may still be on {address}"
                            );
                        }
                        self.pause(self.backoff(attempt))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn log_progress(&mut self) {
        if self.last_log.elapsed() < LOG_EVERY {
            return;
        }
        self.last_log = Instant::now();
        let progress = self.context.progress.snapshot();
        tracing::info!(
            "redistribution: {} of {} records moved ({} failed attempts)",
            progress.moved,
            progress.total,
            progress.failures
        );
    }

    fn wake_loop(&self) {
        if let Some(waker) = &self.context.waker {
            if let Err(error) = waker.wake() {
                tracing::debug!("cannot wake the event loop: {error}");
            }
        }
    }

    /// The redistribution is complete: the state file forgets it.
    fn persist_done(&self) {
        let Some(dir) = &self.context.data_dir else {
            return;
        };
        let state = NodeState {
            range: self.context.range,
            redistribution: None,
        };
        if let Err(error) = state::save(dir, &state) {
            tracing::error!(
                "redistribution done, but the state file still says it is pending (the next \
                 start looks again and finds nothing to move): {error}"
            );
        }
    }
}
