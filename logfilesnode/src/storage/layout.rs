//! Where a record lives: `<data_dir>/<channel>/<slot>/<bucket>`, derived from its `u64` key
//! exactly as the reference node does (`reference/logfiles.md` §4.2), so a reference data
//! directory can be served as it is.
//!
//! The key is split 40 / 12 / 12 bits:
//!
//! | part | bits | derivation | name on disk |
//! |---|---|---|---|
//! | slot (directory) | 40 | `key >> 24` | 10 lowercase hex digits, e.g. `0000000057` |
//! | bucket (file) | 12 | `(key >> 12) & 0xfff` | 3 lowercase hex digits, e.g. `275` |
//! | key within the bucket | 12 | `key & 0xfff` | not in the path |
//!
//! A bucket therefore covers 4096 consecutive keys (4096 s ≈ 68 min when keys are Unix seconds)
//! and a slot 2^24 keys (≈ 194 days). A [`BucketId`] is `key >> 12`: slot and bucket together,
//! which orders buckets in time.
//!
//! Scanning ([`list_buckets`]) lists the channel directory and the slot directories that can
//! overlap the range (rather than probing all 4096 names with `stat` as the reference does) and
//! ignores every name that is not exactly a slot or bucket name (`*.gz`, `*.tmp`, `*.cut.*`, ...).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Key bits below the bucket number (keys per bucket = 2^12).
pub const KEY_IN_BUCKET_BITS: u32 = 12;
/// Key bits below the slot number (keys per slot = 2^24).
pub const KEY_IN_SLOT_BITS: u32 = 24;
/// Length of a slot directory name, in hex digits.
pub const SLOT_NAME_DIGITS: usize = 10;
/// Length of a bucket file name, in hex digits.
pub const BUCKET_NAME_DIGITS: usize = 3;
/// The largest bucket number within a slot.
pub const MAX_BUCKET_IN_SLOT: u64 = (1 << (KEY_IN_SLOT_BITS - KEY_IN_BUCKET_BITS)) - 1;

/// One bucket: `key >> 12`. Orders buckets by time (slot first, then bucket in slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketId(u64);

impl BucketId {
    /// The bucket holding `key`.
    pub fn from_key(key: u64) -> Self {
        BucketId(key >> KEY_IN_BUCKET_BITS)
    }

    /// The bucket `bucket_in_slot` (0 ..= 0xfff) of slot `slot` (< 2^40); `None` when out of range.
    pub fn from_parts(slot: u64, bucket_in_slot: u64) -> Option<Self> {
        if slot >> (64 - KEY_IN_SLOT_BITS) != 0 || bucket_in_slot > MAX_BUCKET_IN_SLOT {
            return None;
        }
        Some(BucketId(
            (slot << (KEY_IN_SLOT_BITS - KEY_IN_BUCKET_BITS)) | bucket_in_slot,
        ))
    }

    /// `key >> 12`.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The slot number, `key >> 24`.
    pub fn slot(self) -> u64 {
        self.0 >> (KEY_IN_SLOT_BITS - KEY_IN_BUCKET_BITS)
    }

    /// The bucket number within its slot, `(key >> 12) & 0xfff`.
    pub fn bucket_in_slot(self) -> u64 {
        self.0 & MAX_BUCKET_IN_SLOT
    }

    /// The first key this bucket holds.
    pub fn first_key(self) -> u64 {
        self.0 << KEY_IN_BUCKET_BITS
    }

    /// The last key this bucket holds (inclusive).
    pub fn last_key(self) -> u64 {
        self.first_key() | ((1 << KEY_IN_BUCKET_BITS) - 1)
    }

    /// Whether `key` belongs in this bucket.
    pub fn contains(self, key: u64) -> bool {
        BucketId::from_key(key) == self
    }

    /// The slot directory name: 10 lowercase hex digits.
    pub fn slot_dir_name(self) -> String {
        format!("{:010x}", self.slot())
    }

    /// The bucket file name: 3 lowercase hex digits.
    pub fn file_name(self) -> String {
        format!("{:03x}", self.bucket_in_slot())
    }

    /// `<slot>/<bucket>`, relative to the channel directory.
    pub fn relative_path(self) -> PathBuf {
        Path::new(&self.slot_dir_name()).join(self.file_name())
    }

    /// `<channel_dir>/<slot>/<bucket>`.
    pub fn path_in(self, channel_dir: &Path) -> PathBuf {
        channel_dir.join(self.relative_path())
    }

    /// The inverse of [`slot_dir_name`](Self::slot_dir_name) and [`file_name`](Self::file_name);
    /// `None` unless both are exactly names this layout produces (lowercase, full length).
    pub fn parse(slot_dir_name: &str, file_name: &str) -> Option<Self> {
        let slot = parse_slot_name(slot_dir_name)?;
        let bucket = parse_hex_name(file_name, BUCKET_NAME_DIGITS)?;
        BucketId::from_parts(slot, bucket)
    }
}

/// The path of the bucket file that holds `key` in `channel_dir`.
pub fn bucket_path(channel_dir: &Path, key: u64) -> PathBuf {
    BucketId::from_key(key).path_in(channel_dir)
}

/// The slot number a slot directory name stands for, if it is one.
pub fn parse_slot_name(name: &str) -> Option<u64> {
    parse_hex_name(name, SLOT_NAME_DIGITS)
}

fn parse_hex_name(name: &str, digits: usize) -> Option<u64> {
    if name.len() != digits
        || !name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// The buckets that can hold keys in `[from, to]` (inclusive), first to last.
/// Empty when `from > to`.
pub fn overlapping_bucket_range(from: u64, to: u64) -> Option<(BucketId, BucketId)> {
    (from <= to).then(|| (BucketId::from_key(from), BucketId::from_key(to)))
}

/// One bucket file found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketFile {
    pub id: BucketId,
    pub path: PathBuf,
}

/// The bucket files of `channel_dir` whose buckets overlap `[from, to]`, in bucket (time)
/// order. Only slot directories in the range are listed. A missing channel directory is no
/// buckets. Names that are not slot or bucket names, and directories (or FIFOs, sockets,
/// devices) where a bucket file belongs, are ignored.
pub fn list_buckets(channel_dir: &Path, from: u64, to: u64) -> io::Result<Vec<BucketFile>> {
    let Some((first, last)) = overlapping_bucket_range(from, to) else {
        return Ok(Vec::new());
    };
    let mut buckets = Vec::new();
    for slot in list_slots(channel_dir, first, last)? {
        let (ids, _) = list_slot_buckets(channel_dir, slot, first, last, None, usize::MAX)?;
        buckets.extend(ids.into_iter().map(|id| BucketFile {
            id,
            path: id.path_in(channel_dir),
        }));
    }
    Ok(buckets)
}

/// The slot directories of `channel_dir` that can hold buckets `first..=last`, ascending. A
/// missing channel directory has none.
pub fn list_slots(channel_dir: &Path, first: BucketId, last: BucketId) -> io::Result<Vec<u64>> {
    let entries = match fs::read_dir(channel_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut slots = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(slot) = entry.file_name().to_str().and_then(parse_slot_name) else {
            continue;
        };
        if slot < first.slot() || slot > last.slot() || !entry.file_type()?.is_dir() {
            continue;
        }
        slots.push(slot);
    }
    slots.sort_unstable();
    Ok(slots)
}

/// The bucket files of slot directory `slot` within `first..=last` and after `after`: the (at
/// most) `limit` first of them, ascending, and whether they are the slot's last ones. A scan
/// thereby holds a window of a slot's buckets, not the list of all of them.
pub fn list_slot_buckets(
    channel_dir: &Path,
    slot: u64,
    first: BucketId,
    last: BucketId,
    after: Option<BucketId>,
    limit: usize,
) -> io::Result<(Vec<BucketId>, bool)> {
    debug_assert!(limit > 0);
    let slot_dir = channel_dir.join(format!("{slot:010x}"));
    let entries = match fs::read_dir(&slot_dir) {
        Ok(entries) => entries,
        // Removed since the slots were listed: nothing left in it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|name| parse_hex_name(name, BUCKET_NAME_DIGITS))
            .and_then(|bucket| BucketId::from_parts(slot, bucket))
        else {
            continue;
        };
        if id < first || id > last || after.is_some_and(|after| id <= after) {
            continue;
        }
        if !is_regular_file(&entry)? {
            continue;
        }
        ids.push(id);
    }
    let complete = ids.len() <= limit;
    if !complete {
        ids.select_nth_unstable(limit - 1);
        ids.truncate(limit);
    }
    ids.sort_unstable();
    Ok((ids, complete))
}

/// Whether `entry` is a regular file, or a symbolic link to one (opening the bucket follows
/// it). A directory where a bucket belongs is ignored, and so is a FIFO, socket or device:
/// opening a FIFO to read blocks until something writes to it, which would stall the event
/// loop for ever.
fn is_regular_file(entry: &fs::DirEntry) -> io::Result<bool> {
    let file_type = entry.file_type()?;
    if file_type.is_symlink() {
        // A dangling link is no bucket either.
        return Ok(fs::metadata(entry.path()).is_ok_and(|meta| meta.is_file()));
    }
    Ok(file_type.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_examples() {
        let id = BucketId::from_key(0x5727_5806);
        assert_eq!(id.relative_path(), Path::new("0000000057/275"));
        assert_eq!(id.first_key(), 0x5727_5000);
        assert_eq!(id.last_key(), 0x5727_5fff);
        assert_eq!(
            BucketId::from_key(0x570e_13eb).relative_path(),
            Path::new("0000000057/0e1")
        );
        assert_eq!(
            BucketId::from_key(0).relative_path(),
            Path::new("0000000000/000")
        );
        let max = BucketId::from_key(u64::MAX);
        assert_eq!(max.slot_dir_name(), "ffffffffff");
        assert_eq!(max.file_name(), "fff");
        assert_eq!(max.last_key(), u64::MAX);
    }

    #[test]
    fn parse_is_the_inverse() {
        for key in [
            0,
            1,
            0xfff,
            0x1000,
            0x5727_5806,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ] {
            let id = BucketId::from_key(key);
            assert_eq!(
                BucketId::parse(&id.slot_dir_name(), &id.file_name()),
                Some(id)
            );
            assert!(id.contains(key));
        }
        assert_eq!(BucketId::parse("0000000057", "275.gz"), None);
        assert_eq!(BucketId::parse("0000000057", "27"), None);
        assert_eq!(BucketId::parse("000000005G", "275"), None);
        assert_eq!(BucketId::parse("000000005A", "275"), None);
        assert_eq!(BucketId::from_parts(1 << 40, 0), None);
        assert_eq!(BucketId::from_parts(0, 0x1000), None);
    }
}
