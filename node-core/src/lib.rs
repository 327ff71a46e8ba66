//! node-core: what the three swarm nodes (dht, logfiles, queue) and the client share.
//!
//! - [`protocol`]: the wire format (handshake, frames, status codes, LZ4 batches, and each
//!   kind's request bodies and typed request enum). Always built; the client depends on this
//!   alone.
//! - [`auth`]: credentials files and the HMAC challenge-response proof (client and node).
//! - [`data_dir`]: file names every data directory shares (the lock file), for crates that read
//!   data directories without the server parts (`dht-persist`).
//! - [`fold_hash`]: the fast hasher of client-chosen `u64` keys (dht records, request ids).
//! - [`page_cache`]: advice to the kernel about a file's cached pages (the dht's change log).
//! - With the `server` feature: [`server`] (the mio event loop, the `Service` trait a node
//!   implements, what its request handlers return, and the channel requests every kind shares),
//!   [`config`], [`daemon`] (start-up shared by the node binaries), [`data_lock`] (one process
//!   per data directory), [`heap_pages`] (whether the heap is in huge pages), [`log`], [`stats`], [`signals`], [`metrics`] (the Prometheus
//!   listener) and [`systemd`] (readiness and watchdog).
//! - With the `tls` feature (which `server` includes, and the client turns on): [`tls`], the
//!   transport in clear or through rustls that both sides drive, and loading certificates.

pub mod auth;
pub mod data_dir;
pub mod fold_hash;
pub mod page_cache;
pub mod protocol;

#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod daemon;
#[cfg(feature = "server")]
pub mod data_lock;
#[cfg(feature = "server")]
pub mod heap_pages;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod signals;
#[cfg(feature = "server")]
pub mod stats;
#[cfg(feature = "server")]
pub mod systemd;
#[cfg(feature = "tls")]
pub mod tls;
