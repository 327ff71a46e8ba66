//! The change log (write-ahead log) of a dht node: every change the node acknowledges, one
//! entry each, in segment files under `<data_dir>/wal/` ([`crate::layout::wal_dir`]), so that
//! start-up can load the last dump of each channel and replay what came after it.
//!
//! - [`format`](mod@format): the bytes (also in `docs/formats.md`, "dht change log"): a
//!   segment header, then entries, each with a CRC32 over its header and body and a sequence
//!   number (its *position*) one above the entry before it, across segments.
//! - [`writer`]: [`LogWriter`], which encodes changes into a group buffer, writes each group in
//!   one write, starts a new segment at a size limit, and names what to fsync
//!   ([`SyncRequest`]) for a sync thread (`node_core::server::durability::Syncer`).
//! - [`reader`]: [`LogReader`], which reads the log in order from a position, checking every
//!   CRC, sequence number and body, and stops at a torn tail ([`LogEnd`], cut with
//!   [`LogEnd::cut_torn_tail`]) or refuses damage in the middle, a missing segment or a gap
//!   ([`LogError`]).
//! - [`segment`]: the segment files of a directory and reading one of them.
//! - [`covered`] and [`jump_base`]: the two small files beside the segments, what the last
//!   complete dump cycle covers and the dumps a sequence jump was begun over.
//! - [`tail`]: telling a torn tail from damage, cutting a torn tail, and giving up the log
//!   from a damaged place on when an operator asks ([`discard_from`]).
//!
//! A position `P` means "every entry up to sequence number `P`": a dump covering `P`
//! ([`crate::dump::format::DumpHeader::log_position`]) holds their effect, so a replay applies
//! only the entries after it. Sequence numbers start at 1; 0 covers nothing.
//!
//! Every entry is idempotent on its own: a Put or PutBatch sets values, a Remove or RemoveKeys
//! deletes keys, a RemoveChannel drops a channel (an Update is logged as the Put or Remove it
//! made; a redistribution as the records it stored and the keys it removed). So replaying,
//! on top of a dump, entries the dump already holds changes nothing, and a dump taken while
//! writes go on may cover a position taken before it started.
//!
//! Start-up (the dht node's `persist::replay` and `open_log` do this):
//!
//! ```no_run
//! # use dht_persist::wal::{LogReader, LogWriter, LogOptions, ReadFrom, LoggedChange};
//! # fn apply(_: u64, _: &LoggedChange<'_>) {}
//! # fn main() -> Result<(), dht_persist::wal::LogError> {
//! # let (wal_dir, lowest_dump_position, highest_dump_position) =
//! #     (std::path::Path::new("data/wal"), 0u64, 0u64);
//! let mut reader = LogReader::open(wal_dir, ReadFrom::After(lowest_dump_position))?;
//! while let Some(entry) = reader.next_entry()? {
//!     apply(entry.seq, &entry.change); // skipping what the channel's own dump covers
//! }
//! let mut end = reader.into_end().expect("the reader reached the end");
//! if let Some(torn) = end.cut_torn_tail()? {
//!     eprintln!("cut {torn}");
//! }
//! let next_seq = end.last_seq.max(highest_dump_position) + 1;
//! let mut log = LogWriter::create(&end, next_seq, LogOptions::default())?;
//! # Ok(()) }
//! ```

pub mod covered;
pub mod format;
pub mod jump_base;
pub mod reader;
pub mod segment;
pub mod tail;
pub mod writer;

#[cfg(test)]
mod tests;

pub use covered::{read_covered, write_covered};
pub use format::{Change, EncodeError, EntryKind, EntryProblem, LoggedChange};
pub use jump_base::{read_jump_base, write_jump_base, JumpBase};
pub use reader::{
    Damage, KindCounts, LogEnd, LogEntry, LogError, LogReader, ReadFrom, SegmentSummary,
};
pub use tail::{cut_zeros_ahead, discard_from, Discarded, TornTail};
pub use writer::{
    AppendError, LogOptions, LogWriter, SyncRequest, WriteError, Written, UNCACHE_STEP_BYTES,
    ZERO_AHEAD_BYTES, ZERO_TOP_UP_BYTES,
};
