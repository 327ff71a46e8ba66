//! What a flood of TLS handshakes costs the clients already connected: one established TLS
//! connection sends GetVersion requests back to back (one in flight) while `--flood` new TLS
//! connections are opened at once (threads released together), `--rounds` times. Prints the
//! established client's request latencies during the floods (worst, p99, median), how long each
//! flood took until its last handshake completed, and the handshakes per second. The measuring
//! thread runs SCHED_FIFO when it may, so that the flood's own client threads do not delay it.
//!
//! `cargo run --release -p benches --bin tls_flood -- --addr 127.0.0.1:10000 --tls-ca ca.pem
//! [--flood 500] [--rounds 5] [--measure-while FILE]` against a running dht node with TLS (with
//! `--measure-while`, only the established client, in a process of its own; started with
//! `server.max_connections` above the flood). `scripts/bench-tls-flood.sh` runs it against
//! nodes with different `server.tls_handshakes_per_pass` (docs/benchmarks.md, "TLS handshake
//! floods").

use benches::handshake::swarm_handshake;
use clap::Parser;
use client::tls::{ClientTls, TlsSettings};
use hdrhistogram::Histogram;
use node_core::protocol::frame::{parse_frame, write_frame, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::{FrameType, NodeKind, RequestCode, Status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "tls_flood",
    about = "Request latency of an established TLS client during a flood of TLS handshakes"
)]
struct Args {
    /// The dht node (with TLS) to measure.
    #[arg(long)]
    addr: SocketAddr,
    /// The CA the node's certificate chains to.
    #[arg(long)]
    tls_ca: std::path::PathBuf,
    /// New TLS connections opened at once in each flood.
    #[arg(long, default_value_t = 500)]
    flood: usize,
    /// Floods, one after the other.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Only measure the established client, until this file is gone (no flood): run it as a
    /// process of its own beside a flooding one, so that the flood's thread creation and
    /// crypto (in the flooding process) cannot delay the measurement.
    #[arg(long, value_name = "FILE")]
    measure_while: Option<std::path::PathBuf>,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection past the swarm handshake (blocking, with a timeout).
fn open(addr: SocketAddr, tls: &ClientTls) -> Result<TlsStream, String> {
    let socket = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    let session = rustls::ClientConnection::new(tls.config(), tls.server_name(addr))
        .map_err(|e| format!("TLS session: {e}"))?;
    let mut stream = rustls::StreamOwned::new(session, socket);
    swarm_handshake(&mut stream, NodeKind::Dht, "tls_flood")?;
    Ok(stream)
}

/// One GetVersion and its reply on `stream`.
fn get_version(stream: &mut TlsStream, id: u64, buffer: &mut Vec<u8>) -> Result<(), String> {
    let mut request = Vec::new();
    write_frame(
        &mut request,
        FrameType::Request,
        RequestCode::GET_VERSION.0,
        id,
        &[],
    );
    stream.write_all(&request).map_err(|e| e.to_string())?;
    loop {
        if let Some(header) =
            parse_frame(buffer, DEFAULT_MAX_FRAME_BYTES).map_err(|e| e.to_string())?
        {
            let len = header.frame_len();
            buffer.drain(..len);
            if header.request_id != id || header.code != Status::Ok as u8 {
                return Err(format!("unexpected reply {header:?}"));
            }
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the node closed the established connection".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// One flood: `count` threads open a connection each, released together. Returns the time until
/// the last handshake completed, or the first failure.
fn flood(addr: SocketAddr, tls: &ClientTls, count: usize) -> Result<Duration, String> {
    let barrier = Barrier::new(count + 1);
    let failure = Mutex::new(None);
    let started = std::thread::scope(|scope| {
        for _ in 0..count {
            let (barrier, failure) = (&barrier, &failure);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(scope, move || {
                    barrier.wait();
                    if let Err(error) = open(addr, tls) {
                        let mut failure = failure.lock().unwrap_or_else(|e| e.into_inner());
                        failure.get_or_insert(error);
                    }
                })
                .map_err(|e| format!("thread: {e}"))?;
        }
        barrier.wait();
        Ok::<_, String>(Instant::now())
    })?;
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(error) => Err(format!("a handshake of the flood failed: {error}")),
        None => Ok(started.elapsed()),
    }
}

/// Runs the calling thread SCHED_FIFO (priority 10), so that the flood's 500 client threads on
/// the same CPU do not delay its requests: what is measured is then the node's delay. Without
/// the privilege (not root, no CAP_SYS_NICE), says so and measures anyway.
fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler with pid 0 (this thread) and a valid, initialised parameter.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if result != 0 {
        eprintln!(
            "tls_flood: no SCHED_FIFO for the measuring thread ({}): its latencies include \
             waiting for the CPU behind the flood's threads",
            std::io::Error::last_os_error()
        );
    }
}

/// The established client's requests, back to back, while `keep_on` says so; prints their
/// latencies.
fn measure(addr: SocketAddr, tls: &ClientTls, keep_on: &dyn Fn() -> bool) -> Result<(), String> {
    realtime_priority();
    let mut established = open(addr, tls)?;
    let mut latencies = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut buffer = Vec::new();
    let mut id = 0u64;
    while keep_on() {
        id += 1;
        let started = Instant::now();
        get_version(&mut established, id, &mut buffer)?;
        let micros = started.elapsed().as_micros() as u64;
        latencies.record(micros.max(1)).map_err(|e| e.to_string())?;
    }
    println!(
        "established client: {} requests, worst {:.1} ms, p99 {:.2} ms, median {:.3} ms",
        latencies.len(),
        latencies.max() as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
    );
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let tls = ClientTls::load(&TlsSettings {
        ca_file: args.tls_ca.clone(),
        cert_file: None,
        key_file: None,
        server_name: None,
    })
    .map_err(|e| e.to_string())?;
    if let Some(file) = &args.measure_while {
        return measure(args.addr, &tls, &|| file.exists());
    }
    let flooding = AtomicBool::new(true);
    let mut floods = Vec::new();
    std::thread::scope(|scope| {
        let measured =
            scope.spawn(|| measure(args.addr, &tls, &|| flooding.load(Ordering::Relaxed)));
        // Let the established client's requests settle before the first flood.
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..args.rounds {
            match flood(args.addr, &tls, args.flood) {
                Ok(took) => floods.push(took),
                Err(error) => {
                    flooding.store(false, Ordering::Relaxed);
                    return Err(error);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        flooding.store(false, Ordering::Relaxed);
        measured
            .join()
            .map_err(|_| "the measuring thread panicked")?
    })?;
    let handshakes = (args.flood * args.rounds) as f64;
    let flood_s: f64 = floods.iter().map(Duration::as_secs_f64).sum();
    println!(
        "floods of {}: {} handshakes completed, {:.0} handshakes/s, slowest flood {:.0} ms",
        args.flood,
        handshakes,
        handshakes / flood_s.max(1e-9),
        floods.iter().max().unwrap_or(&Duration::ZERO).as_secs_f64() * 1000.0
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tls_flood: {error}");
            ExitCode::FAILURE
        }
    }
}
