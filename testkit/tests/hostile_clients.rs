//! Hostile clients against the live node of each kind (dht, logfiles, queue): random bytes
//! before and after the handshake, frames announcing huge lengths, unknown request codes, every
//! request code of the kind with random bodies, a flood of connections over the limit (refused
//! at once, with the ConnectionLimit verdict, and counted), and a client that requests a lot and
//! never reads. Afterwards the node must still be up, serve a new client, hold exactly the data
//! written before (every value, in order), and its memory must have stayed bounded.
//!
//! The core's behaviour under each abuse is tested in detail in node-core/tests/server.rs with a
//! test service; this file checks that the real nodes, with their real request handlers, hold up.

use node_core::protocol::frame::{write_frame, FrameType};
use node_core::protocol::handshake::{HelloVerdict, ServerHello, SERVER_HELLO_LEN};
use node_core::protocol::{dht, logfiles, queue, RequestCode, Status};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{get_stats, stat, workspace_binary, Conn, TempNode, XorShift};

const CONFIG: &str = "[server]\nmax_connections = 64\noutput_buffer_bytes = 1048576\n";
const PRECIOUS: &str = "precious";
const RECORDS: u64 = 200;

fn random_bytes(rng: &mut XorShift, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Dht,
    Logfiles,
    Queue,
}

impl Kind {
    fn binary(self) -> std::path::PathBuf {
        match self {
            Kind::Dht => workspace_binary("dhtnode", "dhtnode"),
            Kind::Logfiles => workspace_binary("logfilesnode", "logfilesnode"),
            Kind::Queue => workspace_binary("queuenode", "queuenode"),
        }
    }

    /// The kind's request codes (those the node names).
    fn codes(self) -> Vec<RequestCode> {
        (0..=255u8)
            .map(RequestCode)
            .filter(|code| match self {
                Kind::Dht => dht::request_name(*code).is_some(),
                Kind::Logfiles => logfiles::request_name(*code).is_some(),
                Kind::Queue => queue::request_name(*code).is_some(),
            })
            .collect()
    }

    fn value(n: u64) -> Vec<u8> {
        format!("precious value {n:06}").into_bytes()
    }

    fn write_precious(self, conn: &mut Conn) {
        for n in 0..RECORDS {
            let value = Self::value(n);
            let mut body = Vec::new();
            let code = match self {
                Kind::Dht => {
                    dht::PutRequest {
                        channel: PRECIOUS,
                        key: n,
                        value: &value,
                    }
                    .encode(&mut body);
                    dht::PUT
                }
                Kind::Logfiles => {
                    logfiles::PutRequest {
                        channel: PRECIOUS,
                        key: n,
                        value: &value,
                    }
                    .encode(&mut body);
                    logfiles::PUT
                }
                Kind::Queue => {
                    queue::PushRequest {
                        channel: PRECIOUS,
                        value: &value,
                    }
                    .encode(&mut body);
                    queue::PUSH
                }
            };
            let (status, reply) = conn.request(code, body);
            assert_eq!(
                status,
                Status::Ok,
                "{self:?} write: {}",
                String::from_utf8_lossy(&reply)
            );
        }
    }

    /// Checks the data written by `write_precious` is all there, unchanged.
    fn check_precious(self, conn: &mut Conn) {
        let mut channel = Vec::new();
        match self {
            Kind::Dht => {
                for n in 0..RECORDS {
                    let mut body = Vec::new();
                    dht::KeyRequest {
                        channel: PRECIOUS,
                        key: n,
                    }
                    .encode(&mut body);
                    let (status, value) = conn.request(dht::GET, body);
                    assert_eq!((status, value), (Status::Ok, Self::value(n)), "dht key {n}");
                }
            }
            Kind::Logfiles => {
                let mut body = Vec::new();
                logfiles::GetAllRequest {
                    channel: PRECIOUS,
                    filter: logfiles::Filter::NONE,
                }
                .encode(&mut body);
                let (items, status, _) = conn.stream(logfiles::GET_ALL, body);
                assert_eq!(status, Status::Ok);
                let mut scratch = Vec::new();
                let mut records = Vec::new();
                for (_, item) in items {
                    let batch = node_core::protocol::batch::decode_batch(&item, &mut scratch)
                        .expect("batch");
                    records.extend(batch.map(|(key, value)| (key, value.to_vec())));
                }
                let expected: Vec<_> = (0..RECORDS).map(|n| (n, Self::value(n))).collect();
                assert_eq!(records, expected, "logfiles records");
            }
            Kind::Queue => {
                queue::encode_channel(&mut channel, PRECIOUS);
                let (status, body) = conn.request(queue::GET_CHANNEL_SIZE, channel.clone());
                assert_eq!(status, Status::Ok);
                let size = queue::QueueSize::decode(&body).expect("size");
                assert_eq!(size.records, RECORDS, "queue records");
                // Every value, in order: popped, then pushed back in the same order, so that
                // the queue holds what it held before the check.
                let pops = vec![(queue::POP, channel.clone()); RECORDS as usize];
                let popped: Vec<Vec<u8>> = conn
                    .pipeline(&pops)
                    .into_iter()
                    .enumerate()
                    .map(|(n, (status, value))| {
                        assert_eq!(status, Status::Ok, "queue pop {n}");
                        value
                    })
                    .collect();
                let expected: Vec<Vec<u8>> = (0..RECORDS).map(Self::value).collect();
                assert_eq!(popped, expected, "queue records, in order");
                let (status, _) = conn.request(queue::POP, channel);
                assert_eq!(status, Status::NotFound, "a record beyond those written");
                self.write_precious(conn);
            }
        }
    }
}

/// The resident memory of process `pid`; a /proc that cannot say fails the test (the memory
/// checks would check nothing).
fn rss_kib(pid: u32) -> u64 {
    let rss = testkit::proc_status(pid, "VmRSS");
    assert!(rss > 0, "VmRSS 0 for a running node (pid {pid})");
    rss
}

fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
}

/// Sends `bytes` and reads until the node closes the connection (or 5 s pass).
fn send_and_drain(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = raw(addr);
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    node_core::protocol::handshake::ClientHello {
        version: node_core::protocol::PROTOCOL_VERSION,
        wanted_kind: None,
        name: Vec::new(),
        proof: [0; node_core::protocol::handshake::PROOF_LEN],
    }
    .encode(&mut out)
    .expect("hello");
    out
}

fn abuse(kind: Kind, addr: SocketAddr, rng: &mut XorShift) {
    // Random bytes instead of a hello, and after a good hello.
    for round in 0..40 {
        let len = 1 + (rng.next_u64() % 3000) as usize;
        let mut bytes = if round % 2 == 0 {
            Vec::new()
        } else {
            hello_bytes()
        };
        bytes.extend(random_bytes(rng, len));
        send_and_drain(addr, &bytes);
    }
    // Frames announcing huge lengths, and truncated frames.
    for declared in [u32::MAX, 1 << 30, 17 << 20] {
        let mut bytes = hello_bytes();
        let mut frame = Vec::new();
        write_frame(&mut frame, FrameType::Request, 16, 1, &[]);
        frame[4..8].copy_from_slice(&declared.to_le_bytes());
        bytes.extend_from_slice(&frame);
        send_and_drain(addr, &bytes);
    }
    let mut truncated = hello_bytes();
    write_frame(
        &mut truncated,
        FrameType::Request,
        16,
        1,
        &[1, 2, 3, 4, 5, 6],
    );
    truncated.truncate(truncated.len() - 3);
    send_and_drain(addr, &truncated);

    // Unknown codes and every code of the kind with random bodies, on one connection that stays.
    let mut conn = Conn::open(addr);
    for code in [0u8, 4, 15, 200, 255] {
        let (status, _) = conn.request(RequestCode(code), random_bytes(rng, 20));
        assert_eq!(status, Status::UnsupportedRequest, "{kind:?} code {code}");
    }
    for code in kind.codes() {
        for _ in 0..25 {
            let len = (rng.next_u64() % 64) as usize;
            let body = random_bytes(rng, len);
            // Any status will do (streams may run); the node must answer and stay up. Streams are
            // sent on their own connection, which is then dropped without reading.
            let mut bytes = hello_bytes();
            write_frame(&mut bytes, FrameType::Request, code.0, 1, &body);
            send_and_drain(addr, &bytes);
        }
    }

    flood(kind, addr, &mut conn);
}

/// A flood of connections over the limit (64): every one is answered at once, the excess with
/// the ConnectionLimit verdict and a closed connection (refused, not queued forever), and the
/// node counts each refusal.
fn flood(kind: Kind, addr: SocketAddr, conn: &mut Conn) {
    const FLOOD: usize = 150;
    let refused_before =
        stat(&get_stats(conn), "connections_refused").expect("connections_refused");
    let streams: Vec<TcpStream> = (0..FLOOD).map(|_| raw(addr)).collect();
    let (mut admitted, mut refused) = (0usize, 0usize);
    for (n, mut stream) in streams.iter().enumerate() {
        let mut hello = [0u8; SERVER_HELLO_LEN];
        stream
            .read_exact(&mut hello)
            .unwrap_or_else(|err| panic!("{kind:?}: flood connection {n} got no hello: {err}"));
        match ServerHello::decode(&hello).expect("a valid hello").verdict {
            HelloVerdict::Ready => admitted += 1,
            HelloVerdict::ConnectionLimit => {
                refused += 1;
                let mut rest = [0u8; 16];
                let closed = matches!(stream.read(&mut rest), Ok(0) | Err(_));
                assert!(closed, "{kind:?}: refused connection {n} left open");
            }
            other => panic!("{kind:?}: flood connection {n}: verdict {other:?}"),
        }
    }
    assert_eq!(admitted + refused, FLOOD);
    // 64 in all; this test holds a few of them already.
    assert!(
        admitted < 64 && refused > FLOOD - 64,
        "{kind:?}: {admitted} admitted, {refused} refused over a limit of 64"
    );
    drop(streams);
    let refused_after = stat(&get_stats(conn), "connections_refused").expect("connections_refused");
    assert_eq!(
        refused_after - refused_before,
        refused as u64,
        "{kind:?}: refusals counted"
    );
}

/// Many big reads requested by a client that never reads its socket.
fn never_reads(kind: Kind, addr: SocketAddr) -> TcpStream {
    let mut stream = raw(addr);
    let mut bytes = hello_bytes();
    for id in 1..=500u64 {
        let mut body = Vec::new();
        let code = match kind {
            Kind::Dht => {
                dht::GetAllRequest {
                    channel: PRECIOUS,
                    keys_only: false,
                    resume_after: None,
                    filter: b"",
                    scope: dht::GetAllScope::All,
                }
                .encode(&mut body);
                dht::GET_ALL
            }
            Kind::Logfiles => {
                logfiles::GetAllRequest {
                    channel: PRECIOUS,
                    filter: logfiles::Filter::NONE,
                }
                .encode(&mut body);
                logfiles::GET_ALL
            }
            Kind::Queue => {
                queue::encode_channel(&mut body, PRECIOUS);
                queue::GET_CHANNEL_SIZE
            }
        };
        write_frame(&mut bytes, FrameType::Request, code.0, id, &body);
    }
    // Also grant a huge credit to every stream, so only the output bound holds them back.
    for id in 1..=500u64 {
        write_frame(
            &mut bytes,
            FrameType::Control,
            node_core::protocol::ControlCode::Credit as u8,
            id,
            &(1u32 << 20).to_le_bytes(),
        );
    }
    stream.write_all(&bytes).expect("send");
    stream
}

fn survive(kind: Kind) {
    let binary = kind.binary();
    let node = TempNode::start(binary.to_str().expect("utf-8 path"), CONFIG, &[]);
    let pid = node.child.id();
    let mut conn = Conn::open(node.addr);
    kind.write_precious(&mut conn);
    let rss_before = rss_kib(pid);

    let stalled = never_reads(kind, node.addr);
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ ((kind as u64) << 8));
    abuse(kind, node.addr, &mut rng);
    std::thread::sleep(Duration::from_millis(200));
    let rss_after = rss_kib(pid);
    drop(stalled);

    let mut fresh = Conn::open(node.addr);
    kind.check_precious(&mut fresh);
    kind.check_precious(&mut conn);
    let grown_mib = rss_after.saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 128,
        "{kind:?}: memory grew by {grown_mib} MiB under abuse"
    );
    let mut node = node;
    assert!(
        node.child.try_wait().expect("try_wait").is_none(),
        "{kind:?} node exited"
    );
    node.node.signal("TERM");
    assert_eq!(node.node.wait_exit().code(), Some(0), "{kind:?} clean exit");
}

#[test]
fn dht_node_survives_hostile_clients() {
    survive(Kind::Dht);
}

#[test]
fn logfiles_node_survives_hostile_clients() {
    survive(Kind::Logfiles);
}

#[test]
fn queue_node_survives_hostile_clients() {
    survive(Kind::Queue);
}

/// Thousands of clients that connect, shake hands and then do nothing: each node keeps serving
/// a new client correctly, its memory stays bounded, and all of them are let go at the end.
fn idle_crowd(kind: Kind) {
    const IDLE: usize = 2000;
    let binary = kind.binary();
    let config = "[server]\nmax_connections = 3000\n";
    let node = TempNode::start(binary.to_str().expect("utf-8 path"), config, &[]);
    let pid = node.child.id();
    let mut conn = Conn::open(node.addr);
    kind.write_precious(&mut conn);
    let rss_before = rss_kib(pid);
    let crowd: Vec<Conn> = (0..IDLE).map(|_| Conn::open(node.addr)).collect();
    let rss_crowded = rss_kib(pid);
    let mut fresh = Conn::open(node.addr);
    kind.check_precious(&mut fresh);
    let (status, body) = fresh.request(RequestCode::GET_NUM_CONNECTIONS, Vec::new());
    assert_eq!(status, Status::Ok);
    let open = u64::from_le_bytes(body[..8].try_into().expect("u64"));
    assert!(open >= IDLE as u64 + 2, "{kind:?}: {open} connections open");
    let grown_mib = rss_crowded.saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 256,
        "{kind:?}: {IDLE} idle connections cost {grown_mib} MiB"
    );
    drop(crowd);
    kind.check_precious(&mut conn);
    let mut node = node;
    node.node.signal("TERM");
    assert_eq!(node.node.wait_exit().code(), Some(0), "{kind:?} clean exit");
}

#[test]
fn thousands_of_idle_connections_leave_every_node_serving() {
    for kind in [Kind::Dht, Kind::Logfiles, Kind::Queue] {
        idle_crowd(kind);
    }
}
