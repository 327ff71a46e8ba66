//! Verification and repair of bucket files, for the `logfiles_check` tool.
//!
//! - [`walk_data_dir`] lists what a data directory holds, exactly as the node sees it
//!   (`<channel>/<slot>/<bucket>`, the rules of [`list_buckets`](super::layout::list_buckets)):
//!   the bucket files, the entries the node ignores ([`Skipped`]: stray names, `*.gz`, saved
//!   repair cuts, directories where a file belongs, ...) and what cannot be read ([`Unreadable`]).
//!   Nothing is skipped silently.
//! - [`check_bucket_file`] (and [`check_bucket_bytes`] on bytes in memory) reads one file of any
//!   format and reports its records, value bytes, every damage (CRC for ours, parity for v1,
//!   length sanity for all) and the records whose key does not belong to the bucket its path
//!   names. The file is mapped (memmap2), never read into memory whole, and at most
//!   [`MAX_DAMAGE_KEPT`] damage items are kept per file.
//! - [`check_data_dir`] does both for a whole data directory (or one channel).
//! - [`check_bucket_file`] also verifies the bucket's index (`<bucket>.idx`, [`super::index`])
//!   against the records, in the same pass: every entry, the record count, the last record and
//!   the order flag ([`IndexCheck`]). A missing or stale index is not a problem (the node
//!   rebuilds it on the first read); a damaged one is.
//! - [`repair_bucket_file`] truncates a file at its first bad record (damage or misplaced key),
//!   after saving the cut bytes to `<bucket>.cut.<unix_s>` next to it (`.<n>` appended if that
//!   name is taken), fsyncing the saved file and the directory before the cut. No reader looks at
//!   those names ([`list_buckets`](super::layout::list_buckets) accepts exactly three hex digits).
//!   [`rebuild_index`] writes a bucket's index anew (after a repair, or when it is not usable).
//!
//! Invariant (fuzzed in `fuzz/fuzz_targets/bucket_decoder.rs`): the bytes before
//! [`FileReport::first_bad_offset`] check clean and hold every good record before it, so a
//! repaired file checks clean.

use super::format::{BucketDecoder, BucketFormat, Damage, DamageKind};
use super::index::{
    build_index, index_path, load_index, save_index, BucketIndex, IndexProblem, IndexVerifier,
    INDEX_SUFFIX,
};
use super::layout::{parse_slot_name, BucketId, BUCKET_NAME_DIGITS};
use super::writer::map_file;
use super::StorageError;
use node_core::protocol::logfiles::valid_channel_name;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// At most this many damage items are kept per file (all are counted).
pub const MAX_DAMAGE_KEPT: usize = 16;

/// The infix of the files a repair saves cut bytes to: `<bucket>.cut.<unix_s>`.
pub const CUT_INFIX: &str = ".cut.";

/// A short, stable, machine-readable name of a damage kind (used in JSON reports).
pub fn damage_kind_name(kind: DamageKind) -> &'static str {
    match kind {
        DamageKind::TornFileHeader => "torn_file_header",
        DamageKind::FileHeaderCrc => "file_header_crc",
        DamageKind::UnsupportedVersion(_) => "unsupported_version",
        DamageKind::TornRecordHeader => "torn_record_header",
        DamageKind::TornValue { .. } => "torn_value",
        DamageKind::ValueTooLong { .. } => "value_too_long",
        DamageKind::Parity => "parity",
        DamageKind::Crc => "crc",
        DamageKind::NothingReads => "nothing_reads",
    }
}

/// What one bucket file holds and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub path: PathBuf,
    /// The bucket the path names, when it names one.
    pub id: Option<BucketId>,
    /// `None` for a zero-length file or an unusable header.
    pub format: Option<BucketFormat>,
    pub len_bytes: u64,
    /// Good records (including misplaced ones: they read correctly).
    pub records: u64,
    /// Sum of the good records' value lengths.
    pub value_bytes: u64,
    /// The first [`MAX_DAMAGE_KEPT`] damage items.
    pub damage: Vec<Damage>,
    pub damage_count: u64,
    /// Good records whose key is outside the bucket, and the offset and key of the first one.
    pub misplaced_records: u64,
    pub first_misplaced_offset: Option<u64>,
    pub first_misplaced_key: Option<u64>,
    /// Good records at or after [`first_bad_offset`](Self::first_bad_offset): what a repair
    /// moves to the saved cut file along with the damage.
    pub records_past_first_bad: u64,
    /// The bucket's index, when it was checked ([`check_bucket_file`] of a non-empty file).
    pub index: Option<IndexCheck>,
}

/// What the check found of a bucket's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexCheck {
    /// Every fact of the index matches the bucket.
    Ok {
        entries: u64,
        interval_bytes: u32,
        in_order: bool,
    },
    /// Missing, stale (the node rebuilds those on the first read) or damaged.
    Problem(IndexProblem),
}

impl IndexCheck {
    /// A damaged index (missing and stale ones are expected: after a crash, for reference
    /// buckets, for buckets of older versions).
    pub fn is_damaged(&self) -> bool {
        matches!(self, IndexCheck::Problem(IndexProblem::Damaged(_)))
    }

    /// Whether `--repair` writes it anew.
    pub fn needs_rebuild(&self) -> bool {
        matches!(self, IndexCheck::Problem(_))
    }

    /// A short machine-readable name: `ok`, `missing`, `stale`, `damaged`.
    pub fn status_name(&self) -> &'static str {
        match self {
            IndexCheck::Ok { .. } => "ok",
            IndexCheck::Problem(IndexProblem::Missing) => "missing",
            IndexCheck::Problem(IndexProblem::Stale { .. }) => "stale",
            IndexCheck::Problem(IndexProblem::Damaged(_)) => "damaged",
        }
    }

    fn of(index: &BucketIndex) -> Self {
        IndexCheck::Ok {
            entries: index.entries.len() as u64,
            interval_bytes: index.interval_bytes,
            in_order: index.in_order,
        }
    }
}

/// The first thing wrong in a file: where a repair cuts, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBad {
    Damage(Damage),
    /// A record that reads correctly but whose key belongs to `belongs_in`.
    Misplaced {
        offset: u64,
        key: u64,
        belongs_in: BucketId,
    },
}

impl FirstBad {
    pub fn offset(&self) -> u64 {
        match self {
            FirstBad::Damage(d) => d.offset,
            FirstBad::Misplaced { offset, .. } => *offset,
        }
    }

    /// A short machine-readable name: a [`damage_kind_name`] or `"misplaced_key"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            FirstBad::Damage(d) => damage_kind_name(d.kind),
            FirstBad::Misplaced { .. } => "misplaced_key",
        }
    }
}

impl fmt::Display for FirstBad {
    /// The reason, without the offset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirstBad::Damage(d) => {
                let s = if d.len_bytes == 1 { "" } else { "s" };
                write!(f, "{} ({} byte{s} skipped)", d.kind, d.len_bytes)
            }
            FirstBad::Misplaced {
                key, belongs_in, ..
            } => write!(
                f,
                "key {key:#x} belongs in bucket {}/{}, not in this one",
                belongs_in.slot_dir_name(),
                belongs_in.file_name()
            ),
        }
    }
}

impl FileReport {
    /// Whether anything is wrong.
    pub fn is_clean(&self) -> bool {
        self.damage_count == 0 && self.misplaced_records == 0
    }

    /// Where a repair truncates: the first damage or misplaced record, whichever comes first.
    pub fn first_bad_offset(&self) -> Option<u64> {
        self.first_bad().map(|b| b.offset())
    }

    /// The first damage or misplaced record, whichever comes first, and why it is bad.
    pub fn first_bad(&self) -> Option<FirstBad> {
        let damage = self.damage.first().copied().map(FirstBad::Damage);
        let misplaced = match (self.first_misplaced_offset, self.first_misplaced_key) {
            (Some(offset), Some(key)) => Some(FirstBad::Misplaced {
                offset,
                key,
                belongs_in: BucketId::from_key(key),
            }),
            _ => None,
        };
        match (damage, misplaced) {
            (Some(a), Some(b)) => Some(if b.offset() < a.offset() { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// Checks the content of one bucket file, `data` (the whole file). `id` is the bucket its path
/// names (for the key check); `None` skips that check. Never panics, whatever `data` holds.
/// The index is not checked (see [`check_bucket_file`]).
pub fn check_bucket_bytes(path: &Path, id: Option<BucketId>, data: &[u8]) -> FileReport {
    check_bytes(path, id, data, None)
}

/// [`check_bucket_bytes`], verifying `index` (as loaded) in the same pass when given.
fn check_bytes(
    path: &Path,
    id: Option<BucketId>,
    data: &[u8],
    index: Option<Result<BucketIndex, IndexProblem>>,
) -> FileReport {
    let loaded = index.as_ref().map(|i| i.as_ref());
    let mut verifier = match loaded {
        Some(Ok(index)) if index.bucket_len_bytes == data.len() as u64 => {
            Some(IndexVerifier::new(index))
        }
        _ => None,
    };
    let mut report = FileReport {
        path: path.to_path_buf(),
        id,
        format: None,
        len_bytes: data.len() as u64,
        records: 0,
        value_bytes: 0,
        damage: Vec::new(),
        damage_count: 0,
        misplaced_records: 0,
        first_misplaced_offset: None,
        first_misplaced_key: None,
        records_past_first_bad: 0,
        index: None,
    };
    let mut decoder = BucketDecoder::new(data);
    report.format = decoder.format();
    // Items come in file order, so once something is bad every later good record is past it.
    let mut seen_bad = false;
    for item in decoder.by_ref() {
        match item {
            Ok(record) => {
                report.records += 1;
                report.value_bytes += record.value.len() as u64;
                if let Some(verifier) = verifier.as_mut() {
                    verifier.push(record.offset, record.key);
                }
                if id.is_some_and(|id| !id.contains(record.key)) {
                    report.misplaced_records += 1;
                    if report.first_misplaced_offset.is_none() {
                        report.first_misplaced_offset = Some(record.offset);
                        report.first_misplaced_key = Some(record.key);
                    }
                    seen_bad = true;
                }
                if seen_bad {
                    report.records_past_first_bad += 1;
                }
            }
            Err(d) => {
                seen_bad = true;
                report.damage_count += 1;
                if report.damage.len() < MAX_DAMAGE_KEPT {
                    report.damage.push(d);
                }
            }
        }
    }
    report.index = loaded.map(|loaded| {
        let verdict = match (loaded, verifier) {
            (Ok(index), Some(verifier)) => verifier.finish(data.len() as u64).map(|()| index),
            (Ok(index), None) => Err(IndexProblem::Stale {
                index_len_bytes: index.bucket_len_bytes,
                bucket_len_bytes: data.len() as u64,
            }),
            (Err(problem), _) => Err(problem.clone()),
        };
        verdict.map_or_else(IndexCheck::Problem, IndexCheck::of)
    });
    report
}

/// Checks one bucket file (mapped, not read into memory) and, unless it is empty, its index.
/// `id` is the bucket its path names (for the key check); `None` skips that check.
pub fn check_bucket_file(path: &Path, id: Option<BucketId>) -> Result<FileReport, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let map = map_file(&file).map_err(|e| StorageError::io(path, e))?;
    let data: &[u8] = map.as_deref().unwrap_or(&[]);
    let index = (!data.is_empty()).then(|| load_index(path));
    Ok(check_bytes(path, id, data, index))
}

/// Builds the index of the bucket file at `path` from its records and saves it over whatever
/// index it had (`interval_bytes` per stretch). What it wrote, as a check would report it.
pub fn rebuild_index(path: &Path, interval_bytes: u32) -> Result<IndexCheck, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let map = map_file(&file).map_err(|e| StorageError::io(path, e))?;
    let index = build_index(map.as_deref().unwrap_or(&[]), interval_bytes);
    save_index(path, &index).map_err(|e| StorageError::io(&index_path(path), e))?;
    Ok(IndexCheck::of(&index))
}

/// Why an entry of a data directory is not checked as a bucket file. None of these is read by
/// the node either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Directly in the data directory, and not a directory (e.g. the node's journal file, or a
    /// symbolic link: the node does not take those for channels).
    NotAChannelDirectory,
    /// A directory in the data directory whose name is not a valid channel name.
    NotAChannelName,
    /// In a channel directory: a name that is not a slot directory name (10 lowercase hex digits).
    NotASlotName,
    /// A slot directory name that is not a directory (symbolic links are not followed).
    SlotNameNotADirectory,
    /// In a slot directory: a name that is not a bucket file name (3 lowercase hex digits).
    NotABucketName,
    /// `<bucket>.cut.<unix_s>`: bytes an earlier repair cut off and saved.
    RepairCut,
    /// `<bucket>.gz`: a compressed bucket (the reference's cron job makes those).
    Compressed,
    /// A directory with a bucket file name.
    BucketNameIsADirectory,
    /// `<bucket>.idx` with no bucket `<bucket>` beside it.
    IndexWithoutBucket,
}

impl SkipReason {
    /// A short machine-readable name (used in JSON reports).
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::NotAChannelDirectory => "not_a_channel_directory",
            SkipReason::NotAChannelName => "not_a_channel_name",
            SkipReason::NotASlotName => "not_a_slot_name",
            SkipReason::SlotNameNotADirectory => "slot_name_not_a_directory",
            SkipReason::NotABucketName => "not_a_bucket_name",
            SkipReason::RepairCut => "repair_cut",
            SkipReason::Compressed => "compressed",
            SkipReason::BucketNameIsADirectory => "bucket_name_is_a_directory",
            SkipReason::IndexWithoutBucket => "index_without_bucket",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::NotAChannelDirectory => {
                "not a directory (or a symbolic link), so not a channel"
            }
            SkipReason::NotAChannelName => "directory name is not a valid channel name",
            SkipReason::NotASlotName => "not a slot directory name (10 lowercase hex digits)",
            SkipReason::SlotNameNotADirectory => "slot name, but not a directory",
            SkipReason::NotABucketName => "not a bucket file name (3 lowercase hex digits)",
            SkipReason::RepairCut => "bytes cut off by an earlier repair",
            SkipReason::Compressed => "compressed bucket, not read by the node",
            SkipReason::BucketNameIsADirectory => "bucket name, but a directory",
            SkipReason::IndexWithoutBucket => "index of a bucket that does not exist (not read)",
        })
    }
}

/// An entry of a data directory that is not checked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

/// Something that should be checked but cannot be read: a channel or slot directory that
/// cannot be listed, a bucket file that cannot be opened or mapped, or a bucket name that is
/// not a regular file (a FIFO, a socket, a link to nowhere ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: PathBuf,
    /// What went wrong (without the path).
    pub error: String,
}

impl Unreadable {
    fn io(path: &Path, error: &io::Error) -> Self {
        Unreadable {
            path: path.to_path_buf(),
            error: error.to_string(),
        }
    }

    /// From an error of [`check_bucket_file`].
    pub fn from_storage_error(path: &Path, error: &StorageError) -> Self {
        Unreadable {
            path: path.to_path_buf(),
            error: match error {
                StorageError::Io { source, .. } => source.to_string(),
                other => other.to_string(),
            },
        }
    }
}

/// One bucket file found by [`walk_data_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    pub channel: String,
    pub id: BucketId,
    pub path: PathBuf,
    /// The file's length when it was listed.
    pub len_bytes: u64,
}

/// What a data directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// The channel directories walked, in name order.
    pub channels: Vec<String>,
    /// Every bucket file, by channel then bucket (time) order.
    pub buckets: Vec<BucketEntry>,
    /// Entries not checked, in walk order.
    pub skipped: Vec<Skipped>,
    /// Entries that cannot be read, in walk order.
    pub unreadable: Vec<Unreadable>,
}

impl Inventory {
    /// Sum of the bucket files' lengths.
    pub fn bucket_bytes(&self) -> u64 {
        self.buckets.iter().map(|b| b.len_bytes).sum()
    }
}

/// The entries of `dir` sorted by name. An entry that cannot be read ends the listing.
fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries = fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Whether `name` is `<bucket>.cut.<anything>`, a file [`repair_bucket_file`] saved.
fn is_repair_cut(name: &str) -> bool {
    name.split_once(CUT_INFIX).is_some_and(|(bucket, _)| {
        bucket.len() == BUCKET_NAME_DIGITS && BucketId::parse("0000000000", bucket).is_some()
    })
}

/// Lists the bucket files of every channel of `data_dir` (or of `channel` only) as the node
/// sees them, and every other entry. Channels are directories (not symbolic links) with a valid
/// channel name, as the node discovers them; slot directories and bucket files follow the rules of
/// [`list_buckets`](super::layout::list_buckets).
///
/// Errors: `data_dir` (or, with `channel`, the channel directory) cannot be listed, or
/// `channel` is not a valid channel name. Anything unreadable below that is reported in
/// [`Inventory::unreadable`].
pub fn walk_data_dir(data_dir: &Path, channel: Option<&str>) -> Result<Inventory, StorageError> {
    let mut inventory = Inventory::default();
    match channel {
        Some(name) => {
            let channel_dir = data_dir.join(name);
            if !valid_channel_name(name) {
                return Err(StorageError::io(
                    &channel_dir,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a valid channel name"),
                ));
            }
            let entries =
                sorted_entries(&channel_dir).map_err(|e| StorageError::io(&channel_dir, e))?;
            inventory.channels.push(name.to_string());
            walk_channel(name, entries, &mut inventory);
        }
        None => {
            let entries = sorted_entries(data_dir).map_err(|e| StorageError::io(data_dir, e))?;
            for entry in entries {
                let path = entry.path();
                // The node's own files (`.lock`, `.removing/`) are not data to check.
                if entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with('.'))
                {
                    continue;
                }
                // As the node's channel discovery: a symbolic link is not a channel.
                let is_dir = match entry.file_type() {
                    Ok(t) => t.is_dir(),
                    Err(e) => {
                        inventory.unreadable.push(Unreadable::io(&path, &e));
                        continue;
                    }
                };
                if !is_dir {
                    inventory.skipped.push(Skipped {
                        path,
                        reason: SkipReason::NotAChannelDirectory,
                    });
                    continue;
                }
                let Some(name) = entry
                    .file_name()
                    .to_str()
                    .filter(|n| valid_channel_name(n))
                    .map(str::to_string)
                else {
                    inventory.skipped.push(Skipped {
                        path,
                        reason: SkipReason::NotAChannelName,
                    });
                    continue;
                };
                match sorted_entries(&path) {
                    Ok(entries) => {
                        inventory.channels.push(name.clone());
                        walk_channel(&name, entries, &mut inventory);
                    }
                    Err(e) => inventory.unreadable.push(Unreadable::io(&path, &e)),
                }
            }
        }
    }
    Ok(inventory)
}

fn walk_channel(channel: &str, entries: Vec<fs::DirEntry>, inventory: &mut Inventory) {
    for entry in entries {
        let path = entry.path();
        let Some(slot) = entry.file_name().to_str().and_then(parse_slot_name) else {
            inventory.skipped.push(Skipped {
                path,
                reason: SkipReason::NotASlotName,
            });
            continue;
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => {}
            Ok(_) => {
                inventory.skipped.push(Skipped {
                    path,
                    reason: SkipReason::SlotNameNotADirectory,
                });
                continue;
            }
            Err(e) => {
                inventory.unreadable.push(Unreadable::io(&path, &e));
                continue;
            }
        }
        let entries = match sorted_entries(&path) {
            Ok(entries) => entries,
            Err(e) => {
                inventory.unreadable.push(Unreadable::io(&path, &e));
                continue;
            }
        };
        walk_slot(channel, slot, entries, inventory);
    }
}

/// The bucket name of `<bucket>.idx`, if `name` is one.
fn indexed_bucket_name(name: &str) -> Option<&str> {
    name.strip_suffix(INDEX_SUFFIX)
        .filter(|bucket| BucketId::parse("0000000000", bucket).is_some())
}

fn walk_slot(channel: &str, slot: u64, entries: Vec<fs::DirEntry>, inventory: &mut Inventory) {
    let slot_name = format!("{slot:010x}");
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut in_slot = Vec::new();
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_str();
        // An index is checked with its bucket (check_bucket_file), not on its own.
        if let Some(bucket) = name.and_then(indexed_bucket_name) {
            if !names.iter().any(|n| n == bucket) {
                inventory.skipped.push(Skipped {
                    path,
                    reason: SkipReason::IndexWithoutBucket,
                });
            }
            continue;
        }
        let id = name.and_then(|n| BucketId::parse(&slot_name, n));
        let Some(id) = id else {
            let reason = match name {
                Some(n) if is_repair_cut(n) => SkipReason::RepairCut,
                Some(n) if n.len() == BUCKET_NAME_DIGITS + 3 && n.ends_with(".gz") => {
                    SkipReason::Compressed
                }
                _ => SkipReason::NotABucketName,
            };
            inventory.skipped.push(Skipped { path, reason });
            continue;
        };
        // As `list_buckets`: a directory is ignored, anything else is read as a bucket.
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                inventory.skipped.push(Skipped {
                    path,
                    reason: SkipReason::BucketNameIsADirectory,
                });
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                inventory.unreadable.push(Unreadable::io(&path, &e));
                continue;
            }
        }
        // Follows symbolic links, as opening the bucket does; opening a FIFO would block.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => in_slot.push(BucketEntry {
                channel: channel.to_string(),
                id,
                path,
                len_bytes: meta.len(),
            }),
            Ok(_) => inventory.unreadable.push(Unreadable {
                path,
                error: "not a regular file".to_string(),
            }),
            Err(e) => inventory.unreadable.push(Unreadable::io(&path, &e)),
        }
    }
    in_slot.sort_by_key(|b| b.id);
    inventory.buckets.extend(in_slot);
}

/// The check of a whole data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirReport {
    /// The channel directories walked, in name order.
    pub channels: Vec<String>,
    /// Every bucket file that could be read, by channel then bucket order.
    pub files: Vec<FileReport>,
    /// Entries not checked (not buckets), with why.
    pub skipped: Vec<Skipped>,
    /// Directories and bucket files that could not be read.
    pub unreadable: Vec<Unreadable>,
}

impl DirReport {
    pub fn records(&self) -> u64 {
        self.files.iter().map(|f| f.records).sum()
    }
    pub fn value_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.value_bytes).sum()
    }
    pub fn files_with_errors(&self) -> usize {
        self.files.iter().filter(|f| !f.is_clean()).count()
    }
    /// No damage, no misplaced key, nothing unreadable. Skipped entries do not count.
    pub fn is_clean(&self) -> bool {
        self.files_with_errors() == 0 && self.unreadable.is_empty()
    }
}

/// Checks every bucket file of every channel directory in `data_dir` (or of `channel` only),
/// channels in name order. Errors as [`walk_data_dir`]; a bucket file that cannot be read is
/// reported in [`DirReport::unreadable`] and the check goes on. Keeps one report per file: for
/// very large directories walk and check file by file instead (as `logfiles_check` does).
pub fn check_data_dir(data_dir: &Path, channel: Option<&str>) -> Result<DirReport, StorageError> {
    let inventory = walk_data_dir(data_dir, channel)?;
    let mut report = DirReport {
        channels: inventory.channels,
        files: Vec::with_capacity(inventory.buckets.len()),
        skipped: inventory.skipped,
        unreadable: inventory.unreadable,
    };
    for bucket in inventory.buckets {
        match check_bucket_file(&bucket.path, Some(bucket.id)) {
            Ok(file) => report.files.push(file),
            Err(e) => report
                .unreadable
                .push(Unreadable::from_storage_error(&bucket.path, &e)),
        }
    }
    Ok(report)
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub cut_from_offset: u64,
    pub cut_bytes: u64,
    /// Good records among the cut bytes (after the first bad one); they are in the saved file.
    pub records_cut: u64,
    /// Where the cut bytes were saved.
    pub saved_to: PathBuf,
}

/// Creates `<path>.cut.<unix_s>` (or `<path>.cut.<unix_s>.<n>` when taken), never replacing a file.
fn create_cut_file(path: &Path) -> Result<(PathBuf, File), StorageError> {
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut n = 0u32;
    loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!("{CUT_INFIX}{now_s}"));
        if n > 0 {
            name.push(format!(".{n}"));
        }
        let saved_to = PathBuf::from(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&saved_to)
        {
            Ok(file) => return Ok((saved_to, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err(StorageError::io(&saved_to, e)),
        }
    }
}

/// Truncates the file of `report` at its first bad offset, after saving the bytes from there to
/// the end to `<path>.cut.<unix_s>` (fsynced, and its directory too). `Ok(None)` when the file
/// is clean. Refuses a file whose header is unusable (it may be a newer format: nothing would be
/// left), and a file whose length changed since `report` was made (someone is writing to it).
pub fn repair_bucket_file(report: &FileReport) -> Result<Option<Repair>, StorageError> {
    let Some(cut_from_offset) = report.first_bad_offset() else {
        return Ok(None);
    };
    let path = &report.path;
    if report.format.is_none() {
        if let Some(d) = report.damage.first() {
            if !matches!(d.kind, DamageKind::TornFileHeader) {
                return Err(StorageError::BadHeader {
                    path: path.clone(),
                    kind: d.kind,
                });
            }
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))?;
    let map = map_file(&file).map_err(|e| StorageError::io(path, e))?;
    let data: &[u8] = map.as_deref().unwrap_or(&[]);
    if data.len() as u64 != report.len_bytes {
        return Err(StorageError::Changed { path: path.clone() });
    }
    let start = usize::try_from(cut_from_offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let (saved_to, mut saved) = create_cut_file(path)?;
    saved
        .write_all(&data[start..])
        .and_then(|()| saved.sync_all())
        .map_err(|e| StorageError::io(&saved_to, e))?;
    // The saved file's name must be durable before the bytes leave the bucket.
    if let Some(dir) = saved_to.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(dir, e))?;
    }
    let cut_bytes = (data.len() - start) as u64;
    drop(map);
    file.set_len(start as u64)
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(path, e))?;
    Ok(Some(Repair {
        cut_from_offset: start as u64,
        cut_bytes,
        records_cut: report.records_past_first_bad,
        saved_to,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::{encode_record, file_header, v1_file_header};
    use proptest::prelude::*;

    #[test]
    fn repair_cut_names_are_recognised_and_never_buckets() {
        assert!(is_repair_cut("275.cut.1700000000"));
        assert!(is_repair_cut("275.cut.1700000000.3"));
        assert!(!is_repair_cut("275"));
        assert!(!is_repair_cut("27x.cut.1"));
        assert!(!is_repair_cut("2750.cut.1"));
        assert_eq!(BucketId::parse("0000000057", "275.cut.1700000000"), None);
    }

    #[test]
    fn first_bad_is_the_earlier_of_damage_and_misplaced_key() {
        let id = BucketId::from_key(0x5727_5000);
        let mut data = file_header().to_vec();
        encode_record(BucketFormat::Crc, 0x5727_5001, b"good", &mut data);
        let misplaced_at = data.len() as u64;
        encode_record(BucketFormat::Crc, 0x5727_6001, b"elsewhere", &mut data);
        encode_record(BucketFormat::Crc, 0x5727_5002, b"good again", &mut data);
        data.extend_from_slice(b"torn");
        let report = check_bucket_bytes(Path::new("x"), Some(id), &data);
        assert_eq!(report.records, 3);
        assert_eq!(report.misplaced_records, 1);
        assert_eq!(report.damage_count, 1);
        assert_eq!(report.records_past_first_bad, 2);
        let first = report.first_bad().expect("bad");
        assert_eq!(first.offset(), misplaced_at);
        assert_eq!(first.kind_name(), "misplaced_key");
        assert_eq!(
            first.to_string(),
            "key 0x57276001 belongs in bucket 0000000057/276, not in this one"
        );
        // Without the key check only the torn tail is bad.
        let report = check_bucket_bytes(Path::new("x"), None, &data);
        assert_eq!(report.records_past_first_bad, 0);
        assert_eq!(report.first_bad_offset(), Some((data.len() - 4) as u64));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The bytes before the first bad offset check clean and keep every good record before
        /// it: what a repair leaves is clean.
        #[test]
        fn prefix_before_first_bad_is_clean(
            header in 0usize..3,
            records in proptest::collection::vec((0u64..0x3000, proptest::collection::vec(any::<u8>(), 0..24)), 0..6),
            flip in any::<Option<(usize, u8)>>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..20),
        ) {
            let (format, mut data) = match header {
                0 => (BucketFormat::Crc, file_header().to_vec()),
                1 => (BucketFormat::V1, v1_file_header().to_vec()),
                _ => (BucketFormat::Legacy, Vec::new()),
            };
            for (key, value) in &records {
                encode_record(format, 0x5727_4000 + key, value, &mut data);
            }
            if let Some((at, bits)) = flip {
                if !data.is_empty() {
                    let at = at % data.len();
                    data[at] ^= bits;
                }
            }
            data.extend_from_slice(&garbage);
            let id = Some(BucketId::from_key(0x5727_5000));
            let report = check_bucket_bytes(Path::new("x"), id, &data);
            if let Some(cut) = report.first_bad_offset() {
                prop_assert!(cut <= data.len() as u64);
                let unusable = report.format.is_none()
                    && report.damage.first().is_some_and(|d| d.kind != DamageKind::TornFileHeader);
                if !unusable {
                    let prefix = check_bucket_bytes(Path::new("x"), id, &data[..cut as usize]);
                    prop_assert!(prefix.is_clean(), "{:?}", prefix);
                    prop_assert_eq!(prefix.records, report.records - report.records_past_first_bad);
                }
            } else {
                prop_assert!(report.is_clean());
            }
        }
    }
}
