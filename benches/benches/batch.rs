//! LZ4 record batches (`node_core::protocol::batch`), as GetAll, GetRange, Consume and dumps send
//! them: 64 KiB of 100-byte values per batch, random (LZ4 finds nothing: the worst case for size,
//! the best for speed) and text-like (repetitive, like JSON or log lines).
//!
//! - `build_finish`: `BatchBuilder::push` of every record, then `finish_into` (compress): what a
//!   node does per batch on its event loop.
//! - `encode_batch`: compression alone, of an already laid out raw batch (`append_record`).
//! - `decode_iterate`: `decode_batch` (length and CRC checks, decompression) and a walk over
//!   the records: what a client does per batch.
//!
//! Throughput is in uncompressed bytes. `cargo bench -p benches --bench batch`

use std::hint::black_box;
use std::time::Duration;

use benches::data::values;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use node_core::protocol::batch::{
    append_record, decode_batch, encode_batch, BatchBuilder, PushOutcome,
    DEFAULT_BATCH_TARGET_BYTES, RECORD_OVERHEAD,
};

const VALUE_LEN: usize = 100;

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

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_64KiB_100B_values");
    for kind in ["random", "text"] {
        let values = values(
            kind,
            DEFAULT_BATCH_TARGET_BYTES / (RECORD_OVERHEAD + VALUE_LEN) + 1,
            VALUE_LEN,
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
        let mut raw = Vec::with_capacity(raw_len);
        for (key, value) in values.iter().take(count).enumerate() {
            append_record(&mut raw, key as u64, value);
        }

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

        group.bench_function(format!("encode_batch/{kind}"), |b| {
            let mut out = Vec::with_capacity(batch.len() * 2);
            b.iter(|| {
                out.clear();
                encode_batch(black_box(&raw), count as u32, &mut out);
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = batches
}
criterion_main!(benches);
