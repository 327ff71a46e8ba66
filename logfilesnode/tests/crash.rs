//! Crash test: the real `logfilesnode` (fsync = always) takes Puts from several pipelining
//! writers and is killed with SIGKILL at a random moment; restarted on the same data directory,
//! it must hold every Put it acknowledged, each value intact, no key twice, and the directory
//! must check clean. Many rounds on one directory.
//!
//! Rounds: `LOGFILES_CRASH_ROUNDS` (default 6, a few seconds; `scripts/crash-matrix.sh` runs
//! more). The kill comes at a random moment after the first acknowledged Put of the round; the
//! seed is printed, and `SWARM_TEST_SEED` replays it.

mod common;

use client::{Client, ClientOptions};
use node_core::protocol::logfiles::{self, PutRequest};
use node_core::protocol::{NodeKind, Status};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testkit::{wait_until, Conn, Node, XorShift};

const BIN: &str = env!("CARGO_BIN_EXE_logfilesnode");
const CHANNEL: &str = "crash";
const WRITERS: u64 = 3;
/// Puts each writer keeps in flight.
const WINDOW: usize = 64;

/// A key unique to (round, writer, sequence), moving through buckets like timestamps do.
fn key_of(round: u64, writer: u64, seq: u64) -> u64 {
    (round << 40) | (writer << 36) | (seq * 97)
}

fn value_of(key: u64) -> Vec<u8> {
    let len = 4 + (key.wrapping_mul(2_654_435_761) % 600) as usize;
    let mut value = format!("{key:016x}").into_bytes();
    value.resize(16 + len, b'a' + (key % 26) as u8);
    value
}

/// What the writers of a round share: `stop`, and the count of Puts answered Ok so far.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    acknowledged: AtomicU64,
}

/// Writes until the node dies (or `stop`); returns the keys whose Put was answered Ok.
fn writer(addr: std::net::SocketAddr, round: u64, id: u64, shared: Arc<Shared>) -> Vec<u64> {
    let options = ClientOptions {
        request_timeout_ms: 5_000,
        ..ClientOptions::default()
    };
    let Ok(client) = Client::connect(&[addr], Some(NodeKind::Logfiles), options) else {
        return Vec::new();
    };
    let mut acked = Vec::new();
    let mut in_flight = std::collections::VecDeque::new();
    for seq in 0.. {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let key = key_of(round, id, seq);
        let mut body = Vec::new();
        PutRequest {
            channel: CHANNEL,
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
                Ok(reply) if reply.status == Status::Ok => {
                    acked.push(key);
                    shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
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

fn read_all(addr: std::net::SocketAddr) -> Vec<(u64, Vec<u8>)> {
    testkit::logfiles_get_all(&mut Conn::open(addr), CHANNEL)
}

fn check_everything_acknowledged_is_there(dir: &Path, acked: &[u64]) {
    let node = Node::start_in(BIN, dir, &["-c", "node.toml"]);
    let records = read_all(node.addr);
    let mut seen = HashMap::new();
    for (key, value) in &records {
        assert_eq!(value, &value_of(*key), "record {key:#x} is damaged");
        assert!(seen.insert(*key, ()).is_none(), "key {key:#x} stored twice");
    }
    let missing: Vec<_> = acked.iter().filter(|k| !seen.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged Puts lost, e.g. {:#x?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    node.stop();
}

#[test]
fn every_put_acknowledged_under_fsync_always_survives_sigkill() {
    let rounds = testkit::rounds_from_env("LOGFILES_CRASH_ROUNDS", 6);
    let mut rng = XorShift::new(testkit::test_seed());
    let dir = tempfile::tempdir().unwrap();
    // Small buffers and few open buckets: writes, evictions and commits happen all the time.
    std::fs::write(
        dir.path().join("node.toml"),
        "[logfiles]\nfsync = \"always\"\nwrite_buffer_bytes = 4096\nmax_open_buckets = 4\n\
         max_open_buckets_per_channel = 2\n",
    )
    .unwrap();
    let mut all_acked = Vec::new();
    for round in 1..=rounds {
        let mut node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
        let shared = Arc::new(Shared::default());
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let addr = node.addr;
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || writer(addr, round, id, shared))
            })
            .collect();
        // A random moment once the writers are through: at least one Put acknowledged.
        wait_until("the round's first acknowledged Put", || {
            shared.acknowledged.load(Ordering::Relaxed) > 0
        });
        std::thread::sleep(Duration::from_millis(rng.below(500)));
        node.child.kill().expect("SIGKILL");
        assert_eq!(
            node.wait_exit().code(),
            None,
            "round {round}: killed by SIGKILL"
        );
        shared.stop.store(true, Ordering::Relaxed);
        let mut round_acked = Vec::new();
        for handle in writers {
            round_acked.extend(handle.join().expect("writer thread"));
        }
        assert!(
            !round_acked.is_empty(),
            "round {round}: no Put acknowledged"
        );
        all_acked.extend(round_acked);
        check_everything_acknowledged_is_there(dir.path(), &all_acked);
    }
    eprintln!("{rounds} rounds, {} Puts acknowledged", all_acked.len());
    common::check_finds_clean(&dir.path().join("data"), &[]);
}
