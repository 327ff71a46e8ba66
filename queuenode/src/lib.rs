//! queuenode: The queue node: fixed-size ring-buffer queues with subscribers, persisted in
//! memory-mapped ring files. It answers Push, PushMulti, Produce, Pop, Consume (with ConsumeAck),
//! Subscribe, GetChannels, GetChannelSize, GetSize and RemoveChannel (docs/protocol.md §8).
//!
//! - [`engine`]: rings, the ring registry, channels and subscribers, reference-file import;
//! - [`service`]: the node as a server service (start-up, shared write path, stats);
//! - `requests`: one module per request type; `consumers`: the running Consume streams.

pub mod config;
pub(crate) mod consumers;
pub mod engine;
mod requests;
pub mod service;
