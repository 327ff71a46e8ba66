//! Crash test, sled style: the test binary re-runs itself as a child process (test `crash_child`
//! with `QUEUENODE_CRASH_CHILD` set) that pushes records carrying increasing counters, pops and
//! consumes some, and prints each acknowledged operation (`P n` after a push returned, `D n`
//! after a pop/ack returned). The parent kills it with SIGKILL at a random moment, reopens the
//! ring and checks: nothing was cut, the ring holds one consecutive run of counters, every
//! acknowledged push not acknowledged as consumed is there, nothing acknowledged as consumed is,
//! and every value is intact. Several rounds on the same file; well under 20 s in total.

use queuenode::engine::ring::{Ring, RingError, SyncMode};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "QUEUENODE_CRASH_CHILD";
const CAPACITY_BYTES: u64 = 64 * 1024;
const ROUNDS: u64 = 12;
/// The child gives up on its own after this (in case the parent is gone).
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

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

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1
}

/// The child's work loop: never returns normally before `CHILD_LIFETIME`.
fn child_main(spec: &str) {
    let mut parts = spec.split('|');
    let path = Path::new(parts.next().expect("path"));
    let mut counter: u64 = parts.next().expect("start").parse().expect("start counter");
    let mut ring = if path.exists() {
        Ring::open(path, SyncMode::OnClose).expect("open").0
    } else {
        Ring::create(path, CAPACITY_BYTES, SyncMode::OnClose).expect("create")
    };
    let mut rng = XorShift(seed());
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    while started.elapsed() < CHILD_LIFETIME {
        let roll = rng.next() % 100;
        if roll < 60 {
            match ring.push(&value_of(counter)) {
                Ok(_) => {
                    writeln!(out, "P {counter}").expect("stdout");
                    out.flush().expect("stdout");
                    counter += 1;
                }
                Err(RingError::Full { .. }) => {
                    for _ in 0..4 {
                        if let Some(value) = ring.pop().expect("pop") {
                            writeln!(out, "D {}", counter_of(&value)).expect("stdout");
                            out.flush().expect("stdout");
                        }
                    }
                }
                Err(other) => panic!("{other}"),
            }
        } else if roll < 80 {
            if let Some(value) = ring.pop().expect("pop") {
                writeln!(out, "D {}", counter_of(&value)).expect("stdout");
                out.flush().expect("stdout");
            }
        } else if let Some((span, values)) = ring.take(1 + (rng.next() % 5) as usize, 8000) {
            if roll < 95 {
                ring.ack(span).expect("ack");
                for value in values {
                    writeln!(out, "D {}", counter_of(&value)).expect("stdout");
                }
                out.flush().expect("stdout");
            } else {
                ring.give_back(span).expect("give back");
            }
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

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.ring");
    let exe = std::env::current_exe().expect("current exe");
    let mut rng = XorShift(seed());
    let mut next_counter = 0u64;
    let mut max_pushed: Option<u64> = None;
    let mut max_consumed: Option<u64> = None;
    let mut total_ops = 0usize;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{}|{next_counter}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(40 + rng.next() % 400));
        child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix
        child.wait().expect("wait");
        let lines = reader.join().expect("reader");
        for line in &lines {
            let (kind, n) = match line.split_once(' ') {
                Some((kind @ ("P" | "D"), n)) => (kind, n.parse::<u64>().expect("counter")),
                _ => continue,
            };
            total_ops += 1;
            let max = if kind == "P" {
                &mut max_pushed
            } else {
                &mut max_consumed
            };
            *max = Some(max.map_or(n, |m| m.max(n)));
        }

        let (mut ring, cut) = Ring::open(&path, SyncMode::OnClose).expect("reopen after kill");
        assert_eq!(
            cut, 0,
            "round {round}: a process crash must leave no torn record"
        );
        let Some((span, values)) = ring.take(usize::MAX, u64::MAX) else {
            // Empty: everything acknowledged as pushed was consumed.
            assert!(max_pushed <= max_consumed.map(|d| d + 5));
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
            // At most one interrupted pop/ack batch (≤ 5 records) consumed without a line.
            assert!(first - d <= 6, "round {round}: records lost before {first}");
        }
        if let Some(p) = max_pushed {
            assert!(
                last >= p,
                "round {round}: acknowledged push {p} lost (last {last})"
            );
            assert!(last <= p + 1, "round {round}: unknown record {last}");
        }
        next_counter = last + 1;
        drop(ring);
    }
    eprintln!("crash test: {total_ops} acknowledged operations, last counter {next_counter}, {ROUNDS} kills");
    assert!(
        total_ops > 1000,
        "only {total_ops} operations in {ROUNDS} rounds"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
