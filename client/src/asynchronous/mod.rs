//! The async client, for tokio services (cargo feature `async`, on by default): the cluster
//! clients' operations as `async fn`s and [`futures_core::Stream`]s —
//! [`AsyncDhtClient`], [`AsyncLogClient`], [`AsyncQueueClient`], and [`AsyncClient`] for single
//! requests to one node.
//!
//! # How it is built
//!
//! Like redis-rs's multiplexed connection, many tasks share one connection per node, driven by
//! one I/O driver: here the blocking client's own I/O thread, so connecting, the handshake and
//! its authentication, framing, pipelining, the in-flight limit, timeouts, reconnecting with
//! backoff, node health (a node down fails at once with [`crate::ClientError::NodeDown`]) and TLS are
//! the same code for both clients, not a copy. A task's request takes the same slot and request
//! id as a blocking one; only its reply channel differs: a task awaits it, no thread blocks.
//! Each async cluster client wraps its blocking counterpart ([`AsyncDhtClient::from_blocking`],
//! [`AsyncDhtClient::blocking`]) and shares its state: routes and hash ranges, round-robin
//! order, the topology file it follows.
//!
//! What runs where (`docs/client.md` lists every operation):
//!
//! - **From the task** (no thread involved besides the I/O thread): dht `put`, `get`,
//!   `exists`, `remove`; logfiles `put`; queue `push`, `push_multi`, `pop` and the producer
//!   ([`AsyncProducer`]); any request of [`AsyncClient`] (`request`, `submit`, `stream`,
//!   `fan_out_partial`).
//! - **Polled by the task**: dht `listen` ([`AsyncListener`]) and queue `consume`
//!   ([`AsyncConsumer`]): the blocking client's [`crate::dht::Listener`] and
//!   [`crate::queue::Consumer`] over a stream set whose queue the task polls, so these
//!   long-lived streams hold no thread however many are open.
//! - **On tokio's blocking pool**, by the blocking client's code: connecting, whatever needs
//!   the dht routes refreshed or a wait first (a WrongNode, a node that reconnected since its
//!   range was read, a read or remove while records are moving between nodes), dht `update`
//!   and `put_batch`, logfiles `put_batch`, topology reloads, and the fan-outs (channels,
//!   sizes, removing a channel, subscribing).
//! - **On a thread per stream, while it runs**, by the blocking client's code: the merged
//!   cluster reads (dht `get_all`, logfiles `get_range` and `get_all`, and their `_partial`
//!   forms), handed to the task in batches ([`ThreadStream`]).
//!
//! The runtime must have its time driver on (`enable_time` or `enable_all`): request timeouts
//! are tokio timers.
//!
//! ```no_run
//! # async fn service() -> Result<(), client::ClientError> {
//! use client::asynchronous::AsyncDhtClient;
//! let nodes = ["127.0.0.1:10000".parse().unwrap()];
//! let dht = AsyncDhtClient::connect(&nodes, client::ClientOptions::default()).await?;
//! dht.put("profiles", 42, b"ada").await?;
//! assert_eq!(dht.get("profiles", 42).await?, Some(b"ada".to_vec()));
//! # Ok(()) }
//! ```

/// The constructors of an async cluster client (`connect`, `from_topology`, `open_topology`):
/// the blocking client's own, run on tokio's blocking pool (a connect may wait for its timeout).
macro_rules! cluster_constructors {
    ($async_client:ident, $blocking_client:ident) => {
        #[doc = concat!("[`", stringify!($blocking_client), "::connect`].")]
        pub async fn connect(
            nodes: &[std::net::SocketAddr],
            options: crate::ClientOptions,
        ) -> Result<$async_client, crate::ClientError> {
            let nodes = nodes.to_vec();
            let inner =
                super::blocking(move || $blocking_client::connect(&nodes, options)).await?;
            Ok($async_client::from_blocking(std::sync::Arc::new(inner)))
        }

        #[doc = concat!("[`", stringify!($blocking_client), "::from_topology`].")]
        pub async fn from_topology(
            topology: &crate::Topology,
            options: crate::ClientOptions,
        ) -> Result<$async_client, crate::ClientError> {
            let topology = topology.clone();
            let inner =
                super::blocking(move || $blocking_client::from_topology(&topology, options))
                    .await?;
            Ok($async_client::from_blocking(std::sync::Arc::new(inner)))
        }

        #[doc = concat!(
            "[`", stringify!($blocking_client), "::open_topology`]: follows the file as the ",
            "blocking client does."
        )]
        pub async fn open_topology(
            path: &std::path::Path,
            options: crate::ClientOptions,
        ) -> Result<$async_client, crate::ClientError> {
            let path = path.to_path_buf();
            let inner =
                super::blocking(move || $blocking_client::open_topology(&path, options)).await?;
            Ok($async_client::from_blocking(inner))
        }
    };
}

/// `reload_topology` and `apply_topology` of an async cluster client: the blocking client's
/// own (they connect to added nodes), on tokio's blocking pool.
macro_rules! topology_changes {
    ($field:ident, $blocking_client:ident) => {
        #[doc = concat!("[`", stringify!($blocking_client), "::reload_topology`].")]
        pub async fn reload_topology(&self) -> Result<crate::NodeChanges, crate::ClientError> {
            let inner = self.$field.clone();
            super::blocking(move || inner.reload_topology()).await
        }

        #[doc = concat!("[`", stringify!($blocking_client), "::apply_topology`].")]
        pub async fn apply_topology(
            &self,
            topology: &crate::Topology,
        ) -> Result<crate::NodeChanges, crate::ClientError> {
            let (inner, topology) = (self.$field.clone(), topology.clone());
            super::blocking(move || inner.apply_topology(&topology)).await
        }
    };
}

mod bridge;
mod dht;
mod logfiles;
mod queue;
mod reopen;
mod transport;

pub use bridge::{ThreadStream, MAX_STREAM_THREADS};
pub use dht::{AsyncDhtClient, AsyncListener};
pub use logfiles::AsyncLogClient;
pub use queue::{AsyncConsumer, AsyncProducer, AsyncQueueClient};
pub use transport::{AsyncClient, AsyncPending, ReplyStream};

pub(crate) use bridge::blocking;
