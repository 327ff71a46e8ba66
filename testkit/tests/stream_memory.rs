//! What a client that never reads costs, measured on the real nodes of each kind
//! (docs/security.md, "Limits"): ten connections each pipeline 1 000 bulk streams (dht GetAll,
//! logfiles GetAll over 400 bucket files, queue Consume) over a channel of 24 MB, grant every
//! stream a large credit, and never read a byte. The node's anonymous resident memory (`RssAnon`
//! in /proc/<pid>/status: its heap; file pages it maps, the page cache, are not its cost and
//! the kernel reclaims them) may grow by at most what docs/security.md promises per connection:
//! `output_buffer_bytes` of unsent output plus `stream_memory_bytes` of stream state, with a
//! quarter more for the allocator.
//!
//! This is a memory bound, not a timing: the test waits (with a generous deadline) until the
//! node has taken every request and its memory has settled, then compares. Run with
//! `--nocapture` to see the figures.

use node_core::protocol::batch::BatchBuilder;
use node_core::protocol::channels::encode_put_batch;
use node_core::protocol::frame::{write_frame, FrameType};
use node_core::protocol::{dht, logfiles, queue, ControlCode, RequestCode, Status};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{anonymous_hello, get_stats, stat, Conn, Kind, XorShift};

const CONNECTIONS: usize = 10;
const STREAMS_PER_CONNECTION: u64 = 1000;
const CHANNEL: &str = "big";
const VALUE_BYTES: usize = 1000;

/// Pseudo-random value bytes: LZ4 cannot shrink them, so batches on the wire are full size.
fn value(n: u64) -> Vec<u8> {
    let mut random = XorShift::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (0..VALUE_BYTES).map(|_| random.next_u64() as u8).collect()
}

/// The attack, kind by kind.
trait Attack {
    fn fill(self, conn: &mut Conn);
    fn stream_request(self) -> (RequestCode, Vec<u8>);
}

impl Attack for Kind {
    /// Writes about 24 MB to the channel: records spread over many buckets for logfiles (a
    /// GetAll then walks thousands of bucket files).
    fn fill(self, conn: &mut Conn) {
        const BATCHES: u64 = 400;
        const PER_BATCH: u64 = 60;
        for batch_index in 0..BATCHES {
            let mut batch = BatchBuilder::new(1 << 20);
            for i in 0..PER_BATCH {
                let n = batch_index * PER_BATCH + i;
                // logfiles: a bucket spans 4096 keys; 60 records per bucket, 400 buckets.
                let key = match self {
                    Kind::Logfiles => n * 68,
                    _ => n,
                };
                batch.push(key, &value(n));
            }
            let mut encoded = Vec::new();
            batch.finish_into(&mut encoded);
            let mut body = Vec::new();
            let code = match self {
                Kind::Dht => {
                    encode_put_batch(&mut body, CHANNEL, &encoded);
                    dht::PUT_BATCH
                }
                Kind::Logfiles => {
                    encode_put_batch(&mut body, CHANNEL, &encoded);
                    logfiles::PUT_BATCH
                }
                Kind::Queue => {
                    queue::ProduceRequest {
                        channels: vec![CHANNEL],
                        batch: &encoded,
                    }
                    .encode(&mut body);
                    queue::PRODUCE
                }
            };
            let (status, reply) = conn.request(code, body);
            assert_eq!(
                status,
                Status::Ok,
                "{self:?} fill: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }

    /// One bulk stream request over the channel.
    fn stream_request(self) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        match self {
            Kind::Dht => {
                dht::GetAllRequest {
                    channel: CHANNEL,
                    keys_only: false,
                    resume_after: None,
                    filter: b"",
                    scope: dht::GetAllScope::All,
                }
                .encode(&mut body);
                (dht::GET_ALL, body)
            }
            Kind::Logfiles => {
                logfiles::GetAllRequest {
                    channel: CHANNEL,
                    filter: logfiles::Filter::NONE,
                }
                .encode(&mut body);
                (logfiles::GET_ALL, body)
            }
            Kind::Queue => {
                queue::ConsumeRequest {
                    channel: CHANNEL,
                    subscriber: "",
                    max_batch_records: 0,
                }
                .encode(&mut body);
                (queue::CONSUME, body)
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    testkit::proc_status(pid, "RssAnon")
}

/// Opens a connection, pipelines `STREAMS_PER_CONNECTION` stream requests with a large credit
/// each, and returns the socket, never to be read.
fn never_reads(kind: Kind, addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut bytes = anonymous_hello();
    let (code, body) = kind.stream_request();
    for id in 1..=STREAMS_PER_CONNECTION {
        write_frame(&mut bytes, FrameType::Request, code.0, id, &body);
        write_frame(
            &mut bytes,
            FrameType::Control,
            ControlCode::Credit as u8,
            id,
            &(1u32 << 20).to_le_bytes(),
        );
    }
    stream.write_all(&bytes).expect("send the requests");
    stream
}

/// The name of the stream request in the node's stats.
fn request_stat(kind: Kind) -> String {
    let (code, _) = kind.stream_request();
    let name = kind.request_name(code).expect("a named request");
    format!("request/{name}/handled")
}

/// Waits until the node has answered or started `expected` stream requests in all, then until
/// its memory stays within 1 % over eight samples (two seconds), and returns the highest.
fn settled_rss(pid: u32, observer: &mut Conn, handled_stat: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut history: Vec<u64> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let handled = stat(&get_stats(observer), handled_stat).unwrap_or(0);
        let rss = rss_kib(pid);
        assert!(
            Instant::now() < deadline,
            "the node's memory did not settle: {handled} of {expected} requests taken, last \
             samples {:?} KiB",
            &history[history.len().saturating_sub(8)..]
        );
        if handled < expected {
            continue;
        }
        history.push(rss);
        let recent = &history[history.len().saturating_sub(8)..];
        let (low, high) = (
            recent.iter().min().copied().unwrap_or(0),
            recent.iter().max().copied().unwrap_or(0),
        );
        if recent.len() == 8 && high - low <= high / 100 {
            return high;
        }
    }
}

/// Runs the attack on a node of `kind` started with `config`; returns the growth of its memory
/// per connection, in KiB.
fn attack(kind: Kind, config: &str) -> u64 {
    let node = kind.start(config);
    let pid = node.child.id();
    let mut conn = Conn::open(node.addr);
    // The node may be busy for a while taking 10 000 stream requests.
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    kind.fill(&mut conn);
    let handled_stat = request_stat(kind);
    let before = settled_rss(pid, &mut conn, &handled_stat, 0);
    let stalled: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| never_reads(kind, node.addr))
        .collect();
    let expected = CONNECTIONS as u64 * STREAMS_PER_CONNECTION;
    let after = settled_rss(pid, &mut conn, &handled_stat, expected);
    let per_connection_kib = after.saturating_sub(before) / CONNECTIONS as u64;
    eprintln!(
        "{kind:?}: RssAnon {before} KiB before, {after} KiB with {CONNECTIONS} connections that \
         never read: {per_connection_kib} KiB per connection (VmRSS {} KiB)",
        testkit::proc_status(pid, "VmRSS")
    );
    drop(stalled);
    // The node still serves.
    let (status, _) = conn.request(RequestCode::GET_VERSION, Vec::new());
    assert_eq!(status, Status::Ok, "{kind:?} still serves");
    node.node.stop();
    per_connection_kib
}

/// Small budgets, so that what the node promises is far below what keeping stream state per
/// stream used to cost (a batch buffer or a list of bucket files per stream: 6 to 55 MiB per
/// connection under this attack).
const OUTPUT_BUFFER_BYTES: u64 = 1024 * 1024;
const STREAM_MEMORY_BYTES: u64 = 256 * 1024;

fn check(kind: Kind) {
    let config = format!(
        "[server]\noutput_buffer_bytes = {OUTPUT_BUFFER_BYTES}\nstream_memory_bytes = \
         {STREAM_MEMORY_BYTES}\n"
    );
    let per_connection_kib = attack(kind, &config);
    // docs/security.md: unsent output plus stream state, per connection. A quarter more for
    // what the allocator and the connection's own buffers add.
    let bound_kib = (OUTPUT_BUFFER_BYTES + STREAM_MEMORY_BYTES) / 1024 * 5 / 4;
    assert!(
        per_connection_kib <= bound_kib,
        "{kind:?}: a connection that never reads cost {per_connection_kib} KiB; the bound is \
         {bound_kib} KiB (output_buffer_bytes + stream_memory_bytes, and a quarter for the \
         allocator)"
    );
}

#[test]
fn dht_never_reading_clients_cost_bounded_memory() {
    check(Kind::Dht);
}

#[test]
fn logfiles_never_reading_clients_cost_bounded_memory() {
    check(Kind::Logfiles);
}

#[test]
fn queue_never_reading_clients_cost_bounded_memory() {
    check(Kind::Queue);
}
