//! dumptool's subcommands, on dump files of the dht node (`docs/formats.md`) and reference
//! `.tcm` files:
//!
//! - [`info`]: what a file holds and whether it passes every check;
//! - [`export`]: a file's records as `hexkey:base64value` lines ([`crate::lines`]);
//! - [`import`]: such lines, or a `.tcm` file, into a new dump file (temporary file, fsync, then
//!   an atomic link or rename into place; an existing file is replaced only when asked).
//!
//! Reading and writing stream through bounded buffers, so files of any size work in constant
//! memory. Long operations show a progress bar on stderr when it is a terminal.

use crate::lines::{format_line, parse_line, MAX_LINE_BYTES, MAX_VALUE_BYTES};
use crate::util::utc_time;
use dht_persist::dump::entry::{DumpEntry, VERSIONED_FORMAT_VERSION};
use dht_persist::dump::format::{DumpFileWriter, DumpReader, DumpSummary, FLAG_LOG_POSITION};
use dht_persist::tcm::{TcmReader, TcmReport, TCM_READ_BUFFER_BYTES};
use indicatif::{ProgressBar, ProgressStyle};
use node_core::protocol::batch::{append_record, RECORD_OVERHEAD};
use node_core::protocol::dht::valid_channel_name;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Uncompressed record bytes per block of an imported dump.
const IMPORT_CHUNK_BYTES: usize = 256 * 1024;
/// Write buffer of export and import output.
const OUTPUT_BUFFER_BYTES: usize = 1024 * 1024;

/// Whether `path` is a reference `.tcm` file (by its name).
pub fn is_tcm(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "tcm")
}

/// A progress bar over `len` bytes, drawn on stderr only when stderr is a terminal.
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Opens `path` for reading behind a progress bar over its size.
fn open_with_progress(path: &Path, what: &str) -> Result<(impl Read, ProgressBar), String> {
    let file = File::open(path).map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let len = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let bar = progress_bar(len, what);
    Ok((bar.wrap_read(file), bar))
}

// ----- info --------------------------------------------------------------------------------------

/// Writes a report on each file to `out`; `Ok(n)` = how many files failed their checks.
pub fn info(files: &[PathBuf], out: &mut impl Write) -> Result<usize, String> {
    let mut failures = 0;
    for (index, path) in files.iter().enumerate() {
        if index > 0 {
            writeln!(out).map_err(write_error)?;
        }
        let ok = match File::open(path) {
            Err(err) => {
                writeln!(out, "{}", path.display()).map_err(write_error)?;
                writeln!(out, "  checks:      FAILED: cannot open: {err}").map_err(write_error)?;
                false
            }
            Ok(_) if is_tcm(path) => info_tcm(path, out)?,
            Ok(_) => info_dump(path, out)?,
        };
        if !ok {
            failures += 1;
        }
    }
    Ok(failures)
}

fn write_error(err: io::Error) -> String {
    format!("write error: {err}")
}

fn info_dump(path: &Path, out: &mut impl Write) -> Result<bool, String> {
    let (input, bar) = open_with_progress(path, "checking")?;
    let file_bytes = fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    let mut lines = vec![path.display().to_string()];
    let ok = match DumpReader::open_buffered(input) {
        Err(err) => {
            lines.push("  format:      not a readable dht dump".to_string());
            lines.push(format!("  checks:      FAILED: {err}"));
            false
        }
        Ok(mut reader) => {
            let header = reader.header().clone();
            let mut tombstones = 0u64;
            let result = reader.for_each_entry(|_, entry| {
                if matches!(entry, DumpEntry::Tombstone { .. }) {
                    tombstones += 1;
                }
            });
            let summary: DumpSummary = reader.summary();
            lines.push(format!(
                "  format:      dht dump, version {}, compression {}",
                header.version,
                header.compression().name()
            ));
            lines.push(format!("  channel:     {}", header.channel));
            lines.push(format!(
                "  created:     {} ({})",
                utc_time(header.created_unix_s),
                header.created_unix_s
            ));
            lines.push(if header.flags & FLAG_LOG_POSITION != 0 {
                format!("  log position: {}", header.log_position)
            } else {
                "  log position: none (covers no change-log entry)".to_string()
            });
            let partial = if result.is_ok() {
                ""
            } else {
                " (read before the failure)"
            };
            lines.push(format!(
                "  records:     {}{partial}",
                summary.records - tombstones
            ));
            if header.version >= VERSIONED_FORMAT_VERSION {
                lines.push(format!("  tombstones:  {tombstones}{partial}"));
            }
            lines.push(format!("  value bytes: {}{partial}", summary.value_bytes));
            lines.push(format!("  file bytes:  {file_bytes}"));
            match result {
                Ok(_) => {
                    lines.push("  checks:      OK".to_string());
                    true
                }
                Err(err) => {
                    lines.push(format!("  checks:      FAILED: {err}"));
                    false
                }
            }
        }
    };
    bar.finish_and_clear();
    for line in lines {
        writeln!(out, "{line}").map_err(write_error)?;
    }
    Ok(ok)
}

fn info_tcm(path: &Path, out: &mut impl Write) -> Result<bool, String> {
    let (input, bar) = open_with_progress(path, "checking")?;
    let file_bytes = fs::metadata(path).map(|meta| meta.len()).unwrap_or(0);
    let mut value_bytes = 0u64;
    let result = TcmReader::new(
        BufReader::with_capacity(TCM_READ_BUFFER_BYTES, input),
        MAX_VALUE_BYTES,
    )
    .and_then(|mut reader| {
        while let Some((_, value)) = reader.next_record()? {
            value_bytes += value.len() as u64;
        }
        Ok(reader.report())
    });
    bar.finish_and_clear();
    writeln!(out, "{}", path.display()).map_err(write_error)?;
    let report: TcmReport = match result {
        Ok(report) => report,
        Err(err) => {
            writeln!(out, "  format:       not a readable reference .tcm file")
                .map_err(write_error)?;
            writeln!(out, "  checks:       FAILED: {err}").map_err(write_error)?;
            return Ok(false);
        }
    };
    let text = [
        "  format:       reference .tcm, version 0 (no checksums)".to_string(),
        format!("  records:      {}", report.loaded),
        format!("  value bytes:  {value_bytes}"),
        format!("  invalid keys: {} (skipped)", report.invalid_keys),
        format!("  empty values: {} (skipped)", report.empty_values),
        format!(
            "  too large:    {} (skipped; over {MAX_VALUE_BYTES} bytes)",
            report.too_large
        ),
        format!("  bytes read:   {} of {file_bytes}", report.bytes_read),
        if report.truncated {
            "  checks:       FAILED: the file ends before its end marker (truncated)".to_string()
        } else {
            "  checks:       OK (end marker found)".to_string()
        },
    ];
    for line in text {
        writeln!(out, "{line}").map_err(write_error)?;
    }
    Ok(!report.truncated)
}

// ----- export ------------------------------------------------------------------------------------

/// Where export writes.
pub enum ExportTarget<'a> {
    Stdout,
    /// A file, written through a temporary file and renamed into place once complete.
    File {
        path: &'a Path,
        force: bool,
    },
}

/// Writes every record of `input` (a dump, or a `.tcm` file by its name) as text lines.
/// Returns the number of records.
pub fn export(input: &Path, target: ExportTarget<'_>) -> Result<u64, String> {
    match target {
        ExportTarget::Stdout => {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, stdout.lock());
            let records = export_to(input, &mut out)?;
            out.flush().map_err(write_error)?;
            Ok(records)
        }
        ExportTarget::File { path, force } => {
            let mut records = 0;
            write_atomically(path, force, |file| {
                let mut out = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file);
                records = export_to(input, &mut out)?;
                out.into_inner()
                    .map_err(|err| write_error(err.into_error()))
            })?;
            Ok(records)
        }
    }
}

fn export_to(input: &Path, out: &mut impl Write) -> Result<u64, String> {
    let (reader, bar) = open_with_progress(input, "exporting")?;
    let mut line = Vec::with_capacity(64 * 1024);
    let mut records = 0u64;
    let result = if is_tcm(input) {
        export_tcm(input, reader, out, &mut line, &mut records)
    } else {
        export_dump(input, reader, out, &mut line, &mut records)
    };
    bar.finish_and_clear();
    result.map(|()| records)
}

fn export_dump(
    input: &Path,
    reader: impl Read,
    out: &mut impl Write,
    line: &mut Vec<u8>,
    records: &mut u64,
) -> Result<(), String> {
    let bad = |err| format!("{}: {err}", input.display());
    let mut dump = DumpReader::open_buffered(reader).map_err(bad)?;
    let format_version = dump.header().version;
    // Lines carry keys and values: a version 2 dump's versions and tombstones stay behind.
    loop {
        let offset = dump.offset();
        let Some(block) = dump.next_block().map_err(bad)? else {
            return Ok(());
        };
        line.clear();
        for (key, raw) in block {
            let entry = DumpEntry::decode(format_version, raw).map_err(|problem| {
                format!(
                    "{}: the entry of key 0x{key:016x} in the block at offset {offset}: {problem}",
                    input.display()
                )
            })?;
            if let DumpEntry::Record { value, .. } = entry {
                format_line(key, value, line);
                *records += 1;
            }
        }
        out.write_all(line).map_err(write_error)?;
    }
}

fn export_tcm(
    input: &Path,
    reader: impl Read,
    out: &mut impl Write,
    line: &mut Vec<u8>,
    records: &mut u64,
) -> Result<(), String> {
    let bad = |err| format!("{}: {err}", input.display());
    let mut tcm = TcmReader::new(
        BufReader::with_capacity(TCM_READ_BUFFER_BYTES, reader),
        MAX_VALUE_BYTES,
    )
    .map_err(bad)?;
    while let Some((key, value)) = tcm.next_record().map_err(bad)? {
        line.clear();
        format_line(key, value, line);
        out.write_all(line).map_err(write_error)?;
        *records += 1;
    }
    let report = tcm.report();
    if report.truncated {
        return Err(format!(
            "{}: the file ends before its end marker (truncated)",
            input.display()
        ));
    }
    report_tcm_skips(input, &report);
    Ok(())
}

fn report_tcm_skips(input: &Path, report: &TcmReport) {
    let skipped = report.invalid_keys + report.empty_values + report.too_large;
    if skipped > 0 {
        eprintln!(
            "dumptool: {}: skipped {skipped} records ({} invalid keys, {} empty values, {} too \
             large)",
            input.display(),
            report.invalid_keys,
            report.empty_values,
            report.too_large
        );
    }
}

// ----- import ------------------------------------------------------------------------------------

/// What [`import`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub channel: String,
    pub records: u64,
    pub value_bytes: u64,
}

/// The channel a dump file is for, from its name: everything before the first `.`
/// (`data/users.dump` → `users`).
pub fn channel_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    valid_channel_name(stem).then(|| stem.to_string())
}

/// Reads `input` (text lines, or a reference `.tcm` file when `tcm`) and writes the dump file
/// `output` for `channel` (default: from `output`'s name). Refuses to replace an existing
/// `output` unless `force`.
pub fn import(
    input: &Path,
    output: &Path,
    tcm: bool,
    channel: Option<&str>,
    force: bool,
) -> Result<ImportSummary, String> {
    let channel = match channel {
        Some(channel) if valid_channel_name(channel) => channel.to_string(),
        Some(channel) => {
            return Err(format!(
                "channel name {channel:?} is not valid (1 to 100 of A-Z a-z 0-9 _ -)"
            ))
        }
        None => channel_from_file_name(output).ok_or_else(|| {
            format!(
                "cannot take a channel name from {}; give --channel NAME",
                output.display()
            )
        })?,
    };
    let mut summary = DumpSummary::default();
    write_atomically(output, force, |file| {
        let buffered = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, file);
        let mut writer = DumpFileWriter::new(buffered, &channel).map_err(write_error)?;
        let (reader, bar) = open_with_progress(input, "importing")?;
        let result = if tcm {
            import_tcm(input, reader, &mut writer)
        } else {
            import_lines(input, reader, &mut writer)
        };
        bar.finish_and_clear();
        result?;
        let (buffered, written) = writer.finish().map_err(write_error)?;
        summary = written;
        buffered
            .into_inner()
            .map_err(|err| write_error(err.into_error()))
    })?;
    Ok(ImportSummary {
        channel,
        records: summary.records,
        value_bytes: summary.value_bytes,
    })
}

/// Collects records into chunks of about [`IMPORT_CHUNK_BYTES`] for a [`DumpFileWriter`].
struct Chunker<'w, W: Write> {
    writer: &'w mut DumpFileWriter<W>,
    chunk: Vec<u8>,
    count: u32,
}

impl<'w, W: Write> Chunker<'w, W> {
    fn new(writer: &'w mut DumpFileWriter<W>) -> Self {
        Chunker {
            writer,
            chunk: Vec::with_capacity(IMPORT_CHUNK_BYTES + 64 * 1024),
            count: 0,
        }
    }

    fn push(&mut self, key: u64, value: &[u8]) -> Result<(), String> {
        if self.count > 0
            && self.chunk.len() + RECORD_OVERHEAD + value.len()
                > node_core::protocol::batch::MAX_BATCH_UNCOMPRESSED_BYTES
        {
            self.flush()?;
        }
        append_record(&mut self.chunk, key, value);
        self.count += 1;
        if self.chunk.len() >= IMPORT_CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        self.writer
            .write_chunk(&self.chunk, self.count)
            .map_err(write_error)?;
        self.chunk.clear();
        self.count = 0;
        Ok(())
    }
}

fn import_lines<W: Write>(
    input: &Path,
    reader: impl Read,
    writer: &mut DumpFileWriter<W>,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(OUTPUT_BUFFER_BYTES, reader);
    let mut chunker = Chunker::new(writer);
    let mut line = Vec::with_capacity(64 * 1024);
    let mut value = Vec::with_capacity(64 * 1024);
    let mut number = 0u64;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|err| format!("cannot read {}: {err}", input.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        let text = match line.strip_suffix(b"\n") {
            Some(text) => text,
            None if line.len() > MAX_LINE_BYTES => {
                return Err(format!(
                    "{} line {number}: longer than {MAX_LINE_BYTES} bytes",
                    input.display()
                ))
            }
            None => &line[..], // The last line, without a newline.
        };
        let key = parse_line(text, &mut value)
            .map_err(|problem| format!("{} line {number}: {problem}", input.display()))?;
        chunker.push(key, &value)?;
    }
    chunker.flush()
}

fn import_tcm<W: Write>(
    input: &Path,
    reader: impl Read,
    writer: &mut DumpFileWriter<W>,
) -> Result<(), String> {
    let bad = |err| format!("{}: {err}", input.display());
    let mut tcm = TcmReader::new(
        BufReader::with_capacity(TCM_READ_BUFFER_BYTES, reader),
        MAX_VALUE_BYTES,
    )
    .map_err(bad)?;
    let mut chunker = Chunker::new(writer);
    while let Some((key, value)) = tcm.next_record().map_err(bad)? {
        chunker.push(key, value)?;
    }
    chunker.flush()?;
    let report = tcm.report();
    if report.truncated {
        return Err(format!(
            "{}: the file ends before its end marker (truncated); nothing written",
            input.display()
        ));
    }
    report_tcm_skips(input, &report);
    Ok(())
}

// ----- writing files -----------------------------------------------------------------------------

/// Writes `path` through a temporary file next to it (`.<name>.<pid>.tmp`): `write` fills it,
/// then it is fsynced and put in place — by an atomic no-clobber link (refusing if `path`
/// exists) unless `force`, then by an atomic rename. On any failure the temporary file is
/// deleted and `path` is untouched.
fn write_atomically(
    path: &Path,
    force: bool,
    write: impl FnOnce(File) -> Result<File, String>,
) -> Result<(), String> {
    let exists = || {
        format!(
            "{} already exists; use --force to replace it",
            path.display()
        )
    };
    if !force && fs::symlink_metadata(path).is_ok() {
        return Err(exists());
    }
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|err| format!("cannot create {}: {err}", tmp.display()))?;
    let result = write(file)
        .and_then(|file| {
            file.sync_all()
                .map_err(|err| format!("cannot sync {}: {err}", tmp.display()))
        })
        .and_then(|()| place(&tmp, path, force, exists));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the new name durable (best effort: the file itself is complete and synced).
    let _ = dht_persist::layout::sync_dir(&dir);
    Ok(())
}

fn place(tmp: &Path, path: &Path, force: bool, exists: impl Fn() -> String) -> Result<(), String> {
    let rename = || {
        fs::rename(tmp, path).map_err(|err| {
            format!(
                "cannot rename {} to {}: {err}",
                tmp.display(),
                path.display()
            )
        })
    };
    if force {
        return rename();
    }
    match fs::hard_link(tmp, path) {
        Ok(()) => {
            let _ = fs::remove_file(tmp);
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(exists()),
        // A filesystem without hard links: check, then rename (not atomic, but close).
        Err(_) if fs::symlink_metadata(path).is_err() => rename(),
        Err(_) => Err(exists()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_come_from_the_file_name() {
        for (path, channel) in [
            ("data/users.dump", Some("users")),
            ("users.dump.backup", Some("users")),
            ("/x/y/a-b_c", Some("a-b_c")),
            ("data/.hidden", None),
            ("bad name.dump", None),
        ] {
            assert_eq!(
                channel_from_file_name(Path::new(path)).as_deref(),
                channel,
                "{path}"
            );
        }
    }

    #[test]
    fn import_refuses_to_overwrite_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        fs::write(&input, "000000000000000a:dmFsdWUgYQ==\n").unwrap();
        let output = dir.path().join("ch.dump");
        let summary = import(&input, &output, false, None, false).unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                channel: "ch".into(),
                records: 1,
                value_bytes: 7
            }
        );
        let before = fs::read(&output).unwrap();
        let error = import(&input, &output, false, None, false).unwrap_err();
        assert!(error.contains("already exists"), "{error}");
        fs::write(&input, "000000000000000a:dmFsdWUgYQ==\nnot a line\n").unwrap();
        let error = import(&input, &output, false, Some("ch"), true).unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        assert_eq!(fs::read(&output).unwrap(), before);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
