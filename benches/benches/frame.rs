//! Wire-protocol hot paths: frame encode and parse, header decode. (LZ4 batches: `batch.rs`.)
//!
//!     cargo bench -p benches --bench frame

use std::hint::black_box;
use std::time::Duration;

use benches::data::random_bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use node_core::protocol::frame::{parse_frame, write_frame, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::{FrameHeader, FrameType, HEADER_LEN};

const BODY_LEN: usize = 100;
const PIPELINED_FRAMES: usize = 64;

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = frames
}
criterion_main!(benches);
