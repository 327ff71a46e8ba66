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

use dht_persist::wal::{AppendError, Change, LogWriter, WriteError, Written};
use std::path::Path;

/// The log writer, or (durability = "none") the position dumps cover.
#[derive(Debug)]
pub struct EngineLog {
    writer: Option<LogWriter>,
    /// Without a writer: the last position of the log replayed at start (dumps cover it).
    fixed_position: Option<u64>,
    /// Bytes written to the log since start.
    written_bytes: u64,
}

impl EngineLog {
    /// No log at all (tests, tools): dumps carry no position.
    pub fn none() -> EngineLog {
        EngineLog {
            writer: None,
            fixed_position: None,
            written_bytes: 0,
        }
    }

    /// Logging through `writer`.
    pub fn writing(writer: LogWriter) -> EngineLog {
        EngineLog {
            writer: Some(writer),
            fixed_position: None,
            written_bytes: 0,
        }
    }

    /// No logging, but dumps cover `position` (a log replayed at start under "none").
    pub fn fixed(position: u64) -> EngineLog {
        EngineLog {
            writer: None,
            fixed_position: Some(position),
            written_bytes: 0,
        }
    }

    pub fn is_writing(&self) -> bool {
        self.writer.is_some()
    }

    pub fn writer(&self) -> Option<&LogWriter> {
        self.writer.as_ref()
    }

    pub fn writer_mut(&mut self) -> Option<&mut LogWriter> {
        self.writer.as_mut()
    }

    /// The position every change applied so far has (what a dump started now covers).
    pub fn position(&self) -> Option<u64> {
        match &self.writer {
            Some(writer) => Some(writer.next_seq() - 1),
            None => self.fixed_position,
        }
    }

    /// Appends `change`; `Ok` means it is in the group buffer and may be applied.
    pub fn append(&mut self, change: &Change<'_>) -> Result<(), String> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        let mut result = writer.append(change);
        if matches!(
            result,
            Err(AppendError::GroupFull { .. } | AppendError::WriteOutFirst)
        ) {
            match writer.write_out() {
                Ok(written) => self.written_bytes += written.map_or(0, |w| w.bytes),
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
            Ok(written) => {
                self.written_bytes += written.map_or(0, |w| w.bytes);
                written
            }
            Err(error) => stop_on_lost_group(&error),
        }
    }

    /// Bytes written to the log since start.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    pub fn dir(&self) -> Option<&Path> {
        self.writer.as_ref().map(LogWriter::dir)
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
