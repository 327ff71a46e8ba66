//! Range scans over one channel directory.
//!
//! [`RangeScan`] visits only the bucket files that overlap `[from, to]` (inclusive), in bucket
//! (time) order, maps each one whole (memmap2) and returns its records with keys in range.
//!
//! Order: records of a bucket are stored in append order, which need not be key order (the
//! reference's "unordered put" tests write keys in any order). Each bucket's in-range records
//! are therefore sorted by key (stably: records with equal keys keep their append order); the
//! sort is skipped when they are already in order. As buckets are time-ordered, the scan yields
//! keys in ascending order — as long as every record sits in the bucket its key belongs to,
//! which our writer guarantees (a misplaced record in a reference file is still returned when in
//! range, just not in key order; `check` reports it). Memory per bucket: one 24-byte index entry
//! per in-range record.
//!
//! Damaged records are skipped and reported per bucket ([`ScannedBucket::damage`]); the scan
//! carries on with the next bucket.

use super::format::{BucketDecoder, Damage, Record};
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
            slots: slots.into(),
            slot: None,
            window: Default::default(),
            slot_ends: true,
            last_listed: None,
        })
    }

    /// A scan with nothing (left) to visit.
    pub fn empty() -> Self {
        RangeScan {
            channel_dir: PathBuf::new(),
            from: 1,
            to: 0,
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
        let (from, to) = (self.from, self.to);
        Some(
            self.next_file()?
                .and_then(|bucket| BucketCursor::open(bucket, from, to)),
        )
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

#[derive(Debug)]
enum Phase {
    /// Decoding the whole bucket once to learn whether its in-range keys are in order.
    Probe {
        pos: usize,
        last_key: Option<u64>,
        in_order: bool,
        in_range: usize,
    },
    /// In order: sending records in file order.
    Stream {
        pos: usize,
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

/// One bucket file read in slices, so that a reader of a large bucket never holds the caller
/// (an event loop) for long and never holds an index of a bucket that is in key order:
///
/// 1. probe: decode the file (checksums included) and note whether the in-range keys come in
///    non-decreasing order — the usual case for time-stamped logs;
/// 2. in order: decode again from the first record and emit the in-range ones as they come;
///    out of order: collect `(key, offset)` of the in-range records (at most
///    [`MAX_SORTED_RECORDS`]), sort them (stable for equal keys: by offset), and emit in key
///    order. Beyond the limit the bucket is emitted in file order with a warning.
///
/// Damage is collected during the probe (the first [`MAX_DAMAGE_KEPT`] items, all counted);
/// later passes skip the same records.
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
    /// Set when an out-of-order bucket had too many records to sort.
    pub sent_unsorted: bool,
}

impl BucketCursor {
    fn open(bucket: BucketFile, from: u64, to: u64) -> Result<Self, StorageError> {
        let file = File::open(&bucket.path).map_err(|e| StorageError::io(&bucket.path, e))?;
        let map = map_file(&file).map_err(|e| StorageError::io(&bucket.path, e))?;
        Ok(BucketCursor {
            id: bucket.id,
            path: bucket.path,
            map,
            from,
            to,
            phase: Phase::Probe {
                pos: 0,
                last_key: None,
                in_order: true,
                in_range: 0,
            },
            damage: Vec::new(),
            damage_count: 0,
            sent_unsorted: false,
        })
    }

    /// Does up to `budget` of work, offering the in-range records, in key order, to `emit`
    /// (which returns false to refuse one: it is offered again by the next call).
    pub fn step(&mut self, budget: StepBudget, emit: impl FnMut(Record<'_>) -> bool) -> Step {
        self.step_within(budget, &mut |_| true, emit)
    }

    /// Heap bytes the cursor holds: its path, its damage list (counted in full) and the index
    /// of an out-of-order bucket. The mapping is page cache, not counted.
    pub fn held_bytes(&self) -> usize {
        let index = match &self.phase {
            Phase::Index { index, .. } | Phase::Sorted { index, .. } => index.capacity(),
            _ => 0,
        };
        self.path.capacity()
            + MAX_DAMAGE_KEPT.max(self.damage.capacity()) * std::mem::size_of::<Damage>()
            + index * std::mem::size_of::<(u64, u64)>()
    }

    /// As [`step`](Self::step), asking `may_hold(bytes)` before it builds the index of an
    /// out-of-order bucket (16 bytes a record): refused, the bucket is sent in file order, as
    /// one with more than [`MAX_SORTED_RECORDS`] such records is, and `sent_unsorted` says so.
    pub fn step_within(
        &mut self,
        budget: StepBudget,
        may_hold: &mut dyn FnMut(usize) -> bool,
        mut emit: impl FnMut(Record<'_>) -> bool,
    ) -> Step {
        let data: &[u8] = self.map.as_deref().unwrap_or(&[]);
        let (from, to) = (self.from, self.to);
        let mut records = 0usize;
        loop {
            let phase = std::mem::replace(&mut self.phase, Phase::Done);
            self.phase = match phase {
                Phase::Probe {
                    pos,
                    mut last_key,
                    mut in_order,
                    mut in_range,
                } => {
                    let mut decoder = BucketDecoder::resume(data, pos);
                    let first = decoder.position();
                    let mut ended = true;
                    while let Some(item) = decoder.next() {
                        match item {
                            Ok(r) if (from..=to).contains(&r.key) => {
                                in_order &= last_key.is_none_or(|last| last <= r.key);
                                last_key = Some(r.key);
                                in_range += 1;
                            }
                            Ok(_) => {}
                            Err(d) => {
                                self.damage_count += 1;
                                if self.damage.len() < MAX_DAMAGE_KEPT {
                                    self.damage.push(d);
                                }
                            }
                        }
                        records += 1;
                        // A decoder that ended on damage is not resumed: it would report that damage again,
                        // forever when the budget runs out right there.
                        if !decoder.is_done()
                            && (records >= budget.records
                                || decoder.position() - first >= budget.bytes)
                        {
                            ended = false;
                            break;
                        }
                    }
                    if !ended {
                        self.phase = Phase::Probe {
                            pos: decoder.position(),
                            last_key,
                            in_order,
                            in_range,
                        };
                        return Step::Budget;
                    }
                    let index_bytes = in_range * std::mem::size_of::<(u64, u64)>();
                    if in_range == 0 {
                        Phase::Done
                    } else if in_order || in_range > MAX_SORTED_RECORDS || !may_hold(index_bytes) {
                        self.sent_unsorted = !in_order;
                        Phase::Stream { pos: 0 }
                    } else {
                        Phase::Index {
                            pos: 0,
                            index: Vec::with_capacity(in_range),
                        }
                    }
                }
                Phase::Stream { pos } => {
                    let mut decoder = BucketDecoder::resume(data, pos);
                    let first = decoder.position();
                    loop {
                        let at = decoder.position();
                        let Some(item) = decoder.next() else {
                            break;
                        };
                        records += 1;
                        if let Ok(r) = item {
                            if (from..=to).contains(&r.key) && !emit(r) {
                                self.phase = Phase::Stream { pos: at };
                                return Step::Refused;
                            }
                        }
                        // A decoder that ended on damage is not resumed: it would report that damage again,
                        // forever when the budget runs out right there.
                        if !decoder.is_done()
                            && (records >= budget.records
                                || decoder.position() - first >= budget.bytes)
                        {
                            self.phase = Phase::Stream {
                                pos: decoder.position(),
                            };
                            return Step::Budget;
                        }
                    }
                    Phase::Done
                }
                Phase::Index { pos, mut index } => {
                    let mut decoder = BucketDecoder::resume(data, pos);
                    let first = decoder.position();
                    let mut ended = true;
                    while let Some(item) = decoder.next() {
                        if let Ok(r) = item {
                            if (from..=to).contains(&r.key) {
                                index.push((r.key, r.offset));
                            }
                        }
                        records += 1;
                        // A decoder that ended on damage is not resumed: it would report that damage again,
                        // forever when the budget runs out right there.
                        if !decoder.is_done()
                            && (records >= budget.records
                                || decoder.position() - first >= budget.bytes)
                        {
                            ended = false;
                            break;
                        }
                    }
                    if !ended {
                        self.phase = Phase::Index {
                            pos: decoder.position(),
                            index,
                        };
                        return Step::Budget;
                    }
                    // Offsets are unique, so this orders equal keys by their place in the file.
                    index.sort_unstable();
                    Phase::Sorted { index, next: 0 }
                }
                Phase::Sorted { index, mut next } => {
                    while let Some(&(_, offset)) = index.get(next) {
                        let record = BucketDecoder::resume(data, offset as usize)
                            .next()
                            .and_then(Result::ok);
                        if let Some(r) = record {
                            if !emit(r) {
                                self.phase = Phase::Sorted { index, next };
                                return Step::Refused;
                            }
                        }
                        next += 1;
                        records += 1;
                        if records >= budget.records {
                            self.phase = Phase::Sorted { index, next };
                            return Step::Budget;
                        }
                    }
                    Phase::Done
                }
                Phase::Done => return Step::Finished,
            };
        }
    }
}
