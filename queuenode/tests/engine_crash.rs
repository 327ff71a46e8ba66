//! Crash test, sled style: the test binary re-runs itself as a child process (test `crash_child`
//! with `QUEUENODE_CRASH_CHILD` set) that pushes records carrying increasing counters, pops and
//! consumes some, commits the ring's header after runs of a few changes (as the node does before
//! its replies leave), and then prints each operation the commit acknowledged (`P n` for a push,
//! `D n` for a pop/ack). Once the child has acknowledged its first push (so its ring exists
//! and was synced), the parent kills it with SIGKILL at a random moment, reopens the ring and
//! checks: nothing was cut, the ring holds one consecutive run of counters, every acknowledged
//! push not acknowledged as consumed is there, nothing acknowledged as consumed is, and every
//! value is intact. Several rounds on the same file.
//!
//! Rounds: `QUEUENODE_CRASH_ROUNDS` (default 12; `scripts/crash-matrix.sh` runs more). The seed
//! is printed; `SWARM_TEST_SEED` replays it (the children's work is drawn from it too).

mod common;

use common::{XorShift, WAIT};
use queuenode::engine::ring::{Ring, RingError, SyncMode};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "QUEUENODE_CRASH_CHILD";
const CAPACITY_BYTES: u64 = 64 * 1024;
/// The child gives up on its own after this (in case the parent is gone).
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
/// The child commits the header after runs of 1 to this many operations; a kill may catch a
/// whole run done (some of it even committed, by a change of the other kind) but not printed.
const MAX_RUN_OPS: u64 = 8;
/// The most records one operation takes (a take of up to 5; a full ring pops 4).
const MAX_TAKEN: u64 = 5;

fn value_of(counter: u64) -> Vec<u8> {
    let len = 8 + (counter.wrapping_mul(7919) % 3000) as usize;
    let mut value = vec![(counter % 251) as u8; len];
    value[..8].copy_from_slice(&counter.to_le_bytes());
    value
}

fn counter_of(value: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&value[..8]);
    let counter = u64::from_le_bytes(bytes);
    assert_eq!(
        value,
        value_of(counter).as_slice(),
        "record {counter} damaged"
    );
    counter
}

/// The child's work loop: never returns normally before `CHILD_LIFETIME`. `spec` is
/// `path|first counter|seed`.
fn child_main(spec: &str) {
    let mut parts = spec.split('|');
    let path = Path::new(parts.next().expect("path"));
    let mut counter: u64 = parts.next().expect("start").parse().expect("start counter");
    let seed: u64 = parts.next().expect("seed").parse().expect("seed");
    let mut ring = if path.exists() {
        Ring::open(path, SyncMode::OnClose).expect("open").0
    } else {
        Ring::create(path, CAPACITY_BYTES, SyncMode::OnClose).expect("create")
    };
    let mut rng = XorShift::new(seed);
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    // What the child did since its last header commit: acknowledged (printed) only once the
    // commit made it hold, as the node replies only after `before_output` committed.
    let mut done: Vec<String> = Vec::new();
    let mut until_commit = 1 + rng.next_u64() % MAX_RUN_OPS;
    while started.elapsed() < CHILD_LIFETIME {
        let roll = rng.next_u64() % 100;
        if roll < 60 {
            match ring.push(&value_of(counter)) {
                Ok(_) => {
                    done.push(format!("P {counter}"));
                    counter += 1;
                }
                Err(RingError::Full { .. }) => {
                    for _ in 0..4 {
                        if let Some(value) = ring.pop().expect("pop") {
                            done.push(format!("D {}", counter_of(&value)));
                        }
                    }
                }
                Err(other) => panic!("{other}"),
            }
        } else if roll < 80 {
            if let Some(value) = ring.pop().expect("pop") {
                done.push(format!("D {}", counter_of(&value)));
            }
        } else if let Some((span, values)) = ring.take(1 + (rng.next_u64() % 5) as usize, 8000) {
            if roll < 95 {
                ring.ack(span).expect("ack");
                for value in values {
                    done.push(format!("D {}", counter_of(&value)));
                }
            } else {
                ring.give_back(span).expect("give back");
            }
        }
        until_commit -= 1;
        if until_commit == 0 {
            until_commit = 1 + rng.next_u64() % MAX_RUN_OPS;
            ring.commit_header();
            for line in done.drain(..) {
                writeln!(out, "{line}").expect("stdout");
            }
            out.flush().expect("stdout");
        }
    }
}

#[test]
fn crash_child() {
    // Does nothing in a normal run; it is the child process of the test below.
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

/// Runs one child from `next_counter` until it has acknowledged its first push, then for a
/// random while, and kills it with SIGKILL. Returns the lines it printed.
fn run_child_and_kill(
    path: &Path,
    next_counter: u64,
    round: u64,
    rng: &mut XorShift,
) -> Vec<String> {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(&exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{}|{next_counter}|{}", path.display(), rng.next_u64()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (first_push, pushed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("P ") && lines.iter().all(|l: &String| !l.starts_with("P ")) {
                let _ = first_push.send(());
            }
            lines.push(line);
        }
        lines
    });
    let started = pushed.recv_timeout(WAIT).is_ok();
    if started {
        std::thread::sleep(Duration::from_millis(40 + rng.below(400)));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
    let status = child.wait().expect("wait");
    let lines = reader.join().expect("reader");
    assert!(
        started,
        "round {round}: the child acknowledged no push within {WAIT:?} ({status}): {lines:?}"
    );
    lines
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let rounds = common::rounds_from_env("QUEUENODE_CRASH_ROUNDS", 12);
    let mut rng = XorShift::new(common::test_seed());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.ring");
    let mut next_counter = 0u64;
    let mut max_pushed: Option<u64> = None;
    let mut max_consumed: Option<u64> = None;
    let mut total_ops = 0usize;
    for round in 0..rounds {
        let lines = run_child_and_kill(&path, next_counter, round, &mut rng);
        let mut pushes = 0usize;
        for line in &lines {
            let (kind, n) = match line.split_once(' ') {
                Some((kind @ ("P" | "D"), n)) => (kind, n.parse::<u64>().expect("counter")),
                _ => continue,
            };
            total_ops += 1;
            let max = if kind == "P" {
                pushes += 1;
                &mut max_pushed
            } else {
                &mut max_consumed
            };
            *max = Some(max.map_or(n, |m| m.max(n)));
        }
        assert!(pushes >= 1, "round {round}: no acknowledged push");

        let (mut ring, cut) = Ring::open(&path, SyncMode::OnClose).expect("reopen after kill");
        assert_eq!(
            cut, 0,
            "round {round}: a process crash must leave no torn record"
        );
        let Some((span, values)) = ring.take(usize::MAX, u64::MAX) else {
            // Empty: everything acknowledged as pushed was consumed.
            assert!(max_pushed <= max_consumed.map(|d| d + MAX_RUN_OPS * MAX_TAKEN));
            next_counter = max_pushed.map_or(next_counter, |p| p + 1).max(next_counter);
            continue;
        };
        ring.give_back(span).expect("give back");
        let counters: Vec<u64> = values.iter().map(|v| counter_of(v)).collect();
        let (first, last) = (counters[0], counters[counters.len() - 1]);
        for pair in counters.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "round {round}: order or gap");
        }
        if let Some(d) = max_consumed {
            assert!(first > d, "round {round}: consumed record {d} served again");
            // At most one run's pops and acks consumed without a line.
            assert!(
                first - d <= 1 + MAX_RUN_OPS * MAX_TAKEN,
                "round {round}: records lost before {first}"
            );
        }
        if let Some(p) = max_pushed {
            assert!(
                last >= p,
                "round {round}: acknowledged push {p} lost (last {last})"
            );
            assert!(
                last <= p + MAX_RUN_OPS,
                "round {round}: unknown record {last}"
            );
        }
        next_counter = last + 1;
        drop(ring);
    }
    eprintln!(
        "crash test: {total_ops} acknowledged operations, last counter {next_counter}, \
         {rounds} kills"
    );
}
