//! Loading one channel: which of its files wins (dump, then backup, then `.tcm`), what happens
//! to a file that fails its checks, and which records go in (see the parent module's doc).

use super::{
    Admission, ChannelFiles, ChannelLoadReport, LoadError, LoadOptions, LoadSource, LoadTarget,
    OutOfRangePolicy,
};
use crate::dump::entry::DumpEntry;
use crate::dump::format::{unix_now, DumpError, DumpReader};
use crate::layout::{channel_file, free_name, BACKUP_SUFFIX, CORRUPT_DIR, DUMP_SUFFIX};
use crate::tcm::{TcmReader, TCM_READ_BUFFER_BYTES};
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

/// A file that could not be used: a failed check (fall back) or a fatal out-of-range record.
enum FileFailure {
    Bad(String),
    Fatal(LoadError),
}

/// A channel built from one file, not committed yet.
type Loaded<C> = Option<(C, LoadSource, PathBuf)>;

/// The loading of one channel: where its files are, where its records go, what it found.
struct ChannelLoad<'a, T: LoadTarget> {
    dir: &'a Path,
    channel: &'a str,
    options: &'a LoadOptions,
    target: &'a mut T,
    report: ChannelLoadReport,
}

/// Loads `channel` from the best of its `files` into `target`, committing it only when a file
/// loaded completely.
pub(super) fn load_channel<T: LoadTarget>(
    dir: &Path,
    channel: &str,
    files: ChannelFiles,
    options: &LoadOptions,
    target: &mut T,
) -> Result<ChannelLoadReport, LoadError> {
    let started = Instant::now();
    if let (Some(tcm), true) = (&files.tcm, files.dump.is_some() || files.backup.is_some()) {
        tracing::info!(
            "ignoring {}: channel {channel} has a dump of its own",
            tcm.display()
        );
    }
    let mut load = ChannelLoad {
        dir,
        channel,
        options,
        target,
        report: ChannelLoadReport::new(channel),
    };
    let mut loaded = match &files.dump {
        Some(dump) => load.try_dump(dump, files.backup.as_deref())?,
        None => None,
    };
    if loaded.is_none() {
        if let Some(backup) = &files.backup {
            loaded = load.try_backup(backup, files.dump.is_some())?;
        } else if let (None, Some(tcm)) = (&files.dump, &files.tcm) {
            loaded = load.try_tcm(tcm)?;
        }
    }
    let ChannelLoad {
        mut report, target, ..
    } = load;
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

impl<T: LoadTarget> ChannelLoad<'_, T> {
    /// `<ch>.dump`; when it fails its checks, it is moved to `corrupt/` (`None`: the caller
    /// falls back to `backup`).
    fn try_dump(
        &mut self,
        dump: &Path,
        backup: Option<&Path>,
    ) -> Result<Loaded<T::Channel>, LoadError> {
        let problem = match self.load_dump_file(dump) {
            Ok(data) => return Ok(Some((data, LoadSource::Dump, dump.to_path_buf()))),
            Err(FileFailure::Fatal(err)) => return Err(err),
            Err(FileFailure::Bad(problem)) => problem,
        };
        let fallback = match backup {
            Some(backup) => format!(
                "falling back to the backup {} ({}); records written after it are lost, \
                 except those the change log still holds (the replay applies them: see its \
                 line below)",
                backup.display(),
                describe_age(backup)
            ),
            None => "there is no backup: the channel starts EMPTY, but for what the change \
                     log still holds of it (the replay applies that: see its line below)"
                .to_owned(),
        };
        let moved = quarantine(self.dir, self.channel, dump, DUMP_SUFFIX);
        tracing::error!(
            "DUMP FILE FAILED its checks: {}: {problem}; {fallback}. {moved}",
            dump.display()
        );
        self.report
            .failures
            .push(format!("{}: {problem}", dump.display()));
        Ok(None)
    }

    /// `<ch>.dump.backup`: after a failed dump (`had_dump`, an ERROR line), or alone (a crash
    /// between the two renames of a dump, a warning). When it fails too, it is moved to
    /// `corrupt/` and the channel starts empty.
    fn try_backup(
        &mut self,
        backup: &Path,
        had_dump: bool,
    ) -> Result<Loaded<T::Channel>, LoadError> {
        let channel = self.channel;
        if !had_dump {
            tracing::warn!(
                "{} is missing but its backup {} exists (the node stopped between the renames of \
                 a dump); loading the backup",
                channel_file(self.dir, channel, DUMP_SUFFIX).display(),
                backup.display()
            );
        }
        self.report.reset_counts();
        let problem = match self.load_dump_file(backup) {
            Ok(data) => {
                if had_dump {
                    tracing::error!(
                        "channel {channel} loaded from its BACKUP {} ({})",
                        backup.display(),
                        describe_age(backup)
                    );
                }
                return Ok(Some((data, LoadSource::Backup, backup.to_path_buf())));
            }
            Err(FileFailure::Fatal(err)) => return Err(err),
            Err(FileFailure::Bad(problem)) => problem,
        };
        let moved = quarantine(self.dir, channel, backup, BACKUP_SUFFIX);
        tracing::error!(
            "BACKUP FILE FAILED its checks too: {}: {problem}; channel {channel} starts EMPTY, \
             but for what the change log still holds of it (the replay applies that: see its \
             line below). {moved}",
            backup.display()
        );
        self.report
            .failures
            .push(format!("{}: {problem}", backup.display()));
        Ok(None)
    }

    /// `<ch>.tcm`, when the channel has no dump of its own.
    fn try_tcm(&mut self, tcm: &Path) -> Result<Loaded<T::Channel>, LoadError> {
        match self.import_tcm(tcm) {
            Ok(data) => Ok(Some((data, LoadSource::Tcm, tcm.to_path_buf()))),
            Err(FileFailure::Fatal(err)) => Err(err),
            Err(FileFailure::Bad(problem)) => {
                tracing::error!(
                    "cannot import {}: {problem}; channel {} starts empty",
                    tcm.display(),
                    self.channel
                );
                self.report
                    .failures
                    .push(format!("{}: {problem}", tcm.display()));
                Ok(None)
            }
        }
    }

    /// Every record of a dump file, checked, into a fresh channel.
    fn load_dump_file(&mut self, path: &Path) -> Result<T::Channel, FileFailure> {
        let file =
            File::open(path).map_err(|err| FileFailure::Bad(format!("cannot open: {err}")))?;
        let bad = |err: DumpError| FileFailure::Bad(err.to_string());
        let mut reader = DumpReader::open_buffered(file).map_err(bad)?;
        if reader.header().channel != self.channel {
            tracing::warn!(
                "{} was written for channel {:?}; loading it as channel {}",
                path.display(),
                reader.header().channel,
                self.channel
            );
        }
        let seen_before = self.report.records_seen(self.options.policy);
        let mut data = self.target.new_channel(self.channel);
        let format_version = reader.header().version;
        let mut tombstones = 0u64;
        loop {
            let offset = reader.offset();
            let Some(records) = reader.next_block().map_err(bad)? else {
                break;
            };
            for (key, raw) in records {
                let entry = DumpEntry::decode(format_version, raw).map_err(|problem| {
                    FileFailure::Bad(format!(
                        "at offset {offset}: the entry of key 0x{key:016x} is malformed: {problem}"
                    ))
                })?;
                let (version, value) = match entry {
                    DumpEntry::Record { version, value } => (version, value),
                    DumpEntry::Tombstone {
                        version,
                        stored_unix_s,
                    } => {
                        tombstones += 1;
                        self.target
                            .insert_tombstone(&mut data, key, version, stored_unix_s);
                        continue;
                    }
                };
                if admit(&mut self.report, self.options, path, key, value)
                    .map_err(FileFailure::Fatal)?
                {
                    self.target.insert(&mut data, key, version, value);
                }
            }
        }
        // Paired with the trailer's count, which the reader checked against the blocks: every
        // record of the file was either loaded or counted as skipped, or is a tombstone.
        let seen = self.report.records_seen(self.options.policy) - seen_before + tombstones;
        assert_eq!(
            seen,
            reader.summary().records,
            "{}: records accounted for differ from the records read",
            path.display()
        );
        self.report.log_position = reader.header().log_position;
        Ok(data)
    }

    /// Every record of a `.tcm` file into a fresh channel; a truncated file keeps the records
    /// before the cut.
    fn import_tcm(&mut self, path: &Path) -> Result<T::Channel, FileFailure> {
        let file =
            File::open(path).map_err(|err| FileFailure::Bad(format!("cannot open: {err}")))?;
        let mut reader = TcmReader::new(
            BufReader::with_capacity(TCM_READ_BUFFER_BYTES, file),
            self.options.max_value_bytes,
        )
        .map_err(|err| FileFailure::Bad(err.to_string()))?;
        let mut data = self.target.new_channel(self.channel);
        while let Some((key, value)) = reader
            .next_record()
            .map_err(|err| FileFailure::Bad(err.to_string()))?
        {
            if admit(&mut self.report, self.options, path, key, value)
                .map_err(FileFailure::Fatal)?
            {
                self.target.insert(&mut data, key, 0, value);
            }
        }
        let tcm = reader.report();
        self.report.invalid_keys += tcm.invalid_keys;
        self.report.empty_values += tcm.empty_values;
        self.report.too_large += tcm.too_large;
        self.report.truncated = tcm.truncated;
        log_tcm_import(path, &self.report, tcm, self.options);
        Ok(data)
    }
}

/// Decides whether a record goes in; `Err` under the fatal policy.
fn admit(
    report: &mut ChannelLoadReport,
    options: &LoadOptions,
    file: &Path,
    key: u64,
    value: &[u8],
) -> Result<bool, LoadError> {
    match options.admission(key, value) {
        Admission::Load => {}
        Admission::Empty => {
            report.empty_values += 1;
            return Ok(false);
        }
        Admission::TooLarge => {
            report.too_large += 1;
            return Ok(false);
        }
        Admission::OutOfRangeLoaded => report.out_of_range += 1,
        Admission::OutOfRangeIgnored => {
            report.out_of_range += 1;
            return Ok(false);
        }
        Admission::OutOfRangeFatal => {
            report.out_of_range += 1;
            return Err(LoadError::OutOfRange {
                file: file.to_path_buf(),
                key,
                range: options.range,
            });
        }
    }
    report.loaded += 1;
    report.value_bytes += value.len() as u64;
    Ok(true)
}

/// The ERROR line of a truncated `.tcm`, and the warning for the records it skipped.
fn log_tcm_import(
    path: &Path,
    report: &ChannelLoadReport,
    tcm: crate::tcm::TcmReport,
    options: &LoadOptions,
) {
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
        "channel {}: loaded {} records ({} value bytes) from {file} (covering the change log up \
         to position {}) in {:.2} s; skipped {} empty, {} too large (> {} bytes), {} invalid \
         keys; {} out of range of {} (policy {})",
        report.channel,
        report.loaded,
        report.value_bytes,
        report.log_position,
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
