//! The queue requests through a real socket against the real `queuenode` binary: FIFO order,
//! empty and missing channels, full rings, sizes, channel listing and removal, and records
//! surviving a graceful restart and a kill -9.

mod common;

use common::{Conn, Node};
use node_core::protocol::queue::{self, PushRequest, QueueSize};
use node_core::protocol::{RequestCode, Status};
use std::path::Path;

fn push_body(channel: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PushRequest { channel, value }.encode(&mut out);
    out
}

fn channel_body(channel: &str) -> Vec<u8> {
    let mut out = Vec::new();
    queue::encode_channel(&mut out, channel);
    out
}

fn push(conn: &mut Conn, channel: &str, value: &[u8]) -> Status {
    conn.request(queue::PUSH, push_body(channel, value)).0
}

fn pop(conn: &mut Conn, channel: &str) -> Option<Vec<u8>> {
    let (status, body) = conn.request(queue::POP, channel_body(channel));
    match status {
        Status::Ok => Some(body),
        Status::NotFound => {
            assert!(body.is_empty());
            None
        }
        other => panic!("pop {channel}: {other:?}"),
    }
}

fn channel_size(conn: &mut Conn, channel: &str) -> QueueSize {
    let (status, body) = conn.request(queue::GET_CHANNEL_SIZE, channel_body(channel));
    assert_eq!(status, Status::Ok);
    QueueSize::decode(&body).expect("size")
}

fn total_size(conn: &mut Conn) -> QueueSize {
    let (status, body) = conn.request(queue::GET_SIZE, Vec::new());
    assert_eq!(status, Status::Ok);
    QueueSize::decode(&body).expect("size")
}

fn channels(conn: &mut Conn) -> Vec<String> {
    let (status, body) = conn.request(queue::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    queue::decode_channel_names(&body).expect("names")
}

/// The `n`th test value: distinct, of mixed sizes.
fn value(n: usize) -> Vec<u8> {
    let mut value = format!("value-{n}-").into_bytes();
    value.resize(value.len() + n % 37, b'a' + (n % 26) as u8);
    value
}

/// Starts a node in `dir` with small rings (4 KiB; 64 KiB for channels starting "big").
fn start_small(dir: &Path) -> Node {
    std::fs::write(
        dir.join("queuenode.toml"),
        "[queue]\nchannel_size_bytes = 4096\n[queue.channel_size_by_prefix]\nbig = 65536\n",
    )
    .expect("write config");
    Node::start_in(common::BIN, dir, &["-c", "queuenode.toml"])
}

#[test]
fn push_then_pop_is_fifo_and_an_empty_or_missing_channel_is_not_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    assert_eq!(pop(&mut conn, "never"), None, "missing channel");
    assert!(channels(&mut conn).is_empty(), "pop creates no channel");
    let requests: Vec<(RequestCode, Vec<u8>)> = (0..500)
        .map(|n| (queue::PUSH, push_body("fifo", &value(n))))
        .collect();
    for (status, body) in conn.pipeline(&requests) {
        assert_eq!((status, body.len()), (Status::Ok, 0));
    }
    for n in 0..500 {
        assert_eq!(pop(&mut conn, "fifo"), Some(value(n)), "record {n}");
    }
    assert_eq!(pop(&mut conn, "fifo"), None, "drained channel");
    assert_eq!(push(&mut conn, "fifo", b""), Status::EmptyValue);
    assert_eq!(push(&mut conn, "bad@name", b"x"), Status::BadChannelName);
    assert_eq!(push(&mut conn, "", b"x"), Status::BadChannelName);
    assert_eq!(
        conn.request(queue::POP, channel_body("bad name")).0,
        Status::BadChannelName
    );
    assert_eq!(
        conn.request(queue::POP, b"\x05ab".to_vec()).0,
        Status::BadRequest,
        "truncated body"
    );
    assert_eq!(
        conn.request(RequestCode(100), Vec::new()).0,
        Status::UnsupportedRequest,
        "a reserved queue code not built yet"
    );
    node.stop();
}

#[test]
fn a_full_ring_refuses_pushes_until_records_are_popped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_small(dir.path());
    let mut conn = Conn::open(node.addr);
    let record = [7u8; 100];
    let mut pushed = 0;
    loop {
        match push(&mut conn, "small", &record) {
            Status::Ok => pushed += 1,
            Status::ChannelFull => break,
            other => panic!("push: {other:?}"),
        }
        assert!(
            pushed < 100,
            "a 4 KiB ring cannot take 100 records of 100 bytes"
        );
    }
    assert!(pushed >= 30, "only {pushed} records fit");
    let size = channel_size(&mut conn, "small");
    assert_eq!(size.records, pushed);
    assert_eq!(size.value_bytes, pushed * 100);
    assert_eq!(size.capacity_bytes, 4096);
    assert!(size.fill_percent() >= 90, "{size:?}");
    assert_eq!(push(&mut conn, "small", &record), Status::ChannelFull);
    assert_eq!(pop(&mut conn, "small").as_deref(), Some(&record[..]));
    assert_eq!(push(&mut conn, "small", &record), Status::Ok, "room again");
    // A value above a quarter of the ring is too big whatever the ring holds.
    assert_eq!(push(&mut conn, "other", &[1u8; 1100]), Status::ValueTooBig);
    assert!(!channels(&mut conn).contains(&"other".to_string()));
    // The prefix override gives "big…" channels 64 KiB rings.
    assert_eq!(push(&mut conn, "big_one", &[1u8; 1100]), Status::Ok);
    assert_eq!(channel_size(&mut conn, "big_one").capacity_bytes, 65536);
    // Wrap around the small ring many times over with mixed sizes; order holds.
    let mut next_push = 0;
    let mut next_pop = 0;
    while next_pop < 2000 {
        while next_push < 2000 && push(&mut conn, "wrap", &value(next_push * 7)) == Status::Ok {
            next_push += 1;
        }
        for _ in 0..5 {
            if next_pop < next_push {
                assert_eq!(pop(&mut conn, "wrap"), Some(value(next_pop * 7)));
                next_pop += 1;
            }
        }
    }
    assert_eq!(pop(&mut conn, "wrap"), None);
    node.stop();
}

#[test]
fn sizes_channels_and_remove_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_small(dir.path());
    let mut conn = Conn::open(node.addr);
    assert_eq!(total_size(&mut conn), QueueSize::default());
    for n in 0..3 {
        assert_eq!(push(&mut conn, "a", &value(n)), Status::Ok);
    }
    assert_eq!(push(&mut conn, "b", b"hello"), Status::Ok);
    assert_eq!(channels(&mut conn), vec!["a", "b"]);
    let a = channel_size(&mut conn, "a");
    assert_eq!(a.records, 3);
    assert_eq!(
        a.value_bytes,
        (0..3).map(|n| value(n).len() as u64).sum::<u64>()
    );
    assert!(a.used_bytes > a.value_bytes);
    assert_eq!(a.capacity_bytes, 4096);
    let total = total_size(&mut conn);
    assert_eq!(total.records, 4);
    assert_eq!(total.value_bytes, a.value_bytes + 5);
    assert_eq!(total.capacity_bytes, 8192);
    assert_eq!(channel_size(&mut conn, "missing"), QueueSize::default());
    assert!(dir.path().join("data/a.ring").exists());

    let (status, _) = conn.request(queue::REMOVE_CHANNEL, channel_body("a"));
    assert_eq!(status, Status::Ok);
    assert_eq!(channels(&mut conn), vec!["b"]);
    assert_eq!(channel_size(&mut conn, "a"), QueueSize::default());
    assert_eq!(pop(&mut conn, "a"), None);
    assert!(
        !dir.path().join("data/a.ring").exists(),
        "ring file deleted"
    );
    assert_eq!(total_size(&mut conn).capacity_bytes, 4096);
    let (status, _) = conn.request(queue::REMOVE_CHANNEL, channel_body("a"));
    assert_eq!(status, Status::Ok, "removing a missing channel is fine");
    // A removed channel comes back empty on the next push.
    assert_eq!(push(&mut conn, "a", b"again"), Status::Ok);
    assert_eq!(pop(&mut conn, "a").as_deref(), Some(&b"again"[..]));
    node.stop();
}

#[test]
fn records_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    for n in 0..200 {
        assert_eq!(push(&mut conn, "kept", &value(n)), Status::Ok);
    }
    for n in 0..50 {
        assert_eq!(pop(&mut conn, "kept"), Some(value(n)));
    }
    drop(conn);
    node.stop();

    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    assert_eq!(channels(&mut conn), vec!["kept"]);
    assert_eq!(channel_size(&mut conn, "kept").records, 150);
    for n in 50..200 {
        assert_eq!(pop(&mut conn, "kept"), Some(value(n)), "record {n}");
    }
    assert_eq!(pop(&mut conn, "kept"), None);
    node.stop();
}

#[test]
fn acknowledged_pushes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let mut node = start_small(dir.path());
        let mut conn = Conn::open(node.addr);
        // Each round: push 20 more to a 64 KiB ring, pop 5; every Ok'd push must survive.
        for n in 0..20 {
            assert_eq!(
                push(&mut conn, "big_crash", &value(round * 20 + n)),
                Status::Ok
            );
        }
        for n in 0..5 {
            assert_eq!(pop(&mut conn, "big_crash"), Some(value(round * 5 + n)));
        }
        node.signal("KILL");
        let status = node.wait_exit();
        assert_eq!(status.code(), None, "killed by a signal");
    }
    let node = start_small(dir.path());
    let mut conn = Conn::open(node.addr);
    // 60 pushed, 15 popped: values 15..60 remain, in order.
    for n in 15..60 {
        assert_eq!(pop(&mut conn, "big_crash"), Some(value(n)), "record {n}");
    }
    assert_eq!(pop(&mut conn, "big_crash"), None);
    node.stop();
}

#[test]
fn the_memory_limit_refuses_new_rings_and_bad_sizes_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("queuenode.toml"),
        "[queue]\nchannel_size_bytes = 4096\nmemory_limit_bytes = 8192\n",
    )
    .expect("write config");
    let node = Node::start_in(common::BIN, dir.path(), &["-c", "queuenode.toml"]);
    let mut conn = Conn::open(node.addr);
    assert_eq!(push(&mut conn, "one", b"x"), Status::Ok);
    assert_eq!(push(&mut conn, "two", b"x"), Status::Ok);
    assert_eq!(push(&mut conn, "three", b"x"), Status::OutOfMemory);
    assert_eq!(
        push(&mut conn, "one", b"y"),
        Status::Ok,
        "existing rings still take"
    );
    assert_eq!(channels(&mut conn), vec!["one", "two"]);
    node.stop();

    std::fs::write(
        dir.path().join("bad.toml"),
        "[queue]\nchannel_size_bytes = 1000\n",
    )
    .expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_queuenode"))
        .args(["--listen", "127.0.0.1:0", "-c", "bad.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run queuenode");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("queue.channel_size_bytes"), "{stderr}");
}

/// The reference node's overflow files made FIFOs by hand: the start is refused naming the
/// file, where it hung reading it (passing over would import the dumps without the overflow
/// behind them).
#[test]
fn a_fifo_as_a_reference_overflow_file_refuses_the_start_naming_it() {
    for name in ["ofchannels.csv", "overflow.dat"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        testkit::mkfifo(&dir.path().join("data").join(name));
        let (code, stderr) = testkit::refused_start(
            env!("CARGO_BIN_EXE_queuenode"),
            dir.path(),
            &["--listen", "127.0.0.1:0"],
        );
        assert_eq!(code, Some(1), "{stderr}");
        for expected in [name, "a FIFO, not a regular file"] {
            assert!(stderr.contains(expected), "{expected:?} in {stderr}");
        }
    }
}
