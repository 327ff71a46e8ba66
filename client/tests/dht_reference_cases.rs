//! The reference dht test suite (`dhttest`; `../shared/reference/dht.md` §9.1 legacy cases and
//! §9.2 neo cases, with their `LegacyVerifier` / `NeoVerifier`) ported to [`DhtClient`] against
//! real `dhtnode` processes.
//!
//! Every case is a function taking the connected client; [`both!`] turns it into a module of two
//! tests, `single_node` (one node owning the whole hash space) and `three_nodes` (three nodes
//! whose ranges are `split_evenly(3)`, passed as `--range`). Each test starts its own nodes on
//! port 0 in temporary directories, so tests run in parallel; like the reference, every case
//! works on `test_channel` and ends by removing it.
//!
//! The cases, by their reference names:
//!
//! | reference | here |
//! |---|---|
//! | Put followed by Get (legacy 2, neo 1) | `put_followed_by_get` |
//! | Get for non-existent entry (legacy 3, neo 3) | `get_non_existent` |
//! | Put / Remove / Get (neo 2) | `put_remove_get` |
//! | Exists | `exists` |
//! | GetAll for predefined data (legacy 4) | `get_all_predefined_data` |
//! | Removing channel (legacy 5), RemoveChannel (neo 9) | `removing_channel` |
//! | GetChannels, GetChannels after RemoveChannel (neo 10, 11) | `get_channels` |
//! | Listen gets activated by Put (legacy 7) | `listen_activated_by_put` |
//! | Listen stops after removing channel (legacy 6; MirrorRemoveChannel) | `listen_stops_after_removing_channel` |
//! | Batch Listen (legacy 8) | `batch_listen` |
//! | MirrorRemove / MirrorUpdate, as Listen (neo 15, 16) | `listen_remove`, `listen_update` |
//! | Ordered / Unordered Put (legacy 9, 10; neo 6, 7) | `ordered_put`, `unordered_put` |
//! | Ordered / Unordered Remove (legacy 11, 12; neo 8) | `ordered_remove`, `unordered_remove` |
//! | ValueTooBig (neo 4) | `value_too_big` |
//! | LargeValueFetch (neo 5) | `large_value_fetch` |
//! | GetAllBlocking (neo 12) | `get_all_blocking` |
//! | GetAllSuspend (neo 13) | `get_all_suspend` |
//! | GetAllConnError (neo 14) | `get_all_conn_error` |
//! | Update NoRecord (neo 22) | `update_no_record` |
//! | Update (neo 23) | `update` |
//! | Update conflict (neotest `update_pause`) | `update_conflict` |
//! | SerializerUpdate (neo 24) | `serializer_update` |
//!
//! Bulk cases use 10 000 records: "sequential" (key = i, value = the key in decimal) or
//! "spread" (key = FNV-1a-64 of the 4-byte little-endian i, value = the key in decimal), exactly
//! as the reference generated them. The bulk Puts of the Put/Remove cases are individual `put`
//! calls (that is what they test), spread over `THREADS` threads sharing the client, each thread
//! putting a contiguous run of records in order.

use client::dht::{GetAllOptions, ListenEvent, Listener, UpdateDecision};
use client::{ClientError, ClientOptions, DhtClient, Status};
use node_core::protocol::dht::{split_evenly, value_hash, HashRange};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const CHANNEL: &str = "test_channel";
/// Records of the bulk cases, as in the reference.
const BULK: u32 = 10_000;
/// The reference's neo `MaxRecordSize`; the nodes of the value-size cases are configured to it.
const MAX_RECORD_SIZE: usize = 65_512;
const MAX_RECORD_CONFIG: &str = "[dht]\nmax_value_bytes = 65512\n";
/// Threads sharing the client in the bulk cases.
const THREADS: usize = 32;
const WAIT: Duration = Duration::from_secs(20);
/// How long "nothing else arrives" is watched for.
const QUIET: Duration = Duration::from_millis(200);

// ----- harness (as in tests/dht.rs) -------------------------------------------------------------

/// The dhtnode binary next to this test's own target directory, built once if needed.
fn dhtnode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("dhtnode", "dhtnode"))
}

/// A running `dhtnode` in its own temporary directory, killed on drop.
/// A dhtnode in its own temp directory, killed when dropped.
type Node = testkit::TempNode;

/// Starts a node owning `range` on a free port; `config` is its config file (TOML).
fn start(range: HashRange, config: &str) -> Node {
    let binary = dhtnode_binary().to_string_lossy().into_owned();
    testkit::TempNode::start(&binary, config, &["--range", &range.to_string()])
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 5000,
        request_timeout_ms: 20_000,
        ..ClientOptions::default()
    }
}

/// Starts the nodes owning `ranges` (each with `config`), connects a client to them, runs
/// `case`, and checks the client still sees the ranges it was given.
fn run(ranges: Vec<HashRange>, config: &str, case: fn(&DhtClient)) {
    let nodes: Vec<Node> = ranges.iter().map(|range| start(*range, config)).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let dht = DhtClient::connect(&addrs, options()).expect("client connects");
    assert_eq!(
        dht.ranges(),
        addrs.into_iter().zip(ranges).collect::<Vec<_>>(),
        "ranges learned at connect"
    );
    case(&dht);
    drop(dht);
    drop(nodes);
}

/// Runs a case on one node owning the whole hash space.
fn on_single_node(config: &str, case: fn(&DhtClient)) {
    run(vec![HashRange::FULL], config, case);
}

/// Runs a case on three nodes whose ranges tessellate the hash space.
fn on_three_nodes(config: &str, case: fn(&DhtClient)) {
    run(split_evenly(3), config, case);
}

/// `both!(case)` or `both!(case, CONFIG)`: a module named after the case function with the
/// tests `single_node` and `three_nodes`.
macro_rules! both {
    ($case:ident) => {
        both!($case, "");
    };
    ($case:ident, $config:expr) => {
        mod $case {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn single_node() {
                super::on_single_node($config, super::$case);
            }

            #[test]
            fn three_nodes() {
                super::on_three_nodes($config, super::$case);
            }
        }
    };
}

/// A client of its own on the same nodes, with other options (stream window).
fn second_client(dht: &DhtClient, options: ClientOptions) -> DhtClient {
    let addrs: Vec<SocketAddr> = dht.ranges().into_iter().map(|(addr, _)| addr).collect();
    DhtClient::connect(&addrs, options).expect("second client connects")
}

// ----- records and verification -----------------------------------------------------------------

type Records = BTreeMap<u64, Vec<u8>>;

/// The reference's record value: the key in decimal.
fn decimal(key: u64) -> Vec<u8> {
    key.to_string().into_bytes()
}

/// The reference's "sequential" records, in generation order: key = i.
fn sequential(count: u32) -> Vec<(u64, Vec<u8>)> {
    (0..count)
        .map(|i| (u64::from(i), decimal(u64::from(i))))
        .collect()
}

/// The reference's "spread" records, in generation order: key = FNV-1a-64 of the 4-byte
/// little-endian i.
fn spread(count: u32) -> Vec<(u64, Vec<u8>)> {
    let records: Vec<(u64, Vec<u8>)> = (0..count)
        .map(|i| {
            let key = value_hash(&i.to_le_bytes());
            (key, decimal(key))
        })
        .collect();
    let distinct: BTreeSet<u64> = records.iter().map(|(key, _)| *key).collect();
    assert_eq!(distinct.len(), records.len(), "spread keys are distinct");
    records
}

/// Runs `f` on every item, from [`THREADS`] threads sharing the client, each taking a
/// contiguous run of `items` in order.
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    let chunk = items.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        for run in items.chunks(chunk) {
            let f = &f;
            scope.spawn(move || run.iter().for_each(f));
        }
    });
}

/// Individual Puts of every record (the Put cases' subject), from several threads.
fn put_each(dht: &DhtClient, records: &[(u64, Vec<u8>)]) {
    in_parallel(records, |(key, value)| {
        dht.put(CHANNEL, *key, value)
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    });
}

fn get_all(dht: &DhtClient, channel: &str, options: GetAllOptions) -> Vec<(u64, Vec<u8>)> {
    dht.get_all(channel, options)
        .collect::<Result<_, _>>()
        .expect("get_all")
}

/// Checks that `records` holds each of `expected` exactly once and nothing else.
fn assert_exact_set(what: &str, records: &[(u64, Vec<u8>)], expected: &Records) {
    let mut seen = Records::new();
    for (key, value) in records {
        assert!(
            seen.insert(*key, value.clone()).is_none(),
            "{what}: key {key} delivered twice"
        );
    }
    let missing = expected
        .keys()
        .filter(|key| !seen.contains_key(key))
        .count();
    let extra = seen
        .keys()
        .filter(|key| !expected.contains_key(key))
        .count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "{what}: records missing and extra"
    );
    let differing: Vec<u64> = expected
        .iter()
        .filter(|(key, value)| seen.get(key) != Some(value))
        .map(|(key, _)| *key)
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: values differ, e.g. keys {differing:?}"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// The reference verifiers (legacy and neo) together: GetChannelSize, GetAll exact match,
/// GetAll keys-only exact key set, GetAll with value filter `"0"` against the local substring
/// filter, Exists and Get of every record, GetChannels; and for every `removed` key Exists
/// false and Get nothing.
fn verify(dht: &DhtClient, expected: &Records, removed: &[u64]) {
    let size = dht.get_channel_size(CHANNEL).expect("GetChannelSize");
    assert_eq!(
        size.records,
        expected.len() as u64,
        "GetChannelSize records"
    );
    let bytes: u64 = expected.values().map(|value| 8 + value.len() as u64).sum();
    assert_eq!(size.bytes, bytes, "GetChannelSize bytes");

    assert_exact_set(
        "GetAll",
        &get_all(dht, CHANNEL, GetAllOptions::default()),
        expected,
    );

    let keys = get_all(
        dht,
        CHANNEL,
        GetAllOptions {
            keys_only: true,
            filter: None,
        },
    );
    let expected_keys: Records = expected.keys().map(|key| (*key, Vec::new())).collect();
    assert_exact_set("GetAll keys-only", &keys, &expected_keys);

    let filtered = get_all(
        dht,
        CHANNEL,
        GetAllOptions {
            keys_only: false,
            filter: Some(b"0".to_vec()),
        },
    );
    let expected_filtered: Records = expected
        .iter()
        .filter(|(_, value)| contains(value, b"0"))
        .map(|(key, value)| (*key, value.clone()))
        .collect();
    assert!(
        !expected_filtered.is_empty() && expected_filtered.len() < expected.len(),
        "the filter selects some records, not all"
    );
    assert_exact_set("GetAll filter \"0\"", &filtered, &expected_filtered);

    let records: Vec<(u64, &Vec<u8>)> = expected.iter().map(|(k, v)| (*k, v)).collect();
    in_parallel(&records, |(key, value)| {
        assert!(dht.exists(CHANNEL, *key).expect("Exists"), "Exists {key}");
        assert_eq!(
            dht.get(CHANNEL, *key).expect("Get").as_ref(),
            Some(*value),
            "Get {key}"
        );
    });
    in_parallel(removed, |key| {
        assert!(!dht.exists(CHANNEL, *key).expect("Exists"), "Exists {key}");
        assert_eq!(dht.get(CHANNEL, *key).expect("Get"), None, "Get {key}");
    });

    assert!(
        dht.get_channels()
            .expect("GetChannels")
            .contains(&CHANNEL.to_string()),
        "GetChannels lists the channel"
    );
}

/// The reference's clean-up after every case: remove the channel, which leaves nothing behind.
fn clean_up(dht: &DhtClient) {
    dht.remove_channel(CHANNEL).expect("RemoveChannel");
    assert!(!dht
        .get_channels()
        .expect("GetChannels")
        .contains(&CHANNEL.to_string()));
    assert_eq!(dht.get_channel_size(CHANNEL).expect("size").records, 0);
}

fn next_event(listener: &mut Listener) -> ListenEvent {
    listener
        .next(WAIT)
        .expect("listen event")
        .expect("an event before the timeout")
}

fn assert_quiet(listener: &mut Listener) {
    assert_eq!(
        listener.next(QUIET).expect("listen"),
        None,
        "no further notification"
    );
}

// ----- keyed requests ---------------------------------------------------------------------------

/// Legacy 2 / neo 1: three records read back.
fn put_followed_by_get(dht: &DhtClient) {
    let records = [
        (0xA, b"Value for key 0xA".to_vec()),
        (0xB, b"Value for key 0xB".to_vec()),
        (0xC, b"Value for key 0xC".to_vec()),
    ];
    for (key, value) in &records {
        dht.put(CHANNEL, *key, value).expect("put");
    }
    for (key, value) in &records {
        assert_eq!(dht.get(CHANNEL, *key).expect("get").as_ref(), Some(value));
    }
    clean_up(dht);
}
both!(put_followed_by_get);

/// Legacy 3 / neo 3: a missing record is a successful Get of nothing, whether the channel
/// exists or not.
fn get_non_existent(dht: &DhtClient) {
    assert_eq!(dht.get(CHANNEL, 0xA).expect("get, no channel"), None);
    dht.put(CHANNEL, 0xB, b"there").expect("put");
    assert_eq!(dht.get(CHANNEL, 0xA).expect("get, channel exists"), None);
    assert_eq!(dht.get(CHANNEL, 0xB).expect("get"), Some(b"there".to_vec()));
    clean_up(dht);
}
both!(get_non_existent);

/// Neo 2: Put, Remove (the record existed), Get returns nothing.
fn put_remove_get(dht: &DhtClient) {
    for key in [0xA, 0xB, 0xC, u64::MAX] {
        dht.put(CHANNEL, key, b"value").expect("put");
        assert!(dht.remove(CHANNEL, key).expect("remove"), "existed");
        assert_eq!(dht.get(CHANNEL, key).expect("get"), None);
        assert!(!dht.remove(CHANNEL, key).expect("remove again"), "gone");
    }
    assert_eq!(dht.get_channel_size(CHANNEL).expect("size").records, 0);
    clean_up(dht);
}
both!(put_remove_get);

fn exists(dht: &DhtClient) {
    assert!(!dht.exists(CHANNEL, 0xA).expect("exists, no channel"));
    dht.put(CHANNEL, 0xA, b"value").expect("put");
    assert!(dht.exists(CHANNEL, 0xA).expect("exists"));
    assert!(!dht.exists(CHANNEL, 0xB).expect("exists, other key"));
    dht.remove(CHANNEL, 0xA).expect("remove");
    assert!(!dht.exists(CHANNEL, 0xA).expect("exists, removed"));
    clean_up(dht);
}
both!(exists);

// ----- GetAll, channels -------------------------------------------------------------------------

/// Legacy 4: three records, the exact set, no duplicates.
fn get_all_predefined_data(dht: &DhtClient) {
    let expected: Records = [
        (0xA, b"Value for key 0xA".to_vec()),
        (0xB, b"Value for key 0xB".to_vec()),
        (0xC, b"Value for key 0xC".to_vec()),
    ]
    .into_iter()
    .collect();
    for (key, value) in &expected {
        dht.put(CHANNEL, *key, value).expect("put");
    }
    assert_exact_set(
        "GetAll",
        &get_all(dht, CHANNEL, GetAllOptions::default()),
        &expected,
    );
    clean_up(dht);
}
both!(get_all_predefined_data);

/// Legacy 5 / neo 9: after RemoveChannel, GetAll returns nothing and Get returns nothing.
fn removing_channel(dht: &DhtClient) {
    for key in [0xA, 0xB, 0xC] {
        dht.put(CHANNEL, key, b"hi").expect("put");
    }
    assert_eq!(dht.get(CHANNEL, 0xA).expect("get"), Some(b"hi".to_vec()));
    dht.remove_channel(CHANNEL).expect("remove channel");
    assert!(get_all(dht, CHANNEL, GetAllOptions::default()).is_empty());
    for key in [0xA, 0xB, 0xC] {
        assert_eq!(dht.get(CHANNEL, key).expect("get"), None);
        assert!(!dht.exists(CHANNEL, key).expect("exists"));
    }
    assert_eq!(dht.get_channel_size(CHANNEL).expect("size").records, 0);
    // The channel can be written again, from scratch.
    dht.put(CHANNEL, 0xB, b"again").expect("put after removal");
    assert_eq!(
        get_all(dht, CHANNEL, GetAllOptions::default()),
        vec![(0xB, b"again".to_vec())]
    );
    clean_up(dht);
}
both!(removing_channel);

/// Neo 10 and 11: Puts to several channels, all listed; one fewer after RemoveChannel of one.
fn get_channels(dht: &DhtClient) {
    let channels = [
        "test_channel1",
        "test_channel2",
        "test_channel3",
        "test_channel4",
    ];
    for (i, channel) in channels.iter().enumerate() {
        // Several keys per channel, so that in a cluster each node holds some channels only.
        for key in 0..=i as u64 {
            dht.put(channel, key, b"value").expect("put");
        }
    }
    let listed = dht.get_channels().expect("channels");
    assert_eq!(listed, channels, "exactly the channels written, sorted");

    dht.remove_channel(channels[1]).expect("remove channel");
    let listed = dht.get_channels().expect("channels");
    assert_eq!(
        listed,
        [channels[0], channels[2], channels[3]],
        "one fewer after RemoveChannel"
    );
    for channel in [channels[0], channels[2], channels[3]] {
        dht.remove_channel(channel).expect("remove channel");
    }
    assert!(dht.get_channels().expect("channels").is_empty());
}
both!(get_channels);

// ----- Listen -----------------------------------------------------------------------------------

/// Legacy 7: a Put reaches the listener.
fn listen_activated_by_put(dht: &DhtClient) {
    let mut listener = dht.listen(CHANNEL).expect("listen");
    dht.put(CHANNEL, 5, b"value").expect("put");
    assert_eq!(
        next_event(&mut listener),
        ListenEvent::Changed {
            key: 5,
            value: b"value".to_vec()
        }
    );
    assert_quiet(&mut listener);
    clean_up(dht);
    assert_eq!(next_event(&mut listener), ListenEvent::ChannelRemoved);
}
both!(listen_activated_by_put);

/// Legacy 6 (and MirrorRemoveChannel): the listener sees the Put, then RemoveChannel ends it
/// with nothing else.
fn listen_stops_after_removing_channel(dht: &DhtClient) {
    let mut listener = dht.listen(CHANNEL).expect("listen");
    dht.put(CHANNEL, 5, b"value").expect("put");
    assert_eq!(
        next_event(&mut listener),
        ListenEvent::Changed {
            key: 5,
            value: b"value".to_vec()
        }
    );
    dht.remove_channel(CHANNEL).expect("remove channel");
    assert_eq!(next_event(&mut listener), ListenEvent::ChannelRemoved);
    assert!(listener.is_finished());
    assert_eq!(listener.next(QUIET).expect("finished"), None);
    // A Put after the removal recreates the channel; the finished listener hears nothing of it.
    dht.put(CHANNEL, 6, b"later").expect("put");
    assert_eq!(listener.next(QUIET).expect("finished"), None);
    clean_up(dht);
}
both!(listen_stops_after_removing_channel);

/// Legacy 8: 10 000 sequential records Put one by one while the listener reads: every Put is
/// received via Listen, none lost, each exactly once, with its value, and in order per node.
///
/// The Puts come from [`THREADS`] threads, each putting a contiguous run of keys in increasing
/// order and waiting for each reply before the next Put; so for any one thread and one node the
/// node applied (and announced) that thread's keys in increasing order, which the listener
/// must show. (The reference waited for each change before the next Put; in a debug build that
/// lockstep costs ~1 ms of client I/O per Put, hence the threads.)
fn batch_listen(dht: &DhtClient) {
    let mut listener = dht.listen(CHANNEL).expect("listen");
    let records = sequential(BULK);
    let run_len = records.len().div_ceil(THREADS);
    let ranges = dht.range_table().clone();
    let mut last: BTreeMap<(usize, usize), u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    std::thread::scope(|scope| {
        let putters = scope.spawn(|| put_each(dht, &records));
        while seen.len() < records.len() {
            match next_event(&mut listener) {
                ListenEvent::Changed { key, value } => {
                    assert_eq!(value, decimal(key), "value of {key}");
                    assert!(key < u64::from(BULK), "a key that was put: {key}");
                    assert!(seen.insert(key), "change of {key} twice");
                    let putter = key as usize / run_len;
                    let node = ranges.owner(key).expect("owned");
                    if let Some(before) = last.insert((putter, node), key) {
                        assert!(
                            before < key,
                            "node {node}: change of {key} after {before} (put later)"
                        );
                    }
                }
                other => panic!("after {} changes: unexpected {other:?}", seen.len()),
            }
        }
        putters.join().expect("putters");
    });
    assert_eq!(seen.len(), BULK as usize);
    assert_quiet(&mut listener);
    clean_up(dht);
    assert_eq!(next_event(&mut listener), ListenEvent::ChannelRemoved);
}
both!(batch_listen);

/// MirrorRemove as Listen: 5 Removes give 5 removal notifications and nothing else.
fn listen_remove(dht: &DhtClient) {
    let keys: Vec<u64> = (0..5).collect();
    for key in &keys {
        dht.put(CHANNEL, *key, &decimal(*key)).expect("put");
    }
    let mut listener = dht.listen(CHANNEL).expect("listen");
    for key in &keys {
        assert!(dht.remove(CHANNEL, *key).expect("remove"));
    }
    let mut removed = BTreeSet::new();
    for _ in &keys {
        match next_event(&mut listener) {
            ListenEvent::Removed { key } => assert!(removed.insert(key), "{key} twice"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(removed, keys.iter().copied().collect());
    assert_quiet(&mut listener);
    clean_up(dht);
}
both!(listen_remove);

/// MirrorUpdate as Listen: 100 Puts give 100 change notifications and nothing else.
fn listen_update(dht: &DhtClient) {
    let mut listener = dht.listen(CHANNEL).expect("listen");
    let records = sequential(100);
    for (key, value) in &records {
        dht.put(CHANNEL, *key, value).expect("put");
    }
    // Changes of one node come in the order of its Puts.
    let ranges = dht.range_table().clone();
    let mut last_per_node: BTreeMap<usize, u64> = BTreeMap::new();
    let mut changed = Records::new();
    for _ in &records {
        match next_event(&mut listener) {
            ListenEvent::Changed { key, value } => {
                let node = ranges.owner(key).expect("owned");
                if let Some(last) = last_per_node.insert(node, key) {
                    assert!(last < key, "node {node}: {key} after {last}");
                }
                assert!(changed.insert(key, value).is_none(), "{key} twice");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(changed, records.into_iter().collect::<Records>());
    assert_quiet(&mut listener);
    clean_up(dht);
}
both!(listen_update);

// ----- bulk Put and Remove ----------------------------------------------------------------------

fn put_then_verify(dht: &DhtClient, records: Vec<(u64, Vec<u8>)>) {
    put_each(dht, &records);
    verify(dht, &records.into_iter().collect(), &[]);
    clean_up(dht);
}

/// Legacy 9 / neo 6: 10 000 sequential records, then full verification.
fn ordered_put(dht: &DhtClient) {
    put_then_verify(dht, sequential(BULK));
}
both!(ordered_put);

/// Legacy 10 / neo 7: 10 000 spread records, then full verification.
fn unordered_put(dht: &DhtClient) {
    put_then_verify(dht, spread(BULK));
}
both!(unordered_put);

/// Puts every record, verifies, removes every second one (in generation order), verifies again.
fn put_remove_half_then_verify(dht: &DhtClient, records: Vec<(u64, Vec<u8>)>) {
    put_each(dht, &records);
    let mut expected: Records = records.iter().cloned().collect();
    verify(dht, &expected, &[]);

    let removed: Vec<u64> = records.iter().step_by(2).map(|(key, _)| *key).collect();
    in_parallel(&removed, |key| {
        assert!(dht.remove(CHANNEL, *key).expect("remove"), "{key} existed");
    });
    for key in &removed {
        expected.remove(key);
    }
    assert_eq!(expected.len(), BULK as usize / 2);
    verify(dht, &expected, &removed);
    clean_up(dht);
}

/// Legacy 11 / neo 8: sequential records, remove half.
fn ordered_remove(dht: &DhtClient) {
    put_remove_half_then_verify(dht, sequential(BULK));
}
both!(ordered_remove);

/// Legacy 12: spread records, remove half.
fn unordered_remove(dht: &DhtClient) {
    put_remove_half_then_verify(dht, spread(BULK));
}
both!(unordered_remove);

// ----- value size -------------------------------------------------------------------------------

/// A value of `len` bytes that is not one repeated byte.
fn big_value(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Neo 4: with the node's maximum at the reference's MaxRecordSize, a value of exactly that
/// size is stored and one byte more is refused with ValueTooBig (and not stored).
fn value_too_big(dht: &DhtClient) {
    for key in [0xA, 0xB, 0xC] {
        dht.put(CHANNEL, key, &big_value(MAX_RECORD_SIZE))
            .expect("a value of exactly the maximum");
        match dht.put(CHANNEL, key + 0x100, &big_value(MAX_RECORD_SIZE + 1)) {
            Err(ClientError::Status { status, .. }) => assert_eq!(status, Status::ValueTooBig),
            other => panic!("a value one byte over the maximum: {other:?}"),
        }
        assert!(!dht.exists(CHANNEL, key + 0x100).expect("exists"));
        // Replacing a stored record with a too big value leaves the stored one.
        match dht.put(CHANNEL, key, &big_value(MAX_RECORD_SIZE + 1)) {
            Err(ClientError::Status { status, .. }) => assert_eq!(status, Status::ValueTooBig),
            other => panic!("a value one byte over the maximum: {other:?}"),
        }
        assert_eq!(
            dht.get(CHANNEL, key).expect("get").map(|v| v.len()),
            Some(MAX_RECORD_SIZE)
        );
    }
    assert_eq!(dht.get_channel_size(CHANNEL).expect("size").records, 3);
    clean_up(dht);
}
both!(value_too_big, MAX_RECORD_CONFIG);

/// Neo 5: only a record of the maximum size is stored; every read request returns it.
fn large_value_fetch(dht: &DhtClient) {
    let key = 0xA;
    let value = big_value(MAX_RECORD_SIZE);
    dht.put(CHANNEL, key, &value).expect("put");
    let expected: Records = [(key, value.clone())].into_iter().collect();
    assert_eq!(dht.get(CHANNEL, key).expect("get").as_ref(), Some(&value));
    assert!(dht.exists(CHANNEL, key).expect("exists"));
    assert_exact_set(
        "GetAll",
        &get_all(dht, CHANNEL, GetAllOptions::default()),
        &expected,
    );
    assert_exact_set(
        "GetAll keys-only",
        &get_all(
            dht,
            CHANNEL,
            GetAllOptions {
                keys_only: true,
                filter: None,
            },
        ),
        &[(key, Vec::new())].into_iter().collect(),
    );
    // The value's tail, across the batch size: matches; a byte string it lacks: no match.
    let tail = value[MAX_RECORD_SIZE - 30..].to_vec();
    assert_exact_set(
        "GetAll filter",
        &get_all(
            dht,
            CHANNEL,
            GetAllOptions {
                keys_only: false,
                filter: Some(tail),
            },
        ),
        &expected,
    );
    assert!(get_all(
        dht,
        CHANNEL,
        GetAllOptions {
            keys_only: false,
            filter: Some(b"0".to_vec()),
        },
    )
    .is_empty());
    let size = dht.get_channel_size(CHANNEL).expect("size");
    assert_eq!((size.records, size.bytes), (1, 8 + MAX_RECORD_SIZE as u64));
    clean_up(dht);
}
both!(large_value_fetch, MAX_RECORD_CONFIG);

// ----- GetAll flow ------------------------------------------------------------------------------

/// 3 000 records of 1 KiB: about 60 per 64 KiB batch, so a stream window of 4 batches holds
/// only a fraction of each node's records and the node has to wait for the consumer.
fn kilobyte_records() -> Vec<(u64, Vec<u8>)> {
    (0..3_000u64)
        .map(|key| {
            let mut value = decimal(key);
            value.resize(1024, b'.');
            (key, value)
        })
        .collect()
}

fn small_window() -> ClientOptions {
    ClientOptions {
        stream_window: 4,
        ..options()
    }
}

/// Neo 12: GetAll of 10 000 records (stored with PutBatch: this case is about reading): all
/// keys, no duplicates.
fn get_all_blocking(dht: &DhtClient) {
    let records = spread(BULK);
    dht.put_batch(CHANNEL, records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    let expected: Records = records.into_iter().collect();
    assert_exact_set(
        "GetAll",
        &get_all(dht, CHANNEL, GetAllOptions::default()),
        &expected,
    );
    clean_up(dht);
}
both!(get_all_blocking);

/// Neo 13: a consumer that pauses (right after the start, and again mid-stream, ~300 ms each)
/// and then continues still gets every record exactly once.
fn get_all_suspend(dht: &DhtClient) {
    let records = kilobyte_records();
    dht.put_batch(CHANNEL, records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    let expected: Records = records.into_iter().collect();
    let reader = second_client(dht, small_window());
    let mut get_all = reader.get_all(CHANNEL, GetAllOptions::default());
    let mut received = vec![get_all.next().expect("a first record").expect("record")];
    std::thread::sleep(Duration::from_millis(300));
    let mut pauses = 1;
    for record in get_all.by_ref() {
        received.push(record.expect("record"));
        if received.len() == expected.len() / 2 {
            std::thread::sleep(Duration::from_millis(300));
            pauses += 1;
        }
    }
    assert_eq!(pauses, 2);
    assert_eq!(get_all.resumes(), 0, "pausing is not a failure");
    drop(get_all);
    assert_exact_set("GetAll with pauses", &received, &expected);
    clean_up(dht);
}
both!(get_all_suspend);

/// Neo 14: the connection is dropped mid-GetAll (once on every node, while that node is
/// streaming); the request resumes after the last key received and delivers every record
/// exactly once.
fn get_all_conn_error(dht: &DhtClient) {
    let records = kilobyte_records();
    dht.put_batch(CHANNEL, records.iter().map(|(k, v)| (*k, v.as_slice())))
        .expect("put_batch");
    let expected: Records = records.into_iter().collect();
    let reader = second_client(dht, small_window());
    let table = reader.range_table().clone();
    let mut from_node = vec![0usize; reader.node_count()];
    let mut disconnected = BTreeSet::new();
    let mut get_all = reader.get_all(CHANNEL, GetAllOptions::default());
    let mut received = Vec::new();
    for record in get_all.by_ref() {
        let (key, value) = record.expect("record");
        let node = table.owner(key).expect("owned");
        from_node[node] += 1;
        received.push((key, value));
        if from_node[node] == 50 {
            reader.client().disconnect(node).expect("disconnect");
            disconnected.insert(node);
        }
    }
    assert_eq!(
        disconnected.len(),
        reader.node_count(),
        "every node dropped"
    );
    assert_eq!(
        get_all.resumes(),
        reader.node_count() as u64,
        "one resume per dropped connection"
    );
    drop(get_all);
    assert_exact_set("GetAll across dropped connections", &received, &expected);
    clean_up(dht);
}
both!(get_all_conn_error);

// ----- Update -----------------------------------------------------------------------------------

/// Neo 22: Update on an empty channel finds no record: the callback is told so, and leaving
/// it (or removing nothing) stores nothing.
fn update_no_record(dht: &DhtClient) {
    let seen = AtomicU32::new(0);
    dht.update(CHANNEL, 0xA, |current| {
        assert_eq!(current, None, "no record");
        seen.fetch_add(1, Ordering::SeqCst);
        UpdateDecision::Leave
    })
    .expect("update, leave");
    dht.update(CHANNEL, 0xA, |current| {
        assert_eq!(current, None, "no record");
        seen.fetch_add(1, Ordering::SeqCst);
        UpdateDecision::Remove
    })
    .expect("update, remove nothing");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(dht.get(CHANNEL, 0xA).expect("get"), None);
    assert_eq!(dht.get_channel_size(CHANNEL).expect("size").records, 0);
    // Writing where there was no record creates it.
    dht.update(CHANNEL, 0xA, |current| {
        assert_eq!(current, None);
        UpdateDecision::Write(b"created".to_vec())
    })
    .expect("update, create");
    assert_eq!(
        dht.get(CHANNEL, 0xA).expect("get"),
        Some(b"created".to_vec())
    );
    clean_up(dht);
}
both!(update_no_record);

fn append(suffix: &'static [u8]) -> impl FnMut(Option<&[u8]>) -> UpdateDecision {
    move |current| {
        let mut value = current.expect("a record to update").to_vec();
        value.extend_from_slice(suffix);
        UpdateDecision::Write(value)
    }
}

/// Neo 23: Put "hello", Update appending " world", Get "hello world".
fn update(dht: &DhtClient) {
    for key in [0xA, 0xB, 0xC] {
        dht.put(CHANNEL, key, b"hello").expect("put");
        dht.update(CHANNEL, key, append(b" world")).expect("update");
        assert_eq!(
            dht.get(CHANNEL, key).expect("get"),
            Some(b"hello world".to_vec())
        );
    }
    // Update can also remove.
    dht.update(CHANNEL, 0xA, |_| UpdateDecision::Remove)
        .expect("update, remove");
    assert_eq!(dht.get(CHANNEL, 0xA).expect("get"), None);
    assert_eq!(dht.get_channel_size(CHANNEL).expect("size").records, 2);
    clean_up(dht);
}
both!(update);

/// The neotest `update_pause` scenario: another Put lands between the Update's read and its
/// write; the node refuses the write (conflict), the client reads again and retries, and the
/// final value carries both changes.
fn update_conflict(dht: &DhtClient) {
    for key in [0xA, 0xB, 0xC] {
        dht.put(CHANNEL, key, b"hello").expect("put");
        let calls = AtomicU32::new(0);
        dht.update(CHANNEL, key, |current| {
            let current = current.expect("a record");
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                assert_eq!(current, b"hello");
                // The concurrent writer, between our read and our write.
                dht.put(CHANNEL, key, b"hello there")
                    .expect("interfering put");
            }
            let mut value = current.to_vec();
            value.extend_from_slice(b" world");
            UpdateDecision::Write(value)
        })
        .expect("update");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "read again after the conflict"
        );
        assert_eq!(
            dht.get(CHANNEL, key).expect("get"),
            Some(b"hello there world".to_vec())
        );
    }
    clean_up(dht);
}
both!(update_conflict);

/// A little serialized struct for SerializerUpdate: `u32 visits`, `u16 name length`, name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Visitor {
    visits: u32,
    name: String,
}

impl Visitor {
    fn serialize(&self) -> Vec<u8> {
        let mut out = self.visits.to_le_bytes().to_vec();
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out
    }

    fn deserialize(bytes: &[u8]) -> Visitor {
        let visits = u32::from_le_bytes(bytes[..4].try_into().expect("u32"));
        let len = u16::from_le_bytes(bytes[4..6].try_into().expect("u16")) as usize;
        assert_eq!(bytes.len(), 6 + len, "serialized length");
        Visitor {
            visits,
            name: String::from_utf8(bytes[6..].to_vec()).expect("utf-8"),
        }
    }
}

/// Neo 24: Update of a serialized struct (deserialize, change, serialize) round-trips.
fn serializer_update(dht: &DhtClient) {
    let original = Visitor {
        visits: 41,
        name: "Ada".to_string(),
    };
    dht.put(CHANNEL, 0xA, &original.serialize()).expect("put");
    dht.update(CHANNEL, 0xA, |current| {
        let mut visitor = Visitor::deserialize(current.expect("a record"));
        assert_eq!(visitor, original);
        visitor.visits += 1;
        visitor.name.push_str(" Lovelace");
        UpdateDecision::Write(visitor.serialize())
    })
    .expect("update");
    let stored = dht.get(CHANNEL, 0xA).expect("get").expect("present");
    assert_eq!(
        Visitor::deserialize(&stored),
        Visitor {
            visits: 42,
            name: "Ada Lovelace".to_string()
        }
    );
    clean_up(dht);
}
both!(serializer_update);
