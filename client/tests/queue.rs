//! QueueClient and `swarmctl queue` against real `queuenode` processes: round-robin pushes (and
//! PushMulti, Producer batches) that skip full and stopped nodes, pops and consumers drawn from
//! every node, acknowledgements, subscribers, sizes, channels and removal.
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
use std::time::Duration;

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
        .expect("pop skips the stopped node while the other has records")
        .is_some()
    {
        count += 1;
        if count == 6 {
            break;
        }
    }
    assert_eq!(count, 6);
    // Empty on the node that answers is not empty on the cluster: pop names the missing node,
    // pop_partial says so.
    let error = queue
        .pop("survivors")
        .expect_err("a node could not be asked");
    assert!(
        matches!(error, ClientError::NodeDown { node, .. } if node == gone.addr),
        "{error}"
    );
    let partial = queue.pop_partial("survivors").expect("partial pop");
    assert_eq!(partial.value, None);
    assert_eq!(partial.missing.len(), 1);
    assert_eq!(partial.missing[0].0, gone.addr);
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

/// Values of every node's `channel`, by popping until empty.
fn pop_all(queue: &QueueClient, channel: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(value) = queue.pop(channel).expect("pop") {
        out.push(String::from_utf8(value).expect("utf8"));
    }
    out
}

#[test]
fn push_multi_stores_in_every_channel_of_one_node_and_skips_a_node_where_one_is_full() {
    let (_nodes, queue) = cluster(2);
    for n in 0..4 {
        queue
            .push_multi(&["m1", "m2"], format!("v{n}").as_bytes())
            .expect("push multi");
    }
    assert_eq!(records_per_node(&queue, "m1"), vec![2, 2]);
    assert_eq!(records_per_node(&queue, "m2"), vec![2, 2]);
    // Fill m2 on one node only: a PushMulti then lands on the other, in both channels.
    let (full_node, _) = fill_one_node(&queue, "m2");
    for n in 0..4 {
        let node = queue
            .push_multi(&["m1", "m2"], format!("w{n}").as_bytes())
            .expect("push multi skips the full node");
        assert_ne!(node, full_node);
    }
    assert_eq!(
        records_per_node(&queue, "m1")[full_node],
        2,
        "nothing half-stored"
    );
    let too_many: Vec<String> = (0..65).map(|n| format!("c{n}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let error = queue.push_multi(&too_many, b"x").expect_err("65 channels");
    assert!(error.to_string().contains("1 to 64"), "{error}");
}

/// Fills `channel` on one node (pushing there directly) with 8-byte records, so that no record of
/// up to 8 bytes fits any more; returns the node's index and how many it took.
fn fill_one_node(queue: &QueueClient, channel: &str) -> (usize, u64) {
    use node_core::protocol::queue::PushRequest;
    let node = 1;
    let mut body = Vec::new();
    PushRequest {
        channel,
        value: &[9u8; 8],
    }
    .encode(&mut body);
    let mut taken = 0;
    loop {
        let reply = queue
            .client()
            .request(node, node_core::protocol::queue::PUSH, &body)
            .expect("push");
        if reply.status != Status::Ok {
            assert_eq!(reply.status, Status::ChannelFull);
            return (node, taken);
        }
        taken += 1;
    }
}

#[test]
fn a_producer_spreads_batches_and_sends_what_a_full_node_refused_elsewhere() {
    let (_nodes, queue) = cluster(2);
    let mut producer = queue.producer(&["p"]);
    // Two 4 KiB rings take 128 values of 9 bytes each.
    for n in 0..250 {
        producer.send(format!("{n:09}").into_bytes()).expect("send");
    }
    assert_eq!(producer.finish().expect("finish"), 250);
    let per_node = records_per_node(&queue, "p");
    assert_eq!(per_node.iter().sum::<u64>(), 250);
    assert!(per_node.iter().all(|&n| n <= 128), "{per_node:?}");
    let mut producer = queue.producer(&["p"]);
    for n in 250..260 {
        producer.send(format!("{n:09}").into_bytes()).expect("send");
    }
    let error = producer
        .finish()
        .expect_err("6 values more than both rings hold");
    assert!(
        matches!(
            error,
            ClientError::Status {
                status: Status::ChannelFull,
                ..
            }
        ),
        "{error}"
    );
    let mut values = pop_all(&queue, "p");
    assert_eq!(values.len(), 256);
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 256, "each value once");
    let mut producer = queue.producer(&["p", "q"]);
    producer.send(b"both".to_vec()).expect("send");
    assert!(
        producer.send(Vec::new()).is_err(),
        "empty values are refused"
    );
    assert_eq!(producer.finish().expect("finish"), 1);
    assert_eq!(pop_all(&queue, "q"), ["both"]);
}

#[test]
fn a_consumer_draws_from_every_node_and_acknowledges_what_it_took() {
    let (_nodes, queue) = cluster(3);
    for n in 0..30 {
        queue
            .push("work", format!("{n:02}").as_bytes())
            .expect("push");
    }
    let mut consumer = queue.consume("work", "", 4).expect("consume");
    let mut taken = Vec::new();
    while taken.len() < 10 {
        let value = consumer
            .next(Duration::from_secs(5))
            .expect("next")
            .expect("a record within 5 s");
        taken.push(String::from_utf8(value).expect("utf8"));
    }
    consumer.stop().expect("stop acknowledges");
    // The rest is still there, shared with Pop (same default subscriber); nothing twice.
    let rest = pop_all(&queue, "work");
    assert_eq!(rest.len(), 20);
    let mut all: Vec<String> = taken.iter().chain(&rest).cloned().collect();
    all.sort();
    assert_eq!(all, (0..30).map(|n| format!("{n:02}")).collect::<Vec<_>>());
    // Each node's records come in that node's order (push n went to node n % 3).
    for node in 0..3 {
        let from_node: Vec<u32> = taken
            .iter()
            .filter_map(|value| value.parse::<u32>().ok())
            .filter(|n| n % 3 == node)
            .collect();
        assert!(from_node.is_sorted(), "node {node}: {taken:?}");
    }
}

#[test]
fn subscribers_get_copies_and_removal_finishes_consumers() {
    let (_nodes, queue) = cluster(2);
    queue.push("events", b"before").expect("push");
    queue.subscribe("events", "audit").expect("subscribe");
    queue.subscribe("events", "billing").expect("subscribe");
    let error = queue.pop("events").expect_err("named subscribers only");
    assert!(error.to_string().contains("has subscribers"), "{error}");
    for n in 0..6 {
        queue
            .push("events", format!("e{n}").as_bytes())
            .expect("push");
    }
    let take = |subscriber: &str, count: usize| {
        let mut consumer = queue.consume("events", subscriber, 0).expect("consume");
        let mut got = Vec::new();
        while got.len() < count {
            match consumer.next(Duration::from_secs(5)).expect("next") {
                Some(value) => got.push(String::from_utf8(value).expect("utf8")),
                None => panic!("{subscriber}: only {got:?}"),
            }
        }
        assert_eq!(
            consumer.next(Duration::from_millis(200)).expect("next"),
            None
        );
        consumer.stop().expect("stop");
        got.sort();
        got
    };
    let events: Vec<String> = (0..6).map(|n| format!("e{n}")).collect();
    let mut audit_expected = events.clone();
    audit_expected.push("before".into());
    audit_expected.sort();
    assert_eq!(
        take("audit", 7),
        audit_expected,
        "the first subscriber inherits"
    );
    assert_eq!(take("billing", 6), events, "a later one gets later pushes");
    // Removing the channel ends a waiting consumer on every node.
    let mut consumer = queue.consume("events", "audit", 0).expect("consume");
    assert_eq!(
        consumer.next(Duration::from_millis(100)).expect("next"),
        None
    );
    queue.remove_channel("events").expect("remove");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !consumer.is_finished() {
        assert_eq!(
            consumer.next(Duration::from_millis(100)).expect("next"),
            None
        );
        assert!(
            std::time::Instant::now() < deadline,
            "consumer not finished"
        );
    }
    consumer.stop().expect("stop");
    assert!(queue.get_channels().expect("channels").is_empty());
}

#[test]
fn swarmctl_queue_push_multi_consume_and_subscribe() {
    let node = start();
    let run = |args: &[&str]| swarmctl(node.addr, args);
    assert!(run(&["push", "x", "y", "both"]).status.success());
    assert!(run(&["subscribe", "x", "--subscriber", "s"])
        .status
        .success());
    assert!(run(&["push", "x", "later"]).status.success());
    let output = run(&["consume", "x", "--subscriber", "s", "--count", "2"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "both\nlater\n");
    assert!(run(&["push", "y", "two"]).status.success());
    let output = run(&["consume", "y", "--count", "1"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "both\n");
    // What consume printed was acknowledged; the rest is still there for pop.
    assert_eq!(run(&["pop", "y"]).stdout, b"two");
    assert_eq!(run(&["pop", "y"]).status.code(), Some(1));
    let output = run(&["pop", "x"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "x has only a named subscriber: the request is wrong"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("has subscribers"),
        "{output:?}"
    );
}

/// A queue node that is down when the client starts does not stop pushes to the others.
#[test]
fn a_client_starts_with_a_node_down() {
    let up = start();
    let down: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let queue = QueueClient::connect(&[down, up.addr], options()).expect("starts with one up");
    for n in 0..4 {
        assert_eq!(
            queue.push("ch", format!("v{n}").as_bytes()).expect("push"),
            1
        );
    }
    assert_eq!(queue.pop("ch").expect("pop").as_deref(), Some(&b"v0"[..]));
}
