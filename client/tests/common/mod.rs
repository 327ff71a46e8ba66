//! Shared pieces of the client's integration tests:
//!
//! - [`TestService`]: a small node (kind chosen by the test) whose requests exercise the client:
//!   echo, an error reply, a counted stream whose production the test can observe, and a stream
//!   that never sends (for timeouts);
//! - [`start`] / [`start_at`]: a real node (`node_core::server`) in-process on 127.0.0.1;
//! - [`fake_node`]: a raw TCP peer driven by a script, for misbehaviour a real node never shows
//!   (bad magic, another version, dropping a connection mid-request, items beyond credit).

#![allow(dead_code)] // Each test binary uses a different subset.

use node_core::auth::Credentials;
use node_core::protocol::frame::{write_frame, FrameHeader, FrameType, HEADER_LEN};
use node_core::protocol::handshake::{
    ClientHello, HandshakeOutcome, HandshakeResult, HelloVerdict, ServerHello,
    MAX_CLIENT_HELLO_LEN, NONCE_LEN,
};
use node_core::protocol::{NodeKind, RequestCode, Status, PROTOCOL_VERSION};
use node_core::server::{
    self, Handled, Reply, Request, RunningServer, ServerOptions, Service, StreamOut, StreamStep,
    StreamTask,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Replies Ok with the request body.
pub const ECHO: RequestCode = RequestCode(16);
/// Body `u32 n`: a stream of `n` Items (code [`COUNT_ITEM`], body `u32` index), then Ok.
pub const COUNT: RequestCode = RequestCode(17);
/// A stream that never sends anything.
pub const NEVER: RequestCode = RequestCode(18);
/// Replies BadChannelName with [`FAIL_MESSAGE`].
pub const FAIL: RequestCode = RequestCode(19);

pub const COUNT_ITEM: u8 = 1;
pub const FAIL_MESSAGE: &str = "channel 'a b' has a space";

pub const KEY_A: &str = "00112233445566778899aabbccddeeff";
pub const KEY_B: &str = "ffeeddccbbaa99887766554433221100";

pub struct TestService {
    kind: NodeKind,
    /// Items produced by COUNT streams so far, for the test to watch flow control.
    produced: Arc<AtomicU64>,
}

struct CountTask {
    next: u32,
    total: u32,
    produced: Arc<AtomicU64>,
}

struct NeverTask;

impl Service for TestService {
    fn kind(&self) -> NodeKind {
        self.kind
    }

    fn software_version(&self) -> &'static str {
        "0.1.0"
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        match code {
            ECHO => Some("Echo"),
            COUNT => Some("Count"),
            NEVER => Some("Never"),
            FAIL => Some("Fail"),
            _ => None,
        }
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        match request.code {
            COUNT => {
                let total = request
                    .body
                    .first_chunk::<4>()
                    .map_or(0, |b| u32::from_le_bytes(*b));
                Handled::Stream(Box::new(CountTask {
                    next: 0,
                    total,
                    produced: Arc::clone(&self.produced),
                }))
            }
            NEVER => Handled::Stream(Box::new(NeverTask)),
            FAIL => {
                reply.error(Status::BadChannelName, FAIL_MESSAGE);
                Handled::Replied
            }
            _ => {
                reply.ok(request.body);
                Handled::Replied
            }
        }
    }
}

impl StreamTask<TestService> for CountTask {
    fn resume(&mut self, _service: &mut TestService, out: &mut StreamOut<'_>) -> StreamStep {
        if self.next == self.total {
            out.finish(Status::Ok, &self.total.to_le_bytes());
            return StreamStep::Done;
        }
        out.item(COUNT_ITEM, &self.next.to_le_bytes());
        self.next += 1;
        self.produced.fetch_add(1, Ordering::SeqCst);
        StreamStep::Continue
    }
}

impl StreamTask<TestService> for NeverTask {
    fn resume(&mut self, _service: &mut TestService, _out: &mut StreamOut<'_>) -> StreamStep {
        StreamStep::Wait
    }
}

pub struct TestNode {
    pub server: RunningServer,
    pub produced: Arc<AtomicU64>,
}

impl TestNode {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::SeqCst)
    }
}

/// A real node of `kind` on a free port; `configure` adjusts its options.
pub fn start(kind: NodeKind, configure: impl FnOnce(&mut ServerOptions)) -> TestNode {
    start_at(SocketAddr::from(([127, 0, 0, 1], 0)), kind, configure)
}

/// A real node of `kind` listening on `addr` (to restart one where it was).
pub fn start_at(
    addr: SocketAddr,
    kind: NodeKind,
    configure: impl FnOnce(&mut ServerOptions),
) -> TestNode {
    let mut options = ServerOptions {
        listen: addr,
        stats_interval_s: 0,
        shutdown_timeout_s: 2,
        ..ServerOptions::default()
    };
    configure(&mut options);
    let produced = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&produced);
    let server = server::spawn(options, move |_wakeups| TestService {
        kind,
        produced: counter,
    })
    .expect("test node starts");
    TestNode { server, produced }
}

/// Server options requiring authentication against `alice:KEY_A`.
pub fn require_alice(options: &mut ServerOptions) {
    let credentials = Credentials::parse(&format!("alice:{KEY_A}\n")).expect("valid credentials");
    options.credentials = Some(Arc::new(credentials));
}

// ----- fake nodes -------------------------------------------------------------------------------

/// Listens on a free port and hands each accepted connection, numbered from 0, to `script`, one
/// after the other, on a background thread that lives as long as the test process.
pub fn fake_node(script: impl Fn(usize, TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            script(index, stream);
        }
    });
    addr
}

/// Sends a ServerHello with the given version and kind.
pub fn send_hello(stream: &mut TcpStream, version: u16, kind: NodeKind) {
    let hello = ServerHello {
        version,
        kind,
        verdict: HelloVerdict::Ready,
        nonce: [0; NONCE_LEN],
    };
    stream.write_all(&hello.encode()).expect("write hello");
}

/// Plays a dht node's side of a handshake without authentication.
pub fn accept_handshake(stream: &mut TcpStream) {
    send_hello(stream, PROTOCOL_VERSION, NodeKind::Dht);
    let mut buf = Vec::new();
    let mut chunk = [0u8; MAX_CLIENT_HELLO_LEN];
    while ClientHello::parse(&buf)
        .expect("valid client hello")
        .is_none()
    {
        let got = stream.read(&mut chunk).expect("read client hello");
        assert!(got > 0, "client closed during the handshake");
        buf.extend_from_slice(&chunk[..got]);
    }
    let result = HandshakeResult {
        outcome: HandshakeOutcome::Accepted,
        admin: false,
    };
    stream.write_all(&result.encode()).expect("write result");
}

/// Reads one whole frame (blocking).
pub fn read_frame(stream: &mut TcpStream) -> Option<(FrameHeader, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).ok()?;
    let header = FrameHeader::decode(&header, u32::MAX).ok()?;
    let mut body = vec![0u8; header.body_len as usize];
    stream.read_exact(&mut body).ok()?;
    Some((header, body))
}

/// Writes one frame.
pub fn send_frame(
    stream: &mut TcpStream,
    frame_type: FrameType,
    code: u8,
    request_id: u64,
    body: &[u8],
) {
    let mut out = Vec::new();
    write_frame(&mut out, frame_type, code, request_id, body);
    stream.write_all(&out).expect("write frame");
}
