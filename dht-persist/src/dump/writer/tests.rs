use super::*;
use crate::dump::format::read_dump;
use crate::layout::REMOVED_DIR;
use node_core::protocol::batch::append_record;
use std::fs::{self, File};

fn chunk(records: &[(u64, &[u8])]) -> (Vec<u8>, u32) {
    let mut raw = Vec::new();
    for (key, value) in records {
        append_record(&mut raw, *key, value);
    }
    (raw, records.len() as u32)
}

fn dump_channel(thread: &mut DumpThread, channel: &str, records: &[(u64, &[u8])]) -> DumpOutcome {
    thread.begin(channel).unwrap();
    for part in records.chunks(2) {
        let (raw, count) = chunk(part);
        thread.send_chunk(raw, count).unwrap();
    }
    thread.finish().unwrap();
    thread.wait_idle().unwrap();
    let mut outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes.pop().unwrap()
}

fn read_file(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut got = Vec::new();
    read_dump(File::open(path).unwrap(), |key, value| {
        got.push((key, value.to_vec()))
    })
    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    got
}

fn owned(records: &[(u64, &[u8])]) -> Vec<(u64, Vec<u8>)> {
    records.iter().map(|(k, v)| (*k, v.to_vec())).collect()
}

const FIRST: &[(u64, &[u8])] = &[(1, b"one"), (2, b"two"), (3, b"three")];
const SECOND: &[(u64, &[u8])] = &[(4, b"four"), (5, b"five")];

#[test]
fn second_dump_replaces_the_first_which_becomes_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    let outcome = dump_channel(&mut thread, "ch", FIRST);
    assert_eq!(outcome.result, Ok(()));
    assert_eq!((outcome.records, outcome.value_bytes), (3, 11));
    let dump = dir.path().join("ch.dump");
    assert_eq!(outcome.bytes, fs::metadata(&dump).unwrap().len());
    assert!(!dir.path().join("ch.dump.backup").exists());

    let outcome = dump_channel(&mut thread, "ch", SECOND);
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(read_file(&dump), owned(SECOND));
    assert_eq!(read_file(&dir.path().join("ch.dump.backup")), owned(FIRST));
    assert!(!dir.path().join("ch.dump.tmp").exists());

    // The chunk buffers came back for reuse.
    assert!(thread.recycle().is_some());
}

#[test]
fn disk_full_keeps_the_previous_dump_and_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    dump_channel(&mut thread, "ch", FIRST);
    dump_channel(&mut thread, "ch", SECOND);
    // Every write of the dump now fails with ENOSPC.
    thread.write_instead(Some(Path::new("/dev/full")));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let outcome = dump_channel(&mut thread, "ch", &[(9, &big), (10, &big), (11, b"x")]);
    let error = outcome.result.unwrap_err();
    assert!(error.contains("No space left"), "{error}");
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(SECOND));
    assert_eq!(read_file(&dir.path().join("ch.dump.backup")), owned(FIRST));
    assert!(fs::symlink_metadata(dir.path().join("ch.dump.tmp")).is_err());
    thread.write_instead(None);

    // The thread carries on.
    assert_eq!(dump_channel(&mut thread, "ch", FIRST).result, Ok(()));
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
}

#[test]
fn failing_rename_keeps_the_previous_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    dump_channel(&mut thread, "ch", FIRST);
    // A non-empty directory where the backup goes: renaming the dump onto it fails.
    fs::create_dir_all(dir.path().join("ch.dump.backup/x")).unwrap();
    let outcome = dump_channel(&mut thread, "ch", SECOND);
    assert!(outcome.result.unwrap_err().contains("cannot rename"));
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    assert!(!dir.path().join("ch.dump.tmp").exists());
}

#[test]
fn a_temporary_file_that_cannot_be_created_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    dump_channel(&mut thread, "ch", FIRST);
    fs::create_dir(dir.path().join("ch.dump.tmp")).unwrap();
    thread.begin("ch").unwrap();
    thread.wait_idle().unwrap();
    let outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert!(outcomes[0]
        .result
        .as_ref()
        .unwrap_err()
        .contains("cannot create"));
    // The rest of that dump is ignored; no second outcome.
    let (raw, count) = chunk(SECOND);
    thread.send_chunk(raw, count).unwrap();
    thread.finish().unwrap();
    thread.wait_idle().unwrap();
    assert!(thread.poll_outcomes().is_empty());
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
}

#[test]
fn move_aside_moves_dump_backup_and_tcm_into_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    dump_channel(&mut thread, "ch", FIRST);
    dump_channel(&mut thread, "ch", SECOND);
    dump_channel(&mut thread, "other", FIRST);
    fs::write(dir.path().join("ch.tcm"), b"old").unwrap();
    fs::write(dir.path().join("ch.dump.tmp"), b"leftover").unwrap();
    thread.move_aside("ch").unwrap();
    thread.wait_idle().unwrap();
    let outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].action, DumpAction::MoveAside);
    assert_eq!(outcomes[0].result, Ok(()));
    for suffix in [".dump", ".dump.backup", ".tcm", ".dump.tmp"] {
        assert!(!dir.path().join(format!("ch{suffix}")).exists(), "{suffix}");
    }
    assert!(dir.path().join("other.dump").exists());
    let mut removed: Vec<String> = fs::read_dir(dir.path().join(REMOVED_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    removed.sort();
    assert_eq!(removed.len(), 3, "{removed:?}");
    let stamp = removed[0].split('.').nth(1).unwrap().to_owned();
    assert!(stamp.parse::<u64>().is_ok());
    assert_eq!(
        removed,
        vec![
            format!("ch.{stamp}.dump"),
            format!("ch.{stamp}.dump.backup"),
            format!("ch.{stamp}.tcm")
        ]
    );
    let moved = dir.path().join(REMOVED_DIR).join(&removed[0]);
    assert_eq!(read_file(&moved), owned(SECOND));

    // Removing again within the same second does not overwrite the first removal.
    dump_channel(&mut thread, "ch", FIRST);
    thread.move_aside("ch").unwrap();
    thread.wait_idle().unwrap();
    assert_eq!(thread.poll_outcomes()[0].result, Ok(()));
    assert_eq!(
        fs::read_dir(dir.path().join(REMOVED_DIR)).unwrap().count(),
        4
    );
    assert_eq!(read_file(&moved), owned(SECOND));
}

#[test]
fn move_aside_during_a_dump_abandons_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    thread.begin("ch").unwrap();
    let (raw, count) = chunk(FIRST);
    thread.send_chunk(raw, count).unwrap();
    thread.move_aside("ch").unwrap();
    thread.finish().unwrap();
    thread.wait_idle().unwrap();
    let outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0].action, DumpAction::Aborted);
    assert!(outcomes[0].result.is_err());
    assert_eq!(outcomes[1].action, DumpAction::MoveAside);
    assert!(!dir.path().join("ch.dump").exists());
    assert!(!dir.path().join("ch.dump.tmp").exists());
}

#[test]
fn abort_deletes_the_temporary_file_and_keeps_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    dump_channel(&mut thread, "ch", FIRST);
    thread.begin("ch").unwrap();
    let (raw, count) = chunk(SECOND);
    thread.send_chunk(raw, count).unwrap();
    thread.abort().unwrap();
    thread.wait_idle().unwrap();
    let outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].action, DumpAction::Aborted);
    assert_eq!(outcomes[0].result, Err("dump aborted".to_owned()));
    assert!(!dir.path().join("ch.dump.tmp").exists());
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    assert!(thread.begin("../etc").is_err());
}

/// While the thread is stuck (here: in a dump whose shard source waits for the test), chunks
/// beyond the queue capacity are handed back instead of blocking the caller.
#[test]
fn a_full_queue_hands_chunks_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    let gated = Arc::new(Gated {
        inner: Versioned::new(),
        open: Mutex::new(false),
        opened: Condvar::new(),
    });
    thread.dump_shards("stuck", gated.clone()).unwrap();
    thread.begin("ch").unwrap();
    for _ in 0..CHUNK_QUEUE_CAPACITY {
        let (raw, count) = chunk(FIRST);
        thread.try_send_chunk(raw, count).unwrap();
    }
    let (raw, count) = chunk(SECOND);
    let back = thread.try_send_chunk(raw.clone(), count).unwrap_err();
    assert_eq!(back, raw);
    thread.abort().unwrap(); // Control commands do not wait for room.

    // Unblock the thread.
    *gated.open.lock().unwrap() = true;
    gated.opened.notify_all();
    thread.wait_idle().unwrap();
    let outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(outcomes[0].channel, "stuck");
    assert_eq!(outcomes[0].result, Ok(()));
    assert_eq!(outcomes[1].action, DumpAction::Aborted);
    assert_eq!(outcomes[1].result, Err("dump aborted".to_owned()));
    thread.try_send_chunk(raw, count).unwrap();
    let mut recycled = 0;
    while thread.recycle().is_some() {
        recycled += 1;
    }
    assert!(recycled >= CHUNK_QUEUE_CAPACITY, "{recycled}");
}

/// A FIFO made by hand at `<ch>.dump.tmp` is replaced, not opened: opening it to write blocked
/// the dump thread, and with it every later dump, until something read it.
#[test]
fn a_fifo_at_the_temporary_file_is_replaced_and_the_dump_written() {
    let dir = tempfile::tempdir().unwrap();
    testkit::mkfifo(&dir.path().join("ch.dump.tmp"));
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    let outcome =
        testkit::returns_in_time("the dump", move || dump_channel(&mut thread, "ch", FIRST));
    assert_eq!(outcome.result, Ok(()));
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    assert!(!dir.path().join("ch.dump.tmp").exists());
}

#[test]
fn a_dead_thread_makes_calls_fail_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    thread.crash();
    while thread.is_alive() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(thread.begin("ch").is_err());
    assert!(thread.wait_idle().is_err());
    let (raw, count) = chunk(FIRST);
    assert!(thread.try_send_chunk(raw.clone(), count).is_err());
    assert!(thread.send_chunk(raw, count).is_err());
    let outcomes = thread.poll_outcomes();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].action, DumpAction::ThreadDied);
    assert!(outcomes[0]
        .result
        .as_ref()
        .unwrap_err()
        .contains("test-induced panic"));
    assert!(thread.poll_outcomes().is_empty());
}

/// A channel name becomes a file name: one that could leave the data directory is refused by
/// every command before anything reaches the thread.
#[test]
fn names_that_are_not_channel_names_are_refused() {
    struct Empty;
    impl ShardSource for Empty {
        fn shard_count(&self) -> usize {
            1
        }
        fn for_each_in_shard(&self, _: usize, _: &mut dyn FnMut(u64, u64, &[u8])) {}
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut thread = DumpThread::spawn(data.clone()).unwrap();
    for name in ["../escape", "a.b", ""] {
        let refused = thread.dump_shards(name, Arc::new(Empty)).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        assert_eq!(
            thread.begin(name).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            thread.move_aside(name).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
    thread.wait_idle().unwrap();
    assert!(thread.poll_outcomes().is_empty());
    assert!(!dir.path().join("escape.dump").exists());
    assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
    // A valid name goes through.
    thread.dump_shards("ok", Arc::new(Empty)).unwrap();
    thread.wait_idle().unwrap();
    assert_eq!(thread.poll_outcomes()[0].result, Ok(()));
    assert!(data.join("ok.dump").exists());
}

/// A shard source of fixed records, one shard.
struct Fixed(Vec<(u64, Vec<u8>)>);

impl ShardSource for Fixed {
    fn shard_count(&self) -> usize {
        1
    }
    fn for_each_in_shard(&self, _: usize, each: &mut dyn FnMut(u64, u64, &[u8])) {
        for (key, value) in &self.0 {
            each(*key, 0, value);
        }
    }
}

fn header_of(path: &Path) -> crate::dump::format::DumpHeader {
    crate::dump::format::DumpReader::new(File::open(path).unwrap())
        .unwrap()
        .header()
        .clone()
}

#[test]
fn a_dump_given_a_log_position_carries_it_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    let dump = dir.path().join("ch.dump");

    // Shards read by the thread, covering position 41.
    let (_, ticket) = thread
        .dump_shards_covering("ch", Arc::new(Fixed(owned(FIRST))), 41)
        .unwrap();
    thread.wait_idle().unwrap();
    let outcome = thread.poll_outcomes().pop().unwrap();
    assert_eq!(
        (outcome.result, outcome.ticket, outcome.log_position),
        (Ok(()), ticket, Some(41))
    );
    assert_eq!(header_of(&dump).log_position, 41);
    assert_eq!(read_file(&dump), owned(FIRST));

    // Chunks streamed in (dhtdump), covering position 97.
    thread.begin_covering("ch", 97).unwrap();
    let (raw, count) = chunk(SECOND);
    thread.send_chunk(raw, count).unwrap();
    thread.finish().unwrap();
    thread.wait_idle().unwrap();
    let outcome = thread.poll_outcomes().pop().unwrap();
    assert_eq!((outcome.result, outcome.log_position), (Ok(()), Some(97)));
    assert_eq!(header_of(&dump).log_position, 97);
    assert_eq!(
        header_of(&dir.path().join("ch.dump.backup")).log_position,
        41
    );

    // Without a position: the header has none (flags 0), read as covering nothing.
    let outcome = dump_channel(&mut thread, "ch", FIRST);
    assert_eq!((outcome.result, outcome.log_position), (Ok(()), None));
    let header = header_of(&dump);
    assert_eq!((header.flags, header.log_position), (0, 0));

    // A failed dump reports the position it was given.
    thread.begin_covering("ch", 5).unwrap();
    thread.send_chunk(b"not records".to_vec(), 1).unwrap();
    thread.finish().unwrap();
    thread.wait_idle().unwrap();
    let outcome = thread.poll_outcomes().pop().unwrap();
    assert!(outcome.result.is_err());
    assert_eq!(outcome.log_position, Some(5));
    assert_eq!(header_of(&dump).flags, 0, "the previous dump stays");
}

/// An owned dump entry, to compare what was read with what was written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    Record(u64, Vec<u8>),
    Tombstone(u64, u64),
}

/// A channel the way the node's dumps see it: many shards, records with and without versions
/// (values from empty to larger than a block), and tombstones.
struct Versioned {
    shards: Vec<Vec<(u64, u64, Vec<u8>)>>,
    tombstones: Vec<(u64, u64, u64)>,
}

impl ShardSource for Versioned {
    fn shard_count(&self) -> usize {
        self.shards.len()
    }
    fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, u64, &[u8])) {
        for (key, version, value) in &self.shards[index] {
            each(*key, *version, value);
        }
    }
    fn for_each_tombstone(&self, each: &mut dyn FnMut(u64, u64, u64)) {
        for (key, version, stored) in &self.tombstones {
            each(*key, *version, *stored);
        }
    }
}

impl Versioned {
    fn new() -> Versioned {
        let mut shards = vec![Vec::new(); 64];
        for key in 0..6_000u64 {
            let len = match key % 500 {
                0 => 0,
                // Larger than a paced block (64 KiB) and than a pipelined one (1 MiB).
                1 if key < 1000 => 1_300_000,
                2 => 70_000,
                _ => (key * 37 % 300) as usize,
            };
            let value = (0..len).map(|i| (key as usize * 31 + i) as u8).collect();
            let version = if key % 3 == 0 { 0 } else { key * 1000 + 7 };
            shards[(key % 64) as usize].push((key * 0x9e37_79b9, version, value));
        }
        let tombstones = (0..300)
            .map(|i| (i * 7 + 1, i + 100, 1_700_000_000 + i))
            .collect();
        Versioned { shards, tombstones }
    }

    /// Every entry in the order a dump holds them: shard by shard, then the tombstones.
    fn entries(&self) -> Vec<Entry> {
        let records = self.shards.iter().flatten();
        let records = records.map(|(key, version, value)| {
            assert!(*version == 0 || *version > 1);
            Entry::Record(*key, [&version.to_le_bytes()[..], value].concat())
        });
        let tombstones = self
            .tombstones
            .iter()
            .map(|(key, version, stored)| Entry::Tombstone(*key, version ^ stored));
        records.chain(tombstones).collect()
    }
}

/// Every entry of a dump file, checked to the end; and its header.
fn read_entries(path: &Path) -> (crate::dump::format::DumpHeader, Vec<Entry>) {
    let mut reader = crate::dump::format::DumpReader::open_buffered(File::open(path).unwrap())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut entries = Vec::new();
    reader
        .for_each_entry(|key, entry| {
            entries.push(match entry {
                crate::dump::entry::DumpEntry::Record { version, value } => {
                    Entry::Record(key, [&version.to_le_bytes()[..], value].concat())
                }
                crate::dump::entry::DumpEntry::Tombstone {
                    version,
                    stored_unix_s,
                } => Entry::Tombstone(key, version ^ stored_unix_s),
            })
        })
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (reader.header().clone(), entries)
}

/// Whatever the compression and however the writer shares the CPU (idle class, paced, full speed
/// on three threads), a node's dump holds exactly the channel's records, versions and tombstones,
/// each once, the tombstones after every record, and says in its header how it is stored. The
/// full-speed dump's two readers interleave their shards' blocks, so only the one-thread modes
/// keep the shards' order.
#[test]
fn every_compression_and_mode_dumps_the_same_entries() {
    use crate::dump::format::DumpCompression;
    let source = Arc::new(Versioned::new());
    let expected = source.entries();
    for compression in [DumpCompression::Lz4, DumpCompression::None] {
        for mode in [WriterMode::Background, WriterMode::Paced, WriterMode::Full] {
            let dir = tempfile::tempdir().unwrap();
            let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
            thread.set_compression(compression);
            thread.set_mode(mode);
            assert_eq!(thread.mode(), mode);
            thread
                .dump_shards_covering("ch", source.clone(), 12)
                .unwrap();
            thread.wait_idle().unwrap();
            let outcome = thread.poll_outcomes().pop().unwrap();
            assert_eq!(outcome.result, Ok(()), "{compression:?} {mode:?}");
            assert_eq!(outcome.records, expected.len() as u64);
            let path = dir.path().join("ch.dump");
            assert_eq!(outcome.bytes, fs::metadata(&path).unwrap().len());
            let (header, entries) = read_entries(&path);
            assert_eq!(header.compression(), compression, "{mode:?}");
            assert_eq!(header.log_position, 12);
            let first_tombstone = entries
                .iter()
                .position(|e| matches!(e, Entry::Tombstone(..)));
            let records_after = first_tombstone.map_or(0, |at| {
                entries[at..]
                    .iter()
                    .filter(|e| matches!(e, Entry::Record(..)))
                    .count()
            });
            assert_eq!(
                records_after, 0,
                "{compression:?} {mode:?}: a record after a tombstone"
            );
            let mut entries = entries;
            let mut expected = expected.clone();
            if mode == WriterMode::Full {
                entries.sort();
                expected.sort();
            }
            assert!(
                entries == expected,
                "{compression:?} {mode:?}: entries differ"
            );
        }
    }
}

/// A full-speed (two-thread) dump that cannot write fails like a one-thread dump: reported, its
/// temporary file gone, the previous dump kept; and a cancelled one leaves the previous dump too.
#[test]
fn a_full_speed_dump_that_fails_or_is_cancelled_keeps_the_previous_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut thread = DumpThread::spawn(dir.path().to_path_buf()).unwrap();
    thread.set_mode(WriterMode::Full);
    dump_channel(&mut thread, "ch", FIRST);
    thread.write_instead(Some(Path::new("/dev/full")));
    thread
        .dump_shards("ch", Arc::new(Versioned::new()))
        .unwrap();
    thread.wait_idle().unwrap();
    let outcome = thread.poll_outcomes().pop().unwrap();
    assert_eq!(outcome.action, DumpAction::Dump);
    let error = outcome.result.unwrap_err();
    assert!(error.contains("No space left"), "{error}");
    assert!(fs::symlink_metadata(dir.path().join("ch.dump.tmp")).is_err());
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    thread.write_instead(None);

    let gated = Arc::new(Gated {
        inner: Versioned::new(),
        open: Mutex::new(false),
        opened: Condvar::new(),
    });
    let cancel = thread.dump_shards("ch", gated.clone()).unwrap();
    cancel.store(true, Ordering::Relaxed);
    *gated.open.lock().unwrap() = true;
    gated.opened.notify_all();
    thread.wait_idle().unwrap();
    let outcome = thread.poll_outcomes().pop().unwrap();
    assert_eq!(outcome.action, DumpAction::Aborted, "{outcome:?}");
    assert_eq!(read_file(&dir.path().join("ch.dump")), owned(FIRST));
    assert!(!dir.path().join("ch.dump.tmp").exists());
}

/// A source whose first shard waits until the test opens it: a dump is certainly under way
/// (past its first cancel check) when the test acts.
struct Gated {
    inner: Versioned,
    open: Mutex<bool>,
    opened: Condvar,
}

impl ShardSource for Gated {
    fn shard_count(&self) -> usize {
        self.inner.shard_count()
    }
    fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, u64, &[u8])) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        self.inner.for_each_in_shard(index, each)
    }
}
