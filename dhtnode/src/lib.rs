//! dhtnode: the dht node, an in-memory key/value store whose keys are `u64` and whose nodes each
//! own a range of the hash space.
//!
//! - [`engine`]: channels, records, limits, Listen queues (no sockets, no files).
//! - [`requests`]: one module per request type: decoding, checks, execution.
//! - [`service`]: the node as a server service (engine + handlers + dumps).
//! - [`persist`]: the engine as the persistence crate [`dht_persist`] sees it (dump files, their
//!   writer and scheduler, start-up loading and `.tcm` import all live there).
//! - [`redistribution`]: moving records to other nodes when the node's range changes.
//! - [`state`]: the state file that keeps the node's range (and an unfinished redistribution).
//! - [`config`]: the config file.

pub mod config;
pub mod engine;
pub mod persist;
pub mod redistribution;
pub mod requests;
pub mod service;
pub mod state;
