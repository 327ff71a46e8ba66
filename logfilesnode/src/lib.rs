//! logfilesnode: the logfiles node, a time-bucketed on-disk append store.
//!
//! - [`storage`]: bucket files (layout, formats, writing, scanning, checking), no sockets.
//! - [`engine`]: channels, open writers, group commit, crash recovery.
//! - [`requests`]: one module per request, translating protocol to engine calls.
//! - [`service`]: the node as a server `Service` (timers, group-commit acknowledgements).

pub mod check_cli;
pub mod config;
pub mod engine;
pub mod requests;
pub mod service;
pub mod storage;

pub use node_core::protocol::logfiles::valid_channel_name;
