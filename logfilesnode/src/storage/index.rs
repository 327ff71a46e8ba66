//! The sparse time index of a bucket file, `<bucket>.idx`: for every stretch of about
//! `interval_bytes` of records, the file offset of the record that starts the stretch and the
//! smallest key in it. A read of an in-order bucket binary-searches the entries for its start
//! key, starts decoding at that stretch and stops at the first record past its end key, so a
//! narrow query costs in proportion to the records it returns, not to the bucket.
//!
//! Also documented in `docs/formats.md`, "logfiles bucket index". All integers little-endian:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic `"SWLOGIDX"` |
//! | 8 | `u32` | version = `1` |
//! | 12 | `u32` | flags: bit 0 = every record's key is ≥ the key of the record before it (in order); other bits 0 |
//! | 16 | `u64` | length of the bucket file the index describes |
//! | 24 | `u64` | records in the bucket (good ones: damaged records are not counted) |
//! | 32 | `u64` | offset of the last record (0 when there is none) |
//! | 40 | `u64` | key of the last record (0 when there is none) |
//! | 48 | `u32` | interval: bytes of records per stretch (at least [`MIN_INDEX_INTERVAL_BYTES`]) |
//! | 52 | `u32` | `n`, entries (at most [`MAX_INDEX_ENTRIES`]) |
//! | 56 | `n` × (`u64` offset, `u64` smallest key) | one per stretch, offsets ascending |
//! | 56 + 16 n | `u32` | CRC32 (IEEE) of every byte before it |
//!
//! Stretches: the first starts at the first good record; a new one starts at the first record
//! whose offset is at least `interval` bytes past the start of the current one. When a bucket
//! would need more than [`MAX_INDEX_ENTRIES`] entries, neighbouring stretches are merged in
//! pairs and the interval doubles, so an index never passes 16 MiB.
//!
//! **Never trusted blindly.** The index is a cache of facts about its bucket and can always be
//! rebuilt from it, so it is written without fsync and checked before every use:
//! [`decode_index`] checks the CRC and the structure; [`BucketIndex::validate`] checks it against
//! the bucket (same length, the first entry and the last record decode to the keys it names);
//! the reader checks the entry it seeks to the same way. Whatever fails — missing, stale (the
//! bucket's length differs: a crash after appends, a repair), damaged — the reader decodes the
//! whole bucket as it did without an index, builds the index on the way and saves it.
//! `logfiles_check` verifies every entry against the bucket ([`verify_index`]); `--repair`
//! rebuilds it. A bucket whose keys are not in order gets an index too (flag bit 0 clear); its
//! reads do not seek.

use super::format::{detect, BucketDecoder, Detected};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Magic at the start of an index file.
pub const INDEX_MAGIC: [u8; 8] = *b"SWLOGIDX";
/// The index format version.
pub const INDEX_VERSION: u32 = 1;
/// Bytes before the entries.
pub const INDEX_HEADER_BYTES: usize = 56;
/// Bytes of one entry.
pub const INDEX_ENTRY_BYTES: usize = 16;
/// Bytes of the trailing CRC.
pub const INDEX_CRC_BYTES: usize = 4;
/// The default interval (`[logfiles] index_interval_bytes`).
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 64 * 1024;
/// The smallest interval an index may have.
pub const MIN_INDEX_INTERVAL_BYTES: u32 = 4096;
/// The largest interval the configuration accepts (merging may double it further).
pub const MAX_CONFIG_INDEX_INTERVAL_BYTES: u32 = 64 * 1024 * 1024;
/// The most entries an index holds (16 MiB of entries).
pub const MAX_INDEX_ENTRIES: usize = 1 << 20;
/// The largest index file there can be.
pub const MAX_INDEX_FILE_BYTES: usize =
    INDEX_HEADER_BYTES + MAX_INDEX_ENTRIES * INDEX_ENTRY_BYTES + INDEX_CRC_BYTES;
/// Appended to a bucket's file name to name its index.
pub const INDEX_SUFFIX: &str = ".idx";

const FLAG_IN_ORDER: u32 = 1;

/// One stretch of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the record that starts the stretch.
    pub offset: u64,
    /// The smallest key in the stretch.
    pub min_key: u64,
}

/// The index of one bucket file, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketIndex {
    /// The length of the bucket file it describes.
    pub bucket_len_bytes: u64,
    /// Good records in the bucket.
    pub records: u64,
    /// Offset and key of the last good record.
    pub last: Option<(u64, u64)>,
    /// Every key is ≥ the key before it, in file order.
    pub in_order: bool,
    pub interval_bytes: u32,
    pub entries: Vec<IndexEntry>,
}

/// Why an index cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexProblem {
    /// There is no index file.
    Missing,
    /// The index describes a bucket of another length (appends after it was written, a cut).
    Stale {
        index_len_bytes: u64,
        bucket_len_bytes: u64,
    },
    /// The file does not decode, or disagrees with the bucket.
    Damaged(String),
}

impl fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexProblem::Missing => write!(f, "no index file"),
            IndexProblem::Stale {
                index_len_bytes,
                bucket_len_bytes,
            } => write!(
                f,
                "stale: it describes {index_len_bytes} bytes of bucket, the bucket has {bucket_len_bytes}"
            ),
            IndexProblem::Damaged(why) => write!(f, "damaged: {why}"),
        }
    }
}

impl IndexProblem {
    /// Heap bytes it holds (a damage message).
    pub fn held_bytes(&self) -> usize {
        match self {
            IndexProblem::Damaged(why) => why.capacity(),
            IndexProblem::Missing | IndexProblem::Stale { .. } => 0,
        }
    }
}

fn damaged(why: impl Into<String>) -> IndexProblem {
    IndexProblem::Damaged(why.into())
}

/// `<bucket>.idx`.
pub fn index_path(bucket_path: &Path) -> PathBuf {
    let mut name = bucket_path.as_os_str().to_owned();
    name.push(INDEX_SUFFIX);
    PathBuf::from(name)
}

/// The key of the good record that starts exactly at `offset`, and where the next one starts.
fn record_at(data: &[u8], offset: u64) -> Option<(u64, u64)> {
    let at = usize::try_from(offset).ok()?;
    let mut decoder = BucketDecoder::resume(data, at);
    match decoder.next()? {
        Ok(record) if record.offset == offset => Some((record.key, decoder.position() as u64)),
        _ => None,
    }
}

/// Where records start in `data` (0 for an empty file or an unusable header).
pub fn records_start(data: &[u8]) -> u64 {
    match detect(data) {
        Detected::Format { records_start, .. } => records_start as u64,
        Detected::Empty | Detected::Bad(_) => 0,
    }
}

impl BucketIndex {
    /// The entry a read of keys from `from` starts at, among the entries below `limit_len`
    /// (the part of the bucket the reader sees); `None`: start at the first record. Only for an
    /// in-order index: every record before the entry has a key below `from`.
    pub fn seek(&self, from: u64, limit_len: u64) -> Option<IndexEntry> {
        debug_assert!(self.in_order);
        let visible = self.entries.partition_point(|e| e.offset < limit_len);
        let entries = &self.entries[..visible];
        // In order, the smallest keys rise with the offsets: the last stretch starting below
        // `from`. A stretch starting at `from` may have records of `from` in the one before.
        let after = entries.partition_point(|e| e.min_key < from);
        after.checked_sub(1).map(|i| entries[i])
    }

    /// Cheap checks against the bucket's bytes before the index is used: the same length, and
    /// the first entry and the last record are records with the keys the index names.
    pub fn validate(&self, data: &[u8]) -> Result<(), IndexProblem> {
        let len = data.len() as u64;
        if self.bucket_len_bytes != len {
            return Err(IndexProblem::Stale {
                index_len_bytes: self.bucket_len_bytes,
                bucket_len_bytes: len,
            });
        }
        if let Some(first) = self.entries.first() {
            if first.offset < records_start(data) {
                return Err(damaged(format!(
                    "first entry at offset {} is before the first record",
                    first.offset
                )));
            }
            self.check_entry(data, *first)?;
        }
        if let Some((offset, key)) = self.last {
            match record_at(data, offset) {
                Some((found, _)) if found == key => {}
                _ => {
                    return Err(damaged(format!(
                        "no record with key {key} at offset {offset}, where the index puts the last one"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Checks that `entry` starts a record whose key fits it (equal to the stretch's smallest
    /// key in order, not below it otherwise).
    pub fn check_entry(&self, data: &[u8], entry: IndexEntry) -> Result<(), IndexProblem> {
        match record_at(data, entry.offset) {
            Some((key, _)) if key == entry.min_key || (!self.in_order && key > entry.min_key) => {
                Ok(())
            }
            Some((key, _)) => Err(damaged(format!(
                "the record at offset {} has key {key}, the index says {}",
                entry.offset, entry.min_key
            ))),
            None => Err(damaged(format!(
                "no record starts at offset {}, where the index puts one",
                entry.offset
            ))),
        }
    }
}

/// Builds an index from the good records of a bucket, offered in file order. Used by the
/// writer as it writes, and by readers and the check tool as they decode.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    index: BucketIndex,
    /// Offset of the record that starts the current stretch.
    stretch_start: u64,
}

impl IndexBuilder {
    /// An empty index with stretches of `interval_bytes` (raised to the minimum).
    pub fn new(interval_bytes: u32) -> Self {
        Self::with_capacity(interval_bytes, 0)
    }

    /// The most entries an index of a bucket of `bucket_len_bytes` can have with stretches of
    /// `interval_bytes`: stretches start at least an interval apart, and merging keeps them at
    /// most [`MAX_INDEX_ENTRIES`].
    pub fn max_entries(bucket_len_bytes: u64, interval_bytes: u32) -> usize {
        let interval = u64::from(interval_bytes.max(MIN_INDEX_INTERVAL_BYTES));
        usize::try_from(bucket_len_bytes / interval + 1)
            .unwrap_or(usize::MAX)
            .min(MAX_INDEX_ENTRIES)
    }

    /// The heap bytes of [`for_bucket`](Self::for_bucket)`(bucket_len_bytes, interval_bytes)`,
    /// which it never outgrows.
    pub fn bound_bytes(bucket_len_bytes: u64, interval_bytes: u32) -> usize {
        Self::max_entries(bucket_len_bytes, interval_bytes) * std::mem::size_of::<IndexEntry>()
    }

    /// An empty index for the records of a whole bucket of `bucket_len_bytes`, with room for
    /// all its entries at once: it holds [`bound_bytes`](Self::bound_bytes) while it is built
    /// (a reader counts that against its memory budgets) and never reallocates.
    pub fn for_bucket(bucket_len_bytes: u64, interval_bytes: u32) -> Self {
        let entries = Self::max_entries(bucket_len_bytes, interval_bytes);
        Self::with_capacity(interval_bytes, entries)
    }

    fn with_capacity(interval_bytes: u32, entries: usize) -> Self {
        IndexBuilder {
            index: BucketIndex {
                bucket_len_bytes: 0,
                records: 0,
                last: None,
                in_order: true,
                interval_bytes: interval_bytes.max(MIN_INDEX_INTERVAL_BYTES),
                entries: Vec::with_capacity(entries),
            },
            stretch_start: 0,
        }
    }

    /// The next good record: it starts at `offset` (after every record offered before).
    pub fn push(&mut self, offset: u64, key: u64) {
        let index = &mut self.index;
        debug_assert!(index.last.is_none_or(|(last, _)| last < offset));
        if let Some((_, last_key)) = index.last {
            index.in_order &= last_key <= key;
        }
        index.last = Some((offset, key));
        index.records += 1;
        if self.starts_stretch(offset) && self.index.entries.len() >= MAX_INDEX_ENTRIES {
            self.merge_pairs();
        }
        if self.starts_stretch(offset) {
            self.index.entries.push(IndexEntry {
                offset,
                min_key: key,
            });
            self.stretch_start = offset;
        } else if let Some(current) = self.index.entries.last_mut() {
            current.min_key = current.min_key.min(key);
        }
    }

    fn starts_stretch(&self, offset: u64) -> bool {
        self.index.entries.is_empty()
            || offset >= self.stretch_start + u64::from(self.index.interval_bytes)
    }

    /// Halves the entries (each pair becomes one stretch) and doubles the interval. In place:
    /// the entries keep their allocation.
    fn merge_pairs(&mut self) {
        let index = &mut self.index;
        let entries = &mut index.entries;
        let merged = entries.len().div_ceil(2);
        for i in 0..merged {
            let first = entries[2 * i];
            let min_key = entries
                .get(2 * i + 1)
                .map_or(first.min_key, |second| first.min_key.min(second.min_key));
            entries[i] = IndexEntry {
                offset: first.offset,
                min_key,
            };
        }
        entries.truncate(merged);
        index.interval_bytes = index.interval_bytes.saturating_mul(2);
        self.stretch_start = index.entries.last().map_or(0, |e| e.offset);
    }

    /// The index so far (its `bucket_len_bytes` is not maintained: see [`finish`](Self::finish)).
    pub fn index(&self) -> &BucketIndex {
        &self.index
    }

    /// The index of a bucket of `bucket_len_bytes` whose records were all offered.
    pub fn finish(&self, bucket_len_bytes: u64) -> BucketIndex {
        BucketIndex {
            bucket_len_bytes,
            ..self.index.clone()
        }
    }

    /// [`finish`](Self::finish), without a copy of the entries.
    pub fn into_index(self, bucket_len_bytes: u64) -> BucketIndex {
        BucketIndex {
            bucket_len_bytes,
            ..self.index
        }
    }

    /// Heap bytes it holds: its entries' capacity.
    pub fn held_bytes(&self) -> usize {
        self.index.entries.capacity() * std::mem::size_of::<IndexEntry>()
    }

    /// Offers every good record of `data`, a whole bucket file.
    pub fn push_all(&mut self, data: &[u8]) {
        for record in BucketDecoder::new(data).flatten() {
            self.push(record.offset, record.key);
        }
    }
}

/// The index of a whole bucket file, `data`.
pub fn build_index(data: &[u8], interval_bytes: u32) -> BucketIndex {
    let mut builder = IndexBuilder::new(interval_bytes);
    builder.push_all(data);
    builder.finish(data.len() as u64)
}

/// The bytes of an index file.
pub fn encode_index(index: &BucketIndex) -> Vec<u8> {
    assert!(index.entries.len() <= MAX_INDEX_ENTRIES, "index too large");
    let mut out = Vec::with_capacity(
        INDEX_HEADER_BYTES + index.entries.len() * INDEX_ENTRY_BYTES + INDEX_CRC_BYTES,
    );
    out.extend_from_slice(&INDEX_MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    let flags = if index.in_order { FLAG_IN_ORDER } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&index.bucket_len_bytes.to_le_bytes());
    out.extend_from_slice(&index.records.to_le_bytes());
    let (last_offset, last_key) = index.last.unwrap_or((0, 0));
    out.extend_from_slice(&last_offset.to_le_bytes());
    out.extend_from_slice(&last_key.to_le_bytes());
    out.extend_from_slice(&index.interval_bytes.to_le_bytes());
    out.extend_from_slice(&(index.entries.len() as u32).to_le_bytes());
    for entry in &index.entries {
        out.extend_from_slice(&entry.offset.to_le_bytes());
        out.extend_from_slice(&entry.min_key.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Decodes an index file and checks its structure (CRC, magic, version, flags, limits, entries
/// ascending at least an interval apart and within the bucket, in-order keys rising). Every
/// index [`encode_index`] makes of a built index decodes; re-encoding a decoded index gives the
/// same bytes. Never panics and never allocates more than the input's size.
pub fn decode_index(data: &[u8]) -> Result<BucketIndex, IndexProblem> {
    if data.len() < INDEX_HEADER_BYTES + INDEX_CRC_BYTES {
        return Err(damaged(format!(
            "{} bytes, shorter than a header",
            data.len()
        )));
    }
    let body_len = data.len() - INDEX_CRC_BYTES;
    if crc32fast::hash(&data[..body_len]) != u32_at(data, body_len) {
        return Err(damaged("checksum mismatch"));
    }
    if data[..8] != INDEX_MAGIC {
        return Err(damaged("not an index file (bad magic)"));
    }
    let version = u32_at(data, 8);
    if version != INDEX_VERSION {
        return Err(damaged(format!("unsupported index version {version}")));
    }
    let flags = u32_at(data, 12);
    if flags & !FLAG_IN_ORDER != 0 {
        return Err(damaged(format!("unknown flags {flags:#x}")));
    }
    let count = u32_at(data, 52) as usize;
    if count > MAX_INDEX_ENTRIES || body_len != INDEX_HEADER_BYTES + count * INDEX_ENTRY_BYTES {
        return Err(damaged(format!(
            "{count} entries do not fit the file's length"
        )));
    }
    let records = u64_at(data, 24);
    let index = BucketIndex {
        bucket_len_bytes: u64_at(data, 16),
        records,
        last: (records > 0).then(|| (u64_at(data, 32), u64_at(data, 40))),
        in_order: flags & FLAG_IN_ORDER != 0,
        interval_bytes: u32_at(data, 48),
        entries: (0..count)
            .map(|i| {
                let at = INDEX_HEADER_BYTES + i * INDEX_ENTRY_BYTES;
                IndexEntry {
                    offset: u64_at(data, at),
                    min_key: u64_at(data, at + 8),
                }
            })
            .collect(),
    };
    if records == 0 && (u64_at(data, 32) != 0 || u64_at(data, 40) != 0) {
        return Err(damaged("a last record in an index of no records"));
    }
    check_structure(&index)?;
    Ok(index)
}

/// The rules every index obeys, whatever its bucket.
fn check_structure(index: &BucketIndex) -> Result<(), IndexProblem> {
    if index.interval_bytes < MIN_INDEX_INTERVAL_BYTES {
        return Err(damaged(format!(
            "interval of {} bytes",
            index.interval_bytes
        )));
    }
    let count = index.entries.len() as u64;
    if (index.records == 0) != (count == 0) || count > index.records {
        return Err(damaged(format!(
            "{count} entries for {} records",
            index.records
        )));
    }
    let interval = u64::from(index.interval_bytes);
    for pair in index.entries.windows(2) {
        if pair[1].offset < pair[0].offset.saturating_add(interval) {
            return Err(damaged(format!(
                "entries at offsets {} and {} are less than an interval apart",
                pair[0].offset, pair[1].offset
            )));
        }
        if index.in_order && pair[1].min_key < pair[0].min_key {
            return Err(damaged(format!(
                "keys fall at offset {} of an index marked in order",
                pair[1].offset
            )));
        }
    }
    if let Some(last) = index.entries.last() {
        let (last_offset, last_key) = index.last.unwrap_or((0, 0));
        if last_offset < last.offset || last_offset >= index.bucket_len_bytes {
            return Err(damaged(format!("last record at offset {last_offset}")));
        }
        if index.in_order && last_key < last.min_key {
            return Err(damaged("the last key is below an entry's key"));
        }
    }
    Ok(())
}

/// Reads the index of the bucket at `bucket_path` (not checked against the bucket: see
/// [`BucketIndex::validate`]).
pub fn load_index(bucket_path: &Path) -> Result<BucketIndex, IndexProblem> {
    let path = index_path(bucket_path);
    if let Some(kind) = node_core::data_dir::not_regular(&path) {
        // Opening a FIFO would stall the loop; the bucket is read whole instead.
        return Err(damaged(format!("{kind}, not a regular file")));
    }
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(IndexProblem::Missing),
        Err(e) => return Err(damaged(format!("cannot open: {e}"))),
    };
    let mut data = Vec::new();
    // One byte more than the largest index shows a file that is too long without reading it.
    file.take(MAX_INDEX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| damaged(format!("cannot read: {e}")))?;
    if data.len() > MAX_INDEX_FILE_BYTES {
        return Err(damaged("longer than any index"));
    }
    decode_index(&data)
}

/// Writes the index of the bucket at `bucket_path`: to `<bucket>.idx.tmp`, renamed over
/// `<bucket>.idx`, so a reader sees the old index or the new one whole. Not fsynced: a torn or
/// lost index after a power cut fails its checks and is rebuilt.
pub fn save_index(bucket_path: &Path, index: &BucketIndex) -> io::Result<()> {
    let path = index_path(bucket_path);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // Written afresh: a FIFO made by hand at the name would block the event loop here.
    let mut file = node_core::data_dir::create_fresh(&tmp)?;
    let written = file.write_all(&encode_index(index));
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Deletes the index of the bucket at `bucket_path`, if there is one.
pub fn remove_index(bucket_path: &Path) -> io::Result<()> {
    match fs::remove_file(index_path(bucket_path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Verifies every fact of `index` against its bucket, `data` (the check tool's verification):
/// its length, record count, last record and order flag, and every entry starting a good
/// record and holding the smallest key of its stretch.
pub fn verify_index(index: &BucketIndex, data: &[u8]) -> Result<(), IndexProblem> {
    let mut verifier = IndexVerifier::new(index);
    for record in BucketDecoder::new(data).flatten() {
        verifier.push(record.offset, record.key);
    }
    verifier.finish(data.len() as u64)
}

/// [`verify_index`] fed one good record at a time, in file order, so that a check decoding the
/// bucket for its own reasons verifies the index in the same pass.
#[derive(Debug)]
pub struct IndexVerifier<'a> {
    index: &'a BucketIndex,
    /// The entry the next stretch must start with.
    next: usize,
    /// The current stretch's entry and the smallest key seen in it.
    current: Option<(IndexEntry, u64)>,
    records: u64,
    last: Option<(u64, u64)>,
    in_order: bool,
    /// The first disagreement found.
    problem: Option<IndexProblem>,
}

impl<'a> IndexVerifier<'a> {
    pub fn new(index: &'a BucketIndex) -> Self {
        IndexVerifier {
            index,
            next: 0,
            current: None,
            records: 0,
            last: None,
            in_order: true,
            problem: None,
        }
    }

    /// The next good record of the bucket.
    pub fn push(&mut self, offset: u64, key: u64) {
        if let Some((_, last_key)) = self.last {
            self.in_order &= last_key <= key;
        }
        self.last = Some((offset, key));
        self.records += 1;
        if self.problem.is_some() {
            return;
        }
        let next = self.index.entries.get(self.next).copied();
        match next {
            Some(entry) if entry.offset < offset => {
                self.problem = Some(no_record_at(entry.offset));
            }
            Some(entry) if entry.offset == offset => {
                self.end_stretch();
                self.current = Some((entry, key));
                self.next += 1;
            }
            _ => match self.current.as_mut() {
                Some((_, min)) => *min = (*min).min(key),
                None => {
                    self.problem = Some(damaged(format!(
                        "the first record (offset {offset}) is in no stretch"
                    )))
                }
            },
        }
    }

    fn end_stretch(&mut self) {
        if let Some((entry, min)) = self.current.take() {
            if entry.min_key != min && self.problem.is_none() {
                self.problem = Some(damaged(format!(
                    "the stretch at offset {} has smallest key {min}, the index says {}",
                    entry.offset, entry.min_key
                )));
            }
        }
    }

    /// After the last record of a bucket of `bucket_len_bytes`: the verdict.
    pub fn finish(mut self, bucket_len_bytes: u64) -> Result<(), IndexProblem> {
        let index = self.index;
        if index.bucket_len_bytes != bucket_len_bytes {
            return Err(IndexProblem::Stale {
                index_len_bytes: index.bucket_len_bytes,
                bucket_len_bytes,
            });
        }
        if (self.records, self.last, self.in_order) != (index.records, index.last, index.in_order) {
            return Err(damaged(format!(
                "says {} records, last {:?}, {}in order; the bucket has {}, last {:?}, {}in order",
                index.records,
                index.last,
                if index.in_order { "" } else { "not " },
                self.records,
                self.last,
                if self.in_order { "" } else { "not " },
            )));
        }
        self.end_stretch();
        if let Some(problem) = self.problem {
            return Err(problem);
        }
        match index.entries.get(self.next) {
            Some(extra) => Err(no_record_at(extra.offset)),
            None => Ok(()),
        }
    }
}

fn no_record_at(offset: u64) -> IndexProblem {
    damaged(format!(
        "no record starts at offset {offset}, where the index puts one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::{encode_record, file_header, BucketFormat};

    fn bucket(keys: &[u64], value_len: usize) -> Vec<u8> {
        let mut data = file_header().to_vec();
        for key in keys {
            encode_record(BucketFormat::Crc, *key, &vec![b'v'; value_len], &mut data);
        }
        data
    }

    /// An index made a FIFO by hand is damaged (the bucket is read whole), not opened: that
    /// would block the reading event loop until something wrote to it.
    #[test]
    fn a_fifo_as_an_index_is_damaged_without_being_opened() {
        let dir = tempfile::tempdir().unwrap();
        let bucket_path = dir.path().join("005");
        fs::write(&bucket_path, bucket(&[1, 2], 10)).unwrap();
        testkit::mkfifo(&index_path(&bucket_path));
        match testkit::returns_in_time("load_index", move || load_index(&bucket_path)) {
            Err(IndexProblem::Damaged(why)) => assert!(why.contains("a FIFO"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// A FIFO made by hand at `<bucket>.idx.tmp` is replaced when the index is saved, not
    /// opened: opening it to write blocked the event loop until something read it.
    #[test]
    fn saving_an_index_replaces_a_fifo_at_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let bucket_path = dir.path().join("005");
        let data = bucket(&[1, 2, 3], 10);
        fs::write(&bucket_path, &data).unwrap();
        let index = build_index(&data, 16);
        let mut tmp = index_path(&bucket_path).into_os_string();
        tmp.push(".tmp");
        testkit::mkfifo(Path::new(&tmp));
        let saved = bucket_path.clone();
        let written = index.clone();
        testkit::returns_in_time("save_index", move || save_index(&saved, &written)).unwrap();
        assert_eq!(load_index(&bucket_path).unwrap(), index);
        assert!(!Path::new(&tmp).exists(), "renamed into place");
    }

    #[test]
    fn stretches_start_every_interval_and_hold_their_smallest_key() {
        // Records of 16 + 1008 = 1024 bytes: four per 4 KiB stretch.
        let keys: Vec<u64> = (0..10).map(|i| 100 + i).collect();
        let data = bucket(&keys, 1008);
        let index = build_index(&data, 4096);
        assert!(index.in_order);
        assert_eq!(index.records, 10);
        assert_eq!(index.last, Some((16 + 9 * 1024, 109)));
        let offsets: Vec<u64> = index.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![16, 16 + 4 * 1024, 16 + 8 * 1024]);
        let keys: Vec<u64> = index.entries.iter().map(|e| e.min_key).collect();
        assert_eq!(keys, vec![100, 104, 108]);
        assert_eq!(index.validate(&data), Ok(()));
        assert_eq!(verify_index(&index, &data), Ok(()));
        let bytes = encode_index(&index);
        assert_eq!(bytes.len(), INDEX_HEADER_BYTES + 3 * 16 + 4);
        assert_eq!(decode_index(&bytes), Ok(index.clone()));

        // Seeking: the last stretch whose smallest key is below `from`.
        assert_eq!(index.seek(0, u64::MAX), None);
        assert_eq!(index.seek(104, u64::MAX).map(|e| e.min_key), Some(100));
        assert_eq!(index.seek(105, u64::MAX).map(|e| e.min_key), Some(104));
        assert_eq!(index.seek(u64::MAX, u64::MAX).map(|e| e.min_key), Some(108));
        // Entries past what the reader sees are not used.
        assert_eq!(
            index.seek(u64::MAX, 16 + 8 * 1024).map(|e| e.min_key),
            Some(104)
        );
    }

    #[test]
    fn out_of_order_keys_clear_the_flag_and_stretches_keep_their_minimum() {
        let data = bucket(&[5, 3, 9, 1, 7], 2000);
        let index = build_index(&data, 4096);
        assert!(!index.in_order);
        assert_eq!(index.entries[0].min_key, 3);
        assert_eq!(verify_index(&index, &data), Ok(()));
        assert_eq!(decode_index(&encode_index(&index)), Ok(index));
    }

    #[test]
    fn too_many_stretches_merge_in_pairs_and_double_the_interval() {
        let mut builder = IndexBuilder::new(4096);
        let n = MAX_INDEX_ENTRIES as u64 + 3;
        for i in 0..n {
            builder.push(16 + i * 4096, i);
        }
        let index = builder.finish(16 + n * 4096);
        assert_eq!(index.interval_bytes, 8192);
        assert!(index.entries.len() <= MAX_INDEX_ENTRIES);
        assert_eq!(index.entries.len(), MAX_INDEX_ENTRIES / 2 + 2);
        assert_eq!(decode_index(&encode_index(&index)), Ok(index));
    }

    /// The builder a read uses has room for every entry of its bucket from the start and
    /// never reallocates, merging included (the read's memory budgets granted that much); a
    /// merged stretch starts where its first half did and keeps the smaller key of the two.
    #[test]
    fn a_builder_for_a_bucket_never_outgrows_its_bound() {
        let n = MAX_INDEX_ENTRIES as u64 + 3;
        let len = 16 + n * 4096;
        let mut builder = IndexBuilder::for_bucket(len, 4096);
        let bound = IndexBuilder::bound_bytes(len, 4096);
        assert_eq!(bound, MAX_INDEX_ENTRIES * INDEX_ENTRY_BYTES);
        assert_eq!(builder.held_bytes(), bound);
        // Keys falling: the smaller key of a pair is the second's.
        for i in 0..n {
            builder.push(16 + i * 4096, n - i);
            assert!(builder.held_bytes() <= bound, "after {i} records");
        }
        let index = builder.into_index(len);
        assert_eq!(index.interval_bytes, 8192);
        assert_eq!(index.entries.len(), MAX_INDEX_ENTRIES / 2 + 2);
        for (j, entry) in index.entries.iter().enumerate().take(MAX_INDEX_ENTRIES / 2) {
            let first = 2 * j as u64;
            assert_eq!(entry.offset, 16 + first * 4096, "entry {j}");
            assert_eq!(entry.min_key, n - (first + 1), "entry {j}");
        }
        // A small bucket's bound follows its length.
        assert_eq!(IndexBuilder::max_entries(0, 4096), 1);
        assert_eq!(IndexBuilder::max_entries(3 * 4096, 4096), 4);
        assert_eq!(
            IndexBuilder::max_entries(3 * 4096, 1),
            4,
            "the minimum interval"
        );
    }

    #[test]
    fn damage_and_staleness_are_caught() {
        let data = bucket(&[1, 2, 3, 4, 5, 6, 7, 8], 1500);
        let index = build_index(&data, 4096);
        let bytes = encode_index(&index);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(decode_index(&bad).is_err(), "flip at {at} not caught");
        }
        assert!(decode_index(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = data.clone();
        encode_record(BucketFormat::Crc, 9, b"appended", &mut longer);
        assert!(matches!(
            index.validate(&longer),
            Err(IndexProblem::Stale { .. })
        ));
        // Same length, other content: the last record is not where the index says.
        let other = bucket(&[1, 2, 3, 4, 5, 6, 7, 9], 1500);
        assert!(matches!(
            index.validate(&other),
            Err(IndexProblem::Damaged(_))
        ));
        assert!(matches!(
            verify_index(&index, &other),
            Err(IndexProblem::Damaged(_))
        ));
    }
}
