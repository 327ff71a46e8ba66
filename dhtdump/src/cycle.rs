//! The dump cycle: connect to the node, list its channels, stream each one with a Mirror's
//! refresh (records with their versions, and tombstones) into the node's own dump format
//! (version 2), and the loop around it (random initial delay, pause between cycles,
//! retries, `--oneshot`).
//!
//! Files are written by [`DumpThread`], the node's own writer (from `dht-persist`), so they are exactly what
//! `dhtnode` loads at start: `<data_dir>/<ch>.dump.tmp` is written and fsynced, the previous
//! `<ch>.dump` becomes `<ch>.dump.backup`, the new file is renamed to `<ch>.dump`, and the
//! directory is fsynced. A dump that fails or is interrupted (error, SIGTERM) is aborted: its
//! temporary file is deleted and the previous `.dump` stays as it was. A kill -9 can leave a
//! `<ch>.dump.tmp` behind, which the node ignores and the next dump overwrites.
//!
//! Memory stays bounded whatever a channel's size: a reading thread takes records from the
//! Mirror stream (a bounded window of batches) into chunks of about [`CHUNK_TARGET_BYTES`]; at
//! most two chunks wait between it and this thread, and at most
//! [`CHUNK_QUEUE_CAPACITY`](dht_persist::dump::writer::CHUNK_QUEUE_CAPACITY) wait for the writer
//! thread (`send_chunk` blocks when its queue is full); chunk buffers are recycled. A whole
//! channel is never held in memory.

use crate::config::{resolve_node, DumpConfig};
use crate::stats::Stats;
use crate::util::{sleep_unless_stopped, utc_system_time};
use client::dht::{MirrorEvent, MirrorOptions};
use client::tls::ClientTls;
use client::{ClientOptions, DhtClient, NodeState};
use dht_persist::dump::entry::DumpEntry;
use dht_persist::dump::format::unix_now;
use dht_persist::dump::writer::{DumpAction, DumpOutcome, DumpThread};
use node_core::auth::Key;
use node_core::protocol::batch::{MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Uncompressed record bytes per chunk handed to the writer (one block of the dump file).
pub const CHUNK_TARGET_BYTES: usize = 256 * 1024;

/// What one complete cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleReport {
    pub channels: usize,
    pub records: u64,
    pub bytes: u64,
}

/// Why a cycle did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleError {
    /// SIGTERM/SIGINT: the dump in progress (if any) was aborted.
    Stopped,
    /// Anything else: logged, and the cycle is tried again after `retry_wait_s`.
    Failed(String),
}

impl std::fmt::Display for CycleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CycleError::Stopped => f.write_str("stopped by a signal"),
            CycleError::Failed(reason) => f.write_str(reason),
        }
    }
}

fn failed(reason: impl Into<String>) -> CycleError {
    CycleError::Failed(reason.into())
}

/// The sidecar: its connection to the node, its writer thread and what it remembers between
/// cycles.
pub struct Sidecar {
    node: String,
    data_dir: PathBuf,
    credentials: Option<(String, Key)>,
    tls: Option<ClientTls>,
    dht: Option<Arc<DhtClient>>,
    thread: DumpThread,
    /// The channels the node listed at the previous cycle (`None` before the first listing).
    known_channels: Option<BTreeSet<String>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// Set by SIGHUP: the next cycle reads the key file again (see [`Sidecar::reloading_key`]).
    reload_key: Option<(DumpConfig, Arc<AtomicBool>)>,
}

impl Sidecar {
    /// Starts the writer thread on `config.data_dir` (created if missing). `access`: the
    /// credentials and TLS settings loaded from `config`.
    pub fn new(
        config: &DumpConfig,
        access: (Option<(String, Key)>, Option<ClientTls>),
        stats: Arc<Stats>,
        stop: Arc<AtomicBool>,
    ) -> Result<Sidecar, String> {
        let thread = spawn_thread(&config.data_dir)?;
        let (credentials, tls) = access;
        Ok(Sidecar {
            node: config.node.clone(),
            data_dir: config.data_dir.clone(),
            credentials,
            tls,
            dht: None,
            thread,
            known_channels: None,
            stats,
            stop,
            reload_key: None,
        })
    }

    /// Reads `config`'s key file again at the start of the cycle after `flag` was set (SIGHUP):
    /// a changed key is used from that cycle on, on a new connection; a file that fails its
    /// checks keeps the current key, with an ERROR naming the problem.
    pub fn reloading_key(mut self, config: &DumpConfig, flag: Arc<AtomicBool>) -> Sidecar {
        self.reload_key = Some((config.clone(), flag));
        self
    }

    fn reload_key_if_asked(&mut self) {
        let Some((config, flag)) = &self.reload_key else {
            return;
        };
        if !flag.swap(false, Ordering::SeqCst) {
            return;
        }
        match config.load_credentials() {
            Ok(fresh) if fresh == self.credentials => {
                tracing::info!("SIGHUP: key file read again; the key is unchanged")
            }
            Ok(fresh) => {
                let name = fresh.as_ref().map_or("", |(name, _)| name.as_str());
                tracing::info!("SIGHUP: new key for client '{name}': reconnecting with it");
                self.credentials = fresh;
                self.dht = None;
            }
            Err(err) => {
                tracing::error!("SIGHUP: key not reloaded, keeping the current key: {err}")
            }
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Runs one cycle: every channel of the node, one after the other. On failure the
    /// connection is dropped (the next cycle connects afresh).
    pub fn run_cycle(&mut self) -> Result<CycleReport, CycleError> {
        let result = self.cycle();
        if matches!(result, Err(CycleError::Failed(_))) {
            self.dht = None;
        }
        result
    }

    fn cycle(&mut self) -> Result<CycleReport, CycleError> {
        self.reload_key_if_asked();
        if !self.thread.is_alive() {
            tracing::warn!("the dump writer thread had stopped; starting a new one");
            self.thread = spawn_thread(&self.data_dir).map_err(failed)?;
        }
        let dht = match self.dht.take() {
            Some(dht) => dht,
            None => self.connect()?,
        };
        node_core::systemd::status("dumping: a cycle is running");
        let result = self.dump_all(&dht);
        self.dht = Some(dht);
        result
    }

    /// Connects to the node now (at start: a wrong address or a node that refuses dhtdump
    /// shows at once, not at the first cycle hours later). The connection is kept for the
    /// first cycle.
    pub fn check_node(&mut self) -> Result<(), String> {
        let dht = self.connect().map_err(|err| err.to_string())?;
        self.dht = Some(dht);
        Ok(())
    }

    fn connect(&self) -> Result<Arc<DhtClient>, CycleError> {
        let connected = self.try_connect();
        self.stats.node_reachable(connected.is_ok());
        connected
    }

    fn try_connect(&self) -> Result<Arc<DhtClient>, CycleError> {
        let addr = resolve_node(&self.node).map_err(failed)?;
        let options = ClientOptions {
            // One node of a cluster owns only part of the hash space.
            allow_incomplete_ranges: true,
            credentials: self.credentials.clone(),
            tls: self.tls.clone(),
            ..ClientOptions::default()
        };
        let dht = DhtClient::connect(&[addr], options)
            .map_err(|err| failed(format!("cannot connect to the dht node: {err}")))?;
        // The client starts with nodes down (it serves a cluster's live nodes); dhtdump has
        // one node and nothing to do without it.
        if let Some(NodeState::Down { error, .. }) = dht.client().node_status(0).map(|s| s.state) {
            return Err(failed(format!("cannot connect to the dht node: {error}")));
        }
        let range = dht
            .ranges()
            .first()
            .map(|(_, range)| range.to_string())
            .unwrap_or_default();
        tracing::info!("connected to dht node {addr} (hash range {range})");
        Ok(Arc::new(dht))
    }

    fn dump_all(&mut self, dht: &Arc<DhtClient>) -> Result<CycleReport, CycleError> {
        let channels: BTreeSet<String> = dht
            .get_channels()
            .map_err(|err| failed(format!("GetChannels failed: {err}")))?
            .into_iter()
            .collect();
        if let Some(previous) = &self.known_channels {
            for gone in previous.difference(&channels) {
                tracing::info!("channel {gone} was removed from the node");
                self.stats.channel_removed(gone);
            }
        }
        self.known_channels = Some(channels.clone());
        let mut report = CycleReport::default();
        for channel in &channels {
            if self.stopped() {
                return Err(CycleError::Stopped);
            }
            let started = Instant::now();
            match dump_channel(dht, &mut self.thread, &self.stop, channel)? {
                Some(outcome) => {
                    tracing::info!(
                        "dumped channel {channel}: {} records, {} bytes, {:.2} s",
                        outcome.records,
                        outcome.bytes,
                        started.elapsed().as_secs_f64()
                    );
                    self.stats
                        .channel_dumped(channel, outcome.records, outcome.bytes);
                    report.channels += 1;
                    report.records += outcome.records;
                    report.bytes += outcome.bytes;
                }
                None => {
                    tracing::info!("channel {channel} was removed from the node");
                    self.stats.channel_removed(channel);
                    if let Some(known) = &mut self.known_channels {
                        known.remove(channel);
                    }
                }
            }
        }
        Ok(report)
    }
}

fn spawn_thread(data_dir: &std::path::Path) -> Result<DumpThread, String> {
    DumpThread::spawn(data_dir.to_path_buf()).map_err(|err| {
        format!(
            "cannot start the dump writer in {}: {err}",
            data_dir.display()
        )
    })
}

/// The node's change-log position now (GetStats `log_position`), taken before the channel's
/// GetAll starts: every change up to it is in memory before the GetAll reads, so the dump
/// covers it (docs/formats.md). `None` for a node without a change log (or whose stats cannot
/// be read: the dump then records no position, which covers nothing, as before).
fn node_log_position(dht: &DhtClient) -> Option<u64> {
    let stats = match dht.client().get_stats(0) {
        Ok(stats) => stats,
        Err(err) => {
            tracing::debug!("GetStats failed, the dump records no log position: {err}");
            return None;
        }
    };
    stats
        .into_iter()
        .find(|(name, _)| name == "log_position")
        .map(|(_, position)| position)
}

/// Streams one channel into its dump file. `Ok(None)`: the channel disappeared from the node
/// before any record was read (removed during the cycle); nothing was replaced.
fn dump_channel(
    dht: &Arc<DhtClient>,
    thread: &mut DumpThread,
    stop: &AtomicBool,
    channel: &str,
) -> Result<Option<DumpOutcome>, CycleError> {
    // Outcomes of earlier dumps were all read; anything left is stale.
    drop(thread.poll_outcomes());
    let begun = match node_log_position(dht) {
        Some(position) => thread.begin_entries(channel, Some(position)),
        None => thread.begin_entries(channel, None),
    };
    begun.map_err(|err| failed(format!("cannot start the dump of channel {channel}: {err}")))?;
    let streamed = stream_channel(dht, thread, stop, channel);
    let records = match streamed {
        Ok(records) => records,
        Err(error) => {
            abort(thread);
            return Err(error);
        }
    };
    if records == 0 {
        // GetAll of a channel the node does not have is an empty success: make sure the
        // channel still exists before replacing its last dump with an empty one.
        let still_there = dht
            .get_channels()
            .map(|channels| channels.iter().any(|name| name == channel));
        match still_there {
            Ok(true) => {}
            Ok(false) => {
                abort(thread);
                return Ok(None);
            }
            Err(err) => {
                abort(thread);
                return Err(failed(format!("GetChannels failed: {err}")));
            }
        }
    }
    let written = thread.finish().and_then(|()| thread.wait_idle());
    if let Err(err) = written {
        return Err(failed(format!(
            "dump writer failed on channel {channel}: {err}"
        )));
    }
    let outcome = thread
        .poll_outcomes()
        .into_iter()
        .find(|outcome| outcome.channel == channel || outcome.action == DumpAction::ThreadDied);
    match outcome {
        Some(outcome) => match &outcome.result {
            Ok(()) if outcome.action == DumpAction::Dump => Ok(Some(outcome)),
            Ok(()) => Err(failed(format!(
                "dump of channel {channel} ended as {:?}",
                outcome.action
            ))),
            Err(reason) => Err(failed(format!("dump of channel {channel}: {reason}"))),
        },
        None => Err(failed(format!(
            "the dump writer reported nothing for channel {channel}"
        ))),
    }
}

/// What the reading thread hands over.
enum Fetched {
    /// Records laid out by `append_record`, and how many.
    Chunk(Vec<u8>, u32),
    /// The stream ended: every record was read.
    Done,
    Failed(String),
}

/// Chunks the reading thread may have ready before it waits for the writer.
const FETCHED_CHUNKS: usize = 2;

/// Streams a channel into the writer; returns the number of records.
///
/// GetAll runs on a thread of its own, which lays records out in chunks of about
/// [`CHUNK_TARGET_BYTES`]; this thread hands them to the dump writer and looks at the stop flag
/// at least every [`STOP_CHECK_INTERVAL`](crate::util::STOP_CHECK_INTERVAL), so a node that
/// stops answering mid-stream (the client waits up to its request timeout, and retries) never
/// delays a SIGTERM. When this side gives up, the reading thread ends at its next record.
fn stream_channel(
    dht: &Arc<DhtClient>,
    thread: &mut DumpThread,
    stop: &AtomicBool,
    channel: &str,
) -> Result<u64, CycleError> {
    let (fetched_tx, fetched) = mpsc::sync_channel(FETCHED_CHUNKS);
    let (spare, spare_rx) = mpsc::channel::<Vec<u8>>();
    let reader = {
        let dht = Arc::clone(dht);
        let channel = channel.to_string();
        std::thread::Builder::new()
            .name("getall".into())
            .spawn(move || read_channel(&dht, &channel, &fetched_tx, &spare_rx))
            .map_err(|err| failed(format!("cannot start the GetAll thread: {err}")))?
    };
    drop(reader); // Detached: it ends on its own once `fetched` is dropped.
    let mut records = 0u64;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(CycleError::Stopped);
        }
        node_core::systemd::watchdog_ping_if_due(Instant::now());
        match fetched.recv_timeout(crate::util::STOP_CHECK_INTERVAL) {
            Ok(Fetched::Chunk(raw, count)) => {
                records += u64::from(count);
                thread.send_chunk(raw, count).map_err(|err| {
                    failed(format!("dump writer failed on channel {channel}: {err}"))
                })?;
                // A dump that failed meanwhile (disk full, ...) stops reading the channel.
                for outcome in thread.poll_outcomes() {
                    if let Err(reason) = outcome.result {
                        return Err(failed(format!("dump of channel {channel}: {reason}")));
                    }
                }
                while let Some(buffer) = thread.recycle() {
                    let _ = spare.send(buffer);
                }
            }
            Ok(Fetched::Done) => return Ok(records),
            Ok(Fetched::Failed(reason)) => return Err(failed(reason)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(failed(format!(
                    "the GetAll thread of channel {channel} stopped unexpectedly"
                )))
            }
        }
    }
}

/// The reading thread: the refresh of a Mirror of `channel` (docs/protocol.md §6.12: every
/// record with its version, and the tombstones), in chunks of dump entries (format 2). Ends
/// early when `out` is closed. The changes the Mirror sends meanwhile are left out, as a GetAll
/// leaves out what is written behind it: the log position the dump records covers them.
fn read_channel(
    dht: &DhtClient,
    channel: &str,
    out: &SyncSender<Fetched>,
    spare: &Receiver<Vec<u8>>,
) {
    let mut chunks = EntryChunks {
        out,
        spare,
        chunk: Vec::new(),
        count: 0,
    };
    chunks.chunk = chunks.fresh();
    let result = read_refresh(dht, channel, &mut chunks);
    let last = match result {
        Ok(()) => chunks.flush().then_some(Fetched::Done),
        Err(reason) => Some(Fetched::Failed(reason)),
    };
    if let Some(last) = last {
        let _ = out.send(last);
    }
}

/// Streams the Mirror's refresh into `chunks`; `Ok` once RefreshDone came (or the reader went
/// away), `Err` with the reason otherwise.
fn read_refresh(
    dht: &DhtClient,
    channel: &str,
    chunks: &mut EntryChunks<'_>,
) -> Result<(), String> {
    let failed = |err: &dyn std::fmt::Display| format!("Mirror of channel {channel} failed: {err}");
    let mut mirror = dht
        .mirror(channel, MirrorOptions::default())
        .map_err(|err| failed(&err))?;
    // The node answers within the client's request timeout, or it is taken as gone.
    let timeout = Duration::from_millis(dht.client().options().request_timeout_ms);
    loop {
        let event = mirror
            .next(timeout)
            .map_err(|err| failed(&err))?
            .ok_or_else(|| failed(&format!("no answer within {} ms", timeout.as_millis())))?;
        let added = match &event {
            MirrorEvent::Record {
                key,
                version,
                value,
            }
            // A record too large for a batch comes alone, as a change (so does a write made
            // during the refresh: a later entry of a key replaces an earlier one when the dump
            // loads). Removals made meanwhile are the log's, after the dump's position.
            | MirrorEvent::Changed {
                key,
                version,
                value,
            } => chunks.add(*key, DumpEntry::Record { version: *version, value }),
            MirrorEvent::Tombstone { key, version } => {
                let tombstone = DumpEntry::Tombstone {
                    version: *version,
                    stored_unix_s: unix_now(),
                };
                chunks.add(*key, tombstone)
            }
            // Removed before its refresh ended: nothing more to dump.
            MirrorEvent::RefreshDone { .. } | MirrorEvent::ChannelRemoved => return Ok(()),
            MirrorEvent::Removed { .. }
            | MirrorEvent::Overflow { .. }
            | MirrorEvent::RefreshStarted { .. } => true,
        };
        if !added {
            return Ok(()); // The writer side is gone.
        }
    }
}

/// Dump entries laid out in chunks for the writer.
struct EntryChunks<'a> {
    out: &'a SyncSender<Fetched>,
    spare: &'a Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    count: u32,
}

impl EntryChunks<'_> {
    fn fresh(&self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_TARGET_BYTES + 64 * 1024))
    }

    /// Adds an entry; false when the writer side is gone.
    fn add(&mut self, key: u64, entry: DumpEntry<'_>) -> bool {
        let len = RECORD_OVERHEAD + entry.encoded_len();
        if self.count > 0 && self.chunk.len() + len > MAX_BATCH_UNCOMPRESSED_BYTES && !self.flush()
        {
            return false;
        }
        entry.append_to(&mut self.chunk, key);
        self.count += 1;
        self.chunk.len() < CHUNK_TARGET_BYTES || self.flush()
    }

    /// Hands the chunk over (if it holds anything); false when the writer side is gone.
    fn flush(&mut self) -> bool {
        if self.count == 0 {
            return true;
        }
        let fresh = self.fresh();
        let full = std::mem::replace(&mut self.chunk, fresh);
        let count = std::mem::take(&mut self.count);
        self.out.send(Fetched::Chunk(full, count)).is_ok()
    }
}

/// Abandons the dump in progress and waits until its temporary file is gone.
fn abort(thread: &mut DumpThread) {
    if thread.abort().and_then(|()| thread.wait_idle()).is_ok() {
        drop(thread.poll_outcomes());
    }
}

/// How dhtdump runs: periodically (the daemon) or once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Periodic,
    Oneshot,
}

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `--oneshot`: the cycle completed.
    Done,
    /// SIGTERM/SIGINT (in periodic mode, the only way it ends).
    Stopped,
    /// `--oneshot` was stopped before its cycle completed.
    StoppedIncomplete,
}

/// The timing of the loop, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub period: Duration,
    pub min_wait: Duration,
    pub retry_wait: Duration,
}

/// The pause after a cycle that took `took`: the rest of the period, but at least `min_wait`.
/// The flag says whether it was clamped to `min_wait`.
pub fn pause_after(schedule: &Schedule, took: Duration) -> (Duration, bool) {
    let rest = schedule.period.saturating_sub(took);
    if rest < schedule.min_wait {
        (schedule.min_wait, true)
    } else {
        (rest, false)
    }
}

/// The main loop. Periodic: a random initial delay in `[0, period)`, then cycle, pause, cycle,
/// ... until `stop`. Oneshot: one cycle at once, tried again after `retry_wait` until it
/// completes or `stop` is set.
pub fn run(sidecar: &mut Sidecar, schedule: &Schedule, mode: Mode) -> Ended {
    let stop = Arc::clone(&sidecar.stop);
    let incomplete = match mode {
        Mode::Periodic => Ended::Stopped,
        Mode::Oneshot => Ended::StoppedIncomplete,
    };
    if mode == Mode::Periodic {
        let delay = crate::util::random_delay(schedule.period);
        tracing::info!(
            "first dump cycle in {:.1} s, at {} (random delay spreading the load of many dumpers)",
            delay.as_secs_f64(),
            utc_system_time(SystemTime::now() + delay)
        );
        if !sleep_unless_stopped(&stop, delay) {
            return stopping(incomplete);
        }
    }
    loop {
        let started = Instant::now();
        match sidecar.run_cycle() {
            Ok(report) => {
                let took = started.elapsed();
                sidecar.stats.cycle_done(took);
                let summary = format!(
                    "{} channels, {} records, {} bytes",
                    report.channels, report.records, report.bytes
                );
                if mode == Mode::Oneshot {
                    tracing::info!("cycle done in {:.1}s ({summary})", took.as_secs_f64());
                    return Ended::Done;
                }
                let pause = announce_pause(schedule, took, &summary);
                if !sleep_unless_stopped(&stop, pause) {
                    return stopping(Ended::Stopped);
                }
            }
            Err(CycleError::Stopped) => {
                tracing::info!(
                    "dump interrupted by a signal; the dump in progress was abandoned and the \
                     previous dump files are untouched"
                );
                return stopping(incomplete);
            }
            Err(CycleError::Failed(reason)) => {
                sidecar.stats.cycle_failed();
                announce_failure(schedule, &reason);
                if !sleep_unless_stopped(&stop, schedule.retry_wait) {
                    return stopping(incomplete);
                }
            }
        }
    }
}

/// The pause after a periodic cycle that took `took`, logged and shown to systemd.
fn announce_pause(schedule: &Schedule, took: Duration, summary: &str) -> Duration {
    let (pause, clamped) = pause_after(schedule, took);
    if clamped {
        tracing::warn!(
            "the cycle took {:.1}s, leaving less than min_wait_s of the {}s period; \
                 pausing min_wait_s = {}s",
            took.as_secs_f64(),
            schedule.period.as_secs(),
            schedule.min_wait.as_secs()
        );
    }
    tracing::info!(
        "cycle done in {:.1}s, next cycle at {} (in {:.1}s; {summary})",
        took.as_secs_f64(),
        utc_system_time(SystemTime::now() + pause),
        pause.as_secs_f64()
    );
    node_core::systemd::status(&format!(
        "last cycle done in {:.1}s ({summary}); next cycle at {}",
        took.as_secs_f64(),
        utc_system_time(SystemTime::now() + pause)
    ));
    pause
}

/// A failed cycle, logged and shown to systemd.
fn announce_failure(schedule: &Schedule, reason: &str) {
    node_core::systemd::status(&format!(
        "last cycle FAILED, retrying in {}s: {reason}",
        schedule.retry_wait.as_secs()
    ));
    tracing::error!(
        "dump cycle failed: {reason}; retrying in {}s",
        schedule.retry_wait.as_secs()
    );
}

fn stopping(ended: Ended) -> Ended {
    tracing::info!("stopping on signal");
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_fills_the_period_but_never_drops_below_min_wait() {
        let schedule = Schedule {
            period: Duration::from_secs(100),
            min_wait: Duration::from_secs(10),
            retry_wait: Duration::from_secs(5),
        };
        assert_eq!(
            pause_after(&schedule, Duration::from_secs(30)),
            (Duration::from_secs(70), false)
        );
        assert_eq!(
            pause_after(&schedule, Duration::from_secs(95)),
            (Duration::from_secs(10), true)
        );
        assert_eq!(
            pause_after(&schedule, Duration::from_secs(500)),
            (Duration::from_secs(10), true)
        );
        let no_min = Schedule {
            min_wait: Duration::ZERO,
            ..schedule
        };
        assert_eq!(
            pause_after(&no_min, Duration::from_secs(500)),
            (Duration::ZERO, false)
        );
    }
}
