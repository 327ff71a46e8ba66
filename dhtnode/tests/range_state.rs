//! The node's range across restarts: kept in `data/dht-state.toml` (never in the operator's
//! config), which takes precedence over the config and gives way to `--range`; and a
//! redistribution interrupted by a shutdown that resumes when the node starts again.

mod common;

use client::dht::redistribute::{RedistEvent, Redistribution};
use client::{Client, ClientOptions, DhtClient};
use node_core::protocol::dht::{
    self as wire, split_evenly, HashRange, RedistributeRequest, RedistributeTarget,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const STATE: &str = "data/dht-state.toml";

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 5000,
        request_timeout_ms: 20_000,
        allow_incomplete_ranges: true,
        ..ClientOptions::default()
    }
}

fn range_of(addr: SocketAddr) -> HashRange {
    let client = Client::connect(&[addr], None, options()).expect("connect");
    let body = client
        .request(0, wire::GET_RESPONSIBLE_RANGE, &[])
        .expect("GetResponsibleRange")
        .ok_body()
        .expect("Ok");
    wire::decode_range(&body).expect("range")
}

/// Runs a Redistribute on the only node of `addr` to its end.
fn redistribute(addr: SocketAddr, request: &RedistributeRequest) -> RedistEvent {
    let client = Client::connect(&[addr], None, options()).expect("connect");
    let mut running = Redistribution::start(&client, 0, request).expect("start");
    let mut last = None;
    let deadline = Instant::now() + WAIT;
    while let Some(event) = running.next(Duration::from_millis(200)) {
        if let Some(event) = event.expect("event") {
            last = Some(event);
        }
        assert!(Instant::now() < deadline, "redistribution did not end");
    }
    last.expect("an event")
}

/// A free port on 127.0.0.1 (nothing listens on it when this returns).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn config(extra: &str) -> String {
    format!(
        "[dht]\nrange_min = \"0x0000000000000000\"\nrange_max = \"0xffffffffffffffff\"\n{extra}"
    )
}

/// Stops `node` with SIGTERM (a clean exit) and starts it again on its address and data
/// directory, with its config file and `extra` arguments.
fn restart(node: &mut common::TempNode, extra: &[&str]) {
    let addr = node.addr.to_string();
    let config_arg = node.path("node.toml").to_string_lossy().into_owned();
    node.node.signal("TERM");
    assert_eq!(node.node.wait_exit().code(), Some(0));
    let mut args = vec!["--listen", addr.as_str(), "-c", config_arg.as_str()];
    args.extend_from_slice(extra);
    node.node = common::Node::start_in(common::BIN, node.dir.path(), &args);
}

/// On a node moving the range `moving` away (channel "ch" loaded with keys 0..4000): writes
/// to it are refused at once; records still here stay readable; a key of it that is not here
/// is WrongNode.
fn check_requests_while_moving(control: &Client, moving: HashRange) {
    let upper_key = (0..4000u64)
        .find(|key| moving.is_responsible_for(*key))
        .expect("a key of the upper half");
    // Writes outside the new range are refused at once; records still here stay readable; a
    // key outside the range that is not here is WrongNode.
    let mut body = Vec::new();
    wire::PutRequest {
        channel: "ch",
        key: upper_key,
        value: b"new",
    }
    .encode(&mut body);
    assert_eq!(
        control.request(0, wire::PUT, &body).expect("put").status,
        client::Status::WrongNode
    );
    let get = |key: u64| {
        let mut body = Vec::new();
        wire::KeyRequest { channel: "ch", key }.encode(&mut body);
        control.request(0, wire::GET, &body).expect("get").status
    };
    assert_eq!(get(upper_key), client::Status::Ok);
    let absent_upper = (1u64 << 40..)
        .find(|key| moving.is_responsible_for(*key))
        .expect("key");
    assert_eq!(get(absent_upper), client::Status::WrongNode);
}

/// Puts keys 0..4000 into channel "ch" of the node at `addr`; returns the records, sorted.
fn load_records(addr: SocketAddr) -> Vec<(u64, Vec<u8>)> {
    let dht = DhtClient::connect(&[addr], options()).expect("connect");
    let records: Vec<(u64, Vec<u8>)> = (0..4000u64)
        .map(|key| (key, format!("value {key}").into_bytes()))
        .collect();
    dht.put_batch("ch", records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("load");
    records
}

/// Every record of channel "ch" on the nodes at `addrs`, sorted.
fn all_records(addrs: &[SocketAddr]) -> Vec<(u64, Vec<u8>)> {
    let cluster = DhtClient::connect(addrs, options()).expect("cluster");
    let mut found: Vec<(u64, Vec<u8>)> = cluster
        .get_all("ch", Default::default())
        .collect::<Result<_, _>>()
        .expect("get_all");
    found.sort();
    found
}

#[test]
fn a_range_set_by_redistribute_survives_restarts_in_the_state_file_not_the_config() {
    let config_text = config("");
    let mut node = common::TempNode::start(common::BIN, &config_text, &[]);
    assert_eq!(range_of(node.addr), HashRange::FULL);
    assert!(
        node.root_log().contains("from the config"),
        "{}",
        node.root_log()
    );
    assert!(
        !node.path(STATE).exists(),
        "no state file until the range changes"
    );

    let halves = split_evenly(2);
    let done = redistribute(
        node.addr,
        &RedistributeRequest {
            range: halves[0],
            targets: vec![RedistributeTarget {
                address: free_addr(),
                range: halves[1],
            }],
        },
    );
    assert!(matches!(done, RedistEvent::Done(_)), "{done:?}");
    assert_eq!(range_of(node.addr), halves[0]);
    let config_path = node.path("node.toml");
    assert_eq!(
        std::fs::read_to_string(&config_path).expect("config"),
        config_text,
        "the operator's config is never rewritten"
    );
    let state = std::fs::read_to_string(node.path(STATE)).expect("state file");
    assert!(
        state.contains("range_max = \"0x7fffffffffffffff\""),
        "{state}"
    );
    assert!(!state.contains("[redistribution]"), "finished: {state}");

    // Restart with the same config: the state file's range wins, and the log says so.
    restart(&mut node, &[]);
    assert_eq!(range_of(node.addr), halves[0]);
    let log = node.root_log();
    assert!(
        log.contains(&format!(
            "hash range {} from data/dht-state.toml (it takes precedence over the config's range {})",
            halves[0],
            HashRange::FULL
        )),
        "{log}"
    );

    // --range wins over the state file, with a warning, and is kept.
    restart(&mut node, &["--range", &halves[1].to_string()]);
    assert_eq!(range_of(node.addr), halves[1]);
    assert!(
        node.root_log().contains(&format!(
            "--range {} overrides the range {}",
            halves[1], halves[0]
        )),
        "{}",
        node.root_log()
    );
    restart(&mut node, &[]);
    assert_eq!(
        range_of(node.addr),
        halves[1],
        "--range was written to the state file"
    );
}

#[test]
fn a_redistribution_stopped_by_a_shutdown_resumes_when_the_node_starts_again() {
    // The sender's out_of_range policy would drop records outside its range at start; an
    // unfinished redistribution must load them anyway.
    let config_text = config("out_of_range = \"ignore\"\n");
    let mut sender = common::TempNode::start(common::BIN, &config_text, &[]);
    let records = load_records(sender.addr);
    let halves = split_evenly(2);
    // The receiver's address, where nothing listens yet: the move stalls.
    let receiver_addr = free_addr();
    let request = RedistributeRequest {
        range: halves[0],
        targets: vec![RedistributeTarget {
            address: receiver_addr,
            range: halves[1],
        }],
    };
    let control = Client::connect(&[sender.addr], None, options()).expect("connect");
    let mut running = Redistribution::start(&control, 0, &request).expect("start");
    let first = running.next(WAIT).expect("event").expect("ok");
    assert!(matches!(first, Some(RedistEvent::Progress(_))), "{first:?}");
    drop(running);
    check_requests_while_moving(&control, halves[1]);
    let state = std::fs::read_to_string(sender.path(STATE)).expect("state file");
    assert!(state.contains("[redistribution]"), "{state}");
    assert!(state.contains(&receiver_addr.to_string()), "{state}");

    // Stop the sender mid-move, start the receiver, start the sender again.
    let sender_addr = sender.addr.to_string();
    let config_arg = sender.path("node.toml").to_string_lossy().into_owned();
    sender.node.signal("TERM");
    assert_eq!(sender.node.wait_exit().code(), Some(0));
    assert!(
        sender
            .root_log()
            .contains("stopping the running redistribution for the shutdown"),
        "{}",
        sender.root_log()
    );
    let receiver = common::TempNode::start(
        common::BIN,
        "",
        &[
            "--listen",
            &receiver_addr.to_string(),
            "--range",
            &halves[1].to_string(),
        ],
    );
    sender.node = common::Node::start_in(
        common::BIN,
        sender.dir.path(),
        &["--listen", &sender_addr, "-c", &config_arg],
    );
    let log = sender.root_log();
    assert!(
        log.contains("are loaded: an unfinished redistribution"),
        "{log}"
    );
    assert!(
        log.contains("resuming the unfinished redistribution"),
        "{log}"
    );
    let control = Client::connect(&[sender.addr], None, options()).expect("connect");
    common::wait_until("the resumed redistribution to finish", || {
        client::dht::redistribute::state(&control, 0).is_ok_and(|state| !state.running)
    });
    let state = std::fs::read_to_string(sender.path(STATE)).expect("state file");
    assert!(!state.contains("[redistribution]"), "{state}");
    assert_eq!(
        all_records(&[sender.addr, receiver.addr]),
        records,
        "every record once, after the resumed move"
    );
}
