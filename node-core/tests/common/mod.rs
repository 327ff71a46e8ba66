//! Shared pieces of the server integration tests:
//!
//! - [`TestService`]: a small dht-kind [`Service`] whose requests exercise the core (echo, a
//!   handler that blocks the loop, counted and woken streams, big replies, an admin check);
//! - [`RawConn`]: a blocking client over `std::net::TcpStream`, written from
//!   `docs/protocol.md` (it encodes hellos by hand and only borrows `write_frame` and
//!   `auth::proof` from node-core), with a timeout on every read so a bug fails, not hangs;
//! - [`start`]: an in-process server on 127.0.0.1:0.

#![allow(dead_code)] // Each test binary uses a different subset.

use node_core::auth::{self, Key};
use node_core::protocol::frame::{write_frame, FrameType, HEADER_LEN};
use node_core::protocol::{NodeKind, RequestCode, Status};
use node_core::server::{
    self, Handled, LookAheadFrames, Reply, Request, RunningServer, ServerOptions, Service,
    StreamHandle, StreamOut, StreamStep, StreamTask, Wakeups,
};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

// ----- request codes of the test service (dht range) ------------------------------------------

/// Replies Ok with the request body.
pub const ECHO: u8 = 16;
/// Body `u32 ms`: sleeps that long inside `handle()` (holding the loop), then replies Ok.
pub const SLOW: u8 = 17;
/// Body `u32 n`: a stream of `n` Items (code [`COUNT_ITEM`], body `u32` index), then Ok.
pub const COUNT_STREAM: u8 = 18;
/// A stream that waits; each Poke adds one Item (code [`WAIT_ITEM`], body = the Poke's body);
/// a Poke with body `end` ends it with Ok.
pub const WAIT_STREAM: u8 = 19;
/// Wakes every WaitStream (on any connection); replies Ok with `u32` the number of streams poked.
pub const POKE: u8 = 20;
/// Body `u32 n`: replies Ok with `n` bytes of [`fill_pattern`] seeded by the request id.
pub const BIG_REPLY: u8 = 21;
/// An administrative request (Service::admin_only): Ok for admins; the core answers
/// NotPermitted to everyone else before the handler runs.
pub const ADMIN: u8 = 22;
/// Body `u32 held`, `u32 reserve`: a stream that reports holding `held` bytes
/// (StreamTask::held_bytes), asks StreamOut::try_reserve for `reserve` more on its first turn
/// when `reserve` > 0 (one Item [`HOLD_ITEM`], body `u8` 1 granted / 0 refused; granted bytes
/// are held from then on), and then waits until it is stopped. It opens a stream
/// (Service::opens_stream).
pub const HOLD_STREAM: u8 = 23;
/// Replies Ok at once; it acts on running streams only (Service::acts_on_running_stream), like
/// queue's ConsumeAck.
pub const ACK: u8 = 24;

pub const COUNT_ITEM: u8 = 1;
pub const WAIT_ITEM: u8 = 2;
pub const HOLD_ITEM: u8 = 3;

// Request codes every node answers (docs/protocol.md §5).
pub const GET_VERSION: u8 = 1;
pub const GET_NUM_CONNECTIONS: u8 = 2;
pub const GET_STATS: u8 = 3;

// Frame types and control codes, as numbers on the wire.
pub const T_REQUEST: u8 = 1;
pub const T_REPLY: u8 = 2;
pub const T_ITEM: u8 = 3;
pub const T_CONTROL: u8 = 4;
pub const CONTROL_CREDIT: u8 = 1;
pub const CONTROL_STOP: u8 = 2;

// ----- the test service -----------------------------------------------------------------------

#[derive(Default)]
struct WaitState {
    pokes: VecDeque<Vec<u8>>,
    ended: bool,
    /// Set when the stream last said Wait, so a Poke can wake it.
    handle: Option<StreamHandle>,
}

pub struct TestService {
    wakeups: Wakeups,
    /// The running WaitStreams; a stream that ended or was cancelled drops its state.
    waiters: Vec<Weak<RefCell<WaitState>>>,
    streams_cancelled: u64,
    /// Calls of `before_output` (GetStats `test/before_output_calls`).
    before_output_calls: u64,
    /// What `look_ahead` saw (GetStats `test/look_ahead_*`).
    look_ahead: std::cell::Cell<LookAheadSeen>,
}

/// What `Service::look_ahead` was shown: calls, frames, the most frames in one call, and frames
/// it should never see (a code the core answers itself, or an Echo whose body is not a `u64`
/// request id below 2^20, which is all the tests send it).
#[derive(Debug, Clone, Copy, Default)]
struct LookAheadSeen {
    calls: u64,
    frames: u64,
    most_in_a_call: u64,
    unexpected: u64,
}

impl TestService {
    pub fn new(wakeups: Wakeups) -> TestService {
        TestService {
            wakeups,
            waiters: Vec::new(),
            streams_cancelled: 0,
            before_output_calls: 0,
            look_ahead: Default::default(),
        }
    }

    fn poke(&mut self, body: &[u8]) -> u32 {
        let end = body == b"end";
        self.waiters.retain(|waiter| waiter.strong_count() > 0);
        let mut poked = 0;
        for state in self.waiters.iter().filter_map(Weak::upgrade) {
            let mut state = state.borrow_mut();
            if end {
                state.ended = true;
            } else {
                state.pokes.push_back(body.to_vec());
            }
            if let Some(handle) = state.handle {
                self.wakeups.wake(handle);
            }
            poked += 1;
        }
        poked
    }
}

fn u32_body(body: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(*body.first_chunk::<4>()?))
}

impl Service for TestService {
    fn kind(&self) -> NodeKind {
        NodeKind::Dht
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        match code.0 {
            ECHO => Some("Echo"),
            SLOW => Some("Slow"),
            COUNT_STREAM => Some("CountStream"),
            WAIT_STREAM => Some("WaitStream"),
            POKE => Some("Poke"),
            BIG_REPLY => Some("BigReply"),
            ADMIN => Some("Admin"),
            HOLD_STREAM => Some("HoldStream"),
            ACK => Some("Ack"),
            _ => None,
        }
    }

    fn admin_only(&self, code: RequestCode) -> bool {
        code.0 == ADMIN
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        matches!(code.0, COUNT_STREAM | WAIT_STREAM | HOLD_STREAM)
    }

    fn acts_on_running_stream(&self, code: RequestCode) -> bool {
        code.0 == ACK
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        match request.code.0 {
            ECHO => reply.ok(request.body),
            SLOW | COUNT_STREAM | BIG_REPLY => {
                let Some(n) = u32_body(request.body) else {
                    reply.error(Status::BadRequest, "body must be a u32");
                    return Handled::Replied;
                };
                match request.code.0 {
                    SLOW => {
                        std::thread::sleep(Duration::from_millis(u64::from(n)));
                        reply.ok(&[]);
                    }
                    COUNT_STREAM => return Handled::Stream(Box::new(CountStream { n, next: 0 })),
                    _ => reply.send_with(Status::Ok, |out| {
                        fill_pattern(out, request.request_id, n as usize)
                    }),
                }
            }
            WAIT_STREAM => {
                let state = Rc::new(RefCell::new(WaitState::default()));
                self.waiters.push(Rc::downgrade(&state));
                return Handled::Stream(Box::new(WaitStream { state }));
            }
            POKE => {
                let poked = self.poke(request.body);
                reply.ok(&poked.to_le_bytes());
            }
            ADMIN => reply.ok(b"admin ok"),
            ACK => reply.ok(&[]),
            HOLD_STREAM => {
                let (Some(held), Some(reserve)) = (
                    u32_body(request.body),
                    request.body.get(4..).and_then(u32_body),
                ) else {
                    reply.error(Status::BadRequest, "body must be two u32");
                    return Handled::Replied;
                };
                return Handled::Stream(Box::new(HoldStream {
                    held: held as usize,
                    reserve: reserve as usize,
                }));
            }
            other => reply.error(
                Status::InternalError,
                format!("request_name knows code {other}, handle does not"),
            ),
        }
        Handled::Replied
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        out.push(("test/streams_cancelled".to_string(), self.streams_cancelled));
        out.push((
            "test/before_output_calls".to_string(),
            self.before_output_calls,
        ));
        let seen = self.look_ahead.get();
        out.push(("test/look_ahead_calls".to_string(), seen.calls));
        out.push(("test/look_ahead_frames".to_string(), seen.frames));
        out.push(("test/look_ahead_most".to_string(), seen.most_in_a_call));
        out.push(("test/look_ahead_unexpected".to_string(), seen.unexpected));
    }

    fn before_output(&mut self) {
        self.before_output_calls += 1;
    }

    fn look_ahead(&self, frames: LookAheadFrames<'_>) {
        let mut seen = self.look_ahead.get();
        let mut in_this_call = 0;
        for (code, body) in frames {
            in_this_call += 1;
            let echo_of_an_id = code.0 == ECHO
                && body
                    .first_chunk::<8>()
                    .is_some_and(|id| body.len() == 8 && u64::from_le_bytes(*id) < 1 << 20);
            if code.is_common() || (code.0 == ECHO && !echo_of_an_id) {
                seen.unexpected += 1;
            }
        }
        seen.calls += 1;
        seen.frames += in_this_call;
        seen.most_in_a_call = seen.most_in_a_call.max(in_this_call);
        self.look_ahead.set(seen);
    }
}

struct CountStream {
    n: u32,
    next: u32,
}

impl StreamTask<TestService> for CountStream {
    fn resume(&mut self, _service: &mut TestService, out: &mut StreamOut<'_>) -> StreamStep {
        if self.next >= self.n {
            out.finish(Status::Ok, &[]);
            return StreamStep::Done;
        }
        out.item(COUNT_ITEM, &self.next.to_le_bytes());
        self.next += 1;
        StreamStep::Continue
    }

    fn cancel(&mut self, service: &mut TestService) {
        service.streams_cancelled += 1;
    }
}

struct WaitStream {
    state: Rc<RefCell<WaitState>>,
}

impl StreamTask<TestService> for WaitStream {
    fn resume(&mut self, _service: &mut TestService, out: &mut StreamOut<'_>) -> StreamStep {
        let mut state = self.state.borrow_mut();
        if let Some(body) = state.pokes.pop_front() {
            out.item(WAIT_ITEM, &body);
            StreamStep::Continue
        } else if state.ended {
            out.finish(Status::Ok, &[]);
            StreamStep::Done
        } else {
            state.handle = Some(out.handle());
            StreamStep::Wait
        }
    }

    fn cancel(&mut self, service: &mut TestService) {
        service.streams_cancelled += 1;
    }
}

struct HoldStream {
    held: usize,
    /// To ask for on the first turn (0: nothing, or already asked).
    reserve: usize,
}

impl StreamTask<TestService> for HoldStream {
    fn resume(&mut self, _service: &mut TestService, out: &mut StreamOut<'_>) -> StreamStep {
        if self.reserve > 0 {
            let granted = out.try_reserve(self.reserve);
            if granted {
                self.held += self.reserve;
            }
            self.reserve = 0;
            out.item(HOLD_ITEM, &[u8::from(granted)]);
            return StreamStep::Continue;
        }
        StreamStep::Wait
    }

    fn held_bytes(&self) -> usize {
        self.held
    }
}

/// The 251-byte cycle BigReply bodies are made of, rotated by the request id.
const PATTERN_CYCLE: usize = 251;

fn pattern_cycle() -> Vec<u8> {
    let cycle: Vec<u8> = (0..PATTERN_CYCLE as u32).map(|b| b as u8).collect();
    [cycle.as_slice(), cycle.as_slice()].concat()
}

/// Appends `len` bytes: byte `i` is `(i + seed) % 251`. Built from slices, so fast in debug.
pub fn fill_pattern(out: &mut Vec<u8>, seed: u64, len: usize) {
    let twice = pattern_cycle();
    let offset = (seed % PATTERN_CYCLE as u64) as usize;
    let cycle = &twice[offset..offset + PATTERN_CYCLE];
    out.reserve(len);
    let mut left = len;
    while left > 0 {
        let take = left.min(PATTERN_CYCLE);
        out.extend_from_slice(&cycle[..take]);
        left -= take;
    }
}

/// Whether `body` is exactly what [`fill_pattern`] makes for `seed` and `body.len()`.
pub fn check_pattern(body: &[u8], seed: u64) -> bool {
    let twice = pattern_cycle();
    let offset = (seed % PATTERN_CYCLE as u64) as usize;
    let cycle = &twice[offset..offset + PATTERN_CYCLE];
    body.chunks(PATTERN_CYCLE)
        .all(|chunk| chunk == &cycle[..chunk.len()])
}

// ----- starting a server -----------------------------------------------------------------------

/// Options for an in-process test server: port 0, no stats lines, a short shutdown drain.
pub fn test_options() -> ServerOptions {
    ServerOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        stats_interval_s: 0,
        shutdown_timeout_s: 5,
        tick_interval_ms: 20,
        ..ServerOptions::default()
    }
}

pub fn start(options: ServerOptions) -> RunningServer {
    server::spawn(options, TestService::new).expect("test server starts")
}

/// The resident set size of this process (the server runs in it), in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Polls `condition` every 10 ms until it holds or `within` passes.
pub fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ----- the raw client ---------------------------------------------------------------------------

/// Every blocking read and write gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHelloMsg {
    pub magic: [u8; 4],
    pub version: u16,
    pub kind: u8,
    pub verdict: u8,
    pub nonce: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeResultMsg {
    pub magic: [u8; 4],
    pub result: u8,
    pub flags: u8,
    pub reserved: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: u8,
    pub code: u8,
    pub flags: u16,
    pub id: u64,
    pub body: Vec<u8>,
}

impl Frame {
    /// Asserts this is the Reply to `id` with `status`.
    #[track_caller]
    pub fn assert_reply(&self, id: u64, status: u8) -> &Frame {
        assert_eq!(
            (self.frame_type, self.id, self.code),
            (T_REPLY, id, status),
            "expected Reply to {id} with status {status}, got {} (body {:?})",
            self.describe(),
            String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
        );
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "frame type {} code {} id {} ({} body bytes)",
            self.frame_type,
            self.code,
            self.id,
            self.body.len()
        )
    }
}

/// A ClientHello, encoded by hand from docs/protocol.md §1.2.
pub fn client_hello(version: u16, wanted_kind: u8, name: &[u8], proof: &[u8; 64]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + name.len() + 64);
    bytes.extend_from_slice(b"SWRM");
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.push(wanted_kind);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(proof);
    bytes
}

/// Appends one frame to `out` (for pipelining many in one write).
pub fn push_frame(out: &mut Vec<u8>, frame_type: FrameType, code: u8, id: u64, body: &[u8]) {
    write_frame(out, frame_type, code, id, body);
}

/// A raw 16-byte header, for frames node-core's encoder would refuse to make.
pub fn raw_header(body_len: u32, frame_type: u8, code: u8, flags: u16, id: u64) -> [u8; 16] {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&body_len.to_le_bytes());
    header[4] = frame_type;
    header[5] = code;
    header[6..8].copy_from_slice(&flags.to_le_bytes());
    header[8..16].copy_from_slice(&id.to_le_bytes());
    header
}

pub struct RawConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl RawConn {
    /// Opens the TCP connection only (the handshake is the caller's).
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::try_connect(addr).unwrap_or_else(|err| panic!("connect to {addr}: {err}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(RawConn {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
        })
    }

    pub fn read_server_hello(&mut self) -> io::Result<ServerHelloMsg> {
        let mut bytes = [0u8; 40];
        self.reader.read_exact(&mut bytes)?;
        let mut nonce = [0u8; 32];
        nonce.copy_from_slice(&bytes[8..40]);
        Ok(ServerHelloMsg {
            magic: [bytes[0], bytes[1], bytes[2], bytes[3]],
            version: u16::from_le_bytes([bytes[4], bytes[5]]),
            kind: bytes[6],
            verdict: bytes[7],
            nonce,
        })
    }

    pub fn read_handshake_result(&mut self) -> io::Result<HandshakeResultMsg> {
        let mut bytes = [0u8; 8];
        self.reader.read_exact(&mut bytes)?;
        Ok(HandshakeResultMsg {
            magic: [bytes[0], bytes[1], bytes[2], bytes[3]],
            result: bytes[4],
            flags: bytes[5],
            reserved: u16::from_le_bytes([bytes[6], bytes[7]]),
        })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to node");
    }

    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn send_frame(&mut self, frame_type: FrameType, code: u8, id: u64, body: &[u8]) {
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        write_frame(&mut out, frame_type, code, id, body);
        self.send_raw(&out);
    }

    pub fn request(&mut self, code: u8, id: u64, body: &[u8]) {
        self.send_frame(FrameType::Request, code, id, body);
    }

    pub fn credit(&mut self, id: u64, items: u32) {
        self.send_frame(FrameType::Control, CONTROL_CREDIT, id, &items.to_le_bytes());
    }

    pub fn stop(&mut self, id: u64) {
        self.send_frame(FrameType::Control, CONTROL_STOP, id, &[]);
    }

    pub fn read_frame(&mut self) -> io::Result<Frame> {
        let mut header = [0u8; HEADER_LEN];
        self.reader.read_exact(&mut header)?;
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut body = vec![0u8; body_len];
        self.reader.read_exact(&mut body)?;
        Ok(Frame {
            frame_type: header[4],
            code: header[5],
            flags: u16::from_le_bytes([header[6], header[7]]),
            id: u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
            body,
        })
    }

    #[track_caller]
    pub fn frame(&mut self) -> Frame {
        match self.read_frame() {
            Ok(frame) => frame,
            Err(err) => panic!("reading a frame: {err}"),
        }
    }

    /// Sends a request and reads the next frame, which must be its Reply (any status).
    #[track_caller]
    pub fn call(&mut self, code: u8, id: u64, body: &[u8]) -> Frame {
        self.request(code, id, body);
        let frame = self.frame();
        assert_eq!(
            (frame.frame_type, frame.id),
            (T_REPLY, id),
            "expected the Reply to {id}, got {}",
            frame.describe()
        );
        frame
    }

    /// Asserts an Echo round trip works on this connection.
    #[track_caller]
    pub fn assert_echo(&mut self, id: u64) {
        let body = format!("echo {id}");
        let reply = self.call(ECHO, id, body.as_bytes());
        reply.assert_reply(id, Status::Ok as u8);
        assert_eq!(reply.body, body.as_bytes());
    }

    /// Reads until the node closes the connection (EOF or reset) and returns whatever bytes came
    /// first. Panics if the connection is still open after `IO_TIMEOUT`.
    #[track_caller]
    pub fn expect_closed(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut chunk = [0u8; 4096];
        loop {
            match self.reader.read(&mut chunk) {
                Ok(0) => return data,
                Ok(n) => data.extend_from_slice(&chunk[..n]),
                Err(err) if is_reset(&err) => return data,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if is_timeout(&err) => {
                    panic!(
                        "connection still open after {IO_TIMEOUT:?} ({} bytes read)",
                        data.len()
                    )
                }
                Err(err) => panic!("reading until close: {err}"),
            }
            assert!(
                Instant::now() < deadline,
                "connection kept sending for {IO_TIMEOUT:?}"
            );
        }
    }

    /// Asserts nothing arrives (and the connection stays open) for `quiet`.
    #[track_caller]
    /// Reads the items of CountStream `id` numbered `indexes`, in order.
    pub fn expect_count_items(&mut self, id: u64, indexes: std::ops::Range<u32>) {
        for index in indexes {
            let item = self.frame();
            assert_eq!(
                (item.frame_type, item.id, item.code),
                (T_ITEM, id, COUNT_ITEM),
                "{}",
                item.describe()
            );
            assert_eq!(item.body, index.to_le_bytes());
        }
    }

    pub fn expect_silence(&mut self, quiet: Duration) {
        if !self.reader.buffer().is_empty() {
            panic!(
                "expected silence, but {} bytes were already buffered",
                self.reader.buffer().len()
            );
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(quiet))
            .expect("set timeout");
        let outcome = self.reader.fill_buf().map(|buf| buf.len());
        self.reader
            .get_ref()
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set timeout");
        match outcome {
            Err(err) if is_timeout(&err) => {}
            Ok(0) => panic!("expected silence, but the node closed the connection"),
            Ok(n) => panic!("expected silence for {quiet:?}, but {n} bytes arrived"),
            Err(err) => panic!("expected silence, got {err}"),
        }
    }

    /// A second handle on the socket, for writing from another thread.
    pub fn writer_clone(&self) -> TcpStream {
        self.writer.try_clone().expect("clone socket")
    }

    /// Closes our sending side (the node sees EOF) but keeps reading.
    pub fn shutdown_write(&self) {
        self.writer
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }
}

/// Connects, reads the hello, sends an anonymous ClientHello for a dht node and checks it is
/// accepted: the usual start of a test.
#[track_caller]
pub fn connect(addr: SocketAddr) -> RawConn {
    let mut conn = RawConn::connect(addr);
    let hello = conn.read_server_hello().expect("server hello");
    assert_eq!(hello.magic, *b"SWRM");
    assert_eq!(hello.verdict, 0, "hello verdict");
    conn.send_raw(&client_hello(1, NodeKind::Dht as u8, b"", &[0; 64]));
    let result = conn.read_handshake_result().expect("handshake result");
    assert_eq!(
        (result.magic, result.result),
        (*b"SWOK", 0),
        "handshake result"
    );
    conn
}

/// Connects and authenticates as `name`, with a proof made from `key` (all zeros if `None`).
/// Returns the hello and the node's answer (an error if the node closed without one).
pub fn connect_as(
    addr: SocketAddr,
    name: &str,
    key: Option<&Key>,
) -> (RawConn, ServerHelloMsg, io::Result<HandshakeResultMsg>) {
    let mut conn = RawConn::connect(addr);
    let hello = conn.read_server_hello().expect("server hello");
    let proof = key.map_or([0; 64], |key| {
        auth::proof(key, &hello.nonce, name.as_bytes())
    });
    conn.send_raw(&client_hello(
        1,
        NodeKind::Dht as u8,
        name.as_bytes(),
        &proof,
    ));
    let result = conn.read_handshake_result();
    (conn, hello, result)
}

// ----- decoding reply bodies --------------------------------------------------------------------

/// A tiny cursor for reply bodies (docs/protocol.md conventions: little-endian, str8).
pub struct Body<'a>(pub &'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, len: usize) -> &'a [u8] {
        assert!(
            self.0.len() >= len,
            "body ends early: want {len}, have {}",
            self.0.len()
        );
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        head
    }

    pub fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().expect("2 bytes"))
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }

    pub fn str8(&mut self) -> String {
        let len = self.u8() as usize;
        String::from_utf8(self.take(len).to_vec()).expect("str8 is UTF-8")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Decodes a GetStats body: `u32 n`, then `n` × (`str8` name, `u64` value).
pub fn decode_stats(body: &[u8]) -> Vec<(String, u64)> {
    let mut body = Body(body);
    let n = body.u32();
    let pairs = (0..n).map(|_| (body.str8(), body.u64())).collect();
    assert!(body.is_empty(), "trailing bytes after {n} stats");
    pairs
}

pub fn stat(stats: &[(String, u64)], name: &str) -> Option<u64> {
    stats.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Asks for GetStats on `conn` and decodes it.
#[track_caller]
pub fn get_stats(conn: &mut RawConn, id: u64) -> Vec<(String, u64)> {
    let reply = conn.call(GET_STATS, id, &[]);
    reply.assert_reply(id, Status::Ok as u8);
    decode_stats(&reply.body)
}

/// Asks for GetNumConnections on `conn`.
#[track_caller]
pub fn num_connections(conn: &mut RawConn, id: u64) -> u64 {
    let reply = conn.call(GET_NUM_CONNECTIONS, id, &[]);
    reply.assert_reply(id, Status::Ok as u8);
    let mut body = Body(&reply.body);
    let n = body.u64();
    assert!(body.is_empty());
    n
}
