//! queuenode's process tests use the shared harness in `testkit`, pointed at this crate's binary.

#![allow(dead_code)]

pub use testkit::*;

/// This crate's node binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_queuenode");
