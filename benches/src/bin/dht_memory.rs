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

fn main() -> ExitCode {
    let args = Args::parse();
    let limits = EngineLimits {
        max_channels: usize::MAX,
        size_limit_bytes: 0,
        max_value_bytes: 1 << 20,
    };
    let listener_limits = ListenerLimits {
        max_events: 1024,
        max_bytes: 1 << 20,
        max_total_bytes: usize::MAX,
    };
    if args.value_size == 0 || args.value_size > limits.max_value_bytes {
        eprintln!(
            "dht_memory: --value-size must be 1 to {}",
            limits.max_value_bytes
        );
        return ExitCode::from(1);
    }
    let value: Vec<u8> = (0..args.value_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let n = args.records;
    if n < 2 {
        eprintln!("dht_memory: --records must be at least 2");
        return ExitCode::from(1);
    }

    let rss_start = sys::self_rss();
    let heap_start = heap_in_use();
    let mut engine = Engine::new(HashRange::FULL, limits, listener_limits);
    // The empty channel (its shard array) exists before the first record counts.
    if let Err(e) = engine.put(&args.channel, key_of(0), &value) {
        eprintln!("dht_memory: put failed: {e}");
        return ExitCode::from(1);
    }
    let rss_before = sys::self_rss();
    let heap_before = heap_in_use();

    let started = Instant::now();
    for i in 1..n {
        if let Err(e) = engine.put(&args.channel, key_of(i), &value) {
            eprintln!("dht_memory: put {i} failed: {e}");
            return ExitCode::from(1);
        }
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

    // Breakdown without looking inside the engine: what one boxed value of this size costs in
    // glibc (usable size + the 8-byte chunk header), measured on a box of our own; the engine as
    // of this writing keeps each value in its own Box<[u8]>. The rest of the heap growth is the
    // index (hash tables, shard structures).
    let probe: Box<[u8]> = Box::from(&value[..]);
    // SAFETY: `probe` is a live allocation of the global (system) allocator, passed at its start.
    let usable = unsafe { libc::malloc_usable_size(probe.as_ptr() as *mut libc::c_void) } as u64;
    drop(probe);
    let value_chunk = usable + 8;
    let heap_growth = heap_after - heap_before;
    let index_bytes = heap_growth.saturating_sub(value_chunk * (n - 1));

    let rss_per = (rss_after - rss_start) as f64 / n as f64;
    let heap_per = (heap_after - heap_start) as f64 / n as f64;
    let records = engine.size().records;
    println!(
        "dht engine, {records} records of {} bytes (keys: hash of 0..N), 1 channel",
        args.value_size
    );
    println!(
        "  RSS: {:.1} MiB at start, {:.1} MiB with the empty channel, {:.1} MiB after",
        mib(rss_start),
        mib(rss_before),
        mib(rss_after)
    );
    println!(
        "  RSS per record: {rss_per:.1} B (from start), {:.1} B (from the empty channel)",
        (rss_after - rss_before) as f64 / n as f64
    );
    println!(
        "  heap in use per record: {heap_per:.1} B (mallinfo2: {:.1} MiB → {:.1} MiB)",
        mib(heap_start),
        mib(heap_after)
    );
    println!(
        "  payload (8-byte key + value): {} B per record",
        8 + args.value_size
    );
    println!(
        "  breakdown per record (heap growth {:.1} B from the empty channel): a boxed value costs {value_chunk} B ({usable} usable + 8 header), the index (tables, shards) the other {:.1} B",
        heap_growth as f64 / (n - 1).max(1) as f64,
        index_bytes as f64 / (n - 1).max(1) as f64,
    );
    println!(
        "  engine time: put {:.0} ns/op ({:.2} M/s), get {:.0} ns/op ({:.2} M/s), single thread",
        1e9 * put_s / n as f64,
        n as f64 / put_s / 1e6,
        1e9 * get_s / n as f64,
        n as f64 / get_s / 1e6
    );

    if let Some(path) = &args.json {
        let report = json!({
            "records": records,
            "value_size": args.value_size,
            "rss_start_bytes": rss_start,
            "rss_empty_channel_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "rss_per_record": rss_per,
            "heap_per_record": heap_per,
            "payload_per_record": 8 + args.value_size,
            "heap_growth_per_record": heap_growth as f64 / (n - 1).max(1) as f64,
            "boxed_value_bytes": value_chunk,
            "index_bytes_per_record": index_bytes as f64 / (n - 1).max(1) as f64,
            "put_ns_per_op": 1e9 * put_s / n as f64,
            "get_ns_per_op": 1e9 * get_s / n as f64,
        });
        let text = serde_json::to_string_pretty(&report).expect("JSON");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("dht_memory: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
