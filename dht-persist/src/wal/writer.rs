//! Appending to the log ([`LogWriter`]): changes are encoded into a buffer
//! ([`append`](LogWriter::append), which gives each its sequence number) and the buffer goes
//! to the current segment in one write ([`write_out`](LogWriter::write_out): a group). A group
//! that would take the segment past [`LogOptions::segment_bytes`] goes to a new segment
//! (rotation). Fsyncing is the caller's, off its event loop: [`sync_request`](LogWriter::sync_request)
//! names the files (and the directory) to fsync for everything written so far, and
//! [`mark_synced`](LogWriter::mark_synced) records what became durable. Once every channel's
//! dump covers a position, [`delete_covered`](LogWriter::delete_covered) deletes the segments
//! that hold nothing after it.
//!
//! A failed write-out takes its group back: the segment is truncated to where the group began
//! and the group's sequence numbers are handed out again, so the log never holds a hole or a
//! half-written group the writer went on after. Should the truncation fail too, the writer
//! refuses everything from then on (the log's end is unknown; a restart's replay finds it).
//!
//! Space reserved ([`reserve_space`](LogWriter::reserve_space)): a node reserves each segment's
//! disk blocks when it starts it (`fallocate`, keeping the file's size), and
//! [`append`](LogWriter::append) refuses a change the reserved room cannot take until a new
//! segment is reserved ([`AppendError::NoSpace`]), so a full disk refuses a change before the
//! node applies it, and a group written out never meets a full disk.
//!
//! Zeros written ahead: with space reserved, the writer also writes zeros over the reserved room
//! up to [`ZERO_AHEAD_BYTES`] past its last group ([`write_out`](LogWriter::write_out)), so that
//! groups overwrite blocks that are already written and inside the file's length. Their
//! fdatasync then writes the data and flushes the disk, nothing else: appending past the end
//! instead changes the file's length and (reserved blocks being "unwritten" until written) its
//! extents, metadata each fdatasync must write too; on ext4 the extent conversion runs on a
//! kernel worker the fdatasync waits for (docs/benchmarks.md, issue 18). A segment therefore
//! may end in zeros after its last entry; readers take zeros from an entry's place to the end
//! of the file as the end of its entries (`docs/formats.md`).
//!
//! Page cache: the log is written once and read only at a restart, so a sync request also names
//! whole pages it makes durable (a MiB behind the last group, once [`UNCACHE_STEP_BYTES`] of
//! them are new) for the sync thread to drop from the page cache once they are on disk
//! ([`SyncRequest::uncache`]). The log's pages are then few and reused: a log that kept them would
//! take a fresh page for every 4 KiB written until the kernel evicts something else, and on a VM
//! that hands freed memory back to its host each fresh page costs a host fault (~20 µs on the
//! benchmarks' host: at 150 MB/s of log, most of a core; docs/benchmarks.md, issue 18).
//!
//! Memory: the buffer holds one group, [`LogOptions::group_bytes`] plus at most one entry
//! ([`MAX_ENTRY_BODY_BYTES`](super::format::MAX_ENTRY_BODY_BYTES)): appends are refused once it
//! is full, until it is written out.

use super::format::{
    encode_entry, Change, EncodeError, SegmentHeader, SEGMENT_FLAG_SEQUENCE_JUMP,
    SEGMENT_HEADER_LEN,
};
use super::reader::{LogEnd, LogError};
use super::segment::list_segments;
use crate::layout::{segment_file_name, sync_dir};
use node_core::page_cache::page_bytes;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// The segment size at which a new segment is started, by default.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// The buffer size at which a group must be written out, by default.
pub const DEFAULT_GROUP_BYTES: usize = 4 << 20;
/// The smallest segment size accepted (tests use small segments to see rotations).
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// How far ahead of the last group a writer with reserved space writes zeros (see the module
/// doc); it writes more once the groups have used [`ZERO_TOP_UP_BYTES`] of them.
pub const ZERO_AHEAD_BYTES: u64 = 1 << 20;
/// How much of the zeros ahead the groups use up before the writer tops them up again: small,
/// because each zero write runs on the event loop and first touches its pages of the page
/// cache. On a VM whose freed pages go back to the host (free page reporting) a first touch
/// costs a host fault, ~20 µs a page on the benchmarks' host: a top-up of 512 KiB held the loop
/// 2.1–2.6 ms (docs/benchmarks.md, issue 18); 64 KiB spreads the same work in ~0.3 ms steps.
pub const ZERO_TOP_UP_BYTES: u64 = 64 << 10;
/// How many bytes of the current segment a sync request must make durable beyond those already
/// named for dropping from the page cache before it names them ([`SyncRequest::uncache`]): one
/// `posix_fadvise` per MiB, not one per group commit.
pub const UNCACHE_STEP_BYTES: u64 = 1 << 20;
/// The zeros written ahead, a chunk at a time (static: no allocation).
static ZEROS: [u8; ZERO_AHEAD_BYTES as usize] = [0; ZERO_AHEAD_BYTES as usize];

/// How a [`LogWriter`] sizes its segments and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A group that would take the current segment past this many bytes starts a new segment
    /// (a segment holding a single larger group is larger). At least [`MIN_SEGMENT_BYTES`].
    pub segment_bytes: u64,
    /// Once this many bytes are buffered, [`LogWriter::wants_write_out`] says so and
    /// [`LogWriter::append`] refuses more ([`AppendError::GroupFull`]).
    pub group_bytes: usize,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            group_bytes: DEFAULT_GROUP_BYTES,
        }
    }
}

/// Why a change was not appended (nothing was).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppendError {
    #[error("{0}")]
    Invalid(#[from] EncodeError),
    #[error("the change log's group buffer holds {buffered} bytes: write it out first")]
    GroupFull { buffered: usize },
    #[error("the change log cannot be written: {0}")]
    Broken(String),
    /// The current segment's reserved room cannot take the change: write the buffered group
    /// out ([`LogWriter::write_out`]) and append again (a new segment is then reserved).
    #[error("the change log's segment is full: write the buffered group out first")]
    WriteOutFirst,
    /// No room could be reserved for the change (a full disk): nothing was appended.
    #[error("no disk space for the change log in {dir}: {error}")]
    NoSpace { dir: PathBuf, error: String },
}

/// A group written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub first_seq: u64,
    pub last_seq: u64,
    pub bytes: u64,
    /// The number of the segment it went to, when it started a new one.
    pub new_segment: Option<u64>,
}

/// A group that could not be written: entries `first_seq ..= last_seq` are not in the log, and
/// `first_seq` is the next sequence number handed out.
#[derive(Debug, Error)]
#[error("writing change-log entries {first_seq}..={last_seq} to {path} failed: {error}")]
pub struct WriteError {
    pub first_seq: u64,
    pub last_seq: u64,
    pub path: PathBuf,
    pub error: io::Error,
}

/// What to fsync to make every entry written so far durable.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Segments closed since the last request, then the current one (fdatasync each).
    pub files: Vec<Arc<File>>,
    /// The log directory, when segments were created since the last request (fsync it).
    pub dirs: Vec<PathBuf>,
    /// The last sequence number durable once this is done.
    pub seq: u64,
    /// Byte ranges of these files (whole pages, every byte in them written before this request
    /// and never written again) to drop from the page cache once the fsyncs succeeded: they are
    /// durable and only a restart reads them again (see the module doc). Not to be dropped after
    /// a failed fsync, nor after any later one of the same file (Linux reports a failed
    /// writeback once): the page cache may then hold the only good copy.
    pub uncache: Vec<(Arc<File>, Range<u64>)>,
}

/// Appends to the log (see the module doc).
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    options: LogOptions,
    segment: Arc<File>,
    segment_number: u64,
    segment_path: PathBuf,
    /// Bytes of the current segment (header and groups written).
    segment_len: u64,
    segment_entries: u64,
    buffer: Vec<u8>,
    buffered_entries: u64,
    /// The sequence number the next append gets.
    next_seq: u64,
    written_seq: u64,
    synced_seq: u64,
    /// The last sequence number a [`SyncRequest`] covered.
    requested_seq: u64,
    /// Segments closed since the last sync request.
    sealed: Vec<Arc<File>>,
    /// What the next sync request names for dropping from the page cache: the sealed segments'
    /// bytes not named yet.
    uncache: Vec<(Arc<File>, Range<u64>)>,
    /// Where the last range a sync request named of the current segment ended.
    uncached_len: u64,
    /// A segment was created since the last sync request.
    dir_dirty: bool,
    broken: Option<String>,
    /// Bytes of the current segment (from offset 0) whose disk blocks are reserved;
    /// `u64::MAX` when space is not reserved (see [`reserve_space`](Self::reserve_space)).
    reserved_len: u64,
    reserving: bool,
    /// The current segment's length with the zeros written ahead (see the module doc).
    zeroed_len: u64,
    /// Whether zeros are written ahead (with space reserved, until a zero write fails).
    zeroing: bool,
    /// Bytes written to the segments this writer started: their headers and groups (not the
    /// zeros written ahead).
    bytes_written: u64,
}

impl LogWriter {
    /// Starts writing after `end` (the end of a log read to its last byte, its torn tail cut):
    /// a new segment whose first entry gets `next_seq`. `next_seq` must be past
    /// `end.last_seq`; beyond `end.last_seq + 1` (dumps cover entries the log no longer has)
    /// the segment is marked as a sequence jump. The segment and the directory are made
    /// durable before this returns.
    pub fn create(end: &LogEnd, next_seq: u64, options: LogOptions) -> Result<LogWriter, LogError> {
        let invalid = |text: String| LogError::Io {
            path: end.dir.clone(),
            source: io::Error::new(io::ErrorKind::InvalidInput, text),
        };
        if !end.is_clean() {
            return Err(invalid(
                "the log's torn tail must be cut before writing".into(),
            ));
        }
        if next_seq == u64::MAX {
            return Err(invalid("sequence numbers end below 2^64 - 1".into()));
        }
        if next_seq <= end.last_seq {
            return Err(invalid(format!(
                "the log holds entries up to {}; writing from {next_seq} would reuse their numbers",
                end.last_seq
            )));
        }
        if options.segment_bytes < MIN_SEGMENT_BYTES || options.group_bytes == 0 {
            return Err(invalid(format!("bad log options {options:?}")));
        }
        let flags = if next_seq > end.last_seq + 1 {
            SEGMENT_FLAG_SEQUENCE_JUMP
        } else {
            0
        };
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Io { path, source }
        };
        fs::create_dir_all(&end.dir).map_err(io_error(&end.dir))?;
        let header = SegmentHeader {
            number: end.next_segment,
            first_seq: next_seq,
            flags,
        };
        let (file, path) = create_segment(&end.dir, &header).map_err(io_error(&end.dir))?;
        file.sync_data().map_err(io_error(&path))?;
        sync_dir(&end.dir).map_err(io_error(&end.dir))?;
        if let Some(parent) = end.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent).map_err(io_error(parent))?;
        }
        Ok(LogWriter {
            dir: end.dir.clone(),
            options,
            segment: Arc::new(file),
            segment_number: header.number,
            segment_path: path,
            segment_len: SEGMENT_HEADER_LEN as u64,
            segment_entries: 0,
            buffer: Vec::new(),
            buffered_entries: 0,
            next_seq,
            written_seq: next_seq - 1,
            synced_seq: next_seq - 1,
            requested_seq: next_seq - 1,
            sealed: Vec::new(),
            uncache: Vec::new(),
            uncached_len: 0,
            dir_dirty: false,
            broken: None,
            reserved_len: u64::MAX,
            reserving: false,
            zeroed_len: SEGMENT_HEADER_LEN as u64,
            zeroing: false,
            bytes_written: SEGMENT_HEADER_LEN as u64,
        })
    }

    /// From now on, reserves the disk blocks of each segment when it is started (the current
    /// one now), and refuses appends that the reserved room cannot take (see the module doc).
    /// Returns false when the file system cannot reserve space (then nothing is reserved, and
    /// a full disk fails [`write_out`](Self::write_out) instead). A failure to reserve the
    /// current segment now (a full disk) is no error: the next append tries again.
    pub fn reserve_space(&mut self) -> bool {
        self.reserving = true;
        self.zeroing = true;
        self.reserved_len = self.segment_len;
        match reserve(&self.segment, self.options.segment_bytes) {
            Ok(()) => self.reserved_len = self.options.segment_bytes,
            Err(error) if is_unsupported(&error) => {
                self.reserving = false;
                self.zeroing = false;
                self.reserved_len = u64::MAX;
                return false;
            }
            Err(_) => {}
        }
        true
    }

    /// A clean stop: gives the current segment's reserved blocks past what was written back
    /// (a truncation to its length, which file systems take to free blocks past the end).
    pub fn release_reserved(&mut self) -> io::Result<()> {
        if !self.reserving || self.reserved_len <= self.segment_len {
            return Ok(());
        }
        self.segment.set_len(self.segment_len)?;
        self.reserved_len = self.segment_len;
        self.zeroed_len = self.segment_len;
        Ok(())
    }

    /// Room for an entry of `entry_len` bytes after the buffered group: more of the current
    /// segment reserved, or a new segment once this one is at its size. With the disk nearly
    /// full, exactly the room needed is reserved (the log goes on until the disk is full).
    fn make_room(&mut self, entry_len: u64) -> Result<(), AppendError> {
        let needed = self.segment_len + self.buffer.len() as u64 + entry_len;
        if needed <= self.reserved_len {
            return Ok(());
        }
        let no_space = |dir: &Path, error: io::Error| AppendError::NoSpace {
            dir: dir.to_path_buf(),
            error: error.to_string(),
        };
        let fresh = self.segment_entries == 0 && self.buffer.is_empty();
        if needed <= self.options.segment_bytes || fresh {
            let reserved = reserve_up_to(&self.segment, self.options.segment_bytes, needed)
                .map_err(|e| no_space(&self.dir, e))?;
            self.reserved_len = reserved;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            return Err(AppendError::WriteOutFirst);
        }
        let header = SegmentHeader {
            number: self.segment_number + 1,
            first_seq: self.next_seq,
            flags: 0,
        };
        let (file, path) =
            create_segment(&self.dir, &header).map_err(|e| no_space(&self.dir, e))?;
        let needed = SEGMENT_HEADER_LEN as u64 + entry_len;
        match reserve_up_to(&file, self.options.segment_bytes, needed) {
            Ok(reserved) => {
                self.seal_and_switch(file, path, header.number);
                self.reserved_len = reserved;
                Ok(())
            }
            Err(error) => {
                drop(file);
                let _ = fs::remove_file(&path);
                Err(no_space(&self.dir, error))
            }
        }
    }

    /// Encodes `change` into the group buffer; returns its sequence number. The change is in
    /// the log once [`write_out`](Self::write_out) has written the group.
    pub fn append(&mut self, change: &Change<'_>) -> Result<u64, AppendError> {
        if let Some(reason) = &self.broken {
            return Err(AppendError::Broken(reason.clone()));
        }
        if self.buffer.len() >= self.options.group_bytes {
            return Err(AppendError::GroupFull {
                buffered: self.buffer.len(),
            });
        }
        let seq = self.next_seq;
        let start = self.buffer.len();
        encode_entry(seq, change, &mut self.buffer)?;
        let entry_len = (self.buffer.len() - start) as u64;
        if self.segment_len + self.buffer.len() as u64 > self.reserved_len {
            // Rare: a new segment first (the entry is encoded again after it).
            self.buffer.truncate(start);
            self.make_room(entry_len)?;
            encode_entry(seq, change, &mut self.buffer)?;
        }
        self.buffered_entries += 1;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Whether the group buffer is full: write it out before appending more.
    pub fn wants_write_out(&self) -> bool {
        self.buffer.len() >= self.options.group_bytes
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Writes the buffered group to the current segment in one write, first starting a new
    /// segment if the group would take this one past its size. `Ok(None)`: nothing buffered.
    pub fn write_out(&mut self) -> Result<Option<Written>, WriteError> {
        if self.buffer.is_empty() {
            return Ok(None);
        }
        let first_seq = self.next_seq - self.buffered_entries;
        let last_seq = self.next_seq - 1;
        if let Some(reason) = &self.broken {
            let error = io::Error::other(reason.clone());
            return Err(self.drop_group(first_seq, last_seq, error));
        }
        let group_len = self.buffer.len() as u64;
        let mut new_segment = None;
        let over = self.segment_len + group_len > self.options.segment_bytes;
        // With space reserved, appends started the segments (the group fits the reservation).
        if !self.reserving && self.segment_entries > 0 && over {
            if let Err(error) = self.rotate(first_seq) {
                return Err(self.drop_group(first_seq, last_seq, error));
            }
            new_segment = Some(self.segment_number);
        }
        if let Err(error) = self.segment.write_all_at(&self.buffer, self.segment_len) {
            self.take_back();
            return Err(self.drop_group(first_seq, last_seq, error));
        }
        self.segment_len += group_len;
        self.bytes_written += group_len;
        self.zero_ahead();
        self.segment_entries += self.buffered_entries;
        self.written_seq = last_seq;
        self.buffer.clear();
        self.buffered_entries = 0;
        if self.buffer.capacity() > self.options.group_bytes * 2 {
            self.buffer.shrink_to(self.options.group_bytes);
        }
        Ok(Some(Written {
            first_seq,
            last_seq,
            bytes: group_len,
            new_segment,
        }))
    }

    /// With space reserved: once the groups have used [`ZERO_TOP_UP_BYTES`] of the zeros
    /// ahead, writes zeros up to [`ZERO_AHEAD_BYTES`] past the last group, within the reserved
    /// room (see the module doc). A failed zero write only ends the zeros ahead: groups append
    /// again.
    fn zero_ahead(&mut self) {
        let used = (self.segment_len + ZERO_AHEAD_BYTES).saturating_sub(self.zeroed_len);
        if !self.zeroing || used < ZERO_TOP_UP_BYTES {
            return;
        }
        let from = self.zeroed_len.max(self.segment_len);
        let to = (self.segment_len + ZERO_AHEAD_BYTES).min(self.reserved_len);
        if to <= from {
            return;
        }
        let len = (to - from) as usize;
        // Part of a failed write may be there: zeros, which readers take for the end as well.
        self.zeroed_len = to;
        if self.segment.write_all_at(&ZEROS[..len], from).is_err() {
            self.zeroing = false;
        }
    }

    /// After a failed write: cuts the segment back to where the group began (the zeros ahead
    /// of it too), or, when that fails too, stops the writer.
    fn take_back(&mut self) {
        self.zeroed_len = self.segment_len;
        let result = self
            .segment
            .set_len(self.segment_len)
            .and_then(|()| self.segment.sync_data());
        if let Err(err) = result {
            self.broken = Some(format!(
                "a failed write could not be taken back from {} ({err}); restart the node, \
                 whose replay cuts the torn tail",
                self.segment_path.display()
            ));
        }
    }

    /// Forgets the buffered group, whose numbers are handed out again.
    fn drop_group(&mut self, first_seq: u64, last_seq: u64, error: io::Error) -> WriteError {
        self.buffer.clear();
        self.buffered_entries = 0;
        self.next_seq = first_seq;
        WriteError {
            first_seq,
            last_seq,
            path: self.segment_path.clone(),
            error,
        }
    }

    /// Closes the current segment (it is fsynced with the next sync request) and starts the
    /// next one, whose first entry will be `first_seq`.
    fn rotate(&mut self, first_seq: u64) -> io::Result<()> {
        let header = SegmentHeader {
            number: self.segment_number + 1,
            first_seq,
            flags: 0,
        };
        let (file, path) = create_segment(&self.dir, &header)?;
        self.seal_and_switch(file, path, header.number);
        Ok(())
    }

    /// Makes `file` (just created, its header written) the current segment. The old one is
    /// cut to its entries: the zeros written ahead and the room reserved past them are given
    /// back, so that its length is what it holds (should that fail, readers take the zeros for
    /// the end all the same).
    fn seal_and_switch(&mut self, file: File, path: PathBuf, number: u64) {
        if self.zeroed_len > self.segment_len
            || (self.reserving && self.reserved_len > self.segment_len)
        {
            let _ = self.segment.set_len(self.segment_len);
        }
        let old = std::mem::replace(&mut self.segment, Arc::new(file));
        // Sealed, the segment is written no more: all of it may go, its last page too (the
        // range ends at that page's end, past the file's).
        let page = page_bytes();
        self.uncached_len = 0;
        let whole = 0..self.segment_len.div_ceil(page) * page;
        self.uncache.push((Arc::clone(&old), whole));
        self.sealed.push(old);
        self.segment_number = number;
        self.segment_path = path;
        self.segment_len = SEGMENT_HEADER_LEN as u64;
        self.zeroed_len = self.segment_len;
        self.segment_entries = 0;
        self.dir_dirty = true;
        self.bytes_written += SEGMENT_HEADER_LEN as u64;
    }

    /// Bytes of the current segment written (its header and groups).
    pub fn segment_len(&self) -> u64 {
        self.segment_len
    }

    /// Bytes written to every segment this writer started (headers and groups; not the zeros
    /// written ahead): what the log gained since the writer was created.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// What to fsync so that everything written so far is durable; `None` when that is
    /// already asked for. Hand it to a sync thread, then call [`mark_synced`](Self::mark_synced)
    /// with its `seq` once it succeeded.
    pub fn sync_request(&mut self) -> Option<SyncRequest> {
        if self.written_seq == self.requested_seq && self.sealed.is_empty() && !self.dir_dirty {
            return None;
        }
        let mut files = std::mem::take(&mut self.sealed);
        files.push(Arc::clone(&self.segment));
        let dirs = if std::mem::take(&mut self.dir_dirty) {
            vec![self.dir.clone()]
        } else {
            Vec::new()
        };
        self.requested_seq = self.written_seq;
        Some(SyncRequest {
            files,
            dirs,
            seq: self.written_seq,
            uncache: self.take_uncache(),
        })
    }

    /// The ranges a sync request names for dropping from the page cache: each sealed segment
    /// whole, and the current segment's whole pages up to [`UNCACHE_STEP_BYTES`] behind the last
    /// group, from its start, once a step of them is new. Behind the last group: the pages the
    /// writer added last (zeros ahead and groups) may still sit in the kernel's per-CPU batch of
    /// pages on their way to its lists, which a drop cannot take without draining every CPU's
    /// (`lru_add_drain_all`, which waits for a kernel worker on the loop's core); a MiB further
    /// back they are long on the lists. From the start each time, not from the last range's
    /// end: the kernel drops only the folios wholly inside a range, and a large folio across
    /// that end would otherwise stay for good (a walk of the pages already dropped is cheap).
    fn take_uncache(&mut self) -> Vec<(Arc<File>, Range<u64>)> {
        let mut uncache = std::mem::take(&mut self.uncache);
        let behind = self.segment_len.saturating_sub(UNCACHE_STEP_BYTES);
        let whole_pages_end = behind - behind % page_bytes();
        if whole_pages_end >= self.uncached_len + UNCACHE_STEP_BYTES {
            uncache.push((Arc::clone(&self.segment), 0..whole_pages_end));
            self.uncached_len = whole_pages_end;
        }
        uncache
    }

    /// Records that every entry up to `seq` is durable (a sync request completed).
    pub fn mark_synced(&mut self, seq: u64) {
        assert!(seq <= self.written_seq, "entry {seq} was never written");
        self.synced_seq = self.synced_seq.max(seq);
    }

    /// Fsyncs everything written so far, here and now (shutdown, tools, tests); returns the
    /// last durable sequence number. The ranges its request names for dropping are not dropped
    /// (a writer this is called on stops, or is a tool's): they only keep their pages cached.
    pub fn sync_now(&mut self) -> io::Result<u64> {
        if let Some(request) = self.sync_request() {
            for file in &request.files {
                file.sync_data()?;
            }
            for dir in &request.dirs {
                sync_dir(dir)?;
            }
            self.mark_synced(request.seq);
        }
        Ok(self.synced_seq)
    }

    /// Deletes the segments before the current one whose entries all come at or before
    /// `position` (every channel's dump covers it), oldest first, and fsyncs the directory.
    /// Returns the segments deleted. A segment is kept while the one after it starts after
    /// `position + 1`, so the log still holds every entry after `position`.
    pub fn delete_covered(&mut self, position: u64) -> io::Result<Vec<PathBuf>> {
        let listing = list_segments(&self.dir)?;
        let mut deleted = Vec::new();
        for pair in listing.segments.windows(2) {
            let (segment, next) = (&pair[0], &pair[1]);
            if segment.number >= self.segment_number || next.number > self.segment_number {
                break;
            }
            let next_first = read_first_seq(&next.path)?;
            if next_first > position.saturating_add(1) {
                break;
            }
            fs::remove_file(&segment.path)?;
            deleted.push(segment.path.clone());
        }
        if !deleted.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last sequence number written to the segment (in the page cache at least).
    pub fn written_seq(&self) -> u64 {
        self.written_seq
    }

    /// The last sequence number known fsynced.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// The current segment's number and path.
    pub fn segment(&self) -> (u64, &Path) {
        (self.segment_number, &self.segment_path)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reserves `want` bytes of `file` (at least `needed`), or just `needed` when the disk has no
/// room for more; returns what is reserved.
fn reserve_up_to(file: &File, want: u64, needed: u64) -> io::Result<u64> {
    let want = want.max(needed);
    match reserve(file, want) {
        Ok(()) => Ok(want),
        Err(_) if want > needed => reserve(file, needed).map(|()| needed),
        Err(error) => Err(error),
    }
}

/// Reserves the disk blocks of `file`'s first `len` bytes, keeping its size.
fn reserve(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("reservation too large"))?;
    // SAFETY: fallocate on a file descriptor this `File` owns for the call's duration; no
    // memory is passed.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
}

/// The first sequence number a segment's header names.
fn read_first_seq(path: &Path) -> io::Result<u64> {
    let mut bytes = [0u8; SEGMENT_HEADER_LEN];
    File::open(path)?.read_exact_at(&mut bytes, 0)?;
    SegmentHeader::decode(&bytes)
        .map(|header| header.first_seq)
        .map_err(|problem| io::Error::other(format!("{}: {problem}", path.display())))
}

/// Creates segment `header.number` in `dir` with its header written (not synced); a file
/// left half-made by a failure is removed.
fn create_segment(dir: &Path, header: &SegmentHeader) -> io::Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(header.number));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    if let Err(err) = file.write_all_at(&header.encode(), 0) {
        let _ = fs::remove_file(&path);
        return Err(err);
    }
    Ok((file, path))
}
