//! Channel dumps: how the dht persists its in-memory channels, one file per channel (the
//! files are listed in [`crate::layout`]).
//!
//! - [`format`](mod@format): the dump file format (versions 1 and 2): header, blocks (LZ4 or
//!   not), trailer, every part checksummed; a streaming reader that checks everything.
//! - [`writer`]: [`DumpThread`](writer::DumpThread), the background thread that writes dump
//!   files: `<ch>.dump.tmp` is written and fsynced, `<ch>.dump` is renamed to
//!   `<ch>.dump.backup`, `<ch>.dump.tmp` to `<ch>.dump`, and the directory is fsynced. A crash at
//!   any point leaves `<ch>.dump` or `<ch>.dump.backup` complete. The node hands it whole
//!   channels; dhtdump hands it chunks of records streamed from a node.
//! - [`scheduler`]: [`DumpScheduler`](scheduler::DumpScheduler), the node's side: when each
//!   channel is dumped (every `dump_period_s`, for a RedistCommit, at shutdown) and what the
//!   outcomes were.

pub mod entry;
pub mod format;
pub mod scheduler;
pub mod writer;
