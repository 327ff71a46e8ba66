//! Verification and repair of bucket files, for the `logfiles_check` tool.
//!
//! [`check_bucket_file`] reads one file of any format and reports its records, value bytes,
//! every damage (CRC for ours, parity for v1, length sanity for all) and records whose key does
//! not belong to the bucket its path names. [`check_data_dir`] does that for every bucket of
//! every channel (or of one channel). [`repair_bucket_file`] truncates a file at its first bad
//! record, after saving the cut bytes to `<bucket>.cut.<unix_s>` next to it (a name no reader
//! looks at).

use super::format::{BucketDecoder, BucketFormat, Damage};
use super::layout::{list_buckets, BucketId};
use super::writer::map_file;
use super::StorageError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// At most this many damage items are kept per file (all are counted).
pub const MAX_DAMAGE_KEPT: usize = 16;

/// What one bucket file holds and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub path: PathBuf,
    /// The bucket the path names, when it names one.
    pub id: Option<BucketId>,
    /// `None` for a zero-length file or an unusable header.
    pub format: Option<BucketFormat>,
    pub len_bytes: u64,
    /// Good records.
    pub records: u64,
    /// Sum of the good records' value lengths.
    pub value_bytes: u64,
    /// The first [`MAX_DAMAGE_KEPT`] damage items.
    pub damage: Vec<Damage>,
    pub damage_count: u64,
    /// Good records whose key is outside the bucket, and the offset of the first one.
    pub misplaced_records: u64,
    pub first_misplaced_offset: Option<u64>,
}

impl FileReport {
    /// Whether anything is wrong.
    pub fn is_clean(&self) -> bool {
        self.damage_count == 0 && self.misplaced_records == 0
    }

    /// Where a repair truncates: the first damage or misplaced record, whichever comes first.
    pub fn first_bad_offset(&self) -> Option<u64> {
        let damage = self.damage.first().map(|d| d.offset);
        match (damage, self.first_misplaced_offset) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Checks one bucket file. `id` is the bucket its path names (for the key check); `None`
/// skips that check.
pub fn check_bucket_file(path: &Path, id: Option<BucketId>) -> Result<FileReport, StorageError> {
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let map = map_file(&file).map_err(|e| StorageError::io(path, e))?;
    let data: &[u8] = map.as_deref().unwrap_or(&[]);
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
    };
    let mut decoder = BucketDecoder::new(data);
    report.format = decoder.format();
    for item in decoder.by_ref() {
        match item {
            Ok(record) => {
                report.records += 1;
                report.value_bytes += record.value.len() as u64;
                if id.is_some_and(|id| !id.contains(record.key)) {
                    report.misplaced_records += 1;
                    report.first_misplaced_offset.get_or_insert(record.offset);
                }
            }
            Err(d) => {
                report.damage_count += 1;
                if report.damage.len() < MAX_DAMAGE_KEPT {
                    report.damage.push(d);
                }
            }
        }
    }
    Ok(report)
}

/// The check of a whole data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirReport {
    /// Every bucket file, by channel then bucket order.
    pub files: Vec<FileReport>,
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
    pub fn is_clean(&self) -> bool {
        self.files_with_errors() == 0
    }
}

/// Checks every bucket file of every channel directory in `data_dir` (or of `channel` only),
/// channels in name order.
pub fn check_data_dir(data_dir: &Path, channel: Option<&str>) -> Result<DirReport, StorageError> {
    let mut channels = Vec::new();
    match channel {
        Some(name) => channels.push(data_dir.join(name)),
        None => {
            for entry in fs::read_dir(data_dir).map_err(|e| StorageError::io(data_dir, e))? {
                let entry = entry.map_err(|e| StorageError::io(data_dir, e))?;
                let is_dir = entry
                    .file_type()
                    .map_err(|e| StorageError::io(&entry.path(), e))?
                    .is_dir();
                if is_dir {
                    channels.push(entry.path());
                }
            }
            channels.sort();
        }
    }
    let mut report = DirReport::default();
    for channel_dir in channels {
        let buckets = list_buckets(&channel_dir, 0, u64::MAX)
            .map_err(|e| StorageError::io(&channel_dir, e))?;
        for bucket in buckets {
            report
                .files
                .push(check_bucket_file(&bucket.path, Some(bucket.id))?);
        }
    }
    Ok(report)
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub cut_from_offset: u64,
    pub cut_bytes: u64,
    /// Where the cut bytes were saved.
    pub saved_to: PathBuf,
}

/// Truncates the file of `report` at its first bad offset, after saving the bytes from there to
/// the end to `<path>.cut.<unix_s>` (fsynced). `Ok(None)` when the file is clean. Refuses a file
/// whose header is unusable (it may be a newer format): nothing would be left.
pub fn repair_bucket_file(report: &FileReport) -> Result<Option<Repair>, StorageError> {
    let Some(cut_from_offset) = report.first_bad_offset() else {
        return Ok(None);
    };
    let path = &report.path;
    if report.format.is_none() {
        if let Some(d) = report.damage.first() {
            if !matches!(d.kind, super::format::DamageKind::TornFileHeader) {
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
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut saved_name = path.as_os_str().to_owned();
    saved_name.push(format!(".cut.{now_s}"));
    let saved_to = PathBuf::from(saved_name);
    let mut saved = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&saved_to)
        .map_err(|e| StorageError::io(&saved_to, e))?;
    saved
        .write_all(&data[start..])
        .and_then(|()| saved.sync_all())
        .map_err(|e| StorageError::io(&saved_to, e))?;
    let cut_bytes = (data.len() - start) as u64;
    drop(map);
    file.set_len(start as u64)
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(path, e))?;
    Ok(Some(Repair {
        cut_from_offset: start as u64,
        cut_bytes,
        saved_to,
    }))
}
