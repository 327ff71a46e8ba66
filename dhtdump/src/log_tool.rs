//! dumptool's change-log verbs, on a dht node's change log (`DATA_DIR/wal/`, `docs/formats.md`,
//! "dht change log"):
//!
//! - [`log_info`]: every segment with its positions, entries per kind, records and bytes (and,
//!   when asked, every entry), then the verdict of the checks;
//! - [`log_check`]: one verdict per segment (CRC, sequence, bodies, torn tail or damage) and a
//!   result; with `--repair` it cuts a torn tail, and with `--discard-after-damage` it also
//!   gives up the log from a damaged place on (moved to `DATA_DIR/corrupt/wal.<unix_s>/`).
//!
//! Exit statuses as `logfiles_check`'s: [`EXIT_CLEAN`], [`EXIT_PROBLEMS`], [`EXIT_USAGE`],
//! [`EXIT_REPAIRED`]. A repair takes the data directory's lock, so it never runs under a live
//! node. Reading streams through the log reader's bounded buffers.

use crate::util::utc_time;
use dht_persist::dump::format::unix_now;
use dht_persist::layout::{segment_file_name, CORRUPT_DIR, WAL_DIR};
use dht_persist::wal::segment::list_segments;
use dht_persist::wal::{
    discard_from, EntryKind, LogEnd, LogEntry, LogError, LogReader, LoggedChange, ReadFrom,
    SegmentSummary,
};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Exit status: the log reads whole, every check passes.
pub const EXIT_CLEAN: u8 = 0;
/// Exit status: a torn tail, damage, a gap or an unreadable file (with `--repair`: not all of it
/// could be repaired).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status: usage error (also clap's), no log where the command looked, the directory is in
/// use (a repair), or the report could not be written.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: `--repair` found problems and repaired all of them (a new check exits 0).
pub const EXIT_REPAIRED: u8 = 3;

/// Why a verb could not run at all ([`EXIT_USAGE`]).
#[derive(Debug)]
pub struct UsageError(pub String);

impl From<io::Error> for UsageError {
    fn from(err: io::Error) -> UsageError {
        UsageError(format!("cannot write the report: {err}"))
    }
}

/// Where a log is: its directory and the data directory it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    pub log_dir: PathBuf,
    pub data_dir: PathBuf,
}

/// `dir` is a node's data directory (its log is `dir/wal`) or a log directory itself (it holds
/// segment files).
pub fn locate(dir: &Path) -> Result<LogLocation, UsageError> {
    if !dir.is_dir() {
        return Err(UsageError(format!("{} is not a directory", dir.display())));
    }
    let wal = dir.join(WAL_DIR);
    if wal.is_dir() {
        return Ok(LogLocation {
            log_dir: wal,
            data_dir: dir.to_path_buf(),
        });
    }
    let listing = list_segments(dir)
        .map_err(|err| UsageError(format!("cannot list {}: {err}", dir.display())))?;
    if listing.segments.is_empty() {
        return Err(UsageError(format!(
            "no change log in {}: neither a {WAL_DIR}/ directory nor segment files",
            dir.display()
        )));
    }
    let data_dir = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(LogLocation {
        log_dir: dir.to_path_buf(),
        data_dir,
    })
}

/// How reading the whole log ended.
enum Verdict {
    /// To its last byte.
    Clean(LogEnd),
    /// At a torn tail.
    Torn(LogEnd),
    Failed(LogError),
}

/// What reading the whole log found.
struct Scan {
    summaries: Vec<SegmentSummary>,
    others: Vec<PathBuf>,
    verdict: Verdict,
}

/// Reads the whole log, handing every entry to `on_entry`.
fn scan(log_dir: &Path, on_entry: &mut dyn FnMut(&LogEntry<'_>)) -> Scan {
    let mut reader = match LogReader::open(log_dir, ReadFrom::Start) {
        Ok(reader) => reader,
        Err(err) => {
            return Scan {
                summaries: Vec::new(),
                others: Vec::new(),
                verdict: Verdict::Failed(err),
            }
        }
    };
    let failure = loop {
        match reader.next_entry() {
            Ok(Some(entry)) => on_entry(&entry),
            Ok(None) => break None,
            Err(err) => break Some(err),
        }
    };
    let summaries = reader.summaries().to_vec();
    let others = reader.others().to_vec();
    let verdict = match (failure, reader.into_end()) {
        (Some(err), _) => Verdict::Failed(err),
        (None, Some(end)) if end.torn.is_some() => Verdict::Torn(end),
        (None, Some(end)) => Verdict::Clean(end),
        (None, None) => unreachable!("a reader that returned None has an end"),
    };
    Scan {
        summaries,
        others,
        verdict,
    }
}

/// A segment file's length, and the zeros after its last entry when there are any (space the
/// node wrote ahead: the end of its entries, `docs/formats.md`).
fn file_bytes(summary: &SegmentSummary) -> String {
    match summary.zeros_after {
        0 => format!("{} bytes", summary.file_len),
        zeros => format!(
            "{} bytes ({zeros} of them zeros after the last entry)",
            summary.file_len
        ),
    }
}

fn positions(summary: &SegmentSummary) -> String {
    match (summary.first_seq, summary.last_seq) {
        (Some(first), Some(last)) => format!("positions {first}..={last}"),
        _ => match summary.header {
            Some(header) => format!("empty (next position {})", header.first_seq),
            None => "no readable header".to_string(),
        },
    }
}

fn kinds(summary: &SegmentSummary) -> String {
    EntryKind::ALL
        .iter()
        .map(|kind| format!("{kind} {}", summary.kinds.get(*kind)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn segment_name(summary: &SegmentSummary) -> String {
    segment_file_name(summary.number)
}

/// One line per entry (`log-info --entries`).
fn entry_line(entry: &LogEntry<'_>) -> String {
    let what = match &entry.change {
        LoggedChange::Put { key, value, .. } => {
            format!("key {key:#018x}, {} value bytes", value.len())
        }
        LoggedChange::Remove { key, .. } => format!("key {key:#018x}"),
        LoggedChange::PutBatch { records, .. } => format!("{} records", records.len()),
        LoggedChange::RemoveKeys { keys, .. } => format!("{} keys", keys.len()),
        LoggedChange::RemoveChannel { .. } => String::new(),
        LoggedChange::PutVersion {
            key,
            version,
            value,
            ..
        } => format!(
            "key {key:#018x}, version {version}, {} value bytes",
            value.len()
        ),
        LoggedChange::RemoveVersion {
            key,
            version,
            stored_unix_s,
            ..
        } => format!("key {key:#018x}, version {version}, tombstone stored at {stored_unix_s}"),
    };
    format!(
        "  {:>12}  {:<13}  {}  {what}",
        entry.seq,
        entry.change.kind().name(),
        entry.change.channel()
    )
}

/// `dumptool log-info DIR [--entries]`: the log's segments, positions and entry counts, then
/// the checks' verdict. Returns the exit status.
pub fn log_info(dir: &Path, entries: bool, out: &mut impl Write) -> Result<u8, UsageError> {
    let location = locate(dir)?;
    writeln!(out, "change log {}", location.log_dir.display())?;
    let mut write_error = None;
    let mut on_entry = |entry: &LogEntry<'_>| {
        if entries && write_error.is_none() {
            write_error = writeln!(out, "{}", entry_line(entry)).err();
        }
    };
    let scan = scan(&location.log_dir, &mut on_entry);
    if let Some(err) = write_error {
        return Err(err.into());
    }
    for (summary, state) in scan.summaries.iter().zip(segment_states(&scan)) {
        let read = if summary.entries == 0 {
            positions(summary)
        } else {
            format!(
                "{}, {} entries ({}), {} records",
                positions(summary),
                summary.entries,
                kinds(summary),
                summary.records
            )
        };
        let detail = match state {
            SegmentState::Ok => read,
            SegmentState::TornFrom(offset) => format!("{read}; TORN TAIL from byte {offset}"),
            SegmentState::TornWhole => "TORN TAIL: holds no intact entry".to_string(),
            SegmentState::DamagedAt(offset) if summary.entries == 0 => {
                format!("DAMAGED at byte {offset}")
            }
            SegmentState::DamagedAt(offset) => format!("{read}; DAMAGED at byte {offset}"),
            SegmentState::NotRead => "not read (after the damage)".to_string(),
        };
        writeln!(
            out,
            "{}  {detail}, {}",
            segment_name(summary),
            file_bytes(summary)
        )?;
    }
    for other in &scan.others {
        writeln!(out, "{}  not a segment (left alone)", other.display())?;
    }
    write_totals(&scan, out)?;
    let (line, status) = match &scan.verdict {
        Verdict::Clean(_) => ("OK".to_string(), EXIT_CLEAN),
        Verdict::Torn(end) => (torn_verdict(end), EXIT_PROBLEMS),
        Verdict::Failed(err) => (format!("FAILED: {err}"), EXIT_PROBLEMS),
    };
    writeln!(out, "checks: {line}")?;
    Ok(status)
}

fn torn_verdict(end: &LogEnd) -> String {
    match &end.torn {
        Some(torn) => format!(
            "TORN TAIL: {torn}; the log ends at position {} (a crash's leftover: the node's next \
             start or `dumptool log-check --repair` cuts it)",
            end.last_seq
        ),
        None => "OK".to_string(),
    }
}

fn write_totals(scan: &Scan, out: &mut impl Write) -> io::Result<()> {
    let entries: u64 = scan.summaries.iter().map(|s| s.entries).sum();
    let bytes: u64 = scan.summaries.iter().map(|s| s.file_len).sum();
    let first = scan.summaries.iter().find_map(|s| s.first_seq);
    let last = scan.summaries.iter().rev().find_map(|s| s.last_seq);
    let range = match (first, last) {
        (Some(first), Some(last)) => format!(" (positions {first}..={last})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "summary: {} segments, {entries} entries{range}, {bytes} bytes; last written {}",
        scan.summaries.len(),
        newest_time(scan).unwrap_or_else(|| "never".to_string())
    )
}

/// When the newest segment was last written.
fn newest_time(scan: &Scan) -> Option<String> {
    let last = scan.summaries.last()?;
    let modified = std::fs::metadata(&last.path).ok()?.modified().ok()?;
    let secs = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(utc_time(secs))
}

/// How `log-check` repairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// Cut a torn tail.
    pub repair: bool,
    /// Also give up the log from damage on (moved aside, not deleted).
    pub discard_after_damage: bool,
}

/// `dumptool log-check DIR [--repair [--discard-after-damage]]`. Returns the exit status.
pub fn log_check(
    dir: &Path,
    options: RepairOptions,
    out: &mut impl Write,
) -> Result<u8, UsageError> {
    if options.discard_after_damage && !options.repair {
        return Err(UsageError(
            "--discard-after-damage goes with --repair".to_string(),
        ));
    }
    let location = locate(dir)?;
    // A repair truncates and moves files: never under a running node (it holds this lock).
    let _lock = if options.repair {
        Some(node_core::data_lock::DataDirLock::acquire(&location.data_dir).map_err(UsageError)?)
    } else {
        None
    };
    let scan = scan(&location.log_dir, &mut |_| {});
    write_verdicts(&scan, out)?;
    write_totals(&scan, out)?;
    match scan.verdict {
        Verdict::Clean(_) => {
            writeln!(out, "result: clean")?;
            Ok(EXIT_CLEAN)
        }
        Verdict::Torn(end) if options.repair => cut_and_recheck(&location, end, out),
        Verdict::Torn(_) => {
            writeln!(out, "result: torn tail (--repair cuts it)")?;
            Ok(EXIT_PROBLEMS)
        }
        Verdict::Failed(err) => repair_damage(&location, err, options, out),
    }
}

/// What the checks say of one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentState {
    Ok,
    /// The torn tail starts here, at this offset.
    TornFrom(u64),
    /// After the torn tail's start: holds no intact entry.
    TornWhole,
    /// Reading stopped here, at this offset.
    DamagedAt(u64),
    /// After the damage: not read.
    NotRead,
}

/// The state of each segment of `scan`, in order.
fn segment_states(scan: &Scan) -> Vec<SegmentState> {
    let torn = match &scan.verdict {
        Verdict::Torn(end) => end.torn.as_ref(),
        _ => None,
    };
    let damaged_at = match &scan.verdict {
        Verdict::Failed(err) => discard_point(err),
        _ => None,
    };
    let mut after_damage = false;
    let mut states = Vec::with_capacity(scan.summaries.len());
    for summary in &scan.summaries {
        let path = &summary.path;
        let state = if let Some(tail) = torn.filter(|t| t.segment == *path) {
            SegmentState::TornFrom(tail.offset)
        } else if torn.is_some_and(|t| t.later.contains(path)) {
            SegmentState::TornWhole
        } else if let Some((_, offset)) = damaged_at.as_ref().filter(|(p, _)| p == path) {
            after_damage = true;
            SegmentState::DamagedAt(*offset)
        } else if after_damage {
            SegmentState::NotRead
        } else {
            SegmentState::Ok
        };
        states.push(state);
    }
    states
}

/// What a segment held before the place its checks failed.
fn held_before(summary: &SegmentSummary) -> String {
    if summary.entries == 0 {
        return "no entry before it".to_string();
    }
    format!(
        "{}, {} entries, {} bytes before it",
        positions(summary),
        summary.entries,
        summary.good_len
    )
}

/// One line per segment: ok, torn, damaged, or not read.
fn write_verdicts(scan: &Scan, out: &mut impl Write) -> io::Result<()> {
    for (summary, state) in scan.summaries.iter().zip(segment_states(scan)) {
        let verdict = match state {
            SegmentState::Ok => format!(
                "ok, {}, {} entries, {}",
                positions(summary),
                summary.entries,
                file_bytes(summary)
            ),
            SegmentState::TornFrom(offset) => {
                format!("TORN TAIL from byte {offset} ({})", held_before(summary))
            }
            SegmentState::TornWhole => "TORN TAIL: holds no intact entry".to_string(),
            SegmentState::DamagedAt(offset) => {
                format!("DAMAGED at byte {offset} ({})", held_before(summary))
            }
            SegmentState::NotRead => "not read (after the damage)".to_string(),
        };
        writeln!(out, "{}: {verdict}", summary.path.display())?;
    }
    for other in &scan.others {
        writeln!(out, "{}: not checked: not a segment", other.display())?;
    }
    match &scan.verdict {
        Verdict::Failed(err) => writeln!(out, "problem: {err}"),
        Verdict::Torn(LogEnd {
            torn: Some(tail), ..
        }) => writeln!(out, "problem: {tail}"),
        _ => Ok(()),
    }
}

/// Where the log must be given up from to get past `err`: the damaged place, or the segment
/// after a gap or a missing segment.
fn discard_point(err: &LogError) -> Option<(PathBuf, u64)> {
    match err {
        LogError::Damaged(damage) => Some((damage.segment.clone(), damage.offset)),
        LogError::Gap { path, .. } => Some((path.clone(), 0)),
        LogError::MissingSegment { dir, after, .. } => {
            Some((dir.join(segment_file_name(*after)), 0))
        }
        LogError::Io { .. } | LogError::Missing { .. } => None,
    }
}

fn cut_and_recheck(
    location: &LogLocation,
    mut end: LogEnd,
    out: &mut impl Write,
) -> Result<u8, UsageError> {
    match end.cut_torn_tail() {
        Ok(Some(torn)) => writeln!(out, "repair: cut the {torn}")?,
        Ok(None) => {}
        Err(err) => {
            writeln!(out, "repair: FAILED: {err}")?;
            writeln!(out, "result: problems remain")?;
            return Ok(EXIT_PROBLEMS);
        }
    }
    recheck(location, out)
}

/// After a repair: the log must now read whole.
fn recheck(location: &LogLocation, out: &mut impl Write) -> Result<u8, UsageError> {
    let again = scan(&location.log_dir, &mut |_| {});
    let last = match &again.verdict {
        Verdict::Clean(end) => end.last_seq,
        Verdict::Torn(end) => {
            writeln!(out, "result: problems remain: {}", torn_verdict(end))?;
            return Ok(EXIT_PROBLEMS);
        }
        Verdict::Failed(err) => {
            writeln!(out, "result: problems remain: {err}")?;
            return Ok(EXIT_PROBLEMS);
        }
    };
    writeln!(out, "result: repaired; the log now ends at position {last}")?;
    Ok(EXIT_REPAIRED)
}

fn repair_damage(
    location: &LogLocation,
    err: LogError,
    options: RepairOptions,
    out: &mut impl Write,
) -> Result<u8, UsageError> {
    let point = discard_point(&err);
    let found = point.is_some();
    let Some((segment, offset)) = point.filter(|_| options.discard_after_damage) else {
        let hint = match (found, options.repair) {
            (false, _) => "no repair can get past this",
            (true, false) => "--repair --discard-after-damage gives up the log from there on",
            (true, true) => {
                "not repaired: the entries after the damage would be lost; \
                 --discard-after-damage gives them up (moved aside, not deleted)"
            }
        };
        writeln!(out, "result: DAMAGED ({hint})")?;
        return Ok(EXIT_PROBLEMS);
    };
    let aside = location
        .data_dir
        .join(CORRUPT_DIR)
        .join(format!("wal.{}", unix_now()));
    match discard_from(&location.log_dir, &segment, offset, &aside) {
        Ok(discarded) => writeln!(
            out,
            "repair: gave up {} bytes from byte {offset} of {} on (and {} later segment(s)), \
             moved to {}",
            discarded.bytes,
            segment.display(),
            discarded.segments.len() - usize::from(offset == 0),
            aside.display()
        )?,
        Err(err) => {
            writeln!(out, "repair: FAILED: {err}")?;
            writeln!(out, "result: problems remain")?;
            return Ok(EXIT_PROBLEMS);
        }
    }
    recheck(location, out)
}
