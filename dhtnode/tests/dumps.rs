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

#[test]
fn a_damaged_dump_falls_back_to_its_backup_loudly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    put_all(&mut Conn::open(node.addr), "ch", 0..100);
    node.stop();
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    put_all(&mut Conn::open(node.addr), "ch", 100..200);
    node.stop();
    // Now ch.dump holds 0..200 and ch.dump.backup holds 0..100. Damage one byte of the dump.
    let dump = dir.path().join("data/ch.dump");
    let mut bytes = std::fs::read(&dump).expect("read dump");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&dump, bytes).expect("write damaged dump");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    assert_holds_exactly(&mut conn, "ch", &(0..100).collect::<Vec<_>>());
    let log = node.root_log();
    assert!(
        log.contains("ERROR") && log.contains("backup"),
        "the fallback is logged loudly:\n{log}"
    );
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
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dhtnode"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "-c",
            &config,
            "--range",
            &range_arg,
        ])
        .current_dir(dir.path())
        .output()
        .expect("run dhtnode");
    assert!(!output.status.success(), "fatal policy refuses to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
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

#[test]
fn kill_dash_nine_while_dumping_leaves_a_loadable_dump() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Node::start_in(common::BIN, dir.path(), &[]);
    let mut conn = Conn::open(node.addr);
    let value = vec![b'x'; 1000];
    let requests: Vec<(RequestCode, Vec<u8>)> = (0..20_000u64)
        .map(|key| (dht::PUT, put_body("big", key, &value)))
        .collect();
    for chunk in requests.chunks(2000) {
        assert!(conn
            .pipeline(chunk)
            .iter()
            .all(|(status, _)| *status == Status::Ok));
    }
    drop(conn);
    node.stop();
    assert!(dir.path().join("data/big.dump").exists());
    // Dump again every second and kill the node at moments around the periodic dumps (20 MB
    // takes tens of milliseconds to write); each restart must load the new dump or the previous
    // one, never fail. `DHT_CRASH_ROUNDS` (default 4) sets the rounds; scripts/crash-matrix.sh
    // runs many more.
    let rounds: u64 = std::env::var("DHT_CRASH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(4);
    let mut moment = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64)
        | 1;
    let config = write_config(dir.path(), "[dht]\ndump_period_s = 1\n");
    for round in 0..rounds {
        let node = Node::start_in(common::BIN, dir.path(), &["-c", &config]);
        // xorshift: a different moment in 0.9 .. 1.5 s (around the first periodic dump) each round.
        moment ^= moment << 13;
        moment ^= moment >> 7;
        moment ^= moment << 17;
        std::thread::sleep(std::time::Duration::from_millis(900 + moment % 600));
        node.signal("KILL");
        drop(node);
        let node = Node::start_in(common::BIN, dir.path(), &[]);
        let mut conn = Conn::open(node.addr);
        let mut body = Vec::new();
        dht::encode_channel(&mut body, "big");
        let (_, size) = conn.request(dht::GET_CHANNEL_SIZE, body);
        assert_eq!(
            SizeInfo::decode(&size).expect("size").records,
            20_000,
            "round {round}"
        );
        assert!(!node.root_log().contains("FAILED"), "round {round}");
        drop(conn);
        node.stop();
    }
}
