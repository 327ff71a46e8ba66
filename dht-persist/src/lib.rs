//! dht-persist: what the dht keeps on disk, and the code that writes and reads it. Used by
//! `dhtnode` (dumps while serving, loading at start) and by `dhtdump`/`dumptool` (the sidecar's
//! dumps, inspecting and converting files); it depends on node-core's protocol alone (batches,
//! channel names, hash ranges), never on the server or on the engine, which it sees only
//! through the traits below.
//!
//! - [`layout`]: the data directory: every file name in it and what it is.
//! - [`dump`]: channel dumps: the file [`format`](dump::format), the background
//!   [`writer`](dump::writer) thread ([`DumpThread`]) and the node's
//!   [`scheduler`](dump::scheduler) ([`DumpScheduler`]: periodic, commit and shutdown dumps).
//! - [`loader`]: start-up: every channel from its dump, falling back to the backup, importing
//!   `.tcm` files, applying the out-of-range policy.
//! - [`tcm`]: the reference system's `.tcm` dump format (import only).
//! - [`wal`]: the change log: every acknowledged change, one entry each, in segment files under
//!   `wal/`; its writer, and the reader that replays it after the dumps (each dump records the
//!   log position it covers).
//!
//! The engine's side: a channel is a [`ShardSource`] the writer reads shard by shard, the
//! engine a [`DumpSource`] of channels, and loading fills a [`LoadTarget`]; `dhtnode::persist`
//! implements the three.
//!
//! Anything else the dht writes to its data directory belongs here too, as a module beside
//! [`dump`] and [`wal`] that names its files in [`layout`].

pub mod dump;
pub mod layout;
pub mod loader;
pub mod tcm;
pub mod wal;

pub use dump::format::{
    read_dump, DumpCompression, DumpError, DumpFileWriter, DumpHeader, DumpReader, DumpSummary,
};
pub use dump::scheduler::{DumpScheduler, DumpSource};
pub use dump::writer::{DumpAction, DumpOutcome, DumpThread, ShardSource, WriterMode};
pub use loader::{
    load_data_dir, ChannelLoadReport, LoadError, LoadOptions, LoadReport, LoadSource, LoadTarget,
    LogGapPolicy, OutOfRangePolicy,
};
pub use tcm::{read_tcm, TcmError, TcmReport};
