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
//! The time index ([`super::index`]): a writer keeps the index of its bucket in memory, built
//! from the existing records when it opens the file (tail recovery decodes them anyway) and
//! extended by every append; readers of a bucket open for writing use it
//! ([`BucketWriter::index`]). It is saved to `<bucket>.idx` when the writer is closed
//! ([`BucketWriter::write_index`], and on drop). Appended records are never dropped from the
//! buffer (a failed write keeps them for the retry), so every entry stays the offset of a record
//! in the file once it is written. Creating a bucket file deletes an index left from an earlier
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
    /// The index of every record in the file and the buffer.
    index: IndexBuilder,
    /// Records appended (or an index built at open) since the index file was last written.
    index_dirty: bool,
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
        let existing_len = file
            .metadata()
            .map_err(|e| StorageError::io(path, e))?
            .len();
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
            index_dirty: true,
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

    /// Appends one record (to the buffer; written when the buffer passes its limit).
    pub fn append(&mut self, key: u64, value: &[u8]) -> Result<(), StorageError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(StorageError::ValueTooLong {
                value_bytes: value.len(),
            });
        }
        self.index.push(self.len_bytes(), key);
        self.index_dirty = true;
        encode_record(self.format, key, value, &mut self.buf);
        if self.buf.len() >= self.buffer_limit_bytes {
            self.flush()?;
        }
        Ok(())
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
    /// The index of every record appended (those still in the buffer included).
    pub fn index(&self) -> &IndexBuilder {
        &self.index
    }

    /// Saves the index to `<bucket>.idx` when records were appended since it was last saved (or
    /// it was built at open). Not while records wait in the buffer (a failed write): the index
    /// would name records the file does not hold yet.
    pub fn write_index(&mut self) -> Result<(), StorageError> {
        if !self.index_dirty || !self.buf.is_empty() {
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
