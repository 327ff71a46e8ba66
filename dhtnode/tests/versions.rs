//! Versioned records and tombstones on a real node (issue #19, docs/protocol.md §6.11): the
//! keep-the-higher rule of PutVersion and RemoveVersion in every order, over real sockets;
//! versions and tombstones surviving a restart through the dump and through the change log
//! (SIGKILL under `durability = "always"`); tombstones dropped after their TTL; and dumps and
//! logs of the formats before versions still loading, with version 0; RedistBatchVersion (a
//! redistribution's batch, §6.7) applying each record and tombstone by version, all or nothing.

mod common;

use common::{wait_until, Conn, Node};
use node_core::protocol::dht::{
    self, decode_applied, decode_versioned_lookup, PutVersionRequest, RemoveVersionRequest,
    VersionedLookup,
};
use node_core::protocol::{RequestCode, Status};
use std::path::Path;

const CHANNEL: &str = "versions";

fn put_version(conn: &mut Conn, key: u64, version: u64, value: &[u8]) -> bool {
    let mut body = Vec::new();
    PutVersionRequest {
        channel: CHANNEL,
        key,
        version,
        value,
    }
    .encode(&mut body);
    applied(conn.request(dht::PUT_VERSION, body))
}

fn remove_version(conn: &mut Conn, key: u64, version: u64) -> bool {
    let mut body = Vec::new();
    RemoveVersionRequest {
        channel: CHANNEL,
        key,
        version,
    }
    .encode(&mut body);
    applied(conn.request(dht::REMOVE_VERSION, body))
}

fn applied((status, body): (Status, Vec<u8>)) -> bool {
    assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
    decode_applied(&body).expect("u8 applied")
}

/// What GetWithVersion says of `key`, owned.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    Record(u64, Vec<u8>),
    Tombstone(u64),
    Nothing,
}

fn held(conn: &mut Conn, key: u64) -> Held {
    held_in(conn, CHANNEL, key)
}

fn held_in(conn: &mut Conn, channel: &str, key: u64) -> Held {
    let (status, body) = conn.request(dht::GET_WITH_VERSION, common::key_body(channel, key));
    assert!(
        matches!(status, Status::Ok | Status::NotFound),
        "{status:?}"
    );
    match decode_versioned_lookup(status == Status::Ok, &body).expect("a lookup body") {
        VersionedLookup::Found { version, value } => Held::Record(version, value.to_vec()),
        VersionedLookup::Tombstone { version } => Held::Tombstone(version),
        VersionedLookup::Absent => Held::Nothing,
    }
}

fn record(version: u64, value: &str) -> Held {
    Held::Record(version, value.as_bytes().to_vec())
}

fn start(dir: &Path, config: &str) -> Node {
    std::fs::write(dir.join("node.toml"), config).unwrap();
    Node::start_in(common::BIN, dir, &["-c", "node.toml"])
}

#[test]
fn the_higher_version_wins_whatever_order_the_writes_arrive_in() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "[dht]\ndump_period_s = 0\n");
    let mut conn = Conn::open(node.addr);
    // Older after newer: refused; the same write again: refused (a write sent twice applies
    // once); another write of the same version: the greater value wins, whatever the order.
    assert!(put_version(&mut conn, 1, 20, b"new"));
    assert!(!put_version(&mut conn, 1, 10, b"old"));
    assert!(!put_version(&mut conn, 1, 20, b"new"));
    assert!(!put_version(&mut conn, 1, 20, b"lesser, same version"));
    assert_eq!(held(&mut conn, 1), record(20, "new"));
    assert!(put_version(&mut conn, 1, 20, b"x greater, same version"));
    assert_eq!(held(&mut conn, 1), record(20, "x greater, same version"));
    // Put then late remove: an older removal changes nothing, a newer one leaves a tombstone.
    assert!(!remove_version(&mut conn, 1, 19));
    assert!(
        remove_version(&mut conn, 1, 20),
        "a tombstone beats a record of its version"
    );
    assert!(!remove_version(&mut conn, 1, 20), "the same removal again");
    assert!(!put_version(
        &mut conn,
        1,
        20,
        b"z: no record beats its tombstone"
    ));
    assert!(remove_version(&mut conn, 1, 21));
    assert_eq!(held(&mut conn, 1), Held::Tombstone(21));
    // Remove then late put: the tombstone keeps the older write out, a newer one goes in.
    assert!(!put_version(&mut conn, 1, 21, b"late"));
    assert!(put_version(&mut conn, 1, 22, b"newer"));
    assert_eq!(held(&mut conn, 1), record(22, "newer"));
    // A removal of a key never written keeps its tombstone too.
    assert!(remove_version(&mut conn, 2, 5));
    assert!(!put_version(&mut conn, 2, 4, b"late"));
    assert_eq!(held(&mut conn, 2), Held::Tombstone(5));
    assert!(!remove_version(&mut conn, 2, 5), "equal removal");
    assert_eq!(held(&mut conn, 3), Held::Nothing);
    // Tombstones are no records: Get does not find them and sizes do not count them.
    assert_eq!(conn.request(dht::GET, key_body(2)).0, Status::NotFound);
    let size = conn.request(dht::GET_SIZE, Vec::new()).1;
    assert_eq!(dht::SizeInfo::decode(&size).unwrap().records, 1);
    // Writes without a version replace anything, at version 0.
    let (status, _) = conn.request(dht::PUT, common::put_body(CHANNEL, 2, b"plain"));
    assert_eq!(status, Status::Ok);
    assert_eq!(held(&mut conn, 2), record(0, "plain"));
    assert!(put_version(&mut conn, 2, 1, b"any version beats 0"));
}

/// A batch request's body (PutBatch, RedistBatchVersion, PutBatchVersion) of `builder`'s batch.
fn batch_body(mut builder: node_core::protocol::batch::BatchBuilder) -> Vec<u8> {
    let mut batch = Vec::new();
    builder.finish_into(&mut batch);
    let mut body = Vec::new();
    dht::encode_put_batch(&mut body, CHANNEL, &batch);
    body
}

/// A node owning the lower half of the hash space, five keys of it, and a key outside it.
fn lower_half_node(dir: &Path) -> (Node, Vec<u64>, u64) {
    let lower = dht::split_evenly(2)[0];
    let node = Node::start_in(common::BIN, dir, &["--range", &lower.to_string()]);
    let ours = (0..)
        .filter(|k| lower.is_responsible_for(*k))
        .take(5)
        .collect();
    let theirs = (0..).find(|k| !lower.is_responsible_for(*k)).unwrap();
    (node, ours, theirs)
}

/// A RedistBatchVersion body: `items` as (key, version, value; `None` for a tombstone).
fn redist_batch_version(items: &[(u64, u64, Option<&[u8]>)]) -> Vec<u8> {
    use node_core::protocol::batch::BatchBuilder;
    let mut builder = BatchBuilder::new(1 << 16);
    for &(key, version, value) in items {
        let record = match value {
            Some(value) => dht::RefreshRecord::Record { version, value },
            None => dht::RefreshRecord::Tombstone { version },
        };
        record.push_to(&mut builder, key);
    }
    batch_body(builder)
}

#[test]
fn a_redistribution_batch_applies_each_record_and_tombstone_by_version() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ours, theirs) = lower_half_node(dir.path());
    let mut conn = Conn::open(node.addr);
    // Held here before the batch arrives: a newer record, a newer tombstone, an older record.
    assert!(put_version(&mut conn, ours[0], 50, b"newer here"));
    assert!(remove_version(&mut conn, ours[1], 50));
    assert!(put_version(&mut conn, ours[2], 10, b"older here"));
    let body = redist_batch_version(&[
        (ours[0], 40, Some(b"moved, older")),
        (ours[1], 40, Some(b"moved, removed since")),
        (ours[2], 20, Some(b"moved, newer")),
        (ours[3], 30, None),
        (ours[4], 0, Some(b"unversioned")),
    ]);
    let (status, reply) = conn.request(dht::REDIST_BATCH_VERSION, body.clone());
    assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&reply));
    let reply = dht::RedistBatchReply::decode(&reply).unwrap();
    assert_eq!((reply.stored, reply.present), (3, 2));
    assert_eq!(held(&mut conn, ours[0]), record(50, "newer here"));
    assert_eq!(held(&mut conn, ours[1]), Held::Tombstone(50));
    assert_eq!(held(&mut conn, ours[2]), record(20, "moved, newer"));
    assert_eq!(held(&mut conn, ours[3]), Held::Tombstone(30));
    assert_eq!(held(&mut conn, ours[4]), record(0, "unversioned"));
    // The same batch again (a retry, or the copy of another member): nothing changes.
    let (status, reply) = conn.request(dht::REDIST_BATCH_VERSION, body);
    assert_eq!(status, Status::Ok);
    let reply = dht::RedistBatchReply::decode(&reply).unwrap();
    assert_eq!((reply.stored, reply.present), (0, 5));
    // All or nothing: one key outside the range refuses the batch, the others stay unapplied.
    let body = redist_batch_version(&[(ours[2], 99, Some(b"not applied")), (theirs, 1, None)]);
    assert_eq!(
        conn.request(dht::REDIST_BATCH_VERSION, body).0,
        Status::WrongNode
    );
    assert_eq!(held(&mut conn, ours[2]), record(20, "moved, newer"));
    // A record value shorter than its version: BadRequest, nothing applied.
    let body = plain_batch(&[(ours[2], b"short")]);
    assert_eq!(
        conn.request(dht::REDIST_BATCH_VERSION, body).0,
        Status::BadRequest
    );
}

#[test]
fn every_order_of_two_writes_ends_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "[dht]\ndump_period_s = 0\n");
    let mut conn = Conn::open(node.addr);
    // Two writes of one key (each a put or a remove, versions 1 and 2), in both orders, on
    // keys of their own: the key always ends as the version-2 write says.
    let mut key = 100;
    for first_is_put in [true, false] {
        for second_is_put in [true, false] {
            for newer_first in [true, false] {
                key += 1;
                let writes = [(1u64, first_is_put), (2u64, second_is_put)];
                let order = if newer_first {
                    [writes[1], writes[0]]
                } else {
                    writes
                };
                for (version, is_put) in order {
                    if is_put {
                        put_version(&mut conn, key, version, format!("v{version}").as_bytes());
                    } else {
                        remove_version(&mut conn, key, version);
                    }
                }
                let expected = if second_is_put {
                    record(2, "v2")
                } else {
                    Held::Tombstone(2)
                };
                assert_eq!(held(&mut conn, key), expected, "key {key}: {order:?}");
            }
        }
    }
}

/// Writes the versions and tombstones the restart tests check.
fn write_state(conn: &mut Conn) {
    assert!(put_version(conn, 1, 7, b"seven"));
    assert!(put_version(conn, 2, 8, b"to remove"));
    assert!(remove_version(conn, 2, 9));
    assert!(remove_version(conn, 3, 11));
    let (status, _) = conn.request(dht::PUT, common::put_body(CHANNEL, 4, b"unversioned"));
    assert_eq!(status, Status::Ok);
}

fn check_state(conn: &mut Conn) {
    assert_eq!(held(conn, 1), record(7, "seven"));
    assert_eq!(held(conn, 2), Held::Tombstone(9));
    assert_eq!(held(conn, 3), Held::Tombstone(11));
    assert_eq!(held(conn, 4), record(0, "unversioned"));
    assert!(!put_version(conn, 3, 10, b"late"), "the tombstone survived");
}

#[test]
fn versions_and_tombstones_survive_a_restart_through_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    // No change log: what comes back can only come from the shutdown dump.
    let node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"none\"\n",
    );
    write_state(&mut Conn::open(node.addr));
    node.stop();
    let dump = dht_persist::DumpReader::new(
        std::fs::File::open(dir.path().join(format!("data/{CHANNEL}.dump"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        dump.header().version,
        2,
        "the node writes dumps with versions"
    );
    let node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    check_state(&mut Conn::open(node.addr));
}

#[test]
fn versions_and_tombstones_survive_a_kill_through_the_change_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"always\"\n",
    );
    write_state(&mut Conn::open(node.addr));
    node.kill9();
    assert!(
        !dir.path().join(format!("data/{CHANNEL}.dump")).exists(),
        "no dump: the log alone brings it back"
    );
    node.restart();
    check_state(&mut Conn::open(node.addr));
    // Killed again before any dump: the same log replays to the same state.
    node.restart();
    check_state(&mut Conn::open(node.addr));
}

#[test]
fn tombstones_are_dropped_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ntombstone_ttl_s = 1\n",
    );
    let mut conn = Conn::open(node.addr);
    assert!(remove_version(&mut conn, 1, 50));
    assert_eq!(held(&mut conn, 1), Held::Tombstone(50));
    // Stored within second s, it is dropped at the first sweep after s + 1 (sweeps run every
    // second for this TTL).
    wait_until("the tombstone expires", || {
        held(&mut conn, 1) == Held::Nothing
    });
    assert!(put_version(
        &mut conn,
        1,
        40,
        b"an older write is stored again"
    ));
}

#[test]
fn dumps_and_logs_from_before_versions_load_with_version_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    // A dump of format version 1, written as every dump was before versions.
    common::write_dump(&dir.path().join("data"), CHANNEL, 10);
    let mut node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"always\"\n",
    );
    let mut conn = Conn::open(node.addr);
    assert_eq!(held(&mut conn, 3), Held::Record(0, vec![b'v'; 100]));
    // Entries of the kinds the log had before versions (Put, Remove) replay as before.
    let requests: Vec<(RequestCode, Vec<u8>)> = vec![
        (dht::PUT, common::put_body(CHANNEL, 20, b"logged")),
        (dht::REMOVE, key_body(3)),
    ];
    assert!(conn
        .pipeline(&requests)
        .iter()
        .all(|(s, _)| *s == Status::Ok));
    node.kill9();
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_eq!(held(&mut conn, 20), record(0, "logged"));
    assert_eq!(held(&mut conn, 3), Held::Nothing);
    assert_eq!(held(&mut conn, 4), Held::Record(0, vec![b'v'; 100]));
    assert!(put_version(&mut conn, 4, 1, b"version 1 beats 0"));
}

fn key_body(key: u64) -> Vec<u8> {
    common::key_body(CHANNEL, key)
}

/// A data directory written by the node before versions (testdata/dht-pre-versions, see its
/// README: a format 1 dump and a log of the old entry kinds) loads: the records its changes
/// left, each at version 0.
#[test]
fn a_data_directory_from_before_versions_loads() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dht-pre-versions");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("wal")).unwrap();
    std::fs::copy(fixture.join("old.dump"), data.join("old.dump")).unwrap();
    for segment in ["00000001.log", "00000002.log"] {
        std::fs::copy(
            fixture.join("wal").join(segment),
            data.join("wal").join(segment),
        )
        .unwrap();
    }
    let node = start(dir.path(), "[dht]\ndump_period_s = 0\n");
    let mut conn = Conn::open(node.addr);
    let read = held_in;
    assert_eq!(
        read(&mut conn, "old", 1),
        Held::Nothing,
        "removed after the dump"
    );
    assert_eq!(
        read(&mut conn, "old", 2),
        Held::Nothing,
        "removed before the dump"
    );
    assert_eq!(read(&mut conn, "old", 3), record(0, "three"));
    assert_eq!(read(&mut conn, "old", 4), record(0, "four"));
    assert_eq!(read(&mut conn, "other", 7), record(0, "seven"));
}

/// A PutBatchVersion body (docs/protocol.md §6.14): laid out as a RedistBatchVersion's.
fn put_batch_version(
    conn: &mut Conn,
    items: &[(u64, u64, Option<&[u8]>)],
) -> (Status, dht::VersionBatchReply) {
    let (status, reply) = conn.request(dht::PUT_BATCH_VERSION, redist_batch_version(items));
    let decoded = match status {
        Status::Ok => dht::VersionBatchReply::decode(&reply).expect("applied, skipped"),
        _ => dht::VersionBatchReply::default(),
    };
    (status, decoded)
}

#[test]
fn versioned_batches_keep_the_higher_version_whatever_order_they_arrive_in() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = start(&a_dir, "[dht]\ndump_period_s = 0\n");
    let b = start(&b_dir, "[dht]\ndump_period_s = 0\n");
    let (mut a, mut b) = (Conn::open(a.addr), Conn::open(b.addr));
    // Two writers' batches of overlapping keys (the second one newer), a removal among them.
    let first: Vec<(u64, u64, Option<&[u8]>)> =
        (0..40).map(|k| (k, 10, Some(&b"one"[..]))).collect();
    let mut second: Vec<(u64, u64, Option<&[u8]>)> =
        (20..60).map(|k| (k, 20, Some(&b"two"[..]))).collect();
    second.push((5, 20, None));
    // Member a gets them in one order, member b in the other.
    assert_eq!(
        put_batch_version(&mut a, &first),
        (Status::Ok, reply(40, 0))
    );
    assert_eq!(
        put_batch_version(&mut a, &second),
        (Status::Ok, reply(41, 0))
    );
    assert_eq!(
        put_batch_version(&mut b, &second),
        (Status::Ok, reply(41, 0))
    );
    assert_eq!(
        put_batch_version(&mut b, &first),
        (Status::Ok, reply(19, 21))
    );
    for key in 0..70 {
        let expected = match key {
            5 => Held::Tombstone(20),
            0..=19 => record(10, "one"),
            20..=59 => record(20, "two"),
            _ => Held::Nothing,
        };
        assert_eq!(held(&mut a, key), expected, "key {key} on a");
        assert_eq!(held(&mut b, key), expected, "key {key} on b");
    }
    // A batch older than a versioned put does not undo it; a newer one replaces it.
    assert!(put_version(&mut a, 100, 50, b"put"));
    let older = [(100, 40, Some(&b"older batch"[..]))];
    assert_eq!(put_batch_version(&mut a, &older), (Status::Ok, reply(0, 1)));
    assert_eq!(held(&mut a, 100), record(50, "put"));
    let newer = [(100, 60, Some(&b"newer batch"[..]))];
    assert_eq!(put_batch_version(&mut a, &newer), (Status::Ok, reply(1, 0)));
    assert_eq!(held(&mut a, 100), record(60, "newer batch"));
    // (The unversioned PutBatch replaces whatever is held: what PutBatchVersion is for.)
    let (status, _) = a.request(dht::PUT_BATCH, plain_batch(&[(100, b"plain")]));
    assert_eq!(status, Status::Ok);
    assert_eq!(held(&mut a, 100), record(0, "plain"));
    // Records 0..60 but the removed key 5, and key 100; the tombstone is no record.
    let mut body = Vec::new();
    dht::encode_channel(&mut body, CHANNEL);
    let size = a.request(dht::GET_CHANNEL_SIZE, body).1;
    assert_eq!(dht::SizeInfo::decode(&size).unwrap().records, 60);
}

fn reply(applied: u64, skipped: u64) -> dht::VersionBatchReply {
    dht::VersionBatchReply { applied, skipped }
}

/// A PutBatch body of `records`.
fn plain_batch(records: &[(u64, &[u8])]) -> Vec<u8> {
    let mut builder = node_core::protocol::batch::BatchBuilder::new(1 << 16);
    for (key, value) in records {
        builder.push(*key, value);
    }
    batch_body(builder)
}

#[test]
fn a_versioned_batch_is_all_or_nothing_and_its_errors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (node, ours, theirs) = lower_half_node(dir.path());
    let mut conn = Conn::open(node.addr);
    // A key outside the range: WrongNode, and the key inside it is not written either.
    let (status, _) = put_batch_version(
        &mut conn,
        &[(ours[0], 5, Some(b"in")), (theirs, 5, Some(b"out"))],
    );
    assert_eq!(status, Status::WrongNode);
    assert_eq!(held(&mut conn, ours[0]), Held::Nothing);
    // A record value shorter than its version: BadRequest, naming it.
    let (status, message) =
        conn.request(dht::PUT_BATCH_VERSION, plain_batch(&[(ours[0], b"short")]));
    assert_eq!(status, Status::BadRequest);
    assert!(String::from_utf8_lossy(&message).contains("batch record"));
    // A value too big (the node's default max_value_bytes is 1 MiB).
    let big = vec![7u8; (1 << 20) + 1];
    let (status, _) = put_batch_version(&mut conn, &[(ours[1], 5, Some(&big))]);
    assert_eq!(status, Status::ValueTooBig);
    assert_eq!(held(&mut conn, ours[1]), Held::Nothing);
    // A batch that fails its checks.
    let mut body = Vec::new();
    dht::encode_put_batch(&mut body, CHANNEL, &[1, 2, 3]);
    assert_eq!(
        conn.request(dht::PUT_BATCH_VERSION, body).0,
        Status::BadRequest
    );
}

/// Tombstones of keys `keys`, stored in the current second, at version 1.
fn tombstones(conn: &mut Conn, keys: std::ops::Range<u64>) {
    for key in keys {
        assert!(remove_version(conn, key, 1));
    }
}

/// The node's tombstones, by its GetStats.
fn tombstone_count(conn: &mut Conn) -> u64 {
    let stats = common::get_stats(conn);
    common::stat(&stats, "tombstones").expect("the tombstones stat")
}

/// 30 tombstones (keys 0..30), then, a second later, 30 more (keys 100..130): 60 in all.
fn sixty_tombstones_in_two_seconds(conn: &mut Conn) {
    tombstones(conn, 0..30);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    tombstones(conn, 100..130);
    assert_eq!(tombstone_count(conn), 60);
}

/// After a restart with `tombstone_limit = 40`: the 20 oldest went (the first 20 keys of the
/// older second), with a WARN naming how many and where from.
fn check_forty_newest_kept(node: &Node, conn: &mut Conn, from: &str) {
    assert_eq!(tombstone_count(conn), 40);
    for key in 0..20 {
        assert_eq!(held(conn, key), Held::Nothing, "key {key}: dropped");
    }
    for key in (20..30).chain(100..130) {
        assert_eq!(held(conn, key), Held::Tombstone(1), "key {key}: kept");
    }
    let log = node.root_log();
    assert!(
        log.contains(&format!(
            "{from} held more tombstones than dht.tombstone_limit = 40: 20 tombstones were not \
             loaded"
        )),
        "{log}"
    );
}

#[test]
fn the_tombstone_limit_holds_when_a_dump_holds_more() {
    let dir = tempfile::tempdir().unwrap();
    // No change log: what comes back comes from the shutdown dump.
    let node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"none\"\n",
    );
    sixty_tombstones_in_two_seconds(&mut Conn::open(node.addr));
    node.stop();
    let node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"none\"\ntombstone_limit = 40\n",
    );
    check_forty_newest_kept(&node, &mut Conn::open(node.addr), "the dumps");
}

#[test]
fn the_tombstone_limit_holds_when_the_change_log_holds_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"always\"\n",
    );
    sixty_tombstones_in_two_seconds(&mut Conn::open(node.addr));
    node.kill9();
    std::fs::write(
        dir.path().join("node.toml"),
        "[dht]\ndump_period_s = 0\ndurability = \"always\"\ntombstone_limit = 40\n",
    )
    .unwrap();
    node.restart();
    check_forty_newest_kept(&node, &mut Conn::open(node.addr), "the change log");
}
