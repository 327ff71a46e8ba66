//! A resumable walk over a channel's keys, shared by GetAll and Mirror's refresh.
//!
//! Order: shard by shard, ascending keys within a shard (see `engine::channel`). That order is
//! total and does not depend on the map's state, so a walk can stop after any key and go on
//! after writes: records untouched during the walk are seen exactly once, records written or
//! removed during it may or may not be.
//!
//! Memory: between its turns a walk holds only a window of at most [`KEY_WINDOW`] keys of the
//! shard it is in (8 KiB), whatever the shard's size.

use crate::engine::SHARD_COUNT;
use crate::service::DhtNode;

/// Keys of a shard a walk holds at once (8 KiB). A shard holds about records / 4096 keys, so a
/// channel of 10 million records needs three windows per shard.
pub const KEY_WINDOW: usize = 1024;

/// Where a walk is.
#[derive(Debug, Default)]
pub(super) struct KeyWalk {
    /// The shard being walked.
    shard: usize,
    /// Its next keys, ascending (a window of at most KEY_WINDOW), as they were when loaded.
    window: Vec<u64>,
    position: usize,
    /// Keys of `shard` up to and including this one are done (`None`: none yet).
    after: Option<u64>,
    /// `window` holds the keys for (`shard`, `after`).
    loaded: bool,
    /// `window` holds the shard's last keys.
    shard_ends: bool,
}

impl KeyWalk {
    /// A walk from the start of the channel, or from just after `resume_after` (its shard, the
    /// keys above it).
    pub fn new(resume_after: Option<u64>) -> KeyWalk {
        KeyWalk {
            shard: resume_after.map_or(0, crate::engine::channel::shard_of),
            after: resume_after,
            ..KeyWalk::default()
        }
    }

    /// Makes [`current`](Self::current) the next key to look at, loading the next window or
    /// shard when the current one is used up. Returns false at the end of the channel (or when
    /// the channel is gone).
    pub fn advance(&mut self, node: &mut DhtNode, channel: &str) -> bool {
        loop {
            if self.loaded && self.position < self.window.len() {
                return true;
            }
            if self.loaded {
                if self.shard_ends {
                    self.shard += 1;
                    self.after = None;
                } else {
                    self.after = self.window.last().copied();
                }
                self.loaded = false;
            }
            if self.shard >= SHARD_COUNT {
                return false;
            }
            let Some(data) = node.engine.channel(channel) else {
                return false;
            };
            self.shard_ends = data.shard_key_window(
                self.shard,
                self.after,
                KEY_WINDOW,
                &mut node.key_scratch,
                &mut self.window,
            );
            self.position = 0;
            self.loaded = true;
        }
    }

    /// The key the walk is at (after [`advance`](Self::advance) returned true).
    pub fn current(&self) -> u64 {
        self.window[self.position]
    }

    /// Done with the current key.
    pub fn step(&mut self) {
        self.position += 1;
    }

    /// Bytes held between turns: the window, counted in full from the start (it is allocated
    /// on the first turn, and the budgets must see it when the request is admitted).
    pub fn held_bytes(&self) -> usize {
        self.window.capacity().max(KEY_WINDOW) * std::mem::size_of::<u64>()
    }
}
