//! loadgen: a load generator for the swarm nodes that is cheap enough not to be the bottleneck.
//!
//! One mio event loop per thread (default one thread), each driving its share of N connections.
//! Every connection keeps up to P requests in flight: in `batch` mode (the default, what
//! `redis-benchmark -P` does) it writes P requests at once and writes the next P when all P
//! replies are in; in `window` mode it tops up to P after every read. Requests are encoded from
//! pre-built templates into a reused per-connection buffer (only the request id and key are
//! patched), keys and operations come from pre-generated rings, and one clock read per write and
//! per read timestamps the requests, so the hot path makes no allocation and few syscalls:
//! one `write` per batch and usually one `read` per batch of replies.
//!
//! Latency is send → reply, per request, in an HDR histogram (3 significant digits). The report
//! gives throughput, p50/p90/p99/p99.9/max, the generator's own CPU time (getrusage) and, with
//! `--server-pid`, the server's CPU time and RSS over the same window, so a reader can see which
//! side is saturated.
//!
//! Node kinds: `dht` speaks the swarm protocol (docs/protocol.md): handshake, then Put / Get
//! frames. `logfiles` sends logfiles Puts (the same body layout: channel, key, value; puts only).
//! `redis` speaks RESP (SET/GET on `key:%012d`, the keys `redis-benchmark -r` uses) so the same
//! generator can cross-check `redis-benchmark`; `redis-xadd` appends to one Redis stream
//! (`XADD bench * key:%012d <value>`), the Redis counterpart of a logfiles Put. `memcached`
//! speaks memcached's text protocol (`set`/`get` on the same keys and values; `loadgen/memcached.rs`),
//! the second peer of the dht node.
//!
//!     loadgen --addr 127.0.0.1:10000 -c 50 -P 16 -d 100 --keys uniform:1000000 --ops get \
//!             --prefill 1000000 --duration-s 10 --json out.json

#[path = "loadgen/memcached.rs"]
mod memcached;
#[path = "loadgen/text.rs"]
mod text;

use benches::sys::{self, CpuTimes};
use clap::{Parser, ValueEnum};
use client::tls::{ClientTls, TlsSettings};
use hdrhistogram::Histogram;
use memcached::MemcachedCodec;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use node_core::protocol::dht::{KeyRequest, PutRequest, PutVersionRequest, GET, PUT, PUT_VERSION};
use node_core::protocol::frame::{parse_frame, write_frame, DEFAULT_MAX_FRAME_BYTES};
use node_core::protocol::{FrameType, NodeKind, Status, HEADER_LEN};
use node_core::tls::Transport;
use serde_json::json;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use text::{bench_value, find_crlf, KeyTemplates};

/// Requests in flight per connection are tracked in slots; the slot is the low bits of the
/// request id, so a reply finds its send time without a map.
const SLOT_BITS: u32 = 12;
const MAX_PIPELINE: usize = 1 << SLOT_BITS;
const SLOT_FREE: u64 = u64::MAX;
/// Keys and operations are drawn from rings generated before the run.
const KEY_RING_LEN: usize = 1 << 22;
const OP_RING_LEN: usize = 1 << 16;
const INPUT_BUFFER_BYTES: usize = 64 * 1024;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator for the swarm nodes (and Redis and memcached, their peers)"
)]
struct Args {
    /// Node kind to drive.
    #[arg(long, value_enum, default_value_t = Kind::Dht)]
    kind: Kind,
    /// Node address.
    #[arg(long, default_value = "127.0.0.1:10000")]
    addr: SocketAddr,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection (pipeline depth), 1 to 4096.
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,
    /// batch: write P requests, wait for all P replies (as redis-benchmark -P); window: keep P
    /// in flight, topping up after every read.
    #[arg(long, value_enum, default_value_t = Mode::Batch)]
    pipeline_mode: Mode,
    /// Value size in bytes for writes.
    #[arg(short = 'd', long, default_value_t = 100)]
    value_size: usize,
    /// Key distribution: sequential[:SPACE], uniform:SPACE, zipf:SPACE[:EXPONENT] (default 0.99).
    /// Keys are 0..SPACE.
    #[arg(long, default_value = "uniform:1000000")]
    keys: KeyDist,
    /// Operations: put, get, or mixed:R with R the fraction of gets (0..1).
    #[arg(long, default_value = "put")]
    ops: OpMix,
    /// Run for this many seconds (after the warm-up). The default when neither --duration-s
    /// nor --count is given: 10 s.
    #[arg(long, conflicts_with = "count")]
    duration_s: Option<f64>,
    /// Run this many requests; 0 skips the measured phase (e.g. only --prefill).
    #[arg(long)]
    count: Option<u64>,
    /// Seconds of load before measuring starts (with --duration-s).
    #[arg(long, default_value_t = 0.0, requires = "duration_s")]
    warmup_s: f64,
    /// Before measuring, put keys 0..N (sequential, pipelined) so that gets hit.
    #[arg(long, default_value_t = 0)]
    prefill: u64,
    /// Pipeline depth (window mode) of the prefill.
    #[arg(long, default_value_t = 64)]
    prefill_pipeline: usize,
    /// Event-loop threads; the connections are split among them.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// dht channel.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Seed of the key and operation rings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also measure this process (the server) over the measured phase: CPU time from
    /// /proc/PID/stat, RSS from /proc/PID/status.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label copied into the JSON.
    #[arg(long)]
    label: Option<String>,
    /// memcached: send each batch of P gets as one multi-get (`get k1 … kP`), memcached's batch
    /// read, instead of P single-key gets back to back. Needs --kind memcached and --ops get.
    #[arg(long)]
    multiget: bool,
    /// Busy-poll (epoll with a zero timeout) instead of sleeping until replies come: saves the
    /// wake-ups, costs a whole core.
    #[arg(long)]
    spin: bool,
    /// Hard bound on every phase; a phase still running after it fails the run.
    #[arg(long, default_value_t = 600.0)]
    timeout_s: f64,
    /// Swarm kinds: connect over TLS, trusting the CA certificates of this PEM file (the node's
    /// certificate must name the address, or --tls-server-name).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// With --tls-ca: the name the node's certificate carries.
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
    /// dht puts to a replica set (repeatable): every Put also goes to this node, each connection
    /// having one to every replica, all as PutVersion with one version (a counter started at
    /// Unix ms << 16, as the client's clock), and is done when every copy is answered: what the
    /// client does with write_quorum = all live members (docs/replication.md).
    #[arg(long = "replica", value_name = "ADDR")]
    replicas: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// The dht node (swarm protocol).
    Dht,
    /// Redis (RESP SET/GET), to cross-check redis-benchmark with the same generator.
    Redis,
    /// The logfiles node (swarm protocol): Puts only.
    Logfiles,
    /// Redis streams: XADD to one stream, to compare with logfiles Puts. Writes only.
    RedisXadd,
    /// memcached (text protocol set/get on the Redis keys), the second peer of the dht node.
    Memcached,
    /// The queue node: not built yet.
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Batch,
    Window,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyDist {
    Sequential { space: u64 },
    Uniform { space: u64 },
    Zipf { space: u64, exponent: f64 },
}

impl FromStr for KeyDist {
    type Err = String;
    fn from_str(text: &str) -> Result<KeyDist, String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or("");
        let space = match parts.next() {
            Some(space) => space
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("key space {space:?} is not a number"))?,
            None if name == "sequential" => u64::MAX,
            None => return Err(format!("{name}: give the key space, e.g. {name}:1000000")),
        };
        if space == 0 {
            return Err("the key space must not be empty".into());
        }
        let dist = match name {
            "sequential" => KeyDist::Sequential { space },
            "uniform" => KeyDist::Uniform { space },
            "zipf" => {
                let exponent = match parts.next() {
                    Some(s) => s
                        .parse::<f64>()
                        .map_err(|_| format!("zipf exponent {s:?} is not a number"))?,
                    None => 0.99,
                };
                if !(exponent > 0.0 && exponent.is_finite()) {
                    return Err("the zipf exponent must be positive".into());
                }
                KeyDist::Zipf { space, exponent }
            }
            _ => {
                return Err(format!(
                    "unknown key distribution {name:?} (sequential, uniform, zipf)"
                ))
            }
        };
        if parts.next().is_some() {
            return Err(format!("too many fields in {text:?}"));
        }
        Ok(dist)
    }
}

impl std::fmt::Display for KeyDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            KeyDist::Sequential { space: u64::MAX } => write!(f, "sequential"),
            KeyDist::Sequential { space } => write!(f, "sequential:{space}"),
            KeyDist::Uniform { space } => write!(f, "uniform:{space}"),
            KeyDist::Zipf { space, exponent } => write!(f, "zipf:{space}:{exponent}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OpMix {
    Only(Op),
    /// Fraction of gets.
    Mixed(f64),
}

impl FromStr for OpMix {
    type Err = String;
    fn from_str(text: &str) -> Result<OpMix, String> {
        match text {
            "put" => Ok(OpMix::Only(Op::Put)),
            "get" => Ok(OpMix::Only(Op::Get)),
            _ => {
                let ratio = text
                    .strip_prefix("mixed:")
                    .ok_or_else(|| format!("unknown ops {text:?} (put, get, mixed:R)"))?;
                let ratio: f64 = ratio
                    .parse()
                    .map_err(|_| format!("read ratio {ratio:?} is not a number"))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err("the read ratio must be between 0 and 1".into());
                }
                Ok(OpMix::Mixed(ratio))
            }
        }
    }
}

impl std::fmt::Display for OpMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpMix::Only(Op::Put) => write!(f, "put"),
            OpMix::Only(Op::Get) => write!(f, "get"),
            OpMix::Mixed(ratio) => write!(f, "mixed:{ratio}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random numbers: splitmix64 and a Zipf sampler (rejection-inversion, Hörmann & Derflinger 1996,
// as in Apache Commons RNG), both only used to fill the rings before the run.

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    fn new(n: u64, exponent: f64) -> Zipf {
        let mut zipf = Zipf {
            n: n as f64,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(zipf.n + 0.5);
        zipf.s = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.exponent)).max(-1.0);
        (helper1(t) * x).exp()
    }

    /// A rank in `1..=n`; rank 1 is the most frequent.
    fn sample(&self, rng: &mut SplitMix64) -> u64 {
        loop {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

/// `ln(1 + x) / x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x − 1) / x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

/// Where the keys of one thread come from.
enum KeySource {
    /// `next`, `next + step`, ... modulo `space`.
    Sequential { next: u64, step: u64, space: u64 },
    /// A pre-generated ring (power-of-two length).
    Ring { keys: Vec<u64>, pos: usize },
}

impl KeySource {
    fn new(dist: KeyDist, thread: usize, threads: usize, seed: u64, needed: u64) -> KeySource {
        let ring_len = if needed >= KEY_RING_LEN as u64 {
            KEY_RING_LEN
        } else {
            (needed.max(1) as usize).next_power_of_two()
        };
        let mut rng = SplitMix64(seed ^ (thread as u64).wrapping_mul(0x5851_f42d_4c95_7f2d));
        match dist {
            KeyDist::Sequential { space } => KeySource::Sequential {
                next: thread as u64 % space,
                step: threads as u64,
                space,
            },
            KeyDist::Uniform { space } => KeySource::Ring {
                keys: (0..ring_len).map(|_| rng.below(space)).collect(),
                pos: 0,
            },
            KeyDist::Zipf { space, exponent } => {
                let zipf = Zipf::new(space, exponent);
                KeySource::Ring {
                    keys: (0..ring_len).map(|_| zipf.sample(&mut rng) - 1).collect(),
                    pos: 0,
                }
            }
        }
    }

    /// Keys `start..end` in order (the prefill).
    fn range(start: u64, end: u64) -> KeySource {
        KeySource::Sequential {
            next: start,
            step: 1,
            space: end.max(start + 1),
        }
    }

    #[inline]
    fn next_key(&mut self) -> u64 {
        match self {
            KeySource::Sequential { next, step, space } => {
                let key = *next;
                *next = next.wrapping_add(*step);
                if *next >= *space {
                    *next %= *space;
                }
                key
            }
            KeySource::Ring { keys, pos } => {
                let key = keys[*pos];
                *pos = (*pos + 1) & (keys.len() - 1);
                key
            }
        }
    }
}

enum OpSource {
    Only(Op),
    Ring { ops: Vec<Op>, pos: usize },
}

impl OpSource {
    fn new(mix: OpMix, thread: usize, seed: u64) -> OpSource {
        match mix {
            OpMix::Only(op) => OpSource::Only(op),
            OpMix::Mixed(ratio) => {
                let mut rng = SplitMix64(seed.wrapping_add(0xa076_1d64_78bd_642f) ^ thread as u64);
                let ops = (0..OP_RING_LEN)
                    .map(|_| if rng.unit() < ratio { Op::Get } else { Op::Put })
                    .collect();
                OpSource::Ring { ops, pos: 0 }
            }
        }
    }

    #[inline]
    fn next_op(&mut self) -> Op {
        match self {
            OpSource::Only(op) => *op,
            OpSource::Ring { ops, pos } => {
                let op = ops[*pos];
                *pos = (*pos + 1) & (OP_RING_LEN - 1);
                op
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Codecs: how one node kind opens a connection, encodes a request and decodes a reply.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Success (a get that found its record, a put that stored): "ok" in the report.
    Hit,
    /// A get that found nothing: "not found" in the report.
    Miss,
    /// Any other status; the code is the wire status (0 for RESP errors).
    Error(u8),
    /// The end of a memcached multi-get: every request of the batch still unanswered (a key
    /// that sent no VALUE) was a miss.
    EndOfBatch,
}

struct Decoded {
    /// Bytes the reply occupies.
    len: usize,
    /// The request id it answers; `None` for protocols that answer in request order.
    id: Option<u64>,
    outcome: Outcome,
    /// Where the reply's message (for errors) is within the reply.
    body: std::ops::Range<usize>,
}

/// A blocking connection during the handshake: the socket, or a TLS stream over it.
trait Duplex: Read + Write {}
impl<T: Read + Write> Duplex for T {}

trait Codec: Sync {
    /// Opens a connection: the handshake, on a blocking socket (in clear or inside TLS; the
    /// peers' protocols have none).
    fn handshake(&self, _stream: &mut dyn Duplex) -> Result<(), String> {
        Ok(())
    }
    /// Appends one request to `out`.
    fn encode(&self, op: Op, key: u64, id: u64, out: &mut Vec<u8>);
    /// Closes what `encode` left open in `out` (a multi-get's line); called after every batch.
    fn end_batch(&self, _out: &mut Vec<u8>) {}
    /// Decodes the reply at the start of `buf`, if it is complete.
    fn decode(&self, buf: &[u8]) -> Result<Option<Decoded>, String>;
    /// Largest reply to expect (sizes the input buffers).
    fn max_reply_len(&self) -> usize;
    /// Whether replies name their request (else they come in request order).
    fn replies_carry_id(&self) -> bool;
}

/// The swarm protocol for dht (Put, Get) and logfiles (Put): frames built from templates; only
/// the request id (bytes 8..16) and the key are patched per request.
struct SwarmCodec {
    kind: NodeKind,
    put: Vec<u8>,
    get: Vec<u8>,
    /// Offset of the key within either template (header + str8 channel).
    key_offset: usize,
    value_size: usize,
    /// dht PutVersion instead of Put (with replicas): the next version to write; the version
    /// follows the key in the template.
    next_version: Option<AtomicU64>,
}

impl SwarmCodec {
    fn new(
        kind: NodeKind,
        channel: &str,
        value_size: usize,
        versioned: bool,
    ) -> Result<SwarmCodec, String> {
        if !node_core::protocol::dht::valid_channel_name(channel) {
            return Err(format!("bad channel name {channel:?}"));
        }
        let value = bench_value(value_size).into_bytes();
        let mut body = Vec::new();
        let mut put_code = match kind {
            NodeKind::Logfiles => node_core::protocol::logfiles::PUT,
            _ => PUT,
        };
        let mut next_version = None;
        if versioned {
            PutVersionRequest {
                channel,
                key: 0,
                version: 0,
                value: &value,
            }
            .encode(&mut body);
            put_code = PUT_VERSION;
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            next_version = Some(AtomicU64::new(unix_ms << 16));
        } else {
            PutRequest {
                channel,
                key: 0,
                value: &value,
            }
            .encode(&mut body);
        }
        // One Put body for both kinds (protocol::channels::PutRequest).
        let mut put = Vec::new();
        write_frame(&mut put, FrameType::Request, put_code.0, 0, &body);
        body.clear();
        KeyRequest { channel, key: 0 }.encode(&mut body);
        let mut get = Vec::new();
        write_frame(&mut get, FrameType::Request, GET.0, 0, &body);
        Ok(SwarmCodec {
            kind,
            put,
            get,
            key_offset: HEADER_LEN + 1 + channel.len(),
            value_size,
            next_version,
        })
    }
}

impl Codec for SwarmCodec {
    fn handshake(&self, stream: &mut dyn Duplex) -> Result<(), String> {
        benches::handshake::swarm_handshake(stream, self.kind, "loadgen")
    }

    #[inline]
    fn encode(&self, op: Op, key: u64, id: u64, out: &mut Vec<u8>) {
        let template = match op {
            Op::Put => &self.put,
            Op::Get => &self.get,
        };
        let start = out.len();
        out.extend_from_slice(template);
        out[start + 8..start + 16].copy_from_slice(&id.to_le_bytes());
        let key_at = start + self.key_offset;
        out[key_at..key_at + 8].copy_from_slice(&key.to_le_bytes());
        if let (Op::Put, Some(next)) = (op, &self.next_version) {
            let version = next.fetch_add(1, Ordering::Relaxed);
            out[key_at + 8..key_at + 16].copy_from_slice(&version.to_le_bytes());
        }
    }

    #[inline]
    fn decode(&self, buf: &[u8]) -> Result<Option<Decoded>, String> {
        let Some(header) = parse_frame(buf, DEFAULT_MAX_FRAME_BYTES).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if header.frame_type != FrameType::Reply {
            return Err(format!(
                "unexpected {:?} frame for request {}",
                header.frame_type, header.request_id
            ));
        }
        let outcome = match header.code {
            code if code == Status::Ok as u8 => Outcome::Hit,
            code if code == Status::NotFound as u8 => Outcome::Miss,
            code => Outcome::Error(code),
        };
        Ok(Some(Decoded {
            len: header.frame_len(),
            id: Some(header.request_id),
            outcome,
            body: HEADER_LEN..header.frame_len(),
        }))
    }

    fn max_reply_len(&self) -> usize {
        HEADER_LEN + self.value_size.max(1024)
    }

    fn replies_carry_id(&self) -> bool {
        true
    }
}

/// RESP (Redis): `SET key:%012d <value>` and `GET key:%012d`, the keys of `redis-benchmark -r`.
struct RespCodec {
    requests: KeyTemplates,
    value_size: usize,
}

impl RespCodec {
    fn new(value_size: usize, xadd: bool) -> RespCodec {
        let set_head = if xadd {
            "*5\r\n$4\r\nXADD\r\n$5\r\nbench\r\n$1\r\n*\r\n$16\r\n"
        } else {
            "*3\r\n$3\r\nSET\r\n$16\r\n"
        };
        let set_tail = format!("\r\n${value_size}\r\n{}\r\n", bench_value(value_size));
        RespCodec {
            requests: KeyTemplates::new(
                (set_head, &set_tail),
                ("*2\r\n$3\r\nGET\r\n$16\r\n", "\r\n"),
            ),
            value_size,
        }
    }
}

impl Codec for RespCodec {
    #[inline]
    fn encode(&self, op: Op, key: u64, _id: u64, out: &mut Vec<u8>) {
        self.requests.encode(op, key, out);
    }

    fn decode(&self, buf: &[u8]) -> Result<Option<Decoded>, String> {
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        let Some(line_end) = find_crlf(buf, 1) else {
            return Ok(None);
        };
        let simple = |outcome| {
            Ok(Some(Decoded {
                len: line_end + 2,
                id: None,
                outcome,
                body: 1..line_end,
            }))
        };
        match kind {
            b'+' | b':' => simple(Outcome::Hit),
            b'-' => simple(Outcome::Error(0)),
            b'$' => {
                let len: i64 = std::str::from_utf8(&buf[1..line_end])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad RESP bulk length")?;
                if len < 0 {
                    return simple(Outcome::Miss);
                }
                let total = line_end + 2 + len as usize + 2;
                if buf.len() < total {
                    return Ok(None);
                }
                Ok(Some(Decoded {
                    len: total,
                    id: None,
                    outcome: Outcome::Hit,
                    body: line_end + 2..total - 2,
                }))
            }
            other => Err(format!("unexpected RESP reply type {:?}", other as char)),
        }
    }

    fn max_reply_len(&self) -> usize {
        self.value_size + 64
    }

    fn replies_carry_id(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// Connections and the event loop.

struct Conn {
    stream: Transport,
    output: Vec<u8>,
    output_pos: usize,
    input: Vec<u8>,
    input_start: usize,
    input_end: usize,
    seq: u64,
    /// Per slot: the send time (ns since the run's base), or SLOT_FREE.
    sent_at: Vec<u64>,
    free: Vec<u32>,
    /// Slots in send order, kept when replies carry no id and come in request order.
    in_order: bool,
    order: VecDeque<u32>,
    outstanding: usize,
    /// `--replica`: a connection to every other member of the set; each request goes to all.
    replicas: Vec<Conn>,
    /// Per slot: the copies (this connection's and its replicas') not answered yet.
    copies_left: Vec<u8>,
}

impl Conn {
    fn new(stream: Transport, slots: usize, input_bytes: usize, in_order: bool) -> Conn {
        Conn {
            stream,
            output: Vec::with_capacity(64 * 1024),
            output_pos: 0,
            input: vec![0; input_bytes],
            input_start: 0,
            input_end: 0,
            seq: 0,
            sent_at: vec![SLOT_FREE; slots],
            free: (0..slots as u32).rev().collect(),
            in_order,
            order: VecDeque::with_capacity(slots),
            outstanding: 0,
            replicas: Vec::new(),
            copies_left: vec![0; slots],
        }
    }

    /// Writes what it can; the rest waits for a writable event.
    fn flush(&mut self) -> io::Result<()> {
        while self.output_pos < self.output.len() {
            match self.stream.write(&self.output[self.output_pos..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => self.output_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.output.clear();
        self.output_pos = 0;
        self.stream.send_tls_records()?;
        Ok(())
    }
}

fn connect(
    addr: SocketAddr,
    codec: &dyn Codec,
    slots: usize,
    tls: Option<&ClientTls>,
) -> Result<Conn, String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let session = match tls {
        Some(tls) => {
            let mut session = rustls::ClientConnection::new(tls.config(), tls.server_name(addr))
                .map_err(|e| format!("TLS: {e}"))?;
            codec.handshake(&mut rustls::Stream::new(&mut session, &mut stream))?;
            Some(session)
        }
        None => {
            codec.handshake(&mut stream)?;
            None
        }
    };
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let socket = TcpStream::from_std(stream);
    let transport = match session {
        Some(session) => Transport::with_tls(socket, session.into()),
        None => Transport::plain(socket),
    };
    let input_bytes = INPUT_BUFFER_BYTES.max(codec.max_reply_len() * 2);
    Ok(Conn::new(
        transport,
        slots,
        input_bytes,
        !codec.replies_carry_id(),
    ))
}

/// What one thread runs in one phase.
struct Plan {
    pipeline: usize,
    mode: Mode,
    /// Requests to send; `None` in duration mode.
    budget: Option<u64>,
    /// Send from the start for `warmup`, then record for `duration` (duration mode).
    warmup: Duration,
    duration: Option<Duration>,
    keys: KeySource,
    ops: OpSource,
    deadline: Instant,
    /// Poll without sleeping.
    spin: bool,
}

/// What one thread measured in one phase.
struct PhaseResult {
    histogram: Histogram<u64>,
    ok: u64,
    not_found: u64,
    errors: u64,
    first_error: Option<String>,
    /// Recorded replies; their requests were sent at or after `record_from_ns`.
    recorded: u64,
    record_from_ns: u64,
    last_reply_ns: u64,
}

impl PhaseResult {
    fn new() -> PhaseResult {
        PhaseResult {
            histogram: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            not_found: 0,
            errors: 0,
            first_error: None,
            recorded: 0,
            record_from_ns: 0,
            last_reply_ns: 0,
        }
    }

    fn merge(&mut self, other: &PhaseResult) {
        self.histogram
            .add(&other.histogram)
            .expect("same histogram bounds");
        self.ok += other.ok;
        self.not_found += other.not_found;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.recorded += other.recorded;
        self.record_from_ns = self.record_from_ns.min(other.record_from_ns);
        self.last_reply_ns = self.last_reply_ns.max(other.last_reply_ns);
    }
}

#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The per-thread state of the phase that the connections share.
struct Issuer<'a> {
    plan: Plan,
    codec: &'a dyn Codec,
    stopping: bool,
}

impl Issuer<'_> {
    /// Sends what the mode allows on `conn`, stamped `now`.
    #[inline]
    fn fill(&mut self, conn: &mut Conn, now: u64) -> io::Result<()> {
        let room = match self.plan.mode {
            Mode::Batch if conn.outstanding > 0 => 0,
            _ => self.plan.pipeline - conn.outstanding,
        };
        let batch_start = conn.output.len();
        let copies = 1 + conn.replicas.len() as u8;
        for _ in 0..room {
            if self.stopping {
                break;
            }
            if let Some(budget) = &mut self.plan.budget {
                if *budget == 0 {
                    self.stopping = true;
                    break;
                }
                *budget -= 1;
            }
            let slot = conn.free.pop().expect("a free slot per request in flight");
            let id = (conn.seq << SLOT_BITS) | u64::from(slot);
            conn.seq += 1;
            let op = self.plan.ops.next_op();
            let key = self.plan.keys.next_key();
            self.codec.encode(op, key, id, &mut conn.output);
            conn.sent_at[slot as usize] = now;
            conn.copies_left[slot as usize] = copies;
            if conn.in_order {
                conn.order.push_back(slot);
            }
            conn.outstanding += 1;
        }
        self.codec.end_batch(&mut conn.output);
        let batch = &conn.output[batch_start..];
        for replica in &mut conn.replicas {
            replica.output.extend_from_slice(batch);
            replica.flush()?;
        }
        conn.flush()
    }
}

fn run_phase(
    mut conns: Vec<Conn>,
    plan: Plan,
    codec: &dyn Codec,
    clock: Clock,
) -> (Vec<Conn>, Result<PhaseResult, String>) {
    let result = drive(&mut conns, plan, codec, clock);
    (conns, result)
}

fn drive(
    conns: &mut [Conn],
    plan: Plan,
    codec: &dyn Codec,
    clock: Clock,
) -> Result<PhaseResult, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let count = conns.len();
    for (index, conn) in conns.iter_mut().enumerate() {
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registry = poll.registry();
        registry
            .register(conn.stream.socket_mut(), Token(index), interest)
            .map_err(|e| e.to_string())?;
        for (copy, replica) in conn.replicas.iter_mut().enumerate() {
            let token = Token(replica_token(count, index, copy));
            registry
                .register(replica.stream.socket_mut(), token, interest)
                .map_err(|e| e.to_string())?;
        }
    }
    let result = event_loop(&mut poll, conns, plan, codec, clock);
    for conn in conns.iter_mut() {
        let _ = poll.registry().deregister(conn.stream.socket_mut());
        for replica in &mut conn.replicas {
            let _ = poll.registry().deregister(replica.stream.socket_mut());
        }
    }
    result
}

/// The poll token of replica `copy` of connection `index` among `count` (connections take
/// 0..count, their first replicas the next `count`, and so on).
fn replica_token(count: usize, index: usize, copy: usize) -> usize {
    count * (copy + 1) + index
}

fn event_loop(
    poll: &mut Poll,
    conns: &mut [Conn],
    plan: Plan,
    codec: &dyn Codec,
    clock: Clock,
) -> Result<PhaseResult, String> {
    let start = clock.now_ns();
    let mut result = PhaseResult::new();
    result.record_from_ns = start + plan.warmup.as_nanos() as u64;
    let stop_at = plan
        .duration
        .map(|duration| result.record_from_ns + duration.as_nanos() as u64);
    let deadline = plan.deadline;
    let spin = plan.spin;
    let mut issuer = Issuer {
        plan,
        codec,
        stopping: false,
    };
    let mut outstanding: usize = 0;
    for conn in conns.iter_mut() {
        issuer.fill(conn, start).map_err(|e| e.to_string())?;
        outstanding += conn.outstanding;
    }
    let mut events = Events::with_capacity(1024);
    while outstanding > 0 {
        let now = clock.now_ns();
        if stop_at.is_some_and(|stop| now >= stop) {
            issuer.stopping = true;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "phase did not finish before the timeout ({outstanding} requests unanswered)"
            ));
        }
        let wait = if spin {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
        for event in events.iter() {
            let (index, copy) = (event.token().0 % conns.len(), event.token().0 / conns.len());
            let conn = &mut conns[index];
            let before = conn.outstanding;
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            if copy > 0 {
                if readable {
                    read_replica_replies(conn, copy - 1, codec, &clock, &mut result)?;
                }
                let replica = &mut conn.replicas[copy - 1];
                if event.is_writable() && replica.output_pos < replica.output.len() {
                    replica.flush().map_err(|e| format!("write: {e}"))?;
                }
            } else if readable {
                read_replies(conn, codec, &clock, &mut result)?;
            }
            if conn.outstanding < before {
                issuer
                    .fill(conn, clock.now_ns())
                    .map_err(|e| format!("write: {e}"))?;
            } else if event.is_writable()
                && (conn.output_pos < conn.output.len() || conn.stream.wants_write())
            {
                conn.flush().map_err(|e| format!("write: {e}"))?;
            }
            outstanding = outstanding + conn.outstanding - before;
        }
    }
    Ok(result)
}

/// One read into `conn`'s input buffer (grown or compacted first when full): the bytes read
/// and the room there was, or `None` when the socket has nothing (WouldBlock).
#[inline]
fn read_some(conn: &mut Conn) -> Result<Option<(usize, usize)>, String> {
    if conn.input_end == conn.input.len() {
        if conn.input_start > 0 {
            conn.input.copy_within(conn.input_start..conn.input_end, 0);
            conn.input_end -= conn.input_start;
            conn.input_start = 0;
        } else {
            let len = conn.input.len() * 2;
            conn.input.resize(len, 0);
        }
    }
    let space = conn.input.len() - conn.input_end;
    loop {
        return match conn.stream.read(&mut conn.input[conn.input_end..]) {
            Ok(0) => Err("the node closed a connection".into()),
            Ok(n) => {
                conn.input_end += n;
                Ok(Some((n, space)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(format!("read: {e}")),
        };
    }
}

/// The in-flight slot a request id names (its low bits; see [`SLOT_BITS`]).
#[inline]
fn slot_of(id: u64) -> u32 {
    (id & ((1 << SLOT_BITS) - 1)) as u32
}

/// Forgets the input consumed, once all of it is.
#[inline]
fn reset_consumed(conn: &mut Conn) {
    if conn.input_start == conn.input_end {
        conn.input_start = 0;
        conn.input_end = 0;
    }
}

/// Reads and handles every reply available on `conn`.
#[inline]
fn read_replies(
    conn: &mut Conn,
    codec: &dyn Codec,
    clock: &Clock,
    result: &mut PhaseResult,
) -> Result<(), String> {
    while let Some((n, space)) = read_some(conn)? {
        let now = clock.now_ns();
        while let Some(reply) = codec.decode(&conn.input[conn.input_start..conn.input_end])? {
            match reply.outcome {
                Outcome::EndOfBatch => {
                    while let Some(slot) = conn.order.pop_front() {
                        copy_answered(conn, slot, None, now, result)?;
                        result.not_found += 1;
                    }
                }
                outcome => {
                    let slot = match reply.id {
                        Some(id) => slot_of(id),
                        None => conn.order.pop_front().ok_or("a reply to no request")?,
                    };
                    copy_answered(conn, slot, reply.id, now, result)?;
                    count_outcome(outcome, &conn.input[conn.input_start..], &reply, result);
                }
            }
            conn.input_start += reply.len;
        }
        reset_consumed(conn);
        if n < space {
            // Drained: with edge-triggered readiness, more data raises a new event.
            return Ok(());
        }
    }
    Ok(())
}

/// Reads and handles every reply available on `conn`'s replica `index`: each answers a copy of
/// a request of `conn` (same id); an error status counts as an error of the run.
fn read_replica_replies(
    conn: &mut Conn,
    index: usize,
    codec: &dyn Codec,
    clock: &Clock,
    result: &mut PhaseResult,
) -> Result<(), String> {
    let mut replicas = std::mem::take(&mut conn.replicas);
    let outcome = read_copies(conn, &mut replicas[index], codec, clock, result);
    conn.replicas = replicas;
    outcome
}

fn read_copies(
    conn: &mut Conn,
    replica: &mut Conn,
    codec: &dyn Codec,
    clock: &Clock,
    result: &mut PhaseResult,
) -> Result<(), String> {
    while let Some((n, space)) = read_some(replica)? {
        let now = clock.now_ns();
        while let Some(reply) =
            codec.decode(&replica.input[replica.input_start..replica.input_end])?
        {
            let id = reply.id.ok_or("a replica's reply without a request id")?;
            copy_answered(conn, slot_of(id), Some(id), now, result)?;
            if let Outcome::Error(_) = reply.outcome {
                let input = &replica.input[replica.input_start..];
                count_outcome(reply.outcome, input, &reply, result);
            }
            replica.input_start += reply.len;
        }
        reset_consumed(replica);
        if n < space {
            return Ok(());
        }
    }
    Ok(())
}

/// One copy of the request in `slot` was answered; the request is done with its last copy.
#[inline]
fn copy_answered(
    conn: &mut Conn,
    slot: u32,
    id: Option<u64>,
    now: u64,
    result: &mut PhaseResult,
) -> Result<(), String> {
    let left = match conn.copies_left.get_mut(slot as usize) {
        Some(left) if *left > 0 => left,
        _ => return Err(format!("a reply to unknown request id {id:?}")),
    };
    *left -= 1;
    if *left > 0 {
        return Ok(());
    }
    finish_request(conn, slot, id, now, result)
}

/// Frees the slot of a request whose reply came at `now`, and records its latency if it was
/// sent in the measured window.
#[inline]
fn finish_request(
    conn: &mut Conn,
    slot: u32,
    id: Option<u64>,
    now: u64,
    result: &mut PhaseResult,
) -> Result<(), String> {
    let sent = conn
        .sent_at
        .get(slot as usize)
        .copied()
        .unwrap_or(SLOT_FREE);
    if sent == SLOT_FREE {
        return Err(format!("a reply to unknown request id {id:?}"));
    }
    conn.sent_at[slot as usize] = SLOT_FREE;
    conn.free.push(slot);
    conn.outstanding -= 1;
    if sent >= result.record_from_ns {
        result
            .histogram
            .saturating_record(now.saturating_sub(sent).max(1));
        result.recorded += 1;
        result.last_reply_ns = now;
    }
    Ok(())
}

/// Counts one reply's outcome; `input` starts at the reply (for an error's message).
#[inline]
fn count_outcome(outcome: Outcome, input: &[u8], reply: &Decoded, result: &mut PhaseResult) {
    match outcome {
        Outcome::Hit => result.ok += 1,
        Outcome::Miss => result.not_found += 1,
        Outcome::Error(code) => {
            result.errors += 1;
            if result.first_error.is_none() {
                let message = String::from_utf8_lossy(&input[reply.body.clone()]);
                result.first_error = Some(format!("status {code}: {message}"));
            }
        }
        Outcome::EndOfBatch => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Phases across threads and the report.

/// Splits `conns` into `threads` groups, runs one plan per group on its own thread, and puts the
/// connections back together.
fn run_threads(
    conns: &mut Vec<Conn>,
    threads: usize,
    codec: &dyn Codec,
    clock: Clock,
    mut plan_for: impl FnMut(usize) -> Plan,
) -> Result<PhaseResult, String> {
    let mut groups: Vec<Vec<Conn>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, conn) in conns.drain(..).enumerate() {
        groups[index % threads].push(conn);
    }
    let plans: Vec<Plan> = (0..threads).map(&mut plan_for).collect();
    let outcomes: Vec<(Vec<Conn>, Result<PhaseResult, String>)> = if threads == 1 {
        let group = groups.pop().expect("one group");
        let plan = plans.into_iter().next().expect("one plan");
        vec![run_phase(group, plan, codec, clock)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .zip(plans)
                .map(|(group, plan)| scope.spawn(move || run_phase(group, plan, codec, clock)))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("loadgen thread panicked"))
                .collect()
        })
    };
    let mut total: Option<PhaseResult> = None;
    let mut error = None;
    for (group, outcome) in outcomes {
        conns.extend(group);
        match outcome {
            Ok(result) => match &mut total {
                Some(total) => total.merge(&result),
                None => total = Some(result),
            },
            Err(e) => error = Some(e),
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(total.expect("at least one thread")),
    }
}

/// Splits `total` over `parts`, the first ones getting the remainder.
fn share(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

fn percentile_us(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--tls-ca`: the TLS settings of the connections (swarm kinds only).
fn client_tls(args: &Args) -> Result<Option<ClientTls>, String> {
    let Some(ca_file) = &args.tls_ca else {
        return Ok(None);
    };
    if matches!(args.kind, Kind::Redis | Kind::RedisXadd | Kind::Memcached) {
        return Err("--tls-ca is for the swarm kinds (use redis-benchmark --tls)".into());
    }
    let settings = TlsSettings {
        ca_file: ca_file.clone(),
        server_name: args.tls_server_name.clone(),
        ..TlsSettings::default()
    };
    ClientTls::load(&settings)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn run(args: &Args) -> Result<ExitCode, String> {
    check_args(args)?;
    let codec = codec_for(args)?;
    let codec = codec.as_ref();
    let slots = args.pipeline.max(args.prefill_pipeline);
    let clock = Clock(Instant::now());
    let timeout = Duration::from_secs_f64(args.timeout_s);

    let tls = client_tls(args)?;
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let mut conn = connect(args.addr, codec, slots, tls.as_ref())?;
        for replica in &args.replicas {
            conn.replicas
                .push(connect(*replica, codec, 0, tls.as_ref())?);
        }
        conns.push(conn);
    }

    let mut report = serde_json::Map::new();
    report.insert("label".into(), json!(args.label));
    report.insert("tls".into(), json!(tls.is_some()));
    report.insert(
        "kind".into(),
        json!(format!("{:?}", args.kind).to_lowercase()),
    );
    report.insert("addr".into(), json!(args.addr.to_string()));

    if args.prefill > 0 {
        let prefilled = prefill(args, &mut conns, codec, clock, timeout)?;
        report.insert("prefill".into(), prefilled);
    }

    let (count, duration) = match (args.count, args.duration_s) {
        (Some(count), _) => (Some(count), None),
        (None, Some(seconds)) => (None, Some(Duration::from_secs_f64(seconds))),
        (None, None) => (None, Some(Duration::from_secs(10))),
    };
    if count == Some(0) {
        write_json(args, report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let run = RunConfig {
        count,
        duration,
        timeout,
    };
    let measured = measure(args, &mut conns, codec, clock, &run)?;
    print_summary(args, &measured);
    add_to_report(&mut report, args, &measured, &run);
    write_json(args, report)?;
    Ok(if measured.result.errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The flags' ranges and combinations.
fn check_args(args: &Args) -> Result<(), String> {
    if args.pipeline == 0 || args.pipeline > MAX_PIPELINE {
        return Err(format!("--pipeline must be 1 to {MAX_PIPELINE}"));
    }
    if args.prefill_pipeline == 0 || args.prefill_pipeline > MAX_PIPELINE {
        return Err(format!("--prefill-pipeline must be 1 to {MAX_PIPELINE}"));
    }
    if args.connections == 0 || args.threads == 0 || args.threads > args.connections {
        return Err("need at least one connection per thread".into());
    }
    if args.value_size == 0 {
        return Err("--value-size must be at least 1 (empty values are refused)".into());
    }
    if args.multiget
        && (args.kind != Kind::Memcached
            || args.ops != OpMix::Only(Op::Get)
            || args.pipeline_mode != Mode::Batch)
    {
        return Err("--multiget needs --kind memcached, --ops get and batch pipelining".into());
    }
    if !args.replicas.is_empty() && (args.kind != Kind::Dht || args.ops != OpMix::Only(Op::Put)) {
        return Err("--replica needs --kind dht and --ops put".into());
    }
    if args.replicas.len() > 7 {
        return Err("--replica: at most 7 (a replica set of 8)".into());
    }
    Ok(())
}

/// The request codec for `--kind`.
fn codec_for(args: &Args) -> Result<Box<dyn Codec>, String> {
    let codec: Box<dyn Codec> = match args.kind {
        Kind::Dht => Box::new(SwarmCodec::new(
            NodeKind::Dht,
            &args.channel,
            args.value_size,
            !args.replicas.is_empty(),
        )?),
        Kind::Logfiles | Kind::RedisXadd if args.ops != OpMix::Only(Op::Put) => {
            return Err("--kind logfiles and redis-xadd do writes only: --ops put".into())
        }
        Kind::Logfiles => Box::new(SwarmCodec::new(
            NodeKind::Logfiles,
            &args.channel,
            args.value_size,
            false,
        )?),
        Kind::Redis => Box::new(RespCodec::new(args.value_size, false)),
        Kind::RedisXadd => Box::new(RespCodec::new(args.value_size, true)),
        Kind::Memcached => Box::new(MemcachedCodec::new(args.value_size, args.multiget)),
        Kind::Queue => {
            return Err(format!(
                "--kind {}: that node is not built yet (no request codes in docs/protocol.md)",
                format!("{:?}", args.kind).to_lowercase()
            ))
        }
    };
    Ok(codec)
}

/// Writes `--prefill` records (keys 0..N, split over the threads) in window mode, and reports
/// how long that took.
fn prefill(
    args: &Args,
    conns: &mut Vec<Conn>,
    codec: &dyn Codec,
    clock: Clock,
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let cpu_before = sys::self_cpu();
    let started = Instant::now();
    let total = args.prefill;
    let threads = args.threads;
    let deadline = started + timeout;
    let result = run_threads(conns, threads, codec, clock, |thread| {
        let start: u64 = (0..thread).map(|t| share(total, threads, t)).sum();
        let count = share(total, threads, thread);
        Plan {
            pipeline: args.prefill_pipeline,
            mode: Mode::Window,
            budget: Some(count),
            warmup: Duration::ZERO,
            duration: None,
            keys: KeySource::range(start, start + count),
            ops: OpSource::Only(Op::Put),
            deadline,
            spin: args.spin,
        }
    })
    .map_err(|e| format!("prefill: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = sys::self_cpu().since(&cpu_before);
    println!(
        "prefill: {total} puts of {} bytes in {seconds:.2} s = {:.0} ops/s (pipeline {}), {} errors",
        args.value_size,
        total as f64 / seconds,
        args.prefill_pipeline,
        result.errors
    );
    if let Some(error) = &result.first_error {
        return Err(format!("prefill failed: {error}"));
    }
    Ok(json!({
        "records": total,
        "seconds": seconds,
        "ops_per_s": total as f64 / seconds,
        "loadgen_cpu_s": cpu.total().as_secs_f64(),
    }))
}

/// How long the measured phase runs: `count` requests, or for `duration`; at most `timeout`.
struct RunConfig {
    count: Option<u64>,
    duration: Option<Duration>,
    timeout: Duration,
}

/// What the measured phase came to, with the CPU this process and the server used meanwhile.
struct Measured {
    result: PhaseResult,
    wall_s: f64,
    cpu: CpuTimes,
    server_cpu: Option<CpuTimes>,
    server_rss: Option<u64>,
}

impl Measured {
    /// Requests recorded (after the warm-up) and the seconds they took.
    fn ops_and_seconds(&self) -> (u64, f64) {
        let result = &self.result;
        let seconds = (result.last_reply_ns.saturating_sub(result.record_from_ns)) as f64 / 1e9;
        (result.recorded, seconds)
    }

    fn ops_per_s(&self) -> f64 {
        let (ops, seconds) = self.ops_and_seconds();
        if seconds > 0.0 {
            ops as f64 / seconds
        } else {
            0.0
        }
    }

    /// The latency figures, in microseconds.
    fn latency_us(&self) -> [(&'static str, f64); 6] {
        let h = &self.result.histogram;
        [
            ("p50", percentile_us(h, 0.50)),
            ("p90", percentile_us(h, 0.90)),
            ("p99", percentile_us(h, 0.99)),
            ("p99_9", percentile_us(h, 0.999)),
            ("max", h.max() as f64 / 1000.0),
            ("mean", h.mean() / 1000.0),
        ]
    }
}

/// Runs the measured phase on every connection.
fn measure(
    args: &Args,
    conns: &mut Vec<Conn>,
    codec: &dyn Codec,
    clock: Clock,
    run: &RunConfig,
) -> Result<Measured, String> {
    let (count, duration) = (run.count, run.duration);
    let server_before = args.server_pid.and_then(sys::pid_cpu);
    let cpu_before = sys::self_cpu();
    let wall_start = Instant::now();
    let deadline = wall_start + run.timeout;
    let threads = args.threads;
    let needed = count.unwrap_or(u64::MAX);
    let result = run_threads(conns, threads, codec, clock, |thread| Plan {
        pipeline: args.pipeline,
        mode: args.pipeline_mode,
        budget: count.map(|count| share(count, threads, thread)),
        warmup: Duration::from_secs_f64(args.warmup_s),
        duration,
        keys: KeySource::new(args.keys, thread, threads, args.seed, needed),
        ops: OpSource::new(args.ops, thread, args.seed),
        deadline,
        spin: args.spin,
    })?;
    let wall = wall_start.elapsed();
    let cpu = sys::self_cpu().since(&cpu_before);
    let server_cpu = match (args.server_pid, server_before) {
        (Some(pid), Some(before)) => sys::pid_cpu(pid).map(|after| after.since(&before)),
        _ => None,
    };
    let server_rss = args.server_pid.and_then(sys::pid_rss);
    Ok(Measured {
        result,
        wall_s: wall.as_secs_f64(),
        cpu,
        server_cpu,
        server_rss,
    })
}

/// Prints the measured phase: throughput, latency, and the CPU of this process and the server.
fn print_summary(args: &Args, m: &Measured) {
    let (ops, seconds) = m.ops_and_seconds();
    let ops_per_s = m.ops_per_s();
    let latency = m.latency_us();
    let (result, cpu, wall_s) = (&m.result, m.cpu, m.wall_s);
    let cpu_s = cpu.total().as_secs_f64();

    println!(
        "loadgen: {} {} | {} conns x P{} ({:?}) | {}-byte values | keys {} | {} thread(s)",
        format!("{:?}", args.kind).to_lowercase(),
        args.ops,
        args.connections,
        args.pipeline,
        args.pipeline_mode,
        args.value_size,
        args.keys,
        args.threads
    );
    println!(
        "  throughput: {ops} ops in {seconds:.3} s = {ops_per_s:.0} ops/s  (ok {}, not found {}, errors {})",
        result.ok, result.not_found, result.errors
    );
    println!(
        "  latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
        latency[0].1, latency[1].1, latency[2].1, latency[3].1, latency[4].1, latency[5].1
    );
    println!(
        "  loadgen CPU: user {:.2} s + sys {:.2} s = {cpu_s:.2} s over {wall_s:.2} s wall ({:.0}% of one core); {:.0} ops per CPU-second",
        cpu.user.as_secs_f64(),
        cpu.system.as_secs_f64(),
        100.0 * cpu_s / wall_s,
        if cpu_s > 0.0 { ops as f64 / cpu_s } else { 0.0 },
    );
    if let (Some(pid), Some(server)) = (args.server_pid, m.server_cpu) {
        let server_s = server.total().as_secs_f64();
        println!(
            "  server pid {pid} CPU: user {:.2} s + sys {:.2} s = {server_s:.2} s ({:.0}% of one core); {:.2} us CPU per op; RSS {:.1} MiB",
            server.user.as_secs_f64(),
            server.system.as_secs_f64(),
            100.0 * server_s / wall_s,
            if ops > 0 { 1e6 * server_s / ops as f64 } else { 0.0 },
            m.server_rss.unwrap_or(0) as f64 / (1024.0 * 1024.0),
        );
    }
    if let Some(error) = &result.first_error {
        eprintln!("  first error: {error}");
    }
}

/// Adds the measured phase to the JSON report.
fn add_to_report(
    report: &mut serde_json::Map<String, serde_json::Value>,
    args: &Args,
    m: &Measured,
    run: &RunConfig,
) {
    let (ops, seconds) = m.ops_and_seconds();
    let (result, cpu, wall_s) = (&m.result, m.cpu, m.wall_s);
    let cpu_s = cpu.total().as_secs_f64();
    let (server_cpu, server_rss) = (m.server_cpu, m.server_rss);
    let latency_json: serde_json::Map<String, serde_json::Value> = m
        .latency_us()
        .iter()
        .map(|(name, value)| (name.to_string(), json!(value)))
        .collect();
    report.insert(
        "config".into(),
        json!({
            "ops": args.ops.to_string(),
            "connections": args.connections,
            "pipeline": args.pipeline,
            "pipeline_mode": format!("{:?}", args.pipeline_mode).to_lowercase(),
            "multiget": args.multiget,
            "value_size": args.value_size,
            "keys": args.keys.to_string(),
            "threads": args.threads,
            "count": run.count,
            "duration_s": run.duration.map(|d| d.as_secs_f64()),
            "warmup_s": args.warmup_s,
        }),
    );
    report.insert("ops".into(), json!(ops));
    report.insert("seconds".into(), json!(seconds));
    report.insert("ops_per_s".into(), json!(m.ops_per_s()));
    report.insert("ok".into(), json!(result.ok));
    report.insert("not_found".into(), json!(result.not_found));
    report.insert("errors".into(), json!(result.errors));
    report.insert("first_error".into(), json!(result.first_error));
    report.insert("latency_us".into(), serde_json::Value::Object(latency_json));
    report.insert(
        "loadgen_cpu".into(),
        json!({
            "user_s": cpu.user.as_secs_f64(),
            "sys_s": cpu.system.as_secs_f64(),
            "total_s": cpu_s,
            "wall_s": wall_s,
            "utilisation": cpu_s / wall_s,
            "ops_per_cpu_s": if cpu_s > 0.0 { ops as f64 / cpu_s } else { 0.0 },
        }),
    );
    if let Some(pid) = args.server_pid {
        report.insert(
            "server".into(),
            json!({
                "pid": pid,
                "cpu_s": server_cpu.map(|c: CpuTimes| c.total().as_secs_f64()),
                "user_s": server_cpu.map(|c| c.user.as_secs_f64()),
                "sys_s": server_cpu.map(|c| c.system.as_secs_f64()),
                "utilisation": server_cpu.map(|c| c.total().as_secs_f64() / wall_s),
                "cpu_us_per_op": server_cpu.map(|c| 1e6 * c.total().as_secs_f64() / ops.max(1) as f64),
                "rss_bytes": server_rss,
            }),
        );
    }
}

fn write_json(
    args: &Args,
    report: serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::Value::Object(report))
            .map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_distributions_and_mixes() {
        assert_eq!(
            "uniform:1_000".parse::<KeyDist>(),
            Ok(KeyDist::Uniform { space: 1000 })
        );
        assert_eq!(
            "sequential".parse::<KeyDist>(),
            Ok(KeyDist::Sequential { space: u64::MAX })
        );
        assert!("zipf:10:0".parse::<KeyDist>().is_err());
        assert!("uniform".parse::<KeyDist>().is_err());
        assert_eq!("mixed:0.9".parse::<OpMix>(), Ok(OpMix::Mixed(0.9)));
        assert!("mixed:2".parse::<OpMix>().is_err());
    }

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let zipf = Zipf::new(1000, 0.99);
        let mut rng = SplitMix64(7);
        let mut counts = vec![0u32; 1001];
        for _ in 0..200_000 {
            let k = zipf.sample(&mut rng);
            assert!((1..=1000).contains(&k));
            counts[k as usize] += 1;
        }
        // P(1) / P(2) = 2^0.99 ≈ 1.99; rank 1 gets about 13% for n = 1000.
        let ratio = f64::from(counts[1]) / f64::from(counts[2]);
        assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
        assert!(counts[1] > 20_000 && counts[1] < 32_000, "{}", counts[1]);
    }

    #[test]
    fn dht_requests_decode_as_the_node_would() {
        let codec = SwarmCodec::new(NodeKind::Dht, "bench", 100, false).unwrap();
        let mut out = Vec::new();
        codec.encode(Op::Put, 0xdead_beef, 77, &mut out);
        codec.encode(Op::Get, 42, 78, &mut out);
        let header = parse_frame(&out, DEFAULT_MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!((header.code, header.request_id), (PUT.0, 77));
        let put = PutRequest::decode(&out[HEADER_LEN..header.frame_len()]).unwrap();
        assert_eq!(
            (put.channel, put.key, put.value.len()),
            ("bench", 0xdead_beef, 100)
        );
        let rest = &out[header.frame_len()..];
        let header = parse_frame(rest, DEFAULT_MAX_FRAME_BYTES).unwrap().unwrap();
        assert_eq!((header.code, header.request_id), (GET.0, 78));
        let get = KeyRequest::decode(&rest[HEADER_LEN..header.frame_len()]).unwrap();
        assert_eq!((get.channel, get.key), ("bench", 42));
    }

    #[test]
    fn replicated_puts_are_put_versions_with_rising_versions() {
        let codec = SwarmCodec::new(NodeKind::Dht, "bench", 100, true).unwrap();
        let mut out = Vec::new();
        codec.encode(Op::Put, 7, 1, &mut out);
        codec.encode(Op::Put, 7, 2, &mut out);
        let mut versions = Vec::new();
        let mut rest = &out[..];
        while let Some(header) = parse_frame(rest, DEFAULT_MAX_FRAME_BYTES).unwrap() {
            assert_eq!(header.code, PUT_VERSION.0);
            let put = PutVersionRequest::decode(&rest[HEADER_LEN..header.frame_len()]).unwrap();
            assert_eq!((put.channel, put.key, put.value.len()), ("bench", 7, 100));
            versions.push(put.version);
            rest = &rest[header.frame_len()..];
        }
        assert_eq!(versions.len(), 2);
        assert!(
            versions[0] > 1 << 56,
            "Unix milliseconds in the top 48 bits"
        );
        assert_eq!(versions[1], versions[0] + 1);
    }

    #[test]
    fn resp_encodes_redis_benchmark_keys_and_decodes_replies() {
        let codec = RespCodec::new(3, false);
        let mut out = Vec::new();
        codec.encode(Op::Get, 123, 0, &mut out);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000123\r\n");
        out.clear();
        codec.encode(Op::Put, 5, 0, &mut out);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000005\r\n$3\r\nabc\r\n"
        );
        let reply = codec.decode(b"$3\r\nabc\r\n+OK\r\n").unwrap().unwrap();
        assert_eq!((reply.len, reply.outcome), (9, Outcome::Hit));
        assert!(codec.decode(b"$3\r\nab").unwrap().is_none());
        let miss = codec.decode(b"$-1\r\n").unwrap().unwrap();
        assert_eq!((miss.len, miss.outcome), (5, Outcome::Miss));
        let error = codec.decode(b"-ERR x\r\n").unwrap().unwrap();
        assert_eq!(error.outcome, Outcome::Error(0));
    }
}
