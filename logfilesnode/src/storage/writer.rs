//! Appending records to one bucket file, and cutting torn tails after a crash.
//!
//! Rule for existing files: a bucket is appended to **in its own format** (legacy records to a
//! legacy file, v1 records to a v1 file, ours to ours), so a file never mixes formats and the
//! reference node can still read files it wrote. A zero-length file (the reference leaves those
//! after a crash) and a new file get our header and our format. Before the first append to an
//! existing file, its torn tail is cut ([`recover_tail`]): appending after garbage would
//! misalign every later record (the reference sample `empty-bucket/…/21c` ends with a stray
//! byte). A file whose header is unusable (unknown version, bad header CRC) is refused.
//!
//! Records are collected in a write buffer and written with one `write(2)` when it passes the
//! buffer limit, on [`BucketWriter::flush`] and on [`BucketWriter::sync`] (which also fsyncs).
//! Dropping a writer flushes but does not fsync.
//!
//! Records are numbered in append order (per writer), so that the node can tell which writes a
//! failure concerns: an append that fails keeps nothing of its record; the records buffered
//! before it stay, until a flush writes them or [`BucketWriter::discard_buffered`] drops them
//! (and says which); [`BucketWriter::roll_back`] takes back the records appended since a
//! [`BufferMark`] when none of them was written yet.
//!
//! The time index ([`super::index`]): a writer keeps the index of its bucket in memory, built
//! from the existing records when it opens the file (tail recovery decodes them anyway) and
//! extended by every record a flush writes; readers of a bucket open for writing use it
//! ([`BucketWriter::index`]). It is saved to `<bucket>.idx` when the writer is closed
//! ([`BucketWriter::write_index`], and on drop). Buffered records wait beside it (their offsets
//! and keys) and join it only once written: a record taken back or dropped from the buffer must
//! leave no entry behind, since its offset is reused by the next append. So every entry is the
//! offset of a record in the file. Creating a bucket file deletes an index left from an earlier
//! file of that name.

use super::format::{
    detect, encode_record, file_header, BucketDecoder, BucketFormat, DamageKind, Detected,
    FILE_HEADER_BYTES, MAX_VALUE_BYTES,
};
use super::index::{remove_index, save_index, IndexBuilder, DEFAULT_INDEX_INTERVAL_BYTES};
use super::StorageError;
use memmap2::Mmap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default write buffer per open bucket (the reference's default).
pub const DEFAULT_WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Maps a whole file read-only; `None` for a zero-length file.
///
/// The map is only used while nothing truncates the file: the node truncates bucket files only
/// before it serves (tail recovery) and the check tool runs on a stopped node.
pub(crate) fn map_file(file: &File) -> io::Result<Option<Mmap>> {
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: the file is opened read-only here and, by the rule above, nobody truncates it
    // while the map lives; appends by a writer do not affect the mapped range.
    let map = unsafe { Mmap::map(file)? };
    // Only a hint: readers go through the file front to back.
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(Some(map))
}

/// What [`recover_tail`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailRecovery {
    /// The file length before.
    pub old_len_bytes: u64,
    /// Bytes cut from the end (0 when the tail was clean).
    pub cut_bytes: u64,
    /// Why the cut tail was bad, when something was cut.
    pub reason: Option<DamageKind>,
}

/// Cuts a torn or corrupt tail off a bucket file of any format: everything after the last
/// record that reads correctly, when nothing after it does. Damaged records followed by good
/// ones are left alone (readers skip them). A torn file header of ours is cut to a zero-length
/// file. Refuses (error) a file whose header is unusable otherwise, and changes nothing then.
/// Fsyncs the file when it cut something.
pub fn recover_tail(path: &Path) -> Result<TailRecovery, StorageError> {
    recover_tail_if(path, true)
}

/// [`recover_tail`], or with `allow_cut` false: finds what would be cut and, when that is
/// anything, refuses with [`StorageError::TailNeedsCut`] without changing the file (for a node
/// that has the file memory-mapped for a read at that moment).
pub fn recover_tail_if(path: &Path, allow_cut: bool) -> Result<TailRecovery, StorageError> {
    recover(path, allow_cut, None)
}

/// Whether the first record of a headerless (legacy) file fails to read.
fn first_record_is_damaged(data: &[u8]) -> bool {
    matches!(BucketDecoder::new(data).next(), Some(Err(_)))
}

/// [`recover_tail_if`], offering every good record to `index` on the way.
fn recover(
    path: &Path,
    allow_cut: bool,
    mut index: Option<&mut IndexBuilder>,
) -> Result<TailRecovery, StorageError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))?;
    let map = map_file(&file).map_err(|e| StorageError::io(path, e))?;
    let data: &[u8] = map.as_deref().unwrap_or(&[]);
    let old_len_bytes = data.len() as u64;
    let (good_end, reason) = match detect(data) {
        Detected::Empty => (0, None),
        Detected::Bad(DamageKind::TornFileHeader) => (0, Some(DamageKind::TornFileHeader)),
        Detected::Bad(kind) => {
            return Err(StorageError::BadHeader {
                path: path.to_path_buf(),
                kind,
            })
        }
        Detected::Format {
            format: BucketFormat::Legacy,
            records_start: 0,
        } if first_record_is_damaged(data) => {
            // Cutting "everything after the last good record" would empty the file: one
            // changed byte of our magic makes a whole bucket look like a torn legacy file.
            return Err(StorageError::BadHeader {
                path: path.to_path_buf(),
                kind: DamageKind::NothingReads,
            });
        }
        Detected::Format { .. } => {
            let mut decoder = BucketDecoder::new(data);
            let mut tail_reason = None;
            for item in decoder.by_ref() {
                if let (Ok(record), Some(index)) = (&item, index.as_deref_mut()) {
                    index.push(record.offset, record.key);
                }
                // Only the last damage can reach the end of the file.
                tail_reason = item.err().map(|d| d.kind);
            }
            (decoder.good_end(), tail_reason)
        }
    };
    drop(map);
    let cut_bytes = old_len_bytes - good_end;
    if cut_bytes > 0 && !allow_cut {
        return Err(StorageError::TailNeedsCut {
            path: path.to_path_buf(),
            cut_bytes,
        });
    }
    if cut_bytes > 0 {
        file.set_len(good_end)
            .and_then(|()| file.sync_all())
            .map_err(|e| StorageError::io(path, e))?;
    }
    Ok(TailRecovery {
        old_len_bytes,
        cut_bytes,
        reason: reason.filter(|_| cut_bytes > 0),
    })
}

/// One bucket file open for appending, with its write buffer.
#[derive(Debug)]
pub struct BucketWriter {
    path: PathBuf,
    /// Shared with whoever fsyncs it off the writing thread (group commit).
    file: Arc<File>,
    format: BucketFormat,
    buf: Vec<u8>,
    buffer_limit_bytes: usize,
    /// Bytes in the file (written, not necessarily fsynced).
    written_len_bytes: u64,
    /// What opening found and cut.
    recovery: TailRecovery,
    /// The index of every record written to the file.
    index: IndexBuilder,
    /// Offset and key of every record in the buffer, in append order: they join `index` when a
    /// flush writes them and leave with them when they are taken back or dropped. Its length
    /// is the number of buffered records.
    buffered_index: Vec<(u64, u64)>,
    /// Records written (or an index built at open) since the index file was last written.
    index_dirty: bool,
    /// Records appended so far (the next record's number).
    appended_records: u64,
    /// Times the buffer was discarded (a [`BufferMark`] from before one cannot be rolled back to).
    discards: u64,
}

/// How [`BucketWriter::open_with`] opens a bucket.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Write buffer size (0 = write each record at once).
    pub buffer_limit_bytes: usize,
    /// The interval of the bucket's index.
    pub index_interval_bytes: u32,
    /// Cut a torn tail; when false, refuse ([`StorageError::TailNeedsCut`]) a file that has one.
    pub allow_cut: bool,
}

/// The state of a writer's buffer at one moment, to [`BucketWriter::roll_back`] to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferMark {
    buf_len: usize,
    written_len_bytes: u64,
    appended_records: u64,
    buffered_records: usize,
    discards: u64,
}

impl BucketWriter {
    /// Opens (creating it and its slot directory when needed) the bucket file at `path`; see the
    /// module doc for the format rule. `buffer_limit_bytes` = write buffer size (0 = write each
    /// record at once).
    pub fn open(path: &Path, buffer_limit_bytes: usize) -> Result<Self, StorageError> {
        Self::open_if(path, buffer_limit_bytes, true)
    }

    /// [`open`](Self::open), or with `allow_cut` false: refuses ([`StorageError::TailNeedsCut`])
    /// a file whose torn tail would have to be cut, leaving it as it is.
    pub fn open_if(
        path: &Path,
        buffer_limit_bytes: usize,
        allow_cut: bool,
    ) -> Result<Self, StorageError> {
        Self::open_with(
            path,
            WriterOptions {
                buffer_limit_bytes,
                index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
                allow_cut,
            },
        )
    }

    /// [`open`](Self::open) with every option.
    pub fn open_with(path: &Path, options: WriterOptions) -> Result<Self, StorageError> {
        let WriterOptions {
            buffer_limit_bytes,
            index_interval_bytes,
            allow_cut,
        } = options;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| StorageError::io(path, e))?;
        let metadata = file.metadata().map_err(|e| StorageError::io(path, e))?;
        if !metadata.is_file() {
            // A FIFO opened read-write does not block, but writing to it would once its pipe
            // buffer is full.
            return Err(StorageError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let existing_len = metadata.len();
        let mut index = IndexBuilder::new(index_interval_bytes);
        // A new (empty) file has no tail to cut: skip the second open and the map.
        let recovery = if existing_len == 0 {
            TailRecovery {
                old_len_bytes: 0,
                cut_bytes: 0,
                reason: None,
            }
        } else {
            recover(path, allow_cut, Some(&mut index))?
        };
        let len = existing_len - recovery.cut_bytes;
        let mut writer = BucketWriter {
            path: path.to_path_buf(),
            file: Arc::new(file),
            format: BucketFormat::Crc,
            buf: Vec::with_capacity(buffer_limit_bytes.min(MAX_VALUE_BYTES)),
            buffer_limit_bytes,
            written_len_bytes: len,
            recovery,
            index,
            buffered_index: Vec::new(),
            index_dirty: true,
            appended_records: 0,
            discards: 0,
        };
        if len == 0 {
            // An index left by an earlier file of this name describes other records.
            remove_index(path).map_err(|e| StorageError::io(path, e))?;
            let header = file_header();
            (&*writer.file)
                .write_all(&header)
                .map_err(|e| StorageError::io(path, e))?;
            writer.written_len_bytes = header.len() as u64;
        } else {
            let mut head = [0u8; FILE_HEADER_BYTES];
            let got =
                read_prefix(&writer.file, &mut head).map_err(|e| StorageError::io(path, e))?;
            writer.format = match detect(&head[..got]) {
                Detected::Format { format, .. } => format,
                Detected::Empty => BucketFormat::Crc,
                Detected::Bad(kind) => {
                    return Err(StorageError::BadHeader {
                        path: path.to_path_buf(),
                        kind,
                    })
                }
            };
        }
        Ok(writer)
    }

    /// The file's format (new records are written in it).
    pub fn format(&self) -> BucketFormat {
        self.format
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file, for fsyncing it on another thread.
    pub fn file_handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// What [`open`](Self::open) cut from the file's tail.
    pub fn recovery(&self) -> TailRecovery {
        self.recovery
    }

    /// Bytes the file will have after the next flush.
    pub fn len_bytes(&self) -> u64 {
        self.written_len_bytes + self.buf.len() as u64
    }

    /// Bytes buffered, not yet written.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record (to the buffer; written when the buffer passes its limit) and returns
    /// its number. When the write that this append sets off fails, the record is taken back out
    /// (the records buffered before it stay).
    pub fn append(&mut self, key: u64, value: &[u8]) -> Result<u64, StorageError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::ValueTooLong {
                value_bytes: value.len(),
            });
        }
        let before = self.buf.len();
        self.buffered_index.push((self.len_bytes(), key));
        encode_record(self.format, key, value, &mut self.buf);
        if self.buf.len() >= self.buffer_limit_bytes {
            if let Err(e) = self.flush() {
                self.buf.truncate(before);
                self.buffered_index.pop();
                return Err(e);
            }
        }
        self.appended_records += 1;
        Ok(self.appended_records - 1)
    }

    /// The number the next appended record gets.
    pub fn next_record(&self) -> u64 {
        self.appended_records
    }

    /// Records in the buffer, not written.
    fn buffered_records(&self) -> u64 {
        self.buffered_index.len() as u64
    }

    /// Drops the buffered records without writing them (after a failed write, when nobody was
    /// told they were stored); returns their numbers.
    pub fn discard_buffered(&mut self) -> std::ops::Range<u64> {
        let dropped = self.appended_records - self.buffered_records()..self.appended_records;
        self.buf.clear();
        self.buffered_index.clear();
        self.discards += 1;
        dropped
    }

    /// The buffer's state now, to roll back to.
    pub fn mark(&self) -> BufferMark {
        BufferMark {
            buf_len: self.buf.len(),
            written_len_bytes: self.written_len_bytes,
            appended_records: self.appended_records,
            buffered_records: self.buffered_index.len(),
            discards: self.discards,
        }
    }

    /// Takes back every record appended since `mark`, if none of them was written or discarded
    /// since; returns whether it did.
    pub fn roll_back(&mut self, mark: BufferMark) -> bool {
        let unwritten = self.written_len_bytes == mark.written_len_bytes
            && self.discards == mark.discards
            && self.buf.len() >= mark.buf_len;
        if unwritten {
            self.buf.truncate(mark.buf_len);
            self.appended_records = mark.appended_records;
            self.buffered_index.truncate(mark.buffered_records);
        }
        unwritten
    }

    /// Writes the buffer to the file (one `write(2)` for the whole buffer unless the OS writes
    /// less). On failure the file is cut back to its length before the flush and the buffer is
    /// kept, so a retry writes the same records once.
    pub fn flush(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = (&*self.file).write_all(&self.buf) {
            let _ = self.file.set_len(self.written_len_bytes);
            return Err(StorageError::io(&self.path, e));
        }
        self.written_len_bytes += self.buf.len() as u64;
        self.buf.clear();
        self.index_written();
        if self.buf.capacity() > self.buffer_limit_bytes.max(DEFAULT_WRITE_BUFFER_BYTES) {
            self.buf.shrink_to(self.buffer_limit_bytes);
        }
        Ok(())
    }

    /// Flushes, then fsyncs the file's data (`fdatasync`).
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.flush()?;
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(&self.path, e))
    }
}

impl BucketWriter {
    /// The index of every record written to the file (not of those still in the buffer).
    pub fn index(&self) -> &IndexBuilder {
        &self.index
    }

    /// After a flush wrote the whole buffer: its records join the index.
    fn index_written(&mut self) {
        for (offset, key) in self.buffered_index.drain(..) {
            self.index.push(offset, key);
            self.index_dirty = true;
        }
        debug_assert!(self
            .index
            .index()
            .last
            .is_none_or(|(offset, _)| offset < self.written_len_bytes));
    }

    /// Saves the index to `<bucket>.idx` when records were written since it was last saved (or
    /// it was built at open). It describes the file as written, so records still waiting in the
    /// buffer (after a failed write) do not keep it from being saved.
    pub fn write_index(&mut self) -> Result<(), StorageError> {
        if !self.index_dirty {
            return Ok(());
        }
        save_index(&self.path, &self.index.finish(self.written_len_bytes))
            .map_err(|e| StorageError::io(&super::index::index_path(&self.path), e))?;
        self.index_dirty = false;
        Ok(())
    }
}

impl Drop for BucketWriter {
    fn drop(&mut self) {
        let _ = self.flush();
        // The index is a cache readers rebuild when it is missing: a failure costs only time.
        let _ = self.write_index();
    }
}

fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::index::{build_index, MIN_INDEX_INTERVAL_BYTES};

    /// Records of 16 + 2032 bytes: two per stretch of the smallest interval.
    fn value(key: u64) -> Vec<u8> {
        vec![b'a' + (key % 26) as u8; 2032]
    }

    /// The writer's index is exactly the index of the file it wrote.
    fn index_matches_file(writer: &BucketWriter) {
        let data = fs::read(writer.path()).expect("read the bucket");
        assert_eq!(data.len() as u64, writer.written_len_bytes);
        let expected = build_index(&data, MIN_INDEX_INTERVAL_BYTES);
        assert_eq!(writer.index().finish(data.len() as u64), expected);
    }

    #[test]
    fn records_taken_back_or_dropped_leave_no_index_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0000000000").join("000");
        let options = WriterOptions {
            buffer_limit_bytes: 16 * 1024,
            index_interval_bytes: MIN_INDEX_INTERVAL_BYTES,
            allow_cut: true,
        };
        let mut writer = BucketWriter::open_with(&path, options).expect("open");
        for key in 0..3 {
            writer.append(key, &value(key)).expect("append");
        }
        writer.flush().expect("flush");
        // A batch taken back: keys 3..6 never reach the file.
        let mark = writer.mark();
        for key in 3..6 {
            writer.append(key, &value(key)).expect("append");
        }
        assert!(writer.roll_back(mark));
        // Buffered records dropped after a failed write-out (fsync = "always"): keys 10..13,
        // records 3..6 (the numbers of those taken back are given again).
        for key in 10..13 {
            writer.append(key, &value(key)).expect("append");
        }
        assert_eq!(
            writer.index().index().records,
            3,
            "only the written records"
        );
        assert_eq!(writer.discard_buffered(), 3..6);
        // Later records take the dropped ones' offsets.
        for key in 20..24 {
            writer.append(key, &value(key)).expect("append");
        }
        writer.flush().expect("flush");
        index_matches_file(&writer);
        assert_eq!(writer.index().index().records, 7);
        let keys: Vec<u64> = writer
            .index()
            .index()
            .entries
            .iter()
            .map(|e| e.min_key)
            .collect();
        assert_eq!(keys, vec![0, 2, 21, 23]);
        // A full buffer is written by the append that fills it; the index follows.
        for key in 30..40 {
            writer.append(key, &value(key)).expect("append");
        }
        assert!(writer.written_len_bytes > FILE_HEADER_BYTES as u64 + 4 * 2048);
        writer.write_index().expect("write the index");
        let saved = super::super::index::load_index(&path).expect("saved index");
        let data = fs::read(&path).expect("read the bucket");
        assert_eq!(super::super::index::verify_index(&saved, &data), Ok(()));
        writer.flush().expect("flush");
        index_matches_file(&writer);
    }
}
