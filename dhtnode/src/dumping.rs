//! Dumping from the event loop: decides when to dump (every `dump_period_s`, and at shutdown),
//! walks each channel one shard at a time, copies the records into raw chunks and hands them to
//! the [`DumpThread`], which compresses and writes them. The loop never touches the disk, and one
//! step copies at most a few thousand records, so requests keep being served while a dump runs.
//!
//! Consistency: a periodic dump is not a point-in-time snapshot. Each shard is copied at one
//! instant; writes to shards already copied land in the next dump. That is what the reference's
//! dumps (a GetAll stream) gave too, and every record untouched during the dump is in it.

use crate::dump::writer::{DumpAction, DumpThread};
use crate::engine::{Engine, SHARD_COUNT};
use node_core::protocol::batch::{append_record, MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Uncompressed bytes per chunk handed to the writer thread.
const CHUNK_TARGET_BYTES: usize = 256 * 1024;
/// A chunk never grows past this, whatever the values: one chunk is one block of the dump file.
const CHUNK_MAX_BYTES: usize = MAX_BATCH_UNCOMPRESSED_BYTES;
/// Records copied per step of the event loop: about 50 µs of copying, so a request that
/// arrives during a step waits little longer than it would for a busy neighbour's batch.
const RECORDS_PER_STEP: usize = 512;
/// Shards looked at per step (most shards of a small channel are empty).
const SHARDS_PER_STEP: usize = 512;

/// The channel being walked.
struct Walk {
    channel: String,
    next_shard: usize,
    chunk: Vec<u8>,
    chunk_records: u32,
    started: Instant,
}

pub struct Dumper {
    thread: DumpThread,
    period: Option<Duration>,
    next_cycle: Instant,
    /// Channels still to dump in this cycle.
    queue: VecDeque<String>,
    walk: Option<Walk>,
    /// Chunks the writer had no room for yet (one shard's worth at most).
    held_chunks: VecDeque<(Vec<u8>, u32)>,
    cycle_started: Option<Instant>,
    failures: u64,
}

impl Dumper {
    /// `period`: None dumps only at shutdown.
    pub fn new(thread: DumpThread, period: Option<Duration>) -> Dumper {
        let next_cycle = Instant::now() + period.unwrap_or(Duration::MAX / 4);
        Dumper {
            thread,
            period,
            next_cycle,
            queue: VecDeque::new(),
            walk: None,
            held_chunks: VecDeque::new(),
            cycle_started: None,
            failures: 0,
        }
    }

    pub fn is_dumping(&self) -> bool {
        self.cycle_started.is_some()
    }

    /// Starts a cycle when one is due; logs what the writer finished.
    pub fn tick(&mut self, engine: &Engine, now: Instant) {
        self.report_outcomes();
        if self.cycle_started.is_none() && now >= self.next_cycle {
            self.start_cycle(engine, now);
        }
    }

    /// Starts dumping every channel now (also what tests and the periodic timer use).
    pub fn start_cycle(&mut self, engine: &Engine, now: Instant) {
        self.queue = engine.channel_names().map(str::to_string).collect();
        self.cycle_started = Some(now);
        if let Some(period) = self.period {
            self.next_cycle = now + period;
        }
        tracing::info!("dump cycle started: {} channels", self.queue.len());
    }

    fn report_outcomes(&mut self) {
        for outcome in self.thread.poll_outcomes() {
            let channel = &outcome.channel;
            match (&outcome.action, &outcome.result) {
                (DumpAction::Dump, Ok(())) => tracing::info!(
                    "dumped channel {channel}: {} records, {} bytes, {:.3} s",
                    outcome.records,
                    outcome.bytes,
                    outcome.seconds
                ),
                (DumpAction::Dump, Err(error)) => {
                    self.failures += 1;
                    tracing::error!("dump of channel {channel} FAILED, previous dump kept: {error}")
                }
                (DumpAction::Aborted, result) => {
                    tracing::info!("dump of channel {channel} called off: {result:?}")
                }
                (DumpAction::MoveAside, Ok(())) => {
                    tracing::info!("dump files of removed channel {channel} moved aside")
                }
                (DumpAction::MoveAside, Err(error)) => {
                    tracing::error!(
                        "cannot move the dump files of removed channel {channel} aside: {error}"
                    )
                }
                (DumpAction::ThreadDied, _) => {
                    self.failures += 1;
                    tracing::error!(
                        "the dump writer thread died; no more dumps will be written: {:?}",
                        outcome.result
                    )
                }
            }
        }
    }

    /// Dumps that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// One slice of a running dump. Returns true while more work is ready now.
    pub fn step(&mut self, engine: &Engine) -> bool {
        if self.cycle_started.is_none() {
            return false;
        }
        if !self.send_held_chunks() {
            return false;
        }
        if self.walk.is_none() && !self.begin_next_channel() {
            self.end_cycle();
            return false;
        }
        self.copy_some_records(engine)
    }

    fn begin_next_channel(&mut self) -> bool {
        let Some(channel) = self.queue.pop_front() else {
            return false;
        };
        if let Err(error) = self.thread.begin(&channel) {
            tracing::error!("cannot start dumping channel {channel}: {error}");
            return !self.queue.is_empty() && self.begin_next_channel();
        }
        let chunk = self
            .thread
            .recycle()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_TARGET_BYTES + 4096));
        self.walk = Some(Walk {
            channel,
            next_shard: 0,
            chunk,
            chunk_records: 0,
            started: Instant::now(),
        });
        true
    }

    fn end_cycle(&mut self) {
        if let Some(started) = self.cycle_started.take() {
            tracing::info!(
                "dump cycle handed to the writer in {:.3} s",
                started.elapsed().as_secs_f64()
            );
        }
    }

    /// Hands the held chunks over; false while the writer is still full.
    fn send_held_chunks(&mut self) -> bool {
        while let Some((chunk, records)) = self.held_chunks.pop_front() {
            if let Err(chunk) = self.thread.try_send_chunk(chunk, records) {
                self.held_chunks.push_front((chunk, records));
                return false;
            }
        }
        true
    }

    fn fresh_chunk(&mut self) -> Vec<u8> {
        self.thread
            .recycle()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_TARGET_BYTES + 4096))
    }

    /// Copies up to a step's worth of records of the current channel.
    fn copy_some_records(&mut self, engine: &Engine) -> bool {
        let Some(mut walk) = self.walk.take() else {
            return false;
        };
        let Some(channel) = engine.channel(&walk.channel) else {
            // Removed during the walk: RemoveChannel already told the writer (see below).
            return true;
        };
        let mut copied = 0;
        for _ in 0..SHARDS_PER_STEP {
            if walk.next_shard >= SHARD_COUNT
                || copied >= RECORDS_PER_STEP
                || walk.chunk.len() >= CHUNK_TARGET_BYTES
            {
                break;
            }
            for (key, value) in channel.shard(walk.next_shard) {
                if walk.chunk.len() + RECORD_OVERHEAD + value.len() > CHUNK_MAX_BYTES {
                    self.hold_chunk(&mut walk);
                }
                append_record(&mut walk.chunk, *key, value);
                walk.chunk_records += 1;
            }
            copied += channel.shard(walk.next_shard).len();
            walk.next_shard += 1;
        }
        let channel_done = walk.next_shard >= SHARD_COUNT;
        if walk.chunk.len() >= CHUNK_TARGET_BYTES || (channel_done && walk.chunk_records > 0) {
            self.hold_chunk(&mut walk);
        }
        self.walk = Some(walk);
        if !self.send_held_chunks() {
            return false;
        }
        if channel_done {
            self.finish_channel();
        }
        true
    }

    /// Queues the walk's chunk for the writer and gives the walk a fresh one.
    fn hold_chunk(&mut self, walk: &mut Walk) {
        let fresh = self.fresh_chunk();
        let chunk = std::mem::replace(&mut walk.chunk, fresh);
        self.held_chunks
            .push_back((chunk, std::mem::take(&mut walk.chunk_records)));
    }

    fn finish_channel(&mut self) {
        let Some(walk) = self.walk.take() else { return };
        if let Err(error) = self.thread.finish() {
            tracing::error!(
                "cannot finish the dump of channel {}: {error}",
                walk.channel
            );
        }
        tracing::debug!(
            "channel {} walked in {:.3} s",
            walk.channel,
            walk.started.elapsed().as_secs_f64()
        );
    }

    /// RemoveChannel: stop dumping the channel, and move its dump files aside so they are
    /// neither lost nor loaded again.
    pub fn channel_removed(&mut self, channel: &str) {
        self.queue.retain(|queued| queued != channel);
        if self
            .walk
            .as_ref()
            .is_some_and(|walk| walk.channel == channel)
        {
            self.walk = None;
            self.held_chunks.clear();
            if let Err(error) = self.thread.abort() {
                tracing::error!("cannot abort the dump of removed channel {channel}: {error}");
            }
        }
        if let Err(error) = self.thread.move_aside(channel) {
            tracing::error!("cannot move the dump of removed channel {channel} aside: {error}");
        }
    }

    /// The shutdown dump: every channel, completely, waiting for the writer. A periodic dump in
    /// progress is abandoned first (its previous dump stays in place).
    pub fn dump_all_blocking(&mut self, engine: &Engine) {
        if self.walk.take().is_some() {
            self.held_chunks.clear();
            if let Err(error) = self.thread.abort() {
                tracing::error!("cannot abort the running dump: {error}");
            }
        }
        self.queue.clear();
        self.cycle_started = None;
        let started = Instant::now();
        for name in engine.channel_names() {
            let Some(channel) = engine.channel(name) else {
                continue;
            };
            if let Err(error) = self.dump_channel_blocking(name, channel) {
                tracing::error!(
                    "shutdown dump of channel {name} FAILED, previous dump kept: {error}"
                );
            }
        }
        if let Err(error) = self.thread.wait_idle() {
            tracing::error!("dump writer failed during the shutdown dump: {error}");
        }
        self.report_outcomes();
        tracing::info!(
            "shutdown dump done in {:.3} s",
            started.elapsed().as_secs_f64()
        );
    }

    fn dump_channel_blocking(
        &mut self,
        name: &str,
        channel: &crate::engine::Channel,
    ) -> std::io::Result<()> {
        self.thread.begin(name)?;
        let mut chunk = self.fresh_chunk();
        let mut records = 0u32;
        for shard in 0..SHARD_COUNT {
            for (key, value) in channel.shard(shard) {
                if chunk.len() + RECORD_OVERHEAD + value.len() > CHUNK_MAX_BYTES {
                    let fresh = self.fresh_chunk();
                    self.thread.send_chunk(
                        std::mem::replace(&mut chunk, fresh),
                        std::mem::take(&mut records),
                    )?;
                }
                append_record(&mut chunk, *key, value);
                records += 1;
            }
            if chunk.len() >= CHUNK_TARGET_BYTES {
                let fresh = self.fresh_chunk();
                self.thread.send_chunk(
                    std::mem::replace(&mut chunk, fresh),
                    std::mem::take(&mut records),
                )?;
            }
        }
        if records > 0 {
            self.thread.send_chunk(chunk, records)?;
        }
        self.thread.finish()
    }
}
