//! The end of the log after a crash: telling a torn tail (what a write cut short leaves: the
//! log's last bytes, with no intact entry after them) from damage in the middle (an intact
//! entry follows the bad bytes), counting what a cut removes, and cutting. Also the operator's
//! way past damage: [`discard_from`] moves the log from a damaged place on out of the way.
//!
//! An entry is *intact* when its header is plausible (a known kind, the reserved field 0, a
//! body within the limit and within the file) and its CRC matches. Looking for one means
//! trying every byte offset after the bad bytes; the plausibility checks turn away almost every
//! offset before any CRC is computed. Memory: a 1 MiB window and, for a candidate whose body
//! does not fit in it, one body of at most [`MAX_ENTRY_BODY_BYTES`].

use super::format::{
    entry_crc, EntryHeader, ENTRY_HEADER_LEN, MAX_ENTRY_BODY_BYTES, SEGMENT_HEADER_LEN,
};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read at a time while looking for an intact entry.
const SCAN_WINDOW_BYTES: usize = 1 << 20;

/// A torn tail: the bytes from `offset` in `segment` to the end of the log, holding no intact
/// entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub segment: PathBuf,
    pub number: u64,
    /// Where the first bad entry (or the bad segment header, at 0) starts.
    pub offset: u64,
    /// Whether the segment's header is good, so that the cut keeps the segment (truncated at
    /// `offset`); otherwise the cut deletes the file.
    pub header_ok: bool,
    /// Later segments (none holds an intact entry): the cut deletes them.
    pub later: Vec<PathBuf>,
    /// Bytes the cut removes, in all of those files.
    pub bytes: u64,
    /// Of `bytes`, the zeros at the end of `segment` after the torn bytes (space the writer
    /// wrote ahead, `docs/formats.md`; 0 when later segments follow).
    pub zeros: u64,
    /// Entries begun in those bytes, as far as their headers can be read (a partly written
    /// entry counts; unwritten, zero-filled space does not).
    pub entries: u64,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = match self.entries {
            1 => "1 entry".to_string(),
            n => format!("{n} entries"),
        };
        write!(
            f,
            "torn tail of {} bytes ({entries} begun) from byte {} of {}",
            self.bytes - self.zeros,
            self.offset,
            self.segment.display()
        )?;
        if self.zeros > 0 {
            write!(f, ", and the {} bytes of zeros after it", self.zeros)?;
        }
        if !self.later.is_empty() {
            write!(
                f,
                " and {} later segment(s) without an intact entry",
                self.later.len()
            )?;
        }
        Ok(())
    }
}

/// Where the first intact entry starting at `from` or later begins in `path` (the first
/// `len` bytes of it), if any.
pub(crate) fn find_intact_entry(path: &Path, from: u64, len: u64) -> io::Result<Option<u64>> {
    let file = File::open(path)?;
    let mut window = vec![0u8; SCAN_WINDOW_BYTES.min(len.saturating_sub(from) as usize)];
    let mut body = Vec::new();
    let mut start = from;
    while start + ENTRY_HEADER_LEN as u64 <= len {
        let want = window.len().min((len - start) as usize);
        file.read_exact_at(&mut window[..want], start)?;
        let headers_in_window = want + 1 - ENTRY_HEADER_LEN;
        for index in 0..headers_in_window {
            let offset = start + index as u64;
            if is_intact_at(&file, &window[index..want], offset, len, &mut body)? {
                return Ok(Some(offset));
            }
        }
        start += headers_in_window as u64;
    }
    Ok(None)
}

/// Whether an intact entry starts at `offset`; `bytes` are the file's bytes from there (at
/// least a header's worth), `body` a buffer for a body that runs past them.
fn is_intact_at(
    file: &File,
    bytes: &[u8],
    offset: u64,
    len: u64,
    body: &mut Vec<u8>,
) -> io::Result<bool> {
    let Some(fixed) = bytes.first_chunk::<ENTRY_HEADER_LEN>() else {
        return Ok(false);
    };
    let header = EntryHeader::parse(fixed);
    let body_len = u64::from(header.body_len);
    let body_start = offset + ENTRY_HEADER_LEN as u64;
    if !header.is_plausible() || body_start + body_len > len {
        return Ok(false);
    }
    let end = ENTRY_HEADER_LEN + header.body_len as usize;
    let computed = if bytes.len() >= end {
        entry_crc(fixed, &bytes[ENTRY_HEADER_LEN..end])
    } else {
        debug_assert!(header.body_len <= MAX_ENTRY_BODY_BYTES);
        body.clear();
        body.resize(header.body_len as usize, 0);
        file.read_exact_at(body, body_start)?;
        entry_crc(fixed, body)
    };
    Ok(computed == header.crc)
}

/// How many of the last bytes of `path` (of its first `len`, after `from`) are zeros.
pub(crate) fn trailing_zeros(path: &Path, from: u64, len: u64) -> io::Result<u64> {
    let file = File::open(path)?;
    let mut window = vec![0u8; SCAN_WINDOW_BYTES.min(len.saturating_sub(from) as usize)];
    let mut end = len;
    while end > from {
        let want = window.len().min((end - from) as usize);
        file.read_exact_at(&mut window[..want], end - want as u64)?;
        if let Some(last) = window[..want].iter().rposition(|byte| *byte != 0) {
            return Ok(len - (end - want as u64 + last as u64 + 1));
        }
        end -= want as u64;
    }
    Ok(len - from)
}

/// Entries begun from `from` to `len` in `path`: walks the declared lengths while headers are
/// plausible; bytes it cannot parse count as one more entry unless they are zeros (space the
/// file system allocated but nothing wrote).
pub(crate) fn count_entry_starts(path: &Path, from: u64, len: u64) -> io::Result<u64> {
    let file = File::open(path)?;
    let mut offset = from;
    let mut count = 0u64;
    while offset < len {
        let mut fixed = [0u8; ENTRY_HEADER_LEN];
        let got = (ENTRY_HEADER_LEN as u64).min(len - offset) as usize;
        file.read_exact_at(&mut fixed[..got], offset)?;
        let header = EntryHeader::parse(&fixed);
        if got == ENTRY_HEADER_LEN && header.is_plausible() {
            count += 1;
            offset += (ENTRY_HEADER_LEN as u64) + u64::from(header.body_len);
            continue;
        }
        if fixed[..got].iter().any(|byte| *byte != 0) {
            count += 1;
        }
        break;
    }
    Ok(count)
}

/// Where the entries of a segment whose header is `header_ok` or not begin, for counting.
pub(crate) fn entries_start(header_ok: bool, offset: u64) -> u64 {
    if header_ok {
        offset.max(SEGMENT_HEADER_LEN as u64)
    } else {
        SEGMENT_HEADER_LEN as u64
    }
}

/// Cuts a torn tail: deletes the later segments (last first, so that an interrupted cut leaves
/// a shorter log, never a hole), then truncates the segment at the tail's offset (deletes it
/// when its header is bad), fsyncs it and the directory.
pub(crate) fn cut(tail: &TornTail) -> io::Result<()> {
    for later in tail.later.iter().rev() {
        remove_if_present(later)?;
    }
    if tail.header_ok {
        let file = OpenOptions::new().write(true).open(&tail.segment)?;
        file.set_len(tail.offset)?;
        file.sync_all()?;
    } else {
        remove_if_present(&tail.segment)?;
    }
    if let Some(dir) = tail.segment.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Cuts the zeros a writer wrote ahead of its last entry (a run that did not stop cleanly
/// leaves them; readers take them for the end): the segment at `path` keeps its first
/// `entries_end` bytes, and the room reserved past them goes back to the file system. Not made
/// durable: should the cut be lost, the zeros are back and still read as the end.
pub fn cut_zeros_ahead(path: &Path, entries_end: u64) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(entries_end)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// What [`discard_from`] gave up, and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discarded {
    /// The directory the bytes were moved to.
    pub aside: PathBuf,
    /// Whole segments moved there.
    pub segments: Vec<PathBuf>,
    /// The segment cut, the offset it was cut at, and the file its cut bytes were saved to.
    pub cut: Option<(PathBuf, u64, PathBuf)>,
    /// Bytes given up in all.
    pub bytes: u64,
}

/// Gives up the log from `offset` of `segment` on, on purpose (damage that cannot be read past):
/// every later segment of `log_dir` is moved to `aside` (created; the last segment first), the
/// bytes of `segment` from `offset` are saved to `aside/<name>.from-<offset>` (fsynced) and the
/// segment is truncated there — or moved whole when `offset` is 0. Everything is fsynced, and
/// nothing is deleted. The log then ends before `offset`.
pub fn discard_from(
    log_dir: &Path,
    segment: &Path,
    offset: u64,
    aside: &Path,
) -> io::Result<Discarded> {
    let name = segment
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| io::Error::other(format!("{} is not a segment", segment.display())))?;
    let number = crate::layout::parse_segment_file_name(name)
        .ok_or_else(|| io::Error::other(format!("{} is not a segment", segment.display())))?;
    fs::create_dir_all(aside)?;
    let mut discarded = Discarded {
        aside: aside.to_path_buf(),
        segments: Vec::new(),
        cut: None,
        bytes: 0,
    };
    let listing = super::segment::list_segments(log_dir)?;
    let later = listing.segments.iter().filter(|s| s.number > number);
    for later in later.rev() {
        move_aside(&later.path, aside, &mut discarded)?;
    }
    if offset == 0 {
        move_aside(segment, aside, &mut discarded)?;
    } else {
        let saved = aside.join(format!("{name}.from-{offset}"));
        let mut from = File::open(segment)?;
        io::Seek::seek(&mut from, io::SeekFrom::Start(offset))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&saved)?;
        discarded.bytes += io::copy(&mut from, &mut to)?;
        to.sync_all()?;
        File::open(aside)?.sync_all()?;
        let file = OpenOptions::new().write(true).open(segment)?;
        file.set_len(offset)?;
        file.sync_all()?;
        discarded.cut = Some((segment.to_path_buf(), offset, saved));
    }
    File::open(aside)?.sync_all()?;
    File::open(log_dir)?.sync_all()?;
    Ok(discarded)
}

fn move_aside(path: &Path, aside: &Path, discarded: &mut Discarded) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Ok(());
    };
    let to = aside.join(name);
    let len = fs::metadata(path)?.len();
    fs::rename(path, &to)?;
    discarded.bytes += len;
    discarded.segments.push(to);
    Ok(())
}
