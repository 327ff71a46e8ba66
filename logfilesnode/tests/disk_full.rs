//! Disk full under logfiles Puts: the data directory is a small tmpfs. Puts that cannot be
//! written get InternalError naming the cause, the node stays up and serves reads, every
//! acknowledged record is kept, nothing corrupt is left, and Puts succeed again once space
//! returns.
//!
//! Needs permission to mount a tmpfs (the tests run as root); where that is refused the test
//! fails, unless `SWARM_TEST_ALLOW_SKIP=mount` says this machine cannot (docs/testing.md). Then
//! the node runs with a file-size limit so that writes fail with EFBIG the same way, and the one
//! check that needs the file system to grow ("Puts resume once space returns") is listed as
//! skipped.

use node_core::protocol::batch::decode_batch;
use node_core::protocol::logfiles::{self, Filter, GetAllRequest, PutRequest};
use node_core::protocol::Status;
use testkit::{Conn, Node, Tmpfs};

const BIN: &str = env!("CARGO_BIN_EXE_logfilesnode");

fn put(conn: &mut Conn, key: u64, value: &[u8]) -> (Status, String) {
    let mut body = Vec::new();
    PutRequest {
        channel: "full",
        key,
        value,
    }
    .encode(&mut body);
    let (status, reply) = conn.request(logfiles::PUT, body);
    (status, String::from_utf8_lossy(&reply).into_owned())
}

fn keys_stored(conn: &mut Conn) -> Vec<u64> {
    let mut body = Vec::new();
    GetAllRequest {
        channel: "full",
        filter: Filter::NONE,
    }
    .encode(&mut body);
    let (items, status, _) = conn.stream(logfiles::GET_ALL, body);
    assert_eq!(status, Status::Ok);
    let mut scratch = Vec::new();
    let mut keys = Vec::new();
    for (_, item) in items {
        let batch = decode_batch(&item, &mut scratch).expect("batch");
        keys.extend(batch.map(|(key, value)| {
            assert_eq!(value, value_of(key).as_slice(), "record {key} intact");
            key
        }));
    }
    keys
}

fn value_of(key: u64) -> Vec<u8> {
    let mut value = format!("{key:08}").into_bytes();
    value.resize(2000, b'v');
    value
}

/// Starts a node in `dir` whose data directory is a 1 MiB tmpfs, or, where mounting is refused
/// and the opt-out says so, a node under a 1 MiB file-size limit (`None` for the tmpfs then).
fn start_on_a_small_disk(dir: &std::path::Path) -> (Option<Tmpfs>, Node) {
    let data = dir.join("data");
    let config = "[logfiles]\nfsync = \"always\"\nwrite_buffer_bytes = 16384\n";
    std::fs::write(dir.join("node.toml"), config).unwrap();
    let tmpfs = Tmpfs::mount_for(
        &data,
        "size=1m",
        "'Puts resume once space returns' (the rest runs with a file-size limit)",
    );
    let node = match &tmpfs {
        Some(_) => Node::start_in(BIN, dir, &["-c", "node.toml"]),
        None => {
            // No mount permission, and the opt-out says so: the same failure through a file-size
            // limit (EFBIG), with SIGXFSZ ignored as a real node's disk-full would not signal.
            let wrapper = dir.join("logfilesnode-limited");
            std::fs::write(
                &wrapper,
                format!("#!/bin/sh\ntrap '' XFSZ\nulimit -f 1024\nexec {BIN} \"$@\"\n"),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            Node::start_in(wrapper.to_str().unwrap(), dir, &["-c", "node.toml"])
        }
    };
    (tmpfs, node)
}

/// Puts records until one fails: the keys acknowledged, and the failed Put's status and message.
fn put_until_full(conn: &mut Conn) -> (Vec<u64>, Status, String) {
    // All keys in one bucket, so the one file grows until the disk (or the size limit) is full.
    let mut acked = Vec::new();
    for key in 0..2000u64 {
        match put(conn, key, &value_of(key)) {
            (Status::Ok, _) => acked.push(key),
            (status, message) => return (acked, status, message),
        }
    }
    panic!("the disk did not fill up: 2000 Puts acknowledged");
}

/// Grows the tmpfs and waits (5 s at most) for a Put to succeed; returns its key.
fn put_after_space_returns(conn: &mut Conn, tmpfs: &Tmpfs) -> u64 {
    tmpfs.remount("remount,size=4m");
    for attempt in 0..50u64 {
        if put(conn, 6000 + attempt, &value_of(6000 + attempt)).0 == Status::Ok {
            return 6000 + attempt;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("Puts succeed again once space returns");
}

/// Stops the node: cleanly on the tmpfs; under the file-size limit it may report the writes it
/// could not finish, but must not crash.
fn stop_after_disk_full(node: Node, on_tmpfs: bool) {
    if on_tmpfs {
        node.stop();
    } else {
        // The file never grows back, so the shutdown cannot write what the failed Puts left
        // buffered: it may say so (exit 1, the journal kept), but it must not crash.
        let mut node = node;
        node.signal("TERM");
        let status = node.wait_exit();
        assert!(
            matches!(status.code(), Some(0 | 1)),
            "shutdown under the file-size limit: {status}"
        );
    }
}

#[test]
fn puts_on_a_full_disk_fail_cleanly_and_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (tmpfs, node) = start_on_a_small_disk(dir.path());
    let mut conn = Conn::open(node.addr);

    let (mut acked, status, message) = put_until_full(&mut conn);
    assert_eq!(status, Status::InternalError, "{message}");
    // ENOSPC on the tmpfs; EFBIG ("File too large") under the file-size limit.
    let cause = if tmpfs.is_some() {
        "No space"
    } else {
        "too large"
    };
    assert!(
        message.contains(cause),
        "the error names the cause ({cause}): {message}"
    );
    assert!(acked.len() > 100, "only {} Puts fit", acked.len());

    // Still serving: the acknowledged records read back intact, further Puts fail the same way.
    let stored = keys_stored(&mut conn);
    for key in &acked {
        assert!(stored.contains(key), "acknowledged record {key} lost");
    }
    assert_eq!(
        put(&mut conn, 5000, &value_of(5000)).0,
        Status::InternalError
    );
    let log = node.root_log();
    assert!(
        log.contains(cause),
        "root.log names the cause ({cause}): {log}"
    );

    if let Some(tmpfs) = &tmpfs {
        acked.push(put_after_space_returns(&mut conn, tmpfs));
    }
    stop_after_disk_full(node, tmpfs.is_some());
    let report = logfilesnode::storage::check_data_dir(&data, None).expect("check");
    assert!(report.is_clean(), "nothing corrupt is left: {report:?}");
    let node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
    let mut conn = Conn::open(node.addr);
    let stored = keys_stored(&mut conn);
    for key in &acked {
        assert!(
            stored.contains(key),
            "acknowledged record {key} lost after restart"
        );
    }
    drop(conn);
    drop(node);
    drop(tmpfs);
}
