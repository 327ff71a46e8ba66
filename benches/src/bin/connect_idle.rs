//! What idle connections cost a new one: the time from `connect` to the reply of a first request
//! (handshake, then GetNumConnections) on a node with no other connection, then with N idle
//! ones (connected, handshake done, silent). The server's event loop must not pay per idle
//! connection for a new one (node-core/tests/server.rs checks that it is served; this measures
//! how fast).
//!
//! `cargo run --release -p benches --bin connect_idle -- --addr 127.0.0.1:10000 [--idle 500]
//! [--samples 200]` against a running node of any kind (started with `server.max_connections`
//! above the idle count).

use benches::handshake::swarm_handshake;
use clap::Parser;
use node_core::protocol::frame::{parse_frame, write_frame, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::handshake::{ServerHello, SERVER_HELLO_LEN};
use node_core::protocol::{FrameType, NodeKind, RequestCode, Status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "connect_idle",
    about = "Time a new connection among many idle ones"
)]
struct Args {
    /// The node to measure.
    #[arg(long)]
    addr: SocketAddr,
    /// Idle connections to hold open for the second measurement.
    #[arg(long, default_value_t = 500)]
    idle: usize,
    /// New connections timed in each measurement.
    #[arg(long, default_value_t = 200)]
    samples: usize,
}

/// The node's kind, from the hello of a connection made for that.
fn node_kind(addr: SocketAddr) -> Result<NodeKind, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let mut hello = [0u8; SERVER_HELLO_LEN];
    stream
        .read_exact(&mut hello)
        .map_err(|e| format!("reading the node's hello: {e}"))?;
    Ok(ServerHello::decode(&hello).map_err(|e| e.to_string())?.kind)
}

/// A connection with the handshake done.
fn open(addr: SocketAddr, kind: NodeKind) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    swarm_handshake(&mut stream, kind, "connect_idle")?;
    Ok(stream)
}

/// One sample: connect, handshake, GetNumConnections and its reply. Returns the time taken.
fn time_one(addr: SocketAddr, kind: NodeKind) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = open(addr, kind)?;
    let mut frame = Vec::new();
    write_frame(
        &mut frame,
        FrameType::Request,
        RequestCode::GET_NUM_CONNECTIONS.0,
        1,
        &[],
    );
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        if let Some(header) =
            parse_frame(&buffer, DEFAULT_MAX_FRAME_BYTES).map_err(|e| e.to_string())?
        {
            if Status::from_u8(header.code) != Some(Status::Ok) {
                return Err(format!("GetNumConnections answered {}", header.code));
            }
            return Ok(started.elapsed());
        }
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the node closed the connection".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// `samples` timings, sorted.
fn measure(addr: SocketAddr, kind: NodeKind, samples: usize) -> Result<Vec<Duration>, String> {
    let mut times = (0..samples)
        .map(|_| time_one(addr, kind))
        .collect::<Result<Vec<_>, _>>()?;
    times.sort();
    Ok(times)
}

fn report(label: &str, times: &[Duration]) {
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "{label:>24}: p50 {:8.1} us  p99 {:8.1} us  max {:8.1} us  ({} connections)",
        at(0.5),
        at(0.99),
        at(1.0),
        times.len()
    );
}

fn run(args: &Args) -> Result<(), String> {
    if args.samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    let kind = node_kind(args.addr)?;
    report(
        "no idle connections",
        &measure(args.addr, kind, args.samples)?,
    );
    let idle = (0..args.idle)
        .map(|_| open(args.addr, kind))
        .collect::<Result<Vec<_>, _>>()?;
    let times = measure(args.addr, kind, args.samples)?;
    report(&format!("{} idle connections", idle.len()), &times);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("connect_idle: {error}");
            ExitCode::FAILURE
        }
    }
}
