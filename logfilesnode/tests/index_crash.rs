//! Crash test of the bucket indexes: the real `logfilesnode` (fsync = always, two buckets open
//! per channel, so buckets close — and save their index — all the time) takes Puts and is
//! killed with SIGKILL mid-append. Restarted, it is read through its indexes: saved ones, stale
//! ones (a bucket appended to after its index was saved) and missing ones (the buckets open at
//! the kill). Every acknowledged record is there; a narrow GetRange (which seeks with the index)
//! returns exactly what the whole-range GetRange returns for its keys; afterwards every bucket
//! has an index that matches it exactly, the next reads use it without rebuilding it, and
//! `logfiles_check` finds the directory clean.
//!
//! Two channels: `ordered` (keys only rise: buckets in key order, reads seek) and `mixed` (each
//! round writes between the keys of the rounds before: buckets out of key order, reads do not
//! seek). Rounds: `LOGFILES_INDEX_CRASH_ROUNDS` (default 2: the second goes on in the bucket the first
//! ended in, whose index the first round's reads saved).

mod common;

use client::{Client, ClientOptions};
use common::{get_range, indexes_match};
use node_core::protocol::logfiles::{self, PutRequest, ReadFlags};
use node_core::protocol::{NodeKind, Status};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{Conn, Node, XorShift};

const BIN: &str = env!("CARGO_BIN_EXE_logfilesnode");
const FIRST_KEY: u64 = 0x6a00_0000;
/// Key step between records of one writer: 256 records fill a 4096-key bucket.
const STEP: u64 = 16;
const WINDOW: usize = 32;

fn value_of(key: u64) -> Vec<u8> {
    let mut value = format!("{key:016x} ").into_bytes();
    value.resize(40 + (key % 200) as usize, b'a' + (key % 26) as u8);
    value
}

/// The key of record `seq` of `round` in `channel`; `start`: the key after the last one stored.
fn key_of(channel: &str, round: u64, start: u64, seq: u64) -> u64 {
    match channel {
        // Rounds follow each other in time: each goes on in the bucket the last one ended in
        // (whose index the reads after the last kill saved, and is stale once appended to).
        "ordered" => start + seq * STEP,
        // Every round over the same buckets, between the keys of the others.
        _ => FIRST_KEY + seq * STEP + round,
    }
}

/// Puts until the node dies (or `stop`); returns the keys whose Put was answered Ok.
fn writer(
    addr: std::net::SocketAddr,
    channel: &'static str,
    (round, start): (u64, u64),
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let options = ClientOptions {
        request_timeout_ms: 5_000,
        ..ClientOptions::default()
    };
    let Ok(client) = Client::connect(&[addr], Some(NodeKind::Logfiles), options) else {
        return Vec::new();
    };
    let mut acked = Vec::new();
    let mut in_flight = std::collections::VecDeque::new();
    for seq in 0..STEP * 4096 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = key_of(channel, round, start, seq);
        let mut body = Vec::new();
        PutRequest {
            channel,
            key,
            value: &value_of(key),
        }
        .encode(&mut body);
        match client.submit_owned(0, logfiles::PUT, body) {
            Ok(pending) => in_flight.push_back((key, pending)),
            Err(_) => break,
        }
        if in_flight.len() >= WINDOW {
            let Some((key, pending)) = in_flight.pop_front() else {
                break;
            };
            match pending.wait() {
                Ok(reply) if reply.status == Status::Ok => acked.push(key),
                _ => break,
            }
        }
    }
    for (key, pending) in in_flight {
        if matches!(pending.wait(), Ok(reply) if reply.status == Status::Ok) {
            acked.push(key);
        }
    }
    acked
}

/// Reads a channel whole and in narrow windows, and checks what it gets; returns the largest key.
fn check_reads(
    conn: &mut Conn,
    channel: &str,
    acked: &BTreeSet<u64>,
    rng: &mut XorShift,
) -> Option<u64> {
    let all = get_range(conn, channel, 0, u64::MAX, ReadFlags::default());
    let mut seen = BTreeSet::new();
    for (key, value) in &all {
        assert_eq!(value, &value_of(*key), "{channel}: record {key:#x} damaged");
        assert!(seen.insert(*key), "{channel}: key {key:#x} twice");
    }
    assert!(
        all.windows(2).all(|w| w[0].0 <= w[1].0),
        "{channel}: key order"
    );
    let lost: Vec<&u64> = acked.difference(&seen).collect();
    assert!(
        lost.is_empty(),
        "{channel}: {} acknowledged Puts lost, e.g. {:#x?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
    let (&low, &high) = (seen.first()?, seen.last()?);
    for _ in 0..8 {
        let from = low + rng.next_u64() % (high - low + 1);
        let to = from + rng.next_u64() % 3000;
        let narrow = get_range(conn, channel, from, to, ReadFlags::default());
        let expected: Vec<(u64, Vec<u8>)> = all
            .iter()
            .filter(|(k, _)| (from..=to).contains(k))
            .cloned()
            .collect();
        assert_eq!(narrow, expected, "{channel}: {from:#x}..={to:#x}");
    }
    Some(high)
}

#[test]
fn reads_after_a_kill_mid_append_go_through_rebuilt_indexes() {
    let rounds = testkit::rounds_from_env("LOGFILES_INDEX_CRASH_ROUNDS", 2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("node.toml"),
        "[logfiles]\nfsync = \"always\"\nwrite_buffer_bytes = 4096\nmax_open_buckets = 4\n\
         max_open_buckets_per_channel = 2\nindex_interval_bytes = 4096\n",
    )
    .unwrap();
    let mut rng = XorShift::new(testkit::test_seed());
    const CHANNELS: [&str; 2] = ["ordered", "mixed"];
    let channels = CHANNELS;
    let mut acked: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); channels.len()];
    let mut start = FIRST_KEY;
    for round in 1..=rounds {
        let mut node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = channels
            .into_iter()
            .map(|channel| {
                let (addr, stop) = (node.addr, Arc::clone(&stop));
                std::thread::spawn(move || writer(addr, channel, (round, start), stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + rng.next_u64() % 500));
        node.child.kill().expect("SIGKILL");
        let _ = node.wait_exit();
        stop.store(true, Ordering::Relaxed);
        for ((set, handle), channel) in acked.iter_mut().zip(writers).zip(channels) {
            let got = handle.join().expect("writer thread");
            // Each round's kill must land after writes were acknowledged, or it tests nothing.
            assert!(
                !got.is_empty(),
                "{channel}: round {round} had no Put acknowledged"
            );
            set.extend(got);
        }

        let node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
        let mut conn = Conn::open(node.addr);
        // Credit frames are small writes: without this, Nagle holds each for a delayed ACK.
        conn.stream.set_nodelay(true).expect("nodelay");
        let data = dir.path().join("data");
        for (channel, acked) in channels.iter().zip(&acked) {
            assert!(
                acked.len() > 50,
                "{channel}: only {} Puts got through",
                acked.len()
            );
            let high = check_reads(&mut conn, channel, acked, &mut rng);
            if *channel == "ordered" {
                start = high.map_or(FIRST_KEY, |high| high + 1);
            }
            // The reads left an index that matches every bucket, and use it from now on.
            let inodes = indexes_match(&data.join(channel));
            check_reads(&mut conn, channel, acked, &mut rng);
            assert_eq!(
                indexes_match(&data.join(channel)),
                inodes,
                "{channel}: rebuilt again"
            );
        }
        // SIGKILL again: the next round starts on a directory with no clean shutdown.
        drop(node);
    }
    common::check_finds_clean(&dir.path().join("data"), &[]);
}
