//! A ring file whose newest header slot is damaged while the node is stopped (issue #15, defect
//! 1), against the real `queuenode` binary: the last acknowledged push (by Push and by Produce)
//! survives, and the start-up log names the damaged slot.

mod common;

use common::{make_batch, Node, Raw};
use node_core::protocol::queue::{self, ProduceReply, ProduceRequest, PushRequest};
use node_core::protocol::Status;
use std::path::Path;

const CONFIG: &str = "[queue]\nchannel_size_bytes = 65536\n";
/// Offsets of the two header slots in a ring file (`docs/formats.md`, queue ring file).
const SLOTS: [usize; 2] = [0, 128];

fn values() -> Vec<Vec<u8>> {
    (0..10).map(|i| format!("v{i}").into_bytes()).collect()
}

fn pop_all(raw: &mut Raw, channel: &str) -> Vec<Vec<u8>> {
    let mut body = Vec::new();
    queue::encode_channel(&mut body, channel);
    let mut out = Vec::new();
    loop {
        let (status, value) = raw.call(queue::POP, &body);
        match status {
            Status::Ok => out.push(value),
            Status::NotFound => return out,
            other => panic!("pop {channel}: {other:?}"),
        }
        assert!(out.len() <= 10, "more records than pushed");
    }
}

/// Flips byte 1 (in the magic) of the slot with the higher generation; returns that slot.
fn damage_newest_slot(ring_file: &Path) -> usize {
    let mut bytes = std::fs::read(ring_file).expect("read ring file");
    let generation = |slot: usize| {
        let at = SLOTS[slot] + 24;
        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
    };
    let newest = if generation(0) > generation(1) { 0 } else { 1 };
    bytes[SLOTS[newest] + 1] ^= 0x01;
    std::fs::write(ring_file, &bytes).expect("write ring file");
    newest
}

#[test]
fn a_damaged_newest_header_slot_loses_no_acknowledged_push_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("queuenode.toml"), CONFIG).expect("write config");
    let args = ["-c", "queuenode.toml"];
    let node = Node::start_in(common::BIN, dir.path(), &args);
    let mut raw = Raw::open(node.addr);
    for value in values() {
        let mut body = Vec::new();
        PushRequest {
            channel: "pushed",
            value: &value,
        }
        .encode(&mut body);
        assert_eq!(raw.call(queue::PUSH, &body).0, Status::Ok);
    }
    let batch = make_batch(&values());
    let mut body = Vec::new();
    ProduceRequest {
        channels: vec!["produced"],
        batch: &batch,
    }
    .encode(&mut body);
    let (status, reply) = raw.call(queue::PRODUCE, &body);
    assert_eq!(status, Status::Ok);
    assert_eq!(ProduceReply::decode(&reply).expect("reply").stored, 10);
    drop(raw);
    node.stop();

    let mut damaged = Vec::new();
    for channel in ["pushed", "produced"] {
        let ring_file = dir.path().join(format!("data/{channel}.ring"));
        damaged.push((channel, damage_newest_slot(&ring_file)));
    }
    let node = Node::start_in(common::BIN, dir.path(), &args);
    let mut raw = Raw::open(node.addr);
    assert_eq!(pop_all(&mut raw, "pushed"), values(), "Push");
    assert_eq!(pop_all(&mut raw, "produced"), values(), "Produce");
    let log = node.root_log();
    for (channel, slot) in damaged {
        let line = log
            .lines()
            .find(|line| line.contains(&format!("{channel}.ring")) && line.contains("damaged"))
            .unwrap_or_else(|| panic!("no line about {channel}.ring's damaged slot:\n{log}"));
        let named = format!("header slot {slot} (offset {}) damaged", SLOTS[slot]);
        assert!(line.contains("WARN") && line.contains(&named), "{line}");
        assert!(
            line.contains("records recovered after its tail: 1"),
            "{line}"
        );
    }
    node.stop();
}
