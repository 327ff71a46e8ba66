//! dhtnode: the dht node, an in-memory key/value store whose keys are `u64` and whose nodes each
//! own a range of the hash space.
//!
//! The shape every node kind shares (docs/architecture.md):
//! - [`engine`]: channels, records, the hash range, limits and every write rule, Listen queues
//!   (no sockets, no files).
//! - [`requests`]: one module per request type: decode, call the engine, reply; the channel
//!   requests every kind shares are node-core's.
//! - [`service`]: the node as a server service: timers (dumps, redistribution), wake-ups of
//!   Listen and RedistCommit streams, start and shutdown.
//! - [`durability`]: when replies to changes leave: the change log's group written before
//!   any reply, fsynced by `dht.durability` (group commit under "always").
//! - `stats`: the counters for GetStats, stats.log and `/metrics`.
//! - [`persist`]: the engine as the persistence crate [`dht_persist`] sees it (dump files, their
//!   writer and the node's dump scheduler, start-up loading and `.tcm` import all live there).
//! - [`redistribution`]: moving records to other nodes when the node's range changes.
//! - [`catch_up`]: a replica syncing from the other members of its set before it answers reads.
//! - [`peer`]: connections to other dht nodes (redistribution targets, catch-up peers).
//! - [`state`]: the state file that keeps the node's range (and an unfinished redistribution).
//! - [`config`]: the config file.

pub mod catch_up;
pub mod config;
pub mod durability;
pub mod engine;
pub mod peer;
pub mod persist;
pub mod redistribution;
pub mod removed_dumps;
pub mod requests;
pub mod service;
pub mod state;
mod stats;
