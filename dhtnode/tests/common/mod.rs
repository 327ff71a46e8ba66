//! dhtnode's process tests use the shared harness in `testkit`, pointed at this crate's binary.

#![allow(dead_code)]

pub use testkit::*;

use node_core::protocol::{RequestCode, Status};

/// This crate's node binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_dhtnode");

/// `len` pseudo-random bytes seeded by `key`: a value of its own for every key, which LZ4
/// cannot shrink (so the size of a dump is known in advance, and writing one takes time).
pub fn random_value(key: u64, len: usize) -> Vec<u8> {
    let mut state = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut value = Vec::with_capacity(len + 8);
    while value.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.extend_from_slice(&state.to_le_bytes());
    }
    value.truncate(len);
    value
}

/// The body of a dht Put.
pub fn put_body(channel: &str, key: u64, value: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    node_core::protocol::dht::PutRequest {
        channel,
        key,
        value,
    }
    .encode(&mut body);
    body
}

/// The body of a request naming a channel and a key (Get, Exists, Remove, GetWithVersion).
pub fn key_body(channel: &str, key: u64) -> Vec<u8> {
    let mut body = Vec::new();
    node_core::protocol::dht::KeyRequest { channel, key }.encode(&mut body);
    body
}

/// Gets `keys` of `channel` in one pipeline: each key's status and value.
pub fn get_pipelined(conn: &mut Conn, channel: &str, keys: &[u64]) -> Vec<(Status, Vec<u8>)> {
    let requests: Vec<(RequestCode, Vec<u8>)> = keys
        .iter()
        .map(|&key| {
            let mut body = Vec::new();
            node_core::protocol::dht::KeyRequest { channel, key }.encode(&mut body);
            (node_core::protocol::dht::GET, body)
        })
        .collect();
    conn.pipeline(&requests)
}

/// A dump of `count` records of 100 bytes, written with the node's own writer.
pub fn write_dump(data_dir: &std::path::Path, channel: &str, count: u64) {
    let path = data_dir.join(format!("{channel}.dump"));
    let file = std::fs::File::create(path).unwrap();
    let mut writer = dht_persist::dump::format::DumpFileWriter::new(file, channel).unwrap();
    let keys: Vec<u64> = (0..count).collect();
    for part in keys.chunks(1000) {
        let mut raw = Vec::new();
        for key in part {
            node_core::protocol::batch::append_record(&mut raw, *key, &[b'v'; 100]);
        }
        writer.write_chunk(&raw, part.len() as u32).unwrap();
    }
    writer.finish().unwrap();
}

/// Runs the node in `dir` with `args`, expecting it to refuse to start: its exit code and
/// stderr ([`testkit::refused_start`]).
pub fn refused_start(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    testkit::refused_start(BIN, dir, args)
}
