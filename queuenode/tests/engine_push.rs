//! `Engine::push` and `Engine::commit_headers` on a real data directory (issue 22): a Push to an
//! existing plain channel (the path without a list of targets) refuses exactly as any other
//! push does and writes nothing when it refuses; rings beyond a lowered memory limit keep taking
//! pushes; and what the engine did holds in the ring files once the headers are committed.

use node_core::protocol::Status;
use queuenode::engine::{Engine, Queues, QueuesConfig, Ring, RingSizes, SyncMode};
use std::path::Path;

const RING_BYTES: u64 = 4096;
/// The node's own value limit (from its frame size), above the 4 KiB rings' 1008 bytes.
const NODE_MAX_VALUE_BYTES: u64 = 64 * 1024;

fn open_engine(dir: &Path, memory_limit_bytes: u64) -> Engine<u32> {
    let (queues, _) = Queues::open(QueuesConfig {
        data_dir: dir.to_path_buf(),
        memory_limit_bytes,
        sync: SyncMode::OnClose,
    })
    .expect("open");
    let sizes = RingSizes {
        default_bytes: RING_BYTES,
        by_prefix: Default::default(),
    };
    Engine::new(queues, sizes, NODE_MAX_VALUE_BYTES)
}

/// The status a push of `value` to `channels` gets.
fn push(engine: &mut Engine<u32>, channels: &[&str], value: &[u8]) -> Status {
    match engine.push(channels, &[value], false) {
        Ok(stored) => {
            assert_eq!(stored, 1);
            Status::Ok
        }
        Err(error) => error.status(),
    }
}

fn pop_all(engine: &mut Engine<u32>, channel: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(value) = engine.pop_with(channel, <[u8]>::to_vec).expect("pop") {
        out.push(value);
    }
    out
}

#[test]
fn a_push_to_an_existing_plain_channel_refuses_in_order_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open_engine(dir.path(), 0);
    assert_eq!(push(&mut engine, &["ch"], b"first"), Status::Ok);
    let refusals: [(&[u8], Status); 3] = [
        (b"", Status::EmptyValue),
        (&[7u8; 1009], Status::ValueTooBig), // the 4 KiB ring's maximum is 1008
        (&[7u8; 70_000], Status::ValueTooBig), // above the node's maximum too
    ];
    for (value, status) in refusals {
        assert_eq!(
            push(&mut engine, &["ch"], value),
            status,
            "{} bytes",
            value.len()
        );
    }
    assert_eq!(push(&mut engine, &["ch"], &[1u8; 1008]), Status::Ok);
    let mut pushed = 2u64;
    while push(&mut engine, &["ch"], &[2u8; 100]) == Status::Ok {
        pushed += 1;
    }
    let before = engine.channel_size("ch");
    assert_eq!(before.records, pushed);
    assert_eq!(push(&mut engine, &["ch"], &[2u8; 100]), Status::ChannelFull);
    assert_eq!(
        engine.channel_size("ch"),
        before,
        "a refused push wrote nothing"
    );
    assert_eq!(engine.counters().pushed_records, pushed);
    let values = pop_all(&mut engine, "ch");
    assert_eq!(values.len() as u64, pushed);
    assert_eq!(
        (values[0].as_slice(), values[1].len()),
        (&b"first"[..], 1008)
    );
}

#[test]
fn a_push_to_a_subscribed_channel_still_reaches_every_subscriber() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open_engine(dir.path(), 0);
    assert_eq!(push(&mut engine, &["ch"], b"before"), Status::Ok);
    engine.subscribe("ch", "").expect("subscribe");
    engine.subscribe("ch", "other").expect("subscribe");
    assert_eq!(push(&mut engine, &["ch"], b"after"), Status::Ok);
    assert_eq!(engine.counters().pushed_records, 3);
    assert_eq!(
        pop_all(&mut engine, "ch"),
        [b"before".to_vec(), b"after".to_vec()]
    );
    assert_eq!(
        engine.channel_size("ch").records,
        1,
        "other@ch keeps its copy"
    );
}

/// Which storages a Push writes follows the subscribers as they come and go (the one-lookup
/// path is taken only while no channel of the node has subscribers), also in a data directory
/// that holds a channel's plain storage next to a subscriber's.
#[test]
fn pushes_follow_subscribers_as_they_come_and_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open_engine(dir.path(), 0);
    assert_eq!(push(&mut engine, &["a"], b"a1"), Status::Ok);
    assert_eq!(push(&mut engine, &["b"], b"b1"), Status::Ok);
    engine
        .subscribe("b", "s")
        .expect("subscribe s (takes b's records over)");
    engine.subscribe("b", "t").expect("subscribe t");
    assert_eq!(push(&mut engine, &["a"], b"a2"), Status::Ok);
    assert_eq!(push(&mut engine, &["b"], b"b2"), Status::Ok);
    assert_eq!(engine.channel_size("a").records, 2);
    assert_eq!(engine.channel_size("b").records, 3, "s@b: b1, b2; t@b: b2");
    engine.remove_channel("b").expect("remove b");
    assert_eq!(push(&mut engine, &["b"], b"b3"), Status::Ok);
    assert_eq!(pop_all(&mut engine, "b"), [b"b3".to_vec()]);
    drop(engine);

    for name in ["c", "s@c"] {
        let path = dir.path().join(format!("{name}.ring"));
        Ring::create(&path, RING_BYTES, SyncMode::OnClose).expect("create ring");
    }
    let mut engine = open_engine(dir.path(), 0);
    assert_eq!(push(&mut engine, &["c"], b"c1"), Status::Ok);
    assert_eq!(engine.channel_size("c").records, 2, "c and s@c");
    assert_eq!(engine.counters().pushed_records, 2);
}

/// The limit is for new rings only (docs/operations.md): rings found at start beyond a lowered
/// limit keep taking pushes, plain or subscribed, alone or together; only a new ring is refused.
#[test]
fn rings_beyond_a_lowered_memory_limit_keep_taking_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open_engine(dir.path(), 0);
    for channel in ["a", "b", "s"] {
        assert_eq!(push(&mut engine, &[channel], b"x"), Status::Ok);
    }
    engine.subscribe("s", "sub").expect("subscribe");
    engine.sync_all().expect("sync");
    drop(engine);
    let mut engine = open_engine(dir.path(), RING_BYTES);
    assert_eq!(push(&mut engine, &["a"], b"y"), Status::Ok);
    assert_eq!(push(&mut engine, &["s"], b"y"), Status::Ok);
    assert_eq!(push(&mut engine, &["a", "b"], b"y"), Status::Ok);
    assert_eq!(push(&mut engine, &["new"], b"y"), Status::OutOfMemory);
    assert_eq!(push(&mut engine, &["a", "new"], b"y"), Status::OutOfMemory);
    assert_eq!(engine.channel_size("a").records, 3);
    assert_eq!(engine.channel_size("s").records, 2);
}

/// What a reply reports must hold in the ring file once `commit_headers` returned (the node
/// calls it before any reply leaves): the file as it is then, opened without the engine's help
/// (as after a crash of the process), has every push and none of the pops.
#[test]
fn pushes_and_pops_hold_in_the_ring_file_once_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = open_engine(dir.path(), 0);
    for i in 0..20u8 {
        assert_eq!(push(&mut engine, &["ch"], &[i; 30]), Status::Ok);
    }
    engine.commit_headers();
    let file = dir.path().join("ch.ring");
    assert_eq!(ring_file_values(&file).len(), 20);
    for _ in 0..5 {
        engine
            .pop_with("ch", |_| ())
            .expect("pop")
            .expect("a value");
    }
    assert_eq!(push(&mut engine, &["ch"], &[99; 30]), Status::Ok);
    engine.commit_headers();
    let values = ring_file_values(&file);
    let expected: Vec<Vec<u8>> = (5..20u8).chain([99]).map(|i| vec![i; 30]).collect();
    assert_eq!(values, expected);
}

/// The records a copy of the ring file holds, opened as after a crash.
fn ring_file_values(file: &Path) -> Vec<Vec<u8>> {
    let copy = file.with_extension("copy");
    std::fs::copy(file, &copy).expect("copy");
    let (mut ring, cut) = Ring::open(&copy, SyncMode::OnClose).expect("open copy");
    assert_eq!(cut, 0);
    let mut out = Vec::new();
    while let Some(value) = ring.pop().expect("pop") {
        out.push(value);
    }
    drop(ring);
    std::fs::remove_file(&copy).expect("remove copy");
    out
}
