//! The bucket files open for writing: a bounded set, per channel and node-wide, with least
//! recently used eviction. Each holds a file descriptor and a write buffer, so the bounds are
//! what keep descriptors and memory finite whatever keys clients send.

use crate::storage::{BucketId, BucketWriter};
use std::collections::HashMap;

/// One bucket open for writing.
#[derive(Debug)]
pub struct OpenBucket {
    pub id: BucketId,
    pub writer: BucketWriter,
    /// Unique per writer opened by this engine: with a record number it names a record.
    pub serial: u64,
    /// Written to since its file was last handed to a group commit.
    pub dirty: bool,
    last_used: u64,
}

/// The open buckets of every channel.
#[derive(Debug)]
pub struct OpenWriters {
    by_channel: HashMap<String, Vec<OpenBucket>>,
    open_count: usize,
    max_open: usize,
    max_open_per_channel: usize,
    clock: u64,
}

impl OpenWriters {
    pub fn new(max_open: usize, max_open_per_channel: usize) -> OpenWriters {
        assert!(max_open >= 1 && (1..=max_open).contains(&max_open_per_channel));
        OpenWriters {
            by_channel: HashMap::new(),
            open_count: 0,
            max_open,
            max_open_per_channel,
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.open_count
    }

    pub fn is_empty(&self) -> bool {
        self.open_count == 0
    }

    /// The open bucket `id` of `channel`, marked as just used.
    pub fn get(&mut self, channel: &str, id: BucketId) -> Option<&mut OpenBucket> {
        self.clock += 1;
        let clock = self.clock;
        let bucket = self
            .by_channel
            .get_mut(channel)?
            .iter_mut()
            .find(|b| b.id == id)?;
        bucket.last_used = clock;
        Some(bucket)
    }

    /// The open bucket `id` of `channel`, without marking it used (a read looking at it).
    pub fn peek(&self, channel: &str, id: BucketId) -> Option<&OpenBucket> {
        self.by_channel.get(channel)?.iter().find(|b| b.id == id)
    }

    /// Makes room for one more bucket of `channel`: removes and returns the least recently used
    /// bucket of the channel when it has its maximum open, else the node-wide least recently
    /// used one when the node has. The caller flushes what it gets.
    pub fn make_room(&mut self, channel: &str) -> Option<OpenBucket> {
        let channel_full = self
            .by_channel
            .get(channel)
            .is_some_and(|open| open.len() >= self.max_open_per_channel);
        let victim_channel = if channel_full {
            channel.to_string()
        } else if self.open_count >= self.max_open {
            self.by_channel
                .iter()
                .filter_map(|(name, open)| Some((open.iter().map(|b| b.last_used).min()?, name)))
                .min()
                .map(|(_, name)| name.clone())?
        } else {
            return None;
        };
        let open = self.by_channel.get_mut(&victim_channel)?;
        let (index, _) = open.iter().enumerate().min_by_key(|(_, b)| b.last_used)?;
        let victim = open.swap_remove(index);
        if open.is_empty() {
            self.by_channel.remove(&victim_channel);
        }
        self.open_count -= 1;
        Some(victim)
    }

    /// Adds a bucket just opened. The caller made room first.
    pub fn insert(
        &mut self,
        channel: &str,
        id: BucketId,
        writer: BucketWriter,
        serial: u64,
    ) -> &mut OpenBucket {
        assert!(self.open_count < self.max_open, "make_room before insert");
        self.clock += 1;
        let open = self.by_channel.entry(channel.to_string()).or_default();
        assert!(open.len() < self.max_open_per_channel);
        assert!(open.iter().all(|b| b.id != id), "bucket opened twice");
        open.push(OpenBucket {
            id,
            writer,
            serial,
            dirty: false,
            last_used: self.clock,
        });
        self.open_count += 1;
        let last = open.len() - 1;
        &mut open[last]
    }

    /// Whether any open bucket was written since its last group commit.
    pub fn any_dirty(&self) -> bool {
        self.by_channel.values().flatten().any(|b| b.dirty)
    }

    /// Every open bucket, with its channel.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut OpenBucket)> {
        self.by_channel
            .iter_mut()
            .flat_map(|(name, open)| open.iter_mut().map(move |b| (name.as_str(), b)))
    }

    /// The open buckets of one channel.
    pub fn channel_mut(&mut self, channel: &str) -> impl Iterator<Item = &mut OpenBucket> {
        self.by_channel.get_mut(channel).into_iter().flatten()
    }

    /// Removes (and returns) every open bucket of `channel`.
    pub fn remove_channel(&mut self, channel: &str) -> Vec<OpenBucket> {
        let removed = self.by_channel.remove(channel).unwrap_or_default();
        self.open_count -= removed.len();
        removed
    }

    /// Removes every open bucket.
    pub fn drain(&mut self) -> Vec<OpenBucket> {
        self.open_count = 0;
        self.by_channel.drain().flat_map(|(_, open)| open).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(writers: &mut OpenWriters, dir: &std::path::Path, channel: &str, key: u64) {
        let id = BucketId::from_key(key);
        if writers.get(channel, id).is_some() {
            return;
        }
        drop(writers.make_room(channel));
        let path = id.path_in(&dir.join(channel));
        writers.insert(channel, id, BucketWriter::open(&path, 0).unwrap(), key);
    }

    #[test]
    fn per_channel_and_node_wide_bounds_hold_and_evict_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut writers = OpenWriters::new(3, 2);
        open(&mut writers, dir.path(), "a", 0);
        open(&mut writers, dir.path(), "a", 1 << 12);
        open(&mut writers, dir.path(), "a", 0); // touch bucket 0: bucket 1 is now the oldest
        open(&mut writers, dir.path(), "a", 2 << 12);
        assert_eq!(writers.len(), 2, "at most 2 per channel");
        assert!(writers.get("a", BucketId::from_key(0)).is_some());
        assert!(writers.get("a", BucketId::from_key(1 << 12)).is_none());

        open(&mut writers, dir.path(), "b", 0);
        assert_eq!(writers.len(), 3);
        open(&mut writers, dir.path(), "c", 0);
        assert_eq!(writers.len(), 3, "at most 3 node-wide");
        // The node-wide oldest was a's bucket 2 (a's bucket 0 was touched by the get above).
        assert!(writers.get("a", BucketId::from_key(2 << 12)).is_none());
        assert_eq!(writers.remove_channel("b").len(), 1);
        assert_eq!(writers.len(), 2);
        assert_eq!(writers.drain().len(), 2);
        assert!(writers.is_empty());
    }
}
