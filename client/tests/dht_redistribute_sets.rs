//! Redistribution of a cluster of replica sets (issue #19 item 5), on real dhtnode processes:
//!
//! - `two_sets_of_two_grow_to_three_sets_of_two_under_a_writer`: two sets of two and two new
//!   empty nodes; `swarmctl dht redistribute --execute` while a client writes (puts and
//!   removes, with versions). Afterwards the new nodes are a third set of two, every
//!   acknowledged key reads back from every member of its new set with the same value and
//!   version, records written before the move kept their versions and removed keys their
//!   tombstones, no member holds a key outside its range, and the members of every set hold
//!   identical records (a digest of each one's GetAll).
//! - `a_plan_with_a_member_down_is_refused_naming_it`: nothing changes.
//! - `a_receiving_member_down_during_the_move_holds_it_back_and_loses_nothing`: the giving
//!   members keep what the down member has not committed, and finish once it is back.

mod real_cluster;

use client::dht::redistribute::{plan, request_for, RedistEvent, Redistribution, Strategy};
use client::dht::{GetAll, GetAllOptions};
use client::{ClientError, DhtClient};
use node_core::protocol::dht::{
    self as wire, split_evenly, HashRange, KeyRequest, RedistributeRequest,
};
use node_core::protocol::Status;
use real_cluster::{addrs, options, wait_until, RealCluster};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHANNEL: &str = "moving";
/// Keys written before the move; the writer then overwrites and removes some and adds others.
const KEYS_BEFORE: u64 = 3000;
const LIMIT: Duration = Duration::from_secs(60);

/// Two sets of two (halves of the hash space), then two nodes with the empty range.
fn two_sets_and_two_new_nodes() -> RealCluster {
    let halves = split_evenly(2);
    let ranges = vec![
        halves[0],
        halves[0],
        halves[1],
        halves[1],
        HashRange::EMPTY,
        HashRange::EMPTY,
    ];
    RealCluster::start_with_ranges(ranges, 0, 0)
}

/// `swarmctl --node ... dht redistribute ARGS`, killed (and the test failed) if it has not
/// ended within [`LIMIT`]: a move that never finishes is a failure, not a hang.
fn swarmctl(cluster: &RealCluster, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    for node in &cluster.dht {
        command.arg("--node").arg(node.addr.to_string());
    }
    // Into files: a pipe nobody reads while the test waits could fill and stop swarmctl.
    let (out, err) = (
        cluster.dir.path().join("out"),
        cluster.dir.path().join("err"),
    );
    let file = |path: &std::path::Path| std::fs::File::create(path).expect("output file");
    let mut child = command
        .args(["--timeout-ms", "20000", "dht", "redistribute"])
        .args(args)
        .stdout(file(&out))
        .stderr(file(&err))
        .spawn()
        .expect("swarmctl runs");
    let ended = wait_until_or_none(LIMIT, || {
        child.try_wait().expect("swarmctl status").is_some()
    });
    let read = |path: &std::path::Path| std::fs::read(path).expect("output");
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "swarmctl dht redistribute {args:?} did not end within {LIMIT:?}: {}{}",
            text(&read(&out)),
            text(&read(&err))
        );
    }
    Output {
        status: child.wait().expect("swarmctl status"),
        stdout: read(&out),
        stderr: read(&err),
    }
}

/// Polls `condition` every 50 ms for at most `limit`: whether it held.
fn wait_until_or_none(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while !condition() {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What node `node` itself holds of `key`: `Some((version, value))` for a record, `None` with
/// the tombstone's version (0: nothing held).
fn held(dht: &DhtClient, node: usize, key: u64) -> Result<(u64, Vec<u8>), u64> {
    let mut body = Vec::new();
    KeyRequest {
        channel: CHANNEL,
        key,
    }
    .encode(&mut body);
    let reply = dht
        .client()
        .request(node, wire::GET_WITH_VERSION, &body)
        .expect("a request to one node");
    match wire::decode_versioned_lookup(reply.status == Status::Ok, &reply.body) {
        Ok(wire::VersionedLookup::Found { version, value }) => Ok((version, value.to_vec())),
        Ok(wire::VersionedLookup::Tombstone { version }) => Err(version),
        Ok(wire::VersionedLookup::Absent) => Err(0),
        Err(error) => panic!("GetWithVersion of {key} on node {node}: {error}"),
    }
}

/// Every record one node holds of the channel (its own GetAll).
fn records_on(dht: &DhtClient, node: usize) -> BTreeMap<u64, Vec<u8>> {
    GetAll::single_node(dht, node, CHANNEL, GetAllOptions::default())
        .map(|record| record.expect("record"))
        .collect()
}

/// A digest of a node's records: count and a hash of keys and values in key order.
fn digest(records: &BTreeMap<u64, Vec<u8>>) -> (usize, u64) {
    let mut bytes = Vec::new();
    for (key, value) in records {
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&(value.len() as u64).to_le_bytes());
        bytes.extend_from_slice(value);
    }
    (records.len(), client::dht::key_from_bytes(&bytes))
}

/// The last acknowledged state of every key the writer wrote: `None` once removed.
type Acked = Arc<Mutex<HashMap<u64, Option<Vec<u8>>>>>;

/// Puts (and every seventh operation a remove) over half the old keys and as many new ones
/// until stopped; returns the failures.
fn writer(
    dht: Arc<DhtClient>,
    acked: Acked,
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<ClientError>> {
    std::thread::spawn(move || {
        let mut failures = Vec::new();
        let mut seq = 0u64;
        while !stop.load(Ordering::Acquire) {
            // Half the keys written before the move and as many new ones: the other half
            // (the keys below KEYS_BEFORE / 2) stays as it was, to be found moved.
            let key = KEYS_BEFORE / 2 + (seq * 7919) % KEYS_BEFORE;
            let result = if seq.is_multiple_of(7) {
                dht.remove(CHANNEL, key).map(|_| None)
            } else {
                let value = format!("during {seq}").into_bytes();
                dht.put(CHANNEL, key, &value).map(|()| Some(value))
            };
            match result {
                Ok(state) => {
                    acked.lock().expect("lock").insert(key, state);
                    writes.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => failures.push(error),
            }
            seq += 1;
            std::thread::sleep(Duration::from_micros(500));
        }
        failures
    })
}

/// What each key's owner holds of it: a record (version, value) or a tombstone's version.
type Held = HashMap<u64, Result<(u64, Vec<u8>), u64>>;

/// Before the move: records (versioned) of every key below [`KEYS_BEFORE`], then 100 of them
/// removed in each third of the hash space (each set after the move), all among the keys the
/// writer leaves alone. Returns what each key's owner holds then, and the removed keys.
fn write_before_the_move(dht: &DhtClient) -> (Held, Vec<u64>) {
    for key in 0..KEYS_BEFORE {
        dht.put(CHANNEL, key, format!("before {key}").as_bytes())
            .expect("put");
    }
    let removed: Vec<u64> = split_evenly(3)
        .into_iter()
        .flat_map(|third| {
            (0..KEYS_BEFORE)
                .filter(move |key| third.is_responsible_for(*key))
                .take(100)
        })
        .collect();
    assert!(removed.iter().all(|key| *key < KEYS_BEFORE / 2));
    for key in &removed {
        assert!(dht.remove(CHANNEL, *key).expect("remove"));
    }
    let held_then = (0..KEYS_BEFORE)
        .map(|key| (key, held(dht, dht.node_for(key).expect("owned"), key)))
        .collect();
    (held_then, removed)
}

#[test]
fn two_sets_of_two_grow_to_three_sets_of_two_under_a_writer() {
    let cluster = two_sets_and_two_new_nodes();
    let dht = Arc::new(DhtClient::connect(&addrs(&cluster.dht), options()).expect("connect"));
    assert_eq!(dht.replica_sets().len(), 2);
    let (before, removed_before) = write_before_the_move(&dht);

    let acked: Acked = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writing = writer(
        Arc::clone(&dht),
        Arc::clone(&acked),
        Arc::clone(&stop),
        Arc::clone(&writes),
    );
    wait_until("the writer to start", LIMIT, || {
        writes.load(Ordering::Relaxed) > 100
    });
    let moved = swarmctl(&cluster, &["--execute"]);
    let out = text(&moved.stdout);
    assert!(moved.status.success(), "{out}\n{}", text(&moved.stderr));
    assert!(out.contains("redistribution done"), "{out}");
    let after_move = writes.load(Ordering::Relaxed);
    wait_until("writes after the move", LIMIT, || {
        writes.load(Ordering::Relaxed) > after_move + 100
    });
    stop.store(true, Ordering::Release);
    let failures = writing.join().expect("writer");
    assert!(
        failures.is_empty(),
        "{} writes failed, first: {}",
        failures.len(),
        failures[0]
    );
    println!(
        "{} writes acknowledged during and after the move",
        writes.load(Ordering::Relaxed)
    );

    dht.refresh_ranges().expect("ranges");
    let thirds = split_evenly(3);
    let sets = dht.replica_sets();
    let layout: Vec<(HashRange, Vec<usize>)> = sets
        .iter()
        .map(|set| (set.set.range, set.set.members.clone()))
        .collect();
    assert_eq!(
        layout,
        vec![
            (thirds[0], vec![0, 1]),
            (thirds[1], vec![2, 3]),
            (thirds[2], vec![4, 5])
        ],
        "three sets of two"
    );
    every_member_holds_the_same(&dht, &acked, &before, &removed_before);
}

/// The checks after the move (see the module doc).
fn every_member_holds_the_same(
    dht: &DhtClient,
    acked: &Acked,
    before: &Held,
    removed_before: &[u64],
) {
    let acked = acked.lock().expect("lock").clone();
    let members_of = |key: u64| {
        let first = dht.node_for(key).expect("owned");
        [first, first + 1]
    };
    for (key, expected) in &acked {
        let [a, b] = members_of(*key);
        let (on_a, on_b) = (held(dht, a, *key), held(dht, b, *key));
        assert_eq!(on_a, on_b, "key {key}: members {a} and {b} differ");
        match expected {
            Some(value) => assert_eq!(on_a.as_ref().map(|(_, v)| v), Ok(value), "key {key}"),
            None => assert!(on_a.is_err(), "key {key} was removed: {on_a:?}"),
        }
    }
    // Untouched by the writer: as before the move, version included, tombstones too.
    let mut moved_tombstones = 0;
    let untouched = before.keys().filter(|key| !acked.contains_key(key)).count();
    assert!(untouched >= KEYS_BEFORE as usize / 2, "{untouched}");
    for (key, was) in before.iter().filter(|(key, _)| !acked.contains_key(key)) {
        let [a, b] = members_of(*key);
        assert_eq!(&held(dht, a, *key), was, "key {key} on node {a}");
        assert_eq!(&held(dht, b, *key), was, "key {key} on node {b}");
        if a == 4 && removed_before.contains(key) {
            moved_tombstones += 1;
        }
    }
    assert!(moved_tombstones > 0, "tombstones moved to the new set");
    for node in 0..6 {
        let range = dht.range_table().entries()[node].1;
        let records = records_on(dht, node);
        if let Some(key) = records.keys().find(|key| !range.is_responsible_for(**key)) {
            panic!("node {node} ({range}) still holds key {key} outside its range");
        }
        if node % 2 == 1 {
            let peer = digest(&records_on(dht, node - 1));
            println!("set of nodes {} and {node}: {peer:?}", node - 1);
            assert_eq!(peer, digest(&records), "the members of a set differ");
            assert!(peer.0 > 0);
        }
    }
}

#[test]
fn a_plan_with_a_member_down_is_refused_naming_it() {
    let mut cluster = two_sets_and_two_new_nodes();
    let down = cluster.dht[3].addr;
    cluster.dht[3].kill9();
    for args in [&[][..], &["--execute"][..]] {
        let refused = swarmctl(&cluster, args);
        let error = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(3), "{error}");
        assert!(
            error.contains(&format!("member {down}")) && error.contains("is down"),
            "{error}"
        );
        assert!(text(&refused.stdout).is_empty(), "no plan printed");
    }
    // Nothing changed: every live node keeps its range and runs no redistribution.
    let live: Vec<usize> = [0, 1, 2, 4, 5].to_vec();
    let tolerant = client::ClientOptions {
        allow_down_nodes: true,
        ..options()
    };
    let control = client::Client::connect(&addrs(&cluster.dht), None, tolerant).expect("connect");
    for node in live {
        let state = client::dht::redistribute::state(&control, node).expect("state");
        assert!(!state.running);
        assert_eq!(state.range.normalized(), cluster.ranges[node].normalized());
    }
}

/// Runs one node's Redistribute to its end.
fn run_to_the_end(client: &client::Client, node: usize, request: &RedistributeRequest) {
    follow_to_the_end(Redistribution::start(client, node, request).expect("start"));
}

/// Follows a running Redistribute until it is done (within [`LIMIT`]).
fn follow_to_the_end(mut running: Redistribution) {
    let started = Instant::now();
    let mut last = None;
    while let Some(event) = running.next(Duration::from_millis(200)) {
        if let Some(event) = event.expect("redistribution event") {
            last = Some(event);
        }
        assert!(started.elapsed() < LIMIT, "the move did not end");
    }
    assert!(matches!(last, Some(RedistEvent::Done(_))), "{last:?}");
}

/// The `even` plan of the cluster's nodes as started.
fn even_plan(cluster: &RealCluster) -> Vec<client::dht::redistribute::NodeRange> {
    let current: Vec<_> = cluster
        .dht
        .iter()
        .zip(&cluster.ranges)
        .map(|(node, range)| (node.addr, *range))
        .collect();
    plan(&current, Strategy::Even).expect("plan")
}

/// A member of the receiving set down during the move (past swarmctl's check, with the
/// library): the giving members keep every record it has not committed, and retry; once it
/// is back, the move ends with both members of the new set holding the same records, and
/// nothing left behind.
#[test]
fn a_receiving_member_down_during_the_move_holds_it_back_and_loses_nothing() {
    let mut cluster = two_sets_and_two_new_nodes();
    let dht = DhtClient::connect(&addrs(&cluster.dht), options()).expect("connect");
    let (before, _) = write_before_the_move(&dht);
    let tolerant = client::ClientOptions {
        allow_down_nodes: true,
        ..options()
    };
    let control = client::Client::connect(&addrs(&cluster.dht), None, tolerant).expect("connect");
    let planned = even_plan(&cluster);
    // The new set takes its range (it gives nothing); then one of its members goes down.
    for node in [4, 5] {
        run_to_the_end(&control, node, &request_for(&planned, node));
    }
    cluster.dht[5].kill9();
    let giving: Vec<Redistribution> = (0..4)
        .map(|node| Redistribution::start(&control, node, &request_for(&planned, node)))
        .collect::<Result<_, _>>()
        .expect("start");
    // Down longer than a giving member retries a batch and a commit to it (8 attempts each,
    // backing off to 2 s): the giving members give it up for a pass at least once (or,
    // wrongly, end their move without it).
    let gave_up = |node: usize| {
        client::dht::redistribute::state(&control, node)
            .is_ok_and(|state| state.progress.failures > 16 || !state.running)
    };
    wait_until(
        "the giving members to give the down member up",
        LIMIT,
        || gave_up(2) && gave_up(3),
    );
    // Meanwhile the giving set still holds the new set's keys: nothing was deleted that node 5
    // did not commit.
    let third = planned[4].new;
    let moving = |node: usize| {
        records_on(&dht, node)
            .into_keys()
            .filter(|k| third.is_responsible_for(*k))
            .count()
    };
    let expected = before
        .iter()
        .filter(|(key, held)| third.is_responsible_for(**key) && held.is_ok())
        .count();
    assert_eq!(
        (moving(2), moving(3)),
        (expected, expected),
        "kept while a receiver is down"
    );
    let state = client::dht::redistribute::state(&control, 2).expect("state");
    assert!(state.running, "{state:?}");

    cluster.dht[5].restart();
    // It was started with `--range` (empty), which wins over its state file at every start
    // (docs/operations.md, "Where the range lives"): it is given its new range again.
    wait_until("the member to be seen back", LIMIT, || {
        control.node_status(5).is_some_and(|status| status.is_up())
    });
    run_to_the_end(&control, 5, &request_for(&planned, 5));
    giving.into_iter().for_each(follow_to_the_end);
    dht.refresh_ranges().expect("ranges");
    for node in [4, 5] {
        assert_eq!(records_on(&dht, node).len(), expected, "node {node}");
        for (key, was) in before
            .iter()
            .filter(|(key, _)| third.is_responsible_for(**key))
        {
            assert_eq!(&held(&dht, node, *key), was, "key {key} on node {node}");
        }
    }
    assert_eq!(moving(2) + moving(3), 0, "nothing left behind");
}
