//! queuenode: The queue node: fixed-size ring-buffer queues with subscribers. It answers Push,
//! Pop, GetChannels, GetChannelSize, GetSize and RemoveChannel (docs/protocol.md §8); streaming
//! requests and subscribers come next.

pub mod config;
pub mod engine;
mod requests;
pub mod service;
