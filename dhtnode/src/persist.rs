//! The engine as the persistence crate ([`dht_persist`]) sees it: a channel is a
//! [`ShardSource`] the dump writer reads shard by shard, the engine a [`DumpSource`] for the
//! [`DumpScheduler`](dht_persist::DumpScheduler), and start-up loading fills the engine
//! through a [`LoadTarget`] that reports each channel loaded to systemd (`STATUS=`, and more
//! time to start: see [`node_core::systemd::progress`]). After the dumps, [`replay`] applies
//! the change log written since them.

use crate::engine::replay::{Admission, OutOfRangeInLog, ReplayBatch};
use crate::engine::{Channel, Engine, SHARD_COUNT};
use dht_persist::loader::{
    load_data_dir, LoadError, LoadOptions, LoadReport, LoadTarget, LogGapPolicy,
};
use dht_persist::wal::{JumpBase, LogEnd, LogError, LogReader, ReadFrom};
use dht_persist::{DumpSource, ShardSource};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How many values ahead of the one being read a dump prefetches: enough to cover a memory
/// access (~100 ns) with the copying of the values in between, few enough to stay in the cache.
const PREFETCH_AHEAD: usize = 8;

impl ShardSource for Channel {
    fn shard_count(&self) -> usize {
        SHARD_COUNT
    }

    /// Values live in their own allocations, scattered over memory: reading them in table order
    /// waits for memory once per value (most of a dump's time, without this). So the walk
    /// prefetches the value [`PREFETCH_AHEAD`] entries ahead of the one it hands out.
    fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, u64, &[u8])) {
        let shard = self.shard(index);
        let mut ahead = shard.values();
        for value in ahead.by_ref().take(PREFETCH_AHEAD) {
            value.prefetch();
        }
        for (key, value) in shard.iter() {
            if let Some(later) = ahead.next() {
                later.prefetch();
            }
            each(*key, value.version(), value);
        }
    }

    /// A window of tombstones at a time, copied out: the lock is not held while the writer
    /// encodes them.
    fn for_each_tombstone(&self, each: &mut dyn FnMut(u64, u64, u64)) {
        let mut window = Vec::new();
        let mut after = None;
        loop {
            let last = self.tombstones().window(after, 4096, &mut window);
            for (key, tombstone) in &window {
                each(*key, tombstone.version, tombstone.stored_unix_s);
            }
            after = window.last().map(|(key, _)| *key);
            if last || after.is_none() {
                return;
            }
        }
    }
}

impl DumpSource for Engine {
    fn for_each_channel(&self, each: &mut dyn FnMut(&str, Arc<dyn ShardSource>)) {
        for (name, channel) in self.channels() {
            each(name, channel.clone());
        }
    }

    fn channel(&self, name: &str) -> Option<Arc<dyn ShardSource>> {
        let channel: Arc<Channel> = Engine::channel(self, name)?.clone();
        Some(channel)
    }

    fn channel_count(&self) -> usize {
        self.channel_names().len()
    }

    fn log_position(&self) -> Option<u64> {
        self.log().position()
    }
}

/// Builds each channel apart and hands it to the engine only once its file loaded completely.
struct EngineTarget<'a> {
    engine: &'a mut Engine,
    channels_loaded: usize,
    /// Tombstones dropped beyond `dht.tombstone_limit` as channels came in.
    tombstones_dropped: u64,
}

impl LoadTarget for EngineTarget<'_> {
    type Channel = Channel;

    fn new_channel(&mut self, _name: &str) -> Channel {
        Channel::new()
    }

    /// A later entry of a key replaces an earlier one (dhtdump's dumps may hold a key twice:
    /// its refresh, then a write made during it).
    fn insert(&mut self, channel: &mut Channel, key: u64, version: u64, value: &[u8]) {
        channel.put(key, value, version);
        channel.tombstones().clear(key);
    }

    fn insert_tombstone(&mut self, channel: &mut Channel, key: u64, version: u64, stored: u64) {
        let tombstone = crate::engine::tombstones::Tombstone {
            version,
            stored_unix_s: stored,
        };
        channel.remove(key);
        channel.tombstones().set(key, tombstone);
    }

    fn commit(&mut self, name: &str, channel: Channel) {
        self.engine.insert_channel(name, channel);
        // The running node's limit, kept while loading too (so loading holds at most the
        // limit plus one channel's tombstones).
        self.tombstones_dropped += self.engine.trim_tombstones_to_limit();
        self.channels_loaded += 1;
        let size = self.engine.size();
        node_core::systemd::progress(&format!(
            "loading dumps: {} channels loaded ({} records, {} bytes), last {name}",
            self.channels_loaded, size.records, size.bytes
        ));
    }
}

/// Loads every channel of `data_dir` into `engine` (see [`dht_persist::loader`] for which file
/// wins and what is skipped).
pub fn load(
    data_dir: &std::path::Path,
    options: &LoadOptions,
    engine: &mut Engine,
) -> Result<LoadReport, LoadError> {
    let mut target = EngineTarget {
        engine,
        channels_loaded: 0,
        tombstones_dropped: 0,
    };
    let report = load_data_dir(data_dir, options, &mut target)?;
    warn_tombstones_dropped("the dumps", target.tombstones_dropped, target.engine);
    Ok(report)
}

/// The WARN line for tombstones loading dropped beyond `dht.tombstone_limit` (`from`: the dumps
/// or the change log).
fn warn_tombstones_dropped(from: &str, dropped: u64, engine: &Engine) {
    if dropped > 0 {
        tracing::warn!(
            "{from} held more tombstones than dht.tombstone_limit = {}: {dropped} tombstones \
             were not loaded, the oldest stored first (as dht.tombstone_ttl_s drops them); an \
             older versioned write of their keys that arrives now is stored again",
            engine.tombstone_limits().max_tombstones
        );
    }
}

/// Why the start-up replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log cannot be read (damage, a gap, I/O): `dumptool log-check` tells more.
    #[error("{0}; see `dumptool log-check` (docs/operations.md)")]
    Log(#[from] LogError),
    #[error("{0}")]
    OutOfRange(#[from] OutOfRangeInLog),
    /// Dumps cover the log only to before its first entry, and `dht.log_gap` is "fatal".
    #[error(
        "{0}. The node does not start: put back dumps (or log segments) that reach position \
         {reach}, or set [dht] log_gap = \"load\" to start with the dumps and the log as they \
         are, without those changes (docs/operations.md, \"A gap between the dumps and the \
         change log\")", reach = .0.first_seq - 1
    )]
    Gap(LogGap),
}

/// Channels whose dump covers the change log only to a position before the log's first entry:
/// the changes in between are in neither (an old dump restored, log segments deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGap {
    /// The log's first segment, its first position, and whether it is a sequence jump.
    pub first_segment: PathBuf,
    pub first_seq: u64,
    pub jump: bool,
    /// (channel, position its dump covers), by name.
    pub channels: Vec<(String, u64)>,
}

/// Channels named in a [`LogGap`]'s message; the others are counted.
const GAP_CHANNELS_NAMED: usize = 10;

impl std::fmt::Display for LogGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lowest = self.channels.iter().map(|(_, p)| *p).min().unwrap_or(0);
        write!(
            f,
            "change log GAP: the log's first entry is at position {} ({}{}), but the dumps of \
             {} channel(s) cover only up to an earlier position:",
            self.first_seq,
            self.first_segment.display(),
            if self.jump { ", a sequence jump" } else { "" },
            self.channels.len()
        )?;
        for (channel, position) in self.channels.iter().take(GAP_CHANNELS_NAMED) {
            write!(f, " {channel} (position {position})")?;
        }
        if self.channels.len() > GAP_CHANNELS_NAMED {
            write!(f, " and {} more", self.channels.len() - GAP_CHANNELS_NAMED)?;
        }
        write!(
            f,
            "; their changes from position {} to {} are in neither the dumps nor the log (an old \
             dump restored? log segments deleted?)",
            lowest + 1,
            self.first_seq - 1
        )
    }
}

/// What the start-up replay of the change log did.
#[derive(Debug)]
pub struct Replayed {
    /// Where the log ends (its torn tail cut): what a writer continues after.
    pub end: LogEnd,
    /// Entries applied, and entries passed over because their channel's dump covers them.
    pub applied: u64,
    pub skipped: u64,
    /// The highest position a loaded dump or `wal/covered` covers (a writer must start past
    /// it: a replay passes over what they cover).
    pub highest_dump_position: u64,
    /// The position each loaded dump covers (0: none), by channel.
    pub dump_positions: BTreeMap<String, u64>,
    /// Logged values the loader's rules kept out (too large, outside the range).
    pub admission: Admission,
}

/// Replays the change log of `data_dir` on top of the dumps `report` loaded: each channel gets
/// the entries after the position its dump covers (all of them for a channel without one, or
/// whose dump records none: written by dhtdump or before the log; the replay starts early
/// enough for those, see [`replay_start`]). A torn tail is cut, with a
/// log line saying how many bytes and entries; damage in the middle, a gap or missing segments
/// stop the start (the error names the file: see `dumptool log-check`), and so does a log that
/// starts after a dump's position unless `gap_policy` says load ([`LogGap`]). Logged values go
/// in by the rules dumps are loaded by (`options`: see [`Admission`]).
pub fn replay(
    data_dir: &Path,
    report: &LoadReport,
    options: &LoadOptions,
    gap_policy: LogGapPolicy,
    engine: &mut Engine,
) -> Result<Replayed, ReplayError> {
    let dir = dht_persist::layout::wal_dir(data_dir);
    let positions: HashMap<&str, u64> = report
        .channels
        .iter()
        .map(|channel| (channel.channel.as_str(), channel.log_position))
        .collect();
    let covered = read_covered(&dir);
    // A covered position past the log's end (the dumps and segments deleted, the file left)
    // must not make the next start pass over what is written now.
    let highest_dump_position = positions
        .values()
        .copied()
        .chain(covered)
        .max()
        .unwrap_or(0);
    let from = replay_start(&dir, &positions, covered, gap_policy)?;
    let started = Instant::now();
    let mut reader = LogReader::open(&dir, from)?;
    warn_others(reader.others());
    let (mut applied, mut skipped) = (0u64, 0u64);
    let mut batch = ReplayBatch::new(Admission::new(*options));
    while let Some(entry) = reader.next_entry()? {
        let covered = positions.get(entry.change.channel()).copied().unwrap_or(0);
        if entry.seq <= covered {
            skipped += 1;
            continue;
        }
        batch.add(engine, &entry.change)?;
        applied += 1;
        if applied % 1_000_000 == 0 {
            node_core::systemd::progress(&format!("replaying the change log: {applied} entries"));
        }
    }
    batch.apply(engine);
    // Read once: the writer goes on in a new segment, and the log's pages are not kept.
    reader.uncache_read_segments();
    let zeros_ahead = reader.zeros_ahead();
    let Some(mut end) = reader.into_end() else {
        unreachable!("the reader returned its last entry");
    };
    if let Some(torn) = end.cut_torn_tail()? {
        tracing::warn!("change log: cut a {torn}");
    } else if let Some((path, len)) = zeros_ahead {
        cut_zeros_ahead(&path, len);
    }
    tracing::info!(
        "change log replayed in {:.3} s: {applied} entries applied, {skipped} already in their \
         dumps; the log ends at position {}",
        started.elapsed().as_secs_f64(),
        end.last_seq
    );
    log_admission(&batch.admission, options);
    warn_tombstones_dropped("the change log", batch.tombstones_dropped, engine);
    Ok(Replayed {
        end,
        applied,
        skipped,
        highest_dump_position,
        dump_positions: positions
            .iter()
            .map(|(channel, &position)| (channel.to_string(), position))
            .collect(),
        admission: batch.admission,
    })
}

/// Cuts the zeros after the last entry of `path`, which ends at `len`: its length is then what
/// it holds (the log's `log_bytes`). Should that fail, the zeros stay: readers take them for
/// the end all the same.
fn cut_zeros_ahead(path: &Path, len: u64) {
    if let Err(error) = dht_persist::wal::cut_zeros_ahead(path, len) {
        tracing::warn!(
            "change log: cannot cut the zeros written ahead after byte {len} of {}: {error}",
            path.display()
        );
    }
}

/// The WARN lines for logged values the loader's rules kept out, as the loader warns for a
/// dump's.
fn log_admission(admission: &Admission, options: &LoadOptions) {
    if admission.too_large > 0 {
        tracing::warn!(
            "change log: {} values longer than dht.max_value_bytes = {} were not loaded (their \
             keys are absent, as when such a record is in a dump)",
            admission.too_large,
            options.max_value_bytes
        );
    }
    if admission.out_of_range > 0 {
        tracing::warn!(
            "change log: {} values outside this node's range {} (dht.out_of_range = {}: {})",
            admission.out_of_range,
            options.range,
            options.policy,
            match options.policy {
                dht_persist::loader::OutOfRangePolicy::Ignore => "not loaded",
                _ => "loaded",
            }
        );
    }
}

/// Where the replay starts: the lowest position a loaded dump covers, and no later than what
/// the last complete dump cycle covers (`wal/covered`): a channel with no dump has all its
/// changes after that cycle's position. Without that file, at the log's first entry. A dump
/// that records no position counts as covering what the log no longer holds (the log's first
/// segment starts after what was deleted, which complete dumps covered). A dump covering less
/// than that is a [`LogGap`]: an error, or under [`LogGapPolicy::Load`] an ERROR line and a
/// replay of the whole log for it.
fn replay_start(
    dir: &Path,
    positions: &HashMap<&str, u64>,
    covered: Option<u64>,
    gap_policy: LogGapPolicy,
) -> Result<ReadFrom, ReplayError> {
    let probe = LogReader::open(dir, ReadFrom::Start)?;
    let first = probe.summaries().first();
    let floor = first
        .and_then(|segment| segment.header)
        .map_or(0, |header| header.first_seq - 1);
    let base = first.and_then(|_| read_jump_base(dir));
    if let Some(gap) = first.and_then(|segment| log_gap(segment, positions, base.as_ref())) {
        match gap_policy {
            LogGapPolicy::Fatal => return Err(ReplayError::Gap(gap)),
            LogGapPolicy::Load => tracing::error!(
                "{gap}; starting without those changes, as dht.log_gap = \"load\" says"
            ),
        }
    }
    let cycle = covered.map_or(floor, |position| position.max(floor));
    // Past the gap check, no dump covers less than the log holds (or the policy said load).
    let lowest = positions
        .values()
        .map(|&position| position.max(floor))
        .fold(cycle, u64::min);
    Ok(ReadFrom::After(lowest))
}

/// A WARN per file of the log directory that is neither a segment nor the log's own `covered`
/// or `jump-base`
/// (a segment copied back under a wrong name would otherwise be passed over in silence).
fn warn_others(others: &[PathBuf]) {
    use dht_persist::wal::covered::{COVERED_FILE, COVERED_TMP_FILE};
    use dht_persist::wal::jump_base::{JUMP_BASE_FILE, JUMP_BASE_TMP_FILE};
    let own = |path: &&PathBuf| {
        path.file_name().is_some_and(|name| {
            [
                COVERED_FILE,
                COVERED_TMP_FILE,
                JUMP_BASE_FILE,
                JUMP_BASE_TMP_FILE,
            ]
            .iter()
            .any(|own| name == *own)
        })
    };
    for path in others.iter().filter(|path| !own(path)) {
        tracing::warn!(
            "change log: ignoring {}: not a segment name (a segment is `NNNNNNNN.log`, at least \
             8 digits)",
            path.display()
        );
    }
}

/// What `wal/jump-base` records, if it is there and sound (a damaged one counts as missing,
/// with a WARN: the gap check is then as strict as without it).
fn read_jump_base(dir: &Path) -> Option<JumpBase> {
    sound_or_warn(
        dht_persist::wal::read_jump_base(dir),
        "the gap check goes without it",
    )
}

/// What a read of one of the log's small files found, or `None` with a WARN naming the
/// problem and what the start does `instead` when the file is damaged.
fn sound_or_warn<T>(read: Result<Option<T>, String>, instead: &str) -> Option<T> {
    read.unwrap_or_else(|problem| {
        tracing::warn!("{problem}; {instead}");
        None
    })
}

/// The log begins with a sequence jump in segment `segment` at `first_seq` (its first): records
/// the channels whose dump covers less, at the position it covers, so that a crash before
/// their next dump is no gap at the next start ([`dht_persist::wal::jump_base`]). Should that
/// fail, that start reports the gap (as strict as without the file, never less).
pub fn record_jump_base(dir: &Path, segment: u64, first_seq: u64, dumps: &BTreeMap<String, u64>) {
    let positions: BTreeMap<String, u64> = dumps
        .iter()
        .filter(|(_, &position)| position > 0 && position < first_seq - 1)
        .map(|(channel, &position)| (channel.clone(), position))
        .collect();
    if positions.is_empty() {
        return;
    }
    let count = positions.len();
    let base = JumpBase {
        segment,
        first_seq,
        positions,
    };
    match dht_persist::wal::write_jump_base(dir, &base) {
        Ok(()) => tracing::info!(
            "change log: begun at position {first_seq} over the dumps of {count} channel(s) \
             covering less (recorded in {}: no gap for them at the next start)",
            dir.join(dht_persist::wal::jump_base::JUMP_BASE_FILE)
                .display()
        ),
        Err(error) => tracing::warn!(
            "change log: cannot record the dumps the log was begun over in {}: {error}; a \
             crash before their next dump stops the next start with a GAP for them",
            dir.display()
        ),
    }
}

/// The largest log position a dump or `wal/covered` can cover (the one bound, kept beside
/// `wal/covered`'s reader, which refuses a position past it).
pub use dht_persist::wal::covered::MAX_COVERED_POSITION as MAX_DUMP_POSITION;

/// The position `wal/covered` records, if it is there and sound (a damaged file, one past
/// [`MAX_DUMP_POSITION`] included, counts as missing, with a WARN: the replay then reads the
/// whole log).
fn read_covered(dir: &Path) -> Option<u64> {
    sound_or_warn(
        dht_persist::wal::read_covered(dir),
        "the replay reads the whole log",
    )
}

/// The channels whose dump records a position (not 0: none) before the one the log's first
/// segment starts after, but for a dump that segment's sequence jump was begun over (or a newer
/// one), as `wal/jump-base` records ([`dht_persist::wal::jump_base`]).
fn log_gap(
    first: &dht_persist::wal::SegmentSummary,
    positions: &HashMap<&str, u64>,
    base: Option<&JumpBase>,
) -> Option<LogGap> {
    let header = first.header?;
    let floor = header.first_seq - 1;
    let begun_over = |channel: &str, position: u64| {
        base.is_some_and(|base| base.accepts(first.number, header.first_seq, channel, position))
    };
    let mut channels: Vec<(String, u64)> = positions
        .iter()
        .filter(|(_, &position)| position > 0 && position < floor)
        .filter(|(channel, &position)| !begun_over(channel, position))
        .map(|(channel, &position)| (channel.to_string(), position))
        .collect();
    if channels.is_empty() {
        return None;
    }
    channels.sort();
    Some(LogGap {
        first_segment: first.path.clone(),
        first_seq: header.first_seq,
        jump: header.is_jump(),
        channels,
    })
}
