//! LogClient and `swarmctl log` against real `logfilesnode` processes: one node, and clusters of
//! three whose streams the client merges. Exact results of put then GetRange/GetAll, value
//! filters (substring, regex, ignore-case, malformed regex), ranges across bucket (`key >> 12`)
//! and slot (`key >> 24`) boundaries, empty ranges, channel removal, round-robin writes, a node
//! that goes down, reads that pull from the nodes only as the caller iterates, and the swarmctl
//! verbs with their output and exit codes.
//!
//! The node binary is built on first use (`cargo build -p logfilesnode`, a no-op when it is up
//! to date), so `cargo test -p client` alone tests against the current node.

use client::logfiles::{DiskSize, LogClient, LogRecords, ValueFilter};
use client::{ClientError, ClientOptions, Status};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

// ----- harness ----------------------------------------------------------------------------------

/// The logfilesnode binary next to this test's own target directory, built once if needed.
fn logfilesnode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("logfilesnode", "logfilesnode"))
}

/// A logfilesnode in its own temp directory (data in `data/`), killed when dropped.
type Node = testkit::TempNode;

fn start() -> Node {
    let binary = logfilesnode_binary().to_string_lossy().into_owned();
    testkit::TempNode::start(&binary, "", &[])
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 5000,
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    }
}

fn addrs(nodes: &[Node]) -> Vec<SocketAddr> {
    nodes.iter().map(|node| node.addr).collect()
}

/// `count` nodes and a client on all of them.
fn cluster(count: usize) -> (Vec<Node>, LogClient) {
    let nodes: Vec<Node> = (0..count).map(|_| start()).collect();
    let logs = LogClient::connect(&addrs(&nodes), options()).expect("cluster connects");
    (nodes, logs)
}

type Records = Vec<(u64, Vec<u8>)>;

/// Every record of an opened read, or the first error.
fn drain(records: Result<LogRecords, ClientError>) -> Result<Records, ClientError> {
    records?.collect()
}

fn range(logs: &LogClient, channel: &str, from: u64, to: u64, filter: &ValueFilter) -> Records {
    drain(logs.get_range(channel, from, to, filter))
        .unwrap_or_else(|e| panic!("GetRange {channel} {from}..={to} {filter:?}: {e}"))
}

fn all(logs: &LogClient, channel: &str, filter: &ValueFilter) -> Records {
    drain(logs.get_all(channel, filter))
        .unwrap_or_else(|e| panic!("GetAll {channel} {filter:?}: {e}"))
}

/// What a read of `written` (in write order) must return from one node: the records whose key is
/// in `from..=to` and whose value passes `keep`, in ascending key order, equal keys in write
/// order (a stable sort).
fn expected(
    written: &[(u64, Vec<u8>)],
    from: u64,
    to: u64,
    keep: impl Fn(&[u8]) -> bool,
) -> Records {
    let mut records: Records = written
        .iter()
        .filter(|(key, value)| (from..=to).contains(key) && keep(value))
        .cloned()
        .collect();
    records.sort_by_key(|(key, _)| *key);
    records
}

fn assert_ascending(what: &str, records: &[(u64, Vec<u8>)]) {
    if let Some(pair) = records.windows(2).find(|pair| pair[0].0 > pair[1].0) {
        panic!(
            "{what}: key {} came before key {}: not in key order",
            pair[0].0, pair[1].0
        );
    }
}

/// From several nodes, equal keys come node by node: compare in key order, and the values of
/// one key as a set.
fn assert_same_merged(what: &str, actual: &[(u64, Vec<u8>)], expected: &[(u64, Vec<u8>)]) {
    assert_ascending(what, actual);
    let mut actual = actual.to_vec();
    let mut expected = expected.to_vec();
    actual.sort();
    expected.sort();
    assert_eq!(actual, expected, "{what}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn status_of(error: &ClientError) -> Option<Status> {
    match error {
        ClientError::Status { status, .. } => Some(*status),
        _ => None,
    }
}

/// The records of `channel` on each node alone, in node order.
fn per_node(nodes: &[Node], channel: &str) -> Vec<Records> {
    nodes
        .iter()
        .map(|node| {
            let alone = LogClient::connect(&[node.addr], options()).expect("connects");
            all(&alone, channel, &ValueFilter::All)
        })
        .collect()
}

// ----- put, GetRange, GetAll --------------------------------------------------------------------

#[test]
fn put_then_get_range_and_get_all_return_exactly_what_was_put() {
    let (_nodes, logs) = cluster(1);
    // Written out of key order, several values for some keys, at both ends of the key space.
    let written: Records = [
        (7, "seven"),
        (3, "three"),
        (5, "five"),
        (3, "three again"),
        (0, "zero"),
        (u64::MAX, "max"),
        (5, "five again"),
        (4, "four"),
        (3, "three, third value"),
    ]
    .into_iter()
    .map(|(key, value)| (key, value.as_bytes().to_vec()))
    .collect();
    for (key, value) in &written {
        assert_eq!(logs.put("events", *key, value).expect("put"), 0);
    }
    let everything = expected(&written, 0, u64::MAX, |_| true);
    assert_eq!(
        range(&logs, "events", 0, u64::MAX, &ValueFilter::All),
        everything,
        "every key, in key order, equal keys in write order"
    );
    assert_eq!(all(&logs, "events", &ValueFilter::All), everything);
    assert_eq!(
        range(&logs, "events", 3, 5, &ValueFilter::All),
        expected(&written, 3, 5, |_| true),
        "both bounds inclusive"
    );
    assert_eq!(
        range(&logs, "events", 4, 4, &ValueFilter::All),
        vec![(4, b"four".to_vec())]
    );
    assert_eq!(
        range(&logs, "events", u64::MAX, u64::MAX, &ValueFilter::All),
        vec![(u64::MAX, b"max".to_vec())]
    );
    assert_eq!(logs.channels().expect("channels"), vec!["events"]);
    // Values are bytes: non-UTF-8 and large values come back unchanged.
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    logs.put("binary", 1, &binary).expect("put a large value");
    logs.put("binary", 2, b"\x00\xff\n\t").expect("put bytes");
    assert_eq!(
        all(&logs, "binary", &ValueFilter::All),
        vec![(1, binary), (2, b"\x00\xff\n\t".to_vec())]
    );
    assert_eq!(
        logs.channels().expect("channels"),
        vec!["binary", "events"],
        "sorted"
    );
}

#[test]
fn filters_select_by_substring_regex_and_ignoring_case() {
    let (_nodes, logs) = cluster(1);
    let written: Records = [
        (1, &b"GET /index.html 200"[..]),
        (2, b"get /missing 404"),
        (3, b"POST /form 500"),
        (4, b"GET /raw \xff\xfe 200"),
        (5, "GET /grüsse 301".as_bytes()),
    ]
    .into_iter()
    .map(|(key, value)| (key, value.to_vec()))
    .collect();
    for (key, value) in &written {
        logs.put("http", *key, value).expect("put");
    }
    let keys = |filter: ValueFilter| -> Vec<u64> {
        let by_range: Vec<u64> = range(&logs, "http", 0, 100, &filter)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        let by_all: Vec<u64> = all(&logs, "http", &filter)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(by_range, by_all, "GetRange and GetAll filter alike");
        by_range
    };
    assert_eq!(keys(ValueFilter::Substring(b"GET".to_vec())), [1, 4, 5]);
    assert_eq!(
        keys(ValueFilter::substring_ignore_case(b"get /")),
        [1, 2, 4, 5]
    );
    assert_eq!(keys(ValueFilter::Substring(b"\xff\xfe".to_vec())), [4]);
    assert_eq!(
        keys(ValueFilter::substring_ignore_case("GRÜSSE".as_bytes())),
        [5]
    );
    assert_eq!(
        keys(ValueFilter::substring_ignore_case(b"get.")),
        Vec::<u64>::new(),
        "the substring's dot is literal"
    );
    assert_eq!(keys(ValueFilter::Regex(r" [45]\d\d$".into())), [2, 3]);
    assert_eq!(keys(ValueFilter::Regex("^get".into())), [2]);
    assert_eq!(
        keys(ValueFilter::RegexIgnoreCase("^get".into())),
        [1, 2, 4, 5]
    );
    assert_eq!(
        keys(ValueFilter::Regex("index|form".into())),
        [1, 3],
        "unanchored"
    );
    assert_eq!(
        keys(ValueFilter::Substring(Vec::new())),
        [1, 2, 3, 4, 5],
        "an empty filter selects everything"
    );
    assert_eq!(
        range(
            &logs,
            "http",
            2,
            4,
            &ValueFilter::Substring(b"200".to_vec())
        ),
        vec![(4, b"GET /raw \xff\xfe 200".to_vec())],
        "range and filter together"
    );
}

#[test]
fn a_malformed_regex_fails_with_no_records_naming_the_node() {
    let (nodes, logs) = cluster(2);
    for key in 1..=3 {
        logs.put("regex", key, b"aid=google&vw=1&").expect("put");
    }
    for read in [
        logs.get_range("regex", 0, 6, &ValueFilter::Regex("*vw=1&".into())),
        logs.get_all("regex", &ValueFilter::RegexIgnoreCase("(unclosed".into())),
    ] {
        let mut records = read.expect("the read starts");
        let error = match records.next() {
            Some(Err(error)) => error,
            other => panic!("expected an error first, got {other:?}"),
        };
        assert_eq!(status_of(&error), Some(Status::BadRequest), "{error}");
        let message = error.to_string();
        assert!(
            nodes
                .iter()
                .any(|node| message.starts_with(&format!("node {}: ", node.addr))),
            "{message}"
        );
        assert!(records.next().is_none(), "nothing after the error");
    }
    let too_long = logs
        .get_range("regex", 0, 6, &ValueFilter::Regex("a".repeat(5000)))
        .expect_err("a filter over 4096 bytes is refused before sending");
    assert!(too_long.to_string().contains("4096"), "{too_long}");
    assert_eq!(
        range(&logs, "regex", 0, 6, &ValueFilter::Regex("vw=1&$".into())).len(),
        3,
        "the nodes still answer"
    );
}

/// Keys at and around bucket (4096 keys) and slot (2^24 keys) boundaries, written in
/// descending order; every range between any two of the boundary points must return exactly
/// the records in it, in ascending order.
fn ranges_across_boundaries(node_count: usize) {
    let (_nodes, logs) = cluster(node_count);
    let keys: [u64; 19] = [
        0,
        1,
        0xffe,
        0xfff,
        0x1000,
        0x1001,
        0x1fff,
        0x2000,
        0xff_fffe,
        0xff_ffff,
        0x100_0000,
        0x100_0001,
        0x1ff_ffff,
        0x200_0000,
        0x5727_5806,
        0x5727_5fff,
        0x5727_6000,
        u64::MAX - 1,
        u64::MAX,
    ];
    let mut written: Records = Vec::new();
    for key in keys.iter().rev() {
        written.push((*key, format!("v{key:x}").into_bytes()));
        written.push((*key, format!("w{key:x}").into_bytes()));
    }
    for (key, value) in &written {
        logs.put("bounds", *key, value).expect("put");
    }
    let points = [
        0,
        0xfff,
        0x1000,
        0x1fff,
        0x2000,
        0xff_ffff,
        0x100_0000,
        0x5727_5000,
        0x5727_5fff,
        u64::MAX - 1,
        u64::MAX,
    ];
    for from in points {
        for to in points {
            let got = range(&logs, "bounds", from, to, &ValueFilter::All);
            let want = expected(&written, from, to, |_| true);
            let what = format!("GetRange {from:#x}..={to:#x}");
            if from > to {
                assert!(got.is_empty(), "{what}: from > to is empty");
            }
            if node_count == 1 {
                assert_eq!(got, want, "{what}");
            } else {
                assert_same_merged(&what, &got, &want);
            }
        }
    }
    let everything = all(&logs, "bounds", &ValueFilter::All);
    assert_same_merged(
        "GetAll",
        &everything,
        &expected(&written, 0, u64::MAX, |_| true),
    );
}

#[test]
fn ranges_across_bucket_and_slot_boundaries_on_one_node() {
    ranges_across_boundaries(1);
}

#[test]
fn ranges_across_bucket_and_slot_boundaries_merged_from_three_nodes() {
    ranges_across_boundaries(3);
}

#[test]
fn empty_ranges_and_missing_channels_are_empty_streams() {
    let (_nodes, logs) = cluster(2);
    for key in [10, 20, 0x5000, 0x5001] {
        logs.put("sparse", key, b"x").expect("put");
    }
    let nothing = |from, to| range(&logs, "sparse", from, to, &ValueFilter::All);
    assert!(nothing(11, 19).is_empty(), "between records of one bucket");
    assert!(nothing(21, 0x4fff).is_empty(), "between buckets");
    assert!(
        nothing(0x5002, u64::MAX).is_empty(),
        "after the last record"
    );
    assert!(nothing(20, 10).is_empty(), "from > to");
    assert!(nothing(u64::MAX, 0).is_empty(), "from > to, widest");
    assert_eq!(nothing(20, 20).len(), 1);
    assert!(range(&logs, "missing", 0, u64::MAX, &ValueFilter::All).is_empty());
    assert!(all(&logs, "missing", &ValueFilter::All).is_empty());
    assert_eq!(
        logs.channels().expect("channels"),
        vec!["sparse"],
        "reads create no channel"
    );
    assert_eq!(
        logs.size(Some("missing")).expect("size"),
        DiskSize::default()
    );
}

#[test]
fn remove_channel_empties_it_on_every_node() {
    let (nodes, logs) = cluster(3);
    for key in 0..9 {
        logs.put("doomed", key, b"record").expect("put");
        logs.put("kept", key, b"record").expect("put");
    }
    assert_eq!(logs.channels().expect("channels"), vec!["doomed", "kept"]);
    // Sizes count files on disk, which the nodes write within their flush interval.
    testkit::wait_until("the channel's buckets are on disk", || {
        logs.size(Some("doomed")).expect("size").buckets >= 3
    });
    logs.remove_channel("doomed").expect("remove");
    assert!(all(&logs, "doomed", &ValueFilter::All).is_empty());
    assert!(range(&logs, "doomed", 0, u64::MAX, &ValueFilter::All).is_empty());
    assert_eq!(logs.channels().expect("channels"), vec!["kept"]);
    assert_eq!(
        logs.size(Some("doomed")).expect("size"),
        DiskSize::default()
    );
    assert!(per_node(&nodes, "doomed").iter().all(Vec::is_empty));
    assert_eq!(all(&logs, "kept", &ValueFilter::All).len(), 9);
    logs.remove_channel("never-existed")
        .expect("removing a missing channel is Ok");
    let error = logs
        .remove_channel("bad name")
        .expect_err("a bad channel name");
    assert_eq!(status_of(&error), Some(Status::BadChannelName), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("node {}: ", nodes[0].addr)),
        "the first node's failure is reported, naming it: {error}"
    );
    // The channel can be written again after its removal.
    logs.put("doomed", 1, b"again").expect("put");
    assert_eq!(
        all(&logs, "doomed", &ValueFilter::All),
        vec![(1, b"again".to_vec())]
    );
}

#[test]
fn round_robin_spreads_puts_over_three_nodes_and_reads_merge_them_in_key_order() {
    let (nodes, logs) = cluster(3);
    // 300 records with keys in a scrambled order, each key twice (on different nodes).
    let mut written: Records = Vec::new();
    for i in 0..150u64 {
        let key = (i * 7919) % 150 * 1000;
        written.push((key, format!("{key} a").into_bytes()));
        written.push((key, format!("{key} b").into_bytes()));
    }
    let mut used = vec![0usize; 3];
    for (key, value) in &written {
        used[logs.put("spread", *key, value).expect("put")] += 1;
    }
    assert_eq!(used, vec![100, 100, 100], "round-robin");
    let alone = per_node(&nodes, "spread");
    assert_eq!(
        alone.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![100, 100, 100],
        "each node holds its third"
    );
    for records in &alone {
        assert_ascending("one node's GetAll", records);
    }
    let want = expected(&written, 0, u64::MAX, |_| true);
    assert_same_merged(
        "merged GetRange",
        &range(&logs, "spread", 0, u64::MAX, &ValueFilter::All),
        &want,
    );
    assert_same_merged(
        "merged GetAll",
        &all(&logs, "spread", &ValueFilter::All),
        &want,
    );
    assert_same_merged(
        "merged filtered GetRange",
        &range(
            &logs,
            "spread",
            20_000,
            90_000,
            &ValueFilter::Substring(b" b".to_vec()),
        ),
        &expected(&written, 20_000, 90_000, |value| contains(value, b" b")),
    );
    // A caller may stop early: the nodes stop, and the client carries on.
    let first: Records = logs
        .get_range("spread", 0, u64::MAX, &ValueFilter::All)
        .expect("read")
        .take(3)
        .collect::<Result<_, _>>()
        .expect("first records");
    assert_eq!(
        first.iter().map(|(key, _)| *key).collect::<Vec<_>>(),
        [0, 0, 1000]
    );
    assert_eq!(
        range(&logs, "spread", 0, u64::MAX, &ValueFilter::All).len(),
        300
    );
}

/// PutBatch: batches of at most 64 KiB, each to the next node.
#[test]
fn put_batch_sends_batches_of_at_most_64_kib_round_robin() {
    let (nodes, logs) = cluster(3);
    let values: Vec<(u64, Vec<u8>)> = (0..3000u64).map(|i| (i, vec![b'x'; 100])).collect();
    let stored = logs
        .put_batch("batched", values.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    assert_eq!(stored, 3000);
    let alone = per_node(&nodes, "batched");
    assert!(
        alone.iter().all(|records| !records.is_empty()),
        "several batches of 64 KiB went round-robin: {:?}",
        alone.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for records in &alone {
        // 585 records of 112 bytes fill a 64 KiB batch: six batches, two per node.
        assert!(
            (75 + 585..=2 * 585).contains(&records.len()),
            "two batches of at most 64 KiB per node: {}",
            records.len()
        );
    }
    assert_eq!(all(&logs, "batched", &ValueFilter::All), values);
}

/// The node's cumulative `bytes_out` counter.
fn bytes_out(logs: &LogClient, node: usize) -> u64 {
    logs.client()
        .get_stats(node)
        .expect("stats")
        .into_iter()
        .find(|(name, _)| name == "bytes_out")
        .map(|(_, value)| value)
        .expect("a bytes_out counter")
}

#[test]
fn a_read_pulls_from_the_nodes_only_as_the_caller_iterates() {
    let nodes: Vec<Node> = (0..2).map(|_| start()).collect();
    let small_window = ClientOptions {
        stream_window: 4,
        ..options()
    };
    let logs = LogClient::connect(&addrs(&nodes), small_window).expect("connects");
    // 16 MiB of values LZ4 cannot shrink, spread over both nodes.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let records: Records = (0..16_384u64)
        .map(|key| {
            let value = (0..128)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()
                })
                .collect();
            (key, value)
        })
        .collect();
    let stored = logs
        .put_batch("big", records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    assert_eq!(stored, 16_384);
    let before: Vec<u64> = (0..2).map(|node| bytes_out(&logs, node)).collect();
    let mut read = logs
        .get_range("big", 0, u64::MAX, &ValueFilter::All)
        .expect("read");
    let first = read.next().expect("a record").expect("no error");
    assert_eq!(first, records[0]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (node, before) in before.iter().enumerate() {
        let sent = bytes_out(&logs, node) - before;
        assert!(
            sent < 1024 * 1024,
            "node {node} sent {sent} bytes for a caller that took one record: the window of 4 \
             batches of 64 KiB bounds it"
        );
    }
    let rest: Records = read.collect::<Result<_, _>>().expect("the rest");
    assert_eq!(rest.len(), records.len() - 1);
    assert!(rest
        .iter()
        .zip(&records[1..])
        .all(|(got, want)| got == want));
    let sent: u64 = (0..2)
        .map(|node| bytes_out(&logs, node) - before[node])
        .sum();
    assert!(
        sent > 16 * 1024 * 1024,
        "everything was sent in the end: {sent}"
    );
}

#[test]
fn put_batch_is_exact_and_refuses_an_empty_value_whole() {
    let (_nodes, logs) = cluster(1);
    let written: Records = (0..5000u64)
        .rev()
        .map(|i| (i * 3 % 7001, format!("record {i}").into_bytes()))
        .collect();
    let stored = logs
        .put_batch("bulk", written.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    assert_eq!(stored, 5000);
    assert_eq!(
        range(&logs, "bulk", 0, u64::MAX, &ValueFilter::All),
        expected(&written, 0, u64::MAX, |_| true)
    );
    let with_empty: [(u64, &[u8]); 3] = [(1, b"a"), (2, b""), (3, b"c")];
    let error = logs
        .put_batch("refused", with_empty)
        .expect_err("an empty value");
    assert_eq!(status_of(&error), Some(Status::EmptyValue), "{error}");
    assert!(
        all(&logs, "refused", &ValueFilter::All).is_empty(),
        "all or nothing"
    );
    assert_eq!(
        logs.put_batch("nothing", std::iter::empty())
            .expect("empty"),
        0
    );
}

#[test]
fn request_errors_are_reported_and_not_tried_on_other_nodes() {
    let (nodes, logs) = cluster(3);
    let error = logs.put("ch", 1, b"").expect_err("an empty value");
    assert_eq!(status_of(&error), Some(Status::EmptyValue), "{error}");
    let error = logs
        .put("bad name", 1, b"v")
        .expect_err("a bad channel name");
    assert_eq!(status_of(&error), Some(Status::BadChannelName), "{error}");
    assert!(
        nodes.iter().any(|node| error
            .to_string()
            .starts_with(&format!("node {}: ", node.addr))),
        "{error}"
    );
    assert!(
        logs.channels().expect("channels").is_empty(),
        "no node stored anything"
    );
}

#[test]
fn a_node_that_is_down_is_skipped_by_writes_and_named_by_reads() {
    let (mut nodes, logs) = cluster(3);
    let first = logs.put("ch", 1, b"before").expect("put");
    let down = nodes[1].addr;
    let _ = nodes[1].child.kill();
    let _ = nodes[1].child.wait();
    let mut used = BTreeSet::new();
    for key in 2..14 {
        used.insert(
            logs.put("ch", key, b"while one node is down")
                .expect("put skips the node that is down"),
        );
    }
    assert_eq!(used, BTreeSet::from([0, 2]));
    let records: Records = [(5u64, &b"a"[..]), (6, b"b")]
        .iter()
        .map(|(k, v)| (*k, v.to_vec()))
        .collect();
    assert_eq!(
        logs.put_batch("batch", records.iter().map(|(k, v)| (*k, v.as_slice())))
            .expect("put_batch skips it too"),
        2
    );
    for error in [
        drain(logs.get_range("ch", 0, 100, &ValueFilter::All))
            .expect_err("a read needs every node"),
        drain(logs.get_all("ch", &ValueFilter::All)).expect_err("GetAll too"),
        logs.channels().expect_err("channels"),
        logs.size(None).expect_err("size"),
        logs.remove_channel("unrelated").expect_err("remove"),
    ] {
        assert_eq!(error.node(), Some(down), "{error}");
        assert!(
            error.to_string().starts_with(&format!("node {down}: ")),
            "{error}"
        );
    }
    // The survivors hold every record put after the node went down.
    let survivors: Vec<Node> = vec![nodes.remove(2), nodes.remove(0)];
    let alive = LogClient::connect(&addrs(&survivors), options()).expect("connects");
    let keys: Vec<u64> = range(&alive, "ch", 0, 100, &ValueFilter::All)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut want: Vec<u64> = (2..14).collect();
    if first != 1 {
        want.insert(0, 1);
    }
    assert_eq!(keys, want);
}

#[test]
fn size_counts_bucket_files_and_their_bytes() {
    let (_nodes, logs) = cluster(1);
    assert_eq!(logs.size(None).expect("size"), DiskSize::default());
    let value = vec![b'v'; 1000];
    for key in [0x1000, 0x1001, 0x2000, 0x100_0000] {
        logs.put("sized", key, &value).expect("put");
    }
    logs.put("other", 1, &value).expect("put");
    // Sizes count files on disk, which the node writes within its flush interval.
    testkit::wait_until("the records are on disk", || {
        logs.size(None).expect("size").bytes >= 5000
    });
    let sized = logs.size(Some("sized")).expect("size");
    assert_eq!(
        sized.buckets, 3,
        "three buckets: 0x1, 0x2 and one in slot 1"
    );
    assert!(
        (4000..8000).contains(&sized.bytes),
        "four 1000-byte values plus headers: {sized:?}"
    );
    let total = logs.size(None).expect("size");
    assert_eq!(total.buckets, 4);
    assert!(total.bytes > sized.bytes + 1000);
}

// ----- swarmctl log -----------------------------------------------------------------------------

fn swarmctl(nodes: &[SocketAddr], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmctl"));
    for node in nodes {
        command.arg("--node").arg(node.to_string());
    }
    let mut child = command
        .arg("log")
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
    child.wait_with_output().expect("swarmctl finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `swarmctl log ARGS` against `addrs` and expects success and a quiet stderr; returns
/// its stdout.
#[track_caller]
fn swarmctl_log_ok(addrs: &[SocketAddr], args: &[&str]) -> String {
    let output = swarmctl(addrs, args, None);
    assert!(
        output.status.success(),
        "swarmctl log {args:?}: {}",
        text(&output.stderr)
    );
    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// `getrange` and `getall` of channel "web" (keys 10, 20, 25, 30 and 4096): one line per
/// record, in key order, filtered by substring or regex, with or without case.
fn check_reads(addrs: &[SocketAddr]) {
    let ok = |args: &[&str]| swarmctl_log_ok(addrs, args);
    // One line per record: decimal key, a tab, the value; in key order over the three nodes.
    assert_eq!(
        ok(&["getrange", "web", "0", "0x1000"]),
        "10\tget /a 200\n20\tGET /b 404\n25\tfrom stdin\n30\tGET /c 500\n\
     4096\tafter a bucket boundary\n"
    );
    assert_eq!(
        ok(&["getrange", "web", "20", "25"]),
        "20\tGET /b 404\n25\tfrom stdin\n"
    );
    assert_eq!(ok(&["getrange", "web", "11", "0x13"]), "");
    assert_eq!(ok(&["getrange", "web", "30", "10"]), "", "FROM > TO");
    assert_eq!(
        ok(&["getrange", "web", "0", "100", "--filter", "GET"]),
        "20\tGET /b 404\n30\tGET /c 500\n"
    );
    assert_eq!(
        ok(&[
            "getrange",
            "web",
            "0",
            "100",
            "--filter",
            "get",
            "--ignore-case"
        ]),
        "10\tget /a 200\n20\tGET /b 404\n30\tGET /c 500\n"
    );
    assert_eq!(
        ok(&["getrange", "web", "0", "100", "--regex", r"[45]\d\d$"]),
        "20\tGET /b 404\n30\tGET /c 500\n"
    );
    assert_eq!(
        ok(&[
            "getrange",
            "web",
            "0",
            "100",
            "--regex",
            "^GET",
            "--ignore-case"
        ]),
        "10\tget /a 200\n20\tGET /b 404\n30\tGET /c 500\n"
    );
    assert_eq!(
        ok(&["getall", "web", "--filter", "boundary"]),
        "4096\tafter a bucket boundary\n"
    );
    assert_eq!(
        ok(&["getall", "web"]),
        ok(&["getrange", "web", "0", "18446744073709551615"])
    );
    assert_eq!(ok(&["getall", "web"]).lines().count(), 5);
    assert_eq!(ok(&["getall", "missing"]), "");
}

/// Requests every node refuses, and bad command lines: usage errors, exit 2, nothing on stdout.
fn check_refused_requests(addrs: &[SocketAddr]) {
    // Requests every node refuses (a pattern that does not compile, an empty value): usage
    // errors, one line on stderr, exit 2, nothing on stdout.
    let output = swarmctl(
        addrs,
        &["getrange", "web", "0", "100", "--regex", "*vw=1&"],
        None,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let message = text(&output.stderr);
    assert!(
        message.starts_with("swarmctl: node 127.0.0.1:") && message.contains("bad request"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    let output = swarmctl(addrs, &["put", "web", "1", ""], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("empty value"),
        "{}",
        text(&output.stderr)
    );
    // Usage errors: exit 2.
    for args in [
        &["put", "web", "1x", "v"][..],
        &["getrange", "web", "0", "-1"],
        &["getrange", "web", "0", "0x1ffffffffffffffff"],
        &["getrange", "web", "0", "1", "--filter", "a", "--regex", "b"],
        &["getall", "web", "--ignore-case"],
        &["frobnicate"],
    ] {
        let output = swarmctl(addrs, args, None);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty());
    }
}

/// With node 1 of `nodes` killed: a read prints what the others hold and fails naming it
/// (status 3); a put goes to one of the others; without it, the others serve what they hold.
fn check_a_node_down(nodes: &mut [Node], addrs: &[SocketAddr]) {
    let ok = |args: &[&str]| swarmctl_log_ok(addrs, args);
    // A node that is down: a read prints what the others hold and fails naming it (status
    // 3); a put goes to one of the others; without it, the others serve what they hold.
    let complete = ok(&["getall", "web"]);
    let _ = nodes[1].child.kill();
    let _ = nodes[1].child.wait();
    let output = swarmctl(addrs, &["getall", "web"], None);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(
        text(&output.stderr),
        format!(
            "swarmctl: partial result: 1 node(s) could not answer: node {}: down: connection \
         refused\n",
            addrs[1]
        )
    );
    let partial = text(&output.stdout);
    assert!(
        partial
            .lines()
            .all(|line| complete.lines().any(|whole| whole == line)),
        "the partial read prints records of the live nodes only: {partial}"
    );
    let output = swarmctl(addrs, &["put", "web", "1", "v"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let survivors = [addrs[0], addrs[2]];
    let output = swarmctl(&survivors, &["put", "web", "5", "five"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = swarmctl(&survivors, &["getrange", "web", "5", "5"], None);
    assert_eq!(text(&output.stdout), "5\tfive\n");
}

#[test]
fn swarmctl_log_verbs_end_to_end() {
    let mut nodes: Vec<Node> = (0..3).map(|_| start()).collect();
    let addrs = addrs(&nodes);
    let ok = |args: &[&str]| swarmctl_log_ok(&addrs, args);
    assert_eq!(ok(&["put", "web", "30", "GET /c 500"]), "");
    ok(&["put", "web", "0x14", "GET /b 404"]);
    ok(&["put", "web", "10", "get /a 200"]);
    ok(&["put", "web", "4096", "after a bucket boundary"]);
    let piped = swarmctl(&addrs, &["put", "web", "25", "-"], Some(b"from stdin"));
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    ok(&["put", "other", "1", "x"]);

    check_reads(&addrs);

    // Values are written raw; --escape makes every record one line.
    ok(&["put", "bytes", "1", "two\nlines\t\u{ff}"]);
    assert_eq!(ok(&["getall", "bytes"]), "1\ttwo\nlines\t\u{ff}\n");
    assert_eq!(
        ok(&["getall", "bytes", "--escape"]),
        "1\ttwo\\nlines\\t\\xc3\\xbf\n"
    );

    assert_eq!(ok(&["channels"]), "bytes\nother\nweb\n");
    for args in [&["size", "web"][..], &["size"]] {
        let size = ok(args);
        let fields: Vec<&str> = size.split_whitespace().collect();
        assert_eq!(fields.len(), 4, "{size}");
        assert_eq!((fields[0], fields[2]), ("buckets", "bytes"), "{size}");
        fields[1].parse::<u64>().expect("a number of buckets");
        fields[3].parse::<u64>().expect("a number of bytes");
    }
    assert_eq!(ok(&["size", "missing"]), "buckets 0 bytes 0\n");
    assert_eq!(ok(&["remove-channel", "other"]), "");
    assert_eq!(ok(&["channels"]), "bytes\nweb\n");

    check_refused_requests(&addrs);

    check_a_node_down(&mut nodes, &addrs);
}

/// A node that is down when the client starts does not stop it: writes go to the others, reads
/// name the missing node; a node of the wrong kind still fails the start.
#[test]
fn a_client_starts_with_a_node_down() {
    let up = start();
    let down: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let logs = LogClient::connect(&[up.addr, down], options()).expect("starts with one node up");
    let mut used = BTreeSet::new();
    for key in 0..6 {
        used.insert(
            logs.put("ch", key, b"v")
                .expect("put goes to the live node"),
        );
    }
    assert_eq!(used, BTreeSet::from([0]));
    let error = drain(logs.get_range("ch", 0, 100, &ValueFilter::All))
        .expect_err("a read needs every node");
    assert_eq!(error.node(), Some(down), "{error}");
    // Only "down" errors are tolerated: a node of the wrong kind still fails the start.
    let dht_binary = testkit::workspace_binary("dhtnode", "dhtnode");
    let dht = testkit::TempNode::start(dht_binary.to_str().expect("utf-8"), "", &[]);
    match LogClient::connect(&[up.addr, dht.addr], options()) {
        Err(ClientError::WrongKind { .. }) => {}
        Err(other) => panic!("expected WrongKind, got {other}"),
        Ok(_) => panic!("a dht node in a logfiles list must fail the start"),
    }
}
