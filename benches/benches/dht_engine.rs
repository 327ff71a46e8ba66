//! The dht engine (`dhtnode::engine::Engine`) single-threaded, without sockets: what a Put or a
//! Get costs the node's event loop after decoding.
//!
//! One channel holds N records of 100-byte values under uniformly spread keys; keys are drawn
//! uniformly from those N (a put overwrites, a get hits), or from keys never stored (a miss).
//! N = 1 000 000 (~150 MB, far beyond the caches: every request pays DRAM misses, as in
//! `scripts/bench-vs-redis.sh`) and N = 1 000 (cache-resident: the code's own cost).
//! A get copies the value into a reply buffer through `Engine::with_value`, as the Get handler
//! does. Limits as the node's defaults (`size_limit_bytes` 0, so a put is one lookup).
//!
//!     cargo bench -p benches --bench dht_engine

use std::hint::black_box;
use std::time::Duration;

use benches::data::{mix, random_bytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dhtnode::engine::{Engine, EngineLimits, ListenerLimits};
use node_core::protocol::dht::HashRange;

const VALUE_LEN: usize = 100;
const CHANNEL: &str = "bench";

fn engine_with(records: u64, value: &[u8]) -> Engine {
    let limits = EngineLimits {
        size_limit_bytes: 0,
        max_channels: 1024,
        max_value_bytes: 1 << 20,
    };
    let listener_limits = ListenerLimits {
        max_events: 1024,
        max_bytes: 1 << 20,
        max_total_bytes: 1 << 30,
    };
    let mut engine = Engine::new(HashRange::FULL, limits, listener_limits);
    for i in 0..records {
        engine.put(CHANNEL, mix(i), value).expect("prefill put");
    }
    engine
}

/// Uniform indexes in 0..n (xorshift64; cheap next to a lookup).
struct Indexes(u64);

impl Indexes {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Multiply-shift instead of `%`: uniform enough, no division.
        ((self.0 as u128 * n as u128) >> 64) as u64
    }
}

fn engine(c: &mut Criterion) {
    let value = random_bytes(7, VALUE_LEN);
    let mut group = c.benchmark_group("dht_engine_100B");
    group.throughput(Throughput::Elements(1));
    for records in [1_000u64, 1_000_000] {
        let mut engine = engine_with(records, &value);
        let label = if records >= 1_000_000 {
            format!("{}M_records", records / 1_000_000)
        } else {
            format!("{}k_records", records / 1_000)
        };

        group.bench_function(format!("put_overwrite/{label}"), |b| {
            let mut idx = Indexes(0x1234_5678_9abc_def1);
            b.iter(|| {
                let key = mix(idx.next(records));
                engine
                    .put(CHANNEL, black_box(key), black_box(&value))
                    .unwrap();
            });
        });

        group.bench_function(format!("get_hit/{label}"), |b| {
            let mut idx = Indexes(0x0fed_cba9_8765_4321);
            let mut reply = Vec::with_capacity(4096);
            b.iter(|| {
                let key = mix(idx.next(records));
                let found = engine
                    .with_value(CHANNEL, black_box(key), |v| match v {
                        Some(v) => {
                            reply.extend_from_slice(v);
                            true
                        }
                        None => false,
                    })
                    .unwrap();
                assert!(found);
                if reply.len() > 3000 {
                    reply.clear();
                }
            });
        });

        group.bench_function(format!("get_miss/{label}"), |b| {
            let mut idx = Indexes(0x1357_9bdf_2468_ace1);
            b.iter(|| {
                // Keys past the stored ones: never present.
                let key = mix(records + idx.next(1 << 40));
                let found = engine
                    .with_value(CHANNEL, black_box(key), |v| v.is_some())
                    .unwrap();
                assert!(!found);
            });
        });
        drop(engine);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = engine
}
criterion_main!(benches);
