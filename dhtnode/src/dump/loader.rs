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
//!   imported (see [`super::tcm`]); a truncated `.tcm` keeps the records before the cut, with an
//!   ERROR line. A `.tcm` next to a `.dump` or `.backup` is ignored (info line).
//!
//! A `<ch>.dump.tmp` is a dump that never finished (the writer renames it into place only once
//! it is complete and fsynced): it is never loaded, and it is removed with a warning that says
//! which file of the channel is loaded instead, or that the channel has none (its first dump was
//! interrupted). One process per data directory (`node_core::data_lock`) makes this safe. The `removed/` and `corrupt/` subdirectories are skipped; any other
//! entry, and any file whose name is not `<valid channel name>.<known suffix>`, is ignored with a
//! warning.
//!
//! Each channel is built in a fresh [`LoadTarget::Channel`] and committed only once its file has
//! loaded completely, so a file that fails half-way leaves nothing behind.
//!
//! Records with an empty value or a value longer than `max_value_bytes` are skipped and counted.
//! Records outside the node's hash range follow the [`OutOfRangePolicy`].

use super::format::{unix_now, DumpError, DumpReader};
use super::tcm::{TcmReader, TCM_READ_BUFFER_BYTES};
use super::writer::{free_name, BACKUP_SUFFIX, DUMP_SUFFIX, REMOVED_DIR, TCM_SUFFIX, TMP_SUFFIX};
use node_core::protocol::dht::{valid_channel_name, HashRange};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};
use thiserror::Error;

/// Where the loader moves dump files that failed their checks.
pub const CORRUPT_DIR: &str = "corrupt";

/// What to do with a loaded record whose key is outside the node's hash range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub policy: OutOfRangePolicy,
    /// The node's hash range.
    pub range: HashRange,
    /// Longer values are skipped.
    pub max_value_bytes: usize,
}

/// Where loaded records go (the engine implements this).
///
/// A channel is created with `new_channel`, filled with `insert`, and handed back with `commit`
/// only when its file loaded completely; otherwise it is dropped. So `insert` should touch only
/// the channel, and node-wide accounting belongs in `commit`.
pub trait LoadTarget {
    type Channel;
    fn new_channel(&mut self, name: &str) -> Self::Channel;
    fn insert(&mut self, channel: &mut Self::Channel, key: u64, value: &[u8]);
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
        }
    }

    fn reset_counts(&mut self) {
        self.loaded = 0;
        self.value_bytes = 0;
        self.out_of_range = 0;
        self.empty_values = 0;
        self.too_large = 0;
        self.invalid_keys = 0;
        self.truncated = false;
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
    let dir_error = |source| LoadError::Dir {
        dir: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(dir_error)?;
    let mut report = LoadReport::default();
    let mut channels: BTreeMap<String, ChannelFiles> = BTreeMap::new();
    let mut unfinished: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let path = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            tracing::warn!("ignoring {}: file name is not UTF-8", path.display());
            report.ignored.push(path);
            continue;
        };
        let is_dir = fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
        if is_dir {
            if name != REMOVED_DIR && name != CORRUPT_DIR {
                tracing::warn!(
                    "ignoring directory {} in the data directory",
                    path.display()
                );
                report.ignored.push(path);
            }
            continue;
        }
        if name == crate::state::STATE_FILE || name == crate::state::STATE_TMP_FILE {
            continue; // The node's range, not a dump (see crate::state).
        }
        if name == node_core::data_lock::LOCK_FILE_NAME {
            continue; // One node per data directory (node_core::data_lock).
        }
        let (channel, slot) = if let Some(channel) = name.strip_suffix(TMP_SUFFIX) {
            (channel, 3)
        } else if let Some(channel) = name.strip_suffix(BACKUP_SUFFIX) {
            (channel, 1)
        } else if let Some(channel) = name.strip_suffix(DUMP_SUFFIX) {
            (channel, 0)
        } else if let Some(channel) = name.strip_suffix(TCM_SUFFIX) {
            (channel, 2)
        } else {
            tracing::warn!("ignoring {}: not a dump file", path.display());
            report.ignored.push(path);
            continue;
        };
        if !valid_channel_name(channel) {
            tracing::warn!(
                "ignoring {}: {channel:?} is not a valid channel name",
                path.display()
            );
            report.ignored.push(path);
            continue;
        }
        if slot == 3 {
            unfinished.push((channel.to_owned(), path));
            continue;
        }
        let files = channels.entry(channel.to_owned()).or_default();
        match slot {
            0 => files.dump = Some(path),
            1 => files.backup = Some(path),
            _ => files.tcm = Some(path),
        }
    }
    for (channel, path) in unfinished {
        remove_unfinished_dump(&path, &channel, channels.get(&channel));
        report.removed_unfinished.push(path);
    }
    for (channel, files) in channels {
        let channel_report = load_channel(dir, &channel, files, options, target)?;
        report.channels.push(channel_report);
    }
    Ok(report)
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

/// A file that could not be used: a failed check (fall back) or a fatal out-of-range record.
enum FileFailure {
    Bad(String),
    Fatal(LoadError),
}

fn load_channel<T: LoadTarget>(
    dir: &Path,
    channel: &str,
    files: ChannelFiles,
    options: &LoadOptions,
    target: &mut T,
) -> Result<ChannelLoadReport, LoadError> {
    let started = Instant::now();
    let mut report = ChannelLoadReport::new(channel);
    if let (Some(tcm), true) = (&files.tcm, files.dump.is_some() || files.backup.is_some()) {
        tracing::info!(
            "ignoring {}: channel {channel} has a dump of its own",
            tcm.display()
        );
    }
    let mut loaded: Option<(T::Channel, LoadSource, PathBuf)> = None;
    if let Some(dump) = &files.dump {
        match load_dump_file(dump, channel, options, target, &mut report) {
            Ok(data) => loaded = Some((data, LoadSource::Dump, dump.clone())),
            Err(FileFailure::Fatal(err)) => return Err(err),
            Err(FileFailure::Bad(problem)) => {
                let fallback = match &files.backup {
                    Some(backup) => format!(
                        "falling back to the backup {} ({}); records written after it are lost",
                        backup.display(),
                        describe_age(backup)
                    ),
                    None => "there is no backup: the channel starts EMPTY".to_owned(),
                };
                let moved = quarantine(dir, channel, dump, DUMP_SUFFIX);
                tracing::error!(
                    "DUMP FILE FAILED its checks: {}: {problem}; {fallback}. {moved}",
                    dump.display()
                );
                report
                    .failures
                    .push(format!("{}: {problem}", dump.display()));
            }
        }
    } else if let Some(backup) = &files.backup {
        tracing::warn!(
            "{} is missing but its backup {} exists (the node stopped between the renames of \
             a dump); loading the backup",
            channel_path(dir, channel, DUMP_SUFFIX).display(),
            backup.display()
        );
    }
    if loaded.is_none() {
        if let Some(backup) = &files.backup {
            report.reset_counts();
            match load_dump_file(backup, channel, options, target, &mut report) {
                Ok(data) => {
                    if files.dump.is_some() {
                        tracing::error!(
                            "channel {channel} loaded from its BACKUP {} ({})",
                            backup.display(),
                            describe_age(backup)
                        );
                    }
                    loaded = Some((data, LoadSource::Backup, backup.clone()));
                }
                Err(FileFailure::Fatal(err)) => return Err(err),
                Err(FileFailure::Bad(problem)) => {
                    let moved = quarantine(dir, channel, backup, BACKUP_SUFFIX);
                    tracing::error!(
                        "BACKUP FILE FAILED its checks too: {}: {problem}; channel {channel} \
                         starts EMPTY. {moved}",
                        backup.display()
                    );
                    report
                        .failures
                        .push(format!("{}: {problem}", backup.display()));
                }
            }
        } else if files.dump.is_none() {
            if let Some(tcm) = &files.tcm {
                match import_tcm(tcm, channel, options, target, &mut report) {
                    Ok(data) => loaded = Some((data, LoadSource::Tcm, tcm.clone())),
                    Err(FileFailure::Fatal(err)) => return Err(err),
                    Err(FileFailure::Bad(problem)) => {
                        tracing::error!(
                            "cannot import {}: {problem}; channel {channel} starts empty",
                            tcm.display()
                        );
                        report
                            .failures
                            .push(format!("{}: {problem}", tcm.display()));
                    }
                }
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    match loaded {
        Some((data, source, file)) => {
            target.commit(channel, data);
            report.source = source;
            report.file = Some(file);
            log_summary(&report, options);
        }
        None => report.reset_counts(),
    }
    Ok(report)
}

fn channel_path(dir: &Path, channel: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{channel}{suffix}"))
}

/// Decides whether a record goes in; `Err` under the fatal policy.
fn admit(
    report: &mut ChannelLoadReport,
    options: &LoadOptions,
    file: &Path,
    key: u64,
    value: &[u8],
) -> Result<bool, LoadError> {
    if value.is_empty() {
        report.empty_values += 1;
        return Ok(false);
    }
    if value.len() > options.max_value_bytes {
        report.too_large += 1;
        return Ok(false);
    }
    if !options.range.is_responsible_for(key) {
        report.out_of_range += 1;
        match options.policy {
            OutOfRangePolicy::Load => {}
            OutOfRangePolicy::Ignore => return Ok(false),
            OutOfRangePolicy::Fatal => {
                return Err(LoadError::OutOfRange {
                    file: file.to_path_buf(),
                    key,
                    range: options.range,
                })
            }
        }
    }
    report.loaded += 1;
    report.value_bytes += value.len() as u64;
    Ok(true)
}

fn load_dump_file<T: LoadTarget>(
    path: &Path,
    channel: &str,
    options: &LoadOptions,
    target: &mut T,
    report: &mut ChannelLoadReport,
) -> Result<T::Channel, FileFailure> {
    let file = File::open(path).map_err(|err| FileFailure::Bad(format!("cannot open: {err}")))?;
    let bad = |err: DumpError| FileFailure::Bad(err.to_string());
    let mut reader = DumpReader::open_buffered(file).map_err(bad)?;
    if reader.header().channel != channel {
        tracing::warn!(
            "{} was written for channel {:?}; loading it as channel {channel}",
            path.display(),
            reader.header().channel
        );
    }
    let mut data = target.new_channel(channel);
    while let Some(records) = reader.next_block().map_err(bad)? {
        for (key, value) in records {
            if admit(report, options, path, key, value).map_err(FileFailure::Fatal)? {
                target.insert(&mut data, key, value);
            }
        }
    }
    Ok(data)
}

fn import_tcm<T: LoadTarget>(
    path: &Path,
    channel: &str,
    options: &LoadOptions,
    target: &mut T,
    report: &mut ChannelLoadReport,
) -> Result<T::Channel, FileFailure> {
    let file = File::open(path).map_err(|err| FileFailure::Bad(format!("cannot open: {err}")))?;
    let mut reader = TcmReader::new(
        BufReader::with_capacity(TCM_READ_BUFFER_BYTES, file),
        options.max_value_bytes,
    )
    .map_err(|err| FileFailure::Bad(err.to_string()))?;
    let mut data = target.new_channel(channel);
    while let Some((key, value)) = reader
        .next_record()
        .map_err(|err| FileFailure::Bad(err.to_string()))?
    {
        if admit(report, options, path, key, value).map_err(FileFailure::Fatal)? {
            target.insert(&mut data, key, value);
        }
    }
    let tcm = reader.report();
    report.invalid_keys += tcm.invalid_keys;
    report.empty_values += tcm.empty_values;
    report.too_large += tcm.too_large;
    report.truncated = tcm.truncated;
    if tcm.truncated {
        tracing::error!(
            "{} is TRUNCATED: it ends at byte {} without its end marker; the {} records before \
             the cut are loaded, any after it are lost",
            path.display(),
            tcm.bytes_read,
            report.loaded
        );
    }
    if tcm.invalid_keys + tcm.empty_values + tcm.too_large > 0 {
        tracing::warn!(
            "{}: skipped {} records with invalid keys, {} with empty values, {} with values \
             over {} bytes",
            path.display(),
            tcm.invalid_keys,
            tcm.empty_values,
            tcm.too_large,
            options.max_value_bytes
        );
    }
    Ok(data)
}

/// Moves a file that failed its checks to `corrupt/`; says what happened, for the log line.
fn quarantine(dir: &Path, channel: &str, file: &Path, suffix: &str) -> String {
    let corrupt = dir.join(CORRUPT_DIR);
    let to = free_name(&corrupt, channel, unix_now(), suffix);
    match fs::create_dir_all(&corrupt).and_then(|()| fs::rename(file, &to)) {
        Ok(()) => format!("The bad file was moved to {} for inspection.", to.display()),
        Err(err) => format!(
            "Moving the bad file to {} failed ({err}); the next dump may rotate it into the \
             backup.",
            to.display()
        ),
    }
}

/// "written 2 h 5 min ago" from the file's modification time.
fn describe_age(path: &Path) -> String {
    let age = fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok());
    match age {
        Some(age) => {
            let secs = age.as_secs();
            format!(
                "written {} h {} min {} s ago",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
        }
        None => "age unknown".to_owned(),
    }
}

fn log_summary(report: &ChannelLoadReport, options: &LoadOptions) {
    let file = report
        .file
        .as_ref()
        .map(|file| file.display().to_string())
        .unwrap_or_default();
    tracing::info!(
        "channel {}: loaded {} records ({} value bytes) from {file} in {:.2} s; skipped {} empty, \
         {} too large (> {} bytes), {} invalid keys; {} out of range of {} (policy {})",
        report.channel,
        report.loaded,
        report.value_bytes,
        report.seconds,
        report.empty_values,
        report.too_large,
        options.max_value_bytes,
        report.invalid_keys,
        report.out_of_range,
        options.range,
        options.policy
    );
    if options.policy == OutOfRangePolicy::Ignore && report.out_of_range > 0 {
        tracing::warn!(
            "channel {}: skipped {} records outside this node's hash range {} (policy ignore)",
            report.channel,
            report.out_of_range,
            options.range
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::format::DumpFileWriter;
    use node_core::protocol::batch::append_record;
    use std::sync::{Arc, Mutex};

    type Records = Vec<(u64, Vec<u8>)>;

    #[derive(Default)]
    struct MapTarget {
        channels: BTreeMap<String, Records>,
        created: Vec<String>,
    }

    impl LoadTarget for MapTarget {
        type Channel = Records;
        fn new_channel(&mut self, name: &str) -> Records {
            self.created.push(name.to_owned());
            Vec::new()
        }
        fn insert(&mut self, channel: &mut Records, key: u64, value: &[u8]) {
            channel.push((key, value.to_vec()));
        }
        fn commit(&mut self, name: &str, channel: Records) {
            assert!(self.channels.insert(name.to_owned(), channel).is_none());
        }
    }

    fn options(policy: OutOfRangePolicy) -> LoadOptions {
        LoadOptions {
            policy,
            range: HashRange::FULL,
            max_value_bytes: 1000,
        }
    }

    fn write_dump(path: &Path, channel: &str, records: &[(u64, &[u8])]) {
        let mut writer = DumpFileWriter::new(Vec::new(), channel).unwrap();
        let mut raw = Vec::new();
        for (key, value) in records {
            append_record(&mut raw, *key, value);
        }
        writer.write_chunk(&raw, records.len() as u32).unwrap();
        let (bytes, _) = writer.finish().unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn owned(records: &[(u64, &[u8])]) -> Records {
        records.iter().map(|(k, v)| (*k, v.to_vec())).collect()
    }

    const NEW: &[(u64, &[u8])] = &[(1, b"new one"), (2, b"new two")];
    const OLD: &[(u64, &[u8])] = &[(1, b"old one")];

    /// A minimal subscriber that keeps every event's level and message.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<(tracing::Level, String)>>>);

    impl tracing::Subscriber for Captured {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(&mut self, _: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    self.0 += &format!("{value:?}");
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), message.0));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    impl Captured {
        fn lines(&self, level: tracing::Level) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|(l, _)| *l == level)
                .map(|(_, m)| m.clone())
                .collect()
        }
    }

    fn load_logged(
        dir: &Path,
        options: &LoadOptions,
    ) -> (Result<LoadReport, LoadError>, MapTarget, Captured) {
        let logs = Captured::default();
        let mut target = MapTarget::default();
        let result = tracing::subscriber::with_default(logs.clone(), || {
            load_data_dir(dir, options, &mut target)
        });
        (result, target, logs)
    }

    #[test]
    fn creates_a_missing_directory_and_loads_dumps() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut target = MapTarget::default();
        let report = load_data_dir(&data, &options(OutOfRangePolicy::Load), &mut target).unwrap();
        assert!(data.is_dir() && report.channels.is_empty());

        write_dump(&data.join("a.dump"), "a", NEW);
        write_dump(&data.join("b.dump"), "b", OLD);
        let report = load_data_dir(&data, &options(OutOfRangePolicy::Load), &mut target).unwrap();
        assert_eq!(target.channels["a"], owned(NEW));
        assert_eq!(target.channels["b"], owned(OLD));
        assert_eq!(report.total_loaded(), 3);
        let a = report.channel("a").unwrap();
        assert_eq!(a.source, LoadSource::Dump);
        assert_eq!((a.loaded, a.value_bytes), (2, 14));
    }

    #[test]
    fn a_flipped_byte_falls_back_to_the_backup_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("ch.dump");
        write_dump(&dump, "ch", NEW);
        write_dump(&dir.path().join("ch.dump.backup"), "ch", OLD);
        let mut bytes = fs::read(&dump).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        fs::write(&dump, &bytes).unwrap();

        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        let report = report.unwrap();
        assert_eq!(target.channels["ch"], owned(OLD));
        let ch = report.channel("ch").unwrap();
        assert_eq!(ch.source, LoadSource::Backup);
        assert_eq!(ch.loaded, 1);
        assert_eq!(ch.failures.len(), 1);
        assert!(ch.failures[0].contains("ch.dump"), "{:?}", ch.failures);
        let errors = logs.lines(tracing::Level::ERROR);
        assert!(
            errors.iter().any(|line| line.contains("ch.dump")
                && line.contains("falling back to the backup")
                && line.contains("ago")),
            "{errors:?}"
        );
        // The bad dump is kept for inspection, out of the way of the next dump's rotation.
        assert!(!dump.exists());
        let corrupt: Vec<_> = fs::read_dir(dir.path().join(CORRUPT_DIR))
            .unwrap()
            .collect();
        assert_eq!(corrupt.len(), 1);
        // And a second start loads the backup without complaint (the .dump-missing window).
        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        assert_eq!(
            report.unwrap().channel("ch").unwrap().source,
            LoadSource::Backup
        );
        assert_eq!(target.channels["ch"], owned(OLD));
        assert!(logs.lines(tracing::Level::ERROR).is_empty());
    }

    #[test]
    fn both_files_bad_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ch.dump"), b"garbage").unwrap();
        fs::write(dir.path().join("ch.dump.backup"), b"").unwrap();
        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        let report = report.unwrap();
        let ch = report.channel("ch").unwrap();
        assert_eq!(ch.source, LoadSource::Nothing);
        assert_eq!(ch.failures.len(), 2);
        assert_eq!(ch.loaded, 0);
        assert!(target.channels.is_empty());
        // Neither header passed, so no channel was even started.
        assert!(target.created.is_empty());
        assert_eq!(logs.lines(tracing::Level::ERROR).len(), 2);
        assert_eq!(
            fs::read_dir(dir.path().join(CORRUPT_DIR)).unwrap().count(),
            2
        );
    }

    #[test]
    fn a_dump_failing_half_way_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("ch.dump");
        write_dump(&dump, "ch", NEW);
        let bytes = fs::read(&dump).unwrap();
        fs::write(&dump, &bytes[..bytes.len() - 3]).unwrap(); // blocks fine, trailer torn
        let mut target = MapTarget::default();
        let report =
            load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
        assert!(target.channels.is_empty());
        let ch = report.channel("ch").unwrap();
        assert_eq!((ch.source, ch.loaded), (LoadSource::Nothing, 0));
        assert!(ch.failures[0].contains("truncated"), "{:?}", ch.failures);
    }

    #[test]
    fn tmp_leftovers_and_unknown_entries_are_ignored_with_warnings() {
        let dir = tempfile::tempdir().unwrap();
        write_dump(&dir.path().join("ch.dump"), "ch", OLD);
        write_dump(&dir.path().join("ch.dump.tmp"), "ch", NEW);
        fs::write(dir.path().join("other.dump.tmp"), b"half a dump").unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        fs::write(dir.path().join("bad.name.dump"), b"x").unwrap();
        fs::create_dir(dir.path().join("stuff")).unwrap();
        fs::create_dir(dir.path().join(REMOVED_DIR)).unwrap();
        write_dump(
            &dir.path().join(REMOVED_DIR).join("gone.1.dump"),
            "gone",
            NEW,
        );
        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        let report = report.unwrap();
        assert_eq!(target.channels.len(), 1);
        assert_eq!(target.channels["ch"], owned(OLD));
        assert_eq!(report.ignored.len(), 3, "{:?}", report.ignored);
        assert_eq!(report.removed_unfinished.len(), 2);
        let warnings = logs.lines(tracing::Level::WARN);
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        let ch_dump = dir.path().join("ch.dump");
        assert!(warnings.iter().any(|w| w.contains("ch.dump.tmp")
            && w.contains(&format!(
                "its previous dump {} is loaded",
                ch_dump.display()
            ))));
        assert!(logs.lines(tracing::Level::ERROR).is_empty());
    }

    /// Issue #15, defect 9: a channel's first dump killed mid-way left `<ch>.dump.tmp`, which
    /// every start reported again as "the previous dump is used" although there was none. It is
    /// removed once, with a warning that tells which file is loaded instead, or that none is.
    #[test]
    fn an_unfinished_dump_is_removed_once_and_reported_truthfully() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = |ch: &str| dir.path().join(format!("{ch}{TMP_SUFFIX}"));
        write_dump(&tmp("first"), "first", NEW);
        let bytes = fs::read(tmp("first")).unwrap();
        fs::write(tmp("first"), &bytes[..bytes.len() / 2]).unwrap();
        write_dump(&dir.path().join("old.dump.backup"), "old", OLD);
        fs::write(tmp("old"), b"half a dump").unwrap();
        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        let report = report.unwrap();
        assert_eq!(target.channels.len(), 1, "only `old` has a dump");
        assert!(report.channel("first").is_none(), "no channel `first`");
        assert_eq!(report.removed_unfinished.len(), 2);
        assert!(!tmp("first").exists() && !tmp("old").exists());
        let warnings = logs.lines(tracing::Level::WARN);
        let about = |ch: &str| {
            let name = tmp(ch).display().to_string();
            let found = warnings.iter().find(|w| w.contains(&name));
            found
                .cloned()
                .unwrap_or_else(|| panic!("no warning on {name}: {warnings:?}"))
        };
        let first = about("first");
        assert!(
            first.starts_with("removed ")
                && first.contains("no complete dump (this was its first)"),
            "{first}"
        );
        assert!(!first.contains("previous dump"), "{first}");
        let backup = dir.path().join("old.dump.backup");
        let old = about("old");
        assert!(
            old.contains(&format!("its backup {} is loaded", backup.display())),
            "{old}"
        );

        let (report, _, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        assert!(report.unwrap().removed_unfinished.is_empty());
        let again: Vec<String> = logs
            .lines(tracing::Level::WARN)
            .into_iter()
            .filter(|w| w.contains(".dump.tmp"))
            .collect();
        assert!(again.is_empty(), "reported again: {again:?}");
    }

    /// The crash windows of a dump: after the temporary file is written but before any rename
    /// (`.dump` old + `.tmp`), and after the first rename (`.backup` old + `.tmp`).
    #[test]
    fn crash_windows_load_the_previous_dump() {
        let dir = tempfile::tempdir().unwrap();
        write_dump(&dir.path().join("ch.dump"), "ch", OLD);
        write_dump(&dir.path().join("ch.dump.tmp"), "ch", NEW);
        let (report, target, _) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        assert_eq!(
            report.unwrap().channel("ch").unwrap().source,
            LoadSource::Dump
        );
        assert_eq!(target.channels["ch"], owned(OLD));

        fs::rename(
            dir.path().join("ch.dump"),
            dir.path().join("ch.dump.backup"),
        )
        .unwrap();
        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        assert_eq!(
            report.unwrap().channel("ch").unwrap().source,
            LoadSource::Backup
        );
        assert_eq!(target.channels["ch"], owned(OLD));
        assert!(logs
            .lines(tracing::Level::WARN)
            .iter()
            .any(|w| w.contains("missing but its backup")));
    }

    /// With the real writer: a crash that leaves only the backup and a temporary file.
    #[test]
    fn writer_then_crash_after_first_rename() {
        let dir = tempfile::tempdir().unwrap();
        let mut thread = crate::dump::writer::DumpThread::spawn(dir.path().to_path_buf()).unwrap();
        for records in [OLD, NEW] {
            let mut raw = Vec::new();
            for (key, value) in records {
                append_record(&mut raw, *key, value);
            }
            thread.begin("ch").unwrap();
            thread.send_chunk(raw, records.len() as u32).unwrap();
            thread.finish().unwrap();
            thread.wait_idle().unwrap();
        }
        assert!(thread.poll_outcomes().iter().all(|o| o.result.is_ok()));
        drop(thread);
        let mut target = MapTarget::default();
        load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
        assert_eq!(target.channels["ch"], owned(NEW));
        // Crash after `.dump` → `.backup` but before `.tmp` → `.dump`.
        fs::rename(
            dir.path().join("ch.dump"),
            dir.path().join("ch.dump.backup"),
        )
        .unwrap();
        fs::write(
            dir.path().join("ch.dump.tmp"),
            b"complete or not, never read",
        )
        .unwrap();
        let mut target = MapTarget::default();
        load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
        assert_eq!(target.channels["ch"], owned(NEW));
    }

    /// Range (0x0000000100000000, max) in hash space; position = bit-reversed key. Key 1 sits
    /// at 0x8000000000000000 (in range), key 0x8000000000000000 at 1 (out), key 0x10 at
    /// 0x0800000000000000 (in), key 0x0000000080000000 at 0x0000000100000000 (in, the lower
    /// bound), key 0x0000000100000000 at 0x0000000080000000 (out), key 0 at 0 (out).
    const IN_RANGE: [u64; 3] = [1, 0x10, 0x0000_0000_8000_0000];
    const OUT_OF_RANGE: [u64; 3] = [0x8000_0000_0000_0000, 0x0000_0001_0000_0000, 0];

    fn range_options(policy: OutOfRangePolicy) -> LoadOptions {
        LoadOptions {
            policy,
            range: HashRange::new(0x0000_0001_0000_0000, u64::MAX),
            max_value_bytes: 1000,
        }
    }

    fn mixed_dir() -> tempfile::TempDir {
        let options = range_options(OutOfRangePolicy::Load);
        for key in IN_RANGE {
            assert!(options.range.is_responsible_for(key), "{key:#x}");
        }
        for key in OUT_OF_RANGE {
            assert!(!options.range.is_responsible_for(key), "{key:#x}");
        }
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<(u64, &[u8])> = IN_RANGE
            .iter()
            .zip(OUT_OF_RANGE.iter())
            .flat_map(|(&a, &b)| [(a, &b"in"[..]), (b, &b"out"[..])])
            .collect();
        write_dump(&dir.path().join("ch.dump"), "ch", &records);
        dir
    }

    #[test]
    fn out_of_range_load_keeps_and_counts() {
        let dir = mixed_dir();
        let mut target = MapTarget::default();
        let report = load_data_dir(
            dir.path(),
            &range_options(OutOfRangePolicy::Load),
            &mut target,
        )
        .unwrap();
        assert_eq!(target.channels["ch"].len(), 6);
        let ch = report.channel("ch").unwrap();
        assert_eq!((ch.loaded, ch.out_of_range), (6, 3));
    }

    #[test]
    fn out_of_range_ignore_skips_and_counts() {
        let dir = mixed_dir();
        let (report, target, logs) =
            load_logged(dir.path(), &range_options(OutOfRangePolicy::Ignore));
        let keys: Vec<u64> = target.channels["ch"].iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, IN_RANGE.to_vec());
        let report = report.unwrap();
        let ch = report.channel("ch").unwrap();
        assert_eq!((ch.loaded, ch.out_of_range), (3, 3));
        assert!(logs
            .lines(tracing::Level::WARN)
            .iter()
            .any(|w| w.contains("skipped 3 records outside")));
    }

    #[test]
    fn out_of_range_fatal_aborts_naming_file_and_key() {
        let dir = mixed_dir();
        let mut target = MapTarget::default();
        let err = load_data_dir(
            dir.path(),
            &range_options(OutOfRangePolicy::Fatal),
            &mut target,
        )
        .unwrap_err();
        match &err {
            LoadError::OutOfRange { file, key, .. } => {
                assert_eq!(file, &dir.path().join("ch.dump"));
                assert_eq!(*key, OUT_OF_RANGE[0]);
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("0x8000000000000000"), "{err}");
        assert!(target.channels.is_empty());
        // The dump is not treated as damaged.
        assert!(dir.path().join("ch.dump").exists());

        // Fatal with everything in range loads normally.
        let only_in = tempfile::tempdir().unwrap();
        let records: Vec<(u64, &[u8])> = IN_RANGE.iter().map(|&k| (k, &b"v"[..])).collect();
        write_dump(&only_in.path().join("ch.dump"), "ch", &records);
        let mut target = MapTarget::default();
        load_data_dir(
            only_in.path(),
            &range_options(OutOfRangePolicy::Fatal),
            &mut target,
        )
        .unwrap();
        assert_eq!(target.channels["ch"].len(), 3);
    }

    #[test]
    fn range_zero_to_one_owns_only_keys_zero_and_high_bit() {
        // The reference's other test range: positions 0 and 1, i.e. keys 0 and 1 << 63.
        let dir = tempfile::tempdir().unwrap();
        let records: [(u64, &[u8]); 3] = [(0, b"a"), (1 << 63, b"b"), (1, b"c")];
        write_dump(&dir.path().join("ch.dump"), "ch", &records);
        let options = LoadOptions {
            policy: OutOfRangePolicy::Ignore,
            range: HashRange::new(0, 1),
            max_value_bytes: 10,
        };
        let mut target = MapTarget::default();
        load_data_dir(dir.path(), &options, &mut target).unwrap();
        let keys: Vec<u64> = target.channels["ch"].iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![0, 1 << 63]);
    }

    #[test]
    fn empty_and_oversized_values_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let exact = vec![b'x'; 1000];
        let over = vec![b'y'; 1001];
        let records: [(u64, &[u8]); 4] = [(1, b""), (2, &exact), (3, &over), (4, b"ok")];
        write_dump(&dir.path().join("ch.dump"), "ch", &records);
        let mut target = MapTarget::default();
        let report =
            load_data_dir(dir.path(), &options(OutOfRangePolicy::Load), &mut target).unwrap();
        assert_eq!(
            target.channels["ch"],
            vec![(2, exact.clone()), (4, b"ok".to_vec())]
        );
        let ch = report.channel("ch").unwrap();
        assert_eq!((ch.loaded, ch.empty_values, ch.too_large), (2, 1, 1));
    }

    fn sample(name: &str) -> Vec<u8> {
        fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testdata/dht-tcm")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn tcm_files_are_imported_when_there_is_no_dump() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("example.tcm"), sample("example.tcm")).unwrap();
        fs::write(dir.path().join("cut.tcm"), sample("truncated.tcm")).unwrap();
        fs::write(dir.path().join("shadowed.tcm"), sample("example.tcm")).unwrap();
        write_dump(&dir.path().join("shadowed.dump"), "shadowed", OLD);
        let mut v1 = sample("example.tcm");
        v1[0] = 1;
        fs::write(dir.path().join("future.tcm"), v1).unwrap();
        let (report, target, logs) = load_logged(dir.path(), &options(OutOfRangePolicy::Load));
        let report = report.unwrap();
        let expected = owned(&[
            (0xa, b"value a"),
            (0xb, b"value b"),
            (0xdead_beef, b"hello world"),
        ]);
        assert_eq!(target.channels["example"], expected);
        assert_eq!(target.channels["cut"], expected);
        assert_eq!(target.channels["shadowed"], owned(OLD));
        assert!(!target.channels.contains_key("future"));
        let example = report.channel("example").unwrap();
        assert_eq!(example.source, LoadSource::Tcm);
        assert_eq!(
            (
                example.loaded,
                example.invalid_keys,
                example.empty_values,
                example.truncated
            ),
            (3, 1, 1, false)
        );
        let cut = report.channel("cut").unwrap();
        assert!(cut.truncated && cut.loaded == 3);
        let future = report.channel("future").unwrap();
        assert_eq!(future.source, LoadSource::Nothing);
        assert!(future.failures[0].contains("unsupported .tcm version 1"));
        let errors = logs.lines(tracing::Level::ERROR);
        assert!(errors
            .iter()
            .any(|e| e.contains("cut.tcm") && e.contains("TRUNCATED")));
        assert!(errors.iter().any(|e| e.contains("future.tcm")));
    }

    #[test]
    fn policy_parses() {
        assert_eq!("load".parse(), Ok(OutOfRangePolicy::Load));
        assert_eq!("ignore".parse(), Ok(OutOfRangePolicy::Ignore));
        assert_eq!("fatal".parse(), Ok(OutOfRangePolicy::Fatal));
        assert!("Fatal".parse::<OutOfRangePolicy>().is_err());
        assert_eq!(OutOfRangePolicy::Ignore.to_string(), "ignore");
    }
}
