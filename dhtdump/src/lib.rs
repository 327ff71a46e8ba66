//! dhtdump: the backup sidecar of a dht node, and dumptool, the dump file tool.
//!
//! dhtdump connects to one dht node and periodically writes every channel to a dump file in the
//! node's own format (`docs/formats.md`, "dht dump file"), so a node started on dhtdump's
//! directory loads every record. Operations are described in `docs/operations.md`. The files
//! are written and read by the dht's persistence crate, `dht-persist` (the node's own writer
//! thread and reader); dhtdump talks to its node as a client and does not link the node.
//!
//! - [`config`]: the config file and command-line overrides.
//! - [`cycle`]: the [`Sidecar`](cycle::Sidecar) (connection, writer thread), its dump cycle and
//!   the loop around it.
//! - [`stats`]: counters and the stats.log line.
//! - [`signals`]: SIGTERM/SIGINT (stop) and SIGHUP (reopen logs).
//! - [`lines`]: the `hexkey:base64value` text form of `dumptool export`/`import`.
//! - [`tool`]: the `dumptool` subcommands on dump files.
//! - [`log_tool`]: the `dumptool` subcommands on a node's change log (`log-info`, `log-check`).
//! - [`util`]: timestamps, interruptible sleeps, the random initial delay.

pub mod config;
pub mod cycle;
pub mod lines;
pub mod log_tool;
pub mod signals;
pub mod stats;
pub mod tool;
pub mod util;
