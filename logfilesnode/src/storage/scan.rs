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
use super::layout::{list_buckets, BucketFile, BucketId};
use super::writer::map_file;
use super::StorageError;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// At most this many damage items are kept per bucket (all are counted).
pub const MAX_DAMAGE_KEPT: usize = 64;

/// A scan of `[from, to]` over one channel directory.
#[derive(Debug)]
pub struct RangeScan {
    buckets: std::vec::IntoIter<BucketFile>,
    from: u64,
    to: u64,
}

impl RangeScan {
    /// Lists the bucket files overlapping `[from, to]` (nothing when `from > to` or the channel
    /// directory does not exist).
    pub fn new(channel_dir: &Path, from: u64, to: u64) -> Result<Self, StorageError> {
        let buckets =
            list_buckets(channel_dir, from, to).map_err(|e| StorageError::io(channel_dir, e))?;
        Ok(RangeScan {
            buckets: buckets.into_iter(),
            from,
            to,
        })
    }

    /// A scan with nothing (left) to visit.
    pub fn empty() -> Self {
        RangeScan {
            buckets: Vec::new().into_iter(),
            from: 1,
            to: 0,
        }
    }

    /// The bucket files still to be visited.
    pub fn remaining(&self) -> &[BucketFile] {
        self.buckets.as_slice()
    }

    /// Reads the next bucket. An error (the file vanished, cannot be mapped) concerns that
    /// bucket only; the caller may go on with the next.
    pub fn next_bucket(&mut self) -> Option<Result<ScannedBucket, StorageError>> {
        let bucket = self.buckets.next()?;
        Some(ScannedBucket::read(bucket, self.from, self.to))
    }

    /// Calls `f` for every record in range, in order, and returns the damage of all buckets.
    /// Buckets that cannot be read are returned as errors too; the scan goes on.
    pub fn for_each(
        mut self,
        mut f: impl FnMut(Record<'_>),
    ) -> (Vec<(PathBuf, Damage)>, Vec<StorageError>) {
        let mut damage = Vec::new();
        let mut errors = Vec::new();
        while let Some(bucket) = self.next_bucket() {
            match bucket {
                Ok(bucket) => {
                    bucket.records().for_each(&mut f);
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
