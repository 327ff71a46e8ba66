//! The open-bucket journal: which bucket files the node had open for writing, so that after an
//! unclean stop it knows exactly which files may end in a torn record and cuts those tails before
//! it serves (rather than reading every bucket of the data directory, or none).
//!
//! `<data_dir>/open-buckets.journal` (the `.` keeps it apart from channel names), text, one line
//! `<channel> <bucket id in hex>` appended each time a writer opens a bucket. Clean shutdown
//! deletes it, so finding it at start means the node stopped uncleanly. It is rewritten with just
//! the currently open buckets when it passes [`COMPACT_AFTER_BYTES`].
//!
//! Ordering: the line is written (not fsynced) before the first record reaches the bucket, so a
//! process crash never leaves a torn bucket unlisted. With `fsync = always` every group commit
//! fsyncs the journal too, before acknowledging.

use crate::storage::BucketId;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal's file name in the data directory.
pub const JOURNAL_FILE_NAME: &str = "open-buckets.journal";
/// Rewrite the journal once it is this long.
pub const COMPACT_AFTER_BYTES: u64 = 1024 * 1024;
/// At most this many lines are read back at start (a longer file is damaged; the rest is
/// ignored with a warning).
pub const MAX_LINES_READ: usize = 1_000_000;

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Arc<File>,
    len_bytes: u64,
    /// Lines written since the last fsync of the journal.
    unsynced: bool,
}

impl Journal {
    /// Reads what an unclean stop left (empty after a clean one), then starts a new journal.
    pub fn open(data_dir: &Path) -> io::Result<(Journal, Vec<(String, BucketId)>)> {
        let path = data_dir.join(JOURNAL_FILE_NAME);
        // Refused, not passed over: in its place, the buckets an unclean stop left torn would
        // go unchecked.
        node_core::data_dir::refuse_not_regular(&path, "the open-bucket journal")?;
        // Read as bytes: a damaged byte spoils its line (skipped with a warning), not the start.
        let left = match fs::read(&path) {
            Ok(bytes) => parse(&String::from_utf8_lossy(&bytes), &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        let journal = Journal {
            path,
            file: Arc::new(file),
            len_bytes: 0,
            unsynced: false,
        };
        Ok((journal, left))
    }

    /// Records that `bucket` of `channel` is open for writing.
    pub fn record_open(&mut self, channel: &str, bucket: BucketId) -> io::Result<()> {
        let line = format!("{channel} {:x}\n", bucket.raw());
        (&*self.file).write_all(line.as_bytes())?;
        self.len_bytes += line.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Whether the journal should be rewritten with only the open buckets.
    pub fn wants_compaction(&self) -> bool {
        self.len_bytes >= COMPACT_AFTER_BYTES
    }

    /// Replaces the journal with `open` (the buckets open now): written to a temporary file and
    /// renamed over the journal, so a crash leaves one or the other whole.
    pub fn compact<'a>(
        &mut self,
        open: impl Iterator<Item = (&'a str, BucketId)>,
    ) -> io::Result<()> {
        let tmp = self.path.with_extension("journal.tmp");
        let mut text = String::new();
        for (channel, bucket) in open {
            text.push_str(&format!("{channel} {:x}\n", bucket.raw()));
        }
        // Written afresh: a FIFO made by hand at the name would block the event loop here.
        let mut file = node_core::data_dir::create_fresh(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        fs::rename(&tmp, &self.path)?;
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.file = Arc::new(file);
        self.len_bytes = text.len() as u64;
        self.unsynced = false;
        Ok(())
    }

    /// The journal file to fsync with the next group commit, when lines were added since the
    /// last one.
    pub fn take_unsynced(&mut self) -> Option<Arc<File>> {
        std::mem::take(&mut self.unsynced).then(|| Arc::clone(&self.file))
    }

    /// Clean shutdown: every bucket is closed and synced, nothing needs recovering.
    pub fn remove(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

/// The buckets listed, without duplicates. A line that does not parse is logged and skipped.
fn parse(text: &str, path: &Path) -> Vec<(String, BucketId)> {
    let mut buckets: Vec<(String, BucketId)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if number >= MAX_LINES_READ {
            tracing::warn!(
                "{}: more than {MAX_LINES_READ} lines; the rest is ignored",
                path.display()
            );
            break;
        }
        let parsed = line.split_once(' ').and_then(|(channel, hex)| {
            let raw = u64::from_str_radix(hex, 16).ok()?;
            let slot = raw >> 12;
            let bucket = BucketId::from_parts(slot, raw & 0xfff)?;
            crate::valid_channel_name(channel).then(|| (channel.to_string(), bucket))
        });
        match parsed {
            Some(entry) => buckets.push(entry),
            // A torn last line after a crash is expected; say so but go on.
            None => tracing::warn!(
                "{} line {}: {line:?} is not `<channel> <bucket hex>`, skipped",
                path.display(),
                number + 1
            ),
        }
    }
    buckets.sort();
    buckets.dedup();
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_open_at_an_unclean_stop_is_read_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, left) = Journal::open(dir.path()).unwrap();
        assert!(left.is_empty());
        let a = BucketId::from_key(0x5727_5806);
        let b = BucketId::from_key(u64::MAX);
        journal.record_open("logs", a).unwrap();
        journal.record_open("logs", a).unwrap();
        journal.record_open("other-1", b).unwrap();
        drop(journal); // a crash: the file stays
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE_NAME))
            .unwrap()
            .write_all(b"torn li")
            .unwrap();
        let (journal, left) = Journal::open(dir.path()).unwrap();
        assert_eq!(left, vec![("logs".into(), a), ("other-1".into(), b)]);
        journal.remove().unwrap();
        let (_journal, left) = Journal::open(dir.path()).unwrap();
        assert!(left.is_empty(), "a clean stop leaves nothing to recover");
    }

    #[test]
    fn a_line_with_bytes_that_are_not_utf8_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = b"logs 5727\n".to_vec();
        text.extend_from_slice(b"bad \xff\xfe\n");
        text.extend_from_slice(b"other 1\n");
        std::fs::write(dir.path().join(JOURNAL_FILE_NAME), text).unwrap();
        let (_journal, left) = Journal::open(dir.path()).expect("opens despite the bad line");
        assert_eq!(
            left,
            vec![
                ("logs".into(), BucketId::from_key(0x5727 << 12)),
                ("other".into(), BucketId::from_key(1 << 12)),
            ]
        );
    }

    #[test]
    fn compaction_keeps_only_the_open_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        for key in 0..100u64 {
            journal
                .record_open("c", BucketId::from_key(key << 12))
                .unwrap();
        }
        let open = BucketId::from_key(7 << 12);
        journal.compact([("c", open)].into_iter()).unwrap();
        journal
            .record_open("d", BucketId::from_key(9 << 12))
            .unwrap();
        drop(journal);
        let (_journal, left) = Journal::open(dir.path()).unwrap();
        assert_eq!(
            left,
            vec![
                ("c".into(), open),
                ("d".into(), BucketId::from_key(9 << 12))
            ]
        );
    }

    /// A FIFO made by hand where compaction writes (`open-buckets.journal.tmp`) is replaced, not
    /// opened: opening it to write blocked the event loop until something read it.
    #[test]
    fn compaction_replaces_a_fifo_at_its_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        let open = BucketId::from_key(7 << 12);
        journal.record_open("c", open).unwrap();
        journal
            .record_open("c", BucketId::from_key(8 << 12))
            .unwrap();
        testkit::mkfifo(&dir.path().join("open-buckets.journal.tmp"));
        let compacted = testkit::returns_in_time("compaction", move || {
            journal.compact([("c", open)].into_iter()).map(|()| journal)
        });
        drop(compacted.unwrap());
        let (_journal, left) = Journal::open(dir.path()).unwrap();
        assert_eq!(left, vec![("c".into(), open)]);
    }
}
