//! Dumps as an operator meets them, through the real dhtnode process: a restart keeps every
//! record, periodic dumps happen while serving, a damaged dump falls back to its backup, leftover
//! temp files are ignored, the out-of-range policies apply at load, the reference `.tcm` samples
//! import, and a kill -9 in the middle of dumping never leaves an unloadable dump.

mod common;

use common::{put_body, wait_until, Conn, Node};
use node_core::protocol::dht::{self, decode_channel_names, KeyRequest, SizeInfo};
use node_core::protocol::{RequestCode, Status};
use std::path::Path;

fn key_body(channel: &str, key: u64) -> Vec<u8> {
    let mut body = Vec::new();
    KeyRequest { channel, key }.encode(&mut body);
    body
}

fn value_of(key: u64) -> Vec<u8> {
    format!("value {key}").into_bytes()
}

/// Puts `keys` into `channel` (pipelined) and checks every reply is Ok.
fn put_all(conn: &mut Conn, channel: &str, keys: impl Iterator<Item = u64>) {
    let requests: Vec<(RequestCode, Vec<u8>)> = keys
        .map(|key| (dht::PUT, put_body(channel, key, &value_of(key))))
        .collect();
    for (status, body) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
    }
}

/// Checks that `channel` holds exactly `keys`, each with its value.
fn assert_holds_exactly(conn: &mut Conn, channel: &str, keys: &[u64]) {
    let mut body = Vec::new();
    dht::encode_channel(&mut body, channel);
    let (status, size) = conn.request(dht::GET_CHANNEL_SIZE, body);
    assert_eq!(status, Status::Ok);
    assert_eq!(
        SizeInfo::decode(&size).expect("size").records,
        keys.len() as u64,
        "record count of {channel}"
    );
    let requests: Vec<(RequestCode, Vec<u8>)> = keys
        .iter()
        .map(|key| (dht::GET, key_body(channel, *key)))
        .collect();
    for (key, (status, value)) in keys.iter().zip(conn.pipeline(&requests)) {
        assert_eq!(status, Status::Ok, "key {key} of {channel}");
        assert_eq!(value, value_of(*key), "value of key {key}");
    }
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn restart_after_sigterm_keeps_every_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let channels = ["alpha", "beta", "gamma"];
    for (index, channel) in channels.iter().enumerate() {
        put_all(
            &mut conn,
            channel,
            (0..10_000u64).map(|i| i * 3 + index as u64),
        );
    }
    node.stop();
    for channel in channels {
        assert!(dir.path().join(format!("data/{channel}.dump")).exists());
    }
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let (status, names) = conn.request(dht::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    assert_eq!(decode_channel_names(&names).expect("names"), channels);
    for (index, channel) in channels.iter().enumerate() {
        let keys: Vec<u64> = (0..10_000u64).map(|i| i * 3 + index as u64).collect();
        assert_holds_exactly(&mut conn, channel, &keys);
    }
}

#[test]
fn periodic_dumps_happen_while_the_node_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), "[dht]\ndump_period_s = 1\n");
    let node = Node::start_in(common::BIN, dir.path(), &["-c", &config]);
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, "periodic", 0..1000);
    let dump = dir.path().join("data/periodic.dump");
    wait_until("a periodic dump", || dump.exists());
    // The node still serves, and a kill -9 now loses nothing that was dumped.
    assert_holds_exactly(&mut conn, "periodic", &(0..1000).collect::<Vec<_>>());
    wait_until("the dump to be logged", || {
        node.root_log()
            .contains("dumped channel periodic: 1000 records")
    });
    node.signal("KILL");
    drop(node);
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, "periodic", &(0..1000).collect::<Vec<_>>());
}

/// Writes 0..100, then 100..200, each followed by a shutdown dump, damages the last dump, and
/// starts again with `durability`; returns the node.
fn start_on_a_damaged_dump(dir: &Path, durability: &str) -> Node {
    let config = write_config(dir, &format!("[dht]\ndurability = \"{durability}\"\n"));
    let args = ["-c", config.as_str()];
    let node = Node::start_in(common::BIN, dir, &args);
    put_all(&mut Conn::open(node.addr), "ch", 0..100);
    node.stop();
    let node = Node::start_in(common::BIN, dir, &args);
    put_all(&mut Conn::open(node.addr), "ch", 100..200);
    node.stop();
    // Now ch.dump holds 0..200 and ch.dump.backup holds 0..100. Damage one byte of the dump:
    // the last, in its end magic, which every load checks. (A byte in the middle could land
    // inside an LZ4 block where the change does not alter what it decodes to, which no check
    // can see: docs/formats.md, and this test failed that way about once in 15 runs.)
    let dump = dir.join("data/ch.dump");
    let mut bytes = std::fs::read(&dump).expect("read dump");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&dump, bytes).expect("write damaged dump");
    let node = Node::start_in(common::BIN, dir, &args);
    let log = node.root_log();
    assert!(
        log.contains("ERROR") && log.contains("backup"),
        "the fallback is logged loudly:\n{log}"
    );
    node
}

#[test]
fn a_damaged_dump_falls_back_to_its_backup_loudly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start_on_a_damaged_dump(dir.path(), "none");
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, "ch", &(0..100).collect::<Vec<_>>());
}

/// With the change log, the backup's position says where the replay starts: the log still
/// holds what came after it (the last dump deleted only the segments before its own), so
/// nothing is lost.
#[test]
fn a_damaged_dump_falls_back_to_its_backup_and_the_log_brings_back_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start_on_a_damaged_dump(dir.path(), "interval");
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, "ch", &(0..200).collect::<Vec<_>>());
}

#[test]
fn leftover_temp_files_are_ignored_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    std::fs::write(dir.path().join("data/half.dump.tmp"), b"half a dump").expect("write tmp");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let (status, names) = conn.request(dht::GET_CHANNELS, Vec::new());
    assert_eq!(status, Status::Ok);
    assert!(decode_channel_names(&names).expect("names").is_empty());
    assert!(
        node.root_log().contains("half.dump.tmp"),
        "the leftover is named in a warning"
    );
}

/// Keys whose hash position is in the lower half of the hash space, and the upper half.
fn halves() -> (Vec<u64>, Vec<u64>) {
    let lower = dht::split_evenly(2)[0];
    (0..200u64).partition(|key| lower.is_responsible_for(*key))
}

/// Starts dhtnode in `dir` with `config` and `--range range_arg`, expecting it to refuse to
/// start (the fatal policy); returns its standard error.
fn refused_start(dir: &Path, config: &str, range_arg: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dhtnode"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "-c",
            config,
            "--range",
            range_arg,
        ])
        .current_dir(dir)
        .output()
        .expect("run dhtnode");
    assert!(!output.status.success(), "fatal policy refuses to start");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn node_with_both_halves_dumped(dir: &Path) {
    let node = Node::start_in(common::BIN, dir, &[]);
    put_all(&mut Conn::open(node.addr), "ch", 0..200);
    node.stop();
}

#[test]
fn out_of_range_records_are_loaded_ignored_or_fatal_by_policy() {
    let (lower_keys, upper_keys) = halves();
    assert!(!lower_keys.is_empty() && !upper_keys.is_empty());
    let lower_range = dht::split_evenly(2)[0];
    let range_arg = format!("{:x}:{:x}", lower_range.min, lower_range.max);

    let dir = tempfile::tempdir().expect("temp dir");
    node_with_both_halves_dumped(dir.path());
    let config = write_config(dir.path(), "[dht]\nout_of_range = \"ignore\"\n");
    let node = Node::start_in(
        common::BIN,
        dir.path(),
        &["-c", &config, "--range", &range_arg],
    );
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, "ch", &lower_keys);
    drop(conn);
    node.stop();

    let dir = tempfile::tempdir().expect("temp dir");
    node_with_both_halves_dumped(dir.path());
    let node = Node::start_in(common::BIN, dir.path(), &["--range", &range_arg]);
    let mut conn = Conn::open(node.addr);
    let all: Vec<u64> = (0..200).collect();
    assert_holds_exactly(&mut conn, "ch", &all);
    drop(conn);
    node.stop();

    let dir = tempfile::tempdir().expect("temp dir");
    node_with_both_halves_dumped(dir.path());
    let config = write_config(dir.path(), "[dht]\nout_of_range = \"fatal\"\n");
    let stderr = refused_start(dir.path(), &config, &range_arg);
    assert!(
        stderr.contains("ch.dump"),
        "the error names the file: {stderr}"
    );
}

#[test]
fn reference_tcm_samples_import_as_their_readme_says() {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dht-tcm");
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    std::fs::copy(
        samples.join("example.tcm"),
        dir.path().join("data/example.tcm"),
    )
    .expect("copy example");
    std::fs::copy(
        samples.join("truncated.tcm"),
        dir.path().join("data/truncated.tcm"),
    )
    .expect("copy truncated");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    for channel in ["example", "truncated"] {
        let expected: [(u64, &[u8]); 3] = [
            (0xa, b"value a"),
            (0xb, b"value b"),
            (0xdeadbeef, b"hello world"),
        ];
        let mut body = Vec::new();
        dht::encode_channel(&mut body, channel);
        let (_, size) = conn.request(dht::GET_CHANNEL_SIZE, body);
        assert_eq!(
            SizeInfo::decode(&size).expect("size").records,
            3,
            "{channel}"
        );
        for (key, value) in expected {
            assert_eq!(
                conn.request(dht::GET, key_body(channel, key)),
                (Status::Ok, value.to_vec())
            );
        }
        assert_eq!(
            conn.request(dht::GET, key_body(channel, 0x100)).0,
            Status::NotFound,
            "empty value skipped"
        );
    }
    let log = node.root_log();
    assert!(
        log.contains("truncated"),
        "the truncated sample is reported:\n{log}"
    );
    // Served from now on as our own format, and the import is not repeated over newer data.
    drop(conn);
    node.stop();
    assert!(dir.path().join("data/example.dump").exists());
}

// ----- kill -9 around dumps --------------------------------------------------------------------

const BIG: &str = "big";
/// Bytes of every value in `big`: random (LZ4 cannot shrink them), so a dump of the channel
/// takes long enough to be caught in the middle.
const BIG_VALUE_BYTES: usize = 1000;
const BIG_RECORDS: u64 = 20_000;
/// Records each round adds before its kill, with keys of its own.
const ROUND_RECORDS: u64 = 500;
/// Rounds that wait for the dump's temporary file to appear and kill then, tried after the
/// configured rounds until one kill lands in the middle of a dump.
const MAX_EXTRA_ROUNDS: u64 = 20;

/// The value of `key` in `big`: `BIG_VALUE_BYTES` pseudo-random bytes seeded by the key, so
/// every record's value is its own and a value stored under the wrong key, or changed, shows.
fn big_value_of(key: u64) -> Vec<u8> {
    common::random_value(key, BIG_VALUE_BYTES)
}

/// Puts `keys` into `big`, pipelined; returns the keys whose Put the node answered Ok (and
/// fails on any other answer: the node is up and must take them).
fn put_big(conn: &mut Conn, keys: impl Iterator<Item = u64>) -> Vec<u64> {
    let keys: Vec<u64> = keys.collect();
    let mut acknowledged = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(2000) {
        let requests: Vec<(RequestCode, Vec<u8>)> = chunk
            .iter()
            .map(|&key| (dht::PUT, put_body(BIG, key, &big_value_of(key))))
            .collect();
        for (key, (status, body)) in chunk.iter().zip(conn.pipeline(&requests)) {
            assert_eq!(
                status,
                Status::Ok,
                "Put of key {key}: {}",
                String::from_utf8_lossy(&body)
            );
            acknowledged.push(*key);
        }
    }
    acknowledged
}

/// Every record of `big` (GetAll), by key; fails on a key served twice.
fn get_all_big(conn: &mut Conn) -> std::collections::BTreeMap<u64, Vec<u8>> {
    let mut body = Vec::new();
    dht::GetAllRequest {
        channel: BIG,
        keys_only: false,
        resume_after: None,
        filter: b"",
        scope: dht::GetAllScope::All,
    }
    .encode(&mut body);
    let (items, status, reply) = conn.stream(dht::GET_ALL, body);
    assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&reply));
    let mut records = std::collections::BTreeMap::new();
    let mut scratch = Vec::new();
    for (_, item) in items {
        let batch = node_core::protocol::batch::decode_batch(&item, &mut scratch).expect("batch");
        for (key, value) in batch {
            assert!(
                records.insert(key, value.to_vec()).is_none(),
                "key {key} served twice"
            );
        }
    }
    records
}

/// The record count of the last dump of `big` the node's log reports complete, if any.
fn last_complete_dump(root_log: &str) -> Option<u64> {
    root_log
        .lines()
        .rev()
        .filter_map(|line| line.split("dumped channel big: ").nth(1))
        .find_map(|rest| rest.split(' ').next()?.parse().ok())
}

/// How a round picks its moment to kill.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Moment {
    /// A random moment in 0.9 .. 1.5 s after start: before, during or after the first periodic
    /// dump.
    AroundTheDump,
    /// Once the dump's temporary file appears, plus 0 .. 20 ms: in the middle of the dump,
    /// unless the dump is faster than that.
    InTheDump,
}

/// Waits for the `moment` to kill a node started at `started`, whose dump writes `tmp` first.
fn wait_for(moment: Moment, rng: &mut testkit::XorShift, started: std::time::Instant, tmp: &Path) {
    match moment {
        Moment::AroundTheDump => {
            let at = std::time::Duration::from_millis(900 + rng.below(600));
            std::thread::sleep(at.saturating_sub(started.elapsed()));
        }
        Moment::InTheDump => {
            wait_until("the dump's temporary file", || tmp.exists());
            std::thread::sleep(std::time::Duration::from_millis(rng.below(20)));
        }
    }
}

/// One round: start with `dump_period_s = 1`, add `ROUND_RECORDS` records, kill -9 at the
/// moment chosen, and check the restart (see the test). Returns whether the kill left the dump's
/// temporary file behind, i.e. landed in the middle of a dump.
fn kill_round(
    dir: &Path,
    config: &str,
    round: u64,
    moment: Moment,
    rng: &mut testkit::XorShift,
    stored: &mut std::collections::BTreeMap<u64, Vec<u8>>,
) -> bool {
    let data = dir.join("data");
    let tmp = dht_persist::layout::channel_file(&data, BIG, dht_persist::layout::TMP_SUFFIX);
    let node = Node::start_in(common::BIN, dir, &["-c", config]);
    let started = std::time::Instant::now();
    let mut conn = Conn::open(node.addr);
    let first = (round + 1) * 1_000_000;
    let added = put_big(&mut conn, first..first + ROUND_RECORDS);
    drop(conn);
    wait_for(moment, rng, started, &tmp);
    let mut node = node;
    node.signal("KILL");
    assert_eq!(
        node.wait_exit().code(),
        None,
        "round {round}: killed by SIGKILL"
    );
    let in_the_dump = tmp.exists();
    let complete = last_complete_dump(&node.root_log());
    drop(node);

    // The restart loads the new dump or the previous one: every record stored before the round,
    // of the round's acknowledged records none, some (a dump that began while they arrived) or
    // all, no other record, and every value exactly as written.
    let node = Node::start_in(common::BIN, dir, &[]);
    let mut conn = Conn::open(node.addr);
    let loaded = get_all_big(&mut conn);
    let log = node.root_log();
    assert!(!log.contains("FAILED"), "round {round}: {log}");
    for (key, value) in stored.iter() {
        assert!(
            loaded.get(key) == Some(value),
            "round {round} ({moment:?}): record {key} stored before the round is lost or changed"
        );
    }
    for (key, value) in &loaded {
        assert!(
            stored.contains_key(key) || added.contains(key),
            "round {round}: key {key} was never written"
        );
        assert!(
            *value == big_value_of(*key),
            "round {round} ({moment:?}): the value of key {key} is not the one written"
        );
    }
    if let Some(records) = complete {
        assert!(
            loaded.len() as u64 >= records,
            "round {round}: the log reported a complete dump of {records} records, the restart \
             loaded {}",
            loaded.len()
        );
    }
    eprintln!(
        "round {round} ({moment:?}): {} records added, killed {}, {} records loaded",
        added.len(),
        if in_the_dump {
            "mid-dump"
        } else {
            "outside a dump"
        },
        loaded.len()
    );
    // The shutdown dump writes what was loaded: the next round starts from it.
    drop(conn);
    node.stop();
    *stored = loaded;
    in_the_dump
}

/// kill -9 at moments around the periodic dumps, round after round on one data directory: each
/// restart loads the new dump or the previous one, never fails, and every record holds the value
/// written for its key. Some kills must land in the middle of a dump (the dump's temporary file
/// is left behind); rounds that wait for that file are added until one does.
/// `DHT_CRASH_ROUNDS` (default 4) sets the rounds, `SWARM_TEST_SEED` replays a run;
/// scripts/crash-matrix.sh runs many more.
#[test]
fn kill_dash_nine_while_dumping_leaves_a_loadable_dump() {
    let rounds = testkit::rounds_from_env("DHT_CRASH_ROUNDS", 4);
    let mut rng = testkit::XorShift::new(testkit::test_seed());
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let acknowledged = put_big(&mut conn, 0..BIG_RECORDS);
    assert_eq!(acknowledged.len() as u64, BIG_RECORDS);
    drop(conn);
    node.stop();
    assert!(dir.path().join("data/big.dump").exists());
    let mut stored: std::collections::BTreeMap<u64, Vec<u8>> = acknowledged
        .into_iter()
        .map(|key| (key, big_value_of(key)))
        .collect();

    let config = write_config(dir.path(), "[dht]\ndump_period_s = 1\n");
    let mut mid_dump = 0u64;
    for round in 0..rounds {
        let moment = if round % 2 == 0 {
            Moment::AroundTheDump
        } else {
            Moment::InTheDump
        };
        mid_dump += u64::from(kill_round(
            dir.path(),
            &config,
            round,
            moment,
            &mut rng,
            &mut stored,
        ));
    }
    let mut round = rounds;
    while mid_dump == 0 && round < rounds + MAX_EXTRA_ROUNDS {
        mid_dump += u64::from(kill_round(
            dir.path(),
            &config,
            round,
            Moment::InTheDump,
            &mut rng,
            &mut stored,
        ));
        round += 1;
    }
    assert!(
        mid_dump > 0,
        "no kill in {round} rounds landed in the middle of a dump"
    );
    eprintln!(
        "{round} rounds, {mid_dump} killed mid-dump, {} records",
        stored.len()
    );
}

/// A node that wrote keys 0..200 of "ch" to its change log only (`always`, killed with SIGKILL
/// before any dump), then a second value of every key in `long_keys` of `long_len` bytes.
fn node_with_both_halves_in_the_log(dir: &Path, long_keys: &[u64], long_len: usize) {
    let config = write_config(dir, "[dht]\ndurability = \"always\"\ndump_period_s = 0\n");
    let mut node = Node::start_in(common::BIN, dir, &["-c", &config]);
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, "ch", 0..200);
    let long = vec![b'x'; long_len];
    let requests: Vec<(RequestCode, Vec<u8>)> = long_keys
        .iter()
        .map(|key| (dht::PUT, put_body("ch", *key, &long)))
        .collect();
    for (status, body) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
    }
    node.kill9();
}

/// The loader's rules for a dump hold for the same records in the change log: a restart gives
/// the same contents whether the last dump or the log held them.
#[test]
fn out_of_range_and_too_long_values_in_the_log_follow_the_loaders_rules() {
    let (lower_keys, upper_keys) = halves();
    let lower_range = dht::split_evenly(2)[0];
    let range_arg = format!("{:x}:{:x}", lower_range.min, lower_range.max);

    let dir = tempfile::tempdir().expect("temp dir");
    node_with_both_halves_in_the_log(dir.path(), &[], 0);
    let config = write_config(dir.path(), "[dht]\nout_of_range = \"ignore\"\n");
    let node = Node::start_in(
        common::BIN,
        dir.path(),
        &["-c", &config, "--range", &range_arg],
    );
    assert_holds_exactly(&mut Conn::open(node.addr), "ch", &lower_keys);
    assert!(
        node.root_log().contains(&format!(
            "{} values outside this node's range",
            upper_keys.len()
        )),
        "the skipped values are counted in a warning"
    );
    node.stop();

    let dir = tempfile::tempdir().expect("temp dir");
    node_with_both_halves_in_the_log(dir.path(), &[], 0);
    let config = write_config(dir.path(), "[dht]\nout_of_range = \"fatal\"\n");
    let stderr = refused_start(dir.path(), &config, &range_arg);
    assert!(
        stderr.contains("change log") && stderr.contains("outside this node's range"),
        "the error says the log holds a value outside the range: {stderr}"
    );

    // Keys 0..10 got a 600-byte second value; with max_value_bytes = 500 they are absent after
    // the restart, not back at their first (short) value.
    let dir = tempfile::tempdir().expect("temp dir");
    let long_keys: Vec<u64> = (0..10).collect();
    node_with_both_halves_in_the_log(dir.path(), &long_keys, 600);
    let config = write_config(dir.path(), "[dht]\nmax_value_bytes = 500\n");
    let node = Node::start_in(common::BIN, dir.path(), &["-c", &config]);
    let short_keys: Vec<u64> = (10..200).collect();
    assert_holds_exactly(&mut Conn::open(node.addr), "ch", &short_keys);
    node.stop();
}
