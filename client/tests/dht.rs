//! DhtClient and `swarmctl dht` against real `dhtnode` processes: a single node, and 3-node
//! clusters whose ranges tessellate the hash space (`split_evenly(3)`, passed as `--range`).
//!
//! The node binary is built on first use (`cargo build -p dhtnode`, a no-op when it is up to
//! date), so `cargo test -p client` alone tests against the current node.

use client::dht::{GetAllOptions, ListenEvent, UpdateDecision};
use client::{ClientError, ClientOptions, DhtClient};
use node_core::protocol::dht::{self as wire, split_evenly, HashRange, SizeInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

// ----- harness ----------------------------------------------------------------------------------

/// The dhtnode binary next to this test's own target directory, built once if needed.
fn dhtnode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("dhtnode", "dhtnode"))
}

/// A dhtnode in its own temp directory, killed when dropped.
type Node = testkit::TempNode;

/// Starts a node owning `range`.
fn start(range: HashRange) -> Node {
    start_with(range, "")
}

/// Starts a node owning `range`; `config` is TOML for its config file.
fn start_with(range: HashRange, config: &str) -> Node {
    spawn("127.0.0.1:0", range, config)
}

fn spawn(listen: &str, range: HashRange, config: &str) -> Node {
    let binary = dhtnode_binary().to_string_lossy().into_owned();
    testkit::TempNode::start(
        &binary,
        config,
        &["--listen", listen, "--range", &range.to_string()],
    )
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 5000,
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    }
}

/// `count` nodes with tessellating ranges, and a client on all of them.
fn cluster(count: usize) -> (Vec<Node>, DhtClient) {
    cluster_with(count, "", options())
}

fn cluster_with(count: usize, config: &str, options: ClientOptions) -> (Vec<Node>, DhtClient) {
    let nodes: Vec<Node> = split_evenly(count)
        .into_iter()
        .map(|range| start_with(range, config))
        .collect();
    let dht = DhtClient::connect(&addrs(&nodes), options).expect("cluster connects");
    (nodes, dht)
}

fn addrs(nodes: &[Node]) -> Vec<SocketAddr> {
    nodes.iter().map(|node| node.addr).collect()
}

/// Records of `channel` on node `node` alone, asked directly.
fn node_size(dht: &DhtClient, node: usize, channel: &str) -> SizeInfo {
    let mut body = Vec::new();
    wire::encode_channel(&mut body, channel);
    let reply = dht
        .client()
        .request(node, wire::GET_CHANNEL_SIZE, &body)
        .expect("GetChannelSize");
    SizeInfo::decode(&reply.ok_body().expect("Ok")).expect("size body")
}

fn value_of(key: u64) -> Vec<u8> {
    format!("value-{key}").into_bytes()
}

fn collect_all(dht: &DhtClient, channel: &str, options: GetAllOptions) -> Vec<(u64, Vec<u8>)> {
    dht.get_all(channel, options)
        .collect::<Result<_, _>>()
        .expect("get_all")
}

/// Checks that `records` holds each of `expected` exactly once.
fn assert_exact_set(records: &[(u64, Vec<u8>)], expected: &BTreeMap<u64, Vec<u8>>) {
    let mut seen = BTreeMap::new();
    for (key, value) in records {
        assert!(
            seen.insert(*key, value.clone()).is_none(),
            "key {key} delivered twice"
        );
    }
    assert_eq!(seen.len(), expected.len(), "record count");
    assert!(seen == *expected, "records differ from what was stored");
}

// ----- keyed requests ---------------------------------------------------------------------------

fn round_trips(dht: &DhtClient) {
    let channel = "round_trip";
    assert_eq!(dht.get(channel, 1).expect("get"), None);
    assert!(!dht.exists(channel, 1).expect("exists"));
    assert!(!dht.remove(channel, 1).expect("remove"), "absent");
    for key in [0, 1, 2, 3, u64::MAX, 0x8000_0000_0000_0000] {
        dht.put(channel, key, &value_of(key)).expect("put");
    }
    for key in [0, 1, 2, 3, u64::MAX, 0x8000_0000_0000_0000] {
        assert_eq!(dht.get(channel, key).expect("get"), Some(value_of(key)));
        assert!(dht.exists(channel, key).expect("exists"));
    }
    dht.put(channel, 1, b"replaced").expect("put again");
    assert_eq!(
        dht.get(channel, 1).expect("get"),
        Some(b"replaced".to_vec())
    );
    assert!(dht.remove(channel, 1).expect("remove"), "was there");
    assert_eq!(dht.get(channel, 1).expect("get"), None);
    assert!(!dht.remove(channel, 1).expect("remove"), "gone");

    let size = dht.get_channel_size(channel).expect("size");
    assert_eq!(size.records, 5);
    assert_eq!(
        dht.get_channel_size("no_such_channel").expect("size"),
        SizeInfo::default()
    );
    assert!(dht
        .get_channels()
        .expect("channels")
        .contains(&channel.to_string()));

    // Failures come back typed, with the node's reason.
    match dht.put(channel, 5, b"") {
        Err(ClientError::Status { status, .. }) => assert_eq!(status, client::Status::EmptyValue),
        other => panic!("empty value accepted: {other:?}"),
    }
    let error = dht.put("bad name", 5, b"x").expect_err("bad channel name");
    assert!(error.to_string().contains("bad channel name"), "{error}");
}

#[test]
fn single_node_round_trips() {
    let node = start(HashRange::FULL);
    let dht = DhtClient::connect(&[node.addr], options()).expect("connects");
    assert_eq!(dht.ranges(), vec![(node.addr, HashRange::FULL)]);
    round_trips(&dht);
}

#[test]
fn three_node_round_trips_each_key_on_its_owner() {
    let (nodes, dht) = cluster(3);
    let ranges = split_evenly(3);
    assert_eq!(
        dht.ranges(),
        addrs(&nodes)
            .into_iter()
            .zip(ranges.clone())
            .collect::<Vec<_>>()
    );
    round_trips(&dht);
    // Each key sits on exactly the node whose range holds it.
    for key in 0..30u64 {
        dht.put("owners", key, b"x").expect("put");
    }
    for (node, range) in ranges.iter().enumerate() {
        let expected = (0..30u64)
            .filter(|key| range.is_responsible_for(*key))
            .count();
        assert_eq!(node_size(&dht, node, "owners").records, expected as u64);
    }
}

/// The 10 000 records of `expected` in `channel` of a 3-node cluster: each node holds 3 000 to
/// 3 700 of them, and the channel's and the cluster's sizes count them all.
fn check_spread_and_sizes(dht: &DhtClient, channel: &str, expected: &BTreeMap<u64, Vec<u8>>) {
    let per_node: Vec<u64> = (0..3)
        .map(|node| node_size(dht, node, channel).records)
        .collect();
    assert_eq!(per_node.iter().sum::<u64>(), 10_000);
    for records in &per_node {
        assert!(
            (3_000..=3_700).contains(records),
            "uneven spread {per_node:?}"
        );
    }
    let bytes: u64 = expected.values().map(|v| 8 + v.len() as u64).sum();
    assert_eq!(
        dht.get_channel_size(channel).expect("size"),
        SizeInfo {
            records: 10_000,
            bytes
        }
    );
    assert!(dht.get_size().expect("size").records >= 10_000);
}

/// Get, GetAll, GetAll of keys only and a filtered GetAll of `channel` all return exactly
/// `expected` (the filter "value-99" the 111 records whose values hold it).
fn check_every_read_agrees(dht: &DhtClient, channel: &str, expected: &BTreeMap<u64, Vec<u8>>) {
    for (key, value) in expected {
        assert_eq!(dht.get(channel, *key).expect("get").as_ref(), Some(value));
    }
    assert_exact_set(
        &collect_all(dht, channel, GetAllOptions::default()),
        expected,
    );
    let keys = collect_all(
        dht,
        channel,
        GetAllOptions {
            keys_only: true,
            filter: None,
        },
    );
    let keys_expected = expected.keys().map(|key| (*key, Vec::new())).collect();
    assert_exact_set(&keys, &keys_expected);
    let filtered = collect_all(
        dht,
        channel,
        GetAllOptions {
            keys_only: false,
            filter: Some(b"value-99".to_vec()),
        },
    );
    let filtered_expected: BTreeMap<u64, Vec<u8>> = expected
        .iter()
        .filter(|(_, value)| value.windows(8).any(|w| w == b"value-99"))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    assert_eq!(filtered_expected.len(), 111); // 99, 990..999, 9900..9999
    assert_exact_set(&filtered, &filtered_expected);
}

#[test]
fn ten_thousand_sequential_keys_spread_over_the_cluster_and_read_back() {
    let (_nodes, dht) = cluster(3);
    let channel = "spread";
    let expected: BTreeMap<u64, Vec<u8>> = (0..10_000u64).map(|key| (key, value_of(key))).collect();
    // Half one by one, half in batches.
    for (key, value) in expected.range(..5_000) {
        dht.put(channel, *key, value).expect("put");
    }
    dht.put_batch(
        channel,
        expected
            .range(5_000..)
            .map(|(key, value)| (*key, value.as_slice())),
    )
    .expect("put_batch");

    check_spread_and_sizes(&dht, channel, &expected);

    // Every read request agrees.
    check_every_read_agrees(&dht, channel, &expected);

    // Remove half, then verify again.
    for key in (0..10_000u64).step_by(2) {
        assert!(dht.remove(channel, key).expect("remove"));
    }
    let odd: BTreeMap<u64, Vec<u8>> = expected.into_iter().filter(|(k, _)| k % 2 == 1).collect();
    assert_exact_set(&collect_all(&dht, channel, GetAllOptions::default()), &odd);
    assert_eq!(dht.get_channel_size(channel).expect("size").records, 5_000);
    assert_eq!(dht.get(channel, 4).expect("get"), None);
    assert!(dht.exists(channel, 5).expect("exists"));

    dht.remove_channel(channel).expect("remove channel");
    assert!(!dht
        .get_channels()
        .expect("channels")
        .contains(&channel.to_string()));
    assert_eq!(dht.get(channel, 5).expect("get"), None);
    assert!(collect_all(&dht, channel, GetAllOptions::default()).is_empty());
}

// ----- GetAll resuming --------------------------------------------------------------------------

#[test]
fn get_all_resumed_after_dropped_connections_delivers_every_record_once() {
    let (_nodes, dht) = cluster_with(
        3,
        "",
        ClientOptions {
            stream_window: 4,
            ..options()
        },
    );
    let channel = "resume";
    // 1 KiB values: about 60 records per 64 KiB batch, so with a window of 4 batches each
    // node's stream is far from done when its connection is dropped.
    let expected: BTreeMap<u64, Vec<u8>> = (0..3_000u64)
        .map(|key| {
            let mut value = value_of(key);
            value.resize(1024, b'.');
            (key, value)
        })
        .collect();
    dht.put_batch(channel, expected.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    // Nodes are read in node order: node i's records are those after the first i nodes'.
    let table = dht.range_table().clone();
    let first_of_node: Vec<usize> = (0..3)
        .map(|node| {
            expected
                .keys()
                .filter(|key| table.owner(**key).expect("tiled") < node)
                .count()
        })
        .collect();

    let mut get_all = dht.get_all(channel, GetAllOptions::default());
    let mut records = Vec::new();
    for record in get_all.by_ref() {
        records.push(record.expect("record"));
        let received = records.len();
        if let Some(node) = first_of_node
            .iter()
            .position(|first| received == first + 50)
        {
            dht.client().disconnect(node).expect("disconnect");
        }
    }
    assert_eq!(get_all.resumes(), 3, "one resume per node");
    drop(get_all);
    assert_exact_set(&records, &expected);
}

#[test]
fn get_all_gives_up_on_a_node_that_stays_down() {
    let (mut nodes, dht) = cluster_with(
        2,
        "",
        ClientOptions {
            stream_window: 4,
            ..options()
        },
    );
    let records: Vec<(u64, Vec<u8>)> = (0..2_000u64).map(|key| (key, vec![b'v'; 1024])).collect();
    dht.put_batch("down", records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    let mut get_all = dht.get_all("down", GetAllOptions::default());
    get_all.next().expect("first").expect("record");
    drop(nodes.remove(0)); // killed mid-stream
    let started = Instant::now();
    let error = get_all
        .find_map(Result::err)
        .expect("an error after the resumes");
    assert!(error.node().is_some(), "{error}");
    assert!(get_all.next().is_none(), "ends after the error");
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ----- Update -----------------------------------------------------------------------------------

#[test]
fn update_appends_creates_removes_and_leaves() {
    let (_nodes, dht) = cluster(3);
    let append = |suffix: &'static [u8]| {
        move |old: Option<&[u8]>| {
            let mut value = old.unwrap_or_default().to_vec();
            value.extend_from_slice(suffix);
            UpdateDecision::Write(value)
        }
    };
    for key in 0..6u64 {
        dht.update("upd", key, append(b"a")).expect("create");
        dht.update("upd", key, append(b"b")).expect("append");
        assert_eq!(dht.get("upd", key).expect("get"), Some(b"ab".to_vec()));
    }
    dht.update("upd", 0, |_| UpdateDecision::Leave)
        .expect("leave");
    assert_eq!(dht.get("upd", 0).expect("get"), Some(b"ab".to_vec()));
    dht.update("upd", 0, |_| UpdateDecision::Remove)
        .expect("remove");
    assert_eq!(dht.get("upd", 0).expect("get"), None);
    dht.update("upd", 0, |_| UpdateDecision::Remove)
        .expect("remove of nothing");
}

#[test]
fn an_update_that_meets_a_concurrent_write_is_retried() {
    let node = start(HashRange::FULL);
    let dht = DhtClient::connect(&[node.addr], options()).expect("connects");
    dht.put("cas", 7, b"start").expect("put");
    let calls = AtomicU32::new(0);
    dht.update("cas", 7, |old| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            assert_eq!(old, Some(&b"start"[..]));
            // Another writer gets in between our read and our write.
            dht.put("cas", 7, b"other").expect("interfering put");
        }
        let mut value = old.unwrap_or_default().to_vec();
        value.extend_from_slice(b"+mine");
        UpdateDecision::Write(value)
    })
    .expect("update");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "read again after the conflict"
    );
    assert_eq!(
        dht.get("cas", 7).expect("get"),
        Some(b"other+mine".to_vec())
    );

    // A writer that always interferes: the client gives up after a bounded number of tries.
    let error = dht
        .update("cas", 7, |old| {
            let interfering = [old.unwrap_or_default(), b"!"].concat();
            dht.put("cas", 7, &interfering).expect("interfering put");
            UpdateDecision::Write(b"never".to_vec())
        })
        .expect_err("gives up");
    assert!(
        matches!(error, ClientError::UpdateConflict { tries: 16, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("16 times"), "{error}");
}

#[test]
fn concurrent_appends_from_many_threads_lose_nothing() {
    let (_nodes, dht) = cluster(3);
    let dht = Arc::new(dht);
    let threads: Vec<_> = (0..4u8)
        .map(|thread| {
            let dht = Arc::clone(&dht);
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 50 {
                    let appended = dht.update("appends", 42, |old| {
                        let mut value = old.unwrap_or_default().to_vec();
                        value.push(b'a' + thread);
                        UpdateDecision::Write(value)
                    });
                    match appended {
                        Ok(()) => done += 1,
                        // Rare under heavy contention on a loaded machine; giving up
                        // must leave the record untouched, which the count below checks.
                        Err(ClientError::UpdateConflict { .. }) => continue,
                        Err(error) => panic!("update: {error}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic");
    }
    let value = dht.get("appends", 42).expect("get").expect("present");
    assert_eq!(value.len(), 200);
    for thread in 0..4u8 {
        assert_eq!(value.iter().filter(|b| **b == b'a' + thread).count(), 50);
    }
}

// ----- topology ---------------------------------------------------------------------------------

#[test]
fn gaps_are_refused_unless_allowed_and_then_fail_per_key() {
    let ranges = split_evenly(3);
    let first = start(ranges[0]);
    let third = start(ranges[2]);
    let nodes = [first.addr, third.addr];
    let error = DhtClient::connect(&nodes, options()).expect_err("gap");
    let message = error.to_string();
    assert!(matches!(error, ClientError::Topology(_)), "{error:?}");
    assert!(
        message.contains(&format!(
            "hash positions 0x{:016x}..0x{:016x} are owned by no node",
            ranges[1].min, ranges[1].max
        )),
        "{message}"
    );
    let dht = DhtClient::connect(
        &nodes,
        ClientOptions {
            allow_incomplete_ranges: true,
            ..options()
        },
    )
    .expect("allowed");
    dht.put("partial", 0, b"low")
        .expect("key 0 is on the first node");
    // Key 1 sits at position 0x8000…, in the middle third: nobody's.
    let error = dht.put("partial", 1, b"x").expect_err("no owner");
    assert!(
        matches!(error, ClientError::NoNodeForKey { key: 1, .. }),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .starts_with("no node owns key 0x0000000000000001"));
}

#[test]
fn a_node_whose_range_changed_is_asked_again_and_a_key_nobody_owns_then_fails_clearly() {
    let halves = split_evenly(2);
    let node = start(HashRange::FULL);
    let addr = node.addr;
    let dht = DhtClient::connect(&[addr], options()).expect("connects");
    dht.put("moved", 1, b"x").expect("the node owns everything");
    // The node comes back on the same port owning only the lower half; the client still
    // believes it owns everything. Key 1 sits at position 0x8000…, in the upper half.
    drop(node);
    let _restarted = spawn(&addr.to_string(), halves[0], "");
    let deadline = Instant::now() + WAIT;
    // The node answers WrongNode; the client asks it its range again and finds that nobody
    // owns key 1 now (no redistribution runs, so there is nothing to wait for).
    let error = loop {
        match dht.put("moved", 1, b"y") {
            Err(error @ ClientError::NoNodeForKey { .. }) => break error,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("expected NoNodeForKey, got {other:?}"),
        }
    };
    assert!(
        error
            .to_string()
            .starts_with("no node owns key 0x0000000000000001"),
        "{error}"
    );
    assert_eq!(
        dht.ranges(),
        vec![(addr, halves[0])],
        "the new range was learned without a restart"
    );
    let shown = ClientError::WrongNode {
        node: addr,
        key: 1,
        message: "outside the range".into(),
    }
    .to_string();
    assert!(
        shown.starts_with(&format!("node {addr}: does not own key 0x0000000000000001")),
        "{shown}"
    );
    // Keys it does own still work.
    dht.put("moved", 2, b"z")
        .expect("key 2 is in the lower half");
}

// ----- Listen -----------------------------------------------------------------------------------

fn next_event(listener: &mut client::dht::Listener) -> ListenEvent {
    listener
        .next(WAIT)
        .expect("listen event")
        .expect("an event before the timeout")
}

#[test]
fn listen_merges_every_nodes_changes_and_ends_when_the_channel_is_removed() {
    let (_nodes, dht) = cluster(3);
    let channel = "listened";
    let mut listener = dht.listen(channel).expect("listen");
    assert_eq!(
        listener.next(Duration::from_millis(50)).expect("quiet"),
        None
    );

    let keys: Vec<u64> = (0..30).collect();
    for key in &keys {
        dht.put(channel, *key, &value_of(*key)).expect("put");
    }
    let mut changed = BTreeSet::new();
    for _ in &keys {
        match next_event(&mut listener) {
            ListenEvent::Changed { key, value } => {
                assert_eq!(value, value_of(key));
                assert!(changed.insert(key), "change of {key} twice");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(changed, keys.iter().copied().collect());

    for key in &keys[..10] {
        assert!(dht.remove(channel, *key).expect("remove"));
    }
    let mut removed = BTreeSet::new();
    for _ in 0..10 {
        match next_event(&mut listener) {
            ListenEvent::Removed { key } => assert!(removed.insert(key)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(removed, keys[..10].iter().copied().collect());

    // Updates are changes too.
    dht.update(channel, 20, |_| UpdateDecision::Write(b"updated".to_vec()))
        .expect("update");
    assert_eq!(
        next_event(&mut listener),
        ListenEvent::Changed {
            key: 20,
            value: b"updated".to_vec()
        }
    );

    dht.remove_channel(channel).expect("remove channel");
    assert_eq!(next_event(&mut listener), ListenEvent::ChannelRemoved);
    assert!(listener.is_finished());
    assert_eq!(listener.next(Duration::from_secs(1)).expect("done"), None);
}

#[test]
fn a_listener_that_falls_behind_is_told_how_many_changes_it_lost() {
    let node = start_with(HashRange::FULL, "[dht]\nlisten_queue_events = 10\n");
    let dht = DhtClient::connect(&[node.addr], options()).expect("connects");
    let mut listener = dht.listen("busy").expect("listen");
    // Nobody reads: the stream window (16) and the node's queue (10) fill, the rest is lost.
    for key in 0..200u64 {
        dht.put("busy", key, b"x").expect("put");
    }
    let (mut changed, mut lost) = (0u64, 0u64);
    while changed + lost < 200 {
        match next_event(&mut listener) {
            ListenEvent::Changed { .. } => changed += 1,
            ListenEvent::Overflow { lost: count } => lost += count,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(lost > 0, "some changes were lost");
    assert!(changed >= 10, "the queued ones arrived: {changed}");
    assert_eq!(changed + lost, 200);
}

#[test]
fn values_up_to_the_limit_are_stored_and_larger_ones_refused() {
    let node = start_with(HashRange::FULL, "[dht]\nmax_value_bytes = 1000\n");
    let dht = DhtClient::connect(&[node.addr], options()).expect("connects");
    dht.put("big", 1, &[7u8; 1000]).expect("at the limit");
    assert_eq!(dht.get("big", 1).expect("get").map(|v| v.len()), Some(1000));
    match dht.put("big", 2, &[7u8; 1001]) {
        Err(ClientError::Status { status, .. }) => {
            assert_eq!(status, client::Status::ValueTooBig)
        }
        other => panic!("too big accepted: {other:?}"),
    }
    assert!(!dht.exists("big", 2).expect("exists"));
}

#[test]
fn a_listener_survives_a_dropped_connection_with_an_error_then_listens_again() {
    let (_nodes, dht) = cluster(2);
    let mut listener = dht.listen("relisten").expect("listen");
    dht.client().disconnect(1).expect("disconnect");
    let error = listener
        .next(WAIT)
        .expect_err("the dropped stream is reported");
    assert!(
        matches!(error, ClientError::Disconnected { .. }),
        "{error:?}"
    );
    // The stream is opened again within about a second; puts after that arrive.
    let deadline = Instant::now() + WAIT;
    let mut seen = BTreeSet::new();
    let mut key = 0u64;
    while seen.len() < 2 && Instant::now() < deadline {
        dht.put("relisten", key, b"x").expect("put");
        key += 1;
        if let Some(ListenEvent::Changed { key, .. }) =
            listener.next(Duration::from_millis(200)).expect("event")
        {
            seen.insert(dht.node_for(key).expect("owner"));
        }
    }
    assert_eq!(seen.len(), 2, "changes from both nodes after the reopen");
}

// ----- swarmctl ---------------------------------------------------------------------------------

fn swarmctl(nodes: &[Node], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    for node in nodes {
        command.arg("--node").arg(node.addr.to_string());
    }
    let mut child = command
        .arg("dht")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarmctl runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("swarmctl output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `swarmctl dht ARGS` against `nodes` and expects success; returns its stdout.
#[track_caller]
fn swarmctl_ok(nodes: &[Node], args: &[&str]) -> Vec<u8> {
    let output = swarmctl(nodes, args, None);
    assert!(
        output.status.success(),
        "swarmctl dht {args:?}: {}",
        text(&output.stderr)
    );
    output.stdout
}

/// `getall` of channel "ch" (keys 1, 2 and 0x10 with "one", "from\tstdin\n", "sixteen"): every
/// record as a line, with `--keys-only` the keys, with `--filter` the matching records.
fn check_getall_verbs(nodes: &[Node]) {
    let ok = |args: &[&str]| swarmctl_ok(nodes, args);
    // The stdin value ends in a newline of its own, hence one empty line.
    let mut all: Vec<String> = text(&ok(&["getall", "ch"]))
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    all.sort();
    assert_eq!(
        all,
        [
            "0000000000000001\tone",
            "0000000000000002\tfrom\tstdin",
            "0000000000000010\tsixteen",
        ]
    );
    let mut keys: Vec<String> = text(&ok(&["getall", "ch", "--keys-only"]))
        .lines()
        .map(str::to_string)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["0000000000000001", "0000000000000002", "0000000000000010"]
    );
    assert_eq!(
        ok(&["getall", "ch", "--filter", "teen"]),
        b"0000000000000010\tsixteen\n"
    );
}

/// Runs `swarmctl ARGS` with `--nodes` naming a topology file whose [dht] section lists `nodes`.
fn swarmctl_with_a_topology_file(nodes: &[Node], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let topology = dir.path().join("topology.toml");
    let listed: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.addr)).collect();
    std::fs::write(
        &topology,
        format!("[dht]\nnodes = [{}]\n", listed.join(", ")),
    )
    .expect("write topology");
    Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("--nodes")
        .arg(&topology)
        .args(args)
        .output()
        .expect("swarmctl runs")
}

#[test]
fn swarmctl_dht_verbs_end_to_end() {
    let nodes: Vec<Node> = split_evenly(3).into_iter().map(start).collect();
    let ok = |args: &[&str]| swarmctl_ok(&nodes, args);
    ok(&["put", "ch", "1", "one"]);
    ok(&["put", "ch", "0x10", "sixteen"]);
    let piped = swarmctl(&nodes, &["put", "ch", "2", "-"], Some(b"from\tstdin\n"));
    assert!(piped.status.success(), "{}", text(&piped.stderr));

    assert_eq!(ok(&["get", "ch", "0x1"]), b"one");
    assert_eq!(ok(&["get", "ch", "16"]), b"sixteen");
    assert_eq!(ok(&["get", "ch", "2"]), b"from\tstdin\n");
    let absent = swarmctl(&nodes, &["get", "ch", "3"], None);
    assert_eq!(absent.status.code(), Some(1));
    assert!(absent.stdout.is_empty());
    let note = text(&absent.stderr);
    assert_eq!(note.lines().count(), 1, "{note}");
    assert!(note.starts_with("swarmctl: "), "{note}");

    assert_eq!(ok(&["exists", "ch", "1"]), b"true\n");
    let missing = swarmctl(&nodes, &["exists", "ch", "3"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(missing.stdout, b"false\n");
    assert!(missing.stderr.is_empty());

    check_getall_verbs(&nodes);

    assert_eq!(ok(&["channels"]), b"ch\n");
    assert_eq!(text(&ok(&["size", "ch"])), "records 3 bytes 45\n");
    assert_eq!(text(&ok(&["size"])), "records 3 bytes 45\n");
    assert_eq!(ok(&["remove", "ch", "1"]), b"removed\n");
    assert_eq!(ok(&["remove", "ch", "1"]), b"absent\n");

    let ranges = text(&ok(&["ranges"]));
    let expected: Vec<String> = nodes
        .iter()
        .zip(split_evenly(3))
        .map(|(node, range)| format!("{} {range}", node.addr))
        .collect();
    assert_eq!(ranges.lines().collect::<Vec<_>>(), expected);

    // The same cluster from a topology file's [dht] section.
    let from_file = swarmctl_with_a_topology_file(&nodes, &["dht", "get", "ch", "16"]);
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    assert_eq!(from_file.stdout, b"sixteen");

    ok(&["remove-channel", "ch"]);
    assert_eq!(ok(&["channels"]), b"");

    // Bad keys are usage errors; a partial cluster is refused (a cluster failure), and
    // `ranges` shows why.
    let bad_key = swarmctl(&nodes, &["get", "ch", "0xZZ"], None);
    assert_eq!(bad_key.status.code(), Some(2));
    let partial = swarmctl(&nodes[..2], &["get", "ch", "1"], None);
    assert_eq!(partial.status.code(), Some(3));
    assert!(
        text(&partial.stderr).contains("are owned by no node"),
        "{}",
        text(&partial.stderr)
    );
    let gap = swarmctl(&nodes[..2], &["ranges"], None);
    assert_eq!(gap.status.code(), Some(3));
    let range = split_evenly(3)[2];
    assert!(
        text(&gap.stdout).contains(&format!("gap 0x{:016x}:0x{:016x}", range.min, range.max)),
        "{}",
        text(&gap.stdout)
    );
}

#[test]
fn swarmctl_dht_listen_prints_changes_until_the_channel_is_removed() {
    let nodes: Vec<Node> = split_evenly(2).into_iter().map(start).collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    for node in &nodes {
        command.arg("--node").arg(node.addr.to_string());
    }
    let listener = command
        .args(["dht", "listen", "watched"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("swarmctl listen");
    let dht = DhtClient::connect(&addrs(&nodes), options()).expect("connects");
    // The listener's streams must be open before the changes: wait until both nodes count its
    // connection.
    let deadline = Instant::now() + WAIT;
    while (0..2).any(|node| dht.client().get_num_connections(node).expect("count") < 2) {
        assert!(Instant::now() < deadline, "listener never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    dht.put("watched", 1, b"one").expect("put");
    dht.put("watched", 2, b"two").expect("put");
    dht.remove("watched", 1).expect("remove");
    dht.remove_channel("watched").expect("remove channel");
    let output = listener.wait_with_output().expect("listener ends");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut lines: Vec<String> = text(&output.stdout).lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "changed 0000000000000001\tone",
            "changed 0000000000000002\ttwo",
            "removed 0000000000000001",
        ]
    );
}
