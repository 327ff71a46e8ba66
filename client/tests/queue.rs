//! QueueClient and `swarmctl queue` against real `queuenode` processes: round-robin pushes that
//! skip full and stopped nodes, pops drawn from every node, sizes, channels and removal.
//!
//! The node binary is built on first use (`cargo build -p queuenode`, a no-op when it is up to
//! date), so `cargo test -p client` alone tests against the current node.

use client::queue::{QueueClient, QueueSize};
use client::{ClientError, ClientOptions, Status};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The queuenode binary next to this test's own target directory, built once if needed.
fn queuenode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("queuenode", "queuenode"))
}

/// A queuenode in its own temp directory, killed when dropped.
type Node = testkit::TempNode;

/// Starts a node with 4 KiB rings.
fn start() -> Node {
    let binary = queuenode_binary().to_string_lossy().into_owned();
    testkit::TempNode::start(&binary, "[queue]\nchannel_size_bytes = 4096\n", &[])
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 2000,
        request_timeout_ms: 5000,
        ..ClientOptions::default()
    }
}

fn cluster(count: usize) -> (Vec<Node>, QueueClient) {
    let nodes: Vec<Node> = (0..count).map(|_| start()).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let queue = QueueClient::connect(&addrs, options()).expect("cluster connects");
    (nodes, queue)
}

fn records_per_node(queue: &QueueClient, channel: &str) -> Vec<u64> {
    queue
        .get_channel_size_per_node(channel)
        .expect("sizes")
        .into_iter()
        .map(|(_, size)| size.records)
        .collect()
}

#[test]
fn pushes_go_round_robin_and_pops_draw_from_every_node() {
    let (_nodes, queue) = cluster(3);
    let mut used = Vec::new();
    for n in 0..9 {
        used.push(
            queue
                .push("jobs", format!("job {n}").as_bytes())
                .expect("push"),
        );
    }
    assert_eq!(records_per_node(&queue, "jobs"), vec![3, 3, 3]);
    assert_eq!(used.iter().collect::<BTreeSet<_>>().len(), 3);
    assert_eq!(queue.get_channels().expect("channels"), vec!["jobs"]);
    let size = queue.get_size().expect("size");
    assert_eq!(size.records, 9);
    assert_eq!(size.capacity_bytes, 3 * 4096);
    let mut popped = BTreeSet::new();
    while let Some(value) = queue.pop("jobs").expect("pop") {
        popped.insert(String::from_utf8(value).expect("utf8"));
    }
    let expected: BTreeSet<String> = (0..9).map(|n| format!("job {n}")).collect();
    assert_eq!(popped, expected);
    assert_eq!(queue.get_channel_size("jobs").expect("size").records, 0);
    assert_eq!(queue.pop("missing").expect("pop"), None);
    queue.remove_channel("jobs").expect("remove");
    assert!(queue.get_channels().expect("channels").is_empty());
    assert_eq!(queue.get_size().expect("size"), QueueSize::default());
}

#[test]
fn a_full_node_is_skipped_and_a_full_cluster_refuses() {
    let (_nodes, queue) = cluster(2);
    let record = [5u8; 200];
    let mut stored = 0;
    loop {
        match queue.push("full", &record) {
            Ok(_) => stored += 1,
            Err(ClientError::Status {
                status: Status::ChannelFull,
                ..
            }) => break,
            Err(other) => panic!("push: {other}"),
        }
        assert!(
            stored < 100,
            "two 4 KiB rings cannot take 100 records of 200 bytes"
        );
    }
    // Both rings were filled: the pushes that found one node full went to the other.
    let per_node = records_per_node(&queue, "full");
    assert_eq!(per_node.iter().sum::<u64>(), stored);
    assert_eq!(per_node[0], per_node[1], "equal rings take equal counts");
    assert!(queue.pop("full").expect("pop").is_some());
    queue.push("full", &record).expect("room again on one node");
}

#[test]
fn a_stopped_node_is_skipped() {
    let (mut nodes, queue) = cluster(2);
    let mut gone = nodes.remove(1);
    let _ = gone.child.kill();
    let _ = gone.child.wait();
    for n in 0..6 {
        let node = queue
            .push("survivors", format!("v{n}").as_bytes())
            .expect("push skips the stopped node");
        assert_eq!(node, 0);
    }
    let mut count = 0;
    while queue
        .pop("survivors")
        .expect("pop skips the stopped node")
        .is_some()
    {
        count += 1;
    }
    assert_eq!(count, 6);
}

fn swarmctl(node: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .args(["--node", &node.to_string(), "queue"])
        .args(args)
        .output()
        .expect("run swarmctl")
}

#[test]
fn swarmctl_queue_push_pop_size_channels() {
    let node = start();
    let run = |args: &[&str]| swarmctl(node.addr, args);
    let output = run(&["push", "a", "b", "hello"]);
    assert!(output.status.success(), "{output:?}");
    assert!(run(&["push", "a", "world"]).status.success());
    let output = run(&["channels"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "a\nb\n");
    let output = run(&["size", "a"]);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        text.starts_with("records 2 bytes 10 used ") && text.contains(" capacity 4096 fill "),
        "{text}"
    );
    let output = run(&["size"]);
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("records 3 bytes 15 "));
    assert_eq!(run(&["pop", "a"]).stdout, b"hello");
    assert_eq!(run(&["pop", "a"]).stdout, b"world");
    let output = run(&["pop", "a"]);
    assert_eq!(output.status.code(), Some(1), "empty channel exits 1");
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is empty"));
    assert!(run(&["remove-channel", "b"]).status.success());
    assert_eq!(String::from_utf8_lossy(&run(&["channels"]).stdout), "a\n");
}
