//! dhtdump's memory while it dumps a channel far larger than its buffers: the resident set of
//! the dhtdump process, sampled from `/proc/<pid>/status` every 5 ms, for a channel of 100 000
//! and one of 1 000 000 records of 200 bytes. Flat memory means both peaks are about the same.
//!
//! A benchmark (not part of the test suite); it exits non-zero if memory grew with the data:
//!
//! ```sh
//! cargo bench -p dhtdump --bench memory
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Sample {
    records: u64,
    file_bytes: u64,
    seconds: f64,
    samples: usize,
    peak_kib: u64,
    median_kib: u64,
}

fn measure(records: u64) -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node/data"), &dir.path().join("node/log"));
    let dht = node.client();
    for start in (0..records).step_by(100_000) {
        fill(&dht, "big", start..(start + 100_000).min(records), |_| 200);
    }
    let dump_data = dir.path().join("dump/data");
    let mut dump = Dump::spawn(
        &[
            "--oneshot",
            "--node",
            &node.addr.to_string(),
            "--data-dir",
            dump_data.to_str().unwrap(),
        ],
        &dir.path().join("dump/log"),
    );
    let pid = dump.child.id();
    let started = Instant::now();
    let mut rss = Vec::new();
    while dump.child.try_wait().unwrap().is_none() {
        // 0 before the exec has mapped anything.
        if let Some(kib) = rss_kib(pid).filter(|kib| *kib > 0) {
            rss.push(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = started.elapsed().as_secs_f64();
    assert!(dump.child.wait().unwrap().success());
    let file_bytes = std::fs::metadata(dump_data.join("big.dump")).unwrap().len();
    let peak_kib = rss.iter().copied().max().unwrap_or(0);
    let mut sorted = rss.clone();
    sorted.sort_unstable();
    Sample {
        records,
        file_bytes,
        seconds,
        samples: rss.len(),
        peak_kib,
        median_kib: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
    }
}

fn main() {
    let samples: Vec<Sample> = [100_000, 1_000_000].into_iter().map(measure).collect();
    println!("| records × 200 B | dump file | dhtdump run | RSS samples | RSS median | RSS peak |");
    println!("|---|---|---|---|---|---|");
    for sample in &samples {
        println!(
            "| {} | {:.1} MiB | {:.2} s | {} | {:.1} MiB | {:.1} MiB |",
            sample.records,
            sample.file_bytes as f64 / 1048576.0,
            sample.seconds,
            sample.samples,
            sample.median_kib as f64 / 1024.0,
            sample.peak_kib as f64 / 1024.0,
        );
    }
    // Ten times the data must not take much more memory.
    let (small, large) = (&samples[0], &samples[1]);
    if large.peak_kib >= small.peak_kib + 16 * 1024 {
        eprintln!(
            "NOT FLAT: peak RSS grew from {} KiB to {} KiB",
            small.peak_kib, large.peak_kib
        );
        std::process::exit(1);
    }
    println!(
        "flat: peak RSS {} KiB for 10x the data of {} KiB",
        large.peak_kib, small.peak_kib
    );
}
