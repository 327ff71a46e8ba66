//! `dumptool log-info` and `dumptool log-check` run as binaries on change logs written by the
//! log's own writer: a clean log, a torn tail (cut by `--repair`), damage in the middle
//! (refused; given up only with `--discard-after-damage`), usage errors and a directory in use.
//! Exit statuses as `logfiles_check`'s: 0 clean, 1 problems, 2 usage, 3 repaired.

mod common;

use common::*;
use dht_persist::wal::{Change, LogEnd, LogOptions, LogWriter};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A data directory with a log of 120 entries of every kind over several 4 KiB segments.
fn data_dir_with_log() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    let end = LogEnd {
        dir: data.path().join("wal"),
        last_seq: 0,
        next_segment: 1,
        torn: None,
        cut: false,
    };
    let options = LogOptions {
        segment_bytes: 4096,
        group_bytes: 1 << 20,
    };
    let mut log = LogWriter::create(&end, 1, options).unwrap();
    let mut raw = Vec::new();
    node_core::protocol::batch::append_record(&mut raw, 5, b"five");
    node_core::protocol::batch::append_record(&mut raw, 6, b"six");
    for i in 0..120u64 {
        let value = value_for(i, 100);
        let change = match i % 5 {
            0..=1 => Change::Put {
                channel: "users",
                key: i,
                value: &value,
            },
            2 => Change::Remove {
                channel: "users",
                key: i,
            },
            3 => Change::PutRecords {
                channel: "items",
                raw: &raw,
                count: 2,
            },
            _ => Change::RemoveKeys {
                channel: "items",
                keys: &[5, 6, 7],
            },
        };
        log.append(&change).unwrap();
        if i % 3 == 2 {
            log.write_out().unwrap();
        }
    }
    log.append(&Change::RemoveChannel { channel: "old" })
        .unwrap();
    log.write_out().unwrap();
    log.sync_now().unwrap();
    data
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<_> = fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths
}

#[test]
fn a_clean_log_is_listed_with_positions_and_counts_and_checks_clean() {
    let data = data_dir_with_log();
    let dir = path_str(data.path());
    let info = dumptool(&["log-info", dir]);
    assert_eq!(info.status.code(), Some(0), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(text.contains("00000001.log  positions 1..="), "{text}");
    let total = |kind: &str| -> u64 {
        text.lines()
            .map(|line| line.replace('(', "( "))
            .filter_map(|line| Some(line.split(&format!(" {kind} ")).nth(1)?.to_string()))
            .map(|rest| {
                rest.split([',', ')'])
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum()
    };
    let kinds = ["Put", "Remove", "PutBatch", "RemoveKeys", "RemoveChannel"].map(total);
    assert_eq!(kinds, [48, 24, 24, 24, 1], "{text}");
    assert!(text.contains("summary: "), "{text}");
    assert!(text.contains(" entries (positions 1..=121), "), "{text}");
    assert!(text.ends_with("checks: OK\n"), "{text}");
    let lines_per_segment = text
        .lines()
        .filter(|l| l.contains(".log  positions"))
        .count();
    assert_eq!(lines_per_segment, segments(data.path()).len());

    let entries = dumptool(&["log-info", "--entries", dir]);
    let text = stdout(&entries);
    assert!(
        text.contains(
            "             1  Put            users  key 0x0000000000000000, 100 value bytes"
        ),
        "{text}"
    );
    assert!(text.contains("  PutBatch       items  2 records"), "{text}");
    assert!(text.contains("  RemoveKeys     items  3 keys"), "{text}");
    assert!(
        text.contains("           121  RemoveChannel  old"),
        "{text}"
    );

    // The log directory itself works too.
    let check = dumptool(&["log-check", path_str(&data.path().join("wal"))]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let text = stdout(&check);
    assert!(text.contains("00000001.log: ok, positions 1..="), "{text}");
    assert!(text.ends_with("result: clean\n"), "{text}");
}

#[test]
fn a_torn_tail_is_a_problem_until_repair_cuts_it() {
    let data = data_dir_with_log();
    let dir = path_str(data.path());
    let last = segments(data.path()).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    fs::write(&last, &bytes[..bytes.len() - 7]).unwrap();

    let check = dumptool(&["log-check", dir]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    let text = stdout(&check);
    assert!(
        text.contains(&format!("{}: TORN TAIL from byte ", last.display())),
        "{text}"
    );
    assert!(
        text.contains("result: torn tail (--repair cuts it)"),
        "{text}"
    );
    let info = dumptool(&["log-info", dir]);
    assert_eq!(info.status.code(), Some(1));
    assert!(
        stdout(&info).contains("checks: TORN TAIL: torn tail of "),
        "{}",
        stdout(&info)
    );
    assert!(
        stdout(&info).contains("the log ends at position 120"),
        "{}",
        stdout(&info)
    );
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        bytes.len() as u64 - 7,
        "checks change nothing"
    );

    let repair = dumptool(&["log-check", "--repair", dir]);
    assert_eq!(repair.status.code(), Some(3), "{}", stdout(&repair));
    let text = stdout(&repair);
    let cut = bytes.len() - 7 - (bytes.len() - entry_len_of_last(&bytes));
    assert!(
        text.contains(&format!(
            "repair: cut the torn tail of {cut} bytes (1 entry begun)"
        )),
        "{text}"
    );
    assert!(
        text.contains("result: repaired; the log now ends at position 120"),
        "{text}"
    );
    let again = dumptool(&["log-check", dir]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));
}

/// The length of the last entry of a segment (walking the entries from the header).
fn entry_len_of_last(segment: &[u8]) -> usize {
    let mut offset = 36;
    let mut last = 0;
    while offset < segment.len() {
        let len = u32::from_le_bytes(segment[offset + 4..offset + 8].try_into().unwrap()) as usize;
        last = 20 + len;
        offset += last;
    }
    last
}

#[test]
fn damage_in_the_middle_is_refused_and_given_up_only_when_asked() {
    let data = data_dir_with_log();
    let dir = path_str(data.path());
    let all = segments(data.path());
    assert!(all.len() >= 3, "{all:?}");
    let damaged = &all[1];
    let mut bytes = fs::read(damaged).unwrap();
    bytes[36 + 25] ^= 0x10; // inside the segment's first entry
    fs::write(damaged, &bytes).unwrap();

    let check = dumptool(&["log-check", dir]);
    assert_eq!(check.status.code(), Some(1));
    let text = stdout(&check);
    assert!(
        text.contains(&format!("{}: DAMAGED at byte 36 (", damaged.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{}: not read (after the damage)",
            all[2].display()
        )),
        "{text}"
    );
    assert!(text.contains("problem: change log DAMAGED: "), "{text}");
    assert!(text.contains("entry checksum mismatch"), "{text}");
    assert!(text.contains("an intact entry follows"), "{text}");

    let refused = dumptool(&["log-check", "--repair", dir]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("not repaired: the entries after the damage would be lost"));
    assert_eq!(
        fs::read(damaged).unwrap(),
        bytes,
        "a plain repair leaves damage alone"
    );

    let discard = dumptool(&["log-check", "--repair", "--discard-after-damage", dir]);
    assert_eq!(discard.status.code(), Some(3), "{}", stdout(&discard));
    let text = stdout(&discard);
    assert!(text.contains("repair: gave up "), "{text}");
    assert!(
        text.contains("result: repaired; the log now ends at position "),
        "{text}"
    );
    let aside: Vec<_> = fs::read_dir(data.path().join("corrupt"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        aside.len() == 1 && aside[0].starts_with("wal."),
        "{aside:?}"
    );
    assert_eq!(segments(data.path()), all[..2].to_vec());
    assert_eq!(fs::metadata(damaged).unwrap().len(), 36);
    assert_eq!(dumptool(&["log-check", dir]).status.code(), Some(0));
}

#[test]
fn usage_errors_and_a_directory_in_use_exit_2() {
    let data = data_dir_with_log();
    let dir = path_str(data.path());
    let missing = dumptool(&["log-check", path_str(&data.path().join("nowhere"))]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("is not a directory"),
        "{}",
        stderr(&missing)
    );
    let empty = tempfile::tempdir().unwrap();
    let no_log = dumptool(&["log-info", path_str(empty.path())]);
    assert_eq!(no_log.status.code(), Some(2));
    assert!(
        stderr(&no_log).contains("no change log in "),
        "{}",
        stderr(&no_log)
    );
    let alone = dumptool(&["log-check", "--discard-after-damage", dir]);
    assert_eq!(alone.status.code(), Some(2), "{}", stderr(&alone));

    let _node = node_core::data_lock::DataDirLock::acquire(data.path()).unwrap();
    let busy = dumptool(&["log-check", "--repair", dir]);
    assert_eq!(busy.status.code(), Some(2), "{}", stdout(&busy));
    assert!(
        stderr(&busy).contains("is in use by another process"),
        "{}",
        stderr(&busy)
    );
    // Reading alone needs no lock.
    assert_eq!(dumptool(&["log-check", dir]).status.code(), Some(0));
}

/// A segment whose header has the sequence-jump flag and first position 2^64 − 1 (no entry can
/// carry it, and no log can continue after it): `dumptool log-check` and the dht node decide it
/// with the same header check, so both refuse it, naming the same problem.
#[test]
fn a_segment_starting_at_the_last_position_is_refused_by_log_check_and_the_node_alike() {
    use dht_persist::wal::format::{SegmentHeader, SEGMENT_FLAG_SEQUENCE_JUMP};
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().join("wal");
    fs::create_dir(&wal).unwrap();
    let header = SegmentHeader {
        number: 1,
        first_seq: u64::MAX,
        flags: SEGMENT_FLAG_SEQUENCE_JUMP,
    };
    fs::write(wal.join("00000001.log"), header.encode()).unwrap();
    let problem = "first sequence number is 2^64 - 1";

    let check = dumptool(&["log-check", path_str(data.path())]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(stdout(&check).contains(problem), "{}", stdout(&check));

    let logs = tempfile::tempdir().unwrap();
    let mut node = std::process::Command::new(dhtnode_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path_str(data.path()),
        ])
        .args(["--log-dir", path_str(logs.path())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = node.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            node.kill().unwrap();
            node.wait().unwrap();
            panic!("the node started on the log log-check refuses");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut refusal = String::new();
    std::io::Read::read_to_string(node.stderr.as_mut().unwrap(), &mut refusal).unwrap();
    assert!(!status.success(), "{refusal}");
    assert!(refusal.contains(problem), "{refusal}");
    assert_eq!(fs::read(wal.join("00000001.log")).unwrap(), header.encode());
}
