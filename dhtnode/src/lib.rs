//! dhtnode: the dht node, an in-memory key/value store whose keys are `u64` and whose nodes each
//! own a range of the hash space.
//!
//! - [`engine`]: channels, records, limits, Listen queues (no sockets).
//! - `dump`: dump files (format, writer thread, start-up loading, reference `.tcm` import).
//! - [`config`]: the config file.

pub mod config;
pub mod dump;
pub mod engine;
pub mod requests;
pub mod service;
