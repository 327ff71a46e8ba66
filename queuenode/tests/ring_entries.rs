//! Entries named `<storage>.ring` in the data directory that are no ring (a directory, a FIFO,
//! a bad name), against the real `queuenode` binary: the node passes over each, leaves it in
//! place, says what it is in root.log, and serves.

mod common;

use common::{Node, Raw};
use node_core::protocol::queue::{self, PushRequest};
use node_core::protocol::Status;

#[test]
fn a_directory_or_fifo_named_like_a_ring_is_named_for_what_it_is_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("dir.ring")).expect("mkdir");
    testkit::mkfifo(&data.join("fifo.ring"));
    std::fs::write(data.join("bad!name.ring"), b"x").expect("write");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let log = node.root_log();
    let line = |file: &str| {
        log.lines()
            .find(|line| line.contains("queues: ignoring") && line.contains(file))
            .unwrap_or_else(|| panic!("no line for {file} in\n{log}"))
            .to_string()
    };
    let directory = line("dir.ring");
    assert!(
        directory.contains("ignoring a directory where a ring file belongs"),
        "{directory}"
    );
    let fifo = line("fifo.ring");
    assert!(
        fifo.contains("ignoring a FIFO where a ring file belongs"),
        "{fifo}"
    );
    let bad = line("bad!name.ring");
    assert!(bad.contains("ignoring an entry with a bad name"), "{bad}");

    // Kept as it was: passed over, left in place, and the node serves.
    let mut raw = Raw::open(node.addr);
    let mut body = Vec::new();
    PushRequest {
        channel: "real",
        value: b"v",
    }
    .encode(&mut body);
    assert_eq!(raw.call(queue::PUSH, &body).0, Status::Ok);
    assert!(data.join("dir.ring").is_dir());
    assert!(data.join("fifo.ring").exists() && data.join("bad!name.ring").is_file());
    node.stop();
}
