//! The dht node as a server [`Service`]: the engine, the request dispatch (in
//! [`crate::requests`]), and the glue that runs on timers and wake-ups: it wakes Listen streams
//! when their channel changes and RedistCommit requests when their dump is written, ticks the
//! dumps, drives a running redistribution ([`Redistributor`]), and dumps at shutdown.
//!
//! The change log: its group is written out before any reply leaves and fsynced by
//! [`LogSync`]; each complete dump cycle (and the shutdown dump) deletes the log segments the
//! cycle before it covers (that cycle's dumps are the backups now, which the loader falls back
//! to when a dump is damaged: the log must still reach back to them); a log past
//! `dht.max_log_bytes` (or [`LOG_DATA_MULTIPLE`] × the data, past [`EARLY_DUMP_FLOOR_BYTES`])
//! starts a dump cycle early.

use crate::catch_up::CatchUp;
use crate::config::LOG_DATA_MULTIPLE;
use crate::durability::LogSync;
use crate::engine::{Engine, ListenerId, TombstoneSweep};
use crate::redistribution::{RedistributionConfig, Redistributor};
use crate::removed_dumps::RemovedDumps;
use crate::requests;
use dht_persist::DumpScheduler;
use node_core::auth::Credentials;
use node_core::metrics::Families;
use node_core::protocol::batch::SharedBatch;
use node_core::protocol::dht::DhtRequest;
use node_core::protocol::{NodeKind, RequestCode};
use node_core::server::{Handled, LookAheadFrames, Reply, Request, Service, StreamHandle, Wakeups};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct DhtNode {
    pub(crate) engine: Engine,
    wakeups: Wakeups,
    /// The stream of each Listen and Mirror, to wake when its queue gets events.
    pub(crate) listen_streams: HashMap<ListenerId, StreamHandle>,
    /// Mirror streams waiting for their next periodic refresh: when, and the stream to wake.
    pub(crate) mirror_timers: HashMap<ListenerId, (Instant, StreamHandle)>,
    /// Reused by PutBatch to decompress batches without allocating per request.
    pub(crate) batch_scratch: Vec<u8>,
    /// The batch every GetAll fills and sends within its turn (none holds one between turns).
    pub(crate) stream_batch: SharedBatch,
    /// Where GetAll picks its next window of a shard's keys from, for a moment.
    pub(crate) key_scratch: Vec<u64>,
    /// Periodic and shutdown dumps; `None` for a node that keeps nothing on disk (tests).
    pub(crate) dumper: Option<DumpScheduler>,
    /// Removed channels whose dump files wait for the removal to be durable.
    pub(crate) removed_dumps: RemovedDumps,
    /// Redistributions: the running one, and its Progress streams.
    pub(crate) redistributor: Redistributor,
    /// RedistCommit requests waiting for their dump: dump ticket → stream.
    pub(crate) commit_streams: HashMap<u64, StreamHandle>,
    /// The change log's fsyncs and the replies that wait for them.
    pub(crate) log_sync: LogSync,
    /// The log size past which a dump cycle starts early.
    max_log_bytes: u64,
    /// No early dump cycle before this, and the dump failures counted when the last began.
    next_early_dump: Instant,
    early_dump_failures: u64,
    /// The position of the last complete dump cycle: once the next one completes, its dumps
    /// are the backups, and the log segments it covers go.
    backup_position: Option<u64>,
    /// Bytes of the log's segments when they were last listed, and the log's written-bytes
    /// counter then.
    listed_log_bytes: (u64, u64),
    /// When the next sweep of tombstones older than their TTL starts, and where the running
    /// one is (`None`: none runs).
    next_tombstone_sweep: Instant,
    tombstone_sweep: Option<TombstoneSweep>,
    /// Catching up with the replica set (reads NotReady until done); ready for a node
    /// without `dht.replica_peers`.
    pub(crate) catch_up: CatchUp,
}

/// Tombstones a sweep looks at per tick (100 ms): a few milliseconds of work.
const TOMBSTONES_PER_TICK: usize = 16_384;

/// A log larger than [`LOG_DATA_MULTIPLE`] × the data starts an early dump only past this.
pub const EARLY_DUMP_FLOOR_BYTES: u64 = 64 << 20;
/// Early dump cycles start at most this often...
const EARLY_DUMP_SPACING: Duration = Duration::from_secs(1);
/// ...and only this long after one in which a dump failed.
const EARLY_DUMP_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl DhtNode {
    pub fn new(
        engine: Engine,
        wakeups: Wakeups,
        dumper: Option<DumpScheduler>,
        redistribution: RedistributionConfig,
        log_sync: LogSync,
        max_log_bytes: u64,
    ) -> DhtNode {
        let redistributor = Redistributor::new(redistribution, wakeups.clone());
        let mut node = DhtNode {
            engine,
            wakeups,
            listen_streams: HashMap::new(),
            mirror_timers: HashMap::new(),
            batch_scratch: Vec::new(),
            stream_batch: SharedBatch::default(),
            key_scratch: Vec::new(),
            dumper,
            redistributor,
            commit_streams: HashMap::new(),
            log_sync,
            max_log_bytes,
            backup_position: None,
            removed_dumps: RemovedDumps::default(),
            next_early_dump: Instant::now(),
            early_dump_failures: 0,
            listed_log_bytes: (0, 0),
            next_tombstone_sweep: Instant::now(),
            tombstone_sweep: None,
            catch_up: CatchUp::ready(),
        };
        node.count_log_bytes();
        node
    }

    /// The change log's position before a change request runs (see [`DhtNode::acknowledge`]).
    pub(crate) fn log_mark(&self) -> Option<u64> {
        self.engine.log().position()
    }

    /// Answers a change request that succeeded: at once, or under `durability = "always"`,
    /// when it logged a change (the position moved past `mark`), after its group's fsync.
    pub(crate) fn acknowledge(
        &mut self,
        mark: Option<u64>,
        reply: &mut Reply<'_>,
        status: node_core::protocol::Status,
        body: &[u8],
    ) -> Handled<DhtNode> {
        self.log_sync
            .acknowledge(&self.engine, mark, reply, status, body)
    }

    /// The position the dumps loaded at start cover (the lowest of them): once the next dump
    /// cycle completes they are the backups (see the module doc).
    pub fn set_backup_position(&mut self, position: u64) {
        self.backup_position = Some(position);
    }

    /// Moves aside the dump files of the removed channels whose removal is durable now.
    fn move_removed_dumps(&mut self) {
        let (Some(dumper), Some(writer)) = (&mut self.dumper, self.engine.log().writer()) else {
            return;
        };
        self.removed_dumps
            .move_durable(writer.synced_seq(), &self.engine, dumper);
    }

    /// Counts the bytes of the log's segments: the files' lengths, but the segment being
    /// written counts what was written to it, not the zeros written ahead of that (the
    /// segments before it are cut to their entries: when sealed, or at start).
    fn count_log_bytes(&mut self) {
        let log = self.engine.log();
        let Some(dir) = log.dir() else {
            return;
        };
        let current = log
            .writer()
            .map(|writer| (writer.segment().0, writer.segment_len()));
        match dht_persist::wal::segment::list_segments(dir) {
            Ok(listing) => {
                let listed = listing
                    .segments
                    .iter()
                    .map(|segment| match current {
                        Some((number, written)) if number == segment.number => written,
                        _ => segment.len,
                    })
                    .sum();
                self.listed_log_bytes = (listed, log.written_bytes());
            }
            Err(error) => {
                tracing::warn!("cannot list the change log in {}: {error}", dir.display())
            }
        }
    }

    /// Bytes of the change log's segments (headers and entries, not the zeros written ahead of
    /// the last entry), as last listed plus what was written since.
    pub fn log_bytes(&self) -> u64 {
        let (listed, written_then) = self.listed_log_bytes;
        listed + (self.engine.log().written_bytes() - written_then)
    }

    /// A dump cycle of every channel completed at `position`: deletes the log segments that
    /// the cycle before it covers (see the module doc).
    fn dump_cycle_complete(&mut self, position: u64) {
        self.record_cycle_position(position);
        if let Some(backup) = self.backup_position.replace(position) {
            self.delete_covered_log(backup);
        }
    }

    /// Writes `position` to the log's `covered` file, where the next start's replay may begin
    /// for channels without a dump ([`dht_persist::wal::covered`]). Should that fail, the file
    /// keeps an older position, or none: the replay then reads more of the log, never less.
    fn record_cycle_position(&self, position: u64) {
        let Some(dir) = self.engine.log().dir() else {
            return;
        };
        if let Err(error) = dht_persist::wal::write_covered(dir, position) {
            tracing::warn!(
                "change log: cannot record that the dumps cover position {position} in {}: \
                 {error}; the next start replays more of the log",
                dir.display()
            );
        }
    }

    /// Deletes the log segments dumps cover up to `position`.
    fn delete_covered_log(&mut self, position: u64) {
        let log = self.engine.log_mut();
        let result = match log.writer_mut() {
            Some(writer) => writer.delete_covered(position),
            None => log.delete_replayed(position),
        };
        match result {
            Ok(deleted) if !deleted.is_empty() => tracing::info!(
                "change log: {} segment(s) covered by the dumps (and their backups) of position \
                 {position} deleted",
                deleted.len()
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(
                "change log: cannot delete the segments covered by position {position}: {error}"
            ),
        }
        self.count_log_bytes();
    }

    /// Whether the log has grown enough to dump early.
    fn log_wants_dump(&self) -> bool {
        let (data, log) = (self.engine.size().bytes, self.log_bytes());
        log > self.max_log_bytes
            || (log > EARLY_DUMP_FLOOR_BYTES && log > data.saturating_mul(LOG_DATA_MULTIPLE))
    }

    /// Wakes the Mirror streams whose periodic refresh is due (each starts it when resumed).
    fn wake_due_mirrors(&mut self, now: Instant) {
        if self.mirror_timers.is_empty() {
            return;
        }
        self.mirror_timers.retain(|_, (due, handle)| {
            let waiting = now < *due;
            if !waiting {
                self.wakeups.wake(*handle);
            }
            waiting
        });
    }

    /// Drops the tombstones past `dht.tombstone_ttl_s`: a sweep starts once a minute (or, for
    /// a TTL under four minutes, four times per TTL) and looks at [`TOMBSTONES_PER_TICK`] of
    /// them per tick, so that millions of tombstones never hold the loop long.
    fn sweep_tombstones(&mut self, now: Instant) {
        if self.tombstone_sweep.is_none() {
            if now < self.next_tombstone_sweep || self.engine.tombstone_count() == 0 {
                return;
            }
            let ttl_s = self.engine.tombstone_limits().ttl_s;
            self.next_tombstone_sweep = now + Duration::from_secs((ttl_s / 4).clamp(1, 60));
            self.tombstone_sweep = Some(TombstoneSweep::default());
        }
        let Some(sweep) = self.tombstone_sweep.as_mut() else {
            return;
        };
        let unix_now = dht_persist::dump::format::unix_now();
        let (dropped, done) = self
            .engine
            .sweep_tombstones(sweep, unix_now, TOMBSTONES_PER_TICK);
        if done {
            self.tombstone_sweep = None;
        }
        if dropped > 0 {
            tracing::debug!("dropped {dropped} tombstones past dht.tombstone_ttl_s");
        }
    }

    /// The dump scheduler's part of a tick: its own timer, deleting what a complete cycle
    /// covers, and an early cycle for a log grown too large.
    fn tick_dumps(&mut self, now: Instant) {
        let Some(dumper) = &mut self.dumper else {
            return;
        };
        dumper.tick(&self.engine, now);
        let covered = dumper.take_covered();
        if let Some(position) = covered {
            self.dump_cycle_complete(position);
        }
        let wants_dump = self.engine.log().is_writing() && self.log_wants_dump();
        let log_bytes = self.log_bytes();
        let Some(dumper) = &mut self.dumper else {
            return;
        };
        let failures = dumper.failures();
        if wants_dump && !dumper.cycle_running() && now >= self.next_early_dump {
            // A cycle that failed (a full disk) is not retried at once: no storm of dumps.
            let pause = if failures > self.early_dump_failures {
                EARLY_DUMP_RETRY_AFTER_FAILURE
            } else {
                EARLY_DUMP_SPACING
            };
            self.early_dump_failures = failures;
            self.next_early_dump = now + pause;
            tracing::info!(
                "change log holds {} bytes (dht.max_log_bytes {}, data {} bytes): dumping early \
                 so that its covered segments can be deleted",
                log_bytes,
                self.max_log_bytes,
                self.engine.size().bytes
            );
            dumper.start_cycle(&self.engine, now);
        }
    }

    /// Starts catching up from the replica set's other members (at start): reads are answered
    /// NotReady until it is done.
    pub fn start_catch_up(
        &mut self,
        config: crate::catch_up::CatchUpConfig,
    ) -> std::io::Result<()> {
        self.catch_up = CatchUp::start(config, self.wakeups.loop_waker())?;
        Ok(())
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Resumes the redistribution the state file says is unfinished (at start).
    pub fn resume_redistribution(
        &mut self,
        pending: crate::state::PendingRedistribution,
    ) -> Result<(), crate::redistribution::StartError> {
        self.redistributor
            .resume(&mut self.engine, pending)
            .map(drop)
    }

    /// Wakes the RedistCommit requests whose dump is done.
    fn wake_commits(&mut self) {
        let Some(dumper) = &self.dumper else {
            return;
        };
        for ticket in dumper.finished_commit_tickets() {
            if let Some(handle) = self.commit_streams.get(&ticket) {
                self.wakeups.wake(*handle);
            }
        }
    }

    /// Wakes the Listen streams whose queues got events.
    fn wake_listeners(&mut self) {
        for id in self.engine.take_ready_listeners() {
            if let Some(handle) = self.listen_streams.get(&id) {
                self.wakeups.wake(*handle);
            }
        }
    }
}

impl Service for DhtNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Dht
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        DhtRequest::from_code(code).map(DhtRequest::name)
    }

    fn admin_only(&self, code: RequestCode) -> bool {
        DhtRequest::from_code(code).is_some_and(DhtRequest::admin_only)
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        DhtRequest::from_code(code).is_some_and(DhtRequest::opens_stream)
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        let handled = requests::dispatch(self, request, reply);
        self.wake_listeners();
        handled
    }

    fn look_ahead(&self, frames: LookAheadFrames<'_>) {
        requests::look_ahead(self, frames);
    }

    fn before_output(&mut self) {
        self.log_sync.before_output(&mut self.engine);
    }

    fn tick(&mut self, now: Instant) {
        self.log_sync.tick(&mut self.engine, now);
        self.move_removed_dumps();
        self.sweep_tombstones(now);
        self.wake_due_mirrors(now);
        self.tick_dumps(now);
        self.wake_commits();
        self.redistributor.tick(&mut self.engine);
        self.catch_up.tick();
    }

    fn background(&mut self, _now: Instant) -> bool {
        self.log_sync.background(&mut self.engine);
        let catching_up = self.catch_up.background(&mut self.engine);
        self.redistributor.background(&mut self.engine) || catching_up
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.redistributor.shutdown();
        self.catch_up.shutdown();
        let synced = self.log_sync.shutdown(&mut self.engine);
        self.move_removed_dumps();
        let Some(dumper) = &mut self.dumper else {
            self.engine.leak_channels_at_exit();
            return synced;
        };
        let failed = dumper.dump_all_blocking(&self.engine);
        let covered = dumper.take_covered();
        if let Some(position) = covered {
            self.dump_cycle_complete(position);
        }
        // Everything is on disk or reported: the records are not needed any more.
        self.engine.leak_channels_at_exit();
        match (failed, synced) {
            (0, synced) => synced,
            (failed, _) => Err(format!(
                "{failed} channel dump(s) failed (see above); records written since their \
                 previous dump are not on disk"
            )),
        }
    }

    fn metrics(&self, out: &mut Families) {
        crate::stats::metrics(self, out);
    }

    fn credentials_reloaded(&mut self, credentials: &Arc<Credentials>) {
        self.redistributor.set_credentials(credentials.clone());
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        crate::stats::stats(self, out);
    }
}
