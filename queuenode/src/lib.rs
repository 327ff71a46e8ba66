//! queuenode: The queue node: fixed-size ring-buffer queues with subscribers, persisted in
//! memory-mapped ring files. It answers Push, PushMulti, Produce, Pop, Consume (with ConsumeAck),
//! Subscribe, GetChannels, GetChannelSize, GetSize and RemoveChannel (docs/protocol.md §8).
//!
//! The shape every node kind shares (docs/architecture.md):
//! - [`engine`]: the data and every rule and counter of it: rings, channels and subscribers,
//!   push and pop, consumers with their acks and redelivery, reference-file import; no sockets.
//! - `requests`: one module per request type: decode, check names, call the engine, reply.
//! - [`service`]: the node as a server service: start-up, wake-ups, the final sync.
//! - `stats`: the counters for GetStats, stats.log and `/metrics`.
//! - [`config`]: the config file.

pub mod config;
pub mod engine;
mod requests;
pub mod service;
mod stats;
