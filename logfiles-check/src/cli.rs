//! `logfiles_check DATA_DIR [--channel CH] [--repair] [--json] [--quiet]`: verifies every bucket
//! file of a logfiles node's data directory and, with `--repair`, truncates damaged ones. The
//! binary's `main` only parses [`Args`] and calls [`run`].
//!
//! **What is checked.** [`walk_data_dir`] lists `DATA_DIR/<channel>/<slot>/<bucket>` as the node
//! sees it; every bucket file of every format is read through
//! [`check_bucket_file`](logfilesnode::storage::check_bucket_file) (mapped, never read whole): CRC32 of
//! each record for our format, the header parity for the reference's v1, length sanity for all
//! three, and whether each key belongs to the bucket the file name says. Entries that are not
//! bucket files (stray names, `*.gz`, saved repair cuts, directories where a file belongs, a
//! top-level file ...) are listed as "not checked" with the reason; they do not make the
//! directory unclean. Directories and files that cannot be read are problems.
//!
//! **Text output** (stdout), one line per bucket file in channel and bucket order:
//!
//! ```text
//! data/ch/0000000057/275: ok, v1 format, 8 records, 145 value bytes, 285 bytes; index ok (1 entry)
//! data/ch/0000000057/21b: ok, empty (skipped by readers)
//! data/ch/0000000057/276: DAMAGED, v1 format, 4 records, ...; first bad offset 150: record header parity mismatch (135 bytes skipped); no index (built by the first read)
//! data/ch/0000000057/276.cut.1717171717: not checked: bytes cut off by an earlier repair
//! ```
//!
//! then a summary (channels, files, records, value bytes, file bytes; each problem file with its
//! first bad offset and why; what a repair did) and a `result:` line. `--quiet` leaves out the
//! lines of clean files and of entries not checked.
//!
//! **`--json`**: one JSON document on stdout, written file by file (memory stays bounded):
//! `{"data_dir", "channel", "repair", "channels": [names], "skipped": [{"path", "reason",
//! "why"}], "unreadable": [{"path", "error"}], "files": [{"path", "channel", "bucket"
//! ("<slot>/<bucket>"), "status" ("ok" | "damaged" | "unreadable"), "format" ("legacy" | "v1" |
//! "crc" | null), "len_bytes", "records", "value_bytes", "first_bad": null | {"offset", "kind",
//! "reason"}, "damage_count", "damage": [{"offset", "len_bytes", "kind", "reason"}] (at most
//! 16), "misplaced_records", "first_misplaced_offset", "first_misplaced_key",
//! "records_past_first_bad", "error", "repair": null | {"cut_from_offset", "cut_bytes",
//! "records_cut", "saved_to"}, "repair_error", "index": null (empty or unreadable file) |
//! {"status" ("ok" | "missing" | "stale" | "damaged"), "reason" (null when ok), "entries",
//! "interval_bytes", "in_order" (null unless ok), "rebuilt": null | {"entries", "interval_bytes",
//! "in_order"}, "rebuild_error"}}], "summary": {see [`Totals`]}, "exit_code"}`. Keys are numbers
//! (u64).
//!
//! **Exit codes**: [`EXIT_CLEAN`], [`EXIT_PROBLEMS`], [`EXIT_USAGE`], [`EXIT_REPAIRED`].
//!
//! **`--repair`** (refused while a node runs on the directory: both take its `.lock`) truncates each damaged file at its first bad
//! record (damage or key outside the bucket) with
//! [`repair_bucket_file`](logfilesnode::storage::repair_bucket_file): the bytes from there to the end
//! are first saved to `<bucket>.cut.<unix seconds>` next to the file and fsynced. Good records
//! after the first bad one go to that file too (their number is reported). Files with an
//! unusable header (unknown version, bad header CRC) are not touched. It then rebuilds the index
//! of every bucket it cut and of every non-empty bucket whose index is missing, stale or damaged
//! (`--index-interval-bytes` per stretch, default 65536; the node uses an index of any interval).
//!
//! **Progress**: a bar on stderr, by bytes, when the caller asks for it (stderr is a terminal
//! and not `--json`) and the directory is large ([`PROGRESS_MIN_FILES`] files or
//! [`PROGRESS_MIN_BYTES`] bytes).

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use logfilesnode::storage::check::{
    check_bucket_file, rebuild_index, repair_bucket_file, walk_data_dir, BucketEntry, FileReport,
    IndexCheck, Inventory, Repair, Unreadable,
};
use logfilesnode::storage::index::{
    IndexProblem, DEFAULT_INDEX_INTERVAL_BYTES, MAX_CONFIG_INDEX_INTERVAL_BYTES,
    MIN_INDEX_INTERVAL_BYTES,
};
use logfilesnode::valid_channel_name;
use serde::Serialize;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Exit code: every bucket file is clean (entries that are not buckets do not count).
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: something is wrong (damage, keys outside their bucket, unreadable files or
/// directories), and with `--repair` not everything could be repaired.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: usage error, DATA_DIR or the `--channel` directory missing or unreadable, or the
/// report could not be written. (Also clap's code for bad arguments.)
pub const EXIT_USAGE: u8 = 2;
/// Exit code: `--repair` found problems and repaired all of them (a new check exits 0).
pub const EXIT_REPAIRED: u8 = 3;

/// A progress bar is drawn from this many bucket files ...
pub const PROGRESS_MIN_FILES: usize = 200;
/// ... or this many bytes of bucket files.
pub const PROGRESS_MIN_BYTES: u64 = 256 << 20;
/// Problem files listed again in the text summary.
const SUMMARY_MAX_LISTED: usize = 50;

const AFTER_HELP: &str = "\
Exit status:
  0  every bucket file is clean (entries that are not bucket files are listed but do not count;
     missing and stale indexes are reported but the node rebuilds them)
  1  something is wrong: damaged records, keys outside their bucket, damaged indexes, unreadable
     files or directories; with --repair: something could not be repaired
  2  usage error, DATA_DIR or the --channel directory missing or unreadable, or the report
     could not be written
  3  --repair found problems and repaired all of them (a new check exits 0)

--repair truncates each damaged bucket file at its first bad record (damage or key outside the
bucket), after saving the cut bytes to <bucket>.cut.<unix seconds> next to it (fsynced; the node
never reads such names), then rebuilds the index (<bucket>.idx) of every bucket it cut and every
index that is missing, stale or damaged. Run it with the node stopped.";

/// Verify the bucket files of a logfiles node's data directory (DATA_DIR/<channel>/<slot>/<bucket>,
/// all formats): record checksums (CRC32, or the parity of reference v1 files), lengths, and that
/// every key belongs to its bucket. Prints one line per file and a summary.
#[derive(Debug, Clone, Parser)]
#[command(name = "logfiles_check", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The node's data directory.
    #[arg(value_name = "DATA_DIR")]
    pub data_dir: PathBuf,
    /// Check only this channel.
    #[arg(short, long, value_name = "CH")]
    pub channel: Option<String>,
    /// Truncate each damaged file at its first bad record, saving the cut bytes to
    /// <bucket>.cut.<unix seconds> next to it first.
    #[arg(long)]
    pub repair: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Leave out the lines of clean files and of entries not checked (text output).
    #[arg(short, long)]
    pub quiet: bool,
    /// With --repair: bytes of records per stretch of the indexes it rebuilds (4096 to
    /// 67108864; the node's `logfiles.index_interval_bytes`).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_INDEX_INTERVAL_BYTES,
          value_parser = clap::value_parser!(u32).range(
              MIN_INDEX_INTERVAL_BYTES as i64..=MAX_CONFIG_INDEX_INTERVAL_BYTES as i64))]
    pub index_interval_bytes: u32,
}

/// Why the check could not run at all (exit code [`EXIT_USAGE`]).
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the report: {0}")]
    Output(#[from] io::Error),
}

/// The totals of a run (the `summary` object of the JSON report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Channel directories walked.
    pub channels: u64,
    /// Bucket files checked (including empty and unreadable ones).
    pub bucket_files: u64,
    /// Zero-length bucket files (readers skip them; not a problem).
    pub empty_files: u64,
    /// Good records in all files.
    pub records: u64,
    /// Sum of the good records' value lengths.
    pub value_bytes: u64,
    /// Sum of the bucket files' lengths (before any repair).
    pub file_bytes: u64,
    /// Bucket files with damage or keys outside their bucket.
    pub damaged_files: u64,
    /// Of those, files with keys outside their bucket.
    pub files_with_misplaced_keys: u64,
    /// Damage items in all files.
    pub damage_items: u64,
    /// Bucket files and directories that could not be read.
    pub unreadable: u64,
    /// Entries that are not bucket files.
    pub skipped: u64,
    /// Files a repair truncated.
    pub repaired_files: u64,
    /// Damaged files a repair could not truncate.
    pub repair_failures: u64,
    /// Bytes repairs cut off (and saved aside).
    pub cut_bytes: u64,
    /// Good records among the cut bytes (they are in the saved files).
    pub records_cut: u64,
    /// Indexes that disagree with their bucket or do not decode (a problem).
    pub damaged_indexes: u64,
    /// Indexes missing or stale (not a problem: the node rebuilds them on the first read).
    pub indexes_missing_or_stale: u64,
    /// Indexes `--repair` wrote anew.
    pub indexes_rebuilt: u64,
    /// Indexes `--repair` could not write.
    pub index_rebuild_failures: u64,
}

impl Totals {
    /// The exit code these totals call for.
    pub fn exit_code(&self, repair: bool) -> u8 {
        let problems = self.damaged_files + self.unreadable + self.damaged_indexes;
        if problems == 0 && self.index_rebuild_failures == 0 {
            EXIT_CLEAN
        } else if repair
            && self.unreadable == 0
            && self.repair_failures == 0
            && self.repaired_files == self.damaged_files
            && self.index_rebuild_failures == 0
        {
            EXIT_REPAIRED
        } else {
            EXIT_PROBLEMS
        }
    }
}

/// What became of one bucket file.
struct FileOutcome<'a> {
    entry: &'a BucketEntry,
    check: Result<FileReport, Unreadable>,
    repair: Option<Result<Repair, String>>,
    /// What `--repair` wrote as the bucket's index.
    index_rebuild: Option<Result<IndexCheck, String>>,
}

/// Runs the check (and repair) described by `args`, writing the report to `out`; `progress`:
/// whether a progress bar may be drawn on stderr (the caller knows whether it is a terminal).
/// Returns the exit code; `Err` means the check could not run ([`EXIT_USAGE`]).
pub fn run(args: &Args, out: &mut dyn Write, progress: bool) -> Result<u8, CliError> {
    let inventory = take_inventory(args)?;
    // A repair truncates files: never under a running node (it holds this lock while it runs).
    let _lock = if args.repair {
        Some(node_core::data_lock::DataDirLock::acquire(&args.data_dir).map_err(CliError::Usage)?)
    } else {
        None
    };
    let bar = progress_bar(progress && !args.json, &inventory);
    let mut out = BarWriter::new(out, bar.clone());
    let mut report: Box<dyn Report> = if args.json {
        Box::new(JsonReport { first: true })
    } else {
        Box::new(TextReport {
            quiet: args.quiet,
            listed: Vec::new(),
        })
    };
    let mut totals = Totals {
        channels: inventory.channels.len() as u64,
        unreadable: inventory.unreadable.len() as u64,
        skipped: inventory.skipped.len() as u64,
        ..Totals::default()
    };
    report.begin(&mut out, args, &inventory)?;
    let total_files = inventory.buckets.len();
    for (done, entry) in inventory.buckets.iter().enumerate() {
        let outcome = check_one(entry, args.repair.then_some(args.index_interval_bytes));
        add_to_totals(&mut totals, &outcome);
        report.file(&mut out, &outcome)?;
        bar.inc(entry.len_bytes);
        if !bar.is_hidden() {
            bar.set_message(format!("{}/{total_files} files", done + 1));
        }
        out.pump()?;
    }
    out.flush()?;
    bar.finish_and_clear();
    let code = totals.exit_code(args.repair);
    report.finish(&mut out, args, &inventory, &totals, code)?;
    out.flush()?;
    Ok(code)
}

/// Output written while a progress bar may be drawn on stderr. While the bar is visible, the
/// report is collected and written at most every [`OUTPUT_PAUSE`] (or per
/// [`OUTPUT_BATCH_BYTES`]), the bar cleared around the write: clearing and redrawing it for
/// every line would cost more than the check. Without a bar, writes go straight through.
struct BarWriter<'w> {
    out: &'w mut dyn Write,
    bar: ProgressBar,
    pending: Vec<u8>,
    last_write: Instant,
}

/// See [`BarWriter`].
const OUTPUT_PAUSE: Duration = Duration::from_millis(250);
/// See [`BarWriter`].
const OUTPUT_BATCH_BYTES: usize = 1 << 20;

impl<'w> BarWriter<'w> {
    fn new(out: &'w mut dyn Write, bar: ProgressBar) -> Self {
        BarWriter {
            out,
            bar,
            pending: Vec::new(),
            last_write: Instant::now(),
        }
    }

    /// Writes what is pending if it is time to.
    fn pump(&mut self) -> io::Result<()> {
        if !self.pending.is_empty()
            && (self.last_write.elapsed() >= OUTPUT_PAUSE
                || self.pending.len() >= OUTPUT_BATCH_BYTES)
        {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (out, pending) = (&mut self.out, &self.pending);
        self.bar.suspend(|| {
            out.write_all(pending)?;
            out.flush()
        })?;
        self.pending.clear();
        self.last_write = Instant::now();
        Ok(())
    }
}

impl Write for BarWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bar.is_hidden() {
            return self.out.write(buf);
        }
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.out.flush()
    }
}

/// Validates the arguments and lists DATA_DIR.
fn take_inventory(args: &Args) -> Result<Inventory, CliError> {
    let data_dir = &args.data_dir;
    if let Some(channel) = &args.channel {
        if !valid_channel_name(channel) {
            return Err(CliError::Usage(format!(
                "--channel {channel:?} is not a channel name (1 to 100 of A-Z a-z 0-9 _ -)"
            )));
        }
    }
    match fs::metadata(data_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(CliError::Usage(format!(
                "DATA_DIR {} is not a directory",
                data_dir.display()
            )))
        }
        Err(e) => {
            return Err(CliError::Usage(format!(
                "cannot read DATA_DIR {}: {e}",
                data_dir.display()
            )))
        }
    }
    if let Some(channel) = &args.channel {
        let channel_dir = data_dir.join(channel);
        if !fs::metadata(&channel_dir).is_ok_and(|m| m.is_dir()) {
            return Err(CliError::Usage(format!(
                "no channel {channel} in {}: {} is not a directory",
                data_dir.display(),
                channel_dir.display()
            )));
        }
    }
    walk_data_dir(data_dir, args.channel.as_deref())
        .map_err(|e| CliError::Usage(format!("cannot read {e}")))
}

/// Checks one bucket; with `repair` (the interval of rebuilt indexes), repairs it and rebuilds
/// its index when the bucket was cut or the index is not usable.
fn check_one(entry: &BucketEntry, repair: Option<u32>) -> FileOutcome<'_> {
    let check = check_bucket_file(&entry.path, Some(entry.id))
        .map_err(|e| Unreadable::from_storage_error(&entry.path, &e));
    let bucket_repair = match &check {
        Ok(report) if repair.is_some() && !report.is_clean() => {
            Some(match repair_bucket_file(report) {
                Ok(Some(done)) => Ok(done),
                Ok(None) => Err("nothing to cut".to_string()),
                Err(e) => Err(e.to_string()),
            })
        }
        _ => None,
    };
    let index_rebuild = match (&check, repair) {
        (Ok(report), Some(interval_bytes))
            if matches!(bucket_repair, Some(Ok(_)))
                || report.index.as_ref().is_some_and(IndexCheck::needs_rebuild) =>
        {
            Some(rebuild_index(&entry.path, interval_bytes).map_err(|e| e.to_string()))
        }
        _ => None,
    };
    FileOutcome {
        entry,
        check,
        repair: bucket_repair,
        index_rebuild,
    }
}

fn add_to_totals(totals: &mut Totals, outcome: &FileOutcome<'_>) {
    totals.bucket_files += 1;
    match &outcome.check {
        Err(_) => {
            totals.unreadable += 1;
            totals.file_bytes += outcome.entry.len_bytes;
        }
        Ok(file) => {
            totals.file_bytes += file.len_bytes;
            totals.records += file.records;
            totals.value_bytes += file.value_bytes;
            totals.damage_items += file.damage_count;
            if file.len_bytes == 0 {
                totals.empty_files += 1;
            }
            if !file.is_clean() {
                totals.damaged_files += 1;
            }
            if file.misplaced_records > 0 {
                totals.files_with_misplaced_keys += 1;
            }
        }
    }
    match &outcome.repair {
        Some(Ok(done)) => {
            totals.repaired_files += 1;
            totals.cut_bytes += done.cut_bytes;
            totals.records_cut += done.records_cut;
        }
        Some(Err(_)) => totals.repair_failures += 1,
        None => {}
    }
    if let Some(index) = outcome.check.as_ref().ok().and_then(|f| f.index.as_ref()) {
        if index.is_damaged() {
            totals.damaged_indexes += 1;
        } else if index.needs_rebuild() {
            totals.indexes_missing_or_stale += 1;
        }
    }
    match &outcome.index_rebuild {
        Some(Ok(_)) => totals.indexes_rebuilt += 1,
        Some(Err(_)) => totals.index_rebuild_failures += 1,
        None => {}
    }
}

/// A bar over the bucket bytes, only when allowed and the directory is large.
fn progress_bar(allowed: bool, inventory: &Inventory) -> ProgressBar {
    let bytes = inventory.bucket_bytes();
    if !allowed || (inventory.buckets.len() < PROGRESS_MIN_FILES && bytes < PROGRESS_MIN_BYTES) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("checking [{bar:30}] {bytes}/{total_bytes}, {msg}, eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("0/{} files", inventory.buckets.len()));
    bar
}

/// `"1 record"`, `"2 records"`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The `<slot>/<bucket>` part of a bucket's path.
fn bucket_name(entry: &BucketEntry) -> String {
    format!("{}/{}", entry.id.slot_dir_name(), entry.id.file_name())
}

/// An output format.
trait Report {
    /// Before the first file.
    fn begin(&mut self, out: &mut dyn Write, args: &Args, inventory: &Inventory) -> io::Result<()>;
    fn file(&mut self, out: &mut dyn Write, outcome: &FileOutcome<'_>) -> io::Result<()>;
    fn finish(
        &mut self,
        out: &mut dyn Write,
        args: &Args,
        inventory: &Inventory,
        totals: &Totals,
        code: u8,
    ) -> io::Result<()>;
}

// ----- text ------------------------------------------------------------------------------------

struct TextReport {
    quiet: bool,
    /// Problem lines for the summary (the first [`SUMMARY_MAX_LISTED`]).
    listed: Vec<String>,
}

impl TextReport {
    fn list(&mut self, line: String) {
        if self.listed.len() < SUMMARY_MAX_LISTED {
            self.listed.push(line);
        }
    }
}

/// The text line of one file, and why it is a problem (for the summary), if it is one.
fn file_line(outcome: &FileOutcome<'_>) -> (String, Option<String>) {
    let path = outcome.entry.path.display();
    let file = match &outcome.check {
        Err(u) => {
            let why = format!("unreadable: {}", u.error);
            return (format!("{path}: UNREADABLE: {}", u.error), Some(why));
        }
        Ok(file) => file,
    };
    if file.len_bytes == 0 {
        return (format!("{path}: ok, empty (skipped by readers)"), None);
    }
    let format = file.format.map_or("unusable header".to_string(), |f| {
        format!("{} format", f.name())
    });
    let mut line = format!(
        "{path}: {}, {format}, {}, {}, {}",
        if file.is_clean() { "ok" } else { "DAMAGED" },
        count(file.records, "record"),
        count(file.value_bytes, "value byte"),
        count(file.len_bytes, "byte")
    );
    let why = file.first_bad().map(|first| {
        line.push_str(&bucket_problem(file, outcome, &first));
        format!("first bad offset {}: {first}", first.offset())
    });
    let index_why = file.index.as_ref().and_then(|index| {
        line.push_str(&index_text(index, &outcome.index_rebuild));
        match index {
            IndexCheck::Problem(why @ IndexProblem::Damaged(_)) => Some(format!("index {why}")),
            _ => None,
        }
    });
    (line, why.or(index_why))
}

/// The part of a file's line about what is wrong with the bucket and what a repair did.
fn bucket_problem(
    file: &FileReport,
    outcome: &FileOutcome<'_>,
    first: &logfilesnode::storage::check::FirstBad,
) -> String {
    let mut text = format!("; first bad offset {}: {first}", first.offset());
    if file.damage_count > 1 {
        text.push_str(&format!("; {} damaged spans in all", file.damage_count));
    }
    if file.misplaced_records > 0 {
        text.push_str(&format!(
            "; {} with keys outside the bucket",
            count(file.misplaced_records, "record")
        ));
    }
    if file.records_past_first_bad > 0 {
        text.push_str(&format!(
            "; {} after the first bad one",
            count(file.records_past_first_bad, "good record")
        ));
    }
    match &outcome.repair {
        Some(Ok(done)) => text.push_str(&format!(
            "; REPAIRED: cut {} from offset {} ({} among them), saved to {}",
            count(done.cut_bytes, "byte"),
            done.cut_from_offset,
            count(done.records_cut, "good record"),
            done.saved_to.display()
        )),
        Some(Err(e)) => text.push_str(&format!("; NOT REPAIRED: {e}")),
        None => {}
    }
    text
}

/// `"1 entry"`, `"2 entries"`.
fn entries_text(n: u64) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

/// The part of a file's line about its index, and what `--repair` wrote.
fn index_text(index: &IndexCheck, rebuild: &Option<Result<IndexCheck, String>>) -> String {
    let mut text = match index {
        IndexCheck::Ok { entries, .. } => format!("; index ok ({})", entries_text(*entries)),
        IndexCheck::Problem(IndexProblem::Missing) => "; no index (built by the first read)".into(),
        IndexCheck::Problem(stale @ IndexProblem::Stale { .. }) => {
            format!("; index {stale} (rebuilt by the first read)")
        }
        IndexCheck::Problem(damaged) => format!("; INDEX {damaged}"),
    };
    match rebuild {
        Some(Ok(IndexCheck::Ok { entries, .. })) => {
            text.push_str(&format!("; index rebuilt ({})", entries_text(*entries)))
        }
        Some(Ok(IndexCheck::Problem(_))) => {}
        Some(Err(e)) => text.push_str(&format!("; INDEX NOT REBUILT: {e}")),
        None => {}
    }
    text
}

impl TextReport {
    /// The summary's problem count and the problems listed again.
    fn problems(&self, out: &mut dyn Write, t: &Totals) -> io::Result<()> {
        if t.damaged_files == 0 && t.unreadable == 0 && t.damaged_indexes == 0 {
            return Ok(());
        }
        writeln!(
            out,
            "problems: {} damaged files ({} with keys outside their bucket, {} damaged spans), {} damaged indexes, {} unreadable",
            t.damaged_files,
            t.files_with_misplaced_keys,
            t.damage_items,
            t.damaged_indexes,
            t.unreadable
        )?;
        for line in &self.listed {
            writeln!(out, "  {line}")?;
        }
        let all = t.damaged_files + t.unreadable + t.damaged_indexes;
        if all > self.listed.len() as u64 {
            writeln!(
                out,
                "  ... and {} more (see above)",
                all - self.listed.len() as u64
            )?;
        }
        Ok(())
    }
}

/// The summary's lines about what `--repair` did.
fn repairs(out: &mut dyn Write, t: &Totals) -> io::Result<()> {
    if t.repaired_files > 0 || t.repair_failures > 0 {
        writeln!(
            out,
            "repaired: {} files, {} bytes cut and saved aside ({} good records among them); {} could not be repaired",
            t.repaired_files, t.cut_bytes, t.records_cut, t.repair_failures
        )?;
    }
    if t.indexes_rebuilt > 0 || t.index_rebuild_failures > 0 {
        writeln!(
            out,
            "indexes rebuilt: {}; {} could not be written",
            t.indexes_rebuilt, t.index_rebuild_failures
        )?;
    }
    Ok(())
}

impl Report for TextReport {
    fn begin(
        &mut self,
        out: &mut dyn Write,
        _args: &Args,
        inventory: &Inventory,
    ) -> io::Result<()> {
        for u in &inventory.unreadable {
            writeln!(out, "{}: UNREADABLE: {}", u.path.display(), u.error)?;
            self.list(format!("{}: unreadable: {}", u.path.display(), u.error));
        }
        Ok(())
    }

    fn file(&mut self, out: &mut dyn Write, outcome: &FileOutcome<'_>) -> io::Result<()> {
        let (line, problem) = file_line(outcome);
        let is_problem = problem.is_some();
        if let Some(why) = problem {
            let mut listed = format!("{}: {why}", outcome.entry.path.display());
            // The bucket's repair when it had one, else the index's rebuild.
            let repaired = match (&outcome.repair, &outcome.index_rebuild) {
                (Some(bucket), _) => Some(bucket.is_ok()),
                (None, Some(index)) => Some(index.is_ok()),
                (None, None) => None,
            };
            match repaired {
                Some(true) => listed.push_str(" (repaired)"),
                Some(false) => listed.push_str(" (NOT repaired)"),
                None => {}
            }
            self.list(listed);
        }
        if is_problem || !self.quiet {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    fn finish(
        &mut self,
        out: &mut dyn Write,
        args: &Args,
        inventory: &Inventory,
        t: &Totals,
        code: u8,
    ) -> io::Result<()> {
        if !self.quiet {
            for s in &inventory.skipped {
                writeln!(out, "{}: not checked: {}", s.path.display(), s.reason)?;
            }
        }
        writeln!(
            out,
            "summary: {}, {} ({} empty), {}, {}, {}",
            count(t.channels, "channel"),
            count(t.bucket_files, "bucket file"),
            t.empty_files,
            count(t.records, "record"),
            count(t.value_bytes, "value byte"),
            count(t.file_bytes, "byte")
        )?;
        if t.skipped > 0 {
            writeln!(
                out,
                "not checked: {} entries that are not bucket files{}",
                t.skipped,
                if self.quiet { "" } else { " (listed above)" }
            )?;
        }
        if t.indexes_missing_or_stale > 0 {
            writeln!(
                out,
                "indexes: {} missing or stale (the node rebuilds them on the first read)",
                t.indexes_missing_or_stale
            )?;
        }
        self.problems(out, t)?;
        if args.repair {
            repairs(out, t)?;
        }
        let verdict = match code {
            EXIT_CLEAN => "clean",
            EXIT_REPAIRED => "problems found and repaired",
            _ if args.repair => "PROBLEMS LEFT",
            _ => "PROBLEMS FOUND",
        };
        writeln!(out, "result: {verdict} (exit {code})")
    }
}

// ----- JSON ------------------------------------------------------------------------------------

struct JsonReport {
    first: bool,
}

#[derive(Serialize)]
struct JsonSkipped {
    path: String,
    reason: &'static str,
    why: String,
}

#[derive(Serialize)]
struct JsonUnreadable {
    path: String,
    error: String,
}

#[derive(Serialize)]
struct JsonFirstBad {
    offset: u64,
    kind: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct JsonDamage {
    offset: u64,
    len_bytes: u64,
    kind: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct JsonRepair {
    cut_from_offset: u64,
    cut_bytes: u64,
    records_cut: u64,
    saved_to: String,
}

#[derive(Serialize, Default)]
struct JsonFile<'a> {
    path: String,
    channel: &'a str,
    bucket: String,
    status: &'static str,
    format: Option<&'static str>,
    len_bytes: u64,
    records: u64,
    value_bytes: u64,
    first_bad: Option<JsonFirstBad>,
    damage_count: u64,
    damage: Vec<JsonDamage>,
    misplaced_records: u64,
    first_misplaced_offset: Option<u64>,
    first_misplaced_key: Option<u64>,
    records_past_first_bad: u64,
    error: Option<String>,
    repair: Option<JsonRepair>,
    repair_error: Option<String>,
    index: Option<JsonIndex>,
}

#[derive(Serialize, Default)]
struct JsonIndexFacts {
    entries: Option<u64>,
    interval_bytes: Option<u32>,
    in_order: Option<bool>,
}

impl JsonIndexFacts {
    fn of(index: &IndexCheck) -> Self {
        match index {
            IndexCheck::Ok {
                entries,
                interval_bytes,
                in_order,
            } => JsonIndexFacts {
                entries: Some(*entries),
                interval_bytes: Some(*interval_bytes),
                in_order: Some(*in_order),
            },
            IndexCheck::Problem(_) => JsonIndexFacts::default(),
        }
    }
}

#[derive(Serialize)]
struct JsonIndex {
    status: &'static str,
    reason: Option<String>,
    #[serde(flatten)]
    facts: JsonIndexFacts,
    rebuilt: Option<JsonIndexFacts>,
    rebuild_error: Option<String>,
}

fn json_index(index: &IndexCheck, rebuild: &Option<Result<IndexCheck, String>>) -> JsonIndex {
    JsonIndex {
        status: index.status_name(),
        reason: match index {
            IndexCheck::Ok { .. } => None,
            IndexCheck::Problem(why) => Some(why.to_string()),
        },
        facts: JsonIndexFacts::of(index),
        rebuilt: rebuild
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .map(JsonIndexFacts::of),
        rebuild_error: rebuild.as_ref().and_then(|r| r.as_ref().err()).cloned(),
    }
}

fn path_string(path: &Path) -> String {
    path.display().to_string()
}

fn json_file<'a>(outcome: &FileOutcome<'a>) -> JsonFile<'a> {
    let entry = outcome.entry;
    let mut json = JsonFile {
        path: path_string(&entry.path),
        channel: &entry.channel,
        bucket: bucket_name(entry),
        ..JsonFile::default()
    };
    match &outcome.check {
        Err(u) => {
            json.status = "unreadable";
            json.len_bytes = entry.len_bytes;
            json.error = Some(u.error.clone());
        }
        Ok(file) => {
            json.status = if file.is_clean() { "ok" } else { "damaged" };
            json.format = file.format.map(|f| f.name());
            json.len_bytes = file.len_bytes;
            json.records = file.records;
            json.value_bytes = file.value_bytes;
            json.first_bad = file.first_bad().map(|b| JsonFirstBad {
                offset: b.offset(),
                kind: b.kind_name(),
                reason: b.to_string(),
            });
            json.damage_count = file.damage_count;
            json.damage = file
                .damage
                .iter()
                .map(|d| JsonDamage {
                    offset: d.offset,
                    len_bytes: d.len_bytes,
                    kind: logfilesnode::storage::check::damage_kind_name(d.kind),
                    reason: d.kind.to_string(),
                })
                .collect();
            json.misplaced_records = file.misplaced_records;
            json.first_misplaced_offset = file.first_misplaced_offset;
            json.first_misplaced_key = file.first_misplaced_key;
            json.records_past_first_bad = file.records_past_first_bad;
            json.index = file
                .index
                .as_ref()
                .map(|index| json_index(index, &outcome.index_rebuild));
        }
    }
    match &outcome.repair {
        Some(Ok(done)) => {
            json.repair = Some(JsonRepair {
                cut_from_offset: done.cut_from_offset,
                cut_bytes: done.cut_bytes,
                records_cut: done.records_cut,
                saved_to: path_string(&done.saved_to),
            })
        }
        Some(Err(e)) => json.repair_error = Some(e.clone()),
        None => {}
    }
    json
}

impl Report for JsonReport {
    fn begin(&mut self, out: &mut dyn Write, args: &Args, inventory: &Inventory) -> io::Result<()> {
        write!(out, "{{\"data_dir\":")?;
        serde_json::to_writer(&mut *out, &path_string(&args.data_dir))?;
        write!(out, ",\"channel\":")?;
        serde_json::to_writer(&mut *out, &args.channel)?;
        write!(out, ",\"repair\":{},\n\"channels\":", args.repair)?;
        serde_json::to_writer(&mut *out, &inventory.channels)?;
        write!(out, ",\n\"skipped\":")?;
        let skipped: Vec<JsonSkipped> = inventory
            .skipped
            .iter()
            .map(|s| JsonSkipped {
                path: path_string(&s.path),
                reason: s.reason.name(),
                why: s.reason.to_string(),
            })
            .collect();
        serde_json::to_writer(&mut *out, &skipped)?;
        write!(out, ",\n\"unreadable\":")?;
        let unreadable: Vec<JsonUnreadable> = inventory
            .unreadable
            .iter()
            .map(|u| JsonUnreadable {
                path: path_string(&u.path),
                error: u.error.clone(),
            })
            .collect();
        serde_json::to_writer(&mut *out, &unreadable)?;
        write!(out, ",\n\"files\":[")?;
        Ok(())
    }

    fn file(&mut self, out: &mut dyn Write, outcome: &FileOutcome<'_>) -> io::Result<()> {
        out.write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        serde_json::to_writer(&mut *out, &json_file(outcome))?;
        Ok(())
    }

    fn finish(
        &mut self,
        out: &mut dyn Write,
        _args: &Args,
        _inventory: &Inventory,
        totals: &Totals,
        code: u8,
    ) -> io::Result<()> {
        write!(out, "],\n\"summary\":")?;
        serde_json::to_writer(&mut *out, totals)?;
        writeln!(out, ",\n\"exit_code\":{code}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent_and_help_names_the_exit_codes() {
        Args::command().debug_assert();
        let help = Args::command().render_long_help().to_string();
        for needle in ["Exit status", "  0  ", "  1  ", "  2  ", "  3  ", ".cut."] {
            assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
        }
    }

    #[test]
    fn exit_codes_follow_the_totals() {
        let clean = Totals::default();
        assert_eq!(clean.exit_code(false), EXIT_CLEAN);
        assert_eq!(clean.exit_code(true), EXIT_CLEAN);
        let damaged = Totals {
            damaged_files: 2,
            ..Totals::default()
        };
        assert_eq!(damaged.exit_code(false), EXIT_PROBLEMS);
        assert_eq!(damaged.exit_code(true), EXIT_PROBLEMS);
        let repaired = Totals {
            repaired_files: 2,
            ..damaged.clone()
        };
        assert_eq!(repaired.exit_code(true), EXIT_REPAIRED);
        let partly = Totals {
            repaired_files: 1,
            repair_failures: 1,
            ..damaged
        };
        assert_eq!(partly.exit_code(true), EXIT_PROBLEMS);
        let unreadable = Totals {
            unreadable: 1,
            ..Totals::default()
        };
        assert_eq!(unreadable.exit_code(true), EXIT_PROBLEMS);
    }

    #[test]
    fn progress_bar_only_for_large_directories_when_allowed() {
        let mut inventory = Inventory::default();
        assert!(progress_bar(true, &inventory).is_hidden());
        inventory.buckets = (0..PROGRESS_MIN_FILES as u64)
            .map(|i| BucketEntry {
                channel: "c".into(),
                id: logfilesnode::storage::BucketId::from_key(i << 12),
                path: PathBuf::from("x"),
                len_bytes: 1,
            })
            .collect();
        assert!(progress_bar(false, &inventory).is_hidden());
        // Whether it is drawn also depends on stderr being a terminal; allowed, it is a real bar
        // over the directory's bytes (a hidden one has no length).
        assert_eq!(
            progress_bar(true, &inventory).length(),
            Some(PROGRESS_MIN_FILES as u64)
        );
    }
}
