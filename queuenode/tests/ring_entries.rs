//! Entries named `<storage>.ring` in the data directory that are no ring (a directory, a FIFO,
//! a bad name), and entries named like a reference dump `<storage>.rq` that are no regular file,
//! against the real `queuenode` binary: the node passes over each, leaves it in place, says
//! what it is in root.log, and serves.

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

/// A FIFO or a directory named like a reference dump is not read (a FIFO would block the
/// start) and not moved to `imported/`, and the WARN says what it is, where it was passed over
/// without a word; the regular dumps beside it are imported.
#[test]
fn a_fifo_or_directory_named_like_a_reference_dump_is_named_for_what_it_is_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("dir.rq")).expect("mkdir");
    testkit::mkfifo(&data.join("fifo.rq"));
    let rq = queuenode::engine::rq::encode(&[b"one", b"two"]);
    std::fs::write(data.join("good.rq"), rq).expect("write");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let log = node.root_log();
    for (file, kind) in [("fifo.rq", "a FIFO"), ("dir.rq", "a directory")] {
        let warned = format!("reference import: ignoring {kind} where a reference dump belongs");
        assert!(
            log.lines()
                .any(|line| line.contains("WARN") && line.contains(&warned) && line.contains(file)),
            "no WARN for {file} in\n{log}"
        );
    }
    assert!(
        log.contains("imported 2 records from 1 reference queue files"),
        "{log}"
    );

    let mut raw = Raw::open(node.addr);
    let mut body = Vec::new();
    queue::encode_channel(&mut body, "good");
    let popped: Vec<_> = (0..3).map(|_| raw.call(queue::POP, &body)).collect();
    assert_eq!(popped[0], (Status::Ok, b"one".to_vec()));
    assert_eq!(popped[1], (Status::Ok, b"two".to_vec()));
    assert_eq!(popped[2].0, Status::NotFound);
    assert!(data.join("dir.rq").is_dir() && data.join("fifo.rq").exists());
    node.stop();
}
