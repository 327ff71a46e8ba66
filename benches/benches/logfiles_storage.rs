//! The logfiles node's storage hot paths (`logfilesnode::storage`), single-threaded:
//!
//! - `encode_record`: one 100-byte record into a buffer (CRC32 over header and value, copy):
//!   the CPU part of a Put, without I/O.
//! - `append`: `BucketWriter::append` of 100-byte records into a bucket file in a temporary
//!   directory with the node's default 64 KiB write buffer, so one `write(2)` into the page
//!   cache per ~560 records. The file is replaced every 200 000 records (23 MB; opening and
//!   deleting it is not timed), so the run stays small on disk.
//! - `decode`: `BucketDecoder` over a 10 000-record bucket in memory (CRC check of every
//!   record, the records handed out by reference): the core of RangeScan.
//!
//!     cargo bench -p benches --bench logfiles_storage

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::data::text_value;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logfilesnode::storage::format::{encode_record, file_header, RECORD_HEADER_BYTES};
use logfilesnode::storage::{
    BucketDecoder, BucketFormat, BucketWriter, DEFAULT_WRITE_BUFFER_BYTES,
};

const VALUE_LEN: usize = 100;
const RECORDS_PER_FILE: u64 = 200_000;
const DECODE_RECORDS: usize = 10_000;

/// Appends `iters` records of `value` through a `BucketWriter` with the default buffer, into
/// files of at most [`RECORDS_PER_FILE`] records at `path`; returns the time the appends and
/// flushes took (opening and deleting the files is not timed).
fn append_timed(path: &std::path::Path, value: &[u8], iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    let mut key = 0u64;
    while left > 0 {
        let n = left.min(RECORDS_PER_FILE);
        let _ = std::fs::remove_file(path);
        let mut writer = BucketWriter::open(path, DEFAULT_WRITE_BUFFER_BYTES).expect("open bucket");
        let start = Instant::now();
        for _ in 0..n {
            key += 1;
            writer.append(black_box(key), black_box(value)).unwrap();
        }
        writer.flush().unwrap();
        timed += start.elapsed();
        drop(writer);
        left -= n;
    }
    let _ = std::fs::remove_file(path);
    timed
}

/// A bucket of [`DECODE_RECORDS`] records of `record_len` bytes (header and value), in memory.
fn encoded_bucket(record_len: u64) -> Vec<u8> {
    let mut bucket = file_header().to_vec();
    for key in 0..DECODE_RECORDS as u64 {
        encode_record(
            BucketFormat::Crc,
            key,
            &text_value(key as usize, VALUE_LEN),
            &mut bucket,
        );
    }
    assert_eq!(bucket.len() as u64, 16 + DECODE_RECORDS as u64 * record_len);
    bucket
}

fn storage(c: &mut Criterion) {
    let value = text_value(3, VALUE_LEN);
    let record_len = (RECORD_HEADER_BYTES + VALUE_LEN) as u64;
    let mut group = c.benchmark_group("logfiles_100B");

    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_record", |b| {
        let mut buf = Vec::with_capacity(DEFAULT_WRITE_BUFFER_BYTES + 1024);
        let mut key = 0u64;
        b.iter(|| {
            key += 1;
            encode_record(
                BucketFormat::Crc,
                black_box(key),
                black_box(&value),
                &mut buf,
            );
            if buf.len() >= DEFAULT_WRITE_BUFFER_BYTES {
                buf.clear();
            }
        });
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bucket");
    group.bench_function("append_64KiB_buffer", |b| {
        b.iter_custom(|iters| append_timed(&path, &value, iters));
    });

    let bucket = encoded_bucket(record_len);
    group.throughput(Throughput::Bytes(bucket.len() as u64));
    group.bench_function("decode_10k_records", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let mut key_sum = 0u64;
            for record in BucketDecoder::new(black_box(&bucket)) {
                let record = record.unwrap();
                key_sum = key_sum.wrapping_add(record.key);
                n += black_box(record.value).len();
            }
            assert_eq!(n, DECODE_RECORDS * VALUE_LEN);
            black_box(key_sum);
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = storage
}
criterion_main!(benches);
