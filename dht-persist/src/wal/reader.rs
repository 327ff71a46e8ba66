//! Reading the whole log in order ([`LogReader`]): every segment's header, entries one after
//! the other with consecutive sequence numbers across segments, every CRC and body checked, the
//! entries after a position handed out. Where reading stops on bad bytes, [`super::tail`]
//! decides: a torn tail ends the log ([`LogEnd::torn`], cut with [`LogEnd::cut_torn_tail`]);
//! damage in the middle, a missing segment or a gap in the sequence is an error
//! ([`LogError`]), never skipped.
//!
//! Memory: the segment headers (36 bytes each), a 1 MiB read buffer, one entry body and one
//! batch's records at a time (see [`super::segment`]), and one [`SegmentSummary`] per segment.

use super::format::{EntryKind, EntryProblem, HeaderProblem, LoggedChange, SegmentHeader};
use super::segment::{list_segments, Listing, RawEntry, ReadFailure, SegmentFile, SegmentReader};
use super::tail::{
    count_entry_starts, cut, entries_start, find_intact_entry, trailing_zeros, TornTail,
};
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The read buffer in front of each segment.
pub const READ_BUFFER_BYTES: usize = 1 << 20;

/// One logged change and its position.
#[derive(Debug, Clone)]
pub struct LogEntry<'a> {
    pub seq: u64,
    pub change: LoggedChange<'a>,
}

/// Which entries a [`LogReader`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Every entry of every segment (a check of the whole log).
    Start,
    /// The entries after this position (a replay on top of dumps covering it). Segments whose
    /// entries all come before it are not read; the log must hold every entry after it, else
    /// [`LogError::Missing`], even when its first segment is a sequence jump
    /// ([`super::format::SEGMENT_FLAG_SEQUENCE_JUMP`]): the flag lets a segment start past the
    /// end of the one before it, never past the position a replay needs (the entries in
    /// between would be skipped silently).
    After(u64),
}

/// Where in the log reading stopped on bad bytes that are not a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub segment: PathBuf,
    /// The bad entry's offset (0: the segment header).
    pub offset: u64,
    pub problem: String,
    /// The first intact entry found after it (what makes it damage rather than a torn tail),
    /// when one was looked for (an entry whose CRC matched is damage without a search).
    pub next_intact: Option<(PathBuf, u64)>,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.segment.display(),
            self.offset,
            self.problem
        )?;
        match &self.next_intact {
            Some((path, offset)) => write!(
                f,
                "; an intact entry follows (at byte {offset} of {}), so this is damage in the \
                 middle of the log, not a torn tail",
                path.display()
            ),
            None => write!(
                f,
                "; its checksum matches (it was written like this), so this is no torn write"
            ),
        }
    }
}

/// Why the log cannot be read to its end.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("change log: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("change log DAMAGED: {0}")]
    Damaged(Damage),
    #[error(
        "change log {dir}: segment {missing} is missing (segments {before} and {after} are there)"
    )]
    MissingSegment {
        dir: PathBuf,
        missing: u64,
        before: u64,
        after: u64,
    },
    #[error(
        "change log: {path} starts at sequence number {found}, but the segment before it ends \
         at {}: the sequence has a gap or an overlap", expected.saturating_sub(1)
    )]
    Gap {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(
        "change log: {path}, the first segment, starts at sequence number {first_seq}, but the \
         entries after position {after} are needed: they are not in the log"
    )]
    Missing {
        path: PathBuf,
        after: u64,
        first_seq: u64,
    },
}

/// Entries per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u64; EntryKind::ALL.len()]);

impl KindCounts {
    pub fn add(&mut self, kind: EntryKind) {
        self.0[kind as usize - 1] += 1;
    }

    pub fn get(&self, kind: EntryKind) -> u64 {
        self.0[kind as usize - 1]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// What reading found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub number: u64,
    pub path: PathBuf,
    /// The file's length when the log was opened.
    pub file_len: u64,
    /// Its header, when it is good.
    pub header: Option<SegmentHeader>,
    /// Not read: every entry in it comes before [`ReadFrom::After`]'s position.
    pub skipped: bool,
    /// Intact entries read, and their kinds.
    pub entries: u64,
    pub kinds: KindCounts,
    /// Records (or keys) the entries touch.
    pub records: u64,
    /// Sequence numbers of the first and last entries read.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Bytes read up to the end of the last good entry.
    pub good_len: u64,
    /// Zero bytes after the last entry to the end of the file: space the writer wrote ahead
    /// (not entries; see [`SegmentReader::next_entry`]).
    pub zeros_after: u64,
}

/// Where the log ends: what a writer continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEnd {
    pub dir: PathBuf,
    /// The sequence number of the last entry kept (0: none, and no segment says otherwise).
    pub last_seq: u64,
    /// The number the next new segment takes.
    pub next_segment: u64,
    /// Bytes after the last intact entry, if any; cut them with [`cut_torn_tail`](Self::cut_torn_tail)
    /// before writing.
    pub torn: Option<TornTail>,
    /// Whether the torn tail was cut.
    pub cut: bool,
}

impl LogEnd {
    /// Cuts the torn tail (if any, and not cut yet): later segments deleted, the segment
    /// truncated (deleted when its header is bad), both made durable. Returns what was cut.
    pub fn cut_torn_tail(&mut self) -> Result<Option<&TornTail>, LogError> {
        if let (Some(tail), false) = (&self.torn, self.cut) {
            cut(tail).map_err(|source| LogError::Io {
                path: tail.segment.clone(),
                source,
            })?;
            self.cut = true;
        }
        Ok(self.torn.as_ref())
    }

    /// Whether a writer may append after this end: nothing torn is left.
    pub fn is_clean(&self) -> bool {
        self.torn.is_none() || self.cut
    }
}

/// One listed segment and its header as read at open.
#[derive(Debug)]
struct Listed {
    file: SegmentFile,
    header: Result<SegmentHeader, HeaderProblem>,
}

/// Reads a log directory in order (see the module doc).
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    segments: Vec<Listed>,
    /// Files of the directory that are not segments.
    others: Vec<PathBuf>,
    /// The segment to open next, or being read.
    index: usize,
    current: Option<SegmentReader<BufReader<File>>>,
    /// Entries up to here are checked but not handed out.
    after: u64,
    /// The sequence number the next entry must have (None before the first segment).
    expected: Option<u64>,
    last_seq: u64,
    summaries: Vec<SegmentSummary>,
    end: Option<LogEnd>,
    /// Set once an error was returned: the reader hands out nothing more.
    failed: bool,
}

/// Asks the kernel to start reading `file` (a hint). The writer drops the log's pages once they
/// are durable, so a restart reads the log from disk; the kernel reads ahead of sequential reads
/// by itself, but starts afresh at each file, so each segment's first read-ahead window
/// (`read_ahead_kb`: the kernel caps this advice at it) is asked for when the segment before it
/// is opened.
fn read_ahead(file: &File) {
    node_core::page_cache::read_ahead(file);
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl LogReader {
    /// Lists the segments of `dir` (a missing directory is an empty log) and reads their
    /// headers.
    pub fn open(dir: &Path, from: ReadFrom) -> Result<LogReader, LogError> {
        let Listing { segments, others } = list_segments(dir).map_err(io_error(dir))?;
        let mut listed = Vec::with_capacity(segments.len());
        for file in segments {
            let header = read_segment_header(&file)?;
            listed.push(Listed { file, header });
        }
        check_numbers(dir, &listed)?;
        let after = match from {
            ReadFrom::Start => 0,
            ReadFrom::After(after) => after,
        };
        let first = first_needed(&listed, from)?;
        let summaries = listed
            .iter()
            .enumerate()
            .map(|(index, segment)| SegmentSummary {
                number: segment.file.number,
                path: segment.file.path.clone(),
                file_len: segment.file.len,
                header: segment.header.as_ref().ok().copied(),
                skipped: index < first,
                entries: 0,
                kinds: KindCounts::default(),
                records: 0,
                first_seq: None,
                last_seq: None,
                good_len: 0,
                zeros_after: 0,
            })
            .collect();
        Ok(LogReader {
            dir: dir.to_path_buf(),
            segments: listed,
            others,
            index: first,
            current: None,
            after,
            expected: None,
            last_seq: 0,
            summaries,
            end: None,
            failed: false,
        })
    }

    /// Asks the kernel to drop the segments read so far from the page cache: a node's replay
    /// reads its log once, and the writer then goes on in a new segment (a hint; a segment that
    /// cannot be opened is left).
    pub fn uncache_read_segments(&self) {
        let read = self
            .segments
            .iter()
            .zip(&self.summaries)
            .take(self.index + 1);
        for (segment, _) in read.filter(|(_, summary)| !summary.skipped) {
            if let Ok(file) = File::open(&segment.file.path) {
                node_core::page_cache::drop_range(&file, &(0..u64::MAX));
            }
        }
    }

    /// Files in the log directory that are not segments (left alone).
    pub fn others(&self) -> &[PathBuf] {
        &self.others
    }

    /// What was read of each segment so far (all of them once the end is reached).
    pub fn summaries(&self) -> &[SegmentSummary] {
        &self.summaries
    }

    /// The last segment and where its entries end, when zeros its writer wrote ahead follow
    /// them (cut them with [`cut_zeros_ahead`](super::cut_zeros_ahead)).
    pub fn zeros_ahead(&self) -> Option<(PathBuf, u64)> {
        let last = self.summaries.last().filter(|last| last.zeros_after > 0)?;
        Some((last.path.clone(), last.file_len - last.zeros_after))
    }

    /// Where the log ends, once [`next_entry`](Self::next_entry) has returned `Ok(None)`.
    pub fn end(&self) -> Option<&LogEnd> {
        self.end.as_ref()
    }

    /// [`end`](Self::end), taken.
    pub fn into_end(self) -> Option<LogEnd> {
        self.end
    }

    /// The next entry after the position, checked; `Ok(None)` at the end of the log (a torn
    /// tail included: see [`end`](Self::end)).
    pub fn next_entry(&mut self) -> Result<Option<LogEntry<'_>>, LogError> {
        let raw = loop {
            if self.failed || self.end.is_some() {
                return Ok(None);
            }
            let Some(reader) = self.current.as_mut() else {
                self.open_next()?;
                continue;
            };
            let entry = match reader.next_entry() {
                Ok(Some(entry)) => entry,
                Ok(None) => {
                    self.summaries[self.index].zeros_after = reader.zeros_after();
                    self.current = None;
                    self.index += 1;
                    continue;
                }
                Err(failure) => return self.stop(failure),
            };
            if let Err(failure) = self.check_sequence(&entry) {
                return self.stop(failure);
            }
            if entry.seq > self.after {
                break entry;
            }
            if let Err(failure) = self.pass_over(&entry) {
                return self.stop(failure);
            }
        };
        let path = self.segments[self.index].file.path.clone();
        let Some(reader) = self.current.as_mut() else {
            unreachable!("an entry was just read from the current segment");
        };
        match reader.decode(raw.kind) {
            Ok(change) => {
                let summary = &mut self.summaries[self.index];
                count_into(summary, raw.seq, raw.kind, raw.offset + raw.len);
                summary.records += change.record_count();
                self.expected = Some(raw.seq + 1);
                self.last_seq = raw.seq;
                Ok(Some(LogEntry {
                    seq: raw.seq,
                    change,
                }))
            }
            Err(problem) => {
                self.failed = true;
                Err(LogError::Damaged(Damage {
                    segment: path,
                    offset: raw.offset,
                    problem: problem.to_string(),
                    next_intact: None,
                }))
            }
        }
    }

    /// An entry must carry the sequence number after the one before it (and never u64::MAX,
    /// which would leave no number for the next: 2^64 entries cannot have been written).
    fn check_sequence(&self, entry: &RawEntry) -> Result<(), ReadFailure> {
        let expected = self.expected.unwrap_or(entry.seq);
        if entry.seq == expected && entry.seq != u64::MAX {
            return Ok(());
        }
        Err(ReadFailure::Entry {
            offset: entry.offset,
            problem: EntryProblem::Sequence {
                expected,
                found: entry.seq,
            },
        })
    }

    /// An entry the position covers: checked all the same (its body too), counted, passed over.
    fn pass_over(&mut self, entry: &RawEntry) -> Result<(), ReadFailure> {
        let Some(reader) = self.current.as_mut() else {
            unreachable!("an entry was just read from the current segment");
        };
        let records = reader
            .decode(entry.kind)
            .map(|change| change.record_count())
            .map_err(|problem| ReadFailure::Entry {
                offset: entry.offset,
                problem,
            })?;
        self.count(entry.seq, entry.kind, entry.offset + entry.len, records);
        Ok(())
    }

    /// Counts an entry read (and passed over) in the current segment.
    fn count(&mut self, seq: u64, kind: EntryKind, good_len: u64, records: u64) {
        let summary = &mut self.summaries[self.index];
        count_into(summary, seq, kind, good_len);
        summary.records += records;
        self.expected = Some(seq + 1);
        self.last_seq = seq;
    }

    /// Opens the segment at `index`, checking that it continues the sequence; at the end of
    /// the list, records the end.
    fn open_next(&mut self) -> Result<(), LogError> {
        let Some(segment) = self.segments.get(self.index) else {
            self.end = Some(self.clean_end());
            return Ok(());
        };
        let path = segment.file.path.clone();
        let header = match &segment.header {
            Ok(header) => *header,
            Err(problem) => {
                let failure = ReadFailure::Header(problem.clone());
                return self.stop::<()>(failure).map(|_| ());
            }
        };
        if let Some(expected) = self.expected {
            let jump_ok = header.is_jump() && header.first_seq > expected;
            if header.first_seq != expected && !jump_ok {
                self.failed = true;
                return Err(LogError::Gap {
                    path,
                    expected,
                    found: header.first_seq,
                });
            }
        }
        let file = File::open(&path).map_err(io_error(&path))?;
        read_ahead(&file);
        if let Some(next) = self.segments.get(self.index + 1) {
            if let Ok(next) = File::open(&next.file.path) {
                read_ahead(&next);
            }
        }
        let input = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let mut reader = SegmentReader::new(input, segment.file.len);
        if !reader.read_header().is_ok_and(|again| again == header) {
            self.failed = true;
            let source = io::Error::other("the segment header changed while the log was read");
            return Err(LogError::Io { path, source });
        }
        self.summaries[self.index].good_len = reader.offset();
        self.expected = Some(header.first_seq);
        self.last_seq = header.first_seq - 1;
        self.current = Some(reader);
        Ok(())
    }

    /// The end of a log read to its last byte.
    fn clean_end(&self) -> LogEnd {
        LogEnd {
            dir: self.dir.clone(),
            last_seq: self.last_seq,
            next_segment: self.segments.last().map_or(1, |last| last.file.number + 1),
            torn: None,
            cut: false,
        }
    }

    /// Reading stopped on bad bytes: a torn tail ends the log (`Ok(None)`), anything else is
    /// an error. Either way, nothing more is handed out.
    fn stop<T>(&mut self, failure: ReadFailure) -> Result<Option<T>, LogError> {
        self.current = None;
        let segment = &self.segments[self.index];
        let path = segment.file.path.clone();
        let (offset, problem, intact) = match failure {
            ReadFailure::Io(source) => {
                self.failed = true;
                return Err(LogError::Io { path, source });
            }
            ReadFailure::Header(problem) => (0, problem.to_string(), problem.header_is_intact()),
            ReadFailure::Entry { offset, problem } => {
                (offset, problem.to_string(), problem.entry_is_intact())
            }
        };
        let next_intact = if intact {
            None
        } else {
            self.next_intact_after(offset)?
        };
        if intact || next_intact.is_some() {
            self.failed = true;
            return Err(LogError::Damaged(Damage {
                segment: path,
                offset,
                problem,
                next_intact,
            }));
        }
        let tail = self.torn_tail(offset)?;
        self.end = Some(LogEnd {
            dir: self.dir.clone(),
            last_seq: self.last_seq,
            next_segment: if tail.header_ok {
                tail.number + 1
            } else {
                tail.number
            },
            torn: Some(tail),
            cut: false,
        });
        Ok(None)
    }

    /// The first intact entry after bad bytes at `offset` of the current segment, in it or in
    /// a later segment.
    fn next_intact_after(&self, offset: u64) -> Result<Option<(PathBuf, u64)>, LogError> {
        for (index, segment) in self.segments.iter().enumerate().skip(self.index) {
            let path = &segment.file.path;
            let from = if index == self.index { offset + 1 } else { 0 };
            if let Some(found) =
                find_intact_entry(path, from, segment.file.len).map_err(io_error(path))?
            {
                return Ok(Some((path.clone(), found)));
            }
        }
        Ok(None)
    }

    /// The torn tail from `offset` of the current segment to the end of the log.
    fn torn_tail(&self, offset: u64) -> Result<TornTail, LogError> {
        let segment = &self.segments[self.index];
        let header_ok = segment.header.is_ok() && offset > 0;
        let mut bytes = segment.file.len - offset.min(segment.file.len);
        let mut entries = count_entry_starts(
            &segment.file.path,
            entries_start(header_ok, offset),
            segment.file.len,
        )
        .map_err(io_error(&segment.file.path))?;
        let mut zeros = 0;
        if self.index + 1 == self.segments.len() {
            zeros = trailing_zeros(&segment.file.path, offset, segment.file.len)
                .map_err(io_error(&segment.file.path))?;
        }
        let mut later = Vec::new();
        for next in &self.segments[self.index + 1..] {
            let path = &next.file.path;
            bytes += next.file.len;
            entries += count_entry_starts(path, entries_start(false, 0), next.file.len)
                .map_err(io_error(path))?;
            later.push(path.clone());
        }
        Ok(TornTail {
            segment: segment.file.path.clone(),
            number: segment.file.number,
            offset,
            header_ok,
            later,
            bytes,
            zeros,
            entries,
        })
    }
}

fn count_into(summary: &mut SegmentSummary, seq: u64, kind: EntryKind, good_len: u64) {
    summary.entries += 1;
    summary.kinds.add(kind);
    summary.first_seq.get_or_insert(seq);
    summary.last_seq = Some(seq);
    summary.good_len = good_len;
}

/// A segment's header as the file has it (a short or unreadable header is a problem of the
/// segment, decided on when reading reaches it).
fn read_segment_header(
    file: &SegmentFile,
) -> Result<Result<SegmentHeader, HeaderProblem>, LogError> {
    let input = File::open(&file.path).map_err(io_error(&file.path))?;
    let mut reader = SegmentReader::new(input, file.len);
    match reader.read_header() {
        Ok(header) if header.number != file.number => Ok(Err(HeaderProblem::NumberMismatch {
            header: header.number,
            name: file.number,
        })),
        Ok(header) => Ok(Ok(header)),
        Err(ReadFailure::Header(problem)) => Ok(Err(problem)),
        Err(ReadFailure::Io(source)) => Err(LogError::Io {
            path: file.path.clone(),
            source,
        }),
        Err(ReadFailure::Entry { .. }) => unreachable!("a header read reads no entry"),
    }
}

/// Segment numbers must follow each other: a missing file in between is damage.
fn check_numbers(dir: &Path, listed: &[Listed]) -> Result<(), LogError> {
    for pair in listed.windows(2) {
        let (before, after) = (pair[0].file.number, pair[1].file.number);
        if after != before + 1 {
            return Err(LogError::MissingSegment {
                dir: dir.to_path_buf(),
                missing: before + 1,
                before,
                after,
            });
        }
    }
    Ok(())
}

/// The first segment to read: with a position, the last one starting at or before the entry
/// after it (earlier ones hold only entries it covers).
fn first_needed(listed: &[Listed], from: ReadFrom) -> Result<usize, LogError> {
    let ReadFrom::After(after) = from else {
        return Ok(0);
    };
    let starts_by = |segment: &Listed| {
        segment
            .header
            .as_ref()
            .is_ok_and(|header| header.first_seq <= after.saturating_add(1))
    };
    let mut first = 0;
    while first + 1 < listed.len() && starts_by(&listed[first + 1]) {
        first += 1;
    }
    if let Some(Ok(header)) = listed.first().map(|segment| &segment.header) {
        if first == 0 && header.first_seq > after.saturating_add(1) {
            return Err(LogError::Missing {
                path: listed[0].file.path.clone(),
                after,
                first_seq: header.first_seq,
            });
        }
    }
    Ok(first)
}
