//! Redistribution of a running dht cluster, with real `dhtnode` processes on OS-chosen ports:
//! growing from two nodes to three and four while a writer and a reader keep working, a
//! receiving node killed with SIGKILL in the middle of a move, and the `swarmctl dht
//! redistribute` / `dht ranges` verbs.
//!
//! The node binary is built on first use, like in `dht.rs`.

use client::dht::redistribute::{plan, request_for, RedistEvent, Redistribution, Strategy};
use client::dht::{GetAllOptions, HashRange};
use client::{ClientOptions, DhtClient};
use node_core::protocol::dht::{split_evenly, tiling_problems};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const CHANNELS: [&str; 2] = ["alpha", "beta"];
/// Records in the cluster before it grows, over both channels.
const RECORDS: u64 = 200_000;
const EMPTY: &str = "ffffffffffffffff:0000000000000000";

// ----- harness ----------------------------------------------------------------------------------

fn dhtnode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("dhtnode", "dhtnode"))
}

type Node = testkit::TempNode;

fn start(range: &str) -> Node {
    let binary = dhtnode_binary().to_string_lossy().into_owned();
    testkit::TempNode::start(&binary, "", &["--range", range])
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 5000,
        request_timeout_ms: 20_000,
        ..ClientOptions::default()
    }
}

fn addrs(nodes: &[&Node]) -> Vec<SocketAddr> {
    nodes.iter().map(|node| node.addr).collect()
}

fn value_of(channel: &str, key: u64) -> Vec<u8> {
    format!("{channel}/{key}/0123456789abcdef").into_bytes()
}

/// `swarmctl --node ... dht ARGS`.
fn swarmctl(nodes: &[SocketAddr], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    for node in nodes {
        command.arg("--node").arg(node.to_string());
    }
    command
        .args(["--timeout-ms", "20000", "dht"])
        .args(args)
        .output()
        .expect("swarmctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every record of `channel` over the cluster, checked to come exactly once.
fn all_records(dht: &DhtClient, channel: &str) -> BTreeMap<u64, Vec<u8>> {
    let mut records = BTreeMap::new();
    for record in dht.get_all(channel, GetAllOptions::default()) {
        let (key, value) = record.expect("get_all");
        assert!(
            records.insert(key, value).is_none(),
            "channel {channel}: key {key} delivered twice"
        );
    }
    records
}

/// The ranges tile the space, and no node holds a record outside its range (nothing left
/// behind by a move).
fn assert_clean(dht: &DhtClient) {
    dht.refresh_ranges().expect("refresh");
    let table = dht.range_table();
    let ranges: Vec<HashRange> = table.entries().iter().map(|(_, r)| *r).collect();
    assert_eq!(tiling_problems(&ranges), vec![], "ranges: {ranges:?}");
    for (node, (addr, range)) in table.entries().iter().enumerate() {
        for channel in CHANNELS {
            let options = GetAllOptions {
                keys_only: true,
                filter: None,
            };
            for record in client::dht::GetAll::single_node(dht, node, channel, options) {
                let (key, _) = record.expect("single-node get_all");
                assert!(
                    range.is_responsible_for(key),
                    "node {addr} ({range}) still holds key {key} of {channel}"
                );
            }
        }
    }
}

/// Checks that the cluster holds exactly `expected` (per channel).
fn assert_holds(dht: &DhtClient, expected: &BTreeMap<&str, BTreeMap<u64, Vec<u8>>>) {
    for (channel, records) in expected {
        let found = all_records(dht, channel);
        assert_eq!(
            found.len(),
            records.len(),
            "channel {channel}: record count"
        );
        assert!(found == *records, "channel {channel}: records differ");
    }
}

/// A writer of new keys and a reader of known ones, running until stopped; they report every
/// error they meet.
struct Load {
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Vec<u64>>>,
    errors: Arc<Mutex<Vec<String>>>,
    reads: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(dht: &Arc<DhtClient>, next_key: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let reads = Arc::new(AtomicU64::new(0));
        let writer = {
            let (dht, stop, written, errors) =
                (dht.clone(), stop.clone(), written.clone(), errors.clone());
            std::thread::spawn(move || {
                let mut key = next_key;
                while !stop.load(Ordering::Relaxed) {
                    match dht.put(CHANNELS[0], key, &value_of(CHANNELS[0], key)) {
                        Ok(()) => written.lock().unwrap().push(key),
                        Err(error) => errors.lock().unwrap().push(format!("put {key}: {error}")),
                    }
                    key += 1;
                }
            })
        };
        let reader = {
            let (dht, stop, written, errors, reads) = (
                dht.clone(),
                stop.clone(),
                written.clone(),
                errors.clone(),
                reads.clone(),
            );
            std::thread::spawn(move || {
                let mut step = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    step += 1;
                    // Alternately a loaded record (spread over the keys) and a recent write.
                    let (channel, key) = if step.is_multiple_of(2) {
                        let channel = CHANNELS[(step / 2 % 2) as usize];
                        (channel, step.wrapping_mul(7919) % (RECORDS / 2))
                    } else {
                        let written = written.lock().unwrap();
                        match written.last() {
                            Some(key) => (CHANNELS[0], *key),
                            None => continue,
                        }
                    };
                    match dht.get(channel, key) {
                        Ok(Some(value)) if value == value_of(channel, key) => {}
                        Ok(other) => errors.lock().unwrap().push(format!(
                            "get {channel} {key}: {:?}",
                            other.map(|v| text(&v))
                        )),
                        Err(error) => errors
                            .lock()
                            .unwrap()
                            .push(format!("get {channel} {key}: {error}")),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Load {
            stop,
            written,
            errors,
            reads,
            threads: vec![writer, reader],
        }
    }

    /// Stops both; returns the keys written.
    fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("load thread");
        }
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "{} errors during the move, first: {:?}",
            errors.len(),
            &errors[..errors.len().min(5)]
        );
        assert!(
            self.reads.load(Ordering::Relaxed) > 0,
            "the reader did read during the move"
        );
        let written = self.written.lock().unwrap().clone();
        assert!(!written.is_empty(), "the writer did write during the move");
        written
    }
}

// ----- tests ------------------------------------------------------------------------------------

#[test]
fn a_two_node_cluster_grows_to_three_and_four_nodes_while_it_is_read_and_written() {
    let started = Instant::now();
    let halves = split_evenly(2);
    let a = start(&halves[0].to_string());
    let b = start(&halves[1].to_string());
    let c = start(EMPTY);
    let d = start(EMPTY);
    let all = [&a, &b, &c, &d];
    // The empty nodes own nothing: the four already tile the space.
    let dht = Arc::new(DhtClient::connect(&addrs(&all), options()).expect("connect"));
    let mut expected = load_channels(&dht);
    eprintln!("loaded {RECORDS} records at {:?}", started.elapsed());

    let mut next_key = 1u64 << 40;
    for (step, nodes) in [&all[..3], &all[..4]].into_iter().enumerate() {
        let load = Load::start(&dht, next_key);
        let output = swarmctl(&addrs(nodes), &["redistribute", "--execute"]);
        let written = load.finish();
        assert!(
            output.status.success(),
            "step {step}: swarmctl failed: {}\n{}",
            text(&output.stderr),
            text(&output.stdout)
        );
        assert!(
            text(&output.stdout).contains("the ranges tile the hash space"),
            "{}",
            text(&output.stdout)
        );
        eprintln!(
            "step {step}: moved to {} nodes at {:?}, {} writes during the move",
            nodes.len(),
            started.elapsed(),
            written.len()
        );
        next_key = written.last().copied().unwrap_or(next_key) + 1;
        let live = expected.get_mut(CHANNELS[0]).expect("channel");
        for key in written {
            live.insert(key, value_of(CHANNELS[0], key));
        }
        assert_clean(&dht);
        assert_holds(&dht, &expected);
        let table = dht.range_table();
        let new: Vec<HashRange> = table.entries().iter().map(|(_, r)| *r).collect();
        let count = nodes.len();
        assert_eq!(&new[..count], &split_evenly(count)[..], "step {step}");
    }
    eprintln!("done at {:?}", started.elapsed());
}

/// Polls node `node`'s redistribution state until `done` says so.
fn wait_for_state(
    client: &client::Client,
    node: usize,
    what: &str,
    mut done: impl FnMut(&node_core::protocol::dht::RedistributionState) -> bool,
) -> node_core::protocol::dht::RedistributionState {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(state) = client::dht::redistribute::state(client, node) {
            if done(&state) {
                return state;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs one node's Redistribute to its end; returns its final event.
fn run_redistribution(
    client: &client::Client,
    node: usize,
    request: &node_core::protocol::dht::RedistributeRequest,
) -> RedistEvent {
    let mut running = Redistribution::start(client, node, request).expect("start");
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while let Some(event) = running.next(Duration::from_millis(200)) {
        if let Some(event) = event.expect("redistribution event") {
            last = Some(event);
        }
        assert!(Instant::now() < deadline, "redistribution did not end");
    }
    last.expect("an event")
}

/// Loads records 0..RECORDS/2 into each of [`CHANNELS`]; returns them by channel.
fn load_channels(dht: &DhtClient) -> BTreeMap<&'static str, BTreeMap<u64, Vec<u8>>> {
    let mut expected = BTreeMap::new();
    for channel in CHANNELS {
        let records: BTreeMap<u64, Vec<u8>> = (0..RECORDS / 2)
            .map(|key| (key, value_of(channel, key)))
            .collect();
        dht.put_batch(channel, records.iter().map(|(k, v)| (*k, v.as_slice())))
            .expect("load");
        expected.insert(channel, records);
    }
    expected
}

/// Waits until node `node` holds a record of `channel`.
fn wait_for_a_record_on(control: &client::Client, node: usize, channel: &str) {
    let mut body = Vec::new();
    node_core::protocol::dht::encode_channel(&mut body, channel);
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = control
            .request(node, node_core::protocol::dht::GET_CHANNEL_SIZE, &body)
            .expect("GetChannelSize");
        let size = client::dht::SizeInfo::decode(&reply.body).expect("size");
        if size.records > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no record of {channel} reached the receiver"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILLs `node` and starts it again on its address and data directory, without --range (its
/// state file knows its range).
fn kill_and_restart(node: &mut Node) {
    let addr = node.addr;
    node.node.child.kill().expect("SIGKILL the receiver");
    node.node.child.wait().expect("reap");
    std::thread::sleep(Duration::from_millis(300));
    let binary = dhtnode_binary().to_string_lossy().into_owned();
    node.node = testkit::Node::start_in(&binary, node.dir.path(), &["--listen", &addr.to_string()]);
}

/// Starts `request` on node `node`, whose target refuses every record: it reports progress, goes
/// on after its watcher leaves, and its attempts fail with "wrong node".
fn start_a_move_that_fails(
    control: &client::Client,
    node: usize,
    request: &node_core::protocol::dht::RedistributeRequest,
) {
    let mut progress = Redistribution::start(control, node, request).expect("start");
    let first = progress.next(WAIT).expect("an event").expect("no error");
    assert!(matches!(first, Some(RedistEvent::Progress(_))), "{first:?}");
    // The watcher goes away; the move goes on.
    drop(progress);
    let state = wait_for_state(control, node, "failed attempts", |state| {
        state.running && state.progress.failures > 0
    });
    assert!(
        state.progress.last_error.contains("wrong node"),
        "{state:?}"
    );
}

/// A Redistribute to node `node` while its move runs is refused with Busy, "already running".
fn expect_a_second_redistribute_refused(
    control: &client::Client,
    node: usize,
    request: &node_core::protocol::dht::RedistributeRequest,
) {
    let second = Redistribution::start(control, node, request)
        .expect("start")
        .next(WAIT)
        .expect("an event");
    match second {
        Err(client::ClientError::Status {
            status, message, ..
        }) => {
            assert_eq!(status, client::Status::Busy);
            assert!(message.contains("already running"), "{message}");
        }
        other => panic!("a second Redistribute must be refused with Busy: {other:?}"),
    }
}

#[test]
fn a_receiver_killed_in_the_middle_of_a_move_gets_everything_after_its_restart() {
    let a = start(&HashRange::FULL.to_string());
    let mut b = start(EMPTY);
    let dht = DhtClient::connect(&addrs(&[&a, &b]), options()).expect("connect");
    let expected = load_channels(&dht);
    let current = [(a.addr, HashRange::FULL), (b.addr, HashRange::EMPTY)];
    let planned = plan(&current, Strategy::Even).expect("plan");
    let control = client::Client::connect(&addrs(&[&a, &b]), None, options()).expect("control");
    // The receiver takes its range first (it has nothing to give).
    let done = run_redistribution(&control, 1, &request_for(&planned, 1));
    assert!(matches!(done, RedistEvent::Done(_)), "{done:?}");

    let sender = {
        let request = request_for(&planned, 0);
        let control = client::Client::connect(&addrs(&[&a]), None, options()).expect("control");
        std::thread::spawn(move || run_redistribution(&control, 0, &request))
    };
    // Kill the receiver once the move is under way: the first channel moved (committed and
    // deleted on the sender), records of the second stored on the receiver, in memory only.
    wait_for_state(&control, 0, "the first channel to move", |state| {
        state.progress.moved > 0
    });
    wait_for_a_record_on(&control, 1, CHANNELS[1]);
    let state = client::dht::redistribute::state(&control, 0).expect("state");
    assert!(
        state.running && state.progress.moved < state.progress.total,
        "the move ended before the receiver could be killed: {state:?}"
    );
    kill_and_restart(&mut b);

    let done = sender.join().expect("sender thread");
    let RedistEvent::Done(done) = done else {
        panic!("the redistribution ended without Done: {done:?}")
    };
    let state = wait_for_state(&control, 0, "the end", |state| !state.running);
    assert!(
        state.progress.failures > 0,
        "the kill made attempts fail: {state:?}"
    );
    assert!(done.moved > 0 && done.stranded == 0, "{done:?}");
    assert!(
        b.root_log()
            .contains(&format!("hash range {}", planned[1].new)),
        "the restarted receiver took its range from its state file:\n{}",
        b.root_log()
    );
    assert_clean(&dht);
    assert_holds(&dht, &expected);
    assert!(
        a.root_log().contains("restarted before it committed")
            || a.root_log().contains("restarted since it took"),
        "the sender noticed that the receiver lost what it had not committed:\n{}",
        a.root_log()
    );
}

/// A node redistributes towards a node that refuses (its range is not the one the request
/// names), so the move stays under way, records stay on their old node, and the cluster is
/// used in that state.
#[test]
fn while_a_move_is_stuck_records_are_read_removed_and_listed_where_they_are() {
    let a = start(&HashRange::FULL.to_string());
    let b = start(EMPTY);
    let c = start(EMPTY);
    let nodes = addrs(&[&a, &b, &c]);
    let dht = DhtClient::connect(&nodes, options()).expect("connect");
    let channel = CHANNELS[0];
    let mut expected: BTreeMap<u64, Vec<u8>> =
        (0..2000).map(|key| (key, value_of(channel, key))).collect();
    dht.put_batch(channel, expected.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("load");
    let halves = split_evenly(2);
    let control = client::Client::connect(&nodes, None, options()).expect("control");
    let b_takes = node_core::protocol::dht::RedistributeRequest {
        range: halves[1],
        targets: vec![],
    };
    assert!(matches!(
        run_redistribution(&control, 1, &b_takes),
        RedistEvent::Done(_)
    ));
    // A hands its upper half to C, which owns nothing and refuses every record (WrongNode).
    let a_gives = node_core::protocol::dht::RedistributeRequest {
        range: halves[0],
        targets: vec![node_core::protocol::dht::RedistributeTarget {
            address: c.addr,
            range: halves[1],
        }],
    };
    start_a_move_that_fails(&control, 0, &a_gives);
    expect_a_second_redistribute_refused(&control, 0, &a_gives);

    // The client learns the new ranges: A the lower half, B the upper; A is moving.
    dht.refresh_ranges().expect("refresh");
    assert!(dht.is_moving());
    let upper: Vec<u64> = (0..2000)
        .filter(|key| halves[1].is_responsible_for(*key))
        .collect();
    let (read, rewritten, removed) = (upper[0], upper[1], upper[2]);
    // Still on A only, outside its range: found there.
    assert_eq!(
        dht.get(channel, read).expect("get"),
        Some(value_of(channel, read))
    );
    assert!(dht.exists(channel, read).expect("exists"));
    // Written anew: the new owner B has the new value, A the old one; the new one wins.
    dht.put(channel, rewritten, b"newer")
        .expect("put to the new owner");
    assert_eq!(
        dht.get(channel, rewritten).expect("get"),
        Some(b"newer".to_vec())
    );
    expected.insert(rewritten, b"newer".to_vec());
    // Removed: gone from A too.
    assert!(dht.remove(channel, removed).expect("remove"));
    assert_eq!(dht.get(channel, removed).expect("get"), None);
    expected.remove(&removed);
    // A key nobody holds: NotFound after asking the owner, A, and the owner again.
    assert_eq!(dht.get(channel, 1 << 50).expect("get"), None);
    // The whole channel, exactly once, with the newer value.
    let found = all_records(&dht, channel);
    assert_eq!(found.len(), expected.len());
    assert!(found == expected, "GetAll during the move differs");
    // swarmctl shows the move.
    let ranges = swarmctl(&nodes, &["ranges"]);
    assert!(
        text(&ranges.stdout).contains(&format!("{} {} redistributing: 0 of", a.addr, halves[0])),
        "{}",
        text(&ranges.stdout)
    );
}

#[test]
fn moved_records_reach_the_listeners_of_their_new_node() {
    let a = start(&HashRange::FULL.to_string());
    let b = start(EMPTY);
    let nodes = addrs(&[&a, &b]);
    let dht = DhtClient::connect(&nodes, options()).expect("connect");
    let channel = CHANNELS[1];
    let records: BTreeMap<u64, Vec<u8>> =
        (0..3000).map(|key| (key, value_of(channel, key))).collect();
    dht.put_batch(channel, records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("load");
    let mut listener = dht.listen(channel).expect("listen");
    let output = swarmctl(&nodes, &["redistribute", "--execute"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let halves = split_evenly(2);
    let moved: BTreeMap<u64, Vec<u8>> = records
        .into_iter()
        .filter(|(key, _)| halves[1].is_responsible_for(*key))
        .collect();
    let mut heard = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while heard.len() < moved.len() {
        assert!(
            Instant::now() < deadline,
            "heard {} of {}",
            heard.len(),
            moved.len()
        );
        match listener.next(Duration::from_millis(500)).expect("listen") {
            Some(client::dht::ListenEvent::Changed { key, value }) => {
                heard.insert(key, value);
            }
            Some(other) => panic!("only moved records change: {other:?}"),
            None => {}
        }
    }
    assert!(
        heard == moved,
        "the listener heard every moved record with its value"
    );
}

#[test]
fn only_admins_redistribute_and_the_node_moves_records_under_the_admins_name() {
    let keys = tempfile::tempdir().expect("temp dir");
    let credentials = keys.path().join("credentials");
    let ops_key = "00112233445566778899aabbccddeeff";
    let reader_key = "ffeeddccbbaa99887766554433221100";
    std::fs::write(
        &credentials,
        format!("ops:{ops_key}\nreader:{reader_key}\n"),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let config = format!(
        "[auth]\ncredentials_file = \"{}\"\nadmins = [\"ops\"]\n",
        credentials.display()
    );
    let binary = dhtnode_binary().to_string_lossy().into_owned();
    let a = testkit::TempNode::start(&binary, &config, &["--range", &HashRange::FULL.to_string()]);
    let b = testkit::TempNode::start(&binary, &config, &["--range", EMPTY]);
    let nodes = addrs(&[&a, &b]);
    let as_user = |name: &str, key: &str| ClientOptions {
        credentials: Some((name.into(), client::Key::from_hex(key).expect("key"))),
        ..options()
    };
    let reader =
        client::Client::connect(&nodes, None, as_user("reader", reader_key)).expect("reader");
    let planned = plan(
        &[(a.addr, HashRange::FULL), (b.addr, HashRange::EMPTY)],
        Strategy::Even,
    )
    .expect("plan");
    let refused = Redistribution::start(&reader, 0, &request_for(&planned, 0))
        .expect("start")
        .next(WAIT)
        .expect("an event");
    assert!(
        matches!(
            refused,
            Err(client::ClientError::Status {
                status: client::Status::NotPermitted,
                ..
            })
        ),
        "{refused:?}"
    );
    let dht = DhtClient::connect(&nodes, as_user("ops", ops_key)).expect("ops");
    dht.put_batch(CHANNELS[0], (0..500u64).map(|key| (key, &b"value"[..])))
        .expect("load");
    let ops = client::Client::connect(&nodes, None, as_user("ops", ops_key)).expect("ops");
    assert!(matches!(
        run_redistribution(&ops, 1, &request_for(&planned, 1)),
        RedistEvent::Done(_)
    ));
    match run_redistribution(&ops, 0, &request_for(&planned, 0)) {
        RedistEvent::Done(done) => assert!(done.moved > 200, "{done:?}"),
        other => panic!("{other:?}"),
    }
    dht.refresh_ranges().expect("refresh");
    assert_eq!(all_records(&dht, CHANNELS[0]).len(), 500);
}

#[test]
fn swarmctl_plans_a_dry_run_and_changes_nothing_without_execute() {
    let a = start(&HashRange::FULL.to_string());
    let b = start(EMPTY);
    let nodes = addrs(&[&a, &b]);
    let dht = DhtClient::connect(&nodes, options()).expect("connect");
    dht.put_batch(
        CHANNELS[0],
        (0..1000u64).map(|key| (key, &b"0123456789"[..])),
    )
    .expect("load");
    // The nodes file: a plain list of addresses, as the reference's dhtredist took.
    let dir = tempfile::tempdir().expect("temp dir");
    let list = dir.path().join("nodes.txt");
    std::fs::write(&list, format!("# the cluster\n{}\n\n{}\n", a.addr, b.addr)).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_swarmctl"))
        .arg("--nodes")
        .arg(&list)
        .args(["dht", "redistribute", "--strategy", "even"])
        .output()
        .expect("swarmctl");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let halves = split_evenly(2);
    assert!(
        stdout.contains(&format!(
            "{} {} -> {} records 1000 bytes 18000 moves ~500 records ~9000 bytes",
            a.addr,
            HashRange::FULL,
            halves[0]
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} empty -> {}", b.addr, halves[1])),
        "{stdout}"
    );
    assert!(stdout.contains("dry run"), "{stdout}");
    dht.refresh_ranges().expect("refresh");
    assert_eq!(
        dht.ranges(),
        vec![(a.addr, HashRange::FULL), (b.addr, HashRange::EMPTY)],
        "a dry run changes nothing"
    );
    let split = swarmctl(
        &nodes,
        &["redistribute", "--strategy", "split", "--execute"],
    );
    assert!(split.status.success(), "{}", text(&split.stderr));
    let again = swarmctl(&nodes, &["redistribute"]);
    assert!(
        text(&again.stdout).contains("No change in node hash ranges"),
        "{}",
        text(&again.stdout)
    );
}
