//! The client and swarmctl side of catch-up (issue #19 item 4), against real dhtnode
//! processes: `swarmctl dht ready` on a replica whose peers are gone; reads and Updates that
//! fail over from a member catching up (NotReady) while writes reach it; `swarmctl health`
//! naming such a member.

mod common;
mod real_cluster;

use client::DhtClient;
use real_cluster::options;
use std::process::{Command, Output};
use testkit::TempNode;

fn swarmctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(args)
        .output()
        .expect("swarmctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A dhtnode whose only peer is a port nothing listens on: it catches up forever.
fn stranded_replica() -> TempNode {
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let config = format!("[dht]\nreplica_peers = [\"{gone}\"]\n");
    let binary = testkit::workspace_binary("dhtnode", "dhtnode");
    TempNode::start(&binary.to_string_lossy(), &config, &[])
}

#[test]
fn swarmctl_dht_ready_forces_a_stranded_replica_ready() {
    let node = stranded_replica();
    let addr = node.addr.to_string();
    let dht = DhtClient::connect(&[node.addr], options()).expect("connect");
    let error = dht.get("users", 1).expect_err("not ready");
    assert!(error.to_string().contains("catching up"), "{error}");
    dht.put("users", 1, b"written meanwhile")
        .expect("writes go to it");

    let forced = swarmctl(&["--node", &addr, "dht", "ready", &addr]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_eq!(
        text(&forced.stdout),
        format!("{addr} was catching up; now forced ready: it answers reads from what it has\n")
    );
    assert_eq!(
        dht.get("users", 1).expect("ready").as_deref(),
        Some(&b"written meanwhile"[..])
    );
    let again = swarmctl(&["--node", &addr, "dht", "ready", &addr]);
    assert_eq!(
        text(&again.stdout),
        format!("{addr} was forced ready earlier\n")
    );
    let bad = swarmctl(&["--node", &addr, "dht", "ready", "nowhere"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("expected HOST:PORT"));
}

/// A replica set of two (equal ranges): `stranded` catching up for good, `serving` ready.
fn set_with_a_catching_up_member() -> (TempNode, TempNode, DhtClient) {
    let stranded = stranded_replica();
    let binary = testkit::workspace_binary("dhtnode", "dhtnode");
    let serving = TempNode::start(&binary.to_string_lossy(), "", &[]);
    // The catching-up member first: reads would go to it if NotReady did not fail over.
    let dht = DhtClient::connect(&[stranded.addr, serving.addr], options()).expect("connect");
    assert_eq!(dht.replica_sets().len(), 1, "one set of two");
    (stranded, serving, dht)
}

#[test]
fn reads_and_updates_fail_over_from_a_catching_up_member_and_writes_reach_it() {
    let (stranded, _serving, dht) = set_with_a_catching_up_member();
    for key in 0..50u64 {
        dht.put("users", key, format!("user {key}").as_bytes())
            .expect("put acknowledged by both members");
    }
    assert_eq!(
        dht.get("users", 7).expect("get").as_deref(),
        Some(&b"user 7"[..])
    );
    assert!(dht.exists("users", 8).expect("exists"));
    let all: Vec<_> = dht
        .get_all("users", Default::default())
        .map(|record| record.expect("record").0)
        .collect();
    assert_eq!(
        all.len(),
        50,
        "GetAll read the set once, from the ready member"
    );
    dht.update("users", 9, |current| {
        assert_eq!(
            current,
            Some(&b"user 9"[..]),
            "the update read the ready member"
        );
        client::dht::UpdateDecision::Write(b"updated".to_vec())
    })
    .expect("update");
    assert_eq!(
        dht.get("users", 9).expect("get").as_deref(),
        Some(&b"updated"[..])
    );

    // The catching-up member took every write: forced ready, it answers them itself.
    let addr = stranded.addr.to_string();
    let forced = swarmctl(&["--node", &addr, "dht", "ready", &addr]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    let alone = DhtClient::connect(&[stranded.addr], options()).expect("connect");
    assert_eq!(
        alone.get("users", 7).expect("get").as_deref(),
        Some(&b"user 7"[..])
    );
    assert_eq!(
        alone.get("users", 9).expect("get").as_deref(),
        Some(&b"updated"[..])
    );
}

#[test]
fn health_shows_a_catching_up_member() {
    let (stranded, serving, _dht) = set_with_a_catching_up_member();
    let nodes = [
        "--node",
        &stranded.addr.to_string(),
        "--node",
        &serving.addr.to_string(),
    ]
    .map(str::to_string);
    let mut args: Vec<&str> = nodes.iter().map(String::as_str).collect();
    args.push("health");
    let report = swarmctl(&args);
    assert_eq!(
        report.status.code(),
        Some(1),
        "degraded: {}",
        text(&report.stdout)
    );
    let out = text(&report.stdout);
    let line = out
        .lines()
        .find(|line| line.starts_with(&stranded.addr.to_string()))
        .expect("the member's line");
    assert!(line.contains("catching up"), "{out}");
    assert!(out.contains("catching up with its replica set"), "{out}");
    let serving_line = out
        .lines()
        .find(|line| line.starts_with(&serving.addr.to_string()))
        .expect("the other member's line");
    assert!(!serving_line.contains("catching up"), "{out}");
}

/// A set of two dhtnodes whose `replica_peers` name each other (the first started without,
/// to learn its port, then restarted with the second's).
fn caught_up_pair() -> (TempNode, TempNode) {
    let binary = testkit::workspace_binary("dhtnode", "dhtnode");
    let binary = binary.to_string_lossy();
    let mut first = TempNode::start(&binary, "[dht]\n", &[]);
    let peers = |peer: std::net::SocketAddr| format!("[dht]\nreplica_peers = [\"{peer}\"]\n");
    let second = TempNode::start(&binary, &peers(first.addr), &[]);
    first.rewrite_config(&peers(second.addr));
    first.restart();
    wait_ready(first.addr);
    wait_ready(second.addr);
    (first, second)
}

/// Waits until the node says it has caught up (GetStats `catch_up_state` 0).
fn wait_ready(node: std::net::SocketAddr) {
    testkit::wait_caught_up(node);
}

/// Every record of `channel` on one node alone, sorted.
fn records_on(node: std::net::SocketAddr, channel: &str) -> Vec<(u64, Vec<u8>)> {
    let alone = DhtClient::connect(&[node], options()).expect("connect");
    let mut records: Vec<_> = alone
        .get_all(channel, Default::default())
        .map(|record| record.expect("record"))
        .collect();
    records.sort();
    records
}

/// The scenario through the client: a member killed with SIGKILL and emptied while
/// the client keeps writing, restarted, catches up from its peer: both hold the same records,
/// and once the other member is killed every acknowledged value still reads back.
#[test]
fn an_emptied_member_catches_up_and_then_holds_every_acknowledged_write() {
    let (mut first, mut second) = caught_up_pair();
    let dht = DhtClient::connect(&[first.addr, second.addr], options()).expect("connect");
    let mut acknowledged = std::collections::BTreeMap::new();
    let mut write = |key: u64, round: u32| {
        let value = format!("round {round} key {key}").into_bytes();
        dht.put("kept", key, &value).expect("put acknowledged");
        acknowledged.insert(key, value);
    };
    (0..300).for_each(|key| write(key, 1));

    first.kill9();
    std::fs::remove_dir_all(first.dir.path().join("data")).expect("delete its data");
    (200..500).for_each(|key| write(key, 2));
    first.restart();
    wait_ready(first.addr);
    assert_eq!(
        records_on(first.addr, "kept"),
        records_on(second.addr, "kept")
    );

    // The client sees the member back (it retries in the background), then loses the other.
    testkit::wait_until("the client sees the member back", || {
        matches!(dht.client().node_statuses()[0].state, client::NodeState::Up)
    });
    second.kill9();
    for (key, value) in &acknowledged {
        assert_eq!(
            dht.get("kept", *key).expect("get").as_ref(),
            Some(value),
            "key {key}"
        );
    }
}
