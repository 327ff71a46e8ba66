//! logfilesnode: the logfiles node, a time-bucketed on-disk append store.
//!
//! The shape every node kind shares (docs/architecture.md):
//! - [`storage`]: bucket files (layout, formats, writing, scanning, checking), no sockets.
//! - [`engine`]: channels, open writers, the write rules, group commit, crash recovery.
//! - [`requests`]: one module per request: decode, call the engine, reply; the channel
//!   requests every kind shares are node-core's.
//! - [`service`]: the node as a server `Service`: flush and fsync timers, group-commit
//!   acknowledgements, start and shutdown.
//! - `stats`: the counters for GetStats, stats.log and `/metrics`.
//!
//! `logfiles_check`, the offline checker, is the crate `logfiles-check`, over [`storage`].

pub mod config;
pub mod engine;
pub mod requests;
pub mod service;
mod stats;
pub mod storage;

pub use node_core::protocol::logfiles::valid_channel_name;
