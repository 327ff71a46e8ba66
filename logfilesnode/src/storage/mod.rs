//! The logfiles storage layer: time-bucketed append-only files, knowing nothing of sockets.
//!
//! On-disk layout of the data directory (see [`layout`]):
//!
//! | path | what |
//! |---|---|
//! | `<data_dir>/<channel>/` | one directory per channel |
//! | `<data_dir>/<channel>/<slot>/` | slot directory, 10 lowercase hex digits = `key >> 24` |
//! | `<data_dir>/<channel>/<slot>/<bucket>` | bucket file, 3 lowercase hex digits = `(key >> 12) & 0xfff` |
//! | `<data_dir>/<channel>/<slot>/<bucket>.idx` | the bucket's time index ([`index`]) |
//! | `<data_dir>/<channel>/<slot>/<bucket>.cut.<unix_s>` | bytes a repair cut off (never read) |
//!
//! - [`format`](mod@format): the three bucket formats (ours with CRC32 per record, the reference's v1 with a
//!   parity byte and its header-less legacy format), detection and decoding.
//! - [`index`]: the sparse time index of a bucket (`<bucket>.idx`): building, the file format,
//!   its checks against the bucket.
//! - [`writer`]: appending to a bucket in its own format, buffered, with `flush` and `sync`;
//!   [`recover_tail`] cuts torn tails after a crash.
//! - [`scan`]: range scans in key order touching only the overlapping buckets, seeking within
//!   a bucket with its index.
//! - [`check`]: verification and repair, for `logfiles_check`.
//!
//! Readers map bucket files (memmap2). A file must therefore never be truncated while a
//! [`ScannedBucket`] of it is alive: truncation happens in [`recover_tail`], in
//! [`BucketWriter::open`] when the file has a torn tail, and in [`repair_bucket_file`]. The node
//! must recover tails before serving, or keep scans and writer opens of one bucket apart; the
//! check tool runs on a stopped node. Appends while a file is mapped are harmless (the map
//! covers the length at mapping time).

pub mod check;
pub mod format;
pub mod index;
pub mod layout;
pub mod scan;
pub mod writer;

pub use check::{
    check_bucket_file, check_data_dir, repair_bucket_file, DirReport, FileReport, Repair,
};
pub use format::{BucketDecoder, BucketFormat, Damage, DamageKind, Record, MAX_VALUE_BYTES};
pub use index::{
    build_index, index_path, BucketIndex, IndexBuilder, IndexProblem, DEFAULT_INDEX_INTERVAL_BYTES,
};
pub use layout::{bucket_path, list_buckets, BucketFile, BucketId};
pub use scan::{CursorOptions, IndexSource, RangeScan, ScannedBucket};
pub use writer::{
    recover_tail, recover_tail_if, BucketWriter, BufferMark, TailRecovery, WriterOptions,
    DEFAULT_WRITE_BUFFER_BYTES,
};

use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors of the storage layer; every one names the file it concerns.
#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: unusable bucket header: {kind}")]
    BadHeader { path: PathBuf, kind: DamageKind },
    #[error("value of {value_bytes} bytes is over the limit of {MAX_VALUE_BYTES}")]
    ValueTooLong { value_bytes: usize },
    #[error("{path}: the last {cut_bytes} bytes are torn and must be cut first, but the file is being read")]
    TailNeedsCut { path: PathBuf, cut_bytes: u64 },
    #[error("{path}: changed while being repaired")]
    Changed { path: PathBuf },
}

impl StorageError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
