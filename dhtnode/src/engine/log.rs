//! The engine's change log (issue #18): every change the engine makes for a request is appended
//! to the log ([`dht_persist::wal::LogWriter`]) after its checks passed and before it is
//! applied, so that a change the log refuses is not applied (its request gets InternalError
//! naming the cause: [`super::EngineError::LogUnavailable`]). Appends go to the writer's group
//! buffer; the node writes the group out once per event-loop pass, before any reply leaves
//! ([`EngineLog::write_out`]), and fsyncs it according to its durability policy.
//!
//! A group that cannot be written after its changes were applied (an I/O error: a full disk
//! is refused at append time, since segments are reserved when started) leaves memory ahead of
//! the log with replies that must not go out: the node stops ([`stop_on_lost_group`]) and a
//! restart replays the log, which holds exactly the changes that were answered.
//!
//! A node started on a full disk has no room for its first segment: it starts anyway, with the
//! segment *pending* ([`EngineLog::pending`]). Every change is refused (InternalError naming
//! the full disk, nothing applied) until an append finds room to start the segment; reads go on.

use dht_persist::wal::{
    AppendError, Change, LogEnd, LogError, LogOptions, LogWriter, WriteError, Written,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a pending log tries again to start its segment (appends in between are refused
/// at once, so a flood of writes on a full disk costs no file system calls).
const PENDING_RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A writer continuing after `end` at `next_seq`, with its segments' space reserved on disk
/// (see [`LogWriter::reserve_space`]). Returns whether the file system can reserve space.
pub fn start_writer(
    end: &LogEnd,
    next_seq: u64,
    options: LogOptions,
) -> Result<(LogWriter, bool), LogError> {
    let mut writer = LogWriter::create(end, next_seq, options)?;
    let reserving = writer.reserve_space();
    Ok((writer, reserving))
}

/// Whether `error` says the disk (or the quota) is full.
pub fn is_disk_full(error: &LogError) -> bool {
    matches!(error, LogError::Io { source, .. }
        if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
}

/// The log's first segment, waiting for room on the disk (see the module doc).
#[derive(Debug)]
struct PendingSegment {
    end: LogEnd,
    next_seq: u64,
    options: LogOptions,
    /// Why the last try failed, and when it was.
    last_error: String,
    last_try: Instant,
}

/// The log writer, or (durability = "none") the position dumps cover.
#[derive(Debug)]
pub struct EngineLog {
    writer: Option<LogWriter>,
    pending: Option<PendingSegment>,
    /// Without a writer: the last position of the log replayed at start (dumps cover it).
    fixed_position: Option<u64>,
    /// Without a writer: the directory of the log replayed at start, until its segments are
    /// deleted (see [`delete_replayed`](Self::delete_replayed)).
    replayed_dir: Option<PathBuf>,
}

impl EngineLog {
    /// No log at all (tests, tools): dumps carry no position.
    pub fn none() -> EngineLog {
        EngineLog {
            writer: None,
            pending: None,
            fixed_position: None,
            replayed_dir: None,
        }
    }

    /// Logging through `writer`.
    pub fn writing(writer: LogWriter) -> EngineLog {
        EngineLog {
            writer: Some(writer),
            ..EngineLog::none()
        }
    }

    /// Logging, once the first segment (after `end`, at `next_seq`) finds room on the disk:
    /// until then every append is refused with `error` (see the module doc).
    pub fn pending(end: LogEnd, next_seq: u64, options: LogOptions, error: &LogError) -> EngineLog {
        assert!(
            next_seq > end.last_seq,
            "a pending log continues after its end"
        );
        EngineLog {
            pending: Some(PendingSegment {
                end,
                next_seq,
                options,
                last_error: error.to_string(),
                last_try: Instant::now(),
            }),
            ..EngineLog::none()
        }
    }

    /// No logging, but dumps cover `position`: the last of the log in `dir` replayed at start
    /// under "none" (a node that kept a log before).
    pub fn fixed(position: u64, dir: PathBuf) -> EngineLog {
        EngineLog {
            fixed_position: Some(position),
            replayed_dir: Some(dir),
            ..EngineLog::none()
        }
    }

    /// Without a writer ("none"): once dumps cover `covered`, at or past every entry replayed
    /// at start, deletes the replayed log's segments (they would only be replayed again, for
    /// nothing, at every start). Returns the segments deleted.
    pub fn delete_replayed(&mut self, covered: u64) -> std::io::Result<Vec<PathBuf>> {
        let (Some(position), Some(dir)) = (self.fixed_position, &self.replayed_dir) else {
            return Ok(Vec::new());
        };
        if self.writer.is_some() || covered < position {
            return Ok(Vec::new());
        }
        let listing = dht_persist::wal::segment::list_segments(dir)?;
        let mut deleted = Vec::new();
        for segment in &listing.segments {
            std::fs::remove_file(&segment.path)?;
            deleted.push(segment.path.clone());
        }
        if !deleted.is_empty() {
            dht_persist::layout::sync_dir(dir)?;
        }
        self.replayed_dir = None;
        Ok(deleted)
    }

    /// Whether changes go to a log (one written now, or one waiting for room on the disk).
    pub fn is_writing(&self) -> bool {
        self.writer.is_some() || self.pending.is_some()
    }

    pub fn writer(&self) -> Option<&LogWriter> {
        self.writer.as_ref()
    }

    pub fn writer_mut(&mut self) -> Option<&mut LogWriter> {
        self.writer.as_mut()
    }

    /// The position every change applied so far has (what a dump started now covers).
    pub fn position(&self) -> Option<u64> {
        match (&self.writer, &self.pending) {
            (Some(writer), _) => Some(writer.next_seq() - 1),
            (None, Some(pending)) => Some(pending.next_seq - 1),
            (None, None) => self.fixed_position,
        }
    }

    /// Starts the pending first segment if the disk has room now (tried at most every
    /// [`PENDING_RETRY_INTERVAL`]); the reason it cannot otherwise.
    fn start_pending(&mut self) -> Result<(), String> {
        let Some(pending) = &mut self.pending else {
            return Ok(());
        };
        if pending.last_try.elapsed() >= PENDING_RETRY_INTERVAL {
            pending.last_try = Instant::now();
            match start_writer(&pending.end, pending.next_seq, pending.options) {
                Ok((writer, _)) => {
                    tracing::info!(
                        "change log: the disk has room again; the log continues at position {} \
                         in {}",
                        pending.next_seq,
                        writer.segment().1.display()
                    );
                    self.writer = Some(writer);
                    self.pending = None;
                    return Ok(());
                }
                Err(error) => pending.last_error = error.to_string(),
            }
        }
        Err(format!(
            "the change log cannot start a segment: {}",
            pending.last_error
        ))
    }

    /// Appends `change`; `Ok` means it is in the group buffer and may be applied.
    pub fn append(&mut self, change: &Change<'_>) -> Result<(), String> {
        self.start_pending()?;
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        let mut result = writer.append(change);
        if matches!(
            result,
            Err(AppendError::GroupFull { .. } | AppendError::WriteOutFirst)
        ) {
            match writer.write_out() {
                Ok(_) => {}
                Err(error) => stop_on_lost_group(&error),
            }
            result = writer.append(change);
        }
        result.map(drop).map_err(|error| error.to_string())
    }

    /// Writes the buffered group out (see the module doc for a failure).
    pub fn write_out(&mut self) -> Option<Written> {
        let writer = self.writer.as_mut()?;
        match writer.write_out() {
            Ok(written) => written,
            Err(error) => stop_on_lost_group(&error),
        }
    }

    /// Bytes written to the log since start: the headers and entries of the segments the
    /// writer started ([`LogWriter::bytes_written`]).
    pub fn written_bytes(&self) -> u64 {
        self.writer.as_ref().map_or(0, LogWriter::bytes_written)
    }

    pub fn dir(&self) -> Option<&Path> {
        match (&self.writer, &self.pending) {
            (Some(writer), _) => Some(writer.dir()),
            (None, Some(pending)) => Some(&pending.end.dir),
            (None, None) => None,
        }
    }
}

/// A group of applied changes could not be written to the log: the node stops rather than
/// answer them (see the module doc). Exit status 74 (EX_IOERR).
pub fn stop_on_lost_group(error: &WriteError) -> ! {
    tracing::error!(
        "STOPPING: {error}. Those changes are applied in memory but not in the change log, and \
         their replies have not been sent; a restart replays the log, which holds every change \
         that was answered"
    );
    eprintln!("dhtnode: stopping: {error}");
    std::process::exit(74)
}
