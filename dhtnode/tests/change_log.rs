//! The change log at start and over time (issue #18): a torn tail left by a crash is cut with
//! a log line saying how many bytes and entries; the replay applies only what each channel's
//! dump does not hold; and dumps bound the log: past `max_log_bytes` the node dumps early and
//! deletes the segments the dumps cover, so the log does not grow with the writes.

mod common;

use common::{get_stats, stat, wait_until, Conn, Node};
use node_core::protocol::dht;
use node_core::protocol::{RequestCode, Status};
use std::os::unix::fs::FileExt;
use std::path::Path;

const CHANNEL: &str = "log";

fn value_of(key: u64, round: u64) -> Vec<u8> {
    let mut value = common::random_value(key ^ (round << 48), 1000);
    value[..8].copy_from_slice(&round.to_le_bytes());
    value
}

fn put_all(conn: &mut Conn, keys: impl Iterator<Item = u64>, round: u64) {
    put_all_in(conn, CHANNEL, keys, round);
}

fn put_all_in(conn: &mut Conn, channel: &str, keys: impl Iterator<Item = u64>, round: u64) {
    let requests: Vec<(RequestCode, Vec<u8>)> = keys
        .map(|key| {
            (
                dht::PUT,
                common::put_body(channel, key, &value_of(key, round)),
            )
        })
        .collect();
    for (status, body) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok, "{}", String::from_utf8_lossy(&body));
    }
}

fn assert_values(conn: &mut Conn, keys: impl Iterator<Item = u64>, round: u64) {
    assert_values_in(conn, CHANNEL, keys, round);
}

fn assert_values_in(conn: &mut Conn, channel: &str, keys: impl Iterator<Item = u64>, round: u64) {
    let keys: Vec<u64> = keys.collect();
    for (key, (status, value)) in keys.iter().zip(common::get_pipelined(conn, channel, &keys)) {
        assert_eq!(status, Status::Ok, "key {key}");
        assert!(value == value_of(*key, round), "value of key {key}");
    }
}

/// The log's last segment and where its entries end (the zeros the node writes ahead after
/// them are no entries): where the next write lands.
fn entries_end(dir: &Path) -> (std::path::PathBuf, u64) {
    use dht_persist::wal::{LogReader, ReadFrom};
    let mut reader = LogReader::open(&dir.join("data/wal"), ReadFrom::Start).unwrap();
    while reader.next_entry().unwrap().is_some() {}
    let last = reader.summaries().last().expect("a log segment");
    (last.path.clone(), last.good_len)
}

/// Bytes of the log's segments (a segment the node deletes meanwhile counts nothing).
fn log_dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("data/wal"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// What the log in `dir` holds: its segments' headers and entries, without the zeros the node
/// writes ahead after its last entry.
fn log_held_bytes(dir: &Path) -> u64 {
    use dht_persist::wal::{LogReader, ReadFrom};
    let mut reader = LogReader::open(&dir.join("data/wal"), ReadFrom::Start).unwrap();
    while reader.next_entry().unwrap().is_some() {}
    reader
        .summaries()
        .iter()
        .map(|segment| segment.file_len - segment.zeros_after)
        .sum()
}

fn log_bytes_stat(node: &Node) -> u64 {
    stat(&get_stats(&mut Conn::open(node.addr)), "log_bytes").expect("log_bytes in GetStats")
}

/// GetStats `log_bytes` is what the log holds (protocol.md §5.1), not the segment files'
/// lengths with up to 1 MiB of zeros written ahead: neither after a crash (the last segment
/// ends in zeros: the start cuts them) nor once dump cycles have listed the segments again.
#[test]
fn log_bytes_counts_what_the_log_holds_not_the_zeros_written_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_with(dir.path(), "[dht]\ndump_period_s = 0\n");
    put_all(&mut Conn::open(node.addr), 0..100, 1);
    node.kill9();
    assert!(
        log_dir_bytes(dir.path()) > log_held_bytes(dir.path()),
        "zeros written ahead"
    );
    node.restart();
    assert_eq!(
        log_bytes_stat(&node),
        log_held_bytes(dir.path()),
        "after a crash"
    );
    node.stop();

    let node = start_with(dir.path(), "[dht]\ndump_period_s = 1\n");
    put_all(&mut Conn::open(node.addr), 0..100, 2);
    let cycles_done = |node: &Node| node.root_log().matches("dump cycle done").count();
    let before = cycles_done(&node);
    wait_until("two dump cycles after the writes", || {
        cycles_done(&node) >= before + 2
    });
    assert!(
        log_dir_bytes(dir.path()) > log_held_bytes(dir.path()),
        "zeros written ahead"
    );
    assert_eq!(
        log_bytes_stat(&node),
        log_held_bytes(dir.path()),
        "after dump cycles"
    );
}

#[test]
fn a_torn_tail_is_cut_with_a_log_line_and_everything_before_it_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_with(dir.path(), "[dht]\ndump_period_s = 0\n");
    put_all(&mut Conn::open(node.addr), 0..300, 1);
    node.kill9();
    // Half an entry after the last one (over the zeros written ahead): a write the crash cut
    // short.
    let (last, end) = entries_end(dir.path());
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    let mut torn = vec![0u8; 20];
    torn[4..8].copy_from_slice(&1000u32.to_le_bytes()); // a body of 1000 bytes announced
    torn[8..16].copy_from_slice(&301u64.to_le_bytes()); // the next position
    torn[16] = 1; // a Put
    torn.extend_from_slice(&[7u8; 100]);
    file.write_all_at(&torn, end).unwrap();
    drop(file);

    node.restart();
    let log = node.root_log();
    let line = log
        .lines()
        .find(|line| line.contains("cut a torn tail"))
        .unwrap_or_else(|| panic!("no torn-tail line in root.log:\n{log}"));
    assert!(
        line.contains("torn tail of 120 bytes (1 entry begun)"),
        "the line says how much was cut: {line}"
    );
    assert!(
        log.contains("300 entries applied"),
        "every entry before the tail is replayed:\n{log}"
    );
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..300, 1);
    // The log goes on after the cut: one more write, a crash, and it is there.
    put_all(&mut conn, 300..301, 1);
    drop(conn);
    node.restart();
    assert_values(&mut Conn::open(node.addr), 0..301, 1);
}

#[test]
fn dumps_bound_the_log_and_a_replay_applies_only_what_dumps_lack() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 128 KiB; no periodic dumps: only the log's size starts them.
    std::fs::write(
        dir.path().join("node.toml"),
        "[dht]\ndump_period_s = 0\nmax_log_bytes = 1048576\n",
    )
    .unwrap();
    let mut node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    let mut conn = Conn::open(node.addr);
    // 20 rounds over the same 500 keys: about 10 MB of changes, on 0.5 MB of data.
    for round in 1..=20 {
        put_all(&mut conn, 0..500, round);
    }
    wait_until("early dumps deleting covered segments", || {
        node.root_log().contains("segment(s) covered by the dumps")
    });
    let log = node.root_log();
    assert!(log.contains("dumping early"), "{log}");
    wait_until("the log back under max_log_bytes and a margin", || {
        log_dir_bytes(dir.path()) < 3 << 20
    });
    let logged = stat(&get_stats(&mut conn), "log_bytes").expect("log_bytes in GetStats");
    assert!(logged < 3 << 20, "GetStats log_bytes {logged}");

    // A crash: the dumps and the log after them give back the last values.
    put_all(&mut conn, 0..100, 21);
    drop(conn);
    node.restart();
    let log = node.root_log();
    let replayed = log
        .lines()
        .rev()
        .find(|line| line.contains("change log replayed"))
        .expect("a replay line");
    // Only what came after the last dump is replayed, not the 10 100 changes written.
    let applied: u64 = replayed
        .split(" s: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count in {replayed}"));
    assert!((100..5000).contains(&applied), "{replayed}");
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..100, 21);
    assert_values(&mut conn, 100..500, 20);
    drop(conn);
    node.stop();
}

/// Under "always" a RemoveChannel is answered once its entry is fsynced, like every change: a
/// crash right after the answer keeps the channel removed, and the writes after it.
#[test]
fn a_removed_channel_stays_removed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, 0..50, 1);
    // A dump holding the channel, so that the replay has to undo it.
    drop(conn);
    node.signal("TERM");
    assert!(node.wait_exit().success(), "a clean stop");
    node.restart();
    let mut conn = Conn::open(node.addr);
    let mut body = Vec::new();
    dht::encode_channel(&mut body, CHANNEL);
    assert_eq!(conn.request(dht::REMOVE_CHANNEL, body).0, Status::Ok);
    put_all(&mut conn, 7..8, 2);
    drop(conn);
    node.restart(); // SIGKILL, then start
    let mut conn = Conn::open(node.addr);
    let found = common::get_pipelined(&mut conn, CHANNEL, &(0..50).collect::<Vec<_>>());
    for (key, (status, _)) in found.iter().enumerate() {
        let expected = if key == 7 {
            Status::Ok
        } else {
            Status::NotFound
        };
        assert_eq!(*status, expected, "key {key}");
    }
    assert_values(&mut conn, 7..8, 2);
}

/// The segment files of the log in `dir/data/wal` (`NNNNNNNN.log`; not its `covered` file).
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir.join("data/wal")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A node switched from a log to `durability = "none"` replays the log it kept (those changes
/// were acknowledged), and deletes it once its dumps cover it (a dump cycle and the backup
/// cycle after it), instead of replaying it at every start. Switched back, it logs again after
/// what its dumps cover.
#[test]
fn a_log_left_under_durability_none_is_replayed_then_deleted_once_dumps_cover_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[dht]\ndurability = \"always\"\ndump_period_s = 0\n",
    )
    .unwrap();
    let mut node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    put_all(&mut Conn::open(node.addr), 0..200, 1);
    node.kill9(); // no dump: the 200 changes are only in the log
    assert!(!segments(dir.path()).is_empty(), "the log holds them");

    std::fs::write(&config, "[dht]\ndurability = \"none\"\ndump_period_s = 0\n").unwrap();
    for start in 1..=2 {
        node.restart();
        let mut conn = Conn::open(node.addr);
        assert_values(&mut conn, 0..200, 1);
        put_all(&mut conn, 200..210, start); // not logged: kept by the dump at the stop
        drop(conn);
        node.signal("TERM");
        assert_eq!(node.wait_exit().code(), Some(0), "a clean stop dumps");
    }
    assert!(
        node.root_log().contains("segment(s) covered by the dumps"),
        "{}",
        node.root_log()
    );
    assert_eq!(
        segments(dir.path()),
        Vec::<std::path::PathBuf>::new(),
        "the log is gone"
    );

    // Back to a log: everything is there, and a crash keeps what is written from now on.
    std::fs::write(
        &config,
        "[dht]\ndurability = \"always\"\ndump_period_s = 0\n",
    )
    .unwrap();
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..200, 1);
    assert_values(&mut conn, 200..210, 2);
    put_all(&mut conn, 0..50, 3);
    drop(conn);
    node.kill9();
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..50, 3);
    assert_values(&mut conn, 50..200, 1);
    assert_values(&mut conn, 200..210, 2);
    drop(conn);
    node.stop();
}

/// Under "always" a change waits for its group's fsync before its reply: it is a request that
/// waits, not a stream, so a Control Stop for its id is ignored (protocol §2.2) and the reply
/// still comes after the fsync with its body (a PutBatch's count), not an early empty Ok.
#[test]
fn a_stop_for_a_change_waiting_for_its_fsync_changes_nothing() {
    use node_core::protocol::batch::{append_record, encode_batch};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[dht]\ndurability = \"always\"\ndump_period_s = 0\n",
    )
    .unwrap();
    let node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    let mut conn = Conn::open(node.addr);
    let mut raw = Vec::new();
    for key in 100..110 {
        append_record(&mut raw, key, &value_of(key, 1));
    }
    let (mut batch, mut batch_body) = (Vec::new(), Vec::new());
    encode_batch(&raw, 10, &mut batch);
    dht::encode_put_batch(&mut batch_body, CHANNEL, &batch);
    let requests = vec![
        (dht::PUT, common::put_body(CHANNEL, 1, &value_of(1, 1))),
        (dht::PUT_BATCH, batch_body),
    ];
    let replies = conn.pipeline_each_stopped(&requests);
    assert_eq!(replies[0], (Status::Ok, Vec::new()), "Put");
    assert_eq!(
        replies[1],
        (Status::Ok, 10u64.to_le_bytes().to_vec()),
        "PutBatch: its count, not an empty Ok"
    );
    assert_values(&mut conn, (1..2).chain(100..110), 1);
    drop(conn);
    node.stop();
}

/// A node under "always" in a fresh directory (no periodic dumps).
fn start_always(dir: &Path) -> Node {
    start_with(dir, "[dht]\ndurability = \"always\"\ndump_period_s = 0\n")
}

/// A node in `dir` with `config` as its node.toml.
fn start_with(dir: &Path, config: &str) -> Node {
    std::fs::write(dir.join("node.toml"), config).unwrap();
    Node::start_in(common::BIN, dir, &["-c", "node.toml"])
}

/// SIGTERM and the exit status of the shutdown (its dump may fail).
fn stop_status(node: &mut Node) -> Option<i32> {
    node.signal("TERM");
    node.wait_exit().code()
}

/// A channel whose dump failed while another channel's succeeded at a later log position
/// keeps every acknowledged change: the replay does not start at the other channel's dump.
#[test]
fn a_channel_whose_dump_failed_is_replayed_whole_beside_a_dumped_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    let mut conn = Conn::open(node.addr);
    put_all_in(&mut conn, "a", 0..50, 1);
    put_all_in(&mut conn, "b", 0..50, 1);
    drop(conn);
    // b's dump cannot be written (its temporary file's name is taken by a directory).
    let blocker = dir.path().join("data/b.dump.tmp");
    std::fs::create_dir(&blocker).unwrap();
    assert_eq!(
        stop_status(&mut node),
        Some(1),
        "the shutdown dump of b fails"
    );
    assert!(dir.path().join("data/a.dump").exists(), "a is dumped");
    std::fs::remove_dir(&blocker).unwrap();

    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values_in(&mut conn, "a", 0..50, 1);
    assert_values_in(&mut conn, "b", 0..50, 1);
    drop(conn);
    node.stop();
}

/// The first dump cycle after a start without dumps deletes no log segment (no dump is a
/// backup yet): should that dump be damaged, the log still rebuilds the channel.
#[test]
fn a_damaged_first_dump_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    put_all_in(&mut Conn::open(node.addr), "a", 0..50, 1);
    node.kill9(); // no dump yet
    node.restart();
    assert_eq!(stop_status(&mut node), Some(0), "the first dump cycle");
    let dump = dir.path().join("data/a.dump");
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&dump, &bytes).unwrap();

    node.restart();
    assert_values_in(&mut Conn::open(node.addr), "a", 0..50, 1);
    node.stop();
}

/// A dump that records a log position no log can reach (a damaged or forged header with a
/// valid CRC) stops the start with an error naming the channel, instead of an overflow.
#[test]
fn a_dump_covering_an_impossible_log_position_is_refused_by_name() {
    use dht_persist::dump::format::DumpFileWriter;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for position in [u64::MAX, u64::MAX - 1] {
        let file = std::fs::File::create(dir.path().join("data/forged.dump")).unwrap();
        let mut writer = DumpFileWriter::covering(file, "forged", position).unwrap();
        let mut raw = Vec::new();
        node_core::protocol::batch::append_record(&mut raw, 1, b"value");
        writer.write_chunk(&raw, 1).unwrap();
        writer.finish().unwrap();
        std::fs::write(dir.path().join("node.toml"), "[dht]\n").unwrap();
        let output = std::process::Command::new(common::BIN)
            .args(["-c", "node.toml", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "position {position}: {stderr}"
        );
        assert!(
            stderr.contains("the dump of channel forged records log position"),
            "position {position}: {stderr}"
        );
    }
}

/// A RemoveChannel moves the channel's dump files aside only once its log entry is fsynced: a
/// machine crash that loses the entry (simulated: the unsynced tail of the log cut off after a
/// SIGKILL) finds the channel whole — its dump and the log after it — not rebuilt from the log
/// alone without what only its dump held. Once the log is fsynced, the files go.
#[test]
fn a_removed_channel_keeps_its_dump_until_the_removal_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    let never_fsync = "[dht]\ndurability = \"interval\"\ndurability_interval_ms = 3600000\n\
                       dump_period_s = 0\n";
    std::fs::write(&config, never_fsync).unwrap();
    let mut node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    put_all(&mut Conn::open(node.addr), 0..50, 1);
    assert_eq!(stop_status(&mut node), Some(0), "a dump of the channel");
    node.restart();
    let mut conn = Conn::open(node.addr);
    put_all(&mut conn, 50..60, 1); // in the log only
    let (segment, before_removal) = entries_end(dir.path());
    let mut body = Vec::new();
    dht::encode_channel(&mut body, CHANNEL);
    assert_eq!(
        conn.request(dht::REMOVE_CHANNEL, body.clone()).0,
        Status::Ok
    );
    std::thread::sleep(std::time::Duration::from_millis(300)); // a few ticks of the node
    assert!(
        dir.path().join(format!("data/{CHANNEL}.dump")).exists(),
        "the dump stays while the removal is not fsynced"
    );
    drop(conn);
    node.kill9();
    // The machine crash: the log's tail after the last fsync is lost.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(before_removal).unwrap();
    drop(file);

    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..60, 1);
    // Removed again and fsynced (a clean stop fsyncs the log): the files go.
    assert_eq!(conn.request(dht::REMOVE_CHANNEL, body).0, Status::Ok);
    drop(conn);
    assert_eq!(stop_status(&mut node), Some(0));
    assert!(!dir.path().join(format!("data/{CHANNEL}.dump")).exists());
    let moved = std::fs::read_dir(dir.path().join("data/removed"))
        .unwrap()
        .count();
    assert!(moved >= 1, "the dump moved to data/removed");
}

/// An old dump restored by an operator (its position far behind) beside a log whose first
/// segment is a sequence jump (begun after the log was deleted): the dump holds the earliest
/// changes, the log the latest, and the ones between are in neither. The node refuses to
/// start, naming the channel, the dump's position and the log's first position; with
/// `dht.log_gap = "load"` it starts, with an ERROR line naming them, and serves what it has.
/// The start before the old dump came back, on the same log, is not refused.
#[test]
fn a_dump_older_than_the_log_stops_the_start_unless_log_gap_says_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[dht]\ndump_period_s = 0\n").unwrap();
    let mut node = Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    put_all(&mut Conn::open(node.addr), 0..10, 1); // positions 1..=10
    assert_eq!(stop_status(&mut node), Some(0), "the dump covering 10");
    let dump = dir.path().join("data/log.dump");
    let old_dump = std::fs::read(&dump).unwrap();
    node.restart();
    put_all(&mut Conn::open(node.addr), 0..10, 2); // 11..=20
    assert_eq!(stop_status(&mut node), Some(0), "the dump covering 20");
    // The log deleted: the next start begins it with a sequence jump to 21.
    std::fs::remove_dir_all(dir.path().join("data/wal")).unwrap();
    node.restart();
    put_all(&mut Conn::open(node.addr), 10..20, 3); // 21..=30
    node.restart(); // a crash: the dump covering 20 and the log from 21 make it whole
    assert!(!node.root_log().contains("GAP"), "{}", node.root_log());
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..10, 2);
    assert_values(&mut conn, 10..20, 3);
    drop(conn);
    node.kill9();

    std::fs::write(&dump, &old_dump).unwrap();
    let args = ["-c", "node.toml", "--listen", "127.0.0.1:0"];
    let (code, stderr) = common::refused_start(dir.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        "change log GAP: the log's first entry is at position 21",
        "a sequence jump",
        "log (position 10)",
        "from position 11 to 20",
        "log_gap = \"load\"",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }

    std::fs::write(&config, "[dht]\ndump_period_s = 0\nlog_gap = \"load\"\n").unwrap();
    node.restart();
    let log = node.root_log();
    let line = log
        .lines()
        .find(|line| line.contains("change log GAP"))
        .unwrap_or_else(|| panic!("no GAP line in root.log:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("log (position 10)"),
        "{line}"
    );
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..10, 1);
    assert_values(&mut conn, 10..20, 3);
    drop(conn);
    node.stop();
}

/// A restore from dhtdump's dumps (taken at different positions, copied into an empty data
/// directory), then a crash before the node's first complete dump cycle: the next start is no
/// GAP, since the log was begun over those very dumps (`wal/jump-base` records them), and it
/// serves every write. An older dump of a channel put back after that is still a GAP.
#[test]
fn a_crash_after_a_restore_from_dumps_is_no_gap_but_an_older_dump_still_is() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_with(dir.path(), "[dht]\ndump_period_s = 0\n");
    put_all_in(&mut Conn::open(node.addr), "a", 0..10, 1); // 1..=10
    put_all_in(&mut Conn::open(node.addr), "b", 0..10, 1); // 11..=20
    assert_eq!(stop_status(&mut node), Some(0), "dumps covering 20");
    let dump = |channel: &str| dir.path().join(format!("data/{channel}.dump"));
    let a_20 = std::fs::read(dump("a")).unwrap();
    node.restart();
    put_all_in(&mut Conn::open(node.addr), "a", 0..10, 2); // 21..=30
    assert_eq!(stop_status(&mut node), Some(0), "dumps covering 30");
    let a_30 = std::fs::read(dump("a")).unwrap();
    node.restart();
    put_all_in(&mut Conn::open(node.addr), "b", 0..10, 2); // 31..=40
    assert_eq!(stop_status(&mut node), Some(0), "dumps covering 40");
    let b_40 = std::fs::read(dump("b")).unwrap();

    // The restore: a's dump of 30 and b's of 40 in an empty data directory.
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dump("a"), &a_30).unwrap();
    std::fs::write(dump("b"), &b_40).unwrap();
    node.restart(); // the log begins at 41
    put_all_in(&mut Conn::open(node.addr), "a", 10..20, 3); // 41..=50
    node.restart(); // a crash before any dump
    assert!(!node.root_log().contains("GAP"), "{}", node.root_log());
    let mut conn = Conn::open(node.addr);
    assert_values_in(&mut conn, "a", 0..10, 2);
    assert_values_in(&mut conn, "a", 10..20, 3);
    assert_values_in(&mut conn, "b", 0..10, 2);
    drop(conn);
    node.kill9();

    // a's dump of 20 put back over the one the log was begun over: 21..=30 are in no file.
    std::fs::write(dump("a"), &a_20).unwrap();
    let args = ["-c", "node.toml", "--listen", "127.0.0.1:0"];
    let (code, stderr) = common::refused_start(dir.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        "change log GAP",
        "a (position 20)",
        "from position 21 to 40",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}

/// A `wal/covered` left behind when the dumps and the log segments were deleted by hand (a
/// node "reset" with `rm data/*.dump data/wal/*.log`) records a position the new log has not
/// reached. The writer starts past it, so no later replay passes over what is written now
/// (it started at 1, and a crash then lost every acknowledged write up to that position).
#[test]
fn a_covered_file_left_after_dumps_and_log_were_deleted_passes_over_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    put_all(&mut Conn::open(node.addr), 0..200, 1);
    assert_eq!(stop_status(&mut node), Some(0), "a clean stop dumps");
    assert!(
        dir.path().join("data/wal/covered").exists(),
        "the shutdown dump cycle records its position"
    );
    for path in segments(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::remove_file(dir.path().join(format!("data/{CHANNEL}.dump"))).unwrap();

    node.restart();
    put_all(&mut Conn::open(node.addr), 1000..1050, 2);
    node.kill9();
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 1000..1050, 2);
    put_all(&mut conn, 1050..1400, 3);
    drop(conn);
    node.kill9();
    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 1000..1050, 2);
    assert_values(&mut conn, 1050..1400, 3);
}

/// A `wal/covered` recording a position no log reaches (damaged with a matching CRC, or forged)
/// counts as missing, with a WARN: the whole log is replayed (it passed over every entry).
#[test]
fn a_covered_position_past_any_log_is_ignored_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    put_all(&mut Conn::open(node.addr), 0..100, 1);
    node.kill9();
    dht_persist::wal::write_covered(&dir.path().join("data/wal"), u64::MAX).unwrap();
    node.restart();
    assert_values(&mut Conn::open(node.addr), 0..100, 1);
    let log = node.root_log();
    assert!(
        log.contains("is past the largest a change log reaches"),
        "{log}"
    );
}

/// A damaged dump falls back to its backup, and the change log, which keeps its segments back
/// to the backups' positions, replays everything written since: the ERROR line must not tell
/// the operator those records are lost (it did, so a restore from an older copy looked due).
#[test]
fn a_damaged_dump_falls_back_to_its_backup_and_the_log_brings_back_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    put_all(&mut Conn::open(node.addr), 0..30, 1);
    assert_eq!(stop_status(&mut node), Some(0));
    node.restart();
    put_all(&mut Conn::open(node.addr), 30..60, 2);
    assert_eq!(stop_status(&mut node), Some(0));
    let dump = dir.path().join(format!("data/{CHANNEL}.dump"));
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&dump, &bytes).unwrap();

    node.restart();
    let mut conn = Conn::open(node.addr);
    assert_values(&mut conn, 0..30, 1);
    assert_values(&mut conn, 30..60, 2);
    let log = node.root_log();
    let line = log
        .lines()
        .find(|line| line.contains("DUMP FILE FAILED"))
        .unwrap_or_else(|| panic!("no DUMP FILE FAILED line:\n{log}"));
    assert!(
        line.contains("falling back to the backup")
            && line.contains("except those the change log still holds"),
        "{line}"
    );
    assert!(log.contains("30 entries applied"), "{log}");
}

/// A file in the log directory that is not a segment (here a segment copied back under a
/// name of 7 digits) is left alone but named in a WARN, never passed over in silence.
#[test]
fn a_file_in_the_log_directory_that_is_no_segment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_always(dir.path());
    put_all(&mut Conn::open(node.addr), 0..10, 1);
    assert_eq!(
        stop_status(&mut node),
        Some(0),
        "a clean stop writes wal/covered"
    );
    node.restart();
    node.kill9();
    let stray = dir.path().join("data/wal/0000009.log");
    std::fs::write(&stray, b"not read").unwrap();
    node.restart();
    assert_values(&mut Conn::open(node.addr), 0..10, 1);
    let log = node.root_log();
    assert!(
        log.contains(&format!("ignoring {}: not a segment name", stray.display()))
            || log.contains("ignoring data/wal/0000009.log: not a segment name"),
        "{log}"
    );
    assert!(!log.contains("ignoring data/wal/covered"), "{log}");
    assert!(stray.exists(), "left alone");
}
