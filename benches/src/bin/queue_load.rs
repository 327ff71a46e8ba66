//! queue_load: throughput of a queue node's Push, Pop and Consume, for `docs/benchmarks.md`
//! (the counterpart of `redis-benchmark -t lpush,rpop`).
//!
//! One mio event loop drives every connection. `push` and `pop`: each of `-c` connections writes
//! `-P` requests at once and writes the next `-P` when all their replies are in (what
//! `redis-benchmark -P` does), until `--count` requests were answered; every request is timed
//! send → reply in an HDR histogram. `consume`: `--consumers` Consume streams read `--count`
//! records (pushed before, e.g. by a `push` run), acknowledging each batch as it arrives, as the
//! client library does.
//!
//! A push refused with ChannelFull, or a pop that found the channel empty, counts as done but is
//! reported apart (`refused`): size the ring for the run (`channel_size_bytes`).
//!
//!     queue_load --addr 127.0.0.1:12000 --mode push -c 50 -P 16 -d 100 --count 2000000
//!     queue_load --addr 127.0.0.1:12000 --mode pop -c 50 -P 16 --count 2000000

use benches::sys::{self, CpuTimes};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::frame::{parse_frame, write_frame};
use node_core::protocol::queue::{self, ConsumeAckRequest, ConsumeRequest, PushRequest};
use node_core::protocol::{ControlCode, FrameType, NodeKind, RequestCode, Status, HEADER_LEN};
use serde_json::json;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Most frames buffered per read.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "queue_load",
    about = "Push/Pop/Consume throughput of a queue node"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:12000")]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value_t = Mode::Push)]
    mode: Mode,
    /// Connections (push, pop).
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Requests written at once per connection (push, pop), 1 to 4096.
    #[arg(short = 'P', long, default_value_t = 16)]
    pipeline: usize,
    /// Value size in bytes (push).
    #[arg(short = 'd', long, default_value_t = 100)]
    value_size: usize,
    /// Requests (push, pop) or records (consume) in the run.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Consume streams (consume), each on its own connection.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Also report this process's (the node's) CPU time and RSS over the run.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    json: Option<PathBuf>,
    /// Fail the run if it is not done by then.
    #[arg(long, default_value_t = 600.0)]
    timeout_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Push,
    Pop,
    Consume,
}

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    /// Requests of the current batch not yet answered, and when the batch went out.
    in_flight: usize,
    sent_at: Instant,
    next_id: u64,
    /// Consume: the stream's request id and the records received.
    consume_id: u64,
    received: u64,
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut stream =
        std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    benches::handshake::swarm_handshake(&mut stream, NodeKind::Queue, "queue_load")?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(TcpStream::from_std(stream))
}

/// What a run measured.
struct Outcome {
    done: u64,
    refused: u64,
    elapsed: Duration,
    latency: Option<Histogram<u64>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(1..=4096).contains(&args.pipeline) || args.connections == 0 || args.consumers == 0 {
        eprintln!("queue_load: -P must be 1 to 4096, -c and --consumers at least 1");
        return ExitCode::from(2);
    }
    if !queue::valid_channel_name(&args.channel) {
        eprintln!("queue_load: bad channel name {:?}", args.channel);
        return ExitCode::from(2);
    }
    let server_before = args.server_pid.and_then(sys::pid_cpu);
    let self_before = sys::self_cpu();
    let outcome = match run(&args) {
        Ok(outcome) => outcome,
        Err(error) => {
            eprintln!("queue_load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let self_cpu = sys::self_cpu().since(&self_before);
    let server_cpu: Option<CpuTimes> = args
        .server_pid
        .and_then(sys::pid_cpu)
        .zip(server_before)
        .map(|(after, before)| after.since(&before));
    let server_rss = args.server_pid.and_then(sys::pid_rss);
    match report(&args, &outcome, self_cpu, server_cpu, server_rss) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("queue_load: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the run's line, and writes its JSON report to `--json` if given.
fn report(
    args: &Args,
    outcome: &Outcome,
    self_cpu: CpuTimes,
    server_cpu: Option<CpuTimes>,
    server_rss: Option<u64>,
) -> Result<(), String> {
    let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
    let rate = outcome.done as f64 / seconds;
    let percentile = |q: f64| outcome.latency.as_ref().map(|h| h.value_at_quantile(q));
    let share = |cpu: CpuTimes| cpu.total().as_secs_f64() / seconds;
    println!(
        "{:?}: {} in {:.2} s = {:.0} ops/s ({} refused); p50 {:?} µs, p99 {:?} µs, p99.9 {:?} µs; \
         generator CPU {:.0}%{}",
        args.mode,
        outcome.done,
        seconds,
        rate,
        outcome.refused,
        percentile(0.5),
        percentile(0.99),
        percentile(0.999),
        share(self_cpu) * 100.0,
        server_cpu.map_or(String::new(), |cpu| format!(
            ", node CPU {:.0}%, node RSS {} MiB",
            share(cpu) * 100.0,
            server_rss.unwrap_or(0) >> 20
        )),
    );
    let Some(path) = &args.json else {
        return Ok(());
    };
    let report = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "connections": args.connections,
        "pipeline": args.pipeline,
        "value_size": args.value_size,
        "consumers": args.consumers,
        "done": outcome.done,
        "refused": outcome.refused,
        "seconds": seconds,
        "ops_per_s": rate,
        "p50_us": percentile(0.5),
        "p99_us": percentile(0.99),
        "p999_us": percentile(0.999),
        "generator_cpu": share(self_cpu),
        "server_cpu": server_cpu.map(share),
        "server_rss": server_rss,
    });
    std::fs::write(path, report.to_string()).map_err(|error| format!("{}: {error}", path.display()))
}

/// What the run counts as the replies and records come in.
struct Tally {
    done: u64,
    refused: u64,
    latency: Histogram<u64>,
    /// Decoding scratch for Consume batches.
    scratch: Vec<u8>,
}

fn run(args: &Args) -> Result<Outcome, String> {
    let mut poll = Poll::new().map_err(poll_error)?;
    let mut conns = connect_all(args, &poll)?;
    let (code, body) = request(args);
    let mut tally = Tally {
        done: 0,
        refused: 0,
        latency: Histogram::<u64>::new(3).map_err(|e| e.to_string())?,
        scratch: Vec::new(),
    };
    let mut to_send = args.count;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.timeout_s);
    if args.mode == Mode::Consume {
        start_consumes(&mut conns, code, &body);
    }
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; READ_CHUNK];
    while tally.done < args.count {
        if Instant::now() > deadline {
            return Err(format!("timed out after {} of {}", tally.done, args.count));
        }
        if args.mode != Mode::Consume {
            for conn in &mut conns {
                send_next_batch(conn, args.pipeline, &mut to_send, code, &body);
            }
        }
        for conn in &mut conns {
            flush(conn)?;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(poll_error)?;
        for event in events.iter() {
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !event.is_readable() {
                continue;
            }
            read(conn, &mut chunk)?;
            handle_frames(conn, args.mode, &mut tally)?;
        }
    }
    let elapsed = started.elapsed();
    Ok(Outcome {
        done: tally.done,
        refused: tally.refused,
        elapsed,
        latency: (args.mode != Mode::Consume).then_some(tally.latency),
    })
}

fn poll_error(e: io::Error) -> String {
    format!("poll: {e}")
}

/// One connection per `-c` (push, pop) or per consumer (consume), registered with `poll`.
fn connect_all(args: &Args, poll: &Poll) -> Result<Vec<Conn>, String> {
    let count = match args.mode {
        Mode::Consume => args.consumers,
        Mode::Push | Mode::Pop => args.connections,
    };
    let mut conns = Vec::with_capacity(count);
    for index in 0..count {
        let mut stream = connect(args.addr)?;
        poll.registry()
            .register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(poll_error)?;
        conns.push(Conn {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            output: Vec::new(),
            written: 0,
            in_flight: 0,
            sent_at: Instant::now(),
            next_id: 1,
            consume_id: 0,
            received: 0,
        });
    }
    Ok(conns)
}

/// The request the mode sends, with its body: a Push of a `-d`-byte value, a Pop, or a Consume.
fn request(args: &Args) -> (RequestCode, Vec<u8>) {
    let value: Vec<u8> = (0..args.value_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut body = Vec::new();
    match args.mode {
        Mode::Push => PushRequest {
            channel: &args.channel,
            value: &value,
        }
        .encode(&mut body),
        Mode::Pop => queue::encode_channel(&mut body, &args.channel),
        Mode::Consume => ConsumeRequest {
            channel: &args.channel,
            subscriber: "",
            max_batch_records: 0,
        }
        .encode(&mut body),
    }
    let code = match args.mode {
        Mode::Push => queue::PUSH,
        Mode::Pop => queue::POP,
        Mode::Consume => queue::CONSUME,
    };
    (code, body)
}

/// Queues a Consume on every connection, with credit for 2^20 batches.
fn start_consumes(conns: &mut [Conn], code: RequestCode, body: &[u8]) {
    for conn in conns {
        conn.consume_id = conn.next_id;
        conn.next_id += 1;
        write_frame(
            &mut conn.output,
            FrameType::Request,
            code.0,
            conn.consume_id,
            body,
        );
        write_frame(
            &mut conn.output,
            FrameType::Control,
            ControlCode::Credit as u8,
            conn.consume_id,
            &(1u32 << 20).to_le_bytes(),
        );
    }
}

/// Queues the connection's next `pipeline` requests (fewer if `to_send` has fewer left) once
/// the replies of its last batch are all in.
fn send_next_batch(
    conn: &mut Conn,
    pipeline: usize,
    to_send: &mut u64,
    code: RequestCode,
    body: &[u8],
) {
    if conn.in_flight != 0 || *to_send == 0 {
        return;
    }
    let batch = (pipeline as u64).min(*to_send) as usize;
    *to_send -= batch as u64;
    for _ in 0..batch {
        write_frame(
            &mut conn.output,
            FrameType::Request,
            code.0,
            conn.next_id,
            body,
        );
        conn.next_id += 1;
    }
    conn.in_flight = batch;
    conn.sent_at = Instant::now();
}

/// Takes every whole frame out of the connection's input: Consume batches are counted and
/// acknowledged, replies timed and counted.
fn handle_frames(conn: &mut Conn, mode: Mode, tally: &mut Tally) -> Result<(), String> {
    let mut start = 0;
    while let Some(header) =
        parse_frame(&conn.input[start..], u32::MAX).map_err(|e| e.to_string())?
    {
        let frame_start = start;
        start += header.frame_len();
        let frame_body = frame_start + HEADER_LEN..start;
        match (mode, header.frame_type) {
            (Mode::Consume, FrameType::Item) if header.request_id == conn.consume_id => {
                let records = decode_batch(&conn.input[frame_body], &mut tally.scratch)
                    .map_err(|e| format!("Consume batch: {e}"))?;
                let got = u64::from(records.len());
                tally.done += got;
                acknowledge(conn, got);
            }
            (Mode::Consume, FrameType::Reply) if header.request_id == conn.consume_id => {
                return Err(format!("Consume ended: status {}", header.code));
            }
            (Mode::Consume, FrameType::Reply) => {}
            (_, FrameType::Reply) => {
                let micros = conn.sent_at.elapsed().as_micros() as u64;
                let _ = tally.latency.record(micros.max(1));
                match Status::from_u8(header.code) {
                    Some(Status::Ok) => {}
                    Some(Status::ChannelFull | Status::NotFound) => tally.refused += 1,
                    other => {
                        return Err(format!(
                            "{mode:?} answered {other:?}: {}",
                            String::from_utf8_lossy(&conn.input[frame_body])
                        ))
                    }
                }
                tally.done += 1;
                conn.in_flight = conn.in_flight.saturating_sub(1);
            }
            (_, other) => return Err(format!("unexpected {other:?} frame")),
        }
    }
    conn.input.drain(..start);
    Ok(())
}

/// Counts `got` more records of the connection's Consume and queues the ConsumeAck of all so far.
fn acknowledge(conn: &mut Conn, got: u64) {
    conn.received += got;
    let mut ack = Vec::with_capacity(16);
    ConsumeAckRequest {
        consume_id: conn.consume_id,
        records: conn.received,
    }
    .encode(&mut ack);
    let id = conn.next_id;
    conn.next_id += 1;
    write_frame(
        &mut conn.output,
        FrameType::Request,
        queue::CONSUME_ACK.0,
        id,
        &ack,
    );
}

fn flush(conn: &mut Conn) -> Result<(), String> {
    while conn.written < conn.output.len() {
        match conn.stream.write(&conn.output[conn.written..]) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    conn.output.clear();
    conn.written = 0;
    Ok(())
}

fn read(conn: &mut Conn, chunk: &mut [u8]) -> Result<(), String> {
    loop {
        match conn.stream.read(chunk) {
            Ok(0) => return Err("connection closed by the node".into()),
            Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
