//! Catch-up of a replica (issue #19 item 4, docs/replication.md "Catch-up"), real processes: a
//! set of two nodes with `dht.replica_peers` naming each other takes versioned writes; one is
//! killed with SIGKILL, its data directory deleted, the other keeps taking writes (a new channel
//! among them); the empty one restarted answers reads NotReady and takes writes while its peer
//! is unreachable (SIGSTOP), then catches up once the peer answers, after which both hold the
//! same records, versions and tombstones. Also: a node whose peers are all gone stays not
//! ready, says so in root.log, and SetReady (admin) forces it ready.
//!
//! The 1M-record measurement (release build, `CATCH_UP_RECORDS=1000000`) is the last test.

mod common;

use common::{catch_up_state, get_stats, stat, wait_until, Conn, Node};
use node_core::protocol::dht::{
    self, decode_versioned_lookup, KeyRequest, PutVersionRequest, RemoveVersionRequest,
    VersionedLookup,
};
use node_core::protocol::{RequestCode, Status};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// What GetWithVersion says of a key, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Record(u64, Vec<u8>),
    Tombstone(u64),
    Nothing,
}

/// One versioned write, as a client sends it to every member of the set.
#[derive(Debug, Clone)]
enum Write {
    Put(&'static str, u64, u64, Vec<u8>),
    Remove(&'static str, u64, u64),
}

impl Write {
    fn request(&self) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        match self {
            Write::Put(channel, key, version, value) => {
                PutVersionRequest {
                    channel,
                    key: *key,
                    version: *version,
                    value,
                }
                .encode(&mut body);
                (dht::PUT_VERSION, body)
            }
            Write::Remove(channel, key, version) => {
                RemoveVersionRequest {
                    channel,
                    key: *key,
                    version: *version,
                }
                .encode(&mut body);
                (dht::REMOVE_VERSION, body)
            }
        }
    }

    fn key(&self) -> (&'static str, u64) {
        match self {
            Write::Put(channel, key, ..) | Write::Remove(channel, key, _) => (channel, *key),
        }
    }
}

/// Sends `writes` to `addr` (pipelined) and checks every one is accepted; returns how many
/// were applied (newer than what the node held).
fn send(addr: SocketAddr, writes: &[Write]) -> usize {
    let mut conn = Conn::open(addr);
    let mut applied = 0;
    for part in writes.chunks(512) {
        let requests: Vec<_> = part.iter().map(Write::request).collect();
        for (status, body) in conn.pipeline(&requests) {
            assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
            applied += usize::from(dht::decode_applied(&body).expect("u8 applied"));
        }
    }
    applied
}

fn key_body(channel: &str, key: u64) -> Vec<u8> {
    let mut body = Vec::new();
    KeyRequest { channel, key }.encode(&mut body);
    body
}

/// What the node holds of every `(channel, key)`: the digest two replicas must agree on.
fn holdings(addr: SocketAddr, keys: &[(&'static str, u64)]) -> BTreeMap<(String, u64), Held> {
    let mut conn = Conn::open(addr);
    let mut held = BTreeMap::new();
    for part in keys.chunks(512) {
        let requests: Vec<_> = part
            .iter()
            .map(|(channel, key)| (dht::GET_WITH_VERSION, key_body(channel, *key)))
            .collect();
        for ((channel, key), (status, body)) in part.iter().zip(conn.pipeline(&requests)) {
            assert!(
                matches!(status, Status::Ok | Status::NotFound),
                "GetWithVersion {channel} {key}: {status:?} {}",
                String::from_utf8_lossy(&body)
            );
            let value = match decode_versioned_lookup(status == Status::Ok, &body).unwrap() {
                VersionedLookup::Found { version, value } => Held::Record(version, value.to_vec()),
                VersionedLookup::Tombstone { version } => Held::Tombstone(version),
                VersionedLookup::Absent => Held::Nothing,
            };
            held.insert((channel.to_string(), *key), value);
        }
    }
    held
}

/// The channels a node lists, each with its record count and bytes.
fn channel_sizes(addr: SocketAddr) -> Vec<(String, Vec<u8>)> {
    let mut conn = Conn::open(addr);
    let (status, body) = conn.request(dht::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    let names = dht::decode_channel_names(&body).unwrap();
    names
        .into_iter()
        .map(|name| {
            let mut request = Vec::new();
            dht::encode_channel(&mut request, &name);
            let (status, size) = conn.request(dht::GET_CHANNEL_SIZE, request);
            assert_eq!(status, Status::Ok);
            (name, size)
        })
        .collect()
}

/// What `a` holds of `keys`, checked to be exactly what `b` holds (versions, values and
/// tombstones), and the two nodes' channels and sizes the same.
fn same_holdings(
    a: SocketAddr,
    b: SocketAddr,
    keys: &[(&'static str, u64)],
) -> BTreeMap<(String, u64), Held> {
    let on_a = holdings(a, keys);
    let on_b = holdings(b, keys);
    let differing: Vec<_> = on_a
        .iter()
        .filter(|(key, held)| on_b[*key] != **held)
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} keys differ between the members, first: {:?} (B: {:?})",
        differing.len(),
        keys.len(),
        differing[0],
        on_b[differing[0].0]
    );
    assert_eq!(channel_sizes(a), channel_sizes(b));
    on_a
}

fn wait_ready(addr: SocketAddr) {
    testkit::wait_caught_up(addr);
}

fn config(peers: &[SocketAddr], extra: &str) -> String {
    let peers: Vec<String> = peers.iter().map(|peer| format!("\"{peer}\"")).collect();
    format!("[dht]\nreplica_peers = [{}]\n{extra}", peers.join(", "))
}

fn start(dir: &Path, config: &str) -> Node {
    std::fs::write(dir.join("node.toml"), config).unwrap();
    Node::start_in(common::BIN, dir, &["-c", "node.toml"])
}

/// Starts A and B, each with the other as its peer (A first without one, to learn its port,
/// then restarted with B's), both ready.
fn start_pair(dir_a: &Path, dir_b: &Path, extra: &str) -> (Node, Node) {
    let mut a = start(dir_a, &config(&[], extra));
    let b = start(dir_b, &config(&[a.addr], extra));
    std::fs::write(dir_a.join("node.toml"), config(&[b.addr], extra)).unwrap();
    a.restart();
    wait_ready(a.addr);
    wait_ready(b.addr);
    (a, b)
}

/// The writes before and while A is down: records, overwrites and removals over two channels,
/// then (A down) more of each and a channel created meanwhile.
fn history() -> (Vec<Write>, Vec<Write>) {
    let mut version = 1_000u64;
    let mut next = || {
        version += 1;
        version
    };
    let mut before = Vec::new();
    for key in 0..1500u64 {
        let channel = if key % 2 == 0 { "alpha" } else { "beta" };
        before.push(Write::Put(
            channel,
            key,
            next(),
            format!("v1-{key}").into_bytes(),
        ));
        if key % 7 == 0 {
            before.push(Write::Remove(channel, key, next()));
        }
    }
    let mut while_down = Vec::new();
    for key in 0..1500u64 {
        let channel = if key % 2 == 0 { "alpha" } else { "beta" };
        if key % 3 == 0 {
            while_down.push(Write::Put(
                channel,
                key,
                next(),
                format!("v2-{key}").into_bytes(),
            ));
        }
        if key % 5 == 0 {
            while_down.push(Write::Remove(channel, key, next()));
        }
    }
    for key in 0..400u64 {
        while_down.push(Write::Put(
            "gamma",
            key,
            next(),
            vec![b'g'; 1 + key as usize],
        ));
    }
    while_down.push(Write::Remove("gamma", 7, next()));
    (before, while_down)
}

fn every_key(writes: &[Write]) -> Vec<(&'static str, u64)> {
    let mut keys: Vec<_> = writes.iter().map(Write::key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Every read request a catching-up node refuses (Update's expectation is a read), each
/// answered NotReady.
fn assert_reads_not_ready(addr: SocketAddr) {
    let mut conn = Conn::open(addr);
    for code in [dht::GET, dht::EXISTS, dht::GET_WITH_VERSION, dht::UPDATE] {
        let (status, body) = conn.request(code, key_body("alpha", 3));
        assert_eq!(status, Status::NotReady, "{code:?}");
        assert!(String::from_utf8_lossy(&body).contains("catching up"));
    }
    let mut get_all = Vec::new();
    dht::encode_channel(&mut get_all, "alpha");
    get_all.extend([0, 0]); // no flags, from the beginning
    get_all.extend(0u64.to_le_bytes());
    let (items, status, _) = conn.stream(dht::GET_ALL, get_all);
    assert_eq!((items.len(), status), (0, Status::NotReady));
}

#[test]
fn an_emptied_replica_catches_up_before_it_answers_reads() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (mut a, b) = start_pair(dir_a.path(), dir_b.path(), "");
    let (before, while_down) = history();
    assert!(send(a.addr, &before) > 0);
    assert!(send(b.addr, &before) > 0);

    a.kill9();
    std::fs::remove_dir_all(a.path("data")).unwrap();
    assert!(send(b.addr, &while_down) > 0);

    // A restarts empty while B does not answer: A stays not ready, takes writes.
    b.signal("STOP");
    a.restart();
    assert_eq!(catch_up_state(a.addr), 1);
    assert_reads_not_ready(a.addr);
    let during = vec![
        // Older than what B holds of key 3 (overwritten while A was down): B's must win.
        Write::Put("alpha", 6, 1_001, b"stale".to_vec()),
        // Newer than anything: both keep it.
        Write::Put("alpha", 4, 1_000_000, b"fresh".to_vec()),
        Write::Remove("beta", 9, 1_000_001),
        Write::Put("delta", 1, 1_000_002, b"new channel".to_vec()),
    ];
    assert_eq!(
        send(a.addr, &during),
        during.len(),
        "writes to a catching-up node apply"
    );
    assert_reads_not_ready(a.addr);

    // B answers again (and gets the client's writes it missed while stopped): A catches up.
    b.signal("CONT");
    send(b.addr, &during);
    wait_ready(a.addr);
    wait_until("the catch-up's INFO line", || {
        a.root_log().contains("caught up from")
    });

    let mut keys = every_key(&before);
    keys.extend(every_key(&while_down));
    keys.extend(every_key(&during));
    let on_a = same_holdings(a.addr, b.addr, &keys);
    // The catch-up did the work: what only B had is on A, tombstones included.
    let expect = |channel: &str, key| on_a[&(channel.to_string(), key)].clone();
    assert!(matches!(expect("alpha", 6), Held::Record(version, _) if version > 1_001));
    assert_eq!(
        expect("alpha", 4),
        Held::Record(1_000_000, b"fresh".to_vec())
    );
    assert!(
        matches!(expect("alpha", 10), Held::Tombstone(_)),
        "removed while A was down"
    );
    assert!(matches!(expect("gamma", 7), Held::Tombstone(_)));
    assert!(matches!(expect("gamma", 8), Held::Record(_, value) if value.len() == 9));
}

/// The whole set down, then back one after the other with their data: the first back waits
/// for its peer (which may hold writes it lacks); once both answer and neither is ready, each
/// merges what the other kept, and both end with every write either took.
#[test]
fn a_set_restarted_together_merges_what_each_member_kept() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (mut a, mut b) = start_pair(dir_a.path(), dir_b.path(), "");
    let (before, while_down) = history();
    send(a.addr, &before);
    send(b.addr, &before);
    a.kill9();
    send(b.addr, &while_down);
    b.kill9();

    a.restart();
    wait_until("a WARN: the peer is down", || {
        a.root_log().contains("no ready peer among")
    });
    assert_eq!(
        catch_up_state(a.addr),
        1,
        "waits for the peer that may hold more"
    );
    let only_a = vec![Write::Put("alpha", 2, 1_000_000, b"only on A".to_vec())];
    send(a.addr, &only_a);
    b.restart();
    wait_ready(a.addr);
    wait_ready(b.addr);
    wait_until("the merge in root.log", || {
        b.root_log().contains("merging what each of them has")
    });

    let mut keys = every_key(&before);
    keys.extend(every_key(&while_down));
    let on_a = same_holdings(a.addr, b.addr, &keys);
    assert!(matches!(&on_a[&("gamma".to_string(), 8)], Held::Record(_, v) if v.len() == 9));
    assert_eq!(
        on_a[&("alpha".to_string(), 2)],
        Held::Record(1_000_000, b"only on A".to_vec()),
        "B got what only A had"
    );
}

#[test]
fn a_node_whose_peers_are_gone_stays_not_ready_until_forced() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then closed.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = start(dir.path(), &config(&[gone], ""));
    let started = Instant::now();
    wait_until("a WARN naming the peer", || {
        node.root_log()
            .contains(&format!("no ready peer among {gone}"))
    });
    assert_eq!(catch_up_state(node.addr), 1);
    assert_reads_not_ready(node.addr);
    assert!(started.elapsed() < Duration::from_secs(20));

    let mut conn = Conn::open(node.addr);
    let (status, before) = conn.request(dht::SET_READY, Vec::new());
    assert_eq!(
        (status, before),
        (Status::Ok, vec![1]),
        "it was catching up"
    );
    assert_eq!(catch_up_state(node.addr), 2);
    let (status, _) = conn.request(dht::GET, key_body("alpha", 3));
    assert_eq!(status, Status::NotFound, "forced ready: serves what it has");
    let (status, again) = conn.request(dht::SET_READY, Vec::new());
    assert_eq!((status, again), (Status::Ok, vec![2]));
    wait_until("the forced ready in root.log", || {
        node.root_log().contains("forced ready by an operator")
    });
    node.stop();
}

#[test]
fn a_node_without_peers_is_ready_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "");
    assert_eq!(catch_up_state(node.addr), 0);
    let mut conn = Conn::open(node.addr);
    let (status, _) = conn.request(dht::GET, key_body("alpha", 3));
    assert_eq!(status, Status::NotFound);
    let (status, before) = conn.request(dht::SET_READY, Vec::new());
    assert_eq!((status, before), (Status::Ok, vec![0]));
    assert_eq!(
        catch_up_state(node.addr),
        0,
        "SetReady leaves a ready node as it is"
    );
    node.stop();
}

/// Seconds from a replica's start to ready, catching up `CATCH_UP_RECORDS` records of 100
/// bytes (default 20 000; the benchmark: `CATCH_UP_RECORDS=1000000 cargo test --release -p
/// dhtnode --test catch_up -- --nocapture catch_up_time`). Printed, not asserted (speed is
/// measured, never asserted); asserted: the replica holds every record afterwards.
#[test]
fn catch_up_time() {
    let records = common::rounds_from_env("CATCH_UP_RECORDS", 20_000);
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let b = start(dir_b.path(), &config(&[], ""));
    let value = [b'v'; 100];
    let mut conn = Conn::open(b.addr);
    let keys: Vec<u64> = (0..records).collect();
    for part in keys.chunks(1000) {
        let requests: Vec<_> = part
            .iter()
            .map(|&key| Write::Put("bench", key, key + 1, value.to_vec()).request())
            .collect();
        assert!(conn
            .pipeline(&requests)
            .iter()
            .all(|(s, _)| *s == Status::Ok));
    }
    let started = Instant::now();
    let a = start(dir_a.path(), &config(&[b.addr], ""));
    while catch_up_state(a.addr) != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "caught up in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    let stats = get_stats(&mut Conn::open(a.addr));
    assert_eq!(stat(&stats, "total_records"), Some(records));
    assert_eq!(stat(&stats, "catch_up_records"), Some(records));
    println!(
        "catch-up of {records} records of 100 bytes: {:.2} s from start to ready",
        took.as_secs_f64()
    );
}

/// Peers that require authentication: the catch-up logs in as `dht.replica_client` with its
/// key from the node's credentials file (any client may Mirror; no admin needed).
#[test]
fn a_replica_logs_in_to_its_peers_as_replica_client() {
    let credentials = common::TestCredentials::new();
    let extra = format!("replica_client = \"app\"\n{}", credentials.config);
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let b = start(dir_b.path(), &config(&[], &extra));
    let login = |addr| {
        common::open_authenticated(addr, "app", &credentials.app)
            .unwrap()
            .0
    };
    let writes: Vec<Write> = (0..100u64)
        .map(|key| Write::Put("secret", key, key + 1, b"v".to_vec()))
        .collect();
    let requests: Vec<_> = writes.iter().map(Write::request).collect();
    assert!(login(b.addr)
        .pipeline(&requests)
        .iter()
        .all(|(status, _)| *status == Status::Ok));

    let a = start(dir_a.path(), &config(&[b.addr], &extra));
    wait_until("caught up", || a.root_log().contains("caught up from"));
    let stats = get_stats(&mut login(a.addr));
    assert_eq!(stat(&stats, "catch_up_state"), Some(0));
    assert_eq!(stat(&stats, "total_records"), Some(100));
}
