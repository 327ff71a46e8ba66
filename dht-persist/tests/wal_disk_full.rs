//! The change log on a full disk: the log directory is a small tmpfs. A group that cannot be
//! written is taken back whole (the segment is cut back to where it began, its sequence numbers
//! are handed out again), the log stays readable to its last written entry with no torn tail,
//! and writing resumes with the same numbers once space returns.
//!
//! Needs permission to mount a tmpfs (the tests run as root); where that is refused the test
//! fails, unless `SWARM_TEST_ALLOW_SKIP=mount` says this machine cannot (docs/testing.md).

use dht_persist::wal::{Change, LogEnd, LogOptions, LogReader, LogWriter, ReadFrom};
use std::path::Path;
use testkit::Tmpfs;

fn value_of(key: u64) -> Vec<u8> {
    let mut value = format!("{key:08}").into_bytes();
    value.resize(3000, b'v');
    value
}

fn keys_in_log(dir: &Path) -> Vec<u64> {
    let mut reader = LogReader::open(dir, ReadFrom::Start).unwrap();
    let mut keys = Vec::new();
    while let Some(entry) = reader.next_entry().unwrap() {
        let dht_persist::wal::LoggedChange::Put { key, value, .. } = entry.change else {
            panic!("only Puts were written");
        };
        assert_eq!(entry.seq, key + 1);
        assert_eq!(value, value_of(key).as_slice(), "entry {key} intact");
        keys.push(key);
    }
    let end = reader.end().unwrap();
    assert!(end.torn.is_none(), "no torn tail: {:?}", end.torn);
    keys
}

#[test]
fn a_group_that_does_not_fit_is_taken_back_and_writing_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("wal");
    let Some(tmpfs) = Tmpfs::mount_for(&mount, "size=64k", "the change log's disk-full test")
    else {
        return;
    };
    let end = LogEnd {
        dir: mount.clone(),
        last_seq: 0,
        next_segment: 1,
        torn: None,
        cut: false,
    };
    let mut log = LogWriter::create(&end, 1, LogOptions::default()).unwrap();
    let mut key = 0u64;
    let failure = loop {
        // Groups of three entries, about 9 KB each.
        for _ in 0..3 {
            let value = value_of(key);
            let seq = log
                .append(&Change::Put {
                    channel: "full",
                    key,
                    value: &value,
                })
                .unwrap();
            assert_eq!(seq, key + 1);
            key += 1;
        }
        match log.write_out() {
            Ok(_) => assert!(key < 100, "64 KiB never filled up"),
            Err(failure) => break failure,
        }
    };
    assert_eq!(
        failure.error.raw_os_error(),
        Some(libc::ENOSPC),
        "{failure}"
    );
    assert_eq!((failure.first_seq, failure.last_seq), (key - 2, key));
    assert_eq!(
        log.next_seq(),
        key - 2,
        "the group's numbers are handed out again"
    );
    assert!(failure.to_string().contains("No space left"), "{failure}");
    let written = keys_in_log(&mount);
    assert_eq!(written, (0..key - 3).collect::<Vec<_>>());

    tmpfs.remount("remount,size=1m");
    for again in key - 3..key + 3 {
        let value = value_of(again);
        log.append(&Change::Put {
            channel: "full",
            key: again,
            value: &value,
        })
        .unwrap();
    }
    log.write_out().unwrap();
    assert_eq!(log.sync_now().unwrap(), key + 3);
    assert_eq!(keys_in_log(&mount), (0..key + 3).collect::<Vec<_>>());
    drop(log);
}
