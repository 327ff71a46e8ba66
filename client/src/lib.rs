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
//! to the node whose hash range owns it (to every live member of a replica set: [`replication`],
//! docs/replication.md), fans whole-channel requests out to every node and merges the answers; [`LogClient`] and [`queue::QueueClient`] do the same for logfiles and
//! queue clusters.
//!
//! For tokio services, [`asynchronous`] has the same clients as `async fn`s and streams, over
//! the same connections (cargo feature `async`, on by default).
//!
//! Failures are [`ClientError`]s whose messages name the node and the reason.
//!
//! # Nodes that are down
//!
//! Node failure is normal, and the clients serve through it:
//!
//! - **Starting.** The cluster clients start while nodes are down (even all of them); a plain
//!   [`Client`] does with [`ClientOptions::allow_down_nodes`]. A one-shot tool that wants one
//!   bound on everything after connecting (a dht client's range lookup at start and its
//!   request) sets [`ClientOptions::total_timeout_ms`]: the client still starts. A node's
//!   health is kept in one
//!   place and read without a request: [`Client::node_status`] (up, connecting, down since when
//!   and why, retired).
//! - **Failing fast.** Once a node is known to be down (its connection dropped and the reconnect
//!   failed, it could not be reached at start, or it stopped answering: a one-reply request to
//!   it timed out with nothing received from the node meanwhile, and so did the GetVersion
//!   probe the client sent after it, within `connect_timeout_ms`), every request to it fails at
//!   once with
//!   [`ClientError::NodeDown`], naming the node and the reason, without a connect attempt:
//!   microseconds, not a connect timeout. Requests to the other nodes are unaffected.
//! - **Coming back.** The client reconnects in the background (50 ms, then doubling up to 4 s
//!   between tries); when the node answers again, requests go to it again, with no restart. A
//!   dht node that comes back has its range read again before a key is routed to it.
//! - **dht keys of a down node.** They are routed by the node's last known range: the one it
//!   answered earlier in this process, else the one the topology file states for it
//!   (`{ addr = "...", range = "MIN:MAX" }`, see [`topology`]). A key no known range covers,
//!   while a single node of unknown range is down, fails with `NodeDown` for that node; with
//!   several, with [`ClientError::OwnerDown`] naming them.
//! - **Writes to any node** (logfiles puts, queue pushes) skip nodes that are down at once and go
//!   to the others.
//! - **Reads over every node.** A partial result never passes for a complete one. The
//!   complete-only methods (`get_size`, `get_channels`, `get_all`, `get_range`, `listen`,
//!   `consume`, `pop`'s "empty", ...) keep failing when a node cannot answer, with that node's
//!   error. Each has a `*_partial` counterpart that returns what the live nodes said together
//!   with the nodes that were missing and why: a [`Partial`] (`value`, `missing`), or for
//!   streams a `missing()` list ([`dht::GetAll::missing`], [`logfiles::LogRecords::missing`],
//!   [`dht::Listener::missing`], [`queue::Consumer::missing`]). Listeners and consumers take a
//!   node that comes back in again by themselves.
//!
//! # Changing the nodes
//!
//! A client's node indices are stable: nodes added get new indices, removed ones are retired
//! (requests to them fail with [`ClientError::NodeRetired`]) and their indices are never reused
//! ([`Client::add_node`], [`Client::retire_node`], [`Client::set_nodes`]). The cluster clients
//! opened with `open_topology` follow their topology file: when it changes they connect to the
//! nodes added and retire those removed, with no restart (`reload_topology` does it at once;
//! [`ClientOptions::topology_watch_ms`] sets how often the file is looked at).
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

#[cfg(feature = "async")]
pub mod asynchronous;
mod backoff;
mod client;
mod common;
pub mod dht;
mod error;
mod failover;
mod follow;
mod handshake;
mod io_thread;
mod limit;
pub mod logfiles;
mod node_set;
mod options;
mod partial;
mod probe;
pub mod queue;
pub mod replication;
mod reply;
mod round_robin;
mod routing;
mod session;
mod shared;
mod stream_set;
pub mod tls;
pub mod topology;

pub use crate::client::Client;
pub use common::VersionInfo;
pub use dht::DhtClient;
pub use error::ClientError;
pub use logfiles::LogClient;
pub use node_set::{NodeChanges, NodeState, NodeStatus};
pub use options::ClientOptions;
pub use partial::Partial;
pub use replication::{ReadFrom, WriteQuorum};
pub use reply::{Pending, Reply, Stream, StreamEvent};
pub use stream_set::{StreamSet, StreamTag};
pub use topology::{KeyFileError, Topology, TopologyError};

/// Re-exported so users need not depend on node-core for the types in this API.
pub use node_core::auth::Key;
pub use node_core::protocol::{NodeKind, RequestCode, Status};
