//! Wire-protocol hot paths: frame encode/parse, header decode, LZ4 batch build and decode.
//!
//!     cargo bench -p benches --bench frame -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use node_core::protocol::batch::{
    decode_batch, BatchBuilder, PushOutcome, DEFAULT_BATCH_TARGET_BYTES, RECORD_OVERHEAD,
};
use node_core::protocol::frame::{parse_frame, write_frame, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::{FrameHeader, FrameType, HEADER_LEN};

const BODY_LEN: usize = 100;
const PIPELINED_FRAMES: usize = 64;
const VALUE_LEN: usize = 100;

/// Deterministic pseudo-random bytes (xorshift64*), so the benches need no RNG crate.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// 100-byte values of two kinds: random (LZ4 finds nothing; the worst case for size and the best
/// for compression speed) and text-like (repetitive, like JSON or log lines; compresses well).
fn values(kind: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| match kind {
            "random" => random_bytes(i as u64, VALUE_LEN),
            _ => format!("{{\"id\":{i:08},\"kind\":\"event\",\"host\":\"node-{:02}\",\"status\":\"ok\",\"msg\":\"request served\"}}", i % 16)
                .into_bytes()
                .into_iter()
                .chain(std::iter::repeat(b' '))
                .take(VALUE_LEN)
                .collect(),
        })
        .collect()
}

/// Pushes records until the builder reports Full (a 64 KiB batch of 100-byte values holds 585).
fn fill(builder: &mut BatchBuilder, values: &[Vec<u8>]) -> usize {
    let mut count = 0;
    for (key, value) in values.iter().enumerate() {
        match builder.push(key as u64, value) {
            PushOutcome::Added => count += 1,
            PushOutcome::Full => break,
            PushOutcome::TooBig => unreachable!("100-byte value refused"),
        }
    }
    count
}

fn frames(c: &mut Criterion) {
    let body = random_bytes(1, BODY_LEN);

    let mut group = c.benchmark_group("frame");

    group.throughput(Throughput::Bytes((HEADER_LEN + BODY_LEN) as u64));
    group.bench_function("write_frame/request_100B", |b| {
        let mut out = Vec::with_capacity(1024);
        let mut id = 0u64;
        b.iter(|| {
            out.clear();
            id = id.wrapping_add(1);
            write_frame(
                &mut out,
                FrameType::Request,
                16,
                black_box(id),
                black_box(&body),
            );
            black_box(out.len());
        });
    });

    let mut pipelined = Vec::new();
    for id in 0..PIPELINED_FRAMES as u64 {
        write_frame(&mut pipelined, FrameType::Request, 16, id, &body);
    }
    group.throughput(Throughput::Bytes(pipelined.len() as u64));
    group.bench_function("parse_frame/64_pipelined_100B", |b| {
        b.iter(|| {
            let mut rest = black_box(&pipelined[..]);
            let mut body_bytes = 0usize;
            while let Some(header) = parse_frame(rest, DEFAULT_MAX_FRAME_BYTES).unwrap() {
                body_bytes += black_box(&rest[HEADER_LEN..header.frame_len()]).len();
                rest = &rest[header.frame_len()..];
            }
            assert_eq!(body_bytes, PIPELINED_FRAMES * BODY_LEN);
        });
    });

    let header = FrameHeader::new(FrameType::Request, 16, 0x0102_0304_0506_0708, 100).encode();
    group.throughput(Throughput::Bytes(HEADER_LEN as u64));
    group.bench_function("header_decode", |b| {
        b.iter(|| FrameHeader::decode(black_box(&header), black_box(DEFAULT_MAX_FRAME_BYTES)));
    });
    group.finish();
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_64KiB_100B_values");
    for kind in ["random", "text"] {
        let values = values(
            kind,
            DEFAULT_BATCH_TARGET_BYTES / (RECORD_OVERHEAD + VALUE_LEN) + 1,
        );
        let mut builder = BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES);
        let count = fill(&mut builder, &values);
        let raw_len = builder.raw_len();
        let mut batch = Vec::new();
        builder.finish_into(&mut batch);
        println!(
            "batch_64KiB_100B_values/{kind}: {count} records, {raw_len} bytes raw, {} bytes compressed ({:.1}%)",
            batch.len(),
            100.0 * batch.len() as f64 / raw_len as f64
        );

        // Uncompressed bytes per second, for both directions.
        group.throughput(Throughput::Bytes(raw_len as u64));
        group.bench_function(format!("build_finish/{kind}"), |b| {
            let mut builder = BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES);
            let mut out = Vec::with_capacity(batch.len() * 2);
            b.iter(|| {
                out.clear();
                let added = fill(&mut builder, black_box(&values));
                builder.finish_into(&mut out);
                assert_eq!(added, count);
                black_box(out.len());
            });
        });

        group.bench_function(format!("decode_iterate/{kind}"), |b| {
            let mut scratch = Vec::new();
            b.iter(|| {
                let records = decode_batch(black_box(&batch), &mut scratch).unwrap();
                let mut n = 0usize;
                let mut key_sum = 0u64;
                for (key, value) in records {
                    key_sum = key_sum.wrapping_add(key);
                    n += black_box(value).len();
                }
                assert_eq!(n, count * VALUE_LEN);
                black_box(key_sum);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, frames, batches);
criterion_main!(benches);
