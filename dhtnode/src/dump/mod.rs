//! Channel dumps: how the dht node persists its in-memory channels.
//!
//! On-disk layout of the data directory (`data_dir` in the config):
//!
//! | path | what |
//! |---|---|
//! | `<data_dir>/<ch>.dump` | the latest complete dump of channel `<ch>` ([`format`], version 1) |
//! | `<data_dir>/<ch>.dump.backup` | the dump before it (kept when a new dump is renamed into place) |
//! | `<data_dir>/<ch>.dump.tmp` | a dump being written; a leftover after a crash is never loaded and is removed at start-up (logged) |
//! | `<data_dir>/<ch>.tcm` | a dump in the reference system's format ([`tcm`]); imported when `<ch>` has no `.dump`/`.dump.backup` |
//! | `<data_dir>/removed/<ch>.<unix_s>.dump` (`.dump.backup`, `.tcm`) | files of a channel removed by RemoveChannel: kept, never loaded |
//! | `<data_dir>/corrupt/<ch>.<unix_s>.dump` (`.dump.backup`) | files that failed their checks at start-up: kept for inspection, never loaded |
//!
//! Channel names are `[A-Za-z0-9_-]{1,100}` and contain no `.`, so every file name parses back
//! to one channel.
//!
//! Writing ([`writer::DumpThread`], a background thread): `<ch>.dump.tmp` is written, fsynced,
//! `<ch>.dump` is renamed to `<ch>.dump.backup`, `<ch>.dump.tmp` to `<ch>.dump`, and the
//! directory is fsynced. A crash at any point leaves `<ch>.dump` or `<ch>.dump.backup` complete.
//!
//! Loading ([`loader::load_data_dir`], at start-up): every channel from its `.dump`, falling back
//! to `.dump.backup` (with an ERROR line) when the dump fails its checks; records outside the
//! node's hash range follow the [`OutOfRangePolicy`].

pub mod format;
pub mod loader;
pub mod tcm;
pub mod writer;

pub use format::{read_dump, DumpError, DumpFileWriter, DumpHeader, DumpReader, DumpSummary};
pub use loader::{
    load_data_dir, ChannelLoadReport, LoadError, LoadOptions, LoadReport, LoadSource, LoadTarget,
    OutOfRangePolicy,
};
pub use tcm::{read_tcm, TcmError, TcmReport};
pub use writer::{DumpAction, DumpOutcome, DumpThread};
