//! A channel's first dump killed mid-way (issue #15, defect 9), against the real `dhtnode`: the
//! start-up warning no longer claims a previous dump that does not exist, and the leftover
//! `<ch>.dump.tmp` is removed, so the next start does not report it again.

mod common;

use common::{Conn, Node};
use node_core::protocol::dht;
use node_core::protocol::Status;

#[test]
fn an_unfinished_first_dump_is_removed_and_reported_truthfully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    // What a dump killed after its first bytes leaves: the header magic and nothing more.
    std::fs::write(data.join("first.dump.tmp"), b"SWDHTDMP").expect("write");

    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let log = node.root_log();
    let line = log
        .lines()
        .find(|line| line.contains("first.dump.tmp"))
        .unwrap_or_else(|| panic!("no line on first.dump.tmp:\n{log}"));
    assert!(line.contains("WARN") && line.contains("removed"), "{line}");
    assert!(line.contains("no complete dump"), "{line}");
    assert!(!line.contains("previous dump"), "{line}");
    assert!(!data.join("first.dump.tmp").exists(), "left behind");
    let mut conn = Conn::open(node.addr);
    let (status, body) = conn.request(dht::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    assert!(dht::decode_channel_names(&body).expect("names").is_empty());
    drop(conn);
    node.stop();

    let before = std::fs::read_to_string(dir.path().join("log/root.log")).expect("log");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let again = node.root_log()[before.len()..].to_string();
    assert!(!again.contains(".dump.tmp"), "reported again:\n{again}");
    node.stop();
}
