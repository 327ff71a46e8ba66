//! Start-up loading of a data directory.
//!
//! For each channel, the files are taken in this order:
//!
//! - `<ch>.dump` when present. If it fails any check, an ERROR line says which file, what failed
//!   and how old the backup is, the bad file is moved to `corrupt/<ch>.<unix_s>.dump` (so the next
//!   dump cannot rotate it over the good backup, and it stays available for inspection), and
//!   `<ch>.dump.backup` is loaded instead. If that fails too, it is moved to `corrupt/` as well
//!   and the channel starts empty (ERROR line, and the report says so).
//! - `<ch>.dump.backup` alone (a crash between the two renames of a dump): loaded, with a warning.
//! - `<ch>.tcm` (the reference system's format) when there is neither `.dump` nor `.backup`:
//!   imported (see [`crate::tcm`]); a truncated `.tcm` keeps the records before the cut, with an
//!   ERROR line. A `.tcm` next to a `.dump` or `.backup` is ignored (info line).
//!
//! A `<ch>.dump.tmp` is a dump that never finished (the writer renames it into place only once
//! it is complete and fsynced): it is never loaded, and it is removed with a warning that says
//! which file of the channel is loaded instead, or that the channel has none (its first dump was
//! interrupted). One process per data directory (`node_core::data_lock`) makes this safe. The
//! `removed/` and `corrupt/` subdirectories, the change log's `wal/`, the state file and the lock
//! are skipped; any other
//! entry, and any file whose name is not `<valid channel name>.<known suffix>`, is ignored with a
//! warning ([`crate::layout`] names every file).
//!
//! Each channel is built in a fresh [`LoadTarget::Channel`] and committed only once its file has
//! loaded completely, so a file that fails half-way leaves nothing behind.
//!
//! Records with an empty value or a value longer than `max_value_bytes` are skipped and counted.
//! Records outside the node's hash range follow the [`OutOfRangePolicy`].
//!
//! Each channel's report names the change-log position its file covers
//! ([`ChannelLoadReport::log_position`]; 0 for a dump without one): the channel's log entries
//! after it are the ones a replay of the change log ([`crate::wal`]) applies on top.
//!
//! `channel` loads one channel; this module finds the channels and reports.

mod channel;

#[cfg(test)]
mod tests;

use crate::layout::{self, ChannelFileKind, Entry, CORRUPT_DIR, REMOVED_DIR, WAL_DIR};
use node_core::protocol::dht::HashRange;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What to do with a loaded record whose key is outside the node's hash range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutOfRangePolicy {
    /// Keep it (the node serves it to readers that ask; counted in the report).
    #[default]
    Load,
    /// Skip it (counted; one warning per channel).
    Ignore,
    /// Abort start-up, naming the file and the key.
    Fatal,
}

impl std::str::FromStr for OutOfRangePolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<OutOfRangePolicy, String> {
        match text {
            "load" => Ok(OutOfRangePolicy::Load),
            "ignore" => Ok(OutOfRangePolicy::Ignore),
            "fatal" => Ok(OutOfRangePolicy::Fatal),
            _ => Err(format!(
                "unknown out-of-range policy {text:?} (expected load, ignore or fatal)"
            )),
        }
    }
}

impl std::fmt::Display for OutOfRangePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutOfRangePolicy::Load => "load",
            OutOfRangePolicy::Ignore => "ignore",
            OutOfRangePolicy::Fatal => "fatal",
        })
    }
}

/// What to do at start when a dump covers the change log only to a position before the log's
/// first entry (`[dht] log_gap`): the changes in between are in neither, as after an old dump
/// was restored or log segments were deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogGapPolicy {
    /// Refuse to start, naming the channels and both positions.
    #[default]
    Fatal,
    /// Start with the dumps and the log as they are (an ERROR line names what is missing).
    Load,
}

impl std::str::FromStr for LogGapPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<LogGapPolicy, String> {
        match text {
            "fatal" => Ok(LogGapPolicy::Fatal),
            "load" => Ok(LogGapPolicy::Load),
            _ => Err(format!(
                "unknown log-gap policy {text:?} (expected fatal or load)"
            )),
        }
    }
}

impl std::fmt::Display for LogGapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogGapPolicy::Fatal => "fatal",
            LogGapPolicy::Load => "load",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub policy: OutOfRangePolicy,
    /// The node's hash range.
    pub range: HashRange,
    /// Longer values are skipped.
    pub max_value_bytes: usize,
}

/// What the loading rules make of one record: the one place they are written, for the
/// loader's dumps and the dht node's change-log replay alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Load,
    /// An empty value: skipped.
    Empty,
    /// Longer than `max_value_bytes`: skipped.
    TooLarge,
    /// Outside the range, loaded (policy `load`).
    OutOfRangeLoaded,
    /// Outside the range, skipped (policy `ignore`).
    OutOfRangeIgnored,
    /// Outside the range under policy `fatal`: the start stops.
    OutOfRangeFatal,
}

impl LoadOptions {
    /// What these rules make of a record of `key` with `value`.
    pub fn admission(&self, key: u64, value: &[u8]) -> Admission {
        if value.is_empty() {
            return Admission::Empty;
        }
        if value.len() > self.max_value_bytes {
            return Admission::TooLarge;
        }
        if self.range.is_responsible_for(key) {
            return Admission::Load;
        }
        match self.policy {
            OutOfRangePolicy::Load => Admission::OutOfRangeLoaded,
            OutOfRangePolicy::Ignore => Admission::OutOfRangeIgnored,
            OutOfRangePolicy::Fatal => Admission::OutOfRangeFatal,
        }
    }
}

/// Where loaded records go (the engine implements this).
///
/// A channel is created with `new_channel`, filled with `insert`, and handed back with `commit`
/// only when its file loaded completely; otherwise it is dropped. So `insert` should touch only
/// the channel, and node-wide accounting belongs in `commit`.
pub trait LoadTarget {
    type Channel;
    fn new_channel(&mut self, name: &str) -> Self::Channel;
    /// A record with its version (0 for a file without versions: dump format 1, `.tcm`).
    fn insert(&mut self, channel: &mut Self::Channel, key: u64, version: u64, value: &[u8]);
    /// A tombstone of a dump of format 2: the key's removal version, when it was stored.
    fn insert_tombstone(
        &mut self,
        channel: &mut Self::Channel,
        key: u64,
        version: u64,
        stored_unix_s: u64,
    );
    fn commit(&mut self, name: &str, channel: Self::Channel);
}

/// Which file a channel's records came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Dump,
    Backup,
    Tcm,
    /// Nothing loadable: the channel starts empty (and is not committed).
    Nothing,
}

/// What loading one channel did.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelLoadReport {
    pub channel: String,
    pub source: LoadSource,
    /// The file the records came from.
    pub file: Option<PathBuf>,
    /// Records inserted.
    pub loaded: u64,
    /// Value bytes inserted.
    pub value_bytes: u64,
    /// Records outside the node's range (inserted under `load`, skipped under `ignore`).
    pub out_of_range: u64,
    pub empty_values: u64,
    pub too_large: u64,
    /// `.tcm` only: keys neither 16 hex characters nor 8 raw bytes.
    pub invalid_keys: u64,
    /// `.tcm` only: the file ended before its end marker (the records before it were loaded).
    pub truncated: bool,
    /// Files that failed, each with what failed.
    pub failures: Vec<String>,
    pub seconds: f64,
    /// The change-log position the loaded file covers
    /// ([`DumpHeader::log_position`](crate::dump::format::DumpHeader::log_position)): replay
    /// applies this channel's log entries after it. 0 — nothing covered — for a dump without a
    /// position, a `.tcm` import, or a channel that loaded nothing.
    pub log_position: u64,
}

impl ChannelLoadReport {
    fn new(channel: &str) -> ChannelLoadReport {
        ChannelLoadReport {
            channel: channel.to_owned(),
            source: LoadSource::Nothing,
            file: None,
            loaded: 0,
            value_bytes: 0,
            out_of_range: 0,
            empty_values: 0,
            too_large: 0,
            invalid_keys: 0,
            truncated: false,
            failures: Vec::new(),
            seconds: 0.0,
            log_position: 0,
        }
    }

    /// Records of the files read so far that were loaded or skipped (under `load`, records
    /// out of range are among the loaded).
    fn records_seen(&self, policy: OutOfRangePolicy) -> u64 {
        let skipped_out_of_range = match policy {
            OutOfRangePolicy::Ignore => self.out_of_range,
            OutOfRangePolicy::Load | OutOfRangePolicy::Fatal => 0,
        };
        self.loaded + self.empty_values + self.too_large + self.invalid_keys + skipped_out_of_range
    }

    fn reset_counts(&mut self) {
        self.loaded = 0;
        self.value_bytes = 0;
        self.out_of_range = 0;
        self.empty_values = 0;
        self.too_large = 0;
        self.invalid_keys = 0;
        self.truncated = false;
        self.log_position = 0;
    }
}

/// What loading the data directory did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// One entry per channel found, in name order.
    pub channels: Vec<ChannelLoadReport>,
    /// Files and directories ignored (unknown names).
    pub ignored: Vec<PathBuf>,
    /// Temporary files of unfinished dumps, removed.
    pub removed_unfinished: Vec<PathBuf>,
}

impl LoadReport {
    pub fn channel(&self, name: &str) -> Option<&ChannelLoadReport> {
        self.channels.iter().find(|report| report.channel == name)
    }

    pub fn total_loaded(&self) -> u64 {
        self.channels.iter().map(|report| report.loaded).sum()
    }
}

/// Why start-up must not go on.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot use data directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error(
        "{file}: record with key {key:#018x} is outside this node's hash range {range} \
         (out-of-range policy: fatal)"
    )]
    OutOfRange {
        file: PathBuf,
        key: u64,
        range: HashRange,
    },
}

/// A channel's files in the data directory.
#[derive(Default)]
struct ChannelFiles {
    dump: Option<PathBuf>,
    backup: Option<PathBuf>,
    tcm: Option<PathBuf>,
}

/// Loads every channel of `dir` (created if missing) into `target` (see the module doc).
pub fn load_data_dir(
    dir: &Path,
    options: &LoadOptions,
    target: &mut impl LoadTarget,
) -> Result<LoadReport, LoadError> {
    let mut report = LoadReport::default();
    let found = scan(dir, &mut report.ignored)?;
    for (channel, path) in found.unfinished {
        remove_unfinished_dump(&path, &channel, found.channels.get(&channel));
        report.removed_unfinished.push(path);
    }
    for (channel, files) in found.channels {
        let channel_report = channel::load_channel(dir, &channel, files, options, target)?;
        report.channels.push(channel_report);
    }
    Ok(report)
}

/// What a data directory holds.
#[derive(Default)]
struct Found {
    /// Each channel's files, in name order.
    channels: BTreeMap<String, ChannelFiles>,
    /// `<ch>.dump.tmp` files: channel and path.
    unfinished: Vec<(String, PathBuf)>,
}

/// Lists the dump files of `dir` (created if missing), warning about and adding to `ignored`
/// every entry that is not one.
fn scan(dir: &Path, ignored: &mut Vec<PathBuf>) -> Result<Found, LoadError> {
    let dir_error = |source| LoadError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_error)?;
    let mut found = Found::default();
    for entry in fs::read_dir(dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!("ignoring {}: file name is not UTF-8", path.display());
            ignored.push(path);
            continue;
        };
        let file_type = fs::metadata(&path).map(|m| m.file_type());
        if file_type
            .as_ref()
            .is_ok_and(|t| !t.is_dir() && !t.is_file())
        {
            // A FIFO or a device: opening it to read could block the start for ever.
            tracing::warn!(
                "ignoring {}: not a regular file (a FIFO, socket or device)",
                path.display()
            );
            ignored.push(path);
            continue;
        }
        if file_type.is_ok_and(|t| t.is_dir()) {
            if name != REMOVED_DIR && name != CORRUPT_DIR && name != WAL_DIR {
                tracing::warn!(
                    "ignoring directory {} in the data directory",
                    path.display()
                );
                ignored.push(path);
            }
            continue;
        }
        match layout::classify(&name) {
            Entry::NotADump => {}
            Entry::Unknown => {
                tracing::warn!("ignoring {}: not a dump file", path.display());
                ignored.push(path);
            }
            Entry::BadChannelName(channel) => {
                tracing::warn!(
                    "ignoring {}: {channel:?} is not a valid channel name",
                    path.display()
                );
                ignored.push(path);
            }
            Entry::Channel { channel, kind } => found.add(channel, kind, path),
        }
    }
    Ok(found)
}

impl Found {
    /// Files a channel's file; an unfinished dump alone does not make a channel.
    fn add(&mut self, channel: &str, kind: ChannelFileKind, path: PathBuf) {
        if kind == ChannelFileKind::Unfinished {
            self.unfinished.push((channel.to_owned(), path));
            return;
        }
        let files = self.channels.entry(channel.to_owned()).or_default();
        let slot = match kind {
            ChannelFileKind::Dump => &mut files.dump,
            ChannelFileKind::Backup => &mut files.backup,
            ChannelFileKind::Tcm | ChannelFileKind::Unfinished => &mut files.tcm,
        };
        *slot = Some(path);
    }
}

/// Removes `<channel>.dump.tmp`, a dump that never finished, saying which of the channel's
/// `files` is loaded instead (none: this was its first dump).
fn remove_unfinished_dump(path: &Path, channel: &str, files: Option<&ChannelFiles>) {
    let files = files.map(|f| (&f.dump, &f.backup, &f.tcm));
    let instead = match files {
        Some((Some(dump), _, _)) => format!("its previous dump {} is loaded", dump.display()),
        Some((None, Some(backup), _)) => format!("its backup {} is loaded", backup.display()),
        Some((None, None, Some(tcm))) => format!("{} is imported", tcm.display()),
        _ => format!(
            "channel {channel} has no complete dump (this was its first): nothing of it is loaded"
        ),
    };
    match fs::remove_file(path) {
        Ok(()) => tracing::warn!(
            "removed {}: an unfinished dump of channel {channel} (the node or dhtdump stopped \
             while writing it); {instead}",
            path.display()
        ),
        Err(err) => tracing::warn!(
            "cannot remove {}, an unfinished dump of channel {channel}: {err}; it is not \
             loaded; {instead}",
            path.display()
        ),
    }
}
