//! dhtnode's process tests use the shared harness in `testkit`, pointed at this crate's binary.

#![allow(dead_code)]

pub use testkit::*;

/// This crate's node binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_dhtnode");

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
