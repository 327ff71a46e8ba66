//! dht_memory: memory per record of the dht engine, in-process (no sockets, no node).
//!
//! Builds a `dhtnode::engine::Engine` over the full hash range, puts N records with
//! `--value-size`-byte values (default 1 million × 100 bytes) under keys that are a bijective hash
//! of 0..N (uniform over `u64`, no duplicates), and reports the process RSS before and after,
//! the heap bytes in use (glibc `mallinfo2`) and bytes per record, with a breakdown into the
//! value allocations and the index. It also times the puts and a pass of gets over every
//! key (single thread, in-process: the engine's own cost per request).
//!
//!     cargo run --release -p benches --bin dht_memory -- --records 10000000 --json mem.json

use benches::sys;
use clap::Parser;
use dhtnode::engine::{Engine, EngineLimits, ListenerLimits};
use node_core::protocol::dht::HashRange;
use serde_json::json;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "dht_memory",
    about = "Memory per record of the dht engine, in-process"
)]
struct Args {
    /// Records to insert.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Channel to fill.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write every record with a version (PutVersion), as replicated writes are, instead of
    /// without one (Put): each record then keeps 8 bytes more.
    #[arg(long)]
    versioned: bool,
}

/// splitmix64's finaliser: a bijection on u64, so keys 0..N map to N distinct uniform keys.
fn key_of(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes glibc malloc has handed out and not got back (small chunks + mmapped chunks).
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 has no preconditions; it returns a plain struct.
    let info = unsafe { libc::mallinfo2() };
    (info.uordblks + info.hblkhd) as u64
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What a run measured.
struct Measured {
    /// Records in the engine at the end.
    records: u64,
    rss_start: u64,
    /// RSS and heap with the channel holding its first record.
    rss_before: u64,
    rss_after: u64,
    heap_start: u64,
    heap_before: u64,
    heap_after: u64,
    put_s: f64,
    get_s: f64,
}

impl Measured {
    /// Heap growth per record from the empty channel.
    fn heap_growth_per_record(&self, n: u64) -> f64 {
        (self.heap_after - self.heap_before) as f64 / (n - 1).max(1) as f64
    }

    /// The index's share of that growth: what the `n - 1` values of `value_chunk` bytes each
    /// do not explain.
    fn index_bytes_per_record(&self, n: u64, value_chunk: u64) -> f64 {
        let index_bytes =
            (self.heap_after - self.heap_before).saturating_sub(value_chunk * (n - 1));
        index_bytes as f64 / (n - 1).max(1) as f64
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let max_value_bytes = 1 << 20;
    if args.value_size == 0 || args.value_size > max_value_bytes {
        eprintln!("dht_memory: --value-size must be 1 to {max_value_bytes}");
        return ExitCode::from(1);
    }
    let value: Vec<u8> = (0..args.value_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    if args.records < 2 {
        eprintln!("dht_memory: --records must be at least 2");
        return ExitCode::from(1);
    }
    let measured = match measure(&args, &value, max_value_bytes) {
        Ok(measured) => measured,
        Err(error) => {
            eprintln!("dht_memory: {error}");
            return ExitCode::from(1);
        }
    };
    let value_chunk = boxed_bytes(&value, u64::from(args.versioned)) + 8;
    print_report(&args, &measured, value_chunk);
    if let Some(path) = &args.json {
        if let Err(e) = write_json(path, &args, &measured, value_chunk) {
            eprintln!("dht_memory: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// Puts `--records` records of `value` into a fresh engine, RSS and heap measured at the start,
/// with the channel's first record, and at the end; then gets every key once.
fn measure(args: &Args, value: &[u8], max_value_bytes: usize) -> Result<Measured, String> {
    let limits = EngineLimits {
        max_channels: usize::MAX,
        size_limit_bytes: 0,
        max_value_bytes,
    };
    let listener_limits = ListenerLimits {
        max_events: 1024,
        max_bytes: 1 << 20,
        max_total_bytes: usize::MAX,
    };
    let n = args.records;
    let rss_start = sys::self_rss();
    let heap_start = heap_in_use();
    let mut engine = Engine::new(HashRange::FULL, limits, listener_limits);
    // The empty channel (its shard array) exists before the first record counts.
    engine
        .put(&args.channel, key_of(0), value)
        .map_err(|e| format!("put failed: {e}"))?;
    let rss_before = sys::self_rss();
    let heap_before = heap_in_use();

    let started = Instant::now();
    for i in 1..n {
        let stored = if args.versioned {
            engine
                .put_version(&args.channel, key_of(i), i, value)
                .map(|_| ())
        } else {
            engine.put(&args.channel, key_of(i), value)
        };
        stored.map_err(|e| format!("put {i} failed: {e}"))?;
    }
    let put_s = started.elapsed().as_secs_f64();
    let rss_after = sys::self_rss();
    let heap_after = heap_in_use();

    let started = Instant::now();
    let mut found = 0u64;
    for i in 0..n {
        if let Ok(len) = engine.with_value(&args.channel, key_of(i), |v| {
            v.map_or(0, |v| black_box(v).len())
        }) {
            found += len as u64;
        }
    }
    let get_s = started.elapsed().as_secs_f64();
    assert_eq!(found, n * args.value_size as u64, "every record reads back");
    Ok(Measured {
        records: engine.size().records,
        rss_start,
        rss_before,
        rss_after,
        heap_start,
        heap_before,
        heap_after,
        put_s,
        get_s,
    })
}

/// What one record's value allocation takes from glibc (its usable size, without the 8-byte
/// chunk header), measured on an allocation of our own of the same size: the engine keeps each
/// value, with its length (and its version, if it has one), in one allocation (`engine::value::Value`), so the rest
/// of the heap growth is the index (hash tables, shards).
fn boxed_bytes(value: &[u8], version: u64) -> u64 {
    let probe: Box<[u8]> =
        vec![0u8; dhtnode::engine::value::Value::allocation_len(value.len(), version)]
            .into_boxed_slice();
    // SAFETY: `probe` is a live allocation of the global (system) allocator, passed at its start.
    let usable = unsafe { libc::malloc_usable_size(probe.as_ptr() as *mut libc::c_void) } as u64;
    drop(probe);
    usable
}

fn print_report(args: &Args, m: &Measured, value_chunk: u64) {
    let n = args.records;
    println!(
        "dht engine, {} records of {} bytes (keys: hash of 0..N), 1 channel",
        m.records, args.value_size
    );
    println!(
        "  RSS: {:.1} MiB at start, {:.1} MiB with the empty channel, {:.1} MiB after",
        mib(m.rss_start),
        mib(m.rss_before),
        mib(m.rss_after)
    );
    println!(
        "  RSS per record: {:.1} B (from start), {:.1} B (from the empty channel)",
        (m.rss_after - m.rss_start) as f64 / n as f64,
        (m.rss_after - m.rss_before) as f64 / n as f64
    );
    println!(
        "  heap in use per record: {:.1} B (mallinfo2: {:.1} MiB → {:.1} MiB)",
        (m.heap_after - m.heap_start) as f64 / n as f64,
        mib(m.heap_start),
        mib(m.heap_after)
    );
    println!(
        "  payload (8-byte key + value): {} B per record",
        8 + args.value_size
    );
    println!(
        "  breakdown per record (heap growth {:.1} B from the empty channel): a value allocation (length, version, bytes) costs {value_chunk} B ({} usable + 8 header), the index (tables, shards) the other {:.1} B",
        m.heap_growth_per_record(n),
        value_chunk - 8,
        m.index_bytes_per_record(n, value_chunk),
    );
    println!(
        "  engine time: put {:.0} ns/op ({:.2} M/s), get {:.0} ns/op ({:.2} M/s), single thread",
        1e9 * m.put_s / n as f64,
        n as f64 / m.put_s / 1e6,
        1e9 * m.get_s / n as f64,
        n as f64 / m.get_s / 1e6
    );
}

fn write_json(
    path: &std::path::Path,
    args: &Args,
    m: &Measured,
    value_chunk: u64,
) -> std::io::Result<()> {
    let n = args.records;
    let report = json!({
        "records": m.records,
        "value_size": args.value_size,
        "rss_start_bytes": m.rss_start,
        "rss_empty_channel_bytes": m.rss_before,
        "rss_after_bytes": m.rss_after,
        "rss_per_record": (m.rss_after - m.rss_start) as f64 / n as f64,
        "heap_per_record": (m.heap_after - m.heap_start) as f64 / n as f64,
        "payload_per_record": 8 + args.value_size,
        "heap_growth_per_record": m.heap_growth_per_record(n),
        "boxed_value_bytes": value_chunk,
        "index_bytes_per_record": m.index_bytes_per_record(n, value_chunk),
        "put_ns_per_op": 1e9 * m.put_s / n as f64,
        "get_ns_per_op": 1e9 * m.get_s / n as f64,
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON");
    std::fs::write(path, text + "\n")
}
