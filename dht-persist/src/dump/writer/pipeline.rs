//! The full-speed dump (the node's shutdown dump, [`WriterMode::Full`](super::WriterMode)): two
//! threads instead of one. The dump thread reads the shards and lays out their entries; a second
//! thread checks, compresses (or not) and writes the blocks, in the order they were read. Reading
//! scattered values waits on memory and writing copies every byte into the page cache (plus LZ4
//! when on): each is about half of a one-thread dump's time, so on two cores the dump takes about
//! half as long (docs/benchmarks.md, "latency while dumping").
//!
//! Memory stays bounded: at most [`PIPELINE_DEPTH`] chunks of about [`PIPELINE_CHUNK_BYTES`] wait
//! between the threads, and their buffers come back to be filled again.

use crate::dump::entry::DumpEntry;
use crate::dump::format::DumpFileWriter;
use node_core::protocol::batch::{MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use super::ShardSource;

/// Uncompressed bytes per block: larger than a paced dump's (no quantum to respect), so fewer
/// hand-overs between the threads.
pub const PIPELINE_CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks that may wait for the writing thread.
pub const PIPELINE_DEPTH: usize = 4;

/// How a pipelined dump ended.
pub enum Piped {
    /// Every entry was written (the caller finishes the file).
    Done,
    /// The cancel token was set: nothing more was read.
    Cancelled,
    /// Writing failed: the error.
    Failed(io::Error),
}

/// Entries collected for the next block, and the way to the writing thread.
struct Collector {
    raw: Vec<u8>,
    count: u32,
    full: mpsc::SyncSender<(Vec<u8>, u32)>,
    empty: mpsc::Receiver<Vec<u8>>,
    /// The writing thread stopped (it failed): collect nothing more.
    stopped: bool,
}

impl Collector {
    fn add(&mut self, key: u64, entry: DumpEntry<'_>) {
        if self.raw.len() + RECORD_OVERHEAD + entry.encoded_len() > MAX_BATCH_UNCOMPRESSED_BYTES {
            self.hand_over();
        }
        if !self.stopped {
            entry.append_to(&mut self.raw, key);
            self.count += 1;
        }
    }

    /// Sends the collected entries to the writing thread and takes a buffer it is done with
    /// (or a new one while none has come back yet).
    fn hand_over(&mut self) {
        if self.count == 0 || self.stopped {
            return;
        }
        let next = self
            .empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIPELINE_CHUNK_BYTES + 4096));
        let raw = std::mem::replace(&mut self.raw, next);
        if self.full.send((raw, self.count)).is_err() {
            self.stopped = true;
        }
        self.count = 0;
    }
}

/// Writes every record of `source`, then its tombstones, into `writer` with a second thread
/// doing the writing (see the module doc). Counts each shard read in `progress`.
pub fn dump_pipelined<W: Write + Send>(
    writer: &mut DumpFileWriter<W>,
    source: &dyn ShardSource,
    cancel: &AtomicBool,
    progress: &AtomicU64,
) -> Piped {
    let (full, full_rx) = mpsc::sync_channel::<(Vec<u8>, u32)>(PIPELINE_DEPTH);
    let (empty_tx, empty) = mpsc::sync_channel::<Vec<u8>>(PIPELINE_DEPTH + 2);
    std::thread::scope(|scope| {
        let written = std::thread::Builder::new()
            .name("dht-dump-write".into())
            .spawn_scoped(scope, move || -> io::Result<()> {
                for (mut raw, count) in full_rx {
                    writer.write_chunk(&raw, count)?;
                    raw.clear();
                    let _ = empty_tx.try_send(raw);
                }
                Ok(())
            });
        let written = match written {
            Ok(handle) => handle,
            Err(err) => return Piped::Failed(err),
        };
        let mut collector = Collector {
            raw: Vec::with_capacity(PIPELINE_CHUNK_BYTES + 4096),
            count: 0,
            full,
            empty,
            stopped: false,
        };
        let cancelled = collect(&mut collector, source, cancel, progress);
        drop(collector); // Ends the writing thread's loop.
        let result = written
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the dump's writing thread panicked")));
        match (result, cancelled) {
            (Err(err), _) => Piped::Failed(err),
            (Ok(()), true) => Piped::Cancelled,
            (Ok(()), false) => Piped::Done,
        }
    })
}

/// The reading side: every shard, then the tombstones. Returns whether it was cancelled.
fn collect(
    collector: &mut Collector,
    source: &dyn ShardSource,
    cancel: &AtomicBool,
    progress: &AtomicU64,
) -> bool {
    for index in 0..source.shard_count() {
        if cancel.load(Ordering::Relaxed) {
            return true;
        }
        if collector.stopped {
            return false;
        }
        progress.fetch_add(1, Ordering::Relaxed);
        source.for_each_in_shard(index, &mut |key, version, value| {
            collector.add(key, DumpEntry::Record { version, value });
        });
        if collector.raw.len() >= PIPELINE_CHUNK_BYTES {
            collector.hand_over();
        }
    }
    source.for_each_tombstone(&mut |key, version, stored_unix_s| {
        let tombstone = DumpEntry::Tombstone {
            version,
            stored_unix_s,
        };
        collector.add(key, tombstone);
    });
    collector.hand_over();
    false
}
