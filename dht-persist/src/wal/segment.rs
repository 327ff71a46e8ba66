//! The segment files of a change-log directory ([`list_segments`]) and the reading of one
//! segment, entry by entry ([`SegmentReader`]): header, lengths, CRC, kind and flags are
//! checked here; sequence numbers across entries and segments are the caller's
//! ([`super::reader`]).
//!
//! Memory: a reader holds its input's buffer, one entry body (grown to the entry's exact size,
//! which is checked against [`MAX_ENTRY_BODY_BYTES`] and against the bytes the segment still
//! has before anything is allocated) and, while a PutBatch entry is decoded, its uncompressed
//! records (at most 16 MiB).

use super::format::{
    decode_body, entry_crc, EntryHeader, EntryKind, EntryProblem, HeaderProblem, LoggedChange,
    SegmentHeader, ENTRY_HEADER_LEN, MAX_ENTRY_BODY_BYTES, SEGMENT_HEADER_LEN,
};
use crate::layout::parse_segment_file_name;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// A segment file found in the log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub number: u64,
    pub path: PathBuf,
    /// Its length when listed.
    pub len: u64,
}

/// What a log directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Segment files, by number.
    pub segments: Vec<SegmentFile>,
    /// Everything else (never read, never touched).
    pub others: Vec<PathBuf>,
}

/// The segments of `dir`, by number; a missing directory is an empty log.
pub fn list_segments(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let number = entry.file_name().to_str().and_then(parse_segment_file_name);
        if number.is_some() && !meta.is_file() {
            // Passed over, its entries would be missing from the replay, and the writer would
            // fail creating a segment of that name later with a bare "File exists".
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is named like a log segment but is not a regular file (a directory or \
                     a symbolic link?): move it away or put the segment itself there",
                    path.display()
                ),
            ));
        }
        match number {
            Some(number) => listing.segments.push(SegmentFile {
                number,
                path,
                len: meta.len(),
            }),
            None => listing.others.push(path),
        }
    }
    listing.segments.sort_by_key(|segment| segment.number);
    listing.others.sort();
    Ok(listing)
}

/// One entry read and checked (header, CRC, kind, flags), before its body is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEntry {
    pub seq: u64,
    pub kind: EntryKind,
    /// Byte offset of its header in the segment.
    pub offset: u64,
    /// Header and body bytes.
    pub len: u64,
}

/// Why reading a segment stopped.
#[derive(Debug)]
pub enum ReadFailure {
    /// The segment header is not right.
    Header(HeaderProblem),
    /// The entry starting at `offset` is not right.
    Entry { offset: u64, problem: EntryProblem },
    /// Reading failed (the disk, not the data).
    Io(io::Error),
}

impl From<io::Error> for ReadFailure {
    fn from(err: io::Error) -> ReadFailure {
        ReadFailure::Io(err)
    }
}

/// Reads one segment of `len` bytes from its start.
#[derive(Debug)]
pub struct SegmentReader<R: Read> {
    input: R,
    /// Bytes of the segment.
    len: u64,
    /// Bytes consumed so far.
    offset: u64,
    body: Vec<u8>,
    scratch: Vec<u8>,
    /// At a clean end: the zero bytes after the last entry (space written ahead).
    zeros_after: u64,
}

/// Bytes read at a time while checking that a segment ends in zeros.
const ZERO_CHECK_BYTES: usize = 64 << 10;

impl<R: Read> SegmentReader<R> {
    /// A reader of a segment of `len` bytes (the file's length: no body is allocated beyond
    /// what the segment holds).
    pub fn new(input: R, len: u64) -> SegmentReader<R> {
        SegmentReader {
            input,
            len,
            offset: 0,
            body: Vec::new(),
            scratch: Vec::new(),
            zeros_after: 0,
        }
    }

    /// After a clean end: the bytes of zeros that followed the last entry to the end of the
    /// file (space the writer wrote ahead, `docs/formats.md`); not entries.
    pub fn zeros_after(&self) -> u64 {
        self.zeros_after
    }

    /// Bytes consumed so far: after a clean end, the segment's length.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads and checks the segment header (first).
    pub fn read_header(&mut self) -> Result<SegmentHeader, ReadFailure> {
        debug_assert_eq!(self.offset, 0);
        let mut bytes = [0u8; SEGMENT_HEADER_LEN];
        let got = read_up_to(&mut self.input, &mut bytes)?;
        self.offset += got as u64;
        SegmentHeader::decode(&bytes[..got]).map_err(ReadFailure::Header)
    }

    /// The next entry, checked but for its sequence number and body layout (see
    /// [`decode`](Self::decode)); `Ok(None)` at the end of the segment: the end of the file,
    /// or zeros from here to the end of the file (space written ahead: no entry header is all
    /// zeros, since no kind is 0).
    pub fn next_entry(&mut self) -> Result<Option<RawEntry>, ReadFailure> {
        let offset = self.offset;
        let fail = |problem| ReadFailure::Entry { offset, problem };
        let mut fixed = [0u8; ENTRY_HEADER_LEN];
        let got = read_up_to(&mut self.input, &mut fixed)?;
        self.offset += got as u64;
        if got > 0 && fixed[..got].iter().all(|byte| *byte == 0) {
            let zeros = self.zeros_to_the_end()?;
            if let Some(more) = zeros {
                self.zeros_after = got as u64 + more;
                self.offset = offset;
                return Ok(None);
            }
            // Zeros, then other bytes: what reading the all-zero header finds (it consumed
            // the rest of the file, so it is said here).
            return Err(fail(EntryProblem::Checksum {
                stored: 0,
                computed: entry_crc(&fixed, &[]),
            }));
        }
        match got {
            0 => return Ok(None),
            ENTRY_HEADER_LEN => {}
            short => return Err(fail(EntryProblem::TruncatedHeader(short))),
        }
        let header = EntryHeader::parse(&fixed);
        header.check_len().map_err(fail)?;
        let have = self.len.saturating_sub(self.offset);
        if u64::from(header.body_len) > have {
            return Err(fail(EntryProblem::TruncatedBody {
                have,
                need: header.body_len,
            }));
        }
        self.read_body(header.body_len as usize)
            .map_err(|err| match err {
                ReadFailure::Entry { problem, .. } => fail(problem),
                other => other,
            })?;
        let computed = entry_crc(&fixed, &self.body);
        if computed != header.crc {
            return Err(fail(EntryProblem::Checksum {
                stored: header.crc,
                computed,
            }));
        }
        let kind = header.check().map_err(fail)?;
        Ok(Some(RawEntry {
            seq: header.seq,
            kind,
            offset,
            len: (ENTRY_HEADER_LEN as u64) + u64::from(header.body_len),
        }))
    }

    /// Reads the rest of the input: `Some(bytes)` when all of them are zero.
    fn zeros_to_the_end(&mut self) -> Result<Option<u64>, ReadFailure> {
        self.body.clear();
        self.body.resize(ZERO_CHECK_BYTES, 0);
        let mut zeros = 0u64;
        loop {
            let got = read_up_to(&mut self.input, &mut self.body)?;
            if self.body[..got].iter().any(|byte| *byte != 0) {
                return Ok(None);
            }
            zeros += got as u64;
            if got < self.body.len() {
                return Ok(Some(zeros));
            }
        }
    }

    /// Reads `len` body bytes into the body buffer, which grows to exactly `len`.
    fn read_body(&mut self, len: usize) -> Result<(), ReadFailure> {
        debug_assert!(len <= MAX_ENTRY_BODY_BYTES as usize);
        self.body.clear();
        if self.body.capacity() > len.max(1 << 20) * 4 {
            // One huge entry earlier: give most of it back.
            self.body.shrink_to(len.max(1 << 20));
        }
        self.body.reserve_exact(len);
        self.body.resize(len, 0);
        let got = read_up_to(&mut self.input, &mut self.body)?;
        self.offset += got as u64;
        if got < len {
            // The file shrank since it was listed.
            return Err(ReadFailure::Entry {
                offset: 0,
                problem: EntryProblem::TruncatedBody {
                    have: got as u64,
                    need: len as u32,
                },
            });
        }
        Ok(())
    }

    /// Decodes the body of the entry [`next_entry`](Self::next_entry) just returned.
    pub fn decode(&mut self, kind: EntryKind) -> Result<LoggedChange<'_>, EntryProblem> {
        decode_body(kind, &self.body, &mut self.scratch)
    }
}

/// Fills `buf` as far as the input goes; returns the bytes read (short only at the end).
pub(crate) fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{encode_entry, Change};

    fn segment_with(entry_tail: &[u8]) -> Vec<u8> {
        let header = SegmentHeader {
            number: 1,
            first_seq: 1,
            flags: 0,
        };
        let mut bytes = header.encode().to_vec();
        encode_entry(
            1,
            &Change::Remove {
                channel: "c",
                key: 9,
            },
            &mut bytes,
        )
        .unwrap();
        bytes.extend_from_slice(entry_tail);
        bytes
    }

    /// A reader of `bytes` past the segment header and the first entry.
    fn reader_past_first(bytes: &[u8]) -> SegmentReader<&[u8]> {
        let mut reader = SegmentReader::new(bytes, bytes.len() as u64);
        reader.read_header().unwrap();
        assert_eq!(reader.next_entry().unwrap().unwrap().seq, 1);
        reader
    }

    /// A header that declares a large body on a short file allocates nothing for it.
    #[test]
    fn declared_lengths_allocate_nothing_beyond_the_file() {
        let mut forged = [0u8; ENTRY_HEADER_LEN];
        forged[4..8].copy_from_slice(&MAX_ENTRY_BODY_BYTES.to_le_bytes());
        forged[16] = EntryKind::Put as u8;
        let bytes = segment_with(&[&forged[..], b"only this"].concat());
        let mut reader = reader_past_first(&bytes);
        let Err(ReadFailure::Entry { offset, problem }) = reader.next_entry() else {
            panic!("the forged entry passed");
        };
        assert_eq!(offset, (SEGMENT_HEADER_LEN + ENTRY_HEADER_LEN + 10) as u64);
        assert_eq!(
            problem,
            EntryProblem::TruncatedBody {
                have: 9,
                need: MAX_ENTRY_BODY_BYTES
            }
        );
        assert!(reader.body.capacity() < 1024, "{}", reader.body.capacity());

        forged[4..8].copy_from_slice(&(MAX_ENTRY_BODY_BYTES + 1).to_le_bytes());
        let bytes = segment_with(&forged);
        let mut reader = reader_past_first(&bytes);
        assert!(matches!(
            reader.next_entry(),
            Err(ReadFailure::Entry {
                problem: EntryProblem::TooLarge(_),
                ..
            })
        ));
    }

    #[test]
    fn a_clean_end_and_a_short_header_are_told_apart() {
        let bytes = segment_with(&[]);
        let mut reader = SegmentReader::new(&bytes[..], bytes.len() as u64);
        reader.read_header().unwrap();
        let entry = reader.next_entry().unwrap().unwrap();
        assert_eq!((entry.offset, entry.len), (36, bytes.len() as u64 - 36));
        assert!(matches!(
            reader.decode(entry.kind),
            Ok(LoggedChange::Remove {
                channel: "c",
                key: 9
            })
        ));
        assert!(reader.next_entry().unwrap().is_none());
        assert_eq!(reader.offset(), bytes.len() as u64);
        let bytes = segment_with(&[1, 2, 3]);
        let mut reader = reader_past_first(&bytes);
        assert!(matches!(
            reader.next_entry(),
            Err(ReadFailure::Entry {
                problem: EntryProblem::TruncatedHeader(3),
                ..
            })
        ));
        let mut reader = SegmentReader::new(&bytes[..20], 20);
        assert!(matches!(
            reader.read_header(),
            Err(ReadFailure::Header(HeaderProblem::Truncated(20)))
        ));
    }
}
