//! A Put or PutBatch that fails stores nothing (issue #15, defect 4): on a full disk, Puts
//! answered InternalError used to stay in the write buffer and reach the file once space
//! returned, so a client that retried got duplicates. Against the real `logfilesnode`, for
//! `fsync = "always"` (group commit) and `"interval"` (acknowledged at once): pipelined Puts and
//! PutBatches fill the disk, space returns, the node restarts, and every record is there exactly
//! as its reply said: Ok once, InternalError not at all, NotDurable as many as it names.
//!
//! The bucket's time index must forget the records a failed write took back or dropped: their
//! offsets are reused by the records appended after them. So narrow GetRanges, which seek
//! through the index (the open writer's before the restart, the saved file after it), return
//! exactly what the whole-channel read returns for their keys, and the index the node saves at
//! shutdown matches its bucket entry for entry (as `logfiles_check` verifies it).
//!
//! The disk is a 1 MiB tmpfs, grown to 8 MiB to give space back; where mounting is not allowed,
//! a soft file-size limit (writes fail with EFBIG, SIGXFSZ ignored) that `prlimit` lifts.

use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::logfiles::{self, encode_put_batch, DiskSize, PutRequest, ReadFlags};
use node_core::protocol::{RequestCode, Status};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use testkit::{Conn, Node, Tmpfs};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_logfilesnode");
const CHANNEL: &str = "full";

/// What the node answered for one request: its status, and for NotDurable the records it says
/// are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    NotStored,
    Partly(u64),
}

/// One request sent: the keys of its records and the node's answer.
struct Sent {
    keys: Vec<u64>,
    answer: Answer,
}

fn value_of(key: u64) -> Vec<u8> {
    let mut value = format!("{key:08}").into_bytes();
    value.resize(2000, b'v');
    value
}

fn put_body(key: u64) -> (RequestCode, Vec<u8>) {
    let mut body = Vec::new();
    let value = value_of(key);
    PutRequest {
        channel: CHANNEL,
        key,
        value: &value,
    }
    .encode(&mut body);
    (logfiles::PUT, body)
}

fn batch_body(keys: &[u64]) -> (RequestCode, Vec<u8>) {
    let mut raw = Vec::new();
    for &key in keys {
        append_record(&mut raw, key, &value_of(key));
    }
    let mut batch = Vec::new();
    encode_batch(&raw, keys.len() as u32, &mut batch);
    let mut body = Vec::new();
    encode_put_batch(&mut body, CHANNEL, &batch);
    (logfiles::PUT_BATCH, body)
}

/// The answer a reply gives; any status but these three fails the test.
fn answer(status: Status, body: &[u8], records: usize) -> Answer {
    let message = String::from_utf8_lossy(body);
    match status {
        Status::Ok => Answer::Ok,
        Status::InternalError => {
            assert!(
                message.contains("No space") || message.contains("too large"),
                "the error names the cause: {message}"
            );
            Answer::NotStored
        }
        Status::NotDurable => {
            let stored = match message.strip_prefix("stored ") {
                Some(rest) if rest.starts_with("but") => records as u64,
                Some(rest) => rest
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no count in {message}")),
                None => panic!("NotDurable says what is stored: {message}"),
            };
            Answer::Partly(stored)
        }
        other => panic!("unexpected {other:?}: {message}"),
    }
}

/// Sends a round of 8 Puts and one PutBatch of 12 records (more than a write buffer, so the
/// batch is written part-way while it is appended), pipelined, keys from `next`.
fn round(conn: &mut Conn, next: &mut u64, sent: &mut Vec<Sent>) {
    let mut requests = Vec::new();
    let mut keys = Vec::new();
    for _ in 0..8 {
        requests.push(put_body(*next));
        keys.push(vec![*next]);
        *next += 1;
    }
    let batch: Vec<u64> = (*next..*next + 12).collect();
    *next += 12;
    requests.push(batch_body(&batch));
    keys.push(batch);
    for ((status, body), keys) in pipeline(conn, &requests).into_iter().zip(keys) {
        let answer = answer(status, &body, keys.len());
        sent.push(Sent { keys, answer });
    }
}

/// Sends `requests` in one write and returns their replies in request order (they may come in
/// another: a write refused at once is answered before those waiting for their group commit).
fn pipeline(conn: &mut Conn, requests: &[(RequestCode, Vec<u8>)]) -> Vec<(Status, Vec<u8>)> {
    let mut out = Vec::new();
    for (id, (code, body)) in requests.iter().enumerate() {
        write_frame(&mut out, FrameType::Request, code.0, id as u64, body);
    }
    conn.stream.write_all(&out).expect("send");
    let mut replies = vec![None; requests.len()];
    let mut buffer = Vec::new();
    while replies.iter().any(Option::is_none) {
        if let Some(header) = parse_frame(&buffer, u32::MAX).expect("frame") {
            assert_eq!(header.frame_type, FrameType::Reply);
            let status = Status::from_u8(header.code).expect("status");
            let body = buffer[HEADER_LEN..header.frame_len()].to_vec();
            buffer.drain(..header.frame_len());
            let slot = &mut replies[header.request_id as usize];
            assert!(
                slot.is_none(),
                "two replies for request {}",
                header.request_id
            );
            *slot = Some((status, body));
            continue;
        }
        let mut chunk = [0u8; 65536];
        let read = conn.stream.read(&mut chunk).expect("read");
        assert!(read > 0, "connection closed");
        buffer.extend_from_slice(&chunk[..read]);
    }
    replies.into_iter().flatten().collect()
}

fn channel_size(conn: &mut Conn) -> DiskSize {
    let mut body = Vec::new();
    logfiles::encode_channel(&mut body, CHANNEL);
    let (status, reply) = conn.request(logfiles::GET_CHANNEL_SIZE, body);
    assert_eq!(status, Status::Ok);
    DiskSize::decode(&reply).expect("size")
}

/// Every record of the channel: key → how many times it is stored (values checked).
fn stored(conn: &mut Conn) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for (key, value) in testkit::logfiles_get_all(conn, CHANNEL) {
        assert_eq!(value, value_of(key), "record {key} intact");
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Narrow GetRanges from every key below `end` (they seek through the bucket's index) return
/// exactly the records `counts` (the whole-channel read) has in their range.
fn narrow_reads_agree(conn: &mut Conn, counts: &BTreeMap<u64, usize>, end: u64) {
    const WIDTH: u64 = 5;
    // Many small requests one after another: without this, Nagle holds each behind the last
    // reply's delayed ACK (40 ms a read).
    conn.stream.set_nodelay(true).expect("nodelay");
    for from in 0..end {
        let to = from + WIDTH - 1;
        let got = common::get_range(conn, CHANNEL, from, to, ReadFlags::default());
        let expected: Vec<u64> = counts
            .range(from..=to)
            .flat_map(|(&key, &n)| std::iter::repeat_n(key, n))
            .collect();
        let keys: Vec<u64> = got.iter().map(|(key, _)| *key).collect();
        assert_eq!(keys, expected, "GetRange {from}..={to}");
        for (key, value) in got {
            assert_eq!(value, value_of(key), "record {key} intact");
        }
    }
}

/// After the node's clean shutdown: the index it saved matches the bucket, and `logfiles_check`
/// finds the directory clean, no index damaged, missing or stale.
fn saved_index_matches(dir: &Path) {
    let data = dir.join("data");
    common::indexes_match(&data.join(CHANNEL));
    let report = common::check_finds_clean(&data, &["--json"]);
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    let files = json["files"].as_array().expect("files");
    assert!(!files.is_empty(), "{report}");
    for file in files {
        assert_eq!(file["index"]["status"], "ok", "{file}");
    }
}

/// A disk that fills up and can be given space again.
enum Disk {
    Tmpfs(Tmpfs),
    /// A soft file-size limit on the node process.
    FileSizeLimit,
}

impl Disk {
    fn start(dir: &Path) -> (Disk, Node) {
        let args = ["-c", "node.toml"];
        if let Some(tmpfs) = Tmpfs::mount(&dir.join("data"), "size=1m") {
            return (Disk::Tmpfs(tmpfs), Node::start_in(BIN, dir, &args));
        }
        eprintln!("tmpfs mount not permitted; a file-size limit fails the writes instead");
        let wrapper = dir.join("logfilesnode-limited");
        let script = format!("#!/bin/sh\ntrap '' XFSZ\nulimit -S -f 1024\nexec {BIN} \"$@\"\n");
        std::fs::write(&wrapper, script).expect("write wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let node = Node::start_in(wrapper.to_str().expect("utf-8"), dir, &args);
        (Disk::FileSizeLimit, node)
    }

    fn give_space(&self, node: &Node) {
        match self {
            Disk::Tmpfs(tmpfs) => tmpfs.remount("remount,size=8m"),
            Disk::FileSizeLimit => {
                let status = Command::new("prlimit")
                    .args(["--pid", &node.child.id().to_string(), "--fsize=unlimited:"])
                    .status()
                    .expect("run prlimit");
                assert!(status.success(), "prlimit");
            }
        }
    }
}

fn failed_writes_store_nothing(fsync: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    // The smallest index interval: a stretch every two records, so dropped records start some.
    let config = format!(
        "[logfiles]\nfsync = \"{fsync}\"\nwrite_buffer_bytes = 16384\nindex_interval_bytes = 4096\n"
    );
    std::fs::write(dir.path().join("node.toml"), config).expect("write config");
    let (disk, node) = Disk::start(dir.path());
    let mut conn = Conn::open(node.addr);

    // All keys in one bucket, so the one file grows until the disk is full; three more rounds.
    let mut sent = Vec::new();
    let mut next = 0u64;
    let mut full_rounds = 0;
    while full_rounds < 4 {
        round(&mut conn, &mut next, &mut sent);
        if sent.iter().rev().take(9).any(|s| s.answer != Answer::Ok) {
            full_rounds += 1;
        }
        assert!(next < 4000, "the disk never filled up");
    }
    assert!(sent.iter().any(|s| s.answer == Answer::NotStored));

    // Space returns: the writes succeed again (the flush timer has had time to write the
    // records acknowledged meanwhile, under "interval"), in the offsets of those dropped.
    disk.give_space(&node);
    for _ in 0..3 {
        round(&mut conn, &mut next, &mut sent);
        assert!(sent.iter().rev().take(9).all(|s| s.answer == Answer::Ok));
    }
    // The bucket is still open: narrow reads seek through its writer's index.
    let counts = stored(&mut conn);
    narrow_reads_agree(&mut conn, &counts, next);
    // The size the node reports counts no record it dropped or took back: the same as the
    // files it leaves.
    let size = channel_size(&mut conn);
    drop(conn);
    node.stop();
    saved_index_matches(dir.path());

    let node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
    let mut conn = Conn::open(node.addr);
    assert_eq!(channel_size(&mut conn), size);
    let counts = stored(&mut conn);
    for request in &sent {
        let found: Vec<usize> = request
            .keys
            .iter()
            .map(|key| counts.get(key).copied().unwrap_or(0))
            .collect();
        assert!(
            found.iter().all(|&n| n <= 1),
            "{:?} stored twice",
            request.keys
        );
        let present = found.iter().sum::<usize>() as u64;
        let expected = match request.answer {
            Answer::Ok => request.keys.len() as u64,
            Answer::NotStored => 0,
            Answer::Partly(n) => n,
        };
        assert_eq!(
            present, expected,
            "records {:?} answered {:?}",
            request.keys, request.answer
        );
    }
    // Through the index file saved at shutdown.
    narrow_reads_agree(&mut conn, &counts, next);
    drop(conn);
    node.stop();
    drop(disk);
}

#[test]
fn with_fsync_always_a_failed_write_stores_nothing() {
    failed_writes_store_nothing("always");
}

#[test]
fn with_fsync_interval_a_failed_write_stores_nothing() {
    failed_writes_store_nothing("interval");
}
