//! The client's Mirror (`DhtClient::mirror`, `swarmctl dht mirror`) against real dht nodes
//! (issue #19, docs/protocol.md §6.12): a refresh over a cluster of two nodes gives every record
//! with its version and every tombstone, then the changes follow, until the channel is removed.

use client::dht::{HashRange, MirrorEvent, MirrorOptions};
use client::{ClientOptions, DhtClient};
use node_core::protocol::dht::{
    self as wire, split_evenly, PutVersionRequest, RemoveVersionRequest,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

type Node = testkit::TempNode;

const CHANNEL: &str = "mirrored";

fn start(range: HashRange) -> Node {
    let binary = testkit::workspace_binary("dhtnode", "dhtnode");
    testkit::TempNode::start(
        &binary.to_string_lossy(),
        "",
        &["--listen", "127.0.0.1:0", "--range", &range.to_string()],
    )
}

/// The client index of the node that owns `key`.
fn owner(ranges: &[HashRange], key: u64) -> usize {
    ranges
        .iter()
        .position(|range| range.is_responsible_for(key))
        .expect("the ranges tile the space")
}

/// Keys 0..20 with versions (10 + key), keys 15..25 removed at version 100, key 30 without a
/// version. Returns what a mirror must see: per key, `Some((version, value))` or a tombstone's
/// `None` with its version.
fn write_state(dht: &DhtClient, ranges: &[HashRange]) -> BTreeMap<u64, (u64, Option<Vec<u8>>)> {
    let mut expected = BTreeMap::new();
    for key in 0..20u64 {
        let value = format!("v{key}").into_bytes();
        let mut body = Vec::new();
        PutVersionRequest {
            channel: CHANNEL,
            key,
            version: 10 + key,
            value: &value,
        }
        .encode(&mut body);
        let reply = dht
            .client()
            .request(owner(ranges, key), wire::PUT_VERSION, &body);
        assert!(reply.expect("PutVersion").status.is_success());
        expected.insert(key, (10 + key, Some(value)));
    }
    for key in 15..25u64 {
        let mut body = Vec::new();
        RemoveVersionRequest {
            channel: CHANNEL,
            key,
            version: 100,
        }
        .encode(&mut body);
        let reply = dht
            .client()
            .request(owner(ranges, key), wire::REMOVE_VERSION, &body);
        assert!(reply.expect("RemoveVersion").status.is_success());
        expected.insert(key, (100, None));
    }
    dht.put(CHANNEL, 30, b"plain").expect("put");
    expected.insert(30, (0, Some(b"plain".to_vec())));
    expected
}

fn cluster() -> (Vec<Node>, DhtClient, Vec<HashRange>) {
    let ranges = split_evenly(2);
    let nodes: Vec<Node> = ranges.iter().copied().map(start).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let options = ClientOptions {
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    };
    let dht = DhtClient::connect(&addrs, options).expect("connects");
    (nodes, dht, ranges)
}

#[test]
fn a_mirror_refreshes_every_node_then_follows_the_changes() {
    let (_nodes, dht, ranges) = cluster();
    let expected = write_state(&dht, &ranges);
    let mut mirror = dht
        .mirror(CHANNEL, MirrorOptions::default())
        .expect("mirror");
    let mut seen = BTreeMap::new();
    let (mut started, mut done) = (0u64, 0);
    while done < 2 {
        match mirror
            .next(Duration::from_secs(20))
            .expect("event")
            .expect("in time")
        {
            MirrorEvent::RefreshStarted {
                records,
                tombstones,
                ..
            } => started += records + tombstones,
            MirrorEvent::Record {
                key,
                version,
                value,
            } => assert!(seen.insert(key, (version, Some(value))).is_none()),
            MirrorEvent::Tombstone { key, version } => {
                assert!(seen.insert(key, (version, None)).is_none())
            }
            MirrorEvent::RefreshDone { .. } => done += 1,
            other => panic!("unexpected during the refresh: {other:?}"),
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(
        started,
        expected.len() as u64,
        "RefreshStarted counted them"
    );
    dht.put(CHANNEL, 40, b"later").expect("put");
    assert_eq!(
        mirror.next(Duration::from_secs(20)).expect("event"),
        Some(MirrorEvent::Changed {
            key: 40,
            version: 0,
            value: b"later".to_vec()
        })
    );
    dht.remove_channel(CHANNEL).expect("remove channel");
    assert_eq!(
        mirror.next(Duration::from_secs(20)).expect("event"),
        Some(MirrorEvent::ChannelRemoved)
    );
}

#[test]
fn swarmctl_dht_mirror_prints_a_snapshot_with_versions_and_tombstones() {
    let (nodes, dht, ranges) = cluster();
    let expected = write_state(&dht, &ranges);
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    for node in &nodes {
        command.arg("--node").arg(node.addr.to_string());
    }
    let output = command
        .args(["dht", "mirror", CHANNEL, "--refresh-only"])
        .output()
        .expect("swarmctl runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut wanted: Vec<String> = expected
        .iter()
        .map(|(key, (version, value))| match value {
            Some(value) => format!(
                "record {key:016x} {version}\t{}",
                String::from_utf8_lossy(value)
            ),
            None => format!("tombstone {key:016x} {version}"),
        })
        .collect();
    wanted.sort();
    assert_eq!(lines, wanted);
}
