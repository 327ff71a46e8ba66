//! The redistribution worker thread: moves every record outside the node's new range to the
//! target that owns it, pass after pass, until none is left (see the module doc of
//! [`super`] for the protocol it follows and why).
//!
//! One pass: for each channel, for each shard, copy out the records outside the new range
//! (under the shard's lock, which the event loop takes for one request at a time), pack each
//! into its target's batch, send full batches (RedistBatch), and every
//! [`super::Tuning::commit_records`] records and at the end of the channel ask the target to
//! commit (RedistCommit) and then the loop to delete what the target now holds durably.
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
    UpdateAction, UpdateRequest,
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

struct Target {
    address: SocketAddr,
    range: HashRange,
    client: Option<Client>,
    builder: BatchBuilder,
    /// (key, value hash) of the records in `builder`.
    in_builder: Vec<(u64, u64)>,
    /// Records the target stored and has not committed yet.
    uncommitted: Vec<(u64, u64)>,
    /// The target's process instance that stored `uncommitted`.
    instance: Option<u64>,
    /// Failed too often in this pass: its records wait for the next pass.
    failing: bool,
}

struct Worker {
    context: Context,
    targets: Vec<Target>,
    scratch: Vec<(u64, Vec<u8>)>,
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
        let targets = context
            .targets
            .iter()
            .map(|target| Target {
                address: target.address,
                range: target.range,
                client: None,
                builder: BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES),
                in_builder: Vec::new(),
                uncommitted: Vec::new(),
                instance: None,
                failing: false,
            })
            .collect();
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
        let mut passes = 0u64;
        let mut left = to_move;
        while left > 0 {
            if passes > 0 {
                tracing::info!(
                    "redistribution: {left} records still to move after pass {passes}; next \
                     pass in {:?}",
                    self.context.tuning.pass_pause
                );
                self.pause(self.context.tuning.pass_pause)?;
            }
            passes += 1;
            self.pass()?;
            left = self.count_left()?.0;
        }
        Ok(())
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
                            records.push((*key, value.to_vec()));
                        }
                    }
                }
                for (key, value) in records.drain(..) {
                    let Some(target) = self.target_for(key) else {
                        continue;
                    };
                    if !self.targets[target].failing {
                        self.add(target, name, data, key, &value)?;
                    }
                }
                self.scratch = records;
            }
            for target in 0..self.targets.len() {
                self.send(target, name, data)?;
                self.commit(target, name, data)?;
            }
        }
        Ok(())
    }

    fn add(
        &mut self,
        target: usize,
        channel: &str,
        data: &Arc<Channel>,
        key: u64,
        value: &[u8],
    ) -> Result<(), Stop> {
        let mut outcome = self.targets[target].builder.push(key, value);
        if outcome == PushOutcome::Full {
            self.send(target, channel, data)?;
            if self.targets[target].failing {
                return Ok(());
            }
            outcome = self.targets[target].builder.push(key, value);
        }
        match outcome {
            PushOutcome::Added => self.targets[target]
                .in_builder
                .push((key, value_hash(value))),
            PushOutcome::Full | PushOutcome::TooBig => {
                tracing::error!(
                    "redistribution: record 0x{key:016x} of channel {channel} ({} bytes) does \
                     not fit in a batch; it stays here",
                    value.len()
                );
            }
        }
        if self.targets[target].uncommitted.len() >= self.context.tuning.commit_records {
            self.commit(target, channel, data)?;
        }
        Ok(())
    }

    /// One request to a target, connecting first if needed; its reply whatever the status.
    /// `Err` says what failed on the way.
    fn request(&mut self, target: usize, code: RequestCode, body: &[u8]) -> Result<Reply, String> {
        let tuning = self.context.tuning;
        let target = &mut self.targets[target];
        if target.client.is_none() {
            let login = PeerLogin {
                credentials: self.context.credentials.clone(),
                tls: self.context.tls.clone(),
            };
            let client = crate::peer::connect(
                target.address,
                &login,
                tuning.connect_timeout,
                tuning.request_timeout,
            )
            .map_err(|error| error.to_string())?;
            target.client = Some(client);
        }
        let Some(client) = &target.client else {
            return Err(format!("node {}: not connected", target.address));
        };
        client
            .request(0, code, body)
            .map_err(|error| error.to_string())
    }

    /// [`Worker::request`] whose reply must be Ok: its body, or what failed.
    fn request_ok(
        &mut self,
        target: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.request(target, code, body)?
            .ok_body()
            .map_err(|error| error.to_string())
    }

    /// Sends the target's batch, retrying; the records it stored become uncommitted.
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
        let attempts = self.context.tuning.attempts_per_target;
        for attempt in 0..attempts {
            self.check_cancel()?;
            if data.is_removed() {
                return Ok(());
            }
            let error = match self.request_ok(target, wire::REDIST_BATCH, &body) {
                Ok(reply) => match RedistBatchReply::decode(&reply) {
                    Ok(reply) => {
                        self.stored(target, reply.instance, entries);
                        return Ok(());
                    }
                    Err(error) => format!(
                        "node {}: RedistBatch reply: {error}",
                        self.targets[target].address
                    ),
                },
                Err(error) => error,
            };
            self.failed(target, "RedistBatch", attempt, &error);
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
        self.give_up(target);
        Ok(())
    }

    /// Notes records a target stored.
    fn stored(&mut self, target: usize, instance: u64, entries: Vec<(u64, u64)>) {
        let target = &mut self.targets[target];
        if target.instance.is_some_and(|known| known != instance) && !target.uncommitted.is_empty()
        {
            tracing::warn!(
                "redistribution: node {} restarted since it took {} records that it had not \
                 committed; they are sent again in the next pass",
                target.address,
                target.uncommitted.len()
            );
            target.uncommitted.clear();
        }
        target.instance = Some(instance);
        target.uncommitted.extend(entries);
    }

    fn failed(&mut self, target: usize, what: &str, attempt: u32, error: &str) {
        let address = self.targets[target].address;
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
        tracing::warn!(
            "redistribution: leaving node {} for the rest of this pass; its records are tried \
             again in the next pass",
            target.address
        );
        target.failing = true;
        target.uncommitted.clear();
        target.in_builder.clear();
        target.instance = None;
        // A fresh connection next time.
        target.client = None;
    }

    /// Has the target commit the channel, then deletes here what it now holds durably.
    fn commit(&mut self, target: usize, channel: &str, data: &Arc<Channel>) -> Result<(), Stop> {
        if self.targets[target].uncommitted.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let attempts = self.context.tuning.attempts_per_target;
        for attempt in 0..attempts {
            self.check_cancel()?;
            let error = match self.request_ok(target, wire::REDIST_COMMIT, &body) {
                Ok(reply) => match wire::decode_instance(&reply) {
                    Ok(instance) => return self.committed(target, instance, channel, data),
                    Err(error) => format!(
                        "node {}: RedistCommit reply: {error}",
                        self.targets[target].address
                    ),
                },
                Err(error) => error,
            };
            self.failed(target, "RedistCommit", attempt, &error);
            self.pause(self.backoff(attempt))?;
        }
        self.give_up(target);
        Ok(())
    }

    fn committed(
        &mut self,
        target: usize,
        instance: u64,
        channel: &str,
        data: &Arc<Channel>,
    ) -> Result<(), Stop> {
        let entries = std::mem::take(&mut self.targets[target].uncommitted);
        if self.targets[target].instance != Some(instance) {
            tracing::warn!(
                "redistribution: node {} restarted before it committed {} records of channel \
                 {channel}; they are sent again in the next pass",
                self.targets[target].address,
                entries.len()
            );
            self.targets[target].instance = None;
            return Ok(());
        }
        let outcome = self.delete(channel, data, entries)?;
        self.context.progress.add_moved(outcome.removed);
        self.log_progress();
        if !outcome.gone.is_empty() {
            self.compensate(target, channel, &outcome.gone)?;
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
        channel: &str,
        gone: &[(u64, u64)],
    ) -> Result<(), Stop> {
        tracing::info!(
            "redistribution: {} records of channel {channel} were removed here after they were \
             sent to {}; removing them there",
            gone.len(),
            self.targets[target].address
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
                let result = self.request(target, wire::UPDATE, &body).and_then(|reply| {
                    match reply.status {
                        // Removed; or changed or removed there since: nothing of ours left.
                        Status::Ok | Status::UpdateConflict | Status::NotFound => Ok(()),
                        _ => reply.ok_body().map(drop).map_err(|e| e.to_string()),
                    }
                });
                match result {
                    Ok(()) => break,
                    Err(error) => {
                        self.failed(target, "Update (remove)", attempt, &error);
                        if attempt + 1 == COMPENSATION_ATTEMPTS {
                            tracing::error!(
                                "redistribution: record 0x{key:016x} of channel {channel} was \
                                 removed here but may still be on {}",
                                self.targets[target].address
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
