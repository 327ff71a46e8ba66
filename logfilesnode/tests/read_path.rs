//! The node's read path with bucket indexes and batch choices, against the real `logfilesnode`:
//! - GetRange and GetAll send uncompressed batches (item code 2) exactly when the request's
//!   flags byte asks, LZ4 ones (item code 1) otherwise, with the same records; unknown flag bits
//!   are refused;
//! - the node saves a bucket's index when it closes the bucket (shutdown), reads of a bucket
//!   open for writing use the writer's index (and save nothing), a missing or damaged index is
//!   rebuilt and saved by the first read, within the read's stream memory budgets (without room,
//!   the read goes without);
//! - the reference node's buckets (legacy and v1) read exactly, through indexes the node builds.

mod common;

use common::{copy_tree, get_range, indexes_match, records_of, Rec};
use logfilesnode::storage::{index_path, list_buckets};
use node_core::protocol::logfiles::{
    self, Filter, GetAllRequest, PutRequest, ReadFlags, ITEM_RECORD_BATCH_UNCOMPRESSED,
};
use node_core::protocol::Status;
use std::fs;
use std::path::{Path, PathBuf};
use testkit::{wait_until, Conn, Node};

const BIN: &str = env!("CARGO_BIN_EXE_logfilesnode");
const FIRST_KEY: u64 = 0x6920_0000;

fn value_of(i: u64) -> Vec<u8> {
    format!(
        "record {i} status=200 path=/v1/items/{} {}",
        i % 97,
        "y".repeat(60)
    )
    .into_bytes()
}

/// `count` records, `per_key` per key from FIRST_KEY, one Put each.
fn put_records(conn: &mut Conn, channel: &str, count: u64, per_key: u64) -> Vec<Rec> {
    let records: Vec<Rec> = (0..count)
        .map(|i| (FIRST_KEY + i / per_key, value_of(i)))
        .collect();
    put_all(conn, channel, &records);
    records
}

/// Stores `records`, one Put each, pipelined in chunks.
fn put_all(conn: &mut Conn, channel: &str, records: &[Rec]) {
    for chunk in records.chunks(64) {
        let requests: Vec<_> = chunk
            .iter()
            .map(|(key, value)| {
                let mut body = Vec::new();
                PutRequest {
                    channel,
                    key: *key,
                    value,
                }
                .encode(&mut body);
                (logfiles::PUT, body)
            })
            .collect();
        for (status, _) in conn.pipeline(&requests) {
            assert_eq!(status, Status::Ok);
        }
    }
}

fn in_range(records: &[Rec], from: u64, to: u64) -> Vec<Rec> {
    records
        .iter()
        .filter(|(k, _)| (from..=to).contains(k))
        .cloned()
        .collect()
}

fn bucket_paths(dir: &Path, channel: &str) -> Vec<PathBuf> {
    list_buckets(&dir.join("data").join(channel), 0, u64::MAX)
        .expect("list")
        .into_iter()
        .map(|b| b.path)
        .collect()
}

/// Every bucket of the channel has an index that matches it exactly.
fn assert_indexes_match(dir: &Path, channel: &str) {
    indexes_match(&dir.join("data").join(channel));
}

#[test]
fn batches_are_uncompressed_exactly_when_the_flags_ask() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_in(BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let records = put_records(&mut conn, "flags", 6000, 3);
    let uncompressed = ReadFlags { uncompressed: true };
    for (from, to) in [(0, u64::MAX), (FIRST_KEY + 100, FIRST_KEY + 1500)] {
        let lz4 = get_range(&mut conn, "flags", from, to, ReadFlags::default());
        let raw = get_range(&mut conn, "flags", from, to, uncompressed);
        assert_eq!(lz4, in_range(&records, from, to));
        assert_eq!(raw, lz4);
    }
    // GetAll takes the same byte.
    let mut body = Vec::new();
    GetAllRequest {
        channel: "flags",
        filter: Filter::NONE,
    }
    .encode_with(uncompressed, &mut body);
    let (items, status, _) = conn.stream(logfiles::GET_ALL, body.clone());
    assert_eq!(status, Status::Ok);
    let (all, codes) = records_of(&items);
    assert_eq!(codes, vec![ITEM_RECORD_BATCH_UNCOMPRESSED]);
    assert_eq!(all, records);
    // Unknown bits: BadRequest naming the field, nothing sent.
    *body.last_mut().unwrap() = 0x03;
    let (items, status, message) = conn.stream(logfiles::GET_ALL, body);
    assert_eq!(status, Status::BadRequest);
    assert!(items.is_empty());
    assert!(String::from_utf8_lossy(&message).contains("flags"));
    node.stop();
}

#[test]
fn the_node_saves_indexes_at_close_uses_the_writers_and_rebuilds_missing_or_damaged_ones() {
    let dir = tempfile::tempdir().unwrap();
    // A small index interval: many stretches in a small bucket.
    fs::write(
        dir.path().join("node.toml"),
        "[logfiles]\nindex_interval_bytes = 4096\n",
    )
    .unwrap();
    let node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
    let mut conn = Conn::open(node.addr);
    let records = put_records(&mut conn, "idx", 8000, 1);
    let buckets = bucket_paths(dir.path(), "idx");
    assert_eq!(buckets.len(), 2);
    // The buckets are open for writing: reads use the writer's index and save none.
    let (from, to) = (FIRST_KEY + 2000, FIRST_KEY + 2100);
    let got = get_range(&mut conn, "idx", from, to, ReadFlags::default());
    assert_eq!(got, in_range(&records, from, to));
    for bucket in &buckets {
        assert!(!index_path(bucket).exists(), "{}", bucket.display());
    }
    node.stop();
    // Closing the buckets saved their indexes.
    assert_indexes_match(dir.path(), "idx");

    // Missing, and damaged: the first read rebuilds and saves them.
    let first = &buckets[0];
    fs::remove_file(index_path(first)).unwrap();
    let last = buckets.last().unwrap();
    let mut damaged = fs::read(index_path(last)).unwrap();
    damaged[60] ^= 0xff;
    fs::write(index_path(last), &damaged).unwrap();
    let node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
    let mut conn = Conn::open(node.addr);
    for (from, to) in [
        (FIRST_KEY + 10, FIRST_KEY + 20),
        (FIRST_KEY + 7990, u64::MAX),
    ] {
        let got = get_range(&mut conn, "idx", from, to, ReadFlags { uncompressed: true });
        assert_eq!(got, in_range(&records, from, to));
    }
    assert_indexes_match(dir.path(), "idx");
    assert_ne!(fs::read(index_path(last)).unwrap(), damaged);
    node.stop();
}

/// The index a read rebuilds is held by its stream and counted against the stream memory
/// budgets (docs/protocol.md §2.2): 16 bytes for every `index_interval_bytes` of the bucket, asked
/// for before the rebuild starts. A bucket whose index would take more than the connection's
/// budget is read without one — every record in range, nothing saved, the node says why — and
/// the first read with room rebuilds and saves it.
#[test]
fn a_read_without_room_in_its_budget_for_a_bucket_index_reads_the_bucket_without_one() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB stretches: an index of an 80 MiB bucket takes 320 KiB, more than the smallest
    // budget a connection may have (256 KiB).
    let tight = "[logfiles]\nindex_interval_bytes = 4096\n[server]\nstream_memory_bytes = 262144\n";
    fs::write(dir.path().join("tight.toml"), tight).unwrap();
    fs::write(
        dir.path().join("roomy.toml"),
        "[logfiles]\nindex_interval_bytes = 4096\n",
    )
    .unwrap();
    let node = Node::start_in(BIN, dir.path(), &["-c", "tight.toml"]);
    let mut conn = Conn::open(node.addr);
    let records: Vec<Rec> = (0..1280u64)
        .map(|i| {
            let mut value = value_of(i);
            value.resize(64 * 1024, b'z');
            (FIRST_KEY + i, value)
        })
        .collect();
    put_all(&mut conn, "big", &records);
    node.stop();
    let buckets = bucket_paths(dir.path(), "big");
    assert_eq!(buckets.len(), 1);
    let bucket = &buckets[0];
    assert!(fs::metadata(bucket).unwrap().len() > 80 << 20);
    fs::remove_file(index_path(bucket)).unwrap();

    let (from, to) = (FIRST_KEY + 600, FIRST_KEY + 602);
    let node = Node::start_in(BIN, dir.path(), &["-c", "tight.toml"]);
    let mut conn = Conn::open(node.addr);
    let got = get_range(&mut conn, "big", from, to, ReadFlags::default());
    assert_eq!(got, in_range(&records, from, to));
    assert!(!index_path(bucket).exists(), "no room: no index built");
    // The reply can reach us before the log line reaches root.log.
    wait_until("the node to say why it built no index", || {
        let log = node.root_log();
        log.contains("index not rebuilt") && log.contains("stream memory budgets")
    });
    node.stop();

    let node = Node::start_in(BIN, dir.path(), &["-c", "roomy.toml"]);
    let mut conn = Conn::open(node.addr);
    let got = get_range(&mut conn, "big", from, to, ReadFlags::default());
    assert_eq!(got, in_range(&records, from, to));
    assert_indexes_match(dir.path(), "big");
    node.stop();
}

/// The reference's TestLegacy and TestParityFine data, read through indexes the node builds on
/// the first read and uses on the next (`testdata/dls-buckets/README.md` lists the records).
#[test]
fn reference_buckets_read_exactly_through_the_indexes_the_node_builds() {
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dls-buckets");
    for set in ["legacy", "parity-fine", "parity-broken"] {
        copy_tree(&samples.join(set), &dir.path().join("data").join(set));
    }
    let node = Node::start_in(BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let legacy_keys = [0x5727_5806, 0x5727_5809, 0x5727_580c, 0x5727_5810];
    for round in 0..2 {
        let legacy = get_range(
            &mut conn,
            "legacy",
            0x5727_5807,
            0x5727_580c,
            ReadFlags::default(),
        );
        let keys: Vec<u64> = legacy.iter().map(|r| r.0).collect();
        assert_eq!(keys, legacy_keys[1..3].to_vec(), "round {round}");
        assert_eq!(legacy[0].1, b"I'm a legacy channel".to_vec());
        let fine = get_range(&mut conn, "parity-fine", 0, u64::MAX, ReadFlags::default());
        assert_eq!(fine.len(), 8, "round {round}");
        assert_eq!(fine[0], (0x5727_545c, b"Hello there".to_vec()));
        let broken = get_range(
            &mut conn,
            "parity-broken",
            0,
            u64::MAX,
            ReadFlags::default(),
        );
        assert_eq!(
            broken.len(),
            4,
            "round {round}: the records before the broken header"
        );
        for set in ["legacy", "parity-fine", "parity-broken"] {
            assert_indexes_match(dir.path(), set);
        }
    }
    node.stop();
}
