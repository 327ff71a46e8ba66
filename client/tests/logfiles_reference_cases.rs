//! The reference logfiles test suite (`dlstest`; `../shared/reference/logfiles.md` §9.2 legacy
//! cases and §9.3 neo cases, with their `LocalStore.verifyAgainstDls` "full verification")
//! ported to [`LogClient`] against real `logfilesnode` processes.
//!
//! Every case is a function taking the connected client; [`both!`] turns it into a module of two
//! tests, `single_node` and `three_nodes` (writes spread round-robin, reads merged by the
//! client). Each test starts its own nodes on port 0 in temporary directories, so tests run in
//! parallel; like the reference, every case works on `test_channel` and ends by removing it.
//!
//! | reference | here |
//! |---|---|
//! | Basic.GetAll | `basic_get_all` |
//! | Basic.RemoveChannel | `basic_remove_channel` |
//! | Ranges.GetRange / GetRangeEmpty / GetRangeExact | `get_range_inclusive`, `get_range_empty`, `get_range_exact` |
//! | Ranges.GetRangePCREMatching / HalfMatching / Malformed | `get_range_regex_matching`, `get_range_regex_half_matching`, `get_range_regex_malformed` |
//! | OrderedPut, OrderedMultiplePut (legacy and neo) | `ordered_put`, `ordered_multiple_put` |
//! | UnorderedPut, UnorderedMultiplePut (legacy and neo) | `unordered_put`, `unordered_multiple_put` |
//!
//! PCRE patterns are used as they are: each of the reference's (`(aid=google)`, the alternation,
//! `^1.*`, and the malformed `*vw=1&`) means the same in Rust `regex` syntax.
//!
//! The comparisons are the reference's: order-insensitive, per key the multiset of values (the
//! reference checked counts per key and membership; equal multisets imply both). On top of
//! that, every GetRange (and GetAll, whose records all lie in their own buckets here) must come in
//! ascending key order: our stronger promise.
//!
//! Bulk cases: 10 000 records, "sequential" (key = i) or "spread" (key = FNV-1a-64 of the 4-byte
//! little-endian i with the top bit cleared), value = the key in decimal, and for the "Multiple"
//! cases 10 values per key (value index j > 0 appended to the decimal key), generated and put in
//! the reference's order: for each i, its values j = 0..9. The Puts are individual `put` calls
//! (what the cases test), from [`THREADS`] threads sharing the client, each putting a contiguous
//! run of records in order.

use client::logfiles::{LogClient, ValueFilter};
use client::{ClientError, ClientOptions, Status};
use node_core::protocol::dht::value_hash;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const CHANNEL: &str = "test_channel";
/// Records (keys) of the bulk cases, as in the reference.
const BULK: u32 = 10_000;
/// Values per key in the "Multiple" cases, as in the reference.
const VALUES_PER_KEY: u32 = 10;
/// Threads sharing the client in the bulk cases.
const THREADS: usize = 32;
/// The nodes' config: room for every thread's current bucket to stay open (the default of 4
/// open buckets per channel would close and reopen a bucket file on nearly every Put of the
/// bulk cases, whose 32 writers each work in a bucket of their own).
const CONFIG: &str = "[logfiles]\nmax_open_buckets_per_channel = 64\n";

/// The log line of the reference's regular-expression cases.
const LOG_LINE: &str = "http://eu-sonar.sociomantic.com/js/2010-07-01/action/click?&aid=google&fpc=7161999584528497855&aaid=zalando&size=3&cid=445&ao=%5B%7B%22id%22%3A%2216880840621970542745%22%2C%22fsize%22%3A22%7D%5D";
/// The line that the half-matching case's alternation must not match.
const BAD_LOG_LINE: &str = "http://eu-sonar.sociomantic.com/js/2010-07-01/action/click?&aid=facebook&fpc=7161999584528497855&aaid=bbc&size=3&cid=445&ao=%5B%7B%22id%22%3A%2216880840621970542745%22%2C%22fsize%22%3A22%7D%5D";

// ----- harness (as in tests/logfiles.rs) --------------------------------------------------------

/// The logfilesnode binary next to this test's own target directory, built once if needed.
fn logfilesnode_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| testkit::workspace_binary("logfilesnode", "logfilesnode"))
}

/// A logfilesnode in its own temp directory, killed when dropped.
type Node = testkit::TempNode;

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout_ms: 5000,
        request_timeout_ms: 20_000,
        ..ClientOptions::default()
    }
}

/// Starts `count` nodes, connects a client to them and runs `case`.
fn run(count: usize, case: fn(&LogClient)) {
    let binary = logfilesnode_binary().to_string_lossy().into_owned();
    let nodes: Vec<Node> = (0..count)
        .map(|_| testkit::TempNode::start(&binary, CONFIG, &[]))
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|node| node.addr).collect();
    let logs = LogClient::connect(&addrs, options()).expect("client connects");
    case(&logs);
    drop(logs);
    drop(nodes);
}

/// `both!(case)`: a module named after the case function with the tests `single_node` and
/// `three_nodes`.
macro_rules! both {
    ($case:ident) => {
        mod $case {
            #[test]
            fn single_node() {
                super::run(1, super::$case);
            }

            #[test]
            fn three_nodes() {
                super::run(3, super::$case);
            }
        }
    };
}

// ----- records and verification -----------------------------------------------------------------

type Records = Vec<(u64, Vec<u8>)>;

/// The reference's record value: the key in decimal, then the value index unless it is 0.
fn value(key: u64, value_index: u32) -> Vec<u8> {
    if value_index == 0 {
        key.to_string().into_bytes()
    } else {
        format!("{key}{value_index}").into_bytes()
    }
}

/// The reference's "sequential" key: i.
fn sequential_key(i: u32) -> u64 {
    u64::from(i)
}

/// The reference's "spread" key: FNV-1a-64 of the 4-byte little-endian i, top bit cleared.
fn spread_key(i: u32) -> u64 {
    value_hash(&i.to_le_bytes()) & !(1 << 63)
}

/// `count` keys from `key_of`, each with `values_per_key` values, in generation order.
fn generate(count: u32, values_per_key: u32, key_of: fn(u32) -> u64) -> Records {
    (0..count)
        .flat_map(|i| {
            let key = key_of(i);
            (0..values_per_key).map(move |j| (key, value(key, j)))
        })
        .collect()
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
fn put_each(logs: &LogClient, records: &[(u64, Vec<u8>)]) {
    in_parallel(records, |(key, value)| {
        logs.put(CHANNEL, *key, value)
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    });
}

fn put_all(logs: &LogClient, records: &[(u64, &str)]) {
    for (key, value) in records {
        logs.put(CHANNEL, *key, value.as_bytes()).expect("put");
    }
}

fn get_range(logs: &LogClient, from: u64, to: u64, filter: &ValueFilter) -> Records {
    logs.get_range(CHANNEL, from, to, filter)
        .and_then(|records| records.collect())
        .unwrap_or_else(|e| panic!("GetRange {from}..={to} {filter:?}: {e}"))
}

fn get_all(logs: &LogClient, filter: &ValueFilter) -> Records {
    logs.get_all(CHANNEL, filter)
        .and_then(|records| records.collect())
        .unwrap_or_else(|e| panic!("GetAll {filter:?}: {e}"))
}

/// Checks that a read delivered, in ascending key order, exactly the records of `expected`
/// (which must be sorted by key, then value), in any order of the values within one key.
/// Reports the first difference.
fn assert_delivered<'a>(
    what: &str,
    mut delivered: Records,
    expected: impl Iterator<Item = &'a (u64, Vec<u8>)>,
) {
    if let Some(pair) = delivered.windows(2).find(|pair| pair[0].0 > pair[1].0) {
        panic!(
            "{what}: key {} came before key {}: not in ascending key order",
            pair[0].0, pair[1].0
        );
    }
    // Keys are in order; sorting puts each key's values in order too.
    delivered.sort_unstable();
    let mut delivered = delivered.iter();
    let mut expected = expected.peekable();
    let mut count = 0usize;
    loop {
        match (delivered.next(), expected.next()) {
            (None, None) => return,
            (Some(got), Some(want)) if got == want => count += 1,
            (got, want) => panic!(
                "{what}: the first {count} records (by key, then value) are as expected, then \
                 delivered {:?}, expected {:?} ({} more expected)",
                got.map(show),
                want.map(show),
                expected.count()
            ),
        }
    }
}

fn show(record: &(u64, Vec<u8>)) -> (u64, String) {
    (record.0, String::from_utf8_lossy(&record.1).into_owned())
}

/// A local filter: whether a value is selected.
type Keep = dyn Fn(&[u8]) -> bool;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The reference's `LocalStore.verifyAgainstDls`: GetAll, GetAll with filter `"0"`, then
/// GetRange over its five ranges with no filter, with substring filter `"0"` and with the
/// regular expression `^1.*`, each compared with what `written` says the range holds.
fn verify_against_node(logs: &LogClient, written: &[(u64, Vec<u8>)]) {
    let mut local = written.to_vec();
    local.sort_unstable();
    let max = local.last().map(|(key, _)| *key).expect("records");
    // The reference's `min` is always 0, and `mid = min/2 + max/2 - 1`.
    let mid = max / 2 - 1;
    let ranges = [
        (0, max),
        (0, max - mid),
        (mid / 4, max + 1),
        (max + 1, max + 2),
        (0, max),
    ];
    let zero = |value: &[u8]| contains(value, b"0");
    let starts_with_one = |value: &[u8]| value.first() == Some(&b'1');
    let everything = |_: &[u8]| true;
    let filters: [(&str, ValueFilter, &Keep); 3] = [
        ("no filter", ValueFilter::All, &everything),
        ("filter \"0\"", ValueFilter::Substring(b"0".to_vec()), &zero),
        (
            "regex ^1.*",
            ValueFilter::Regex("^1.*".into()),
            &starts_with_one,
        ),
    ];
    // The filters must select some records but not all, or they would prove nothing.
    for (name, _, keep) in &filters[1..] {
        let selected = local.iter().filter(|(_, value)| keep(value)).count();
        assert!(
            selected > 0 && selected < local.len(),
            "{name} selects {selected} of {}",
            local.len()
        );
    }

    for (name, filter, keep) in &filters[..2] {
        assert_delivered(
            &format!("GetAll {name}"),
            get_all(logs, filter),
            local.iter().filter(|(_, value)| keep(value)),
        );
    }
    for (from, to) in ranges {
        for (name, filter, keep) in &filters {
            assert_delivered(
                &format!("GetRange {from}..={to} {name}"),
                get_range(logs, from, to, filter),
                local
                    .iter()
                    .filter(|(key, value)| (from..=to).contains(key) && keep(value)),
            );
        }
    }
    assert!(
        get_range(logs, max + 1, max + 2, &ValueFilter::All).is_empty(),
        "the range after the largest key is empty"
    );
}

/// The reference's clean-up after every case: remove the channel, which leaves nothing behind.
fn clean_up(logs: &LogClient) {
    logs.remove_channel(CHANNEL).expect("RemoveChannel");
    assert!(!logs
        .channels()
        .expect("GetChannels")
        .contains(&CHANNEL.to_string()));
    assert!(get_all(logs, &ValueFilter::All).is_empty());
}

fn owned(records: &[(u64, &str)]) -> Records {
    records
        .iter()
        .map(|(key, value)| (*key, value.as_bytes().to_vec()))
        .collect()
}

// ----- Basic ------------------------------------------------------------------------------------

/// Basic.GetAll: two values for each of keys 0, 1, 2; GetAll returns exactly 3 keys, each with
/// both its values, no key twice.
fn basic_get_all(logs: &LogClient) {
    let records = [
        (0, "record 0"),
        (0, "record 01"),
        (1, "record 1"),
        (1, "record 10"),
        (2, "record 2"),
        (2, "record 20"),
    ];
    put_all(logs, &records);
    let fetched = get_all(logs, &ValueFilter::All);
    let keys: std::collections::BTreeSet<u64> = fetched.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys.len(), 3, "three keys");
    let mut expected = owned(&records);
    expected.sort_unstable();
    assert_delivered("GetAll", fetched, expected.iter());
    clean_up(logs);
}
both!(basic_get_all);

/// Basic.RemoveChannel: three records, RemoveChannel, and GetAll at once returns nothing.
fn basic_remove_channel(logs: &LogClient) {
    put_all(logs, &[(0, "record 0"), (1, "record 1"), (2, "record 2")]);
    logs.remove_channel(CHANNEL).expect("RemoveChannel");
    assert!(
        get_all(logs, &ValueFilter::All).is_empty(),
        "GetAll right after RemoveChannel returned records"
    );
    assert!(get_range(logs, 0, u64::MAX, &ValueFilter::All).is_empty());
    clean_up(logs);
}
both!(basic_remove_channel);

// ----- Ranges -----------------------------------------------------------------------------------

/// Keys 0..=5 with values `record <key>`.
fn six_records(logs: &LogClient) -> Records {
    let records: Records = (0..6u64)
        .map(|key| (key, format!("record {key}").into_bytes()))
        .collect();
    for (key, value) in &records {
        logs.put(CHANNEL, *key, value).expect("put");
    }
    records
}

/// Ranges.GetRange: keys 0..=5; GetRange 1..=3 returns exactly keys 1, 2, 3 (inclusive).
fn get_range_inclusive(logs: &LogClient) {
    let records = six_records(logs);
    let fetched = get_range(logs, 1, 3, &ValueFilter::All);
    assert_eq!(fetched, records[1..=3].to_vec(), "keys 1, 2, 3 in order");
    clean_up(logs);
}
both!(get_range_inclusive);

/// Ranges.GetRangeEmpty: keys 0..=5; GetRange 6..=8 returns nothing.
fn get_range_empty(logs: &LogClient) {
    six_records(logs);
    assert!(get_range(logs, 6, 8, &ValueFilter::All).is_empty());
    clean_up(logs);
}
both!(get_range_empty);

/// Ranges.GetRangeExact: keys 0..=5; GetRange 0..=5 returns all six.
fn get_range_exact(logs: &LogClient) {
    let records = six_records(logs);
    assert_eq!(get_range(logs, 0, 5, &ValueFilter::All), records);
    clean_up(logs);
}
both!(get_range_exact);

/// Ranges.GetRangePCREMatching: three identical log lines; `(aid=google)` over 0..=6 returns
/// all three.
fn get_range_regex_matching(logs: &LogClient) {
    let records = [(1, LOG_LINE), (2, LOG_LINE), (3, LOG_LINE)];
    put_all(logs, &records);
    let fetched = get_range(logs, 0, 6, &ValueFilter::Regex("(aid=google)".into()));
    assert_eq!(fetched, owned(&records));
    clean_up(logs);
}
both!(get_range_regex_matching);

/// Ranges.GetRangePCREHalfMatching: two matching lines and one that is not; the alternation
/// returns the two, over 0..=4.
fn get_range_regex_half_matching(logs: &LogClient) {
    put_all(logs, &[(1, LOG_LINE), (2, BAD_LOG_LINE), (3, LOG_LINE)]);
    let pattern = "(aid=google.*(aaid=zalando|aaid=zalando-fr|aaid=zalando-uk))|\
                   ((aaid=zalando|aaid=zalando-fr|aaid=zalando-uk).*aid=google)";
    let fetched = get_range(logs, 0, 4, &ValueFilter::Regex(pattern.into()));
    assert_eq!(fetched, owned(&[(1, LOG_LINE), (3, LOG_LINE)]));
    clean_up(logs);
}
both!(get_range_regex_half_matching);

/// Ranges.GetRangePCREMalformed: `*vw=1&` makes the request fail, with no records.
fn get_range_regex_malformed(logs: &LogClient) {
    put_all(logs, &[(1, LOG_LINE), (2, LOG_LINE), (3, LOG_LINE)]);
    let mut fetched: Records = Vec::new();
    let mut failure: Option<ClientError> = None;
    match logs.get_range(CHANNEL, 0, 6, &ValueFilter::Regex("*vw=1&".into())) {
        Ok(records) => {
            for record in records {
                match record {
                    Ok(record) => fetched.push(record),
                    Err(error) => failure = Some(error),
                }
            }
        }
        Err(error) => failure = Some(error),
    }
    assert!(fetched.is_empty(), "no records: {fetched:?}");
    let error = failure.expect("the request fails");
    assert!(
        matches!(
            error,
            ClientError::Status {
                status: Status::BadRequest,
                ..
            }
        ),
        "{error}"
    );
    clean_up(logs);
}
both!(get_range_regex_malformed);

// ----- bulk Puts with full verification ---------------------------------------------------------

fn put_then_verify(logs: &LogClient, records: Records) {
    put_each(logs, &records);
    verify_against_node(logs, &records);
    clean_up(logs);
}

/// OrderedPut: 10 000 sequential keys.
fn ordered_put(logs: &LogClient) {
    put_then_verify(logs, generate(BULK, 1, sequential_key));
}
both!(ordered_put);

/// OrderedMultiplePut: 10 000 sequential keys × 10 values.
fn ordered_multiple_put(logs: &LogClient) {
    put_then_verify(logs, generate(BULK, VALUES_PER_KEY, sequential_key));
}
both!(ordered_multiple_put);

/// UnorderedPut: 10 000 spread keys.
fn unordered_put(logs: &LogClient) {
    put_then_verify(logs, generate(BULK, 1, spread_key));
}
both!(unordered_put);

/// UnorderedMultiplePut: 10 000 spread keys × 10 values.
fn unordered_multiple_put(logs: &LogClient) {
    put_then_verify(logs, generate(BULK, VALUES_PER_KEY, spread_key));
}
both!(unordered_multiple_put);

#[test]
fn the_generators_are_the_references() {
    assert_eq!(value(42, 0), b"42");
    assert_eq!(value(42, 3), b"423");
    let spread = generate(BULK, 1, spread_key);
    let distinct: std::collections::BTreeSet<u64> = spread.iter().map(|(key, _)| *key).collect();
    assert_eq!(distinct.len(), BULK as usize, "spread keys are distinct");
    assert!(
        spread.iter().all(|(key, _)| *key < 1 << 63),
        "top bit clear"
    );
    // FNV-1a-64 of four zero bytes, computed independently.
    assert_eq!(spread_key(0), 0x4d25_767f_9dce_13f5);
    let multiple = generate(2, 3, sequential_key);
    assert_eq!(
        multiple,
        owned(&[
            (0, "0"),
            (0, "01"),
            (0, "02"),
            (1, "1"),
            (1, "11"),
            (1, "12")
        ])
    );
}
