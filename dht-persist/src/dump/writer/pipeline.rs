//! The full-speed dump (the node's shutdown dump, [`WriterMode::Full`](super::WriterMode)): three
//! threads instead of one. Two threads read the shards (each takes the next unread shard until
//! none is left) and lay out their entries; a third checks, compresses (or not) and writes the
//! blocks in the order they arrive. Reading scattered values waits on memory and is the larger
//! part (a profile of a 10M-record shutdown dump: the reading thread busy 2.2 times as long as
//! the writing one), so two readers keep the writer fed and the dump uses both cores
//! (docs/benchmarks.md, "latency while dumping"). Blocks of the two readers interleave in the
//! file: a dump's records are keyed and each appears once, so their order does not matter to the
//! loader; the tombstones are read after every shard, by one thread, and written last.
//!
//! Memory stays bounded: at most [`PIPELINE_DEPTH`] chunks of about [`PIPELINE_CHUNK_BYTES`] wait
//! for the writing thread, each reader fills one more, and written buffers come back to a pool
//! of at most [`PIPELINE_DEPTH`] + 2 to be filled again.

use crate::dump::entry::DumpEntry;
use crate::dump::format::DumpFileWriter;
use node_core::protocol::batch::{MAX_BATCH_UNCOMPRESSED_BYTES, RECORD_OVERHEAD};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

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

/// Written buffers waiting to be filled again (shared by the readers).
type BufferPool = Mutex<Vec<Vec<u8>>>;

/// Buffers the pool keeps; more are dropped.
const POOL_LIMIT: usize = PIPELINE_DEPTH + 2;

/// Entries collected for the next block by one reading thread, and the way to the writing
/// thread.
struct Collector<'a> {
    raw: Vec<u8>,
    count: u32,
    full: mpsc::SyncSender<(Vec<u8>, u32)>,
    pool: &'a BufferPool,
    /// The writing thread stopped (it failed): collect nothing more.
    stopped: bool,
}

impl<'a> Collector<'a> {
    fn new(full: mpsc::SyncSender<(Vec<u8>, u32)>, pool: &'a BufferPool) -> Collector<'a> {
        Collector {
            raw: take_buffer(pool),
            count: 0,
            full,
            pool,
            stopped: false,
        }
    }

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
        let raw = std::mem::replace(&mut self.raw, take_buffer(self.pool));
        if self.full.send((raw, self.count)).is_err() {
            self.stopped = true;
        }
        self.count = 0;
    }
}

/// A written buffer from the pool, or a new one.
fn take_buffer(pool: &BufferPool) -> Vec<u8> {
    let recycled = pool.lock().ok().and_then(|mut buffers| buffers.pop());
    recycled.unwrap_or_else(|| Vec::with_capacity(PIPELINE_CHUNK_BYTES + 4096))
}

/// Gives a written buffer back to the pool (dropped when the pool is full).
fn give_back(pool: &BufferPool, mut raw: Vec<u8>) {
    raw.clear();
    if let Ok(mut buffers) = pool.lock() {
        if buffers.len() < POOL_LIMIT {
            buffers.push(raw);
        }
    }
}

/// Writes every record of `source`, then its tombstones, into `writer` with two reading threads
/// and a writing one (see the module doc). Counts each shard read in `progress`.
pub fn dump_pipelined<W: Write + Send>(
    writer: &mut DumpFileWriter<W>,
    source: &dyn ShardSource,
    cancel: &AtomicBool,
    progress: &AtomicU64,
) -> Piped {
    let (full, full_rx) = mpsc::sync_channel::<(Vec<u8>, u32)>(PIPELINE_DEPTH);
    let pool: BufferPool = Mutex::new(Vec::with_capacity(POOL_LIMIT));
    let next_shard = AtomicUsize::new(0);
    let shards = Shards {
        source,
        next: &next_shard,
        cancel,
        progress,
    };
    std::thread::scope(|scope| {
        let pool = &pool;
        let written = std::thread::Builder::new()
            .name("dht-dump-write".into())
            .spawn_scoped(scope, move || -> io::Result<()> {
                for (raw, count) in full_rx {
                    writer.write_chunk(&raw, count)?;
                    give_back(pool, raw);
                }
                Ok(())
            });
        let written = match written {
            Ok(handle) => handle,
            Err(err) => return Piped::Failed(err),
        };
        let shards = &shards;
        let second_full = full.clone();
        // Without a second reader (the spawn failed) the first reads every shard alone.
        let second = std::thread::Builder::new()
            .name("dht-dump-read".into())
            .spawn_scoped(scope, move || {
                let mut collector = Collector::new(second_full, pool);
                let cancelled = shards.read_all(&mut collector);
                collector.hand_over();
                cancelled
            })
            .ok();
        let mut collector = Collector::new(full, pool);
        let mut cancelled = shards.read_all(&mut collector);
        if let Some(second) = second {
            // A reader that panicked read only part of its shards: treat it as cancelled, so
            // the incomplete dump is not kept.
            cancelled |= second.join().unwrap_or(true);
        }
        if !cancelled && !collector.stopped {
            read_tombstones(&mut collector, source);
        }
        collector.hand_over();
        drop(collector); // Ends the writing thread's loop (with the second reader's sender).
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

/// The shards of one dump, handed out one at a time to the reading threads.
struct Shards<'a> {
    source: &'a dyn ShardSource,
    next: &'a AtomicUsize,
    cancel: &'a AtomicBool,
    progress: &'a AtomicU64,
}

impl Shards<'_> {
    /// Reads the next unread shard until none is left. Returns whether the dump was cancelled.
    fn read_all(&self, collector: &mut Collector<'_>) -> bool {
        let shard_count = self.source.shard_count();
        // Bounded: each turn takes a shard index nobody took, and there are `shard_count`.
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return true;
            }
            if collector.stopped {
                return false;
            }
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= shard_count {
                return false;
            }
            self.progress.fetch_add(1, Ordering::Relaxed);
            self.source
                .for_each_in_shard(index, &mut |key, version, value| {
                    collector.add(key, DumpEntry::Record { version, value });
                });
            if collector.raw.len() >= PIPELINE_CHUNK_BYTES {
                collector.hand_over();
            }
        }
    }
}

/// The channel's tombstones, after every record.
fn read_tombstones(collector: &mut Collector<'_>, source: &dyn ShardSource) {
    source.for_each_tombstone(&mut |key, version, stored_unix_s| {
        let tombstone = DumpEntry::Tombstone {
            version,
            stored_unix_s,
        };
        collector.add(key, tombstone);
    });
}
