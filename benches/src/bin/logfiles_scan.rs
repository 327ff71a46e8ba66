//! logfiles_scan: how fast the logfiles storage reads, in-process and over the network
//! (DESIGN.md §6: range scans at least 1 GB/s from page cache and over loopback; a narrow time
//! window costs in proportion to its records, not to its bucket).
//!
//! **Local mode** (the default) writes `--records` records (default 20 M × 100-byte values,
//! about 2.3 GB of bucket files) with `logfilesnode::storage::BucketWriter` into
//! `<dir>/<channel>/`, in key order, `--per-key` records per key (default 2000: keys are
//! seconds, as in real logs, so a 4096-key bucket holds ~8 M records, ~950 MB); each writer saves
//! its bucket's time index when it closes. Values are log-like text; 1% of them start with
//! `status=500`, the substring the filtered passes look for. It then fsyncs the files and drops
//! them from the page cache (`posix_fadvise(DONTNEED)`, only these files), and times `RangeScan`
//! passes over the whole range:
//!
//! | pass | what |
//! |---|---|
//! | `cold` | the first pass, read from disk (the share resident before it is reported) |
//! | `page cache` | the same again, every page in memory: the DESIGN.md §6 figure |
//! | `filtered` | as the node filters: a `memmem` search of every value for `status=500` |
//! | `+ LZ4 batches` | as the node sends by default: every record into 64 KiB LZ4 batches |
//! | `+ uncompressed batches` | as the node sends when asked: 64 KiB uncompressed batches |
//!
//! then the queries: one key (2000 records) and 60 keys (one minute, 120 000 records) in the
//! middle of the data, each timed 21 times through `RangeScan`'s cursors (list, map, load and
//! check the index, seek, decode; the median is the figure), against the baseline of decoding
//! just the records returned (map the bucket, decode from the first to the end of the last).
//!
//! GB/s counts bucket-file bytes (headers included) of the buckets the pass visits; records/s
//! counts the records returned. Every pass and query checks the count, the key order and that
//! nothing was damaged (queries: that they read through the index file), and fails otherwise.
//!
//! **Network mode** (`--node --addr HOST:PORT`) writes nothing: a node must already be serving a
//! data directory written by local mode with the same `--records`, `--per-key`, `--value-size`
//! and `--channel`. It times GetRange over the whole range (twice asking for uncompressed
//! batches, once for LZ4 ones, then filtered, uncompressed), decoding every batch, and reports
//! MB/s of the equivalent bucket-file bytes and of the wire bytes. Meanwhile a second connection
//! sends GetVersion every 10 ms; its worst latency shows how long the scan held the node's event
//! loop. With `--server-pid` it also reports the node's CPU share.
//!
//!     logfiles_scan --dir /tmp/scan --records 20000000 --json local.json
//!     logfilesnode --data-dir /tmp/scan --listen 127.0.0.1:0 &      # then:
//!     logfiles_scan --node --addr 127.0.0.1:PORT --records 20000000 --json net.json

use benches::sys;
use clap::Parser;
use client::logfiles::READ_STREAM_WINDOW;
use client::{Client, ClientOptions, StreamEvent};
use logfilesnode::storage::scan::{Step, StepBudget};
use logfilesnode::storage::{
    list_buckets, BucketDecoder, BucketId, BucketWriter, IndexSource, RangeScan,
};
use memchr::memmem::Finder;
use node_core::protocol::batch::{
    decode_batch, decode_uncompressed_batch, BatchBuilder, BatchEncoding, PushOutcome,
    DEFAULT_BATCH_TARGET_BYTES,
};
use node_core::protocol::logfiles::{
    Filter, FilterMode, GetRangeRequest, ReadFlags, GET_RANGE, ITEM_RECORD_BATCH,
    ITEM_RECORD_BATCH_UNCOMPRESSED,
};
use node_core::protocol::NodeKind;
use serde_json::{json, Value};
use std::fs::File;
use std::hint::black_box;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the filtered passes search for: at the start of 1% of the values, nowhere else.
const NEEDLE: &[u8] = b"status=500";
/// Keys of the `narrow` pass: one minute of seconds.
const NARROW_KEYS: u64 = 60;
/// Write buffer of the bulk writer (setup speed only; the node's default is 64 KiB).
const WRITE_BUFFER_BYTES: usize = 1 << 20;

#[derive(Parser, Debug)]
#[command(
    name = "logfiles_scan",
    about = "Range-scan speed of the logfiles storage, in-process and over the network"
)]
struct Args {
    /// Data directory (the channel is a directory in it). Local mode refuses a channel that
    /// already has files, unless --reuse. Default: a temporary directory, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Channel name.
    #[arg(long, default_value = "scan")]
    channel: String,
    /// Records to write (local mode) or to expect (network mode).
    #[arg(long, default_value_t = 20_000_000)]
    records: u64,
    /// Value size in bytes (at least 16).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Records per key (keys are seconds: records per second).
    #[arg(long, default_value_t = 2000)]
    per_key: u64,
    /// The first key (a Unix time in seconds).
    #[arg(long, default_value_t = 1_763_800_000)]
    first_key: u64,
    /// Local mode: scan the channel as it is instead of writing it (it must hold what the
    /// other flags describe).
    #[arg(long)]
    reuse: bool,
    /// Network mode: time GetRange against the node at --addr; writes and scans nothing locally.
    #[arg(long, requires = "addr")]
    node: bool,
    /// The node's address (network mode).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// The node's process id (network mode): report its CPU share during each pass.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Network mode: the client's stream window (items in flight; default: LogClient's,
    /// `client::logfiles::READ_STREAM_WINDOW`).
    #[arg(long)]
    stream_window: Option<u32>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.node {
        network(&args)
    } else {
        local(&args)
    };
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("logfiles_scan: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("a JSON value serialises");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("logfiles_scan: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

// ---- the data set ------------------------------------------------------------------------------

fn check_args(args: &Args) -> Result<(), String> {
    if args.records == 0 || args.per_key == 0 {
        return Err("--records and --per-key must be at least 1".into());
    }
    if args.value_size < 16 || args.value_size > 1 << 20 {
        return Err("--value-size must be 16 to 1048576".into());
    }
    if !logfilesnode::valid_channel_name(&args.channel) {
        return Err(format!(
            "--channel {:?} is not a channel name",
            args.channel
        ));
    }
    if last_key(args).is_none() {
        return Err("--first-key + records / per-key overflows u64".into());
    }
    Ok(())
}

fn key_of(args: &Args, i: u64) -> u64 {
    args.first_key + i / args.per_key
}

fn last_key(args: &Args) -> Option<u64> {
    args.first_key
        .checked_add((args.records - 1) / args.per_key)
}

fn is_match(i: u64) -> bool {
    i % 100 == 37
}

/// Records whose value contains [`NEEDLE`]: those with `i % 100 == 37`.
fn expected_matches(records: u64) -> u64 {
    records / 100 + u64::from(records % 100 > 37)
}

/// Record `i`'s value: a log line, `status=` first, padded with text to `size` bytes.
fn fill_value(i: u64, key: u64, size: usize, out: &mut Vec<u8>) {
    const PAD: &[u8] = b"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod ";
    out.clear();
    let status = if is_match(i) { 500 } else { 200 };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "status={status} ts={key}.{:03} level=INFO svc=api req={i:010} path=/v1/items/{} took={}ms ",
        i % 1000,
        i % 9973,
        i % 307
    );
    while out.len() < size {
        let n = (size - out.len()).min(PAD.len());
        out.extend_from_slice(&PAD[..n]);
    }
    out.truncate(size);
}

/// Bucket files of the channel and their total length.
fn bucket_files(channel_dir: &Path, from: u64, to: u64) -> Result<(Vec<PathBuf>, u64), String> {
    let buckets = list_buckets(channel_dir, from, to)
        .map_err(|e| format!("listing {}: {e}", channel_dir.display()))?;
    let mut total = 0;
    let mut paths = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let len = std::fs::metadata(&bucket.path)
            .map_err(|e| format!("{}: {e}", bucket.path.display()))?
            .len();
        total += len;
        paths.push(bucket.path);
    }
    Ok((paths, total))
}

// ---- local mode --------------------------------------------------------------------------------

fn local(args: &Args) -> Result<Value, String> {
    check_args(args)?;
    let temp;
    let data_dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("logfiles_scan.")
                .tempdir()
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            temp.path().to_path_buf()
        }
    };
    let channel_dir = data_dir.join(&args.channel);
    let mut report = serde_json::Map::new();
    if let Some(write) = prepare_data_set(args, &channel_dir)? {
        report.insert("write".into(), write);
    }

    let (files, file_bytes) = bucket_files(&channel_dir, 0, u64::MAX)?;
    println!(
        "data set: {} records of {} bytes, {} per key, keys {}..={}, {} bucket files, {:.2} GB in {}",
        args.records,
        args.value_size,
        args.per_key,
        args.first_key,
        last_key(args).unwrap_or(u64::MAX),
        files.len(),
        file_bytes as f64 / 1e9,
        channel_dir.display()
    );
    let resident = evict_all(&files)?;

    let results = scan_passes(args, &channel_dir, resident)?;
    report.insert(
        "queries".into(),
        Value::Array(query_passes(args, &channel_dir)?),
    );
    report.insert("mode".into(), json!("local"));
    report.insert("records".into(), json!(args.records));
    report.insert("value_size".into(), json!(args.value_size));
    report.insert("per_key".into(), json!(args.per_key));
    report.insert("buckets".into(), json!(files.len()));
    report.insert("file_bytes".into(), json!(file_bytes));
    report.insert("resident_before_cold".into(), json!(resident));
    report.insert("passes".into(), Value::Array(results));
    Ok(Value::Object(report))
}

/// The local scan passes over `channel_dir` (cold, from the page cache, filtered, into batches),
/// each printed as a row of a table; returns their reports.
fn scan_passes(args: &Args, channel_dir: &Path, resident: f64) -> Result<Vec<Value>, String> {
    let all = args.records;
    let matches = expected_matches(args.records);
    let finder = Finder::new(NEEDLE);
    let passes = [
        ("cold (from disk)", Work::Count, 0, u64::MAX, all, false),
        ("page cache #1", Work::Count, 0, u64::MAX, all, true),
        ("page cache #2", Work::Count, 0, u64::MAX, all, true),
        (
            "filtered `status=500` (1%)",
            Work::Filter(&finder),
            0,
            u64::MAX,
            matches,
            false,
        ),
        ("+ LZ4 batches", Work::Batches, 0, u64::MAX, all, false),
        (
            "+ uncompressed batches",
            Work::Uncompressed,
            0,
            u64::MAX,
            all,
            false,
        ),
    ];
    println!();
    println!("| pass | GB/s (file bytes) | M records/s | records | file GB | s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for (label, work, from, to, expected, target) in passes {
        let mut pass = scan_pass(channel_dir, from, to, work, expected)
            .map_err(|e| format!("pass {label}: {e}"))?;
        pass.insert("label".into(), json!(label));
        pass.insert("target".into(), json!(target));
        let note = pass_note(work, from == 0 && !target, resident, &pass, all);
        pass.insert("note".into(), json!(note));
        print_pass_row(label, &pass);
        results.push(Value::Object(pass));
    }
    Ok(results)
}

/// Writes the data set into `channel_dir` unless `--reuse` asks to scan what is there; refuses
/// a directory that holds files without `--reuse`, and an empty one with it. Returns the write's
/// timings, if it wrote.
fn prepare_data_set(args: &Args, channel_dir: &Path) -> Result<Option<Value>, String> {
    let has_files = std::fs::read_dir(channel_dir).is_ok_and(|mut d| d.next().is_some());
    if args.reuse {
        if !has_files {
            return Err(format!("--reuse: {} holds nothing", channel_dir.display()));
        }
        return Ok(None);
    }
    if has_files {
        return Err(format!(
            "{} already holds files: remove it, or pass --reuse to scan it as it is",
            channel_dir.display()
        ));
    }
    write_data_set(args, channel_dir).map(Some)
}

/// Fsyncs `files` and drops them from the page cache; returns the share of their pages still
/// resident after that.
fn evict_all(files: &[PathBuf]) -> Result<f64, String> {
    let started = Instant::now();
    for path in files {
        evict(path)?;
    }
    let resident = resident_share(files)?;
    println!(
        "fsynced and dropped from the page cache in {:.2} s; {:.1}% resident before the cold pass",
        started.elapsed().as_secs_f64(),
        resident * 100.0
    );
    Ok(resident)
}

/// What the report says about a local pass: the cold pass its resident share, the others what
/// they do (`all` records in the data set).
fn pass_note(
    work: Work<'_>,
    cold: bool,
    resident: f64,
    pass: &serde_json::Map<String, Value>,
    all: u64,
) -> String {
    match work {
        Work::Count if cold => format!(
            "first pass after posix_fadvise(DONTNEED): {:.0}% of the pages were resident",
            resident * 100.0
        ),
        Work::Count => String::new(),
        Work::Filter(_) => "memmem search of every value, as the node's substring filter".into(),
        Work::Batches | Work::Uncompressed => {
            let wire = pass["wire_bytes"].as_f64().unwrap_or(0.0);
            let raw = pass["value_bytes"].as_f64().unwrap_or(0.0) + 12.0 * all as f64;
            let kind = if matches!(work, Work::Batches) {
                "LZ4"
            } else {
                "uncompressed"
            };
            format!(
            "the node's GetRange work without sockets: 64 KiB {kind} batches, {:.0} MB out ({:.1}:1)",
            wire / 1e6,
            raw / wire.max(1.0)
        )
        }
    }
}

/// The pass's row of the printed table.
fn print_pass_row(label: &str, pass: &serde_json::Map<String, Value>) {
    println!(
        "| {label} | {:.2} | {:.2} | {} | {:.2} | {:.3} |",
        pass["gb_per_s"].as_f64().unwrap_or(0.0),
        pass["records_per_s"].as_f64().unwrap_or(0.0) / 1e6,
        pass["records"],
        pass["file_bytes"].as_f64().unwrap_or(0.0) / 1e9,
        pass["seconds"].as_f64().unwrap_or(0.0),
    );
}

/// Writes the data set in key order, then fsyncs it. Returns the timings.
fn write_data_set(args: &Args, channel_dir: &Path) -> Result<Value, String> {
    let started = Instant::now();
    let mut value = Vec::with_capacity(args.value_size + 128);
    let mut current: Option<(BucketId, BucketWriter)> = None;
    let mut written_matches = 0u64;
    let finder = Finder::new(NEEDLE);
    for i in 0..args.records {
        let key = key_of(args, i);
        let id = BucketId::from_key(key);
        fill_value(i, key, args.value_size, &mut value);
        written_matches += u64::from(finder.find(&value).is_some());
        let writer = match &mut current {
            Some((open, writer)) if *open == id => writer,
            _ => {
                if let Some((_, mut old)) = current.take() {
                    old.flush().map_err(|e| e.to_string())?;
                }
                let path = id.path_in(channel_dir);
                let writer =
                    BucketWriter::open(&path, WRITE_BUFFER_BYTES).map_err(|e| e.to_string())?;
                &mut current.insert((id, writer)).1
            }
        };
        writer.append(key, &value).map_err(|e| e.to_string())?;
    }
    if let Some((_, mut writer)) = current.take() {
        writer.flush().map_err(|e| e.to_string())?;
    }
    let write_s = started.elapsed().as_secs_f64();
    if written_matches != expected_matches(args.records) {
        return Err(format!(
            "internal: {written_matches} values hold the filter text, {} expected",
            expected_matches(args.records)
        ));
    }
    let started = Instant::now();
    let (files, file_bytes) = bucket_files(channel_dir, 0, u64::MAX)?;
    for path in &files {
        File::open(path)
            .and_then(|f| f.sync_data())
            .map_err(|e| format!("fsync {}: {e}", path.display()))?;
    }
    let fsync_s = started.elapsed().as_secs_f64();
    println!(
        "wrote {} records ({:.2} GB) in {write_s:.2} s = {:.2} M records/s, {:.2} GB/s to the page cache (BucketWriter, one thread); fsync {fsync_s:.2} s",
        args.records,
        file_bytes as f64 / 1e9,
        args.records as f64 / write_s / 1e6,
        file_bytes as f64 / write_s / 1e9,
    );
    Ok(json!({
        "seconds": write_s,
        "records_per_s": args.records as f64 / write_s,
        "gb_per_s": file_bytes as f64 / write_s / 1e9,
        "fsync_seconds": fsync_s,
    }))
}

/// Fsyncs `path` and asks the kernel to drop its pages from the page cache.
fn evict(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Dirty pages are not dropped: write them first.
    file.sync_data()
        .map_err(|e| format!("fsync {}: {e}", path.display()))?;
    // SAFETY: a plain syscall on a descriptor we own.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(format!(
            "posix_fadvise {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok(())
}

/// The share of the files' pages in the page cache (`mincore` on a fresh map).
fn resident_share(files: &[PathBuf]) -> Result<f64, String> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let (mut resident, mut total) = (0u64, 0u64);
    for path in files {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len() as usize;
        if len == 0 {
            continue;
        }
        // SAFETY: a read-only map of a file this program wrote and nobody truncates meanwhile.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("mmap {}: {e}", path.display()))?;
        let mut pages = vec![0u8; len.div_ceil(page)];
        // SAFETY: the map starts at a page boundary and spans `len` bytes; `pages` has one byte
        // per page of it.
        let rc =
            unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, len, pages.as_mut_ptr()) };
        if rc != 0 {
            return Err(format!(
                "mincore {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        resident += pages.iter().filter(|&&p| p & 1 == 1).count() as u64;
        total += pages.len() as u64;
    }
    Ok(if total == 0 {
        0.0
    } else {
        resident as f64 / total as f64
    })
}

/// What a pass does with each record.
#[derive(Clone, Copy)]
enum Work<'a> {
    /// Count it (and touch its key and length).
    Count,
    /// Search its value for the needle, as the node's substring filter does.
    Filter(&'a Finder<'a>),
    /// Put it into LZ4 batches, as the node's GetRange does by default.
    Batches,
    /// Put it into uncompressed batches, as the node's GetRange does when asked.
    Uncompressed,
}

/// One RangeScan over `[from, to]`; fails unless exactly `expected` records pass, in key order,
/// with no damage.
fn scan_pass(
    channel_dir: &Path,
    from: u64,
    to: u64,
    work: Work<'_>,
    expected: u64,
) -> Result<serde_json::Map<String, Value>, String> {
    let (_, file_bytes) = bucket_files(channel_dir, from, to)?;
    let mut records = 0u64;
    let mut value_bytes = 0u64;
    let mut last = 0u64;
    let mut out_of_order = 0u64;
    let mut touch = 0u64;
    let mut batch = BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES);
    let mut wire = Vec::with_capacity(DEFAULT_BATCH_TARGET_BYTES);
    let mut wire_bytes = 0u64;
    let started = Instant::now();
    let scan = RangeScan::new(channel_dir, from, to).map_err(|e| e.to_string())?;
    let (damage, errors) = scan.for_each(|record| {
        out_of_order += u64::from(record.key < last);
        last = record.key;
        let pass = match work {
            Work::Count => true,
            Work::Filter(finder) => finder.find(record.value).is_some(),
            Work::Batches | Work::Uncompressed => {
                if batch.push(record.key, record.value) == PushOutcome::Full {
                    finish_batch(&mut batch, &mut wire, work);
                    wire_bytes += wire.len() as u64;
                    wire.clear();
                    // An empty batch takes any record that fits the batch limit.
                    let _ = batch.push(record.key, record.value);
                }
                true
            }
        };
        if pass {
            records += 1;
            value_bytes += record.value.len() as u64;
            touch = touch.wrapping_add(record.key ^ record.value.len() as u64);
        }
    });
    if !batch.is_empty() {
        finish_batch(&mut batch, &mut wire, work);
        wire_bytes += wire.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    black_box(touch);
    if let Some(error) = errors.first() {
        return Err(format!(
            "{} bucket(s) unreadable; first: {error}",
            errors.len()
        ));
    }
    if let Some((path, first)) = damage.first() {
        return Err(format!(
            "{} damaged part(s); first in {}: {first}",
            damage.len(),
            path.display()
        ));
    }
    if out_of_order > 0 {
        return Err(format!("{out_of_order} records out of key order"));
    }
    if records != expected {
        return Err(format!("{records} records, expected {expected}"));
    }
    let mut pass = serde_json::Map::new();
    pass.insert("records".into(), json!(records));
    pass.insert("value_bytes".into(), json!(value_bytes));
    pass.insert("file_bytes".into(), json!(file_bytes));
    pass.insert("seconds".into(), json!(seconds));
    pass.insert("gb_per_s".into(), json!(file_bytes as f64 / seconds / 1e9));
    pass.insert("records_per_s".into(), json!(records as f64 / seconds));
    if matches!(work, Work::Batches | Work::Uncompressed) {
        pass.insert("wire_bytes".into(), json!(wire_bytes));
    }
    Ok(pass)
}

fn finish_batch(batch: &mut BatchBuilder, wire: &mut Vec<u8>, work: Work<'_>) {
    let encoding = if matches!(work, Work::Uncompressed) {
        BatchEncoding::Uncompressed
    } else {
        BatchEncoding::Lz4
    };
    batch.finish_as(encoding, wire);
}

// ---- queries -----------------------------------------------------------------------------------

/// Times of each query are taken this many times; the median is the figure.
const QUERY_REPEATS: usize = 21;

/// The in-process queries (DESIGN.md §6: a narrow window costs in proportion to its records):
/// one key and [`NARROW_KEYS`] keys in the middle of the data set, each timed
/// [`QUERY_REPEATS`] times through `RangeScan` (list the buckets, map them, load and check the
/// index, seek, decode), against the baseline of decoding just the records it returns (map the
/// bucket, decode from the first of them to the end of the last).
fn query_passes(args: &Args, channel_dir: &Path) -> Result<Vec<Value>, String> {
    let mid = args.first_key + (last_key(args).unwrap_or(args.first_key) - args.first_key) / 2;
    let queries = [
        ("one key", mid, mid, Some(2.0), None),
        (
            "60 keys (one minute)",
            mid,
            mid.saturating_add(NARROW_KEYS - 1),
            None,
            Some(1.5),
        ),
    ];
    println!();
    println!("| query | records | ms (median of {QUERY_REPEATS}) | min–max ms | records decoded | decoding just those records, ms | ratio | target |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut out = Vec::new();
    for (label, from, to, max_ms, max_ratio) in queries {
        let expected = (0..args.records)
            .filter(|&i| (from..=to).contains(&key_of(args, i)))
            .count() as u64;
        let spans = spans_of(channel_dir, from, to)?;
        let mut times = Vec::with_capacity(QUERY_REPEATS);
        let mut baseline = Vec::with_capacity(QUERY_REPEATS);
        let mut decoded = 0;
        for _ in 0..QUERY_REPEATS {
            let (seconds, records_decoded) = query_once(channel_dir, from, to, expected)
                .map_err(|e| format!("query {label}: {e}"))?;
            times.push(seconds * 1e3);
            decoded = records_decoded;
            baseline.push(decode_spans(&spans, expected)? * 1e3);
        }
        let (median, min, max) = summary(&times);
        let (base, _, _) = summary(&baseline);
        let ratio = median / base.max(1e-9);
        let verdict = match (max_ms, max_ratio) {
            (Some(ms), _) => format!("{} ≤ {ms} ms", if median <= ms { "✓" } else { "✗" }),
            (_, Some(r)) => format!("{} ≤ {r}× decoding", if ratio <= r { "✓" } else { "✗" }),
            _ => String::new(),
        };
        println!(
            "| {label} | {expected} | {median:.3} | {min:.3}–{max:.3} | {decoded} | {base:.3} | {ratio:.2} | {verdict} |"
        );
        out.push(json!({
            "label": label, "from": from, "to": to, "records": expected,
            "records_decoded": decoded, "repeats": QUERY_REPEATS,
            "median_ms": median, "min_ms": min, "max_ms": max,
            "decode_only_median_ms": base, "ratio": ratio,
            "target_max_ms": max_ms, "target_max_ratio": max_ratio, "verdict": verdict,
        }));
    }
    Ok(out)
}

/// Median, minimum and maximum.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    (
        median,
        sorted.first().copied().unwrap_or(0.0),
        sorted.last().copied().unwrap_or(0.0),
    )
}

/// One query through `RangeScan` cursors (the node's read path); fails unless exactly
/// `expected` records come, in key order, through an index file. Its seconds, and the records
/// the cursors decoded.
fn query_once(channel_dir: &Path, from: u64, to: u64, expected: u64) -> Result<(f64, u64), String> {
    let budget = StepBudget {
        records: usize::MAX,
        bytes: usize::MAX,
    };
    let started = Instant::now();
    let mut scan = RangeScan::new(channel_dir, from, to).map_err(|e| e.to_string())?;
    let (mut records, mut decoded, mut last, mut touch) = (0u64, 0u64, 0u64, 0u64);
    let mut sources = Vec::new();
    while let Some(cursor) = scan.next_cursor() {
        let mut cursor = cursor.map_err(|e| e.to_string())?;
        while cursor.step(budget, |r| {
            if r.key < last {
                touch = u64::MAX;
            }
            last = r.key;
            records += 1;
            touch = touch.wrapping_add(r.value.len() as u64);
            true
        }) != Step::Finished
        {}
        decoded += cursor.records_decoded;
        sources.push(cursor.index_source.clone());
    }
    let seconds = started.elapsed().as_secs_f64();
    black_box(touch);
    if records != expected {
        return Err(format!("{records} records, expected {expected}"));
    }
    if let Some(other) = sources.iter().find(|s| **s != Some(IndexSource::File)) {
        return Err(format!("read without its index file: {other:?}"));
    }
    Ok((seconds, decoded))
}

/// The part of one bucket file a query's records span.
struct Span {
    path: PathBuf,
    start: usize,
    end: usize,
}

/// Where the records of `[from, to]` lie, bucket by bucket.
fn spans_of(channel_dir: &Path, from: u64, to: u64) -> Result<Vec<Span>, String> {
    let budget = StepBudget {
        records: usize::MAX,
        bytes: usize::MAX,
    };
    let mut scan = RangeScan::new(channel_dir, from, to).map_err(|e| e.to_string())?;
    let mut spans = Vec::new();
    while let Some(cursor) = scan.next_cursor() {
        let mut cursor = cursor.map_err(|e| e.to_string())?;
        let (mut start, mut end) = (usize::MAX, 0usize);
        while cursor.step(budget, |r| {
            start = start.min(r.offset as usize);
            // Our format: a 16-byte record header before the value.
            end = end.max(r.offset as usize + 16 + r.value.len());
            true
        }) != Step::Finished
        {}
        if start < end {
            spans.push(Span {
                path: cursor.path.clone(),
                start,
                end,
            });
        }
    }
    Ok(spans)
}

/// Maps each span's bucket and decodes just the span, as the baseline of a query: its seconds.
fn decode_spans(spans: &[Span], expected: u64) -> Result<f64, String> {
    let started = Instant::now();
    let mut records = 0u64;
    let mut touch = 0u64;
    for span in spans {
        let file = File::open(&span.path).map_err(|e| format!("{}: {e}", span.path.display()))?;
        // SAFETY: a read-only map of a file this program wrote and nobody truncates meanwhile.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| format!("mmap {}: {e}", span.path.display()))?;
        let _ = map.advise(memmap2::Advice::Sequential);
        let mut decoder = BucketDecoder::resume(&map, span.start);
        while decoder.position() < span.end {
            match decoder.next() {
                Some(Ok(r)) => {
                    records += 1;
                    touch = touch.wrapping_add(r.key ^ r.value.len() as u64);
                }
                Some(Err(d)) => return Err(format!("{}: {d}", span.path.display())),
                None => break,
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    black_box(touch);
    if records != expected {
        return Err(format!("decoded {records} records, expected {expected}"));
    }
    Ok(seconds)
}

// ---- network mode ------------------------------------------------------------------------------

/// The GetRange passes of network mode: label, filter, records expected, flags.
fn network_passes(args: &Args) -> [(&'static str, FilterMode, u64, ReadFlags); 4] {
    let uncompressed = ReadFlags { uncompressed: true };
    let whole = "GetRange, whole range, uncompressed";
    [
        (whole, FilterMode::None, args.records, uncompressed),
        (whole, FilterMode::None, args.records, uncompressed),
        (
            "GetRange, whole range, LZ4",
            FilterMode::None,
            args.records,
            ReadFlags::default(),
        ),
        (
            "GetRange, filtered `status=500` (1%), uncompressed",
            FilterMode::Substring,
            expected_matches(args.records),
            uncompressed,
        ),
    ]
}

/// The GetRange filter of a pass: none, or [`NEEDLE`] matched as `mode` says.
fn filter_of(mode: FilterMode) -> Filter<'static> {
    match mode {
        FilterMode::None => Filter::NONE,
        _ => Filter {
            mode,
            pattern: NEEDLE,
        },
    }
}

/// [`get_range`] with GetVersion probes on `probe` meanwhile: the pass's report, with the CPU
/// shares of this process and of `--server-pid` and the node's peak anonymous RSS, and the
/// probes' latencies.
fn probed_get_range(
    args: &Args,
    client: &Client,
    probe: &Client,
    request: &GetRangeRequest<'_>,
    flags: ReadFlags,
    expected: u64,
) -> (Result<serde_json::Map<String, Value>, String>, Vec<f64>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let prober = scope.spawn(|| probe_loop(probe, &stop, args.server_pid));
        let server_before = args.server_pid.and_then(sys::pid_cpu);
        let client_before = sys::self_cpu();
        let result = get_range(client, request, flags, expected);
        // This process: the client's I/O thread, the decoding, and the probe (negligible).
        let client_cpu = sys::self_cpu().since(&client_before);
        let server_cpu = match (args.server_pid, server_before) {
            (Some(pid), Some(before)) => sys::pid_cpu(pid).map(|after| after.since(&before)),
            _ => None,
        };
        stop.store(true, Ordering::Relaxed);
        let (probes, rss_anon) = prober.join().unwrap_or_default();
        (
            result.map(|mut pass| {
                let seconds = pass["seconds"].as_f64().unwrap_or(1.0);
                pass.insert(
                    "client_cpu_share".into(),
                    json!(client_cpu.total().as_secs_f64() / seconds),
                );
                if let Some(cpu) = server_cpu {
                    pass.insert(
                        "server_cpu_share".into(),
                        json!(cpu.total().as_secs_f64() / seconds),
                    );
                }
                if let Some(rss) = rss_anon {
                    pass.insert("server_peak_rss_anon_bytes".into(), json!(rss));
                }
                pass
            }),
            probes,
        )
    })
}

/// Two connections to the node at `addr`: one for the passes, one for the probe.
fn connect_twice(args: &Args, addr: SocketAddr) -> Result<(Client, Client), String> {
    let options = ClientOptions {
        // A pass waits for its next batch at most this long (a bucket without an index is
        // decoded whole, in slices, before its first record goes out).
        request_timeout_ms: 120_000,
        stream_window: args.stream_window.unwrap_or(READ_STREAM_WINDOW),
        ..ClientOptions::default()
    };
    let client = Client::connect(&[addr], Some(NodeKind::Logfiles), options.clone())
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    // The probe has its own connection, so its requests wait only for the node itself.
    let probe = Client::connect(&[addr], Some(NodeKind::Logfiles), options)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    Ok((client, probe))
}

fn network(args: &Args) -> Result<Value, String> {
    check_args(args)?;
    let addr = args.addr.ok_or("--node needs --addr")?;
    let (client, probe) = connect_twice(args, addr)?;
    // Per record on disk: our 16-byte record header and the value (the file header is not
    // counted), so MB/s compares with the local passes' file bytes.
    let file_bytes_per_record = 16 + args.value_size as u64;
    let passes = network_passes(args);
    println!("GetRange from {addr}, channel {}:", args.channel);
    println!();
    println!("| pass | MB/s (file bytes) | M records/s | MB/s on the wire | records | s | node CPU | client CPU | GetVersion p50 / max ms meanwhile |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for (label, mode, expected, flags) in passes {
        let request = GetRangeRequest {
            channel: &args.channel,
            from: 0,
            to: u64::MAX,
            filter: filter_of(mode),
        };
        let (result, probes) = probed_get_range(args, &client, &probe, &request, flags, expected);
        let mut pass = result.map_err(|e| format!("{label}: {e}"))?;
        let records = pass["records"].as_u64().unwrap_or(0);
        let seconds = pass["seconds"].as_f64().unwrap_or(1.0);
        // For the filtered pass the node still reads every record.
        let file_bytes = args.records * file_bytes_per_record;
        let wire_bytes = pass["wire_bytes"].as_u64().unwrap_or(0);
        pass.insert("label".into(), json!(label));
        pass.insert(
            "target".into(),
            json!(mode == FilterMode::None && flags.uncompressed),
        );
        pass.insert("uncompressed".into(), json!(flags.uncompressed));
        pass.insert("file_bytes".into(), json!(file_bytes));
        pass.insert("mb_per_s".into(), json!(file_bytes as f64 / seconds / 1e6));
        pass.insert("gb_per_s".into(), json!(file_bytes as f64 / seconds / 1e9));
        pass.insert("records_per_s".into(), json!(records as f64 / seconds));
        pass.insert(
            "wire_mb_per_s".into(),
            json!(wire_bytes as f64 / seconds / 1e6),
        );
        let (p50, max) = probe_summary(&probes);
        pass.insert(
            "probe".into(),
            json!({ "count": probes.len(), "p50_ms": p50, "max_ms": max }),
        );
        let share = |field: &str| {
            pass.get(field)
                .and_then(Value::as_f64)
                .map_or("?".to_string(), |c| format!("{c:.2}"))
        };
        println!(
            "| {label} | {:.0} | {:.2} | {:.0} | {records} | {seconds:.3} | {} | {} | {p50:.1} / {max:.1} |",
            file_bytes as f64 / seconds / 1e6,
            records as f64 / seconds / 1e6,
            wire_bytes as f64 / seconds / 1e6,
            share("server_cpu_share"),
            share("client_cpu_share"),
        );
        results.push(Value::Object(pass));
    }
    Ok(json!({
        "mode": "network",
        "addr": addr.to_string(),
        "records": args.records,
        "value_size": args.value_size,
        "passes": results,
    }))
}

/// One GetRange, every batch decoded and checked; fails unless exactly `expected` records come,
/// in key order.
fn get_range(
    client: &Client,
    request: &GetRangeRequest<'_>,
    flags: ReadFlags,
    expected: u64,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut body = Vec::new();
    request.encode_with(flags, &mut body);
    let mut scratch = Vec::new();
    let (mut records, mut value_bytes, mut wire_bytes, mut batches) = (0u64, 0u64, 0u64, 0u64);
    let mut last = 0u64;
    let mut first_batch_s = None;
    let started = Instant::now();
    let stream = client
        .stream(0, GET_RANGE, &body)
        .map_err(|e| e.to_string())?;
    let mut ended = false;
    for event in stream {
        match event.map_err(|e| e.to_string())? {
            StreamEvent::Item { code, body } => {
                let wanted = if flags.uncompressed {
                    ITEM_RECORD_BATCH_UNCOMPRESSED
                } else {
                    ITEM_RECORD_BATCH
                };
                if code != wanted {
                    return Err(format!("unexpected item code {code}"));
                }
                first_batch_s.get_or_insert_with(|| started.elapsed().as_secs_f64());
                wire_bytes += body.len() as u64;
                batches += 1;
                let batch = if flags.uncompressed {
                    decode_uncompressed_batch(&body)
                } else {
                    decode_batch(&body, &mut scratch)
                };
                let batch = batch.map_err(|e| e.to_string())?;
                for (key, value) in batch {
                    if key < last {
                        return Err(format!("key {key} after {last}: out of order"));
                    }
                    last = key;
                    records += 1;
                    value_bytes += value.len() as u64;
                }
            }
            StreamEvent::End(reply) => {
                reply.into_result().map_err(|e| e.to_string())?;
                ended = true;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if !ended {
        return Err("the stream ended without its final reply".into());
    }
    if records != expected {
        return Err(format!(
            "{records} records, expected {expected} (do --records, --per-key and --value-size match the data set?)"
        ));
    }
    let mut pass = serde_json::Map::new();
    pass.insert("records".into(), json!(records));
    pass.insert("value_bytes".into(), json!(value_bytes));
    pass.insert("wire_bytes".into(), json!(wire_bytes));
    pass.insert("batches".into(), json!(batches));
    pass.insert("seconds".into(), json!(seconds));
    pass.insert("first_batch_s".into(), json!(first_batch_s));
    Ok(pass)
}

/// GetVersion every 10 ms until `stop`: the latencies in ms (a failed probe counts as its
/// time), and with `server_pid` the largest anonymous RSS of the node seen meanwhile (its heap:
/// the mapped bucket files are not in it).
fn probe_loop(
    client: &Client,
    stop: &AtomicBool,
    server_pid: Option<u32>,
) -> (Vec<f64>, Option<u64>) {
    let mut latencies = Vec::new();
    let mut rss_anon: Option<u64> = None;
    let pid = server_pid.map(|pid| pid.to_string());
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let _ = client.get_version(0);
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        if let Some(rss) = pid
            .as_deref()
            .and_then(|pid| sys::proc_status_kb(pid, "RssAnon"))
        {
            rss_anon = Some(rss_anon.unwrap_or(0).max(rss));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (latencies, rss_anon)
}

/// Median and maximum.
fn probe_summary(latencies: &[f64]) -> (f64, f64) {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let max = sorted.last().copied().unwrap_or(0.0);
    (p50, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_hold_the_needle_exactly_for_one_record_in_a_hundred() {
        let finder = Finder::new(NEEDLE);
        let mut value = Vec::new();
        let mut found = 0;
        for i in 0..1000 {
            fill_value(i, 1_763_800_000 + i / 7, 100, &mut value);
            assert_eq!(value.len(), 100);
            found += u64::from(finder.find(&value).is_some());
        }
        assert_eq!(found, expected_matches(1000));
        assert_eq!(expected_matches(37), 0);
        assert_eq!(expected_matches(38), 1);
        assert_eq!(expected_matches(100), 1);
    }
}
