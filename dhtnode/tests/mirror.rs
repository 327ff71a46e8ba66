//! The Mirror request on a real node (issue #19, docs/protocol.md §6.12): the reference's
//! Mirror cases 15-21 (`../shared/reference/dht.md` §9.2) ported to this protocol (the
//! reference's Suspend/Resume is withholding and granting credit), and a Mirror with an
//! initial refresh while a writer writes, which, applied in order, ends equal to what
//! GetWithVersion reads of every key.

mod common;

use common::{Conn, Node};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{
    self, decode_versioned_lookup, MirrorItem, MirrorRequest, PutVersionRequest, RefreshCounts,
    RefreshRecord, RemoveVersionRequest, VersionedLookup,
};
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::{ControlCode, RequestCode, Status};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHANNEL: &str = "mirrored";

/// One frame of the Mirror stream, owned.
#[derive(Debug)]
enum Frame {
    Item(u8, Vec<u8>),
    Reply(Status),
}

/// A raw Mirror stream: the test decides when to grant credit.
struct MirrorClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

const MIRROR_ID: u64 = 1;

impl MirrorClient {
    fn start(node: &Node, initial_refresh: bool, periodic_refresh_s: u32) -> MirrorClient {
        let conn = Conn::open(node.addr);
        let mut client = MirrorClient {
            stream: conn.stream,
            buffer: Vec::new(),
        };
        let mut body = Vec::new();
        MirrorRequest {
            channel: CHANNEL,
            initial_refresh,
            periodic_refresh_s,
        }
        .encode(&mut body);
        let mut out = Vec::new();
        write_frame(
            &mut out,
            FrameType::Request,
            dht::MIRROR.0,
            MIRROR_ID,
            &body,
        );
        client.stream.write_all(&out).unwrap();
        client
    }

    fn control(&mut self, code: ControlCode, body: &[u8]) {
        let mut out = Vec::new();
        write_frame(&mut out, FrameType::Control, code as u8, MIRROR_ID, body);
        self.stream.write_all(&out).unwrap();
    }

    fn credit(&mut self, items: u32) {
        self.control(ControlCode::Credit, &items.to_le_bytes());
    }

    /// The next frame, or `None` when none comes within `wait`.
    fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(header) = parse_frame(&self.buffer, u32::MAX).unwrap() {
                let body = self.buffer[HEADER_LEN..header.frame_len()].to_vec();
                self.buffer.drain(..header.frame_len());
                assert_eq!(header.request_id, MIRROR_ID);
                return Some(match header.frame_type {
                    FrameType::Item => Frame::Item(header.code, body),
                    FrameType::Reply => Frame::Reply(Status::from_u8(header.code).unwrap()),
                    other => panic!("unexpected {other:?}"),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the node closed the connection"),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(err) if err.kind() == std::io::ErrorKind::TimedOut => return None,
                Err(err) => panic!("read: {err}"),
            }
        }
    }

    /// The next item, granting one credit for it (the stream never pauses).
    fn next_item(&mut self) -> (u8, Vec<u8>) {
        match self.next_within(Duration::from_secs(20)) {
            Some(Frame::Item(code, body)) => {
                self.credit(1);
                (code, body)
            }
            other => panic!("expected an item, got {other:?}"),
        }
    }

    /// Asserts that nothing comes within `wait`.
    fn expect_silence(&mut self, wait: Duration) {
        if let Some(frame) = self.next_within(wait) {
            panic!("expected nothing, got {frame:?}");
        }
    }
}

/// A mirror's copy of the channel: what each key holds, by the items applied in order.
#[derive(Debug, Default)]
struct Copy {
    keys: BTreeMap<u64, Held>,
    changed: u64,
    removed: u64,
    refreshed_records: u64,
    refreshed_tombstones: u64,
    refreshes_started: Vec<(Instant, RefreshCounts)>,
    refreshes_done: Vec<RefreshCounts>,
    overflows: u64,
    /// Changes that arrived while a refresh ran.
    changes_during_refresh: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Record(u64, Vec<u8>),
    Tombstone(u64),
}

impl Copy {
    fn apply(&mut self, code: u8, body: &[u8]) {
        let item = MirrorItem::decode(code, body).expect("a Mirror item");
        let refreshing = self.refreshes_started.len() > self.refreshes_done.len();
        if refreshing
            && matches!(
                item,
                MirrorItem::Changed { .. } | MirrorItem::Removed { .. }
            )
        {
            self.changes_during_refresh += 1;
        }
        match item {
            MirrorItem::Changed {
                key,
                version,
                value,
            } => {
                self.changed += 1;
                self.keys.insert(key, Held::Record(version, value.to_vec()));
            }
            MirrorItem::Removed { key, version } => {
                self.removed += 1;
                self.keys.insert(key, Held::Tombstone(version));
            }
            MirrorItem::Overflow { .. } => self.overflows += 1,
            MirrorItem::RefreshStarted(counts) => {
                self.refreshes_started.push((Instant::now(), counts))
            }
            MirrorItem::RefreshBatch { batch } => self.apply_batch(batch),
            MirrorItem::RefreshDone(counts) => self.refreshes_done.push(counts),
        }
    }

    fn apply_batch(&mut self, batch: &[u8]) {
        let mut scratch = Vec::new();
        let records = decode_batch(batch, &mut scratch).expect("a refresh batch");
        assert!(!records.is_empty(), "no empty batches");
        for (key, raw) in records {
            match RefreshRecord::decode(raw).expect("a refresh record") {
                RefreshRecord::Record { version, value } => {
                    self.refreshed_records += 1;
                    self.keys.insert(key, Held::Record(version, value.to_vec()));
                }
                RefreshRecord::Tombstone { version } => {
                    self.refreshed_tombstones += 1;
                    self.keys.insert(key, Held::Tombstone(version));
                }
            }
        }
    }
}

fn start_node(dir: &Path) -> Node {
    std::fs::write(dir.join("node.toml"), "[dht]\ndump_period_s = 0\n").unwrap();
    Node::start_in(common::BIN, dir, &["-c", "node.toml"])
}

fn put_all(conn: &mut Conn, keys: impl Iterator<Item = u64>) {
    let requests: Vec<(RequestCode, Vec<u8>)> = keys
        .map(|key| {
            (
                dht::PUT,
                common::put_body(CHANNEL, key, key.to_string().as_bytes()),
            )
        })
        .collect();
    for (status, _) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok);
    }
}

fn key_body(key: u64) -> Vec<u8> {
    common::key_body(CHANNEL, key)
}

/// Reference case 15, MirrorRemove: no refresh; 5 Removes give 5 Removed items, nothing else.
#[test]
fn mirror_remove() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, 0..5);
    let mut mirror = MirrorClient::start(&node, false, 0);
    mirror.expect_silence(Duration::from_millis(200));
    let removes: Vec<_> = (0..5).map(|key| (dht::REMOVE, key_body(key))).collect();
    assert!(conn
        .pipeline(&removes)
        .iter()
        .all(|(s, _)| *s == Status::Ok));
    let mut copy = Copy::default();
    for _ in 0..5 {
        let (code, body) = mirror.next_item();
        copy.apply(code, &body);
    }
    assert_eq!((copy.removed, copy.changed), (5, 0));
    assert_eq!(copy.keys.len(), 5);
    mirror.expect_silence(Duration::from_millis(200));
}

/// Reference case 16, MirrorUpdate: no refresh; 100 Puts give 100 Changed items.
#[test]
fn mirror_update() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let mut mirror = MirrorClient::start(&node, false, 0);
    mirror.expect_silence(Duration::from_millis(100));
    put_all(&mut Conn::open(node.addr), 0..100);
    let mut copy = Copy::default();
    for _ in 0..100 {
        let (code, body) = mirror.next_item();
        copy.apply(code, &body);
    }
    assert_eq!(
        (copy.changed, copy.removed, copy.refreshed_records),
        (100, 0, 0)
    );
    for key in 0..100u64 {
        assert_eq!(
            copy.keys[&key],
            Held::Record(0, key.to_string().into_bytes())
        );
    }
    mirror.expect_silence(Duration::from_millis(200));
}

/// Reads a whole refresh: RefreshStarted, batches, RefreshDone.
fn read_refresh(mirror: &mut MirrorClient, copy: &mut Copy) {
    let done = copy.refreshes_done.len();
    while copy.refreshes_done.len() == done {
        let (code, body) = mirror.next_item();
        copy.apply(code, &body);
    }
}

/// Reference case 17, MirrorConnError: a refresh of 100 records, the connection drops, the
/// client starts the Mirror again: 200 records refreshed in all, each key twice.
#[test]
fn mirror_conn_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    put_all(&mut Conn::open(node.addr), 0..100);
    let mut copy = Copy::default();
    let mut mirror = MirrorClient::start(&node, true, 0);
    let (code, body) = mirror.next_item();
    copy.apply(code, &body);
    assert_eq!(
        copy.refreshes_started[0].1,
        RefreshCounts {
            records: 100,
            tombstones: 0
        }
    );
    // One batch, then the connection drops.
    let (code, body) = mirror.next_item();
    copy.apply(code, &body);
    drop(mirror);
    let mut mirror = MirrorClient::start(&node, true, 0);
    read_refresh(&mut mirror, &mut copy);
    assert_eq!(
        copy.refreshes_started.len(),
        2,
        "one disconnection, one restart"
    );
    assert_eq!(copy.refreshed_records, 100 + copy.refreshes_done[0].records);
    assert_eq!(copy.refreshes_done[0].records, 100);
    assert_eq!(copy.keys.len(), 100);
}

/// Reference case 18, MirrorSuspend: writes every millisecond while the client suspends (no
/// credit) and resumes; 1000 updates arrive, none twice, none lost, all keys written.
#[test]
fn mirror_suspend() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let mut mirror = MirrorClient::start(&node, false, 0);
    mirror.expect_silence(Duration::from_millis(100));
    let addr = node.addr;
    let writer = std::thread::spawn(move || {
        let mut conn = Conn::open(addr);
        for key in 0..1000u64 {
            put_all(&mut conn, key..key + 1);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    // Suspended: the initial credit of 4 items, then nothing while no credit is granted.
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = Vec::new();
    while let Some(Frame::Item(code, body)) = mirror.next_within(Duration::from_millis(200)) {
        seen.push((code, body));
    }
    assert_eq!(
        seen.len(),
        4,
        "only the initial credit's items while suspended"
    );
    let mut copy = Copy::default();
    for (code, body) in seen {
        copy.apply(code, &body);
    }
    // Resumed.
    mirror.credit(4);
    while copy.changed < 1000 {
        let (code, body) = mirror.next_item();
        copy.apply(code, &body);
    }
    writer.join().unwrap();
    let keys: HashSet<u64> = copy.keys.keys().copied().collect();
    assert_eq!(keys, (0..1000).collect::<HashSet<u64>>(), "every key once");
    assert_eq!(copy.overflows, 0);
    mirror.expect_silence(Duration::from_millis(200));
}

/// Reference case 19, MirrorRefresh: periodic_refresh_s = 1 on 1000 records gives a refresh
/// about every second; three of them refresh 3000 records.
#[test]
fn mirror_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    put_all(&mut Conn::open(node.addr), 0..1000);
    let mut mirror = MirrorClient::start(&node, true, 1);
    let mut copy = Copy::default();
    for _ in 0..3 {
        read_refresh(&mut mirror, &mut copy);
    }
    assert_eq!(copy.refreshed_records, 3000);
    assert!(copy.refreshes_done.iter().all(|done| done.records == 1000));
    let starts: Vec<Instant> = copy.refreshes_started.iter().map(|(at, _)| *at).collect();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(900), "refreshes {gap:?} apart");
    }
}

/// Reference case 20, MirrorRefreshSuspend: suspended at once and resumed after 2.5 s:
/// nothing beyond the initial credit arrives while suspended, then the whole refresh.
#[test]
fn mirror_refresh_suspend() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    // Values LZ4 cannot shrink: 1000 records of 1000 bytes make many batches.
    let requests: Vec<(RequestCode, Vec<u8>)> = (0..1000u64)
        .map(|key| {
            (
                dht::PUT,
                common::put_body(CHANNEL, key, &common::random_value(key, 1000)),
            )
        })
        .collect();
    Conn::open(node.addr).pipeline(&requests);
    let mut mirror = MirrorClient::start(&node, true, 0);
    std::thread::sleep(Duration::from_millis(2500));
    let mut copy = Copy::default();
    let mut items = 0;
    while let Some(Frame::Item(code, body)) = mirror.next_within(Duration::from_millis(100)) {
        copy.apply(code, &body);
        items += 1;
    }
    assert_eq!(items, 4, "the initial credit only");
    mirror.credit(4);
    while copy.refreshes_done.is_empty() {
        let (code, body) = mirror.next_item();
        copy.apply(code, &body);
    }
    assert_eq!(copy.refreshed_records, 1000);
    assert_eq!(copy.keys.len(), 1000);
}

/// Reference case 21, MirrorRemoveChannel: removing the channel ends the Mirror with Ok and
/// no other item.
#[test]
fn mirror_remove_channel() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, 0..10);
    let mut mirror = MirrorClient::start(&node, false, 0);
    mirror.expect_silence(Duration::from_millis(100));
    let mut body = Vec::new();
    dht::encode_channel(&mut body, CHANNEL);
    assert_eq!(conn.request(dht::REMOVE_CHANNEL, body).0, Status::Ok);
    match mirror.next_within(Duration::from_secs(20)) {
        Some(Frame::Reply(Status::Ok)) => {}
        other => panic!("expected the final Ok, got {other:?}"),
    }
}

/// A mirror started with a refresh while a writer puts and removes with versions (and writes
/// some records without one) ends, applied in order, equal to GetWithVersion of every key.
#[test]
fn a_refresh_during_writes_ends_identical_to_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path());
    const KEYS: u64 = 3000;
    let mut conn = Conn::open(node.addr);
    fill_before_mirror(&mut conn, KEYS);
    let mut mirror = MirrorClient::start(&node, true, 0);
    let mut copy = Copy::default();
    let (code, body) = mirror.next_item();
    copy.apply(code, &body);
    assert_eq!(copy.refreshes_started.len(), 1);
    // The writes begin while the refresh waits for this reader (at most its credit of batches
    // went out).
    let (addr, started) = (node.addr, Arc::new(AtomicBool::new(false)));
    let writer = {
        let started = Arc::clone(&started);
        std::thread::spawn(move || write_versions(addr, KEYS, &started))
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
    read_refresh(&mut mirror, &mut copy);
    let sentinel_version = writer.join().unwrap() + 1;
    // The last change: once the mirror has it, it has every change before it.
    let mut body = Vec::new();
    PutVersionRequest {
        channel: CHANNEL,
        key: u64::MAX,
        version: sentinel_version,
        value: b"end",
    }
    .encode(&mut body);
    assert_eq!(conn.request(dht::PUT_VERSION, body).0, Status::Ok);
    while copy.keys.get(&u64::MAX) != Some(&Held::Record(sentinel_version, b"end".to_vec())) {
        let (code, body) = mirror.next_item();
        copy.apply(code, &body);
    }
    assert_eq!(copy.overflows, 0);
    assert!(
        copy.changes_during_refresh > 0,
        "changes arrived between the refresh's batches"
    );
    assert_eq!(copy.refreshes_started[0].1.tombstones, 100);
    assert_copy_is_the_nodes(&mut conn, &copy, KEYS + 100);
}

/// Records 0..keys whose values LZ4 cannot shrink (a refresh of them takes about ten batches),
/// and 100 tombstones after them, which only a refresh can tell a mirror of.
fn fill_before_mirror(conn: &mut Conn, keys: u64) {
    let puts: Vec<(RequestCode, Vec<u8>)> = (0..keys)
        .map(|key| {
            let value = common::random_value(key, 200);
            (dht::PUT, common::put_body(CHANNEL, key, &value))
        })
        .collect();
    conn.pipeline(&puts);
    let removals: Vec<(RequestCode, Vec<u8>)> = (keys..keys + 100)
        .map(|key| {
            let mut body = Vec::new();
            RemoveVersionRequest {
                channel: CHANNEL,
                key,
                version: 500,
            }
            .encode(&mut body);
            (dht::REMOVE_VERSION, body)
        })
        .collect();
    conn.pipeline(&removals);
}

/// Asserts that the copy holds, for keys 0..keys, what GetWithVersion reads on the node.
fn assert_copy_is_the_nodes(conn: &mut Conn, copy: &Copy, keys: u64) {
    let requests: Vec<_> = (0..keys)
        .map(|key| (dht::GET_WITH_VERSION, key_body(key)))
        .collect();
    let replies = conn.pipeline(&requests);
    for (key, (status, body)) in (0..keys).zip(replies) {
        let node_has = match decode_versioned_lookup(status == Status::Ok, &body).unwrap() {
            VersionedLookup::Found { version, value } => {
                Some(Held::Record(version, value.to_vec()))
            }
            VersionedLookup::Tombstone { version } => Some(Held::Tombstone(version)),
            VersionedLookup::Absent => None,
        };
        assert_eq!(copy.keys.get(&key), node_has.as_ref(), "key {key}");
    }
}

/// Puts, removes (with versions) and unversioned puts over the keys for a while, pipelined
/// (`started` is set once the first pipeline is acknowledged); returns the highest version
/// written.
fn write_versions(addr: std::net::SocketAddr, keys: u64, started: &AtomicBool) -> u64 {
    let mut conn = Conn::open(addr);
    let mut rng = common::XorShift::new(19);
    let mut version = 1000u64;
    for _ in 0..40 {
        let requests: Vec<(RequestCode, Vec<u8>)> = (0..100)
            .map(|_| {
                version += 1;
                let key = rng.below(keys);
                let mut body = Vec::new();
                match rng.below(4) {
                    0 => {
                        RemoveVersionRequest {
                            channel: CHANNEL,
                            key,
                            version,
                        }
                        .encode(&mut body);
                        (dht::REMOVE_VERSION, body)
                    }
                    1 => (dht::PUT, common::put_body(CHANNEL, key, b"plain")),
                    _ => {
                        PutVersionRequest {
                            channel: CHANNEL,
                            key,
                            version,
                            value: format!("{key}@{version}").as_bytes(),
                        }
                        .encode(&mut body);
                        (dht::PUT_VERSION, body)
                    }
                }
            })
            .collect();
        for (status, _) in conn.pipeline(&requests) {
            assert_eq!(status, Status::Ok);
        }
        started.store(true, Ordering::SeqCst);
    }
    version
}

/// A mirror that stops reading loses changes beyond its queue's bound (`listen_queue_events`,
/// as a Listen) and is told how many, where they were lost.
#[test]
fn a_mirror_that_falls_behind_is_told_what_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[dht]\ndump_period_s = 0\nlisten_queue_events = 10\n",
    )
    .unwrap();
    let node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    let mut mirror = MirrorClient::start(&node, false, 0);
    mirror.expect_silence(Duration::from_millis(100));
    // No credit beyond the initial 4: the rest waits in the node's queue of 10, then is lost.
    put_all(&mut Conn::open(node.addr), 0..100);
    let mut copy = Copy::default();
    let mut lost = 0;
    while copy.changed + lost < 100 {
        let (code, body) = mirror.next_item();
        if let Ok(MirrorItem::Overflow { lost: count }) = MirrorItem::decode(code, &body) {
            lost += count;
        }
        copy.apply(code, &body);
    }
    assert_eq!(copy.overflows, 1, "one marker where the changes were lost");
    assert!(lost >= 100 - 4 - 10, "{lost} lost");
    assert_eq!(
        copy.changed + lost,
        100,
        "each change delivered or counted as lost"
    );
    mirror.expect_silence(Duration::from_millis(200));
}
