//! The files a dht node opens by fixed names at start, made FIFOs by hand: the start never
//! hangs. It refuses with the file's name where passing over it would lose something (the state
//! file holding the node's range, the lock), and passes over with a WARN where nothing is lost
//! (`wal/covered`: the replay reads the whole log; the state file's `.tmp`: replaced).

mod common;

use common::*;
use node_core::protocol::dht::{GET, PUT};
use node_core::protocol::Status;

const LISTEN: [&str; 2] = ["--listen", "127.0.0.1:0"];

fn put_and_stop(dir: &std::path::Path) {
    let node = Node::start_in(BIN, dir, &[]);
    let (status, _) = Conn::open(node.addr).request(PUT, put_body("c", 7, b"kept"));
    assert_eq!(status, Status::Ok);
    node.stop();
}

fn value_of_7(node: &Node) -> Vec<u8> {
    let (status, body) = Conn::open(node.addr).request(GET, key_body("c", 7));
    assert_eq!(status, Status::Ok);
    body
}

#[test]
fn a_fifo_as_the_state_file_or_the_lock_refuses_the_start_naming_it() {
    for (name, what) in [("dht-state.toml", "hash range"), (".lock", "lock")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        mkfifo(&dir.path().join("data").join(name));
        let (code, stderr) = refused_start(dir.path(), &LISTEN);
        assert_eq!(code, Some(1), "{stderr}");
        for expected in [name, what, "is a FIFO, not a regular file"] {
            assert!(stderr.contains(expected), "{expected:?} in {stderr}");
        }
    }
}

#[test]
fn a_fifo_as_wal_covered_is_passed_over_with_a_warning_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    put_and_stop(dir.path());
    let covered = dir.path().join("data/wal/covered");
    let _ = std::fs::remove_file(&covered);
    mkfifo(&covered);
    let node = Node::start_in(BIN, dir.path(), &[]);
    assert_eq!(value_of_7(&node), b"kept");
    let log = node.root_log();
    assert!(
        log.contains("WARN") && log.contains("covered: a FIFO, not a regular file"),
        "{log}"
    );
    node.stop();
}

#[test]
fn a_fifo_as_the_state_files_tmp_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    put_and_stop(dir.path());
    mkfifo(&dir.path().join("data/dht-state.toml.tmp"));
    let node = Node::start_in(BIN, dir.path(), &["--range", "0:ffffffffffffffff"]);
    assert_eq!(value_of_7(&node), b"kept");
    let state = std::fs::read_to_string(dir.path().join("data/dht-state.toml")).unwrap();
    assert!(state.contains("range_max"), "{state}");
    node.stop();
}
