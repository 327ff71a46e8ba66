//! A full disk under the change log (issue #18): the data directory is a small tmpfs that the
//! log fills. A change the log cannot take is refused with InternalError naming the cause, and
//! is not applied; reads go on; a SIGKILL with the disk full loses no acknowledged change and
//! brings back no refused one; and once space returns, writes are taken again. A node started
//! on a disk already full starts all the same: it serves reads and refuses changes until the
//! disk has room, then takes them without a restart.
//!
//! Needs permission to mount a tmpfs (the tests run as root); where that is refused the test
//! fails, unless `SWARM_TEST_ALLOW_SKIP=mount` says this machine cannot (docs/testing.md).

mod common;

use common::{wait_until, Conn, Node, Tmpfs};
use node_core::protocol::dht;
use node_core::protocol::Status;
use std::io::Write;
use std::path::Path;

const CHANNEL: &str = "full";
const VALUE_BYTES: usize = 4096;

fn value_of(key: u64) -> Vec<u8> {
    common::random_value(key, VALUE_BYTES)
}

fn put(conn: &mut Conn, key: u64) -> (Status, String) {
    let (status, body) = conn.request(dht::PUT, common::put_body(CHANNEL, key, &value_of(key)));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Checks that `present` read back with their values and `absent` are not there.
fn assert_holds(conn: &mut Conn, present: &[u64], absent: &[u64]) {
    let keys: Vec<u64> = present.iter().chain(absent).copied().collect();
    for (index, (status, value)) in common::get_pipelined(conn, CHANNEL, &keys)
        .into_iter()
        .enumerate()
    {
        let key = keys[index];
        if index < present.len() {
            assert_eq!(status, Status::Ok, "key {key} was acknowledged");
            assert!(value == value_of(key), "value of key {key}");
        } else {
            assert_eq!(status, Status::NotFound, "key {key} was refused");
        }
    }
}

/// A node under `durability = "always"` whose data directory is a 1 MiB tmpfs; None when this
/// machine cannot mount one and says so (the skip is recorded).
fn start_on_small_disk() -> Option<(tempfile::TempDir, Tmpfs, Node)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let tmpfs = Tmpfs::mount(&dir.path().join("data"), "size=1m")?;
    std::fs::write(
        dir.path().join("node.toml"),
        "[dht]\ndurability = \"always\"\ndump_period_s = 0\nmax_log_bytes = 4194304\n",
    )
    .unwrap();
    let node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    Some((dir, tmpfs, node))
}

#[test]
fn a_full_disk_refuses_changes_unapplied_and_writes_resume_when_space_returns() {
    let Some((_dir, tmpfs, mut node)) = start_on_small_disk() else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
    };
    let mut conn = Conn::open(node.addr);

    // Fill the log until a Put is refused.
    let mut acknowledged = Vec::new();
    let (refused, message) = (0..1000)
        .find_map(|key| match put(&mut conn, key) {
            (Status::Ok, _) => {
                acknowledged.push(key);
                None
            }
            (status, message) => Some((key, format!("{status:?}: {message}"))),
        })
        .expect("a 1 MiB disk fills up");
    assert!(
        message.starts_with("InternalError")
            && message.contains("nothing was stored")
            && message.contains("No space left"),
        "the refusal names the cause: {message}"
    );
    assert!(acknowledged.len() > 50, "{} Puts fit", acknowledged.len());

    // Not applied; reads go on; further writes are refused the same way.
    assert_holds(&mut conn, &acknowledged, &[refused]);
    assert_eq!(put(&mut conn, refused + 1).0, Status::InternalError);

    // A crash with the disk full: every acknowledged change comes back, no refused one.
    drop(conn);
    node.kill9();
    tmpfs.remount("remount,size=64m");
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_holds(&mut conn, &acknowledged, &[refused, refused + 1]);

    // With space back, writes are taken again (and survive a crash too).
    assert_eq!(put(&mut conn, refused), (Status::Ok, String::new()));
    acknowledged.push(refused);
    drop(conn);
    node.kill9();
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_holds(&mut conn, &acknowledged, &[refused + 1]);
    drop(conn);
    node.stop();
    drop(tmpfs);
}

/// Fills the file system of `dir` with a file `dir/filler` until it refuses more.
fn fill(dir: &Path) {
    let mut filler = std::fs::File::create(dir.join("filler")).expect("create the filler");
    let chunk = vec![0x5au8; 4096];
    for _ in 0..1_000_000 {
        if filler.write_all(&chunk).is_err() {
            return;
        }
    }
    panic!("{} never filled up", dir.display());
}

#[test]
fn a_node_started_on_a_full_disk_serves_reads_and_takes_changes_once_space_returns() {
    let Some((dir, tmpfs, mut node)) = start_on_small_disk() else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
    };
    let data = dir.path().join("data");
    let mut conn = Conn::open(node.addr);
    let stored: Vec<u64> = (0..20).collect();
    for &key in &stored {
        assert_eq!(put(&mut conn, key), (Status::Ok, String::new()));
    }
    drop(conn);
    node.signal("TERM");
    assert_eq!(node.wait_exit().code(), Some(0), "a clean stop");

    // The disk is full before the node starts: no room for a change log segment.
    fill(&data);
    node.restart();
    let log = node.root_log();
    assert!(
        log.contains("the change log cannot start") && log.contains("serves reads"),
        "root.log says why changes are refused:\n{log}"
    );
    let mut conn = Conn::open(node.addr);
    assert_holds(&mut conn, &stored, &[100]);
    let (status, message) = put(&mut conn, 100);
    assert_eq!(status, Status::InternalError, "{message}");
    assert!(
        message.contains("nothing was stored") && message.contains("No space left"),
        "the refusal names the cause: {message}"
    );
    assert_holds(&mut conn, &stored, &[100]);

    // Space returns: changes are taken again without a restart, and survive a crash.
    std::fs::remove_file(data.join("filler")).expect("remove the filler");
    wait_until("a Put taken once the disk has room", || {
        put(&mut conn, 100).0 == Status::Ok
    });
    drop(conn);
    node.kill9();
    node.restart();
    let with_new: Vec<u64> = stored.iter().copied().chain([100]).collect();
    assert_holds(&mut Conn::open(node.addr), &with_new, &[101]);
    node.stop();
    drop(tmpfs);
}
