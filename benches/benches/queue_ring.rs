//! The queue node's ring (`queuenode::engine::ring::Ring`), single-threaded, on a memory-mapped
//! 64 MiB ring file in a temporary directory (default `SyncMode::OnClose`, as the node runs):
//!
//! - `push`: `Ring::push` of one 100-byte value (record CRC, copy into the map), and every
//!   [`COMMIT_EVERY`] pushes `Ring::commit_header` (the header slot rewritten with its own CRC):
//!   the node commits once per batch of replies, 16 requests at the benchmark's pipeline depth.
//! - `pop`: `Ring::pop` (the oldest record taken for good, its value copied out into a new
//!   `Vec`).
//! - `pop_with`: what the Pop request does, with a header commit every [`COMMIT_EVERY`] pops
//!   (`Engine::pop_with`, `queuenode/src/engine/mod.rs`): `Ring::pop_with`, the value read in
//!   place (the request copies it into the reply); with no batch out, no take/ack bookkeeping.
//! - `take_ack_1_no_alloc`: what the Pop request did before `Ring::pop_with` (issue 22):
//!   `Ring::take_with(1, ..)` + `Ring::ack` copying the value into a reused buffer.
//! - `take_ack_batch_4096`: `Ring::take_with` of 4096 records (values by reference) then
//!   `Ring::ack`: what a Consume batch does, per record.
//!
//! Pushes and pops alternate in rounds of up to 200 000 records (23 MB), the other half of each
//! round untimed, so the ring never fills and, after the warm-up, its pages are resident.
//!
//!     cargo bench -p benches --bench queue_ring

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::data::text_value;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use queuenode::engine::ring::{Ring, SyncMode};

const VALUE_LEN: usize = 100;
const CAPACITY_BYTES: u64 = 64 << 20;
const ROUND: u64 = 200_000;
const BATCH: usize = 4096;
/// Requests per header commit: one pipelined batch of the node's benchmark (`-P 16`).
const COMMIT_EVERY: u64 = 16;

fn drain(ring: &mut Ring) {
    while let Some(span) = ring.take_with(BATCH, u64::MAX, |_, v| {
        black_box(v);
    }) {
        ring.ack(span).unwrap();
    }
}

/// A ring in `dir` whose pages were all touched once (a fresh ring pays a page fault per 4 KiB
/// on first use), empty.
fn warm_ring(dir: &std::path::Path, value: &[u8]) -> Ring {
    let mut ring =
        Ring::create(&dir.join("ring"), CAPACITY_BYTES, SyncMode::OnClose).expect("create ring");
    for _ in 0..(CAPACITY_BYTES / 2 / 120) {
        ring.push(value).unwrap();
    }
    drain(&mut ring);
    ring
}

/// Takes and acknowledges `n` records in batches of up to [`BATCH`], values by reference.
fn take_ack_in_batches(ring: &mut Ring, n: u64) {
    let mut got = 0u64;
    while got < n {
        let span = ring
            .take_with(BATCH.min((n - got) as usize), u64::MAX, |seq, v| {
                black_box((seq, v));
            })
            .unwrap();
        got += span.end_seq - span.first_seq;
        ring.ack(span).unwrap();
    }
}

/// After the `i`th change (from 0), the header commit the node makes once per batch of
/// [`COMMIT_EVERY`] replies.
fn commit_per_batch(ring: &mut Ring, i: u64) {
    if i % COMMIT_EVERY == COMMIT_EVERY - 1 {
        ring.commit_header();
    }
}

/// Pushes `n` copies of `value` (untimed: the rounds' other half).
fn fill(ring: &mut Ring, value: &[u8], n: u64) {
    for _ in 0..n {
        ring.push(value).unwrap();
    }
}

/// Runs `iters` records in rounds of at most [`ROUND`]: `round(n)` does one round of `n` records
/// and returns the part of it that is timed; returns the sum of those.
fn in_rounds(iters: u64, mut round: impl FnMut(u64) -> Duration) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(ROUND);
        timed += round(n);
        left -= n;
    }
    timed
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

fn ring(c: &mut Criterion) {
    let value = text_value(5, VALUE_LEN);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ring = warm_ring(dir.path(), &value);

    let mut group = c.benchmark_group("queue_ring_100B");
    group.throughput(Throughput::Elements(1));
    push(&mut group, &mut ring, &value);
    pops(&mut group, &mut ring, &value);
    group.bench_function("take_ack_batch_4096", |b| {
        b.iter_custom(|iters| {
            in_rounds(iters, |n| {
                fill(&mut ring, &value, n);
                let start = Instant::now();
                take_ack_in_batches(&mut ring, n);
                start.elapsed()
            })
        });
    });
    group.finish();
    drop(ring);
}

fn push(group: &mut Group<'_>, ring: &mut Ring, value: &[u8]) {
    group.bench_function("push", |b| {
        b.iter_custom(|iters| {
            in_rounds(iters, |n| {
                let start = Instant::now();
                for i in 0..n {
                    ring.push(black_box(value)).unwrap();
                    commit_per_batch(ring, i);
                }
                let timed = start.elapsed();
                drain(ring);
                timed
            })
        });
    });
}

/// `pop`, `pop_with` and `take_ack_1_no_alloc`: one record at a time.
fn pops(group: &mut Group<'_>, ring: &mut Ring, value: &[u8]) {
    group.bench_function("pop", |b| {
        b.iter_custom(|iters| {
            in_rounds(iters, |n| {
                timed_after_fill(ring, value, n, |ring, _| {
                    black_box(ring.pop().unwrap().unwrap());
                })
            })
        });
    });
    group.bench_function("pop_with", |b| {
        b.iter_custom(|iters| {
            in_rounds(iters, |n| {
                timed_after_fill(ring, value, n, |ring, i| {
                    black_box(ring.pop_with(|v| black_box(v).len()).unwrap());
                    commit_per_batch(ring, i);
                })
            })
        });
    });
    group.bench_function("take_ack_1_no_alloc", |b| {
        let mut scratch = Vec::with_capacity(VALUE_LEN);
        b.iter_custom(|iters| {
            in_rounds(iters, |n| {
                timed_after_fill(ring, value, n, |ring, i| {
                    let span = ring
                        .take_with(1, u64::MAX, |_, v| {
                            scratch.clear();
                            scratch.extend_from_slice(v);
                        })
                        .unwrap();
                    ring.ack(span).unwrap();
                    black_box(&scratch);
                    commit_per_batch(ring, i);
                })
            })
        });
    });
}

/// Pushes `n` records (untimed), then times `each(ring, i)` for `i` in `0..n`.
fn timed_after_fill(
    ring: &mut Ring,
    value: &[u8],
    n: u64,
    mut each: impl FnMut(&mut Ring, u64),
) -> Duration {
    fill(ring, value, n);
    let start = Instant::now();
    for i in 0..n {
        each(ring, i);
    }
    start.elapsed()
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = ring
}
criterion_main!(benches);
