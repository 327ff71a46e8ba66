//! The node's two log files: `root.log` (events, through a global `tracing` subscriber) and
//! `stats.log` (one line per stats interval, written directly).
//!
//! Owns: [`ReopenableFile`] (an append-mode file that SIGHUP can reopen after logrotate moved
//! it), [`init`] (creates the log directory, opens both files, installs the subscriber) and
//! [`NodeLogs`] (the handles the signal handler reopens and the stats timer writes to).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

/// Name of the event log inside the log directory.
pub const ROOT_LOG_NAME: &str = "root.log";
/// Name of the stats log inside the log directory.
pub const STATS_LOG_NAME: &str = "stats.log";

/// An append-mode file that can be reopened at its path (after logrotate renamed it away).
/// Clones share the same handle, so a reopen is seen by every writer.
#[derive(Debug, Clone)]
pub struct ReopenableFile {
    file: Arc<Mutex<File>>,
    path: Arc<PathBuf>,
}

impl ReopenableFile {
    /// Opens `path` for appending, creating it if missing.
    pub fn open(path: &Path) -> io::Result<ReopenableFile> {
        let file = open_append(path)?;
        Ok(ReopenableFile {
            file: Arc::new(Mutex::new(file)),
            path: Arc::new(path.to_path_buf()),
        })
    }

    /// Opens the path anew (creating the file if it was moved away) and swaps the handle. On
    /// failure the old handle stays in use, so logging goes on into the renamed file.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        // Nothing is buffered in user space, so dropping the old handle loses no line.
        *self.lock() = fresh;
        Ok(())
    }

    /// The path this file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A panic while holding the lock cannot leave a `File` half-updated, so a poisoned lock
    /// is safe to keep using; refusing to log afterwards would only hide what happened.
    fn lock(&self) -> MutexGuard<'_, File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open log file {}: {e}", path.display()),
            )
        })
}

impl Write for ReopenableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().write(buf)
    }

    /// One lock for the whole buffer, so a line is never interleaved with another writer's.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.lock().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush()
    }
}

impl<'a> MakeWriter<'a> for ReopenableFile {
    type Writer = ReopenableFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Why the logs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create log directory {}: {source}", .path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    /// `source` comes from [`ReopenableFile::open`] and already names the path.
    #[error("{source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("bad log level {level:?}: expected one of trace, debug, info, warn, error")]
    BadLevel { level: String },
}

/// Keeps the background log writer alive; dropping it flushes what is queued for root.log.
/// Hold it in `main` until the node has shut down.
#[derive(Debug)]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// The node's log files, for the SIGHUP handler (reopen) and the stats timer (write a line).
#[derive(Debug, Clone)]
pub struct NodeLogs {
    root: ReopenableFile,
    stats: ReopenableFile,
    subscriber_installed: bool,
}

/// Sets up `log_dir/root.log` and `log_dir/stats.log` and installs the global `tracing`
/// subscriber writing events at `level` and above to root.log (ERROR events also to stderr, so
/// that a failed start is visible on the terminal or in the journal).
///
/// If a global subscriber is already installed (tests, a second call), the files are still
/// opened and returned; events keep going to the first subscriber.
pub fn init(log_dir: &Path, level: &str) -> Result<(NodeLogs, LogGuard), LogError> {
    let max_level = parse_level(level)?;
    std::fs::create_dir_all(log_dir).map_err(|source| LogError::CreateDir {
        path: log_dir.to_path_buf(),
        source,
    })?;
    let root = open_log(&log_dir.join(ROOT_LOG_NAME))?;
    let stats = open_log(&log_dir.join(STATS_LOG_NAME))?;

    // Not lossy: when the writer thread falls behind, logging call sites wait (backpressure)
    // instead of silently dropping lines, because a missing line is worse than a slower log
    // call when diagnosing an incident.
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(root.clone());
    let to_stderr = io::stderr.with_max_level(tracing::Level::ERROR);
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer.and(to_stderr))
        .with_ansi(false)
        .with_target(true)
        .with_level(true)
        .with_max_level(max_level)
        .finish();
    let subscriber_installed = subscriber.try_init().is_ok();

    let logs = NodeLogs {
        root,
        stats,
        subscriber_installed,
    };
    Ok((logs, LogGuard { _worker: worker }))
}

fn parse_level(level: &str) -> Result<tracing::Level, LogError> {
    let parsed = match level {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "info" => tracing::Level::INFO,
        "warn" => tracing::Level::WARN,
        "error" => tracing::Level::ERROR,
        _ => {
            return Err(LogError::BadLevel {
                level: level.to_string(),
            })
        }
    };
    Ok(parsed)
}

fn open_log(path: &Path) -> Result<ReopenableFile, LogError> {
    ReopenableFile::open(path).map_err(|source| LogError::Open {
        path: path.to_path_buf(),
        source,
    })
}

impl NodeLogs {
    /// Reopens both files at their paths (SIGHUP after logrotate). Tries both even if the
    /// first fails, and returns the first error.
    pub fn reopen(&self) -> io::Result<()> {
        let root = self.root.reopen();
        let stats = self.stats.reopen();
        root.and(stats)
    }

    /// Appends `line` to stats.log behind a UTC timestamp with its zone ([`utc_timestamp`]), and
    /// flushes.
    /// A trailing newline in `line` is dropped: the timestamp marks where each record starts.
    pub fn write_stats_line(&self, line: &str) -> io::Result<()> {
        let record = format!(
            "{} {}\n",
            utc_timestamp(SystemTime::now()),
            line.trim_end_matches('\n')
        );
        // A single write_all under one lock, so a record is never split by another writer.
        let mut stats = self.stats.clone();
        stats.write_all(record.as_bytes())?;
        stats.flush()
    }

    /// Path of stats.log.
    pub fn stats_path(&self) -> &Path {
        self.stats.path()
    }

    /// Path of root.log.
    pub fn root_path(&self) -> &Path {
        self.root.path()
    }

    /// False if another global subscriber was already in place, so events do not reach this
    /// root.log.
    pub fn subscriber_installed(&self) -> bool {
        self.subscriber_installed
    }
}

/// Formats `time` as RFC 3339 in UTC with microseconds and the zone, `2026-01-31T12:00:00.123456Z`:
/// the form of root.log's timestamps. A clock before 1970 prints the epoch.
pub fn utc_timestamp(time: SystemTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    let time = time.max(UNIX_EPOCH);
    time::OffsetDateTime::from(time)
        .format(FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_string())
}

/// Formats a time in Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC), for messages and reports that
/// name the zone themselves. Times beyond the year 9999 print as that year's end.
pub fn utc_date_time(secs: u64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let at = time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
    at.format(FORMAT)
        .unwrap_or_else(|_| "9999-12-31 23:59:59".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("read log")
    }

    #[test]
    fn timestamps_are_utc_calendar_dates_with_the_zone() {
        let at = |secs| utc_timestamp(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00.000000Z");
        assert_eq!(
            utc_timestamp(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            utc_timestamp(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(utc_date_time(4_107_542_399), "2100-02-28 23:59:59");
        assert_eq!(utc_date_time(u64::MAX), "9999-12-31 23:59:59");
    }

    #[test]
    fn stats_line_survives_logrotate_rename_and_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_dir = dir.path().join("log");
        let (logs, _guard) = init(&log_dir, "info").expect("init logs");
        assert_eq!(logs.stats_path(), log_dir.join("stats.log"));
        assert_eq!(logs.root_path(), log_dir.join("root.log"));

        logs.write_stats_line("before rotate").expect("write");
        let rotated = log_dir.join("stats.log.1");
        std::fs::rename(logs.stats_path(), &rotated).expect("rename like logrotate");
        logs.write_stats_line("still old file")
            .expect("write before reopen");
        logs.reopen().expect("reopen");
        logs.write_stats_line("after rotate\n").expect("write");

        let old = read(&rotated);
        let new = read(logs.stats_path());
        assert!(
            old.contains(" before rotate\n") && old.contains(" still old file\n"),
            "{old}"
        );
        assert!(!old.contains("after rotate"), "{old}");
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.ends_with(" after rotate\n"), "{new}");
        // "YYYY-MM-DDTHH:MM:SS.ffffffZ " prefix, as root.log's.
        assert_eq!(new.as_bytes()[10], b'T');
        assert_eq!(&new[26..28], "Z ");
    }

    #[test]
    fn root_log_receives_events_when_installed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (logs, guard) = init(dir.path(), "debug").expect("init logs");
        tracing::info!(target: "log_test", "hello root log");
        drop(guard); // flushes the writer thread
        if logs.subscriber_installed() {
            let text = read(logs.root_path());
            assert!(text.contains("INFO") && text.contains("log_test"), "{text}");
            assert!(text.contains("hello root log"), "{text}");
            assert!(!text.contains('\u{1b}'), "no ANSI escapes: {text:?}");
        }
    }

    #[test]
    fn second_init_does_not_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = init(&dir.path().join("a"), "info").expect("first init");
        let second = init(&dir.path().join("b"), "warn").expect("second init");
        assert!(!second.0.subscriber_installed());
        assert!(second.0.stats_path().exists());
        drop((first, second));
    }

    #[test]
    fn bad_level_and_unwritable_dir_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let message = init(dir.path(), "verbose")
            .expect_err("bad level")
            .to_string();
        assert!(message.contains("verbose"), "{message}");

        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").expect("write");
        let message = init(&blocker.join("log"), "info")
            .expect_err("not a dir")
            .to_string();
        assert!(
            message.contains(&blocker.display().to_string()),
            "{message}"
        );

        // root.log taken by a directory: the open fails, naming the file once.
        let taken = dir.path().join("taken");
        std::fs::create_dir_all(taken.join("root.log")).expect("mkdir");
        let message = init(&taken, "info")
            .expect_err("root.log is a dir")
            .to_string();
        assert_eq!(message.matches("root.log").count(), 1, "{message}");
    }

    #[test]
    fn reopenable_file_clones_share_the_reopened_handle() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.log");
        let file = ReopenableFile::open(&path).expect("open");
        let mut writer = file.make_writer();
        writer.write_all(b"one\n").expect("write");
        std::fs::rename(&path, dir.path().join("x.log.1")).expect("rename");
        file.reopen().expect("reopen");
        writer.write_all(b"two\n").expect("write");
        assert_eq!(read(&path), "two\n");
    }
}
