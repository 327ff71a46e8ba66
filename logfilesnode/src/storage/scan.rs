//! Range scans over one channel directory.
//!
//! [`RangeScan`] visits only the bucket files that overlap `[from, to]` (inclusive), in bucket
//! (time) order, maps each one whole (memmap2) and returns its records with keys in range.
//!
//! Order: records of a bucket are stored in append order, which need not be key order (the
//! reference's "unordered put" tests write keys in any order). Each bucket's in-range records
//! are therefore returned sorted by key (stably: records with equal keys keep their append
//! order). As buckets are time-ordered, the scan yields keys in ascending order — as long as
//! every record sits in the bucket its key belongs to, which our writer guarantees (a misplaced
//! record in a reference file is still returned when in range, just not in key order; `check`
//! reports it).
//!
//! Two readers: [`BucketCursor`] (the node's, through [`RangeScan::next_cursor`] and
//! [`RangeScan::for_each`]) reads in budgeted slices and uses the bucket's time index
//! ([`super::index`]) to start at the first stretch that can hold `from` and stop after `to`;
//! [`ScannedBucket`] ([`RangeScan::next_bucket`]) decodes the whole bucket and sorts an index of
//! its in-range records in memory (24 bytes per record) — the plain reader the tests compare
//! the cursor with.
//!
//! Damaged records are skipped and reported per bucket ([`ScannedBucket::damage`],
//! [`BucketCursor::damage`]); the scan carries on with the next bucket.

use super::format::{BucketDecoder, Damage, Record};
use super::index::{
    load_index, save_index, BucketIndex, IndexBuilder, IndexProblem, DEFAULT_INDEX_INTERVAL_BYTES,
};
use super::layout::{
    list_slot_buckets, list_slots, overlapping_bucket_range, BucketFile, BucketId,
};
use super::writer::map_file;
use super::StorageError;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// At most this many damage items are kept per bucket (all are counted).
pub const MAX_DAMAGE_KEPT: usize = 64;

/// Bucket ids of one slot a scan holds at once (2 KiB); a slot holds up to 4096 buckets.
pub const BUCKET_WINDOW: usize = 256;

/// A scan of `[from, to]` over one channel directory.
///
/// It lists the slot directories in range when it starts and each slot's buckets as it gets
/// there, a window of at most [`BUCKET_WINDOW`] at a time, so what it holds does not grow with
/// the number of buckets in the range (a read that waits for its client holds this between
/// steps). Buckets created after the scan passed their place are not visited.
#[derive(Debug, Clone)]
pub struct RangeScan {
    channel_dir: PathBuf,
    from: u64,
    to: u64,
    options: CursorOptions,
    /// Slots still to list, ascending.
    slots: std::collections::VecDeque<u64>,
    /// The slot being visited and the next of its buckets, ascending.
    slot: Option<u64>,
    window: std::collections::VecDeque<BucketId>,
    /// `window` holds the slot's last buckets.
    slot_ends: bool,
    /// The last bucket of the slot listed so far: the next window starts after it.
    last_listed: Option<BucketId>,
}

impl RangeScan {
    /// Lists the slot directories overlapping `[from, to]` (nothing when `from > to` or the
    /// channel directory does not exist).
    pub fn new(channel_dir: &Path, from: u64, to: u64) -> Result<Self, StorageError> {
        let slots = match overlapping_bucket_range(from, to) {
            Some((first, last)) => list_slots(channel_dir, first, last)
                .map_err(|e| StorageError::io(channel_dir, e))?,
            None => Vec::new(),
        };
        Ok(RangeScan {
            channel_dir: channel_dir.to_path_buf(),
            from,
            to,
            options: CursorOptions::default(),
            slots: slots.into(),
            slot: None,
            window: Default::default(),
            slot_ends: true,
            last_listed: None,
        })
    }

    /// The same scan, its cursors using and keeping indexes as `options` say.
    pub fn with_options(self, options: CursorOptions) -> Self {
        RangeScan { options, ..self }
    }

    /// A scan with nothing (left) to visit.
    pub fn empty() -> Self {
        RangeScan {
            channel_dir: PathBuf::new(),
            from: 1,
            to: 0,
            options: CursorOptions::default(),
            slots: Default::default(),
            slot: None,
            window: Default::default(),
            slot_ends: true,
            last_listed: None,
        }
    }

    /// Heap bytes the scan holds (for a stream's memory accounting): at most a window of
    /// bucket ids, the slots in range and the channel directory's path.
    pub fn held_bytes(&self) -> usize {
        self.channel_dir.capacity()
            + self.slots.capacity() * std::mem::size_of::<u64>()
            + self.window.capacity().max(BUCKET_WINDOW) * std::mem::size_of::<BucketId>()
    }

    /// The next bucket file to visit, listing the next window or slot when needed. An error
    /// (a slot directory that cannot be listed) concerns that slot only: it is skipped.
    fn next_file(&mut self) -> Option<Result<BucketFile, StorageError>> {
        let (first, last) = overlapping_bucket_range(self.from, self.to)?;
        loop {
            if let Some(id) = self.window.pop_front() {
                return Some(Ok(BucketFile {
                    id,
                    path: id.path_in(&self.channel_dir),
                }));
            }
            let (slot, after) = match (self.slot, self.slot_ends) {
                (Some(slot), false) => (slot, self.last_listed),
                _ => (self.slots.pop_front()?, None),
            };
            self.slot = Some(slot);
            let listed =
                list_slot_buckets(&self.channel_dir, slot, first, last, after, BUCKET_WINDOW);
            match listed {
                Ok((ids, ends)) => {
                    self.last_listed = ids.last().copied();
                    self.window.extend(ids);
                    self.slot_ends = ends;
                }
                Err(e) => {
                    self.slot_ends = true;
                    let dir = self.channel_dir.join(format!("{slot:010x}"));
                    return Some(Err(StorageError::io(&dir, e)));
                }
            }
        }
    }

    /// The bucket files still to be visited (lists them all; for tools and tests).
    pub fn remaining(&self) -> Result<Vec<BucketFile>, StorageError> {
        let mut rest = self.clone();
        let mut files = Vec::new();
        while let Some(file) = rest.next_file() {
            files.push(file?);
        }
        Ok(files)
    }

    /// Reads the next bucket. An error (the file vanished, cannot be mapped) concerns that
    /// bucket only; the caller may go on with the next.
    pub fn next_bucket(&mut self) -> Option<Result<ScannedBucket, StorageError>> {
        let (from, to) = (self.from, self.to);
        Some(
            self.next_file()?
                .and_then(|bucket| ScannedBucket::read(bucket, from, to)),
        )
    }

    /// Opens the next bucket for reading in slices ([`BucketCursor`]). An error concerns that
    /// bucket only; the caller may go on with the next.
    pub fn next_cursor(&mut self) -> Option<Result<BucketCursor, StorageError>> {
        self.next_cursor_with(|_| None)
    }

    /// [`next_cursor`](Self::next_cursor), reading with `live(bucket)` when it gives an index:
    /// the one the node's writer keeps of a bucket it has open (exact for every record it
    /// appended; the index file of such a bucket is only written when the writer closes).
    pub fn next_cursor_with<'i>(
        &mut self,
        live: impl FnOnce(&BucketFile) -> Option<&'i IndexBuilder>,
    ) -> Option<Result<BucketCursor, StorageError>> {
        let (from, to, options) = (self.from, self.to, self.options);
        Some(self.next_file()?.and_then(|bucket| {
            let index = live(&bucket);
            BucketCursor::open(bucket, from, to, options, index)
        }))
    }

    /// Calls `f` for every record in range, in order, and returns the damage of all buckets.
    /// Buckets that cannot be read are returned as errors too; the scan goes on. Reads through
    /// [`BucketCursor`], the node's read path, without a work budget.
    pub fn for_each(
        mut self,
        mut f: impl FnMut(Record<'_>),
    ) -> (Vec<(PathBuf, Damage)>, Vec<StorageError>) {
        let unbounded = StepBudget {
            records: usize::MAX,
            bytes: usize::MAX,
        };
        let mut damage = Vec::new();
        let mut errors = Vec::new();
        while let Some(bucket) = self.next_cursor() {
            match bucket {
                Ok(mut bucket) => {
                    while bucket.step(unbounded, |record| {
                        f(record);
                        true
                    }) != Step::Finished
                    {}
                    damage.extend(bucket.damage.iter().map(|d| (bucket.path.clone(), *d)));
                }
                Err(e) => errors.push(e),
            }
        }
        (damage, errors)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    /// Offset of the record header.
    offset: u64,
    value_start: usize,
    value_len: usize,
}

/// The in-range records of one bucket file, mapped.
#[derive(Debug)]
pub struct ScannedBucket {
    pub id: BucketId,
    pub path: PathBuf,
    map: Option<Mmap>,
    index: Vec<Entry>,
    /// The first [`MAX_DAMAGE_KEPT`] damage items, in file order.
    pub damage: Vec<Damage>,
    /// All damage items.
    pub damage_count: u64,
}

impl ScannedBucket {
    fn read(bucket: BucketFile, from: u64, to: u64) -> Result<Self, StorageError> {
        let file = File::open(&bucket.path).map_err(|e| StorageError::io(&bucket.path, e))?;
        let map = map_file(&file).map_err(|e| StorageError::io(&bucket.path, e))?;
        let mut index = Vec::new();
        let mut damage = Vec::new();
        let mut damage_count = 0u64;
        if let Some(map) = &map {
            let decoder = BucketDecoder::new(map);
            let header_bytes = decoder.format().map_or(0, |f| f.record_header_bytes());
            for item in decoder {
                match item {
                    Ok(record) if (from..=to).contains(&record.key) => index.push(Entry {
                        key: record.key,
                        offset: record.offset,
                        // The decoder's offsets lie within the mapped file, so this fits.
                        value_start: record.offset as usize + header_bytes,
                        value_len: record.value.len(),
                    }),
                    Ok(_) => {}
                    Err(d) => {
                        damage_count += 1;
                        if damage.len() < MAX_DAMAGE_KEPT {
                            damage.push(d);
                        }
                    }
                }
            }
        }
        if !index.is_sorted_by_key(|e| e.key) {
            index.sort_by_key(|e| e.key);
        }
        Ok(ScannedBucket {
            id: bucket.id,
            path: bucket.path,
            map,
            index,
            damage,
            damage_count,
        })
    }

    /// Number of in-range records.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no record is in range.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The `i`th in-range record in key order.
    pub fn record_at(&self, i: usize) -> Option<Record<'_>> {
        let e = self.index.get(i)?;
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        Some(Record {
            key: e.key,
            value: &data[e.value_start..e.value_start + e.value_len],
            offset: e.offset,
        })
    }

    /// The in-range records in key order.
    pub fn records(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        (0..self.index.len()).filter_map(|i| self.record_at(i))
    }
}

/// Most in-range records of one bucket that are sorted in memory when the bucket is not in key
/// order (16 bytes each). A bucket with more is sent in file order, with a warning.
pub const MAX_SORTED_RECORDS: usize = 1 << 20;

/// Work of one [`BucketCursor::step`]: records decoded and file bytes gone over.
#[derive(Debug, Clone, Copy)]
pub struct StepBudget {
    pub records: usize,
    pub bytes: usize,
}

/// How a [`BucketCursor::step`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The budget is used up; call again.
    Budget,
    /// `emit` refused a record (its batch is full); call again to offer it again.
    Refused,
    /// The bucket is finished.
    Finished,
}

/// Where the index a [`BucketCursor`] reads with came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexSource {
    /// The bucket's index file, checked against the bucket.
    File,
    /// The index the node's writer keeps of a bucket it has open.
    Live,
    /// There was no usable index (why): the read decoded the whole bucket and built one.
    Built(IndexProblem),
    /// There was no usable index (why), and the stream memory budgets had no room for building
    /// one: the read decoded the whole bucket without (no seek, no index saved).
    NotBuilt(IndexProblem),
}

/// What a pass over the whole bucket learns of its in-range records.
#[derive(Debug, Clone, Copy)]
struct Probe {
    last_key: Option<u64>,
    in_order: bool,
    in_range: usize,
}

impl Probe {
    fn new() -> Self {
        Probe {
            last_key: None,
            in_order: true,
            in_range: 0,
        }
    }

    fn note(&mut self, key: u64) {
        self.in_order &= self.last_key.is_none_or(|last| last <= key);
        self.last_key = Some(key);
        self.in_range += 1;
    }
}

#[derive(Debug)]
enum Phase {
    /// No usable index: the first step builds one if the budgets have room for it
    /// ([`BucketCursor::step_within`]), else probes the bucket without.
    Unindexed,
    /// No usable index: decoding the whole bucket once (checksums included), building its
    /// index and learning whether the in-range keys come in order.
    Build {
        pos: usize,
        probe: Probe,
        builder: Box<IndexBuilder>,
    },
    /// The index says the bucket is not in key order: decoding it once to learn whether its
    /// in-range keys are.
    Probe {
        pos: usize,
        probe: Probe,
    },
    /// Sending records in file order from `pos`. `stop_past_to`: the bucket is in key order,
    /// so the first key past `to` ends it.
    Stream {
        pos: usize,
        stop_past_to: bool,
    },
    /// Out of order: collecting `(key, offset)` of the in-range records.
    Index {
        pos: usize,
        index: Vec<(u64, u64)>,
    },
    /// Out of order: sending the sorted index.
    Sorted {
        index: Vec<(u64, u64)>,
        next: usize,
    },
    Done,
}

/// How the cursors of a [`RangeScan`] use and keep bucket indexes.
#[derive(Debug, Clone, Copy)]
pub struct CursorOptions {
    /// The interval of the indexes a read builds.
    pub index_interval_bytes: u32,
    /// Save the index a read had to build next to its bucket (the node does; tools reading a
    /// directory they must not change do not).
    pub save_index: bool,
    /// Release the pages of the map a read has gone past every this many bytes
    /// ([`RELEASE_BEHIND_BYTES`]; `usize::MAX`: never).
    pub release_behind_bytes: usize,
}

impl Default for CursorOptions {
    fn default() -> Self {
        CursorOptions {
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            save_index: false,
            release_behind_bytes: RELEASE_BEHIND_BYTES,
        }
    }
}

/// One bucket file read in slices, so that a reader of a large bucket never holds the caller
/// (an event loop) for long and never holds an index of a bucket that is in key order:
///
/// - **in key order** (the usual case for time-stamped logs; the bucket's index says so): the
///   read starts at the index's stretch for `from` and sends records in file order until the
///   first key past `to`;
/// - **no usable index** (missing, stale, damaged: see [`super::index`]): decode the whole file
///   once (checksums included), building the index (saved when
///   [`CursorOptions::save_index`]), then go on as above when the bucket is in order. When the
///   stream memory budgets have no room for the index being built
///   ([`step_within`](Self::step_within)), the pass builds none and the read goes on as for an
///   out-of-order bucket, without seeking;
/// - **out of key order**: decode the whole file and note whether the in-range keys come in
///   order; if so send them in file order, else collect `(key, offset)` of the in-range
///   records (at most [`MAX_SORTED_RECORDS`], and only within the budgets), sort them (stable
///   for equal keys: by offset) and emit in key order. Beyond either limit the bucket is
///   emitted in file order with a warning.
///
/// Damage is collected by the first pass that sees it (the first [`MAX_DAMAGE_KEPT`] items,
/// all counted); later passes skip the same records. A read that seeks sees only the damage in
/// the part of the bucket it reads.
#[derive(Debug)]
pub struct BucketCursor {
    pub id: BucketId,
    pub path: PathBuf,
    map: Option<Mmap>,
    from: u64,
    to: u64,
    phase: Phase,
    /// The first [`MAX_DAMAGE_KEPT`] damage items, in file order.
    pub damage: Vec<Damage>,
    pub damage_count: u64,
    /// Set when an out-of-order bucket had too many records to sort, or the budgets no room.
    pub sent_unsorted: bool,
    /// Where the index came from; `None` for an empty file.
    pub index_source: Option<IndexSource>,
    /// The read seeks with the index and stops past `to` (the bucket is in key order).
    pub seeks: bool,
    /// Records and damaged spans decoded so far, by every pass.
    pub records_decoded: u64,
    /// Why a built index could not be saved (the read goes on without saving it).
    pub index_save_error: Option<String>,
    /// Streaming collects damage (no whole-bucket pass ran before).
    stream_damage: bool,
    options: CursorOptions,
    /// The map's pages below this offset were released ([`RELEASE_BEHIND_BYTES`]).
    released_to: usize,
}

/// A read going through a bucket front to back drops the page-table entries of the part of the
/// map it has gone past, every this many bytes: unmapping a map whose pages were all read walks
/// its whole page table at once (21–24 ms for a 580 MB bucket, measured), and releasing as it
/// goes keeps that cost in slices of about a millisecond. The pages stay in the page cache; a
/// later pass over the same part (after a whole-bucket pass) faults them in again.
pub const RELEASE_BEHIND_BYTES: usize = 32 * 1024 * 1024;

/// The size of a memory page.
fn page_bytes() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(page).unwrap_or(4096).max(1)
    })
}

fn note_damage(damage: &mut Vec<Damage>, count: &mut u64, item: Damage) {
    *count += 1;
    if damage.len() < MAX_DAMAGE_KEPT {
        damage.push(item);
    }
}

/// What one phase's slice of a step came to.
enum Slice {
    /// The phase is over: the cursor goes on with this one, in the same step.
    Next(Phase),
    /// The step ends with `Step` (budget used, or a record refused), to resume in this phase.
    Pause(Phase, Step),
}

/// The work of one step so far, against its budget.
struct Work {
    budget: StepBudget,
    records: usize,
}

impl Work {
    /// Whether the step must pause after a record, `decoder` having started the slice at
    /// `first`: its records or bytes are used up. A decoder that ended (on damage too) does not
    /// pause: resumed there, it would report that damage again, forever when the budget runs
    /// out right there.
    fn used_up(&self, decoder: &BucketDecoder<'_>, first: usize) -> bool {
        !decoder.is_done()
            && (self.records >= self.budget.records
                || decoder.position() - first >= self.budget.bytes)
    }
}

impl BucketCursor {
    fn open(
        bucket: BucketFile,
        from: u64,
        to: u64,
        options: CursorOptions,
        live: Option<&IndexBuilder>,
    ) -> Result<Self, StorageError> {
        let file = File::open(&bucket.path).map_err(|e| StorageError::io(&bucket.path, e))?;
        let map = map_file(&file).map_err(|e| StorageError::io(&bucket.path, e))?;
        let mut cursor = BucketCursor {
            id: bucket.id,
            path: bucket.path,
            map,
            from,
            to,
            phase: Phase::Done,
            damage: Vec::new(),
            damage_count: 0,
            sent_unsorted: false,
            index_source: None,
            seeks: false,
            records_decoded: 0,
            index_save_error: None,
            stream_damage: false,
            options,
            released_to: 0,
        };
        if cursor.map.is_some() {
            cursor.phase = cursor.first_phase(live);
        }
        Ok(cursor)
    }

    /// The first phase: from the writer's index, the index file, or a build.
    fn first_phase(&mut self, live: Option<&IndexBuilder>) -> Phase {
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        let planned = match live {
            Some(builder) => plan(builder.index(), data, self.from).map(|p| (p, IndexSource::Live)),
            None => load_index(&self.path)
                .and_then(|index| index.validate(data).map(|()| index))
                .and_then(|index| plan(&index, data, self.from))
                .map(|p| (p, IndexSource::File)),
        };
        match planned {
            Ok((phase, source)) => {
                self.index_source = Some(source);
                self.seeks = matches!(phase, Phase::Stream { .. });
                self.stream_damage = self.seeks;
                phase
            }
            Err(problem) => {
                self.index_source = Some(IndexSource::Built(problem));
                Phase::Unindexed
            }
        }
    }

    /// The first step of a bucket without a usable index: builds one as it decodes the bucket
    /// when the budgets have room for all the entries it can have (allocated at once, so it
    /// never grows past what was granted), else decodes the bucket without one.
    fn start_build(&mut self, may_hold: &mut dyn FnMut(usize) -> bool) -> Phase {
        let len = self.map.as_deref().map_or(0, <[u8]>::len) as u64;
        let interval = self.options.index_interval_bytes;
        let bytes = std::mem::size_of::<IndexBuilder>() + IndexBuilder::bound_bytes(len, interval);
        if may_hold(bytes) {
            return Phase::Build {
                pos: 0,
                probe: Probe::new(),
                builder: Box::new(IndexBuilder::for_bucket(len, interval)),
            };
        }
        if let Some(IndexSource::Built(problem)) = self.index_source.take() {
            self.index_source = Some(IndexSource::NotBuilt(problem));
        }
        Phase::Probe {
            pos: 0,
            probe: Probe::new(),
        }
    }

    /// Takes the map of the bucket (to unmap it elsewhere: see `engine::unmap`); the cursor is
    /// finished after this.
    pub fn take_map(&mut self) -> Option<Mmap> {
        self.phase = Phase::Done;
        self.map.take()
    }

    /// Does up to `budget` of work, offering the in-range records, in key order, to `emit`
    /// (which returns false to refuse one: it is offered again by the next call).
    pub fn step(&mut self, budget: StepBudget, emit: impl FnMut(Record<'_>) -> bool) -> Step {
        self.step_within(budget, &mut |_| true, emit)
    }

    /// Heap bytes the cursor holds between steps: its path, its damage list (counted in full),
    /// what it says about its index (a message), the index builder of a bucket without a usable
    /// index (its entries' capacity, bounded by the bucket's length) and the sort index of an
    /// out-of-order bucket. An index loaded from its file, or the writer's, is used when the
    /// cursor opens and not kept. The mapping is page cache, not counted.
    pub fn held_bytes(&self) -> usize {
        let phase = match &self.phase {
            Phase::Index { index, .. } | Phase::Sorted { index, .. } => {
                index.capacity() * std::mem::size_of::<(u64, u64)>()
            }
            Phase::Build { builder, .. } => {
                std::mem::size_of::<IndexBuilder>() + builder.held_bytes()
            }
            Phase::Unindexed | Phase::Probe { .. } | Phase::Stream { .. } | Phase::Done => 0,
        };
        let problem = match &self.index_source {
            Some(IndexSource::Built(problem) | IndexSource::NotBuilt(problem)) => {
                problem.held_bytes()
            }
            Some(IndexSource::File | IndexSource::Live) | None => 0,
        };
        self.path.capacity()
            + MAX_DAMAGE_KEPT.max(self.damage.capacity()) * std::mem::size_of::<Damage>()
            + problem
            + self.index_save_error.as_ref().map_or(0, String::capacity)
            + phase
    }

    /// As [`step`](Self::step), asking `may_hold(bytes)` before it holds an index between
    /// steps: the index it builds of a bucket without a usable one (16 bytes an entry, at most
    /// one per `index_interval_bytes` of the bucket) and the sort index of an out-of-order
    /// bucket (16 bytes a record). Refused the first, the read decodes the bucket without
    /// building an index (it does not seek and saves none; [`IndexSource::NotBuilt`]); refused
    /// the second, the bucket is sent in file order, as one with more than
    /// [`MAX_SORTED_RECORDS`] such records is, and `sent_unsorted` says so.
    pub fn step_within(
        &mut self,
        budget: StepBudget,
        may_hold: &mut dyn FnMut(usize) -> bool,
        emit: impl FnMut(Record<'_>) -> bool,
    ) -> Step {
        let step = self.work(budget, may_hold, emit);
        // The passes that go through the file front to back never go back within themselves.
        let pos = match &self.phase {
            Phase::Build { pos, .. }
            | Phase::Probe { pos, .. }
            | Phase::Stream { pos, .. }
            | Phase::Index { pos, .. } => Some(*pos),
            Phase::Unindexed | Phase::Sorted { .. } | Phase::Done => None,
        };
        if let Some(pos) = pos {
            self.release_behind(pos);
        }
        step
    }

    /// The step's work: one slice of each phase in turn, until one pauses or the bucket is done.
    fn work(
        &mut self,
        budget: StepBudget,
        may_hold: &mut dyn FnMut(usize) -> bool,
        mut emit: impl FnMut(Record<'_>) -> bool,
    ) -> Step {
        let mut work = Work { budget, records: 0 };
        loop {
            let slice = match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Unindexed => Slice::Next(self.start_build(may_hold)),
                Phase::Build {
                    pos,
                    probe,
                    builder,
                } => self.build_slice(pos, probe, builder, &mut work, may_hold),
                Phase::Probe { pos, probe } => self.probe_slice(pos, probe, &mut work, may_hold),
                Phase::Stream { pos, stop_past_to } => {
                    self.stream_slice(pos, stop_past_to, &mut work, &mut emit)
                }
                Phase::Index { pos, index } => self.index_slice(pos, index, &mut work),
                Phase::Sorted { index, next } => {
                    self.sorted_slice(index, next, &mut work, &mut emit)
                }
                Phase::Done => return Step::Finished,
            };
            match slice {
                Slice::Next(phase) => self.phase = phase,
                Slice::Pause(phase, step) => {
                    self.phase = phase;
                    return step;
                }
            }
        }
    }

    /// Releases the pages of the map below `pos` once [`CursorOptions::release_behind_bytes`] of
    /// them are unreleased.
    fn release_behind(&mut self, pos: usize) {
        let Some(map) = &self.map else {
            return;
        };
        let end = pos.min(map.len()) / page_bytes() * page_bytes();
        if end
            < self
                .released_to
                .saturating_add(self.options.release_behind_bytes)
        {
            return;
        }
        // SAFETY: the map is a shared, read-only map of a file: MADV_DONTNEED drops its page-table
        // entries and a later access faults the same bytes in again from the page cache (nothing
        // is lost, unlike in a private map). No record of the range is borrowed: records are
        // lent to `emit` during a step only, and this runs between steps.
        let released = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                self.released_to,
                end - self.released_to,
            )
        };
        // On failure the entries are dropped when the map is unmapped, as without this.
        if released.is_ok() {
            self.released_to = end;
        }
    }

    /// A slice of the pass that builds the index of a bucket without a usable one; at its end,
    /// the index is saved and says how to go on ([`finish_build`](Self::finish_build)).
    fn build_slice(
        &mut self,
        pos: usize,
        mut probe: Probe,
        mut builder: Box<IndexBuilder>,
        work: &mut Work,
        may_hold: &mut dyn FnMut(usize) -> bool,
    ) -> Slice {
        match self.decode_all(pos, &mut probe, Some(&mut builder), work) {
            Some(pos) => Slice::Pause(
                Phase::Build {
                    pos,
                    probe,
                    builder,
                },
                Step::Budget,
            ),
            None => Slice::Next(self.finish_build(probe, *builder, may_hold)),
        }
    }

    /// A slice of the pass over an out-of-order bucket (or one without an index the budgets had
    /// room for); at its end, [`after_probe`](Self::after_probe) says how to send the records.
    fn probe_slice(
        &mut self,
        pos: usize,
        mut probe: Probe,
        work: &mut Work,
        may_hold: &mut dyn FnMut(usize) -> bool,
    ) -> Slice {
        match self.decode_all(pos, &mut probe, None, work) {
            Some(pos) => Slice::Pause(Phase::Probe { pos, probe }, Step::Budget),
            None => Slice::Next(self.after_probe(probe, may_hold)),
        }
    }

    /// Decodes from `pos` to the end of the bucket or until the budget is used, noting damage,
    /// the order of the in-range keys and, with `builder`, every record in the index. Returns
    /// where to resume, or `None` at the end.
    fn decode_all(
        &mut self,
        pos: usize,
        probe: &mut Probe,
        mut builder: Option<&mut IndexBuilder>,
        work: &mut Work,
    ) -> Option<usize> {
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        let mut decoder = BucketDecoder::resume(data, pos);
        let first = decoder.position();
        while let Some(item) = decoder.next() {
            match item {
                Ok(r) => {
                    if let Some(builder) = builder.as_deref_mut() {
                        builder.push(r.offset, r.key);
                    }
                    if (self.from..=self.to).contains(&r.key) {
                        probe.note(r.key);
                    }
                }
                Err(d) => note_damage(&mut self.damage, &mut self.damage_count, d),
            }
            work.records += 1;
            self.records_decoded += 1;
            if work.used_up(&decoder, first) {
                return Some(decoder.position());
            }
        }
        None
    }

    /// After a build: saves the index and seeks with it when the bucket is in order.
    fn finish_build(
        &mut self,
        probe: Probe,
        builder: IndexBuilder,
        may_hold: &mut dyn FnMut(usize) -> bool,
    ) -> Phase {
        let len = self.map.as_deref().map_or(0, <[u8]>::len) as u64;
        let index = builder.into_index(len);
        // A bucket that grew while it was read (a writer opened it meanwhile) would get an index
        // stale at once, over the one its writer may have saved since.
        let unchanged = std::fs::metadata(&self.path).is_ok_and(|m| m.len() == len);
        if self.options.save_index && unchanged {
            if let Err(e) = save_index(&self.path, &index) {
                self.index_save_error = Some(e.to_string());
            }
        }
        if !index.in_order {
            return self.after_probe(probe, may_hold);
        }
        self.seeks = true;
        if probe.in_range == 0 {
            return Phase::Done;
        }
        let pos = index.seek(self.from, len).map_or(0, |e| e.offset as usize);
        Phase::Stream {
            pos,
            stop_past_to: true,
        }
    }

    /// After a whole-bucket pass of an out-of-order bucket: how to send its in-range records.
    fn after_probe(&mut self, probe: Probe, may_hold: &mut dyn FnMut(usize) -> bool) -> Phase {
        let index_bytes = probe.in_range * std::mem::size_of::<(u64, u64)>();
        if probe.in_range == 0 {
            Phase::Done
        } else if probe.in_order || probe.in_range > MAX_SORTED_RECORDS || !may_hold(index_bytes) {
            self.sent_unsorted = !probe.in_order;
            Phase::Stream {
                pos: 0,
                stop_past_to: false,
            }
        } else {
            Phase::Index {
                pos: 0,
                index: Vec::with_capacity(probe.in_range),
            }
        }
    }

    /// Sends in-range records in file order from `pos` (up to the first key past `to` when
    /// `stop_past_to`).
    fn stream_slice(
        &mut self,
        pos: usize,
        stop_past_to: bool,
        work: &mut Work,
        emit: &mut impl FnMut(Record<'_>) -> bool,
    ) -> Slice {
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        let (from, to) = (self.from, self.to);
        let mut decoder = BucketDecoder::resume(data, pos);
        let first = decoder.position();
        loop {
            let at = decoder.position();
            let Some(item) = decoder.next() else {
                return Slice::Next(Phase::Done);
            };
            work.records += 1;
            self.records_decoded += 1;
            match item {
                Ok(r) if stop_past_to && r.key > to => return Slice::Next(Phase::Done),
                Ok(r) if (from..=to).contains(&r.key) && !emit(r) => {
                    // Offered again next time: not counted twice as decoded.
                    self.records_decoded -= 1;
                    let phase = Phase::Stream {
                        pos: at,
                        stop_past_to,
                    };
                    return Slice::Pause(phase, Step::Refused);
                }
                Ok(_) => {}
                Err(d) if self.stream_damage => {
                    note_damage(&mut self.damage, &mut self.damage_count, d);
                }
                Err(_) => {}
            }
            if work.used_up(&decoder, first) {
                let pos = decoder.position();
                return Slice::Pause(Phase::Stream { pos, stop_past_to }, Step::Budget);
            }
        }
    }

    /// Collects `(key, offset)` of the in-range records of a slice; sorts them at the end.
    fn index_slice(&mut self, pos: usize, mut index: Vec<(u64, u64)>, work: &mut Work) -> Slice {
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        let mut decoder = BucketDecoder::resume(data, pos);
        let first = decoder.position();
        while let Some(item) = decoder.next() {
            if let Ok(r) = item {
                if (self.from..=self.to).contains(&r.key) {
                    index.push((r.key, r.offset));
                }
            }
            work.records += 1;
            self.records_decoded += 1;
            if work.used_up(&decoder, first) {
                let pos = decoder.position();
                return Slice::Pause(Phase::Index { pos, index }, Step::Budget);
            }
        }
        // Offsets are unique, so this orders equal keys by their place in the file.
        index.sort_unstable();
        Slice::Next(Phase::Sorted { index, next: 0 })
    }

    /// Sends the records of the sorted index from `next` on.
    fn sorted_slice(
        &mut self,
        index: Vec<(u64, u64)>,
        mut next: usize,
        work: &mut Work,
        emit: &mut impl FnMut(Record<'_>) -> bool,
    ) -> Slice {
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        while let Some(&(key, offset)) = index.get(next) {
            let record = BucketDecoder::resume(data, offset as usize)
                .next()
                .and_then(Result::ok);
            if let Some(r) = record {
                // The pair of the collecting pass's read: the map does not change under a read
                // (no writer truncates a mapped bucket), so the record reads back as indexed.
                debug_assert_eq!(r.key, key, "record at {offset} reads back with its key");
                if !emit(r) {
                    return Slice::Pause(Phase::Sorted { index, next }, Step::Refused);
                }
            }
            next += 1;
            work.records += 1;
            self.records_decoded += 1;
            if work.records >= work.budget.records {
                return Slice::Pause(Phase::Sorted { index, next }, Step::Budget);
            }
        }
        Slice::Next(Phase::Done)
    }
}

/// The first phase a usable index gives: seek when in order (after checking the entry sought),
/// else the whole-bucket pass of an out-of-order bucket.
fn plan(index: &BucketIndex, data: &[u8], from: u64) -> Result<Phase, IndexProblem> {
    if !index.in_order {
        return Ok(Phase::Probe {
            pos: 0,
            probe: Probe::new(),
        });
    }
    let pos = match index.seek(from, data.len() as u64) {
        None => 0,
        Some(entry) => {
            index.check_entry(data, entry)?;
            entry.offset as usize
        }
    };
    Ok(Phase::Stream {
        pos,
        stop_past_to: true,
    })
}
