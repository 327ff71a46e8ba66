//! The swarm client: the only component that knows where data lives.
//!
//! This crate owns the client side of the wire protocol (`node_core::protocol` does the bytes):
//! the topology file ([`topology`]), connecting with the handshake and authentication,
//! one background I/O thread multiplexing every caller's requests over one connection per node,
//! reconnects with backoff, timeouts, per-connection limits, and the request API:
//!
//! - blocking: [`Client::request`] → [`Reply`];
//! - pipelined: [`Client::submit`] → [`Pending`], then [`Pending::wait`];
//! - streaming: [`Client::stream`] → [`Stream`], an iterator of [`StreamEvent`]s with
//!   credit-based flow control; [`Client::stream_set`] → [`StreamSet`], several streams read
//!   through one queue;
//! - the requests every node answers: [`Client::get_version`], [`Client::get_num_connections`],
//!   [`Client::get_stats`].
//!
//! On top of that transport, [`dht`] is the dht cluster's client: [`DhtClient`] routes each key
//! to the node whose hash range owns it, fans whole-channel requests out to every node and
//! merges the answers.
//!
//! Failures are [`ClientError`]s whose messages name the node and the reason.
//!
//! ```no_run
//! use client::{Client, ClientOptions};
//! use node_core::protocol::NodeKind;
//! let nodes = ["127.0.0.1:10000".parse().unwrap()];
//! let client = Client::connect(&nodes, Some(NodeKind::Dht), ClientOptions::default())?;
//! let version = client.get_version(0)?;
//! println!("{} {}", version.kind, version.software_version);
//! # Ok::<(), client::ClientError>(())
//! ```

mod backoff;
mod client;
mod common;
pub mod dht;
mod error;
mod follow;
mod handshake;
mod io_thread;
mod limit;
pub mod logfiles;
mod node_set;
mod options;
mod partial;
pub mod queue;
mod reply;
mod round_robin;
mod routing;
mod session;
mod shared;
mod stream_set;
pub mod topology;

pub use crate::client::Client;
pub use common::VersionInfo;
pub use dht::DhtClient;
pub use error::ClientError;
pub use logfiles::LogClient;
pub use node_set::{NodeChanges, NodeState, NodeStatus};
pub use options::ClientOptions;
pub use partial::Partial;
pub use reply::{Pending, Reply, Stream, StreamEvent};
pub use stream_set::{StreamSet, StreamTag};
pub use topology::{KeyFileError, Topology, TopologyError};

/// Re-exported so users need not depend on node-core for the types in this API.
pub use node_core::auth::Key;
pub use node_core::protocol::{NodeKind, RequestCode, Status};
