//! How fast a dht node comes back, and how fast it dumps: writes one channel's dump of N records
//! (default 1M, 100-byte values) with the node's own dump writer, then times reading and
//! verifying it, and loading it into the engine the way start-up does
//! (`dhtnode::persist::load`); then times the node's shutdown dump of that engine
//! (`DumpScheduler::dump_all_blocking`, the dump thread reading the shards itself) in each
//! `dump_compression` mode.
//!
//! `cargo run --release -p benches --bin dht_load -- [RECORDS] [VALUE_BYTES]`
//! DESIGN.md §6 target: a restart with 1 GB of data loaded in under 3 s; issue 22: a shutdown
//! dump of 1 GB of records in at most 1 s.

use dht_persist::dump::format::{read_dump, DumpCompression, DumpFileWriter, DumpSummary};
use dht_persist::loader::{LoadOptions, OutOfRangePolicy};
use dht_persist::{DumpScheduler, DumpThread};
use dhtnode::engine::{Engine, EngineLimits, ListenerLimits};
use node_core::protocol::batch::{append_record, DEFAULT_BATCH_TARGET_BYTES};
use node_core::protocol::dht::HashRange;
use std::io::{BufWriter, Write};
use std::time::Instant;

/// Writes a dump of channel "bench" at `path`: `records` records of `value_bytes`-byte values,
/// half random and half text (neither incompressible nor trivially compressible), synced.
fn write_dump(
    path: &std::path::Path,
    records: u64,
    value_bytes: usize,
) -> Result<DumpSummary, Box<dyn std::error::Error>> {
    let mut writer = DumpFileWriter::new(
        BufWriter::with_capacity(1 << 22, std::fs::File::create(path)?),
        "bench",
    )?;
    let mut raw = Vec::with_capacity(DEFAULT_BATCH_TARGET_BYTES + value_bytes + 64);
    let mut count = 0;
    let mut value = vec![0u8; value_bytes];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for key in 0..records {
        // Half random, half text: neither incompressible nor trivially compressible.
        for chunk in value[..value_bytes / 2].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        for (index, byte) in value[value_bytes / 2..].iter_mut().enumerate() {
            *byte = b"value of record "[index % 16];
        }
        append_record(&mut raw, key.wrapping_mul(0x9e37_79b9_7f4a_7c15), &value);
        count += 1;
        if raw.len() >= DEFAULT_BATCH_TARGET_BYTES {
            writer.write_chunk(&raw, count)?;
            raw.clear();
            count = 0;
        }
    }
    writer.write_chunk(&raw, count)?;
    let (mut buffered, summary) = writer.finish()?;
    buffered.flush()?;
    buffered.get_ref().sync_all()?;
    Ok(summary)
}

/// An engine of the full hash range with room for every record of `value_bytes`-byte values.
fn empty_engine(value_bytes: usize) -> Engine {
    let limits = EngineLimits {
        max_channels: usize::MAX,
        size_limit_bytes: 0,
        max_value_bytes: value_bytes.max(1),
    };
    Engine::new(
        HashRange::FULL,
        limits,
        ListenerLimits {
            max_events: 1,
            max_bytes: value_bytes + 16,
            max_total_bytes: usize::MAX,
        },
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: u64 = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let value_bytes: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.dump");

    let started = Instant::now();
    let summary = write_dump(&path, records, value_bytes)?;
    let write_s = started.elapsed().as_secs_f64();
    let file_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    let data_mb = (summary.value_bytes + 8 * summary.records) as f64 / 1e6;

    let started = Instant::now();
    let mut checksum = 0u64;
    read_dump(std::fs::File::open(&path)?, |key, value| {
        checksum = checksum.wrapping_add(key ^ value.len() as u64)
    })?;
    let read_s = started.elapsed().as_secs_f64();

    let mut engine = empty_engine(value_bytes);
    let options = LoadOptions {
        policy: OutOfRangePolicy::Load,
        range: HashRange::FULL,
        max_value_bytes: value_bytes.max(1),
    };
    let started = Instant::now();
    dhtnode::persist::load(dir.path(), &options, &mut engine)?;
    let load_s = started.elapsed().as_secs_f64();
    assert_eq!(engine.size().records, records, "every record loaded");

    println!("records {records} value_bytes {value_bytes}: {data_mb:.0} MB of keys+values, dump file {file_mb:.0} MB");
    println!("write+fsync      {write_s:8.3} s");
    println!(
        "read+verify      {read_s:8.3} s  ({:.0} MB/s of data) [checksum {checksum}]",
        data_mb / read_s
    );
    println!(
        "load into engine {load_s:8.3} s  ({:.2} s per GB of data)",
        load_s / (data_mb / 1000.0)
    );
    for compression in [DumpCompression::Lz4, DumpCompression::None] {
        let (dump_s, file_mb) = time_shutdown_dump(&engine, compression)?;
        println!(
            "shutdown dump    {dump_s:8.3} s  ({:.2} GB/s of data, {} file {file_mb:.0} MB)",
            data_mb / 1000.0 / dump_s,
            compression.name()
        );
    }
    Ok(())
}

/// Times the node's shutdown dump of `engine` into a fresh directory: every channel to the
/// dump thread, until its files are fsynced and renamed into place. Returns the seconds and the
/// size of the files in MB.
fn time_shutdown_dump(
    engine: &Engine,
    compression: DumpCompression,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let thread = DumpThread::spawn(dir.path().to_path_buf())?;
    thread.set_compression(compression);
    let mut scheduler = DumpScheduler::new(thread, None);
    let started = Instant::now();
    let failures = scheduler.dump_all_blocking(engine);
    let dump_s = started.elapsed().as_secs_f64();
    if failures > 0 {
        return Err(format!("{failures} channel dumps failed").into());
    }
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir.path())? {
        bytes += entry?.metadata()?.len();
    }
    Ok((dump_s, bytes as f64 / 1e6))
}
