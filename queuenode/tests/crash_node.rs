//! Whole-node crash test: a producer (pipelined Pushes) and a consumer (Consume + ConsumeAck)
//! run against the real `queuenode` binary while it is killed with SIGKILL at a random moment,
//! round after round on the same data directory; a final run drains what is left. Checks:
//!
//! - every push the node acknowledged (Ok) is delivered at least once;
//! - every delivered value is intact (each is a function of the counter it carries);
//! - per-channel order holds except for redeliveries: the values delivered for the first time
//!   come in push order;
//! - a record whose ConsumeAck the node confirmed is never delivered again.
//!
//! Rounds: 8 by default (a few seconds); `QUEUENODE_CRASH_ROUNDS=200` for a long run. Each kill
//! comes at a random moment after the round's first acknowledged push; the seed is printed, and
//! `SWARM_TEST_SEED` replays it.

mod common;

use node_core::protocol::batch::decode_batch;
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::queue::{self, ConsumeAckRequest, ConsumeRequest, PushRequest};
use node_core::protocol::{ControlCode, Status};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHANNEL: &str = "crash";
/// A 256 KiB ring: the values below wrap it many times per round.
const CONFIG: &str = "[queue]\nchannel_size_bytes = 262144\n";
const PIPELINE: usize = 16;

fn value_of(counter: u64) -> Vec<u8> {
    let len = 8 + (counter.wrapping_mul(7919) % 1500) as usize;
    let mut value = vec![(counter % 251) as u8; len];
    value[..8].copy_from_slice(&counter.to_le_bytes());
    value
}

/// The counter a value carries, if the value is intact.
fn counter_of(value: &[u8]) -> Option<u64> {
    let counter = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    (value == value_of(counter).as_slice()).then_some(counter)
}

/// Frames over a socket that may die at any moment: every failure is an `Err`, never a panic.
struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Wire {
    fn open(addr: SocketAddr) -> Wire {
        let conn = common::Conn::open(addr);
        conn.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Wire {
            stream: conn.stream,
            buffer: Vec::new(),
        }
    }

    fn send(&mut self, frames: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(frames)
    }

    /// The next frame: (type, code, request id, body).
    fn read(&mut self) -> std::io::Result<(FrameType, u8, u64, Vec<u8>)> {
        loop {
            let parsed = parse_frame(&self.buffer, u32::MAX)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(header) = parsed {
                let body = self.buffer[HEADER_LEN..header.frame_len()].to_vec();
                self.buffer.drain(..header.frame_len());
                return Ok((header.frame_type, header.code, header.request_id, body));
            }
            let mut chunk = [0u8; 65536];
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

/// What every round adds to.
#[derive(Default)]
struct Log {
    /// Counters whose Push was answered Ok.
    pushed: HashSet<u64>,
    /// Every delivery, in order (redeliveries included).
    delivered: Vec<u64>,
    /// Counters whose ConsumeAck was answered Ok.
    consumed: HashSet<u64>,
    problems: Vec<String>,
}

/// Pushes counters from `next` in pipelined windows until the connection dies.
fn produce(mut wire: Wire, next: Arc<AtomicU64>, log: Arc<Mutex<Log>>) {
    let mut id = 1u64;
    loop {
        let first = next.fetch_add(PIPELINE as u64, Ordering::SeqCst);
        let mut frames = Vec::new();
        let mut ids = BTreeMap::new();
        for counter in first..first + PIPELINE as u64 {
            let mut body = Vec::new();
            PushRequest {
                channel: CHANNEL,
                value: &value_of(counter),
            }
            .encode(&mut body);
            write_frame(&mut frames, FrameType::Request, queue::PUSH.0, id, &body);
            ids.insert(id, counter);
            id += 1;
        }
        if wire.send(&frames).is_err() {
            return;
        }
        let mut full = false;
        for _ in 0..PIPELINE {
            let Ok((_, code, reply_id, _)) = wire.read() else {
                return;
            };
            match Status::from_u8(code) {
                Some(Status::Ok) => {
                    if let Some(counter) = ids.get(&reply_id) {
                        log.lock().expect("log").pushed.insert(*counter);
                    }
                }
                Some(Status::ChannelFull) => full = true,
                other => {
                    let problem = format!("push answered {other:?}");
                    log.lock().expect("log").problems.push(problem);
                    return;
                }
            }
        }
        if full {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Consumes until the connection dies (or, with `quiet`, until nothing came for that long):
/// checks each value, acknowledges each batch and waits for the ack's reply.
fn consume(mut wire: Wire, log: Arc<Mutex<Log>>, quiet: Option<Duration>) {
    let consume_id = 1u64;
    if start_consume(&mut wire, consume_id).is_err() {
        return;
    }
    if let Some(quiet) = quiet {
        wire.stream.set_read_timeout(Some(quiet)).expect("timeout");
    }
    let mut done = 0u64;
    let mut next_id = 2u64;
    let mut scratch = Vec::new();
    loop {
        let Ok((frame_type, code, id, body)) = wire.read() else {
            return;
        };
        if id != consume_id || frame_type != FrameType::Item {
            let problem = format!("unexpected frame {frame_type:?} {code} for {id}");
            log.lock().expect("log").problems.push(problem);
            return;
        }
        let counters = log_batch(&mut log.lock().expect("log"), &body, &mut scratch);
        done += counters.len() as u64;
        let ack_id = next_id;
        next_id += 1;
        match acknowledge(&mut wire, consume_id, done, ack_id) {
            Ok(true) => log.lock().expect("log").consumed.extend(counters),
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

/// Sends a Consume of [`CHANNEL`] as request `consume_id`, with credit for a million batches.
fn start_consume(wire: &mut Wire, consume_id: u64) -> std::io::Result<()> {
    let mut body = Vec::new();
    ConsumeRequest {
        channel: CHANNEL,
        subscriber: "",
        max_batch_records: 0,
    }
    .encode(&mut body);
    let mut frames = Vec::new();
    write_frame(
        &mut frames,
        FrameType::Request,
        queue::CONSUME.0,
        consume_id,
        &body,
    );
    write_frame(
        &mut frames,
        FrameType::Control,
        ControlCode::Credit as u8,
        consume_id,
        &1_000_000u32.to_le_bytes(),
    );
    wire.send(&frames)
}

/// Logs the deliveries of one batch (and as problems: a damaged value, a batch that does not
/// decode, a record delivered again after its ack); returns the batch's counters.
fn log_batch(log: &mut Log, batch: &[u8], scratch: &mut Vec<u8>) -> Vec<u64> {
    let mut counters = Vec::new();
    match decode_batch(batch, scratch) {
        Ok(records) => {
            for (_, value) in records {
                match counter_of(value) {
                    Some(counter) => {
                        if log.consumed.contains(&counter) {
                            log.problems
                                .push(format!("{counter} delivered again after its ack"));
                        }
                        log.delivered.push(counter);
                        counters.push(counter);
                    }
                    None => log
                        .problems
                        .push(format!("damaged value of {} bytes delivered", value.len())),
                }
            }
        }
        Err(error) => log.problems.push(format!("bad batch: {error}")),
    }
    counters
}

/// Sends a ConsumeAck of `records` as request `ack_id` and waits for its reply: whether it was
/// Ok. Items of the stream that come before the reply are put back to be read next.
fn acknowledge(
    wire: &mut Wire,
    consume_id: u64,
    records: u64,
    ack_id: u64,
) -> std::io::Result<bool> {
    let mut body = Vec::new();
    ConsumeAckRequest {
        consume_id,
        records,
    }
    .encode(&mut body);
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        FrameType::Request,
        queue::CONSUME_ACK.0,
        ack_id,
        &body,
    );
    wire.send(&frame)?;
    // Items of the stream may come before the ack's reply: they are taken in the next
    // rounds of the consume loop only after the reply, so keep them.
    let mut early = Vec::new();
    let acked = loop {
        let frame = wire.read()?;
        if frame.2 == ack_id {
            break Status::from_u8(frame.1) == Some(Status::Ok);
        }
        early.push(frame);
    };
    // Put the early frames back in front of the unread bytes.
    let mut again = Vec::new();
    for (frame_type, code, id, body) in early {
        write_frame(&mut again, frame_type, code, id, &body);
    }
    again.extend_from_slice(&wire.buffer);
    wire.buffer = again;
    Ok(acked)
}

/// Round `round`: a node on `dir`, a producer and a consumer, and a SIGKILL `kill_after_ms`
/// after the round's first acknowledged push; returns once both threads ended.
fn kill_round(
    round: u64,
    dir: &std::path::Path,
    log: &Arc<Mutex<Log>>,
    next: &Arc<AtomicU64>,
    kill_after_ms: u64,
) {
    let mut node = common::Node::start_in(common::BIN, dir, &["-c", "node.toml"]);
    let pushed_before = log.lock().expect("log").pushed.len();
    let producer = {
        let (wire, next, log) = (Wire::open(node.addr), next.clone(), log.clone());
        std::thread::spawn(move || produce(wire, next, log))
    };
    let consumer = {
        let (wire, log) = (Wire::open(node.addr), log.clone());
        std::thread::spawn(move || consume(wire, log, None))
    };
    // A random moment once the round has an acknowledged push.
    common::wait_until("the round's first acknowledged push", || {
        log.lock().expect("log").pushed.len() > pushed_before
    });
    std::thread::sleep(Duration::from_millis(kill_after_ms));
    node.signal("KILL");
    assert_eq!(node.wait_exit().code(), None, "round {round}: killed");
    producer.join().expect("producer thread");
    consumer.join().expect("consumer thread");
}

/// [`CHANNEL`]'s size, asked on a fresh connection.
fn channel_size(addr: SocketAddr) -> queue::QueueSize {
    let mut wire = Wire::open(addr);
    let mut frame = Vec::new();
    let mut body = Vec::new();
    queue::encode_channel(&mut body, CHANNEL);
    write_frame(
        &mut frame,
        FrameType::Request,
        queue::GET_CHANNEL_SIZE.0,
        1,
        &body,
    );
    wire.send(&frame).expect("send");
    let (_, code, _, body) = wire.read().expect("size reply");
    assert_eq!(Status::from_u8(code), Some(Status::Ok));
    queue::QueueSize::decode(&body).expect("size")
}

#[test]
fn acknowledged_records_survive_kill_9_under_load_in_order_and_intact() {
    let rounds = common::rounds_from_env("QUEUENODE_CRASH_ROUNDS", 8);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("node.toml"), CONFIG).expect("config");
    let log = Arc::new(Mutex::new(Log::default()));
    let next = Arc::new(AtomicU64::new(0));
    let seed = common::test_seed();
    let mut rng = common::XorShift::new(seed);
    for round in 0..rounds {
        kill_round(round, dir.path(), &log, &next, rng.below(600));
        let log = log.lock().expect("log");
        assert!(
            log.problems.is_empty(),
            "round {round} (seed {seed}): {:?}",
            log.problems
        );
    }
    // Drain what is left.
    let node = common::Node::start_in(common::BIN, dir.path(), &["-c", "node.toml"]);
    let started = Instant::now();
    consume(
        Wire::open(node.addr),
        log.clone(),
        Some(Duration::from_millis(500)),
    );
    let size = channel_size(node.addr);
    node.stop();

    let log = log.lock().expect("log");
    assert!(log.problems.is_empty(), "seed {seed}: {:?}", log.problems);
    assert_eq!(size.records, 0, "drained in {:?}", started.elapsed());
    let delivered: HashSet<u64> = log.delivered.iter().copied().collect();
    let lost: Vec<&u64> = log
        .pushed
        .iter()
        .filter(|counter| !delivered.contains(counter))
        .take(10)
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged pushes never delivered: {lost:?}"
    );
    let mut seen = HashSet::new();
    let mut last_first = None;
    for &counter in &log.delivered {
        if seen.insert(counter) {
            assert!(
                last_first < Some(counter),
                "seed {seed}: {counter} delivered for the first time after {last_first:?}"
            );
            last_first = Some(counter);
        }
    }
    let redelivered = log.delivered.len() - seen.len();
    eprintln!(
        "{rounds} rounds: {} pushes acknowledged, {} deliveries ({redelivered} repeated)",
        log.pushed.len(),
        log.delivered.len()
    );
}
