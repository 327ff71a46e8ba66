//! Disk full under the queue node: its data directory is a small tmpfs, filled up by another
//! file. Creating a new channel's ring must then fail with a clear status and message (no crash,
//! no half-made ring that breaks the next start); channels that exist keep taking and giving
//! records; and once space returns, new channels work again.
//!
//! Needs permission to mount a tmpfs (the tests run as root); where that is refused the test
//! fails, unless `SWARM_TEST_ALLOW_SKIP=mount` says this machine cannot (docs/testing.md). A
//! file-size limit cannot stand in here: ring files are memory-mapped, and a full disk shows up
//! as a fault on a page, not as a failed write.

mod common;

use common::{get_stats, stat, Conn, Node, Tmpfs};
use node_core::protocol::queue::{self, PushRequest};
use node_core::protocol::Status;
use std::io::Write;
use std::path::Path;

/// Ring capacity of every channel: 256 KiB, so a few rings fit in the 1 MiB file system.
const RING_BYTES: u64 = 256 * 1024;
const VALUE_BYTES: usize = 4000;

fn push(conn: &mut Conn, channel: &str, value: &[u8]) -> (Status, String) {
    let mut body = Vec::new();
    PushRequest { channel, value }.encode(&mut body);
    let (status, reply) = conn.request(queue::PUSH, body);
    (status, String::from_utf8_lossy(&reply).into_owned())
}

fn pop(conn: &mut Conn, channel: &str) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    queue::encode_channel(&mut body, channel);
    match conn.request(queue::POP, body) {
        (Status::Ok, value) => Some(value),
        (Status::NotFound, _) => None,
        (status, message) => panic!(
            "pop {channel}: {status:?} {}",
            String::from_utf8_lossy(&message)
        ),
    }
}

fn channels(conn: &mut Conn) -> Vec<String> {
    let (status, body) = conn.request(queue::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    queue::decode_channel_names(&body).expect("channel names")
}

/// The `n`th value: distinct and of a fixed size, so that pushes touch fresh pages of the ring.
fn value(n: usize) -> Vec<u8> {
    let mut value = format!("record {n} ").into_bytes();
    value.resize(VALUE_BYTES, b'a' + (n % 26) as u8);
    value
}

/// Writes `filler` until the file system is full; returns the bytes written.
fn fill(filler: &Path) -> u64 {
    let mut file = std::fs::File::create(filler).expect("create filler");
    let block = vec![0x5au8; 16 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(err) => {
                assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
                break;
            }
        }
    }
    let _ = file.sync_all();
    written
}

fn start(dir: &Path) -> Node {
    Node::start_in(common::BIN, dir, &["-c", "queuenode.toml"])
}

/// On a full disk, a push to a channel that does not exist yet is refused with InternalError
/// and a message naming the cause and the ring, twice, and leaves no channel or file behind.
#[track_caller]
fn expect_new_ring_refused(conn: &mut Conn, data: &Path) {
    // A new channel needs a new ring: refused with a status and a message that say why.
    let (status, message) = push(conn, "fresh", &value(1000));
    assert_ne!(status, Status::Ok, "a ring was created on a full disk");
    assert_eq!(status, Status::InternalError, "{message}");
    assert!(
        message.contains("No space left") && message.contains("fresh"),
        "the message names the cause and the ring: {message}"
    );
    assert!(
        !channels(conn).contains(&"fresh".to_string()),
        "no channel is left behind by the failed creation"
    );
    assert!(
        !data.join("fresh.ring").exists() && !data.join("corrupt").exists(),
        "no half-made ring file is left in the data directory"
    );
    // The same again: a leftover of the first attempt must not change the answer.
    assert_eq!(push(conn, "fresh", &value(1001)).0, Status::InternalError);
}

/// Pushes to `channel`, which holds `pushed` records, until its ring is nearly full (so the
/// pushes reach pages of the ring file never written before); returns the count it holds.
#[track_caller]
fn fill_most_of_the_ring(conn: &mut Conn, channel: &str, mut pushed: usize) -> usize {
    let capacity_records = (RING_BYTES as usize) / (VALUE_BYTES + 16);
    while pushed < capacity_records - 2 {
        let (status, message) = push(conn, channel, &value(pushed));
        assert_eq!(
            status,
            Status::Ok,
            "push {pushed} to an existing ring: {message}"
        );
        pushed += 1;
    }
    pushed
}

#[test]
fn new_rings_on_a_full_disk_fail_cleanly_and_existing_channels_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "size=1m") else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
    };
    std::fs::write(
        dir.path().join("queuenode.toml"),
        format!("[queue]\nchannel_size_bytes = {RING_BYTES}\n"),
    )
    .expect("write config");
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);

    // A channel that exists before the disk fills up.
    let mut pushed = 0;
    while pushed < 4 {
        assert_eq!(push(&mut conn, "existing", &value(pushed)).0, Status::Ok);
        pushed += 1;
    }

    // Something else takes every free byte of the file system.
    let filler = data.join("filler.bin");
    let filled = fill(&filler);
    assert!(filled > 0, "nothing could be written to the tmpfs");

    expect_new_ring_refused(&mut conn, &data);

    // The existing channel keeps working: pushes that fill most of its ring (so they reach pages
    // of the ring file never written before) and pops in order.
    pushed = fill_most_of_the_ring(&mut conn, "existing", pushed);
    for n in 0..pushed / 2 {
        assert_eq!(pop(&mut conn, "existing"), Some(value(n)), "record {n}");
    }
    let mut popped = pushed / 2;
    let stats = get_stats(&mut conn);
    assert!(stat(&stats, "connections_open").is_some(), "{stats:?}");

    // A restart on the still-full disk: whatever the failed creations left must not stop it.
    drop(conn);
    node.stop();
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);
    assert_eq!(channels(&mut conn), vec!["existing".to_string()]);
    while popped < pushed / 2 + 3 {
        assert_eq!(pop(&mut conn, "existing"), Some(value(popped)));
        popped += 1;
    }
    assert_eq!(
        push(&mut conn, "fresh", &value(1002)).0,
        Status::InternalError
    );

    // Space returns: the file system grows. New channels work again.
    tmpfs.remount("remount,size=4m");
    let (status, message) = push(&mut conn, "fresh", &value(2000));
    assert_eq!(status, Status::Ok, "{message}");
    assert_eq!(push(&mut conn, "fresh", &value(2001)).0, Status::Ok);
    assert_eq!(pop(&mut conn, "fresh"), Some(value(2000)));
    assert_eq!(push(&mut conn, "existing", &value(pushed)).0, Status::Ok);
    pushed += 1;

    // And everything survives one more restart.
    drop(conn);
    node.stop();
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);
    assert_eq!(channels(&mut conn), vec!["existing", "fresh"]);
    assert_eq!(pop(&mut conn, "fresh"), Some(value(2001)));
    while popped < pushed {
        assert_eq!(
            pop(&mut conn, "existing"),
            Some(value(popped)),
            "record {popped}"
        );
        popped += 1;
    }
    assert_eq!(pop(&mut conn, "existing"), None);
    drop(conn);
    node.stop();
    drop(tmpfs);
}
