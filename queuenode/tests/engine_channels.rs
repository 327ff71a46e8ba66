//! The subscriber state machine of `engine::channels` (the reference's IChannel unit tests,
//! `queue.md` §10.1, in this node's terms), on a real data directory.

use queuenode::engine::{Channels, PopSource, QueueError, Queues, QueuesConfig, Subscribed};
use std::collections::BTreeMap;

fn open(dir: &std::path::Path, memory_limit_bytes: u64) -> Channels {
    let (queues, _) = Queues::open(QueuesConfig {
        data_dir: dir.to_path_buf(),
        memory_limit_bytes,
        sync: Default::default(),
    })
    .expect("open");
    Channels::new(queues)
}

fn size(_: &str) -> u64 {
    4096
}

fn push(channels: &mut Channels, names: &[&str], value: &[u8]) -> Result<u64, QueueError> {
    let targets = channels.prepare(names, &[value.len() as u64], &size, false)?;
    channels.push_prepared(&targets, &mut std::iter::once(value))
}

fn drain(channels: &mut Channels, storage: &str) -> Vec<Vec<u8>> {
    let ring = channels.ring_mut(storage).expect("storage");
    let mut out = Vec::new();
    while let Some(value) = ring.pop().expect("pop") {
        out.push(value);
    }
    out
}

#[test]
fn plain_then_subscribed_then_removed_and_plain_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut channels = open(dir.path(), 0);
    assert_eq!(channels.pop_source("ch"), PopSource::Missing);
    push(&mut channels, &["ch"], b"queued").expect("push");
    assert_eq!(channels.pop_source("ch"), PopSource::Storage("ch".into()));
    // The first subscriber ("max") takes the storage over, records and all.
    let (name, outcome) = channels.subscribe("ch", "max", 4096).expect("subscribe");
    assert_eq!((name.as_str(), outcome), ("max@ch", Subscribed::TookOver));
    assert_eq!(channels.storages("ch"), ["max@ch"]);
    assert_eq!(
        channels.pop_source("ch"),
        PopSource::Subscribed(vec!["max".into()])
    );
    // A second ("moritz") gets a new storage; "max" again is the same one.
    let (_, outcome) = channels.subscribe("ch", "moritz", 4096).expect("subscribe");
    assert_eq!(outcome, Subscribed::New);
    let (_, outcome) = channels.subscribe("ch", "max", 4096).expect("subscribe");
    assert_eq!(outcome, Subscribed::Existing);
    push(&mut channels, &["ch"], b"later").expect("push");
    assert_eq!(drain(&mut channels, "max@ch"), [&b"queued"[..], b"later"]);
    assert_eq!(drain(&mut channels, "moritz@ch"), [&b"later"[..]]);
    // The default subscriber makes the channel poppable again.
    channels.subscribe("ch", "", 4096).expect("subscribe");
    assert_eq!(channels.pop_source("ch"), PopSource::Storage("@ch".into()));
    assert_eq!(channels.subscribers("ch"), ["", "max", "moritz"]);
    // Reopened from disk, the same state.
    drop(channels);
    let mut channels = open(dir.path(), 0);
    assert_eq!(channels.storages("ch"), ["@ch", "max@ch", "moritz@ch"]);
    let removed = channels.remove_channel("ch").expect("remove");
    assert_eq!(removed.len(), 3);
    assert!(!channels.contains("ch"));
    push(&mut channels, &["ch"], b"fresh").expect("push");
    assert_eq!(channels.storages("ch"), ["ch"], "a plain channel again");
}

#[test]
fn a_multi_channel_push_checks_every_storage_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut channels = open(dir.path(), 3 * 4096);
    push(&mut channels, &["a"], b"x").expect("push");
    channels.subscribe("b", "s1", 4096).expect("subscribe");
    channels.subscribe("b", "s2", 4096).expect("subscribe");
    assert!(matches!(
        push(&mut channels, &["a", "c"], b"y"),
        Err(QueueError::MemoryLimit { .. })
    ));
    // Fill s2@b: then a push to a and b stores nothing, in no storage.
    let ring = channels.ring_mut("s2@b").expect("ring");
    while ring.push(&[1u8; 8]).is_ok() {}
    let before: Vec<u64> = ["a", "s1@b", "s2@b"]
        .iter()
        .map(|name| channels.ring(name).expect("ring").len())
        .collect();
    assert!(matches!(
        push(&mut channels, &["a", "b"], b"z"),
        Err(QueueError::Ring(queuenode::engine::RingError::Full { .. }))
    ));
    let after: Vec<u64> = ["a", "s1@b", "s2@b"]
        .iter()
        .map(|name| channels.ring(name).expect("ring").len())
        .collect();
    assert_eq!(before, after);
    // Partial (Produce): values are stored in order until one does not fit everywhere.
    let values: Vec<&[u8]> = vec![b"1", b"2", b"3"];
    let targets = channels
        .prepare(&["a"], &[1, 1, 1], &size, true)
        .expect("prepare");
    let stored = channels
        .push_prepared(&targets, &mut values.iter().copied())
        .expect("push");
    assert_eq!(stored, 3);
}

#[test]
fn import_refuses_conflicts_and_what_does_not_fit_before_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut channels = open(dir.path(), 0);
    let mut storages: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    storages.insert("ch".into(), vec![b"one".to_vec()]);
    storages.insert("sub@ch".into(), vec![b"two".to_vec()]);
    let error = channels.import(&storages, &size).expect_err("conflict");
    assert!(error
        .to_string()
        .contains("both a plain storage and subscribers"));
    storages.remove("ch");
    storages.insert("big".into(), vec![vec![0u8; 1000]; 5]);
    let error = channels.import(&storages, &size).expect_err("too much");
    assert!(error.to_string().starts_with("storage big:"), "{error}");
    assert!(!channels.contains("ch"), "nothing imported");
    storages.remove("big");
    storages.insert("@other".into(), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(channels.import(&storages, &size).expect("import"), 3);
    assert_eq!(drain(&mut channels, "@other"), [&b"a"[..], b"b"]);
    assert_eq!(
        channels.pop_source("other"),
        PopSource::Storage("@other".into())
    );
}
