//! Disk full under dht dumps: the data directory is a small tmpfs, and the node holds more than a
//! new dump can fit next to the previous dump and its backup. The dump fails with an ERROR line in
//! root.log naming the cause; the previous dump and backup stay intact and loadable; the node
//! keeps serving reads and writes; `dump_failures` in GetStats rises; and once space returns the
//! next dump succeeds and a restart loads every record. The same for the shutdown dump: when it
//! cannot be written, the previous dump is what the next start loads.
//!
//! Needs permission to mount a tmpfs (the tests run as root); where that is refused the tests
//! fail, unless `SWARM_TEST_ALLOW_SKIP=mount` says this machine cannot (docs/testing.md).

mod common;

use common::{get_stats, stat, wait_until, Conn, Node, Tmpfs};
use node_core::protocol::dht::{self, PutRequest, SizeInfo};
use node_core::protocol::{RequestCode, Status};
use std::collections::BTreeMap;
use std::path::Path;

const CHANNEL: &str = "full";
/// Values are random (LZ4 cannot shrink them), so the size of a dump is known in advance.
const VALUE_BYTES: usize = 4096;

/// The value stored under `key`: `VALUE_BYTES` pseudo-random bytes seeded by the key.
fn value_of(key: u64) -> Vec<u8> {
    common::random_value(key, VALUE_BYTES)
}

fn put_all(conn: &mut Conn, keys: impl Iterator<Item = u64>) {
    let requests: Vec<(RequestCode, Vec<u8>)> = keys
        .map(|key| {
            let mut body = Vec::new();
            PutRequest {
                channel: CHANNEL,
                key,
                value: &value_of(key),
            }
            .encode(&mut body);
            (dht::PUT, body)
        })
        .collect();
    for (status, body) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
    }
}

/// Checks that the node holds exactly `keys`, each with its value.
fn assert_holds_exactly(conn: &mut Conn, keys: &[u64]) {
    let mut body = Vec::new();
    dht::encode_channel(&mut body, CHANNEL);
    let (status, size) = conn.request(dht::GET_CHANNEL_SIZE, body);
    assert_eq!(status, Status::Ok);
    assert_eq!(
        SizeInfo::decode(&size).expect("size").records,
        keys.len() as u64,
        "record count"
    );
    for (key, (status, value)) in keys.iter().zip(common::get_pipelined(conn, CHANNEL, keys)) {
        assert_eq!(status, Status::Ok, "key {key}");
        assert!(value == value_of(*key), "value of key {key}");
    }
}

/// Reads a dump file completely (every check of the loader's reader); returns its records.
fn load_dump(path: &Path) -> BTreeMap<u64, Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let mut records = BTreeMap::new();
    dht_persist::dump::format::read_dump(file, |key, value| {
        records.insert(key, value.to_vec());
    })
    .unwrap_or_else(|err| panic!("{} does not load: {err}", path.display()));
    records
}

/// Checks that the dump file at `path` loads and holds at least `keys`, every record with its
/// value (a dump started while more records arrived may hold some of those too).
fn assert_dump_holds(path: &Path, keys: &[u64]) {
    let records = load_dump(path);
    for key in keys {
        assert!(
            records.contains_key(key),
            "{} lacks key {key}",
            path.display()
        );
    }
    for (key, value) in &records {
        assert!(
            *value == value_of(*key),
            "{}: value of {key}",
            path.display()
        );
    }
}

fn occurrences(text: &str, what: &str) -> usize {
    text.matches(what).count()
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("node.toml"), text).expect("write config");
}

fn start(dir: &Path) -> Node {
    Node::start_in(common::BIN, dir, &["-c", "node.toml"])
}

/// root.log has the failed dump as an ERROR naming the cause and saying what is kept.
fn assert_failed_dump_logged(log: &str) {
    let failure = log
        .lines()
        .find(|line| line.contains("dump of channel full FAILED"))
        .unwrap_or_else(|| panic!("no failed-dump line in root.log:\n{log}"));
    assert!(
        failure.contains("ERROR") && failure.contains("No space left"),
        "the line is an error naming the cause: {failure}"
    );
    assert!(
        failure.contains("previous dump kept"),
        "the line says what is kept: {failure}"
    );
}

#[test]
fn a_periodic_dump_that_does_not_fit_keeps_the_previous_one_and_the_node_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // 4 MiB: room for a dump and a backup of 1 MiB and a new dump of 2 MiB, not of 3 MiB.
    let Some(tmpfs) = Tmpfs::mount(&data, "size=4m") else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
    };
    // Dumps alone (the change log would share the small disk: see log_disk_full.rs).
    write_config(
        dir.path(),
        "[dht]\ndump_period_s = 1\ndurability = \"none\"\n",
    );
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);

    // 1 MiB, dumped twice: ch.dump and ch.dump.backup both hold it.
    let first: Vec<u64> = (0..256).collect();
    put_all(&mut conn, first.iter().copied());
    wait_until("two complete dumps", || {
        occurrences(&node.root_log(), "dumped channel full: 256 records") >= 2
    });
    let dump = data.join(format!("{CHANNEL}.dump"));
    let backup = data.join(format!("{CHANNEL}.dump.backup"));
    assert_dump_holds(&dump, &first);
    assert_dump_holds(&backup, &first);
    assert_eq!(stat(&get_stats(&mut conn), "dump_failures"), Some(0));

    // 2 MiB more: a dump of everything (3 MiB) does not fit beside the two files (2 MiB).
    let second: Vec<u64> = (1000..1512).collect();
    put_all(&mut conn, second.iter().copied());
    wait_until("a failed dump in GetStats", || {
        stat(&get_stats(&mut conn), "dump_failures").unwrap_or(0) >= 1
    });
    assert_failed_dump_logged(&node.root_log());

    // The previous dump and its backup are intact and loadable.
    assert_dump_holds(&dump, &first);
    assert_dump_holds(&backup, &first);

    // The node keeps serving: every record reads back, and writes are taken.
    let mut all: Vec<u64> = first.iter().chain(&second).copied().collect();
    assert_holds_exactly(&mut conn, &all);
    let third: Vec<u64> = (5000..5010).collect();
    put_all(&mut conn, third.iter().copied());
    all.extend(&third);
    assert_holds_exactly(&mut conn, &all);
    // Every period tries again, and counts again.
    let failures = stat(&get_stats(&mut conn), "dump_failures").unwrap_or(0);
    wait_until("another failed dump", || {
        stat(&get_stats(&mut conn), "dump_failures").unwrap_or(0) > failures
    });
    assert_dump_holds(&dump, &first);
    assert_dump_holds(&backup, &first);

    // Space returns: the next dump succeeds and holds every record.
    tmpfs.remount("remount,size=16m");
    let complete = format!("dumped channel full: {} records", all.len());
    wait_until("a complete dump after space returned", || {
        node.root_log().contains(&complete)
    });
    assert_dump_holds(&dump, &all);
    assert_eq!(load_dump(&dump).len(), all.len());

    // A restart loads every record.
    drop(conn);
    node.stop();
    assert!(
        !data.join(format!("{CHANNEL}.dump.tmp")).exists(),
        "no temporary file left"
    );
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, &all);
    assert_eq!(stat(&get_stats(&mut conn), "dump_failures"), Some(0));
    drop(conn);
    node.stop();
    drop(tmpfs);
}

#[test]
fn a_shutdown_dump_that_does_not_fit_leaves_the_previous_dump_to_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "size=4m") else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
    };
    write_config(
        dir.path(),
        "[dht]\ndump_period_s = 0\ndurability = \"none\"\n",
    );
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);
    let first: Vec<u64> = (0..256).collect();
    put_all(&mut conn, first.iter().copied());
    drop(conn);
    node.stop();
    let dump = data.join(format!("{CHANNEL}.dump"));
    assert_dump_holds(&dump, &first);

    // 2.5 MiB more: a shutdown dump of 3.5 MiB does not fit beside the 1 MiB dump.
    let mut node = start(dir.path());
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, 1000..1640);
    drop(conn);
    node.signal("TERM");
    let status = node.wait_exit();
    let log = node.root_log();
    let failure = log
        .lines()
        .find(|line| line.contains("dump of channel full FAILED"))
        .unwrap_or_else(|| panic!("no failed-dump line in root.log (exit {status}):\n{log}"));
    assert!(failure.contains("No space left"), "{failure}");
    // The records written since the last dump are gone: the exit must not say success.
    assert_eq!(status.code(), Some(1), "a failed shutdown dump exits 1");
    assert!(log.contains("shutdown FAILED"), "{log}");
    assert!(
        !data.join(format!("{CHANNEL}.dump.tmp")).exists(),
        "no temporary file left"
    );

    // The previous dump is intact, and it is what the next start loads.
    assert_dump_holds(&dump, &first);
    assert_eq!(load_dump(&dump).len(), first.len());
    drop(node);
    let node = start(dir.path());
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, &first);
    drop(conn);
    node.stop();
    drop(tmpfs);
}
