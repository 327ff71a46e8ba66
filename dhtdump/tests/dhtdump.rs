//! dhtdump and dumptool against real processes: a dht node dumped by `dhtdump --oneshot` and
//! restarted on the dump; kill -9 and SIGTERM in mid-dump; the periodic loop, removed channels
//! and stats.log; SIGTERM while sleeping; export → import round trips and `.tcm` import.

mod common;

use common::*;
use dht_persist::dump::format::{
    read_dump, DumpCompression, DumpFileWriter, DumpReader, FORMAT_VERSION,
};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Records = BTreeMap<u64, Vec<u8>>;

fn read_dump_file(path: &Path) -> Records {
    let mut records = BTreeMap::new();
    read_dump(File::open(path).expect("open dump"), |key, value| {
        assert!(records.insert(key, value.to_vec()).is_none(), "key twice");
    })
    .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    records
}

fn all_records(dht: &client::DhtClient, channel: &str) -> Records {
    let mut records = BTreeMap::new();
    for record in dht.get_all(channel, Default::default()) {
        let (key, value) = record.expect("get_all");
        assert!(records.insert(key, value).is_none(), "key twice");
    }
    records
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// 100 000 records in 3 channels; dhtdump --oneshot; the node stops and its data is wiped; a
/// node started on dhtdump's directory has every record back.
#[test]
fn a_node_started_on_a_oneshot_dump_has_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let node_data = dir.path().join("node/data");
    let node = Node::start(&node_data, &dir.path().join("node/log"));
    let dht = node.client();
    let mut expected = BTreeMap::new();
    for (channel, count) in [("alpha", 50_000u64), ("beta", 30_000), ("gamma", 20_000)] {
        let base = count * 1_000_000;
        let records = fill(&dht, channel, base..base + count, |key| {
            1 + (key % 97) as usize
        });
        expected.insert(channel, records.into_iter().collect::<Records>());
    }

    // The node's change-log position, which the dumps record (nothing is written meanwhile).
    let position = dht
        .client()
        .get_stats(0)
        .unwrap()
        .into_iter()
        .find(|(name, _)| name == "log_position")
        .map(|(_, position)| position)
        .expect("log_position in GetStats");
    assert!(position > 0);

    let dump_data = dir.path().join("dump/data");
    let dump_log = dir.path().join("dump/log");
    let status = oneshot(node.addr, &dump_data, &dump_log);
    assert_eq!(status.code(), Some(0));
    for channel in ["alpha", "beta", "gamma"] {
        let file = fs::File::open(dump_data.join(format!("{channel}.dump"))).unwrap();
        let reader = dht_persist::dump::format::DumpReader::open_buffered(file).unwrap();
        assert_eq!(reader.header().log_position, position, "{channel}");
    }
    let log = read_text(&dump_log.join("root.log"));
    for line in [
        "dumped channel alpha: 50000 records",
        "dumped channel beta: 30000 records",
        "dumped channel gamma: 20000 records",
        "cycle done in",
    ] {
        assert!(log.contains(line), "{line:?} not in {log}");
    }
    assert!(
        read_text(&dump_log.join("stats.log")).is_empty(),
        "no stats lines in oneshot mode"
    );
    drop(dht);
    node.stop();
    fs::remove_dir_all(&node_data).unwrap();

    let restored = Node::start(&dump_data, &dir.path().join("restored/log"));
    let dht = restored.client();
    assert_eq!(
        dht.get_channels().unwrap(),
        vec!["alpha".to_string(), "beta".into(), "gamma".into()]
    );
    for (channel, records) in &expected {
        let got = all_records(&dht, channel);
        assert_eq!(got.len(), records.len(), "{channel}");
        assert!(got == *records, "{channel}: records differ");
    }
}

/// Starts dhtdump with `args` and waits until it has written part of `tmp_file`; asserts it is
/// still running then (so that a signal lands in the middle of the dump).
fn spawn_until_mid_dump(args: &[&str], dump_log: &Path, tmp_file: &Path) -> Dump {
    let mut dump = Dump::spawn(args, dump_log);
    let deadline = Instant::now() + WAIT;
    while fs::metadata(tmp_file).map_or(true, |meta| meta.len() == 0) {
        assert!(
            Instant::now() < deadline,
            "no {} appeared",
            tmp_file.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        dump.child.try_wait().unwrap().is_none(),
        "dhtdump already finished: the dump was too fast to interrupt"
    );
    dump
}

/// Starts dhtdump with `args`, stops the node (SIGSTOP) once the dump is under way, and sends
/// dhtdump SIGTERM: it exits 1 within 2 s and removes `tmp_file`. The node is resumed.
fn sigterm_with_the_node_stopped(node: &Node, args: &[&str], dump_log: &Path, tmp_file: &Path) {
    let mut dump = Dump::spawn(args, dump_log);
    wait_until("a fresh temporary file", || {
        fs::metadata(tmp_file).is_ok_and(|meta| meta.len() > 0)
    });
    signal(node.child.id(), "STOP");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    signal(dump.child.id(), "TERM");
    let status = wait_exit(&mut dump.child, WAIT);
    signal(node.child.id(), "CONT");
    assert_eq!(status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!tmp_file.exists());
}

/// kill -9 while the temporary file is being written leaves the previous dump in place and
/// loadable; SIGTERM at the same point aborts cleanly (no temporary file) and still keeps it,
/// also when the node has stopped answering.
#[test]
fn kill_in_mid_dump_keeps_the_previous_dump() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node/data"), &dir.path().join("node/log"));
    let dht = node.client();
    let old: Records = fill(&dht, "big", 0..1000, |_| 50).into_iter().collect();
    let dump_data = dir.path().join("dump/data");
    let dump_log = dir.path().join("dump/log");
    assert_eq!(oneshot(node.addr, &dump_data, &dump_log).code(), Some(0));
    let dump_file = dump_data.join("big.dump");
    let tmp_file = dump_data.join("big.dump.tmp");
    assert!(read_dump_file(&dump_file) == old);

    // Large enough that the dump takes a while: 300 000 records of 200 bytes.
    fill(&dht, "big", 1_000_000..1_300_000, |_| 200);
    let args = [
        "--oneshot",
        "--node",
        &node.addr.to_string(),
        "--data-dir",
        path_str(&dump_data),
    ];
    for (signal_name, expected_code) in [("KILL", None), ("TERM", Some(1))] {
        let mut dump = spawn_until_mid_dump(&args, &dump_log, &tmp_file);
        signal(dump.child.id(), signal_name);
        let status = wait_exit(&mut dump.child, WAIT);
        assert_eq!(status.code(), expected_code, "after SIG{signal_name}");
        assert!(
            read_dump_file(&dump_file) == old,
            "after SIG{signal_name}: the previous dump is intact"
        );
        match signal_name {
            // kill -9 leaves the temporary file (the node ignores it; the next dump overwrites
            // it). Removed here so that the next round waits for a fresh one.
            "KILL" => {
                assert!(tmp_file.exists());
                fs::remove_file(&tmp_file).unwrap();
            }
            // SIGTERM aborts the dump, which deletes it.
            _ => assert!(!tmp_file.exists(), "SIGTERM removes the temporary file"),
        }
    }

    // A node that stops answering mid-stream does not hold up a SIGTERM.
    sigterm_with_the_node_stopped(&node, &args, &dump_log, &tmp_file);
    assert!(read_dump_file(&dump_file) == old);

    let info = dumptool(&["info", path_str(&dump_file)]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(text.contains("records:     1000\n"), "{text}");
    assert!(text.contains("checks:      OK"), "{text}");

    // A node started on the directory loads the previous dump.
    fs::write(&tmp_file, b"half a dump").unwrap();
    let restored = Node::start(&dump_data, &dir.path().join("restored/log"));
    assert!(all_records(&restored.client(), "big") == old);
}

/// Period 1 s: two cycles run; a channel removed between cycles is reported (its old dump stays);
/// stats.log gets lines; SIGTERM stops dhtdump with status 0.
#[test]
fn periodic_cycles_report_removed_channels_and_write_stats() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node/data"), &dir.path().join("node/log"));
    let dht = node.client();
    fill(&dht, "keep", 0..100, |_| 10);
    fill(&dht, "drop", 0..50, |_| 10);
    let config = dir.path().join("dhtdump.toml");
    fs::write(
        &config,
        "period_s = 1\nmin_wait_s = 0\nretry_wait_s = 1\n[log]\nstats_interval_s = 1\n",
    )
    .unwrap();
    let dump_data = dir.path().join("dump/data");
    let dump = Dump::spawn(
        &[
            "-c",
            path_str(&config),
            "--node",
            &node.addr.to_string(),
            "--data-dir",
            path_str(&dump_data),
        ],
        &dir.path().join("dump/log"),
    );
    dump.wait_for_log("cycle done in", 1);
    assert!(dump.root_log().contains("dumped channel drop: 50 records"));
    // Stats lines come every second: see the channel in one before it goes away.
    wait_until("a stats line with the channel", || {
        dump.stats_log().contains("channel/drop/records_written:50")
    });
    dht.remove_channel("drop").unwrap();
    dump.wait_for_log("channel drop was removed from the node", 1);
    let cycles = dump.root_log().matches("cycle done in").count();
    dump.wait_for_log("cycle done in", cycles + 1);
    let log = dump.root_log();
    assert!(log.contains("next cycle at"), "{log}");
    assert_eq!(
        log.matches("channel drop was removed").count(),
        1,
        "reported once: {log}"
    );
    assert!(
        dump_data.join("drop.dump").exists(),
        "the removed channel's dump is kept"
    );

    wait_until("a stats line after the removal", || {
        let stats = dump.stats_log();
        let last = stats.lines().last().unwrap_or_default().to_string();
        last.contains("channel/keep/records_written:100")
            && !last.contains("channel/drop/")
            && last.contains("last_cycle_ms:")
    });
    let stats = dump.stats_log();
    assert!(
        stats.contains("channel/drop/records_written:50"),
        "before the removal: {stats}"
    );
    assert!(
        stats
            .lines()
            .any(|line| line.contains("records_written:") && line.contains("bytes_written:")),
        "{stats}"
    );

    let mut dump = dump;
    let started = Instant::now();
    signal(dump.child.id(), "TERM");
    let status = wait_exit(&mut dump.child, WAIT);
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A node, and a dhtdump config in `dir` that sleeps an hour between cycles and before a retry.
fn node_and_sleepy_config(dir: &Path) -> (Node, PathBuf) {
    let node = Node::start(&dir.join("node/data"), &dir.join("node/log"));
    let config = dir.join("dhtdump.toml");
    fs::write(&config, "period_s = 3600\nretry_wait_s = 3600\n").unwrap();
    (node, config)
}

/// SIGTERM while dhtdump sleeps (here its random initial delay, up to an hour) ends it within a
/// fraction of a second, with status 0.
#[test]
fn sigterm_while_sleeping_exits_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let (node, config) = node_and_sleepy_config(dir.path());

    // Periodic: in the initial delay (up to an hour).
    let mut dump = Dump::spawn(
        &[
            "-c",
            path_str(&config),
            "--node",
            &node.addr.to_string(),
            "--data-dir",
            path_str(&dir.path().join("dump/data")),
        ],
        &dir.path().join("log1"),
    );
    dump.wait_for_log("first dump cycle in", 1);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    signal(dump.child.id(), "TERM");
    assert_eq!(wait_exit(&mut dump.child, WAIT).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A oneshot whose cycle fails (the channel's temporary dump file cannot be created: a directory
/// is in the way) waits to retry: stopped before the dump completed (SIGINT), it exits 1 at
/// once; with --timeout 1 it gives up by itself, exit 1, and says why.
#[test]
fn a_oneshot_waiting_to_retry_stops_on_sigint_or_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (node, config) = node_and_sleepy_config(dir.path());
    node.client().put("c", 1, b"one").unwrap();
    let dump_data = dir.path().join("dump/data");
    fs::create_dir_all(dump_data.join("c.dump.tmp")).unwrap();
    let mut dump = Dump::spawn(
        &[
            "-c",
            path_str(&config),
            "--oneshot",
            "--node",
            &node.addr.to_string(),
            "--data-dir",
            path_str(&dump_data),
        ],
        &dir.path().join("log2"),
    );
    dump.wait_for_log("dump cycle failed", 1);
    let started = Instant::now();
    signal(dump.child.id(), "INT");
    assert_eq!(wait_exit(&mut dump.child, WAIT).code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(dump.root_log().contains("retrying in 3600s"));

    // The same with --timeout 1: the run gives up by itself, exit 1, and says why.
    let mut dump = Dump::spawn(
        &[
            "-c",
            path_str(&config),
            "--oneshot",
            "--timeout",
            "1",
            "--node",
            &node.addr.to_string(),
            "--data-dir",
            path_str(&dump_data),
        ],
        &dir.path().join("log3"),
    );
    assert_eq!(wait_exit(&mut dump.child, WAIT).code(), Some(1));
    let log = dump.root_log();
    assert!(log.contains("dump cycle failed"), "{log}");
    assert!(
        log.contains("ERROR") && log.contains("did not complete within --timeout 1s"),
        "{log}"
    );
}

/// A dhtdump pointed at an address where no node answers says so at start: an ERROR at once,
/// and exit 1 in --oneshot (periodic mode keeps running and retries at its cycles).
#[test]
fn an_unreachable_node_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dhtdump.toml");
    fs::write(
        &config,
        "period_s = 3600
retry_wait_s = 3600
",
    )
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let data_dir = dir.path().join("data");
    let args = |extra: &'static [&'static str]| {
        let mut args = vec!["-c", path_str(&config), "--node", &closed_addr];
        args.extend(["--data-dir", path_str(&data_dir)]);
        args.extend(extra.iter().copied());
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let output = std::process::Command::new(dhtdump_binary())
        .args(args(&["--oneshot", "--log-dir"]))
        .arg(dir.path().join("log1"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach dht node") && stderr.contains(&closed_addr),
        "{stderr}"
    );
    let log = read_text(&dir.path().join("log1/root.log"));
    assert!(
        log.contains("ERROR") && log.contains("cannot reach dht node"),
        "{log}"
    );
    assert!(
        !log.contains("dump cycle failed"),
        "no cycle was tried: {log}"
    );

    let refs: Vec<String> = args(&[]);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let mut dump = Dump::spawn(&refs, &dir.path().join("log2"));
    dump.wait_for_log("first dump cycle in", 1);
    let log = dump.root_log();
    assert!(
        log.contains("ERROR") && log.contains("cannot reach dht node"),
        "{log}"
    );
    signal(dump.child.id(), "TERM");
    assert_eq!(wait_exit(&mut dump.child, WAIT).code(), Some(0));
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dhtdump.toml");
    fs::write(&config, "period_s = 0\n").unwrap();
    let output = std::process::Command::new(dhtdump_binary())
        .args(["-c", path_str(&config)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.starts_with("dhtdump: ") && text.contains("period_s"),
        "{text}"
    );
    fs::write(&config, "nod = \"127.0.0.1:1\"\n").unwrap();
    let output = std::process::Command::new(dhtdump_binary())
        .args(["-c", path_str(&config)])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("nod"), "{}", stderr(&output));
}

/// A dump of `records` written directly with the node's writer.
fn write_dump(path: &Path, channel: &str, records: &[(u64, Vec<u8>)]) {
    write_dump_stored(path, channel, records, DumpCompression::Lz4);
}

/// [`write_dump`], its blocks stored as `compression` says.
fn write_dump_stored(
    path: &Path,
    channel: &str,
    records: &[(u64, Vec<u8>)],
    compression: DumpCompression,
) {
    let file = File::create(path).unwrap();
    let created = dht_persist::dump::format::unix_now();
    let mut writer =
        DumpFileWriter::with_compression(file, FORMAT_VERSION, channel, created, None, compression)
            .unwrap();
    for part in records.chunks(333) {
        let mut raw = Vec::new();
        for (key, value) in part {
            node_core::protocol::batch::append_record(&mut raw, *key, value);
        }
        writer.write_chunk(&raw, part.len() as u32).unwrap();
    }
    writer.finish().unwrap();
}

/// Imports the exported lines `first` and `second` followed by a line with a bad key: an error
/// (exit 1, one line) naming line 3, and neither the dump nor a temporary file is left in `dir`.
fn expect_bad_line_refused(dir: &Path, first: &str, second: &str) {
    let bad = dir.join("bad.txt");
    fs::write(&bad, format!("{first}\n{second}\n000000000000000z:AAAA\n")).unwrap();
    let failed = dumptool(&["import", path_str(&bad), path_str(&dir.join("bad.dump"))]);
    assert_eq!(failed.status.code(), Some(1));
    let message = stderr(&failed);
    assert!(
        message.starts_with("dumptool: ") && message.contains("line 3"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(!dir.join("bad.dump").exists());
    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.ends_with(".tmp").then_some(name)
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn export_then_import_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<(u64, Vec<u8>)> = (0..5000u64)
        .map(|i| {
            let key = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (key, value_for(key, (i % 301) as usize))
        })
        .collect();
    records.push((u64::MAX, b"last".to_vec()));
    let original = dir.path().join("rt.dump");
    write_dump(&original, "rt", &records);

    let text = dir.path().join("rt.txt");
    let output = dumptool(&["export", path_str(&original), "-o", path_str(&text)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let exported = fs::read_to_string(&text).unwrap();
    assert_eq!(exported.lines().count(), records.len());
    let first = exported.lines().next().unwrap();
    assert_eq!(first, "0000000000000000:", "key 0 has an empty value");
    let second = exported.lines().nth(1).unwrap();
    assert_eq!(&second[..17], "9e3779b97f4a7c15:");

    let imported = dir.path().join("copy.dump");
    let output = dumptool(&["import", path_str(&text), path_str(&imported)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("imported 5001 records"));
    let again = dumptool(&["export", path_str(&imported)]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        again.stdout,
        exported.as_bytes(),
        "export → import → export"
    );
    let header = DumpReader::new(File::open(&imported).unwrap()).unwrap();
    assert_eq!(header.header().channel, "copy");
    assert!(read_dump_file(&imported) == read_dump_file(&original));

    // No overwrite without --force; with it, the channel can be named.
    let refused = dumptool(&["import", path_str(&text), path_str(&imported)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("already exists"),
        "{}",
        stderr(&refused)
    );
    let forced = dumptool(&[
        "import",
        "--force",
        "--channel",
        "other",
        path_str(&text),
        path_str(&imported),
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let header = DumpReader::new(File::open(&imported).unwrap()).unwrap();
    assert_eq!(header.header().channel, "other");

    // A bad line is an error naming its number; nothing is written.
    expect_bad_line_refused(dir.path(), first, second);
}

#[test]
fn info_reports_the_header_counts_and_checksum_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.dump");
    let records: Vec<(u64, Vec<u8>)> = (0..100).map(|k| (k, value_for(k, 20))).collect();
    write_dump(&good, "good", &records);
    let bytes = fs::read(&good).unwrap();
    let truncated = dir.path().join("cut.dump");
    fs::write(&truncated, &bytes[..bytes.len() - 5]).unwrap();

    let output = dumptool(&["info", path_str(&good)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "format:      dht dump, version 1, compression lz4",
        "channel:     good",
        "records:     100\n",
        "value bytes: 2000\n",
        "checks:      OK",
        " UTC (",
        "log position: none (covers no change-log entry)\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    let covering = dir.path().join("covering.dump");
    let (file, _) = DumpFileWriter::covering(Vec::new(), "covering", 123_456)
        .unwrap()
        .finish()
        .unwrap();
    fs::write(&covering, file).unwrap();
    let output = dumptool(&["info", path_str(&covering)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("log position: 123456\n"),
        "{}",
        stdout(&output)
    );

    let output = dumptool(&["info", path_str(&good), path_str(&truncated)]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("checks:      OK"), "{text}");
    assert!(
        text.contains("checks:      FAILED: file ends inside the trailer"),
        "{text}"
    );
    assert!(text.contains("(at byte "), "{text}");
    assert_eq!(
        stderr(&output).trim(),
        "dumptool: 1 of 2 files failed their checks"
    );
}

/// The reference sample `.tcm` imports to its 3 records; info and export read it too.
#[test]
fn tcm_files_import_and_report() {
    let tcm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dht-tcm/example.tcm");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("example.dump");
    let output = dumptool(&["import", "--tcm", path_str(&tcm), path_str(&out)]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("imported 3 records"));
    let expected: Records = [
        (0xa, b"value a".to_vec()),
        (0xb, b"value b".to_vec()),
        (0xdead_beef, b"hello world".to_vec()),
    ]
    .into_iter()
    .collect();
    assert!(read_dump_file(&out) == expected);

    let info = dumptool(&["info", path_str(&tcm)]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(text.contains("reference .tcm"), "{text}");
    assert!(text.contains("records:      3\n"), "{text}");

    let export = dumptool(&["export", path_str(&tcm)]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        stdout(&export),
        "000000000000000a:dmFsdWUgYQ==\n000000000000000b:dmFsdWUgYg==\n00000000deadbeef:aGVsbG8gd29ybGQ=\n"
    );
}

/// A key file written as an operator should: a new file renamed over the old, mode 0600.
fn write_key_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let fresh = path.with_extension("new");
    fs::write(&fresh, text).unwrap();
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&fresh, path).unwrap();
}

/// dhtdump's key replaced without a restart or a failed cycle, against a node that requires
/// authentication: the node lists the new key too (SIGHUP), dhtdump's key file gets it
/// (SIGHUP: the next cycle reconnects with it), the node drops the old key (SIGHUP) and cycles
/// go on. A key file that fails its checks then keeps the current key, with an ERROR.
#[test]
fn sighup_makes_dhtdump_read_its_key_file_again() {
    const OLD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const NEW: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    let dir = tempfile::tempdir().unwrap();
    let node_credentials = dir.path().join("credentials");
    write_key_file(&node_credentials, &format!("dump-old:{OLD}\n"));
    let node_config = format!(
        "[auth]\ncredentials_file = \"{}\"\n",
        node_credentials.display()
    );
    let node = testkit::TempNode::start(
        dhtnode_binary().to_str().unwrap(),
        &node_config,
        &["--range", "0000000000000000:ffffffffffffffff"],
    );
    let key_file = dir.path().join("client.key");
    write_key_file(&key_file, &format!("dump-old:{OLD}\n"));
    let config = dir.path().join("dhtdump.toml");
    fs::write(
        &config,
        format!(
            "period_s = 1\nmin_wait_s = 0\nretry_wait_s = 1\n[credentials]\nkey_file = \"{}\"\n",
            key_file.display()
        ),
    )
    .unwrap();
    let dump = Dump::spawn(
        &[
            "-c",
            path_str(&config),
            "--node",
            &node.addr.to_string(),
            "--data-dir",
            path_str(&dir.path().join("dump/data")),
        ],
        &dir.path().join("dump/log"),
    );
    dump.wait_for_log("cycle done in", 1);

    let node_reloads = |count: usize| {
        node.signal("HUP");
        wait_until("the node's credentials reload", || {
            node.root_log().matches("credentials reloaded").count() >= count
        });
    };
    write_key_file(
        &node_credentials,
        &format!("dump-old:{OLD}\ndump-new:{NEW}\n"),
    );
    node_reloads(1);
    write_key_file(&key_file, &format!("dump-new:{NEW}\n"));
    signal(dump.child.id(), "HUP");
    dump.wait_for_log("new key for client 'dump-new'", 1);
    write_key_file(&node_credentials, &format!("dump-new:{NEW}\n"));
    node_reloads(2);
    let cycles = dump.root_log().matches("cycle done in").count();
    dump.wait_for_log("cycle done in", cycles + 2);

    fs::write(&key_file, "dump-new:123\n").unwrap();
    signal(dump.child.id(), "HUP");
    dump.wait_for_log("key not reloaded, keeping the current key", 1);
    let cycles = dump.root_log().matches("cycle done in").count();
    dump.wait_for_log("cycle done in", cycles + 1);
    let log = dump.root_log();
    assert!(!log.contains("dump cycle failed"), "{log}");
    assert!(log.contains("ERROR"), "{log}");
    let node_log = node.root_log();
    assert!(node_log.contains("revoked [\"dump-old\"]"), "{node_log}");
    assert!(!node_log.contains("authentication failure"), "{node_log}");
}

/// Sends a request to node 0 and checks it succeeded.
fn send_ok(client: &client::Client, code: client::RequestCode, body: &[u8]) -> client::Reply {
    let reply = client.request(0, code, body).unwrap();
    assert!(reply.status.is_success(), "{}", reply.message());
    reply
}

/// Versioned records 0..50, tombstones 40..60 (version 5000), key 100 without a version.
fn write_versioned(dht: &client::DhtClient) {
    use node_core::protocol::dht::{self as wire, PutVersionRequest, RemoveVersionRequest};
    let mut body = Vec::new();
    for key in 0..50u64 {
        body.clear();
        let value = format!("value {key}");
        PutVersionRequest {
            channel: "versioned",
            key,
            version: 1000 + key,
            value: value.as_bytes(),
        }
        .encode(&mut body);
        send_ok(dht.client(), wire::PUT_VERSION, &body);
    }
    for key in 40..60u64 {
        body.clear();
        RemoveVersionRequest {
            channel: "versioned",
            key,
            version: 5000,
        }
        .encode(&mut body);
        send_ok(dht.client(), wire::REMOVE_VERSION, &body);
    }
    dht.put("versioned", 100, b"unversioned").unwrap();
}

/// GetWithVersion of keys 0..=100: each reply's status and body.
fn read_versioned(client: &client::Client) -> Vec<(client::Status, Vec<u8>)> {
    use node_core::protocol::dht::{self as wire, decode_versioned_lookup, KeyRequest};
    (0..=100u64)
        .map(|key| {
            let mut body = Vec::new();
            KeyRequest {
                channel: "versioned",
                key,
            }
            .encode(&mut body);
            let reply = client.request(0, wire::GET_WITH_VERSION, &body).unwrap();
            decode_versioned_lookup(reply.status == client::Status::Ok, &reply.body)
                .expect("a GetWithVersion body");
            (reply.status, reply.body)
        })
        .collect()
}

/// Issue #19: dhtdump's copies keep record versions and tombstones. A node with versioned
/// records, one written without a version and tombstones is dumped by `dhtdump --oneshot`; a
/// node started on that dump answers GetWithVersion exactly as the first one did.
#[test]
fn dhtdump_copies_keep_versions_and_tombstones() {
    use node_core::protocol::dht::{self as wire, PutVersionRequest};
    let dir = tempfile::tempdir().unwrap();
    let node_data = dir.path().join("node/data");
    let node = Node::start(&node_data, &dir.path().join("node/log"));
    let dht = node.client();
    write_versioned(&dht);
    let before = read_versioned(dht.client());
    let dump_data = dir.path().join("dump/data");
    let status = oneshot(node.addr, &dump_data, &dir.path().join("dump/log"));
    assert_eq!(status.code(), Some(0));
    drop(dht);
    node.stop();
    let restored = Node::start(&dump_data, &dir.path().join("restored/log"));
    let dht = restored.client();
    assert_eq!(read_versioned(dht.client()), before);
    // The tombstones came back: an older write stays out.
    let mut body = Vec::new();
    PutVersionRequest {
        channel: "versioned",
        key: 45,
        version: 4999,
        value: b"late",
    }
    .encode(&mut body);
    let reply = send_ok(dht.client(), wire::PUT_VERSION, &body);
    assert_eq!(wire::decode_applied(&reply.body), Ok(false));
}

/// A dump written without compression (a node with `dump_compression = "none"`) reads like a
/// compressed one: `dumptool info` names its compression and checks it, `export` gives the same
/// text, and a truncated one fails its checks.
#[test]
fn dumptool_reads_uncompressed_dumps_like_compressed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(u64, Vec<u8>)> = (0..2000).map(|k| (k * 7, value_for(k, 50))).collect();
    let compressed = dir.path().join("lz4.dump");
    write_dump(&compressed, "lz4", &records);
    let plain = dir.path().join("plain.dump");
    write_dump_stored(&plain, "plain", &records, DumpCompression::None);

    let output = dumptool(&["info", path_str(&plain), path_str(&compressed)]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "format:      dht dump, version 1, compression none",
        "format:      dht dump, version 1, compression lz4",
        "records:     2000\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    assert_eq!(text.matches("checks:      OK").count(), 2, "{text}");
    let exported = dumptool(&["export", path_str(&plain)]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(
        exported.stdout,
        dumptool(&["export", path_str(&compressed)]).stdout
    );

    let bytes = fs::read(&plain).unwrap();
    let truncated = dir.path().join("cut.dump");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let output = dumptool(&["info", path_str(&truncated)]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(
        text.contains("checks:      FAILED: file ends inside the block"),
        "{text}"
    );
}
