//! Crash tests of the change log (issue #18): the real `dhtnode` takes Put / Remove / Update /
//! PutBatch / PutVersion / RemoveVersion from several pipelining writers, each on its own channel, and is killed with
//! SIGKILL at a random moment; restarted on the same data directory, it must hold, for every
//! key, the value of its last acknowledged change or of a change sent after it (one that was
//! in flight), never an older one and never a key nobody wrote. Dumps run every second, a
//! 16 MB ballast channel makes each take a while, and the log is small (1 MiB: segments of
//! 128 KiB, early dumps, covered segments deleted), so kills land during dumps (counted and
//! printed), rotations and deletions; some rounds also kill the node while it loads its dumps
//! and replays the log. The ballast must come back whole at the end.
//!
//! Rounds: `DHT_LOG_CRASH_ROUNDS` (default 20 under "always", a quarter of that under
//! "interval"; `scripts/crash-matrix.sh` runs at least 100). The seed is
//! printed, and `SWARM_TEST_SEED` replays it (docs/testing.md).

mod common;

use client::{Client, ClientOptions};
use common::{Conn, Node, XorShift, BIN};
use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::dht::{
    self, encode_put_batch, value_hash, Expected, KeyRequest, PutRequest, PutVersionRequest,
    RemoveVersionRequest, UpdateAction, UpdateRequest,
};
use node_core::protocol::{NodeKind, RequestCode, Status};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WRITERS: u64 = 3;
/// Keys each writer works on (its own, in its own channel).
const KEYS: u64 = 64;
/// Requests each writer keeps in flight.
const WINDOW: usize = 32;
/// A channel written once before the rounds, large enough (16 MB of values LZ4 cannot shrink)
/// that a dump takes a while: kills land during dumps.
const BALLAST: &str = "ballast";
const BALLAST_KEYS: u64 = 8000;
const BALLAST_VALUE_BYTES: usize = 2048;

fn channel_of(writer: u64) -> String {
    format!("crash{writer}")
}

/// A key's state: its value, or None (absent).
type State = Option<Vec<u8>>;

/// One request a writer sent: its body, and the state of each key it touches afterwards.
struct Sent {
    code: RequestCode,
    body: Vec<u8>,
    after: Vec<(u64, State)>,
}

/// What the writers of a round share.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    acknowledged: AtomicU64,
}

/// A value of its own for (round, writer, op), 8 to 300 bytes.
fn value_for(round: u64, writer: u64, op: u64) -> Vec<u8> {
    let len = 8 + ((round * 31 + writer * 7 + op * 13) % 293) as usize;
    let mut value = format!("{round}/{writer}/{op}/").into_bytes();
    value.resize(len.max(value.len()), b'a' + (op % 26) as u8);
    value
}

/// The next request of a writer whose keys are in `model` (after every request sent so far).
fn next_request(
    rng: &mut XorShift,
    channel: &str,
    model: &BTreeMap<u64, State>,
    value: Vec<u8>,
) -> Sent {
    let key = rng.below(KEYS);
    let mut body = Vec::new();
    let current = model.get(&key).cloned().flatten();
    match rng.below(6) {
        4 | 5 => versioned_request(rng.below(2) == 0, channel, key, value),
        0 => {
            PutRequest {
                channel,
                key,
                value: &value,
            }
            .encode(&mut body);
            Sent {
                code: dht::PUT,
                body,
                after: vec![(key, Some(value))],
            }
        }
        1 if current.is_some() => {
            KeyRequest { channel, key }.encode(&mut body);
            Sent {
                code: dht::REMOVE,
                body,
                after: vec![(key, None)],
            }
        }
        2 => {
            // Compare-and-swap against what this writer's own changes left (it alone writes
            // its keys, and a connection's requests are applied in order).
            let expected = current
                .as_deref()
                .map_or(Expected::Absent, |v| Expected::Hash(value_hash(v)));
            let remove = current.is_some() && rng.below(3) == 0;
            let action = if remove {
                UpdateAction::Remove
            } else {
                UpdateAction::Write(&value)
            };
            UpdateRequest {
                channel,
                key,
                expected,
                action,
            }
            .encode(&mut body);
            let after = if remove { None } else { Some(value.clone()) };
            Sent {
                code: dht::UPDATE,
                body,
                after: vec![(key, after)],
            }
        }
        _ => batch_request(rng, channel, key, value),
    }
}

/// A PutBatch of 1 to 8 keys from `key` on.
fn batch_request(rng: &mut XorShift, channel: &str, key: u64, value: Vec<u8>) -> Sent {
    let count = 1 + rng.below(8);
    let mut raw = Vec::new();
    let mut after = Vec::new();
    for i in 0..count {
        let key = (key + i * 7) % KEYS;
        let mut value = value.clone();
        value.extend_from_slice(format!("#{i}").as_bytes());
        append_record(&mut raw, key, &value);
        after.push((key, Some(value)));
    }
    let mut batch = Vec::new();
    encode_batch(&raw, count as u32, &mut batch);
    let mut body = Vec::new();
    encode_put_batch(&mut body, channel, &batch);
    Sent {
        code: dht::PUT_BATCH,
        body,
        after,
    }
}

/// The last version a writer used: one counter for the whole test, so versions only grow, across
/// writers and rounds (each writer's keys are its own, so every versioned write applies).
static LAST_VERSION: AtomicU64 = AtomicU64::new(0);

/// A PutVersion of `value`, or (`remove`) a RemoveVersion, with a version above every earlier
/// one (issue #19: their change-log entries replay after the kill like the others).
fn versioned_request(remove: bool, channel: &str, key: u64, value: Vec<u8>) -> Sent {
    let version = LAST_VERSION.fetch_add(1, Ordering::Relaxed) + 1;
    let mut body = Vec::new();
    if remove {
        RemoveVersionRequest {
            channel,
            key,
            version,
        }
        .encode(&mut body);
        return Sent {
            code: dht::REMOVE_VERSION,
            body,
            after: vec![(key, None)],
        };
    }
    PutVersionRequest {
        channel,
        key,
        version,
        value: &value,
    }
    .encode(&mut body);
    Sent {
        code: dht::PUT_VERSION,
        body,
        after: vec![(key, Some(value))],
    }
}

/// Sends requests until the node dies (or `stop`). Returns every request sent, in order, and
/// whether each was acknowledged (answered Ok).
fn writer(
    addr: std::net::SocketAddr,
    round: u64,
    id: u64,
    mut model: BTreeMap<u64, State>,
    seed: u64,
    shared: Arc<Shared>,
) -> Vec<(Sent, bool)> {
    let options = ClientOptions {
        request_timeout_ms: 10_000,
        ..ClientOptions::default()
    };
    let Ok(client) = Client::connect(&[addr], Some(NodeKind::Dht), options) else {
        return Vec::new();
    };
    let mut rng = XorShift::new(seed);
    let channel = channel_of(id);
    let mut done = Vec::new();
    let mut in_flight = VecDeque::new();
    let settle = |sent: Sent, pending: client::Pending, done: &mut Vec<(Sent, bool)>| {
        let ok = matches!(pending.wait(), Ok(reply) if reply.status == Status::Ok);
        if ok {
            shared.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        done.push((sent, ok));
        ok
    };
    for op in 0.. {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        let sent = next_request(&mut rng, &channel, &model, value_for(round, id, op));
        for (key, state) in &sent.after {
            model.insert(*key, state.clone());
        }
        match client.submit_owned(0, sent.code, sent.body.clone()) {
            Ok(pending) => in_flight.push_back((sent, pending)),
            Err(_) => break,
        }
        if in_flight.len() >= WINDOW {
            let Some((sent, pending)) = in_flight.pop_front() else {
                break;
            };
            if !settle(sent, pending, &mut done) {
                break;
            }
        }
    }
    for (sent, pending) in in_flight {
        settle(sent, pending, &mut done);
    }
    done
}

/// Every key's state in a writer's channel, read back.
fn read_channel(conn: &mut Conn, channel: &str) -> BTreeMap<u64, State> {
    let requests: Vec<(RequestCode, Vec<u8>)> = (0..KEYS)
        .map(|key| {
            let mut body = Vec::new();
            KeyRequest { channel, key }.encode(&mut body);
            (dht::GET, body)
        })
        .collect();
    (0..KEYS)
        .zip(conn.pipeline(&requests))
        .map(|(key, (status, value))| match status {
            Status::Ok => (key, Some(value)),
            Status::NotFound => (key, None),
            other => panic!("Get of key {key} in {channel}: {other:?}"),
        })
        .collect()
}

/// Checks a writer's channel after the restart against what it sent: each key holds the state
/// of its last acknowledged change or of a later one. Returns the states found (the model of
/// the next round) and how many changes after the last acknowledged one made it.
fn check_writer(
    round: u64,
    channel: &str,
    before: &BTreeMap<u64, State>,
    sent: &[(Sent, bool)],
    found: &BTreeMap<u64, State>,
) -> u64 {
    let mut unacked_survivors = 0;
    for key in 0..KEYS {
        // The states this key may hold: from its last acknowledged change on.
        let mut allowed: Vec<&State> = vec![before.get(&key).unwrap_or(&None)];
        for (request, acknowledged) in sent {
            for (k, state) in &request.after {
                if *k != key {
                    continue;
                }
                if *acknowledged {
                    allowed.clear();
                }
                allowed.push(state);
            }
        }
        let state = found.get(&key).unwrap_or(&None);
        let index = allowed.iter().position(|s| *s == state);
        assert!(
            index.is_some(),
            "round {round}: key {key} of {channel} holds {:?}, which is not its last \
             acknowledged state {:?} nor a later one ({} candidates)",
            state
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            allowed[0]
                .as_ref()
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            allowed.len()
        );
        if index.is_some_and(|i| i > 0) {
            unacked_survivors += 1;
        }
    }
    unacked_survivors
}

/// Writes the ballast channel (PutBatch, 100 records a batch).
fn write_ballast(conn: &mut Conn) {
    let requests: Vec<(RequestCode, Vec<u8>)> = (0..BALLAST_KEYS)
        .step_by(100)
        .map(|first| {
            let mut raw = Vec::new();
            for key in first..first + 100 {
                append_record(
                    &mut raw,
                    key,
                    &common::random_value(key, BALLAST_VALUE_BYTES),
                );
            }
            let (mut batch, mut body) = (Vec::new(), Vec::new());
            encode_batch(&raw, 100, &mut batch);
            encode_put_batch(&mut body, BALLAST, &batch);
            (dht::PUT_BATCH, body)
        })
        .collect();
    for (status, _) in conn.pipeline(&requests) {
        assert_eq!(status, Status::Ok, "ballast PutBatch");
    }
}

fn assert_ballast_intact(conn: &mut Conn) {
    let keys: Vec<u64> = (0..BALLAST_KEYS).collect();
    for (key, (status, value)) in keys.iter().zip(common::get_pipelined(conn, BALLAST, &keys)) {
        assert_eq!(status, Status::Ok, "ballast key {key}");
        assert!(
            value == common::random_value(*key, BALLAST_VALUE_BYTES),
            "ballast key {key}"
        );
    }
}

/// Whether the node's last run was killed while a dump cycle ran: its root.log's last "dump
/// cycle started" comes after its last "dump cycle done".
fn killed_mid_dump(root_log: &str) -> bool {
    let run = root_log.rsplit("listening on").next().unwrap_or_default();
    match (
        run.rfind("dump cycle started"),
        run.rfind("dump cycle done"),
    ) {
        (Some(started), Some(done)) => started > done,
        (Some(_), None) => true,
        _ => false,
    }
}

fn write_config(dir: &Path, durability: &str) {
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "[dht]\ndurability = \"{durability}\"\ndurability_interval_ms = 50\n\
             dump_period_s = 1\nmax_log_bytes = 1048576\n"
        ),
    )
    .unwrap();
}

/// Runs `rounds` crash rounds under `durability`; returns (changes acknowledged, kills during a
/// dump cycle).
fn crash_rounds(durability: &str, rounds: u64) -> (u64, u64) {
    let seed = testkit::test_seed();
    let mut rng = XorShift::new(seed);
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), durability);
    let mut models: Vec<BTreeMap<u64, State>> = vec![BTreeMap::new(); WRITERS as usize];
    let (mut acknowledged, mut survivors, mut mid_dump) = (0, 0, 0);
    let mut node = Node::start_in(BIN, dir.path(), &["-c", "node.toml"]);
    write_ballast(&mut Conn::open(node.addr));
    for round in 1..=rounds {
        let shared = Arc::new(Shared::default());
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (addr, shared) = (node.addr, Arc::clone(&shared));
                let model = models[id as usize].clone();
                let seed = rng.next_u64();
                std::thread::spawn(move || writer(addr, round, id, model, seed, shared))
            })
            .collect();
        common::wait_until("the round's first acknowledged change", || {
            shared.acknowledged.load(Ordering::Relaxed) > 0
        });
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        node.child.kill().expect("SIGKILL");
        assert_eq!(node.wait_exit().code(), None, "round {round}: SIGKILL");
        mid_dump += u64::from(killed_mid_dump(&node.root_log()));
        shared.stop.store(true, Ordering::Relaxed);
        let sent: Vec<Vec<(Sent, bool)>> = writers
            .into_iter()
            .map(|handle| handle.join().expect("writer thread"))
            .collect();
        if round % 4 == 0 {
            // A kill while the node loads its dumps and replays the log.
            node.restart();
            std::thread::sleep(Duration::from_millis(rng.below(30)));
            node.kill9();
        }
        node.restart();
        let mut conn = Conn::open(node.addr);
        for (id, sent) in sent.iter().enumerate() {
            let channel = channel_of(id as u64);
            let found = read_channel(&mut conn, &channel);
            survivors += check_writer(round, &channel, &models[id], sent, &found);
            acknowledged += sent.iter().filter(|(_, ok)| *ok).count() as u64;
            models[id] = found;
        }
    }
    assert_ballast_intact(&mut Conn::open(node.addr));
    node.stop();
    eprintln!(
        "durability {durability}: {rounds} rounds (seed {seed:#x}), {mid_dump} kills during a \
         dump cycle, {acknowledged} changes acknowledged, none lost; {survivors} keys hold a \
         change sent after their last acknowledged one"
    );
    (acknowledged, mid_dump)
}

#[test]
fn every_change_acknowledged_under_always_survives_sigkill() {
    let rounds = testkit::rounds_from_env("DHT_LOG_CRASH_ROUNDS", 20);
    let (acknowledged, mid_dump) = crash_rounds("always", rounds);
    assert!(acknowledged > 0);
    // Most kills land during a dump (about 6 in 10 here): none in 10 would mean the test no
    // longer tests that.
    if rounds >= 10 {
        assert!(
            mid_dump > 0,
            "no kill landed during a dump in {rounds} rounds"
        );
    }
}

/// Under "interval" a reply leaves once its change is written to the log (not fsynced): a
/// process crash loses nothing (the page cache survives it), so the loss measured here must be
/// zero; a machine crash could lose at most the last `durability_interval_ms` of changes,
/// which a process test cannot produce.
#[test]
fn a_sigkill_under_interval_loses_no_acknowledged_change() {
    let rounds = testkit::rounds_from_env("DHT_LOG_CRASH_ROUNDS", 20).div_ceil(4);
    let (acknowledged, _) = crash_rounds("interval", rounds);
    eprintln!("durability interval: lost 0 of {acknowledged} acknowledged changes to SIGKILL");
    assert!(acknowledged > 0);
}
