//! The logfiles requests through a real socket against the real `logfilesnode` binary: Put and
//! PutBatch then GetRange / GetAll exact results in key order, filters, ranges across bucket and
//! slot boundaries, channel listing, sizes and removal, bad input, the reference's data
//! directories served as they are, read-your-writes, and tails cut after an unclean stop.

use node_core::protocol::batch::{decode_batch, BatchBuilder};
use node_core::protocol::logfiles::{
    self, DiskSize, Filter, FilterMode, GetAllRequest, GetRangeRequest, PutRequest,
    ITEM_RECORD_BATCH,
};
use node_core::protocol::Status;
use std::path::Path;
use testkit::{Conn, TempNode};

const BIN: &str = env!("CARGO_BIN_EXE_logfilesnode");

type Rec = (u64, Vec<u8>);

fn start(config: &str) -> TempNode {
    TempNode::start(BIN, config, &[])
}

fn put(conn: &mut Conn, channel: &str, key: u64, value: &[u8]) -> Status {
    let mut body = Vec::new();
    PutRequest {
        channel,
        key,
        value,
    }
    .encode(&mut body);
    conn.request(logfiles::PUT, body).0
}

fn records_of(items: Vec<(u8, Vec<u8>)>) -> Vec<Rec> {
    let mut records = Vec::new();
    let mut scratch = Vec::new();
    for (code, body) in items {
        assert_eq!(code, ITEM_RECORD_BATCH);
        let batch = decode_batch(&body, &mut scratch).expect("valid batch");
        records.extend(batch.map(|(key, value)| (key, value.to_vec())));
    }
    records
}

fn get_range_filtered(
    conn: &mut Conn,
    channel: &str,
    from: u64,
    to: u64,
    filter: Filter<'_>,
) -> (Vec<Rec>, Status, Vec<u8>) {
    let mut body = Vec::new();
    GetRangeRequest {
        channel,
        from,
        to,
        filter,
    }
    .encode(&mut body);
    let (items, status, reply) = conn.stream(logfiles::GET_RANGE, body);
    (records_of(items), status, reply)
}

fn get_range(conn: &mut Conn, channel: &str, from: u64, to: u64) -> Vec<Rec> {
    let (records, status, reply) = get_range_filtered(conn, channel, from, to, Filter::NONE);
    assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&reply));
    records
}

fn get_all(conn: &mut Conn, channel: &str) -> Vec<Rec> {
    let mut body = Vec::new();
    GetAllRequest {
        channel,
        filter: Filter::NONE,
    }
    .encode(&mut body);
    let (items, status, reply) = conn.stream(logfiles::GET_ALL, body);
    assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&reply));
    records_of(items)
}

fn channel_body(channel: &str) -> Vec<u8> {
    let mut body = Vec::new();
    logfiles::encode_channel(&mut body, channel);
    body
}

fn channels(conn: &mut Conn) -> Vec<String> {
    let (status, body) = conn.request(logfiles::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    logfiles::decode_channel_names(&body).expect("names")
}

fn channel_size(conn: &mut Conn, channel: &str) -> DiskSize {
    let (status, body) = conn.request(logfiles::GET_CHANNEL_SIZE, channel_body(channel));
    assert_eq!(status, Status::Ok);
    DiskSize::decode(&body).expect("size")
}

fn rec(key: u64, value: &str) -> Rec {
    (key, value.as_bytes().to_vec())
}

#[test]
fn put_then_get_range_is_exact_inclusive_and_in_key_order_across_buckets_and_slots() {
    let node = start("");
    let mut conn = Conn::open(node.addr);
    // Keys around a bucket boundary (0x1000) and a slot boundary (0x100_0000), written out of
    // order, one key twice.
    let keys = [
        0x0100_0001,
        0x0fff,
        0x1000,
        0x00ff_ffff,
        5,
        0x0100_0000,
        0x1001,
        5,
    ];
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(
            put(&mut conn, "logs", *key, format!("v{n}").as_bytes()),
            Status::Ok
        );
    }
    let all = get_range(&mut conn, "logs", 0, u64::MAX);
    let expected = vec![
        rec(5, "v4"),
        rec(5, "v7"),
        rec(0x0fff, "v1"),
        rec(0x1000, "v2"),
        rec(0x1001, "v6"),
        rec(0x00ff_ffff, "v3"),
        rec(0x0100_0000, "v5"),
        rec(0x0100_0001, "v0"),
    ];
    assert_eq!(all, expected, "key order; equal keys in write order");
    assert_eq!(
        get_range(&mut conn, "logs", 0x0fff, 0x1000),
        expected[2..4].to_vec(),
        "inclusive at both ends, across a bucket boundary"
    );
    assert_eq!(
        get_range(&mut conn, "logs", 0x00ff_ffff, 0x0100_0000),
        expected[5..7].to_vec(),
        "across a slot boundary"
    );
    assert!(get_range(&mut conn, "logs", 6, 0x0ffe).is_empty(), "a gap");
    assert!(get_range(&mut conn, "logs", 10, 9).is_empty(), "from > to");
    assert!(get_range(&mut conn, "missing", 0, u64::MAX).is_empty());
    assert_eq!(get_all(&mut conn, "logs"), expected);
    assert_eq!(
        channels(&mut conn),
        vec!["logs".to_string()],
        "reads create no channel"
    );
}

#[test]
fn filters_select_by_substring_and_regex_and_a_bad_regex_is_refused() {
    let node = start("");
    let mut conn = Conn::open(node.addr);
    let lines = [
        "GET /x?aid=google&vw=1",
        "GET /y?aid=GOOGLE&vw=2",
        "GET /z?aid=bing&vw=3",
    ];
    for (key, line) in lines.iter().enumerate() {
        assert_eq!(
            put(&mut conn, "web", key as u64, line.as_bytes()),
            Status::Ok
        );
    }
    let filtered = |conn: &mut Conn, mode, pattern: &str| {
        let filter = Filter {
            mode,
            pattern: pattern.as_bytes(),
        };
        let (records, status, reply) = get_range_filtered(conn, "web", 0, 10, filter);
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&reply));
        records.into_iter().map(|(key, _)| key).collect::<Vec<_>>()
    };
    assert_eq!(
        filtered(&mut conn, FilterMode::Substring, "aid=google"),
        [0]
    );
    assert_eq!(filtered(&mut conn, FilterMode::Regex, "(aid=google)"), [0]);
    assert_eq!(
        filtered(&mut conn, FilterMode::RegexCaseInsensitive, "aid=google"),
        [0, 1]
    );
    assert_eq!(
        filtered(&mut conn, FilterMode::Regex, "aid=(google|bing)&"),
        [0, 2]
    );
    assert_eq!(filtered(&mut conn, FilterMode::Regex, "^GET /[xz]"), [0, 2]);

    let (records, status, reply) = get_range_filtered(
        &mut conn,
        "web",
        0,
        10,
        Filter {
            mode: FilterMode::Regex,
            pattern: b"*vw=1&",
        },
    );
    assert_eq!(status, Status::BadRequest);
    assert!(records.is_empty());
    assert!(
        String::from_utf8_lossy(&reply).contains("regular expression"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn bad_writes_get_their_status_and_change_nothing() {
    let node = start("[logfiles]\nmax_value_bytes = 100\n");
    let mut conn = Conn::open(node.addr);
    assert_eq!(put(&mut conn, "bad name", 1, b"x"), Status::BadChannelName);
    assert_eq!(put(&mut conn, "c", 1, b""), Status::EmptyValue);
    assert_eq!(put(&mut conn, "c", 1, &[b'x'; 101]), Status::ValueTooBig);
    assert_eq!(put(&mut conn, "c", 1, &[b'x'; 100]), Status::Ok);

    // PutBatch is all or nothing: one empty value refuses the whole batch.
    let batch_body = |values: &[&[u8]]| {
        let mut builder = BatchBuilder::new(64 * 1024);
        for (key, value) in values.iter().enumerate() {
            builder.push(10 + key as u64, value);
        }
        let mut batch = Vec::new();
        builder.finish_into(&mut batch);
        let mut body = Vec::new();
        logfiles::encode_put_batch(&mut body, "c", &batch);
        body
    };
    let (status, _) = conn.request(logfiles::PUT_BATCH, batch_body(&[b"a", b"", b"c"]));
    assert_eq!(status, Status::EmptyValue);
    assert_eq!(get_all(&mut conn, "c").len(), 1);
    let (status, body) = conn.request(logfiles::PUT_BATCH, batch_body(&[b"a", b"b", b"c"]));
    assert_eq!(status, Status::Ok);
    assert_eq!(body, 3u64.to_le_bytes());
    assert_eq!(
        get_all(&mut conn, "c"),
        vec![
            rec(1, &"x".repeat(100)),
            rec(10, "a"),
            rec(11, "b"),
            rec(12, "c")
        ]
    );
    let (status, _) = conn.request(logfiles::PUT_BATCH, vec![1, b'c', 0, 1, 2]);
    assert_eq!(status, Status::BadRequest, "a malformed batch");
    let (status, _) = conn.request(logfiles::PUT, vec![200]);
    assert_eq!(status, Status::BadRequest, "a truncated Put");
}

#[test]
fn channels_sizes_and_remove_channel() {
    let node = start("");
    let mut conn = Conn::open(node.addr);
    for key in [1u64, 0x1000, 0x2000] {
        assert_eq!(put(&mut conn, "a", key, b"0123456789"), Status::Ok);
    }
    assert_eq!(put(&mut conn, "b", 1, b"x"), Status::Ok);
    assert_eq!(channels(&mut conn), vec!["a".to_string(), "b".to_string()]);
    let size = channel_size(&mut conn, "a");
    // Three new bucket files: a 16-byte file header and one 16-byte record header + 10 bytes.
    assert_eq!(
        size,
        DiskSize {
            buckets: 3,
            bytes: 3 * (16 + 16 + 10)
        }
    );
    assert_eq!(channel_size(&mut conn, "missing"), DiskSize::default());
    let (status, body) = conn.request(logfiles::GET_SIZE, Vec::new());
    assert_eq!(status, Status::Ok);
    assert_eq!(
        DiskSize::decode(&body).unwrap(),
        DiskSize {
            buckets: 4,
            bytes: size.bytes + 16 + 16 + 1
        }
    );

    let (status, _) = conn.request(logfiles::REMOVE_CHANNEL, channel_body("a"));
    assert_eq!(status, Status::Ok);
    assert!(get_all(&mut conn, "a").is_empty());
    assert_eq!(channels(&mut conn), vec!["b".to_string()]);
    assert!(
        !node.dir.path().join("data/a").exists(),
        "its files are gone"
    );
    let (status, _) = conn.request(logfiles::REMOVE_CHANNEL, channel_body("a"));
    assert_eq!(status, Status::Ok, "removing a missing channel is fine");
    // Written again, it starts empty.
    assert_eq!(put(&mut conn, "a", 7, b"new"), Status::Ok);
    assert_eq!(get_all(&mut conn, "a"), vec![rec(7, "new")]);
}

#[test]
fn reads_see_every_write_acknowledged_before_them_whatever_the_flush_timer() {
    let node = start("[logfiles]\nflush_interval_ms = 3600000\nfsync = \"none\"\n");
    let mut conn = Conn::open(node.addr);
    let value_of = |key: u64| format!("buffered record {key}").into_bytes();
    for key in 0..100u64 {
        assert_eq!(put(&mut conn, "c", key, &value_of(key)), Status::Ok);
    }
    // Every record, in key order, with its own value; and the same through GetAll.
    let expected: Vec<Rec> = (0..100u64).map(|key| (key, value_of(key))).collect();
    assert_eq!(get_range(&mut conn, "c", 0, 99), expected);
    assert_eq!(get_all(&mut conn, "c"), expected);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The reference's data sets, each served as a channel, read as `dls-buckets/README.md` says;
/// and appending to a legacy or v1 bucket keeps it readable (TestLegacyWrite, TestVersionOneWrite).
#[test]
fn the_reference_data_directories_are_served_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dls-buckets");
    for set in [
        "legacy",
        "putlegacy",
        "parity-fine",
        "parity-broken",
        "empty-bucket",
    ] {
        copy_dir(&samples.join(set), &dir.path().join("data").join(set));
    }
    let node = testkit::Node::start_in(BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let legacy = get_all(&mut conn, "legacy");
    assert_eq!(
        legacy,
        vec![
            rec(0x5727_5806, "Hello there"),
            rec(0x5727_5809, "I'm a legacy channel"),
            rec(0x5727_580c, "Nice to meet you finaly"),
            rec(0x5727_5810, "Oh, yes indeed."),
        ]
    );
    let fine = get_all(&mut conn, "parity-fine");
    assert_eq!(fine.len(), 8);
    assert_eq!(fine[0], rec(0x5727_545c, "Hello there"));
    assert_eq!(fine[7], rec(0x5727_5475, "bye"));
    assert_eq!(get_all(&mut conn, "parity-broken"), fine[..4].to_vec());
    assert_eq!(get_all(&mut conn, "empty-bucket").len(), 8);
    assert_eq!(
        get_range(&mut conn, "parity-fine", 0x5727_5461, 0x5727_546a).len(),
        3
    );

    for (n, key) in [0x5727_5813u64, 0x5727_5814, 0x5727_5815, 0x5727_5817]
        .iter()
        .enumerate()
    {
        let value = format!("test{}", n + 1);
        assert_eq!(
            put(&mut conn, "putlegacy", *key, value.as_bytes()),
            Status::Ok
        );
    }
    let after = get_all(&mut conn, "putlegacy");
    assert_eq!(after.len(), 8);
    assert_eq!(
        after[4..],
        [
            rec(0x5727_5813, "test1"),
            rec(0x5727_5814, "test2"),
            rec(0x5727_5815, "test3"),
            rec(0x5727_5817, "test4")
        ]
    );
    for key in 0x5727_5476u64..=0x5727_5479 {
        assert_eq!(put(&mut conn, "parity-fine", key, b"v1 append"), Status::Ok);
    }
    assert_eq!(get_all(&mut conn, "parity-fine").len(), 12);
    // The damage was logged, naming the file.
    let log = node.root_log();
    assert!(log.contains("parity-broken"), "{log}");
}

/// A bucket left with a torn tail by an unclean stop (the journal lists it) is cut before the
/// node serves, and the cut is logged.
#[test]
fn torn_tails_of_the_buckets_open_at_an_unclean_stop_are_cut_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = testkit::Node::start_in(BIN, dir.path(), &[]);
        let mut conn = Conn::open(node.addr);
        assert_eq!(put(&mut conn, "c", 0x4242, b"whole record"), Status::Ok);
        // Let the flush timer write it; then kill -9 (Node's drop).
        std::thread::sleep(std::time::Duration::from_millis(600));
        drop(conn);
        drop(node);
    }
    let bucket = dir.path().join("data/c/0000000000/004");
    let whole_len = std::fs::metadata(&bucket).unwrap().len();
    assert_eq!(whole_len, 16 + 16 + 12);
    assert!(dir.path().join("data/open-buckets.journal").exists());
    // A torn record after it, as a crash mid-write leaves.
    let mut torn = std::fs::read(&bucket).unwrap();
    torn.extend_from_slice(&[0x43, 0x42, 0, 0, 0, 0, 0, 0, 50]);
    std::fs::write(&bucket, torn).unwrap();

    let node = testkit::Node::start_in(BIN, dir.path(), &[]);
    assert_eq!(std::fs::metadata(&bucket).unwrap().len(), whole_len);
    let log = node.root_log();
    assert!(log.contains("cut 9 torn bytes"), "{log}");
    let mut conn = Conn::open(node.addr);
    assert_eq!(get_all(&mut conn, "c"), vec![rec(0x4242, "whole record")]);
}

/// A FIFO where a bucket file belongs (put there by hand, or by another program) is no bucket:
/// reads pass it over and a Put into it is refused, instead of the node opening it and blocking
/// its event loop for ever (every client stalled, SIGTERM too).
#[test]
fn a_fifo_where_a_bucket_belongs_stalls_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = testkit::Node::start_in(BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    assert_eq!(put(&mut conn, "c", 0x4242, b"whole record"), Status::Ok);
    let fifo = dir.path().join("data/c/0000000000/005");
    testkit::mkfifo(&fifo);
    assert_eq!(get_all(&mut conn, "c"), vec![rec(0x4242, "whole record")]);
    assert_eq!(
        put(&mut conn, "c", 0x5001, b"into the fifo"),
        Status::InternalError
    );
    assert_eq!(put(&mut conn, "c", 0x4243, b"next"), Status::Ok);
    assert_eq!(get_all(&mut conn, "c").len(), 2);
    drop(conn);
    node.signal("TERM");
    assert_eq!(node.wait_exit().code(), Some(0), "a clean stop");
}

/// The open-bucket journal or the lock made a FIFO by hand: the start is refused naming it
/// (without the journal, the buckets an unclean stop left torn would go unchecked), where it
/// hung opening the journal, or took a lock a second node would hang reading.
#[test]
fn a_fifo_as_the_journal_or_the_lock_refuses_the_start_naming_it() {
    for (name, what) in [("open-buckets.journal", "journal"), (".lock", "lock")] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        testkit::mkfifo(&dir.path().join("data").join(name));
        let (code, stderr) = testkit::refused_start(BIN, dir.path(), &["--listen", "127.0.0.1:0"]);
        assert_eq!(code, Some(1), "{stderr}");
        for expected in [name, what, "is a FIFO, not a regular file"] {
            assert!(stderr.contains(expected), "{expected:?} in {stderr}");
        }
    }
}

/// Under fsync = always a Put is answered after its group commit; many pipelined Puts share
/// commits, and all are there.
#[test]
fn fsync_always_acknowledges_pipelined_puts_after_group_commits() {
    let node = start("[logfiles]\nfsync = \"always\"\n");
    let mut conn = Conn::open(node.addr);
    let requests: Vec<_> = (0..500u64)
        .map(|key| {
            let mut body = Vec::new();
            PutRequest {
                channel: "durable",
                key,
                value: b"synced",
            }
            .encode(&mut body);
            (logfiles::PUT, body)
        })
        .collect();
    for (status, body) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(get_all(&mut conn, "durable").len(), 500);
    let (status, body) = conn.request(node_core::protocol::RequestCode::GET_STATS, Vec::new());
    assert_eq!(status, Status::Ok);
    let commits = stat_value(&body, "group_commits");
    assert!(
        (1..500).contains(&commits),
        "500 pipelined puts took {commits} group commits"
    );
}

fn stat_value(body: &[u8], name: &str) -> u64 {
    let mut reader = node_core::protocol::wire::Reader::new(body);
    let count = reader.u32("n").unwrap();
    for _ in 0..count {
        let key = reader.str8("name").unwrap();
        let value = reader.u64("value").unwrap();
        if key == name {
            return value;
        }
    }
    panic!("no stat {name}");
}

/// Two nodes on one data directory would interleave their appends: the second is refused.
#[test]
fn a_second_node_on_the_same_data_directory_is_refused() {
    let node = start("");
    let second = std::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(node.dir.path())
        .output()
        .expect("run a second node");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    let mut conn = Conn::open(node.addr);
    assert_eq!(put(&mut conn, "c", 1, b"still serving"), Status::Ok);
}

/// Keys spread over many buckets evict writers all the time; the files waiting for the next
/// fsync must not hold a descriptor each until then.
#[test]
fn descriptors_stay_bounded_when_keys_spread_over_many_buckets() {
    let node = start(
        "[logfiles]\nmax_open_buckets = 8\nmax_open_buckets_per_channel = 8\n\
         fsync = \"interval\"\nfsync_interval_ms = 3600000\n",
    );
    let mut conn = Conn::open(node.addr);
    for n in 0..2000u64 {
        assert_eq!(put(&mut conn, "spread", n << 12, b"x"), Status::Ok);
    }
    let open_fds = std::fs::read_dir(format!("/proc/{}/fd", node.child.id()))
        .expect("fd dir")
        .count();
    assert!(
        open_fds < 64,
        "{open_fds} descriptors open after 2000 buckets"
    );
    assert_eq!(get_range(&mut conn, "spread", 0, u64::MAX).len(), 2000);
}

/// A channel removed right after its first write leaves no directory to fsync: the group commit
/// and the shutdown must not fail on it (the shutdown exited 1 before).
#[test]
fn removing_a_fresh_channel_does_not_fail_commits_or_the_shutdown() {
    for fsync in ["interval", "always"] {
        let node = start(&format!("[logfiles]\nfsync = \"{fsync}\"\n"));
        let mut conn = Conn::open(node.addr);
        assert_eq!(put(&mut conn, "fresh", 1, b"x"), Status::Ok);
        let (status, _) = conn.request(logfiles::REMOVE_CHANNEL, channel_body("fresh"));
        assert_eq!(status, Status::Ok);
        assert_eq!(put(&mut conn, "other", 1, b"y"), Status::Ok, "{fsync}");
        drop(conn);
        let TempNode { node, dir } = node;
        node.stop();
        drop(dir);
    }
}

/// docs/protocol.md §4: an empty batch stores nothing, replies Ok with 0 and creates no channel,
/// so a node at `max_channels` does not refuse one for a new channel (it did: OutOfMemory).
#[test]
fn an_empty_put_batch_for_a_new_channel_is_ok_at_the_channel_limit() {
    let node = start("[logfiles]\nmax_channels = 1\n");
    let mut conn = Conn::open(node.addr);
    assert_eq!(put(&mut conn, "a", 1, b"x"), Status::Ok);
    let batch_body = |channel: &str, records: &[(u64, &[u8])]| {
        let mut builder = BatchBuilder::new(64 * 1024);
        for (key, value) in records {
            builder.push(*key, value);
        }
        let mut batch = Vec::new();
        builder.finish_into(&mut batch);
        let mut body = Vec::new();
        logfiles::encode_put_batch(&mut body, channel, &batch);
        body
    };
    let (status, body) = conn.request(logfiles::PUT_BATCH, batch_body("b", &[]));
    assert_eq!((status, body), (Status::Ok, 0u64.to_le_bytes().to_vec()));
    let (status, _) = conn.request(logfiles::PUT_BATCH, batch_body("b c", &[]));
    assert_eq!(
        status,
        Status::BadChannelName,
        "an empty batch's name is checked"
    );
    let (status, _) = conn.request(logfiles::PUT_BATCH, batch_body("b", &[(1, b"x")]));
    assert_eq!(
        status,
        Status::OutOfMemory,
        "a record for a new channel is refused"
    );
    assert_eq!(channels(&mut conn), vec!["a".to_string()]);
}
