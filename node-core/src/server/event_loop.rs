//! The event loop: accept, read, dispatch, drive streams, write, tick, shut down.
//!
//! Rules it keeps (mio's contract): readiness is drained until WouldBlock, because an
//! edge-triggered event is not repeated; spurious and stale events are ignored. Limits: a
//! connection's input is bounded by the frame limit, its output by the high-water mark (reading
//! and stream production pause above it), the frames processed per pass and the stream items
//! produced per pass are bounded so one busy connection cannot starve the others.

use super::common;
use super::connection::{Connection, Phase, ReadOutcome, StreamEntry};
use super::service::{
    ClientInfo, Handled, Reply, Request, Service, StreamHandle, StreamOut, StreamStep,
};
use super::{
    Server, ServerOptions, FIRST_CONNECTION_TOKEN, LISTENER_TOKEN, SIGNAL_TOKEN, WAKER_TOKEN,
};
use crate::auth;
use crate::protocol::codes::{ControlCode, INITIAL_STREAM_CREDIT, MAX_STREAM_CREDIT};
use crate::protocol::frame::{self, FrameError, FrameHeader, FrameType, HEADER_LEN};
use crate::protocol::handshake::{
    ClientHello, HandshakeOutcome, HandshakeResult, HelloVerdict, ServerHello, NONCE_LEN,
};
use crate::protocol::{RequestCode, Status, PROTOCOL_VERSION};
use crate::signals::SignalAction;
use crate::stats::ServerStats;
use mio::{Events, Interest, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Frames handled from one connection before the loop moves on to others.
const FRAMES_PER_PASS: usize = 256;
/// Items one stream produces before yielding to other streams.
const ITEMS_PER_PASS: usize = 16;
/// Connections accepted per listener event before serving the others.
const ACCEPTS_PER_PASS: usize = 256;
const EVENTS_CAPACITY: usize = 1024;
/// What a stream costs the core besides its task: its map entry and the task's allocation.
const STREAM_ENTRY_OVERHEAD_BYTES: usize = 128;

pub(crate) struct EventLoop<'s, S: Service> {
    server: Server,
    service: &'s mut S,
    connections: Slab<Connection<S>>,
    next_serial: u64,
    stats: ServerStats,
    /// Streams that can produce now.
    ready_streams: VecDeque<StreamHandle>,
    /// Connections with unprocessed input left over from a pass, or whose reading resumed.
    pending_input: VecDeque<usize>,
    /// Connections whose output grew outside of their own read handling.
    dirty: Vec<usize>,
    /// Memory held by the streams of every connection ([`stream_held_bytes`]).
    stream_bytes: usize,
    shutting_down: bool,
    /// The service said it has background work ready.
    background_pending: bool,
    /// An accept failed (out of descriptors): retry on the next tick.
    accept_retry: bool,
}

impl<'s, S: Service> EventLoop<'s, S> {
    pub(crate) fn new(server: Server, service: &'s mut S) -> io::Result<EventLoop<'s, S>> {
        let mut event_loop = EventLoop {
            server,
            service,
            connections: Slab::new(),
            next_serial: 1,
            stats: ServerStats::default(),
            ready_streams: VecDeque::new(),
            pending_input: VecDeque::new(),
            dirty: Vec::new(),
            stream_bytes: 0,
            shutting_down: false,
            background_pending: false,
            accept_retry: false,
        };
        let Server { poll, listener, .. } = &mut event_loop.server;
        poll.registry()
            .register(listener, LISTENER_TOKEN, Interest::READABLE)?;
        Ok(event_loop)
    }

    fn options(&self) -> &ServerOptions {
        &self.server.options
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        tracing::info!(
            "{} node listening on {} (auth {})",
            self.service.kind(),
            self.server.local_addr,
            if self.options().credentials.is_some() {
                "on"
            } else {
                "off"
            }
        );
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let tick = Duration::from_millis(self.options().tick_interval_ms.max(1));
        let stats_interval = Duration::from_secs(self.options().stats_interval_s);
        let mut next_tick = Instant::now() + tick;
        let mut next_stats = Instant::now() + stats_interval;
        let mut shutdown_deadline = None;
        loop {
            let now = Instant::now();
            let mut timeout = next_tick.saturating_duration_since(now);
            if !self.ready_streams.is_empty()
                || !self.pending_input.is_empty()
                || self.background_pending
            {
                timeout = Duration::ZERO;
            }
            if let Err(err) = self.server.poll.poll(&mut events, Some(timeout)) {
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            for event in events.iter() {
                let read_closed = event.is_read_closed();
                self.on_event(
                    event.token(),
                    event.is_readable() || read_closed,
                    read_closed,
                    event.is_writable(),
                );
            }
            self.take_wakeups();
            self.drain_pending_input();
            self.run_ready_streams();
            self.background_pending = self.service.background(Instant::now());
            self.take_wakeups();
            self.run_ready_streams();
            self.flush_dirty();
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + tick;
                self.service.tick(now);
                self.take_wakeups();
                if std::mem::take(&mut self.accept_retry) {
                    self.accept_connections();
                }
                self.close_stalled_handshakes(now);
                self.observe(now);
            }
            if !stats_interval.is_zero() && now >= next_stats {
                next_stats = now + stats_interval;
                self.write_stats_line();
            }
            if self
                .server
                .shutdown_requested
                .load(std::sync::atomic::Ordering::SeqCst)
                && !self.shutting_down
            {
                self.begin_shutdown();
                shutdown_deadline =
                    Some(now + Duration::from_secs(self.options().shutdown_timeout_s));
            }
            if let Some(deadline) = shutdown_deadline {
                if self.connections.is_empty() || now >= deadline {
                    return self.finish_shutdown();
                }
            }
        }
    }

    fn on_event(&mut self, token: Token, readable: bool, read_closed: bool, writable: bool) {
        match token {
            LISTENER_TOKEN => self.accept_connections(),
            // The waker only interrupts the poll; the shutdown flag is checked every pass.
            WAKER_TOKEN => {}
            SIGNAL_TOKEN => self.on_signals(),
            Token(token) => {
                let slot = token - FIRST_CONNECTION_TOKEN;
                // A stale event for a slot closed earlier in this pass is normal; ignore it.
                if !self.connections.contains(slot) {
                    return;
                }
                if writable {
                    self.flush(slot);
                }
                if readable && self.connections.contains(slot) {
                    // A short read means the socket is drained, except when the peer also closed:
                    // then read on to the end-of-file, for which no further event comes.
                    self.read_until(
                        slot,
                        if read_closed {
                            ReadUntil::WouldBlock
                        } else {
                            ReadUntil::Drained
                        },
                    );
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let actions = match self.server.signals.as_mut() {
            Some(signals) => signals.pending(),
            None => return,
        };
        for action in actions {
            match action {
                SignalAction::Shutdown => {
                    tracing::info!("shutdown signal received; shutting down gracefully");
                    self.server
                        .shutdown_requested
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                SignalAction::ReopenLogs => {
                    if let Some(logs) = &self.server.logs {
                        match logs.reopen() {
                            Ok(()) => tracing::info!("log files reopened (SIGHUP)"),
                            Err(err) => eprintln!("cannot reopen log files: {err}"),
                        }
                    }
                }
            }
        }
    }

    // ----- accepting -------------------------------------------------------------------------

    fn accept_connections(&mut self) {
        for _ in 0..ACCEPTS_PER_PASS {
            match self.server.listener.accept() {
                Ok((socket, peer)) => self.on_accepted(socket, peer),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // EMFILE and friends: try again on the next tick rather than spin; the
                    // edge-triggered listener would not tell us again about those waiting.
                    tracing::warn!("accept failed: {err}");
                    self.accept_retry = true;
                    return;
                }
            }
        }
        // More may be waiting: an edge-triggered listener will not tell us again.
        self.pending_input.push_back(usize::MAX);
    }

    fn on_accepted(&mut self, mut socket: mio::net::TcpStream, peer: std::net::SocketAddr) {
        if self.connections.len() >= self.options().max_connections || self.shutting_down {
            let verdict = if self.shutting_down {
                HelloVerdict::ShuttingDown
            } else {
                HelloVerdict::ConnectionLimit
            };
            self.refuse(&mut socket, verdict);
            return;
        }
        self.configure_socket(&socket);
        let nonce = match self.options().credentials.is_some() {
            true => match auth::random_nonce() {
                Ok(nonce) => Some(nonce),
                Err(err) => {
                    tracing::error!("no randomness for an auth nonce, refusing {peer}: {err}");
                    return;
                }
            },
            false => None,
        };
        let hello = ServerHello {
            version: PROTOCOL_VERSION,
            kind: self.service.kind(),
            verdict: if nonce.is_some() {
                HelloVerdict::AuthRequired
            } else {
                HelloVerdict::Ready
            },
            nonce: nonce.unwrap_or([0; NONCE_LEN]),
        };
        let client = ClientInfo {
            name: String::new(),
            admin: false,
            peer,
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut connection =
            Connection::new(socket, serial, Phase::AwaitingHello { nonce }, client);
        connection.output.extend_from_slice(&hello.encode());
        let entry = self.connections.vacant_entry();
        let slot = entry.key();
        let token = Token(slot + FIRST_CONNECTION_TOKEN);
        if let Err(err) = self.server.poll.registry().register(
            &mut connection.socket,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("cannot register connection from {peer}: {err}");
            return;
        }
        entry.insert(connection);
        self.stats.connections_open += 1;
        self.stats.count(|c| c.connections_accepted += 1);
        self.flush(slot);
    }

    /// Tells an excess connection why it is refused and closes it. The hello is 40 bytes on a
    /// fresh socket, so the write cannot block.
    fn refuse(&mut self, socket: &mut mio::net::TcpStream, verdict: HelloVerdict) {
        use std::io::Write;
        let hello = ServerHello {
            version: PROTOCOL_VERSION,
            kind: self.service.kind(),
            verdict,
            nonce: [0; NONCE_LEN],
        };
        let _ = socket.write_all(&hello.encode());
        self.stats.count(|c| c.connections_refused += 1);
        tracing::debug!("refused a connection: {verdict:?}");
    }

    fn configure_socket(&self, socket: &mio::net::TcpStream) {
        if let Err(err) = socket.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {err}");
        }
        let idle = Duration::from_secs(u64::from(self.options().tcp_keepalive_idle_s.max(1)));
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(3))
            .with_retries(3);
        if let Err(err) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
            tracing::debug!("TCP keepalive: {err}");
        }
    }

    // ----- reading and dispatching -----------------------------------------------------------

    fn max_input_bytes(&self) -> usize {
        HEADER_LEN + self.options().max_frame_bytes as usize
    }

    /// Reads until WouldBlock (or until reading must pause), processing frames as they arrive.
    fn read_connection(&mut self, slot: usize) {
        self.read_until(slot, ReadUntil::WouldBlock);
    }

    /// Reads until the socket is drained (see [`ReadUntil`]) or reading must pause, processing
    /// frames as they arrive; then writes the replies in one go.
    fn read_until(&mut self, slot: usize, until: ReadUntil) {
        let max_input = self.max_input_bytes();
        loop {
            let Some(conn) = self.connections.get_mut(slot) else {
                return;
            };
            if conn.reading_paused || conn.close_when_flushed || conn.peer_closed {
                break;
            }
            let needed = needed_frame_len(conn.pending_input());
            match conn.read_once(needed, max_input) {
                Ok(ReadOutcome::Data { bytes, drained }) => {
                    self.stats.add_bytes_in(bytes);
                    if !self.process_input(slot) || (drained && until == ReadUntil::Drained) {
                        break;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => break,
                Ok(ReadOutcome::BufferFull) => {
                    // Every whole frame was processed, so a full buffer means processing paused.
                    self.pending_input.push_back(slot);
                    break;
                }
                Ok(ReadOutcome::Closed) => {
                    conn.peer_closed = true;
                    break;
                }
                Err(err) => {
                    tracing::debug!("read from {} failed: {err}", conn.client.peer);
                    self.close(slot);
                    return;
                }
            }
        }
        self.flush(slot);
    }

    /// Handles the frames buffered on a connection. Returns false when reading should stop
    /// (the connection closed, paused or is closing).
    fn process_input(&mut self, slot: usize) -> bool {
        for _ in 0..FRAMES_PER_PASS {
            let Some(conn) = self.connections.get_mut(slot) else {
                return false;
            };
            if conn.close_when_flushed {
                return false;
            }
            if conn.pending_output() >= self.server.options.output_buffer_bytes {
                conn.reading_paused = true;
                return false;
            }
            let progressed = match conn.phase {
                Phase::AwaitingHello { nonce } => self.process_hello(slot, nonce),
                Phase::Open => self.process_frame(slot),
            };
            if !progressed {
                return self.connections.contains(slot);
            }
        }
        // Budget used up with input left: come back after serving the others.
        self.pending_input.push_back(slot);
        true
    }

    fn drain_pending_input(&mut self) {
        let pending: Vec<usize> = self.pending_input.drain(..).collect();
        for slot in pending {
            if slot == usize::MAX {
                self.accept_connections();
                continue;
            }
            let Some(conn) = self.connections.get(slot) else {
                continue;
            };
            if conn.reading_paused || conn.close_when_flushed {
                continue;
            }
            if self.process_input(slot) {
                self.read_connection(slot);
            } else {
                self.flush(slot);
            }
        }
    }

    /// Completes the handshake if the ClientHello has arrived. Returns whether input was used.
    fn process_hello(&mut self, slot: usize, nonce: Option<[u8; NONCE_LEN]>) -> bool {
        let conn = &mut self.connections[slot];
        let (hello, used) = match ClientHello::parse(conn.pending_input()) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return false,
            Err(err) => {
                tracing::debug!("bad hello from {}: {err}", conn.client.peer);
                self.end_handshake(slot, HandshakeOutcome::BadHello, false);
                return false;
            }
        };
        conn.consume_input(used);
        let outcome = self.judge_hello(&hello, nonce, slot);
        // A refused client is nobody's admin: setting the flag on a refusal would tell a prober
        // which names are admins.
        let admin = outcome == HandshakeOutcome::Accepted
            && match &self.server.options.credentials {
                Some(_) => {
                    let name = String::from_utf8_lossy(&hello.name);
                    self.server
                        .options
                        .admins
                        .iter()
                        .any(|admin| *admin == name)
                }
                None => true,
            };
        self.end_handshake(slot, outcome, admin);
        if outcome == HandshakeOutcome::Accepted {
            let conn = &mut self.connections[slot];
            conn.client.name = String::from_utf8_lossy(&hello.name).into_owned();
            conn.client.admin = admin;
            conn.phase = Phase::Open;
            return true;
        }
        false
    }

    fn judge_hello(
        &self,
        hello: &ClientHello,
        nonce: Option<[u8; NONCE_LEN]>,
        slot: usize,
    ) -> HandshakeOutcome {
        let peer = self.connections[slot].client.peer;
        if hello.version != PROTOCOL_VERSION {
            tracing::info!(
                "client {peer} speaks protocol {}, node speaks {PROTOCOL_VERSION}",
                hello.version
            );
            return HandshakeOutcome::UnsupportedVersion;
        }
        if hello
            .wanted_kind
            .is_some_and(|kind| kind != self.service.kind())
        {
            return HandshakeOutcome::WrongKind;
        }
        let (Some(credentials), Some(nonce)) = (&self.server.options.credentials, nonce) else {
            return HandshakeOutcome::Accepted;
        };
        match auth::verify(credentials, &hello.name, &nonce, &hello.proof) {
            Ok(()) => HandshakeOutcome::Accepted,
            Err(reason) => {
                tracing::warn!(
                    "authentication failure for client '{}' from {peer}: {reason}",
                    String::from_utf8_lossy(&hello.name).escape_debug()
                );
                HandshakeOutcome::AuthFailed
            }
        }
    }

    fn end_handshake(&mut self, slot: usize, outcome: HandshakeOutcome, admin: bool) {
        let conn = &mut self.connections[slot];
        conn.output
            .extend_from_slice(&HandshakeResult { outcome, admin }.encode());
        if outcome != HandshakeOutcome::Accepted {
            conn.close_when_flushed = true;
            self.stats.count(|c| c.handshakes_failed += 1);
        }
    }

    /// Handles one whole frame if there is one. Returns whether a frame was consumed.
    fn process_frame(&mut self, slot: usize) -> bool {
        let max_frame_bytes = self.server.options.max_frame_bytes;
        let conn = &mut self.connections[slot];
        let header = match frame::parse_frame(conn.pending_input(), max_frame_bytes) {
            Ok(Some(header)) => header,
            Ok(None) => return false,
            Err(err) => {
                self.protocol_error(slot, &err);
                return false;
            }
        };
        let body_start = conn.input_start + HEADER_LEN;
        let body_end = body_start + header.body_len as usize;
        match header.frame_type {
            FrameType::Request => self.on_request(slot, header, body_start, body_end),
            FrameType::Control => self.on_control(slot, header, body_start, body_end),
            FrameType::Reply | FrameType::Item => {
                let conn = &mut self.connections[slot];
                conn.consume_input(header.frame_len());
                self.reject_frame(
                    slot,
                    header.request_id,
                    Status::BadRequest,
                    "a client may not send Reply or Item frames",
                );
                return false;
            }
        }
        if let Some(conn) = self.connections.get_mut(slot) {
            conn.consume_input(header.frame_len());
        }
        true
    }

    fn protocol_error(&mut self, slot: usize, err: &FrameError) {
        let status = match err {
            FrameError::TooLarge { .. } => Status::FrameTooLarge,
            _ => Status::BadRequest,
        };
        self.reject_frame(slot, err.request_id(), status, &err.to_string());
    }

    /// Answers a broken frame and closes the connection once the answer is written.
    fn reject_frame(&mut self, slot: usize, request_id: u64, status: Status, message: &str) {
        let conn = &mut self.connections[slot];
        tracing::debug!(
            "protocol error from {}: {message}; closing",
            conn.client.peer
        );
        let message = format!("protocol error: {message}; closing the connection");
        frame::write_frame(
            &mut conn.output,
            FrameType::Reply,
            status as u8,
            request_id,
            super::service::truncate_message(&message),
        );
        conn.close_when_flushed = true;
        self.stats.count(|c| c.protocol_errors += 1);
    }

    fn on_request(&mut self, slot: usize, header: FrameHeader, body_start: usize, body_end: usize) {
        let code = RequestCode(header.code);
        let started = Instant::now();
        if self.cancel_stream_by_id(slot, header.request_id) {
            // Answering it would give the running stream's id a second Reply (docs/protocol.md
            // §2): the client has lost track of its ids, so the connection cannot go on. The
            // stream ended without a Reply of its own: the protocol error's is the last frame
            // for that id.
            let message = format!(
                "request id {} is already in use by a running stream",
                header.request_id
            );
            self.reject_frame(slot, header.request_id, Status::BadRequest, &message);
            return;
        }
        if let Some((status, message)) = self.refusal(slot, code) {
            let conn = &mut self.connections[slot];
            Reply::new(&mut conn.output, header.request_id).error(status, message);
            self.stats.record_request(code.0, status, started.elapsed());
            return;
        }
        if code.is_common() {
            let body_len = body_end - body_start;
            let status = self.on_common_request(slot, code, header.request_id, body_len);
            self.stats.record_request(code.0, status, started.elapsed());
            return;
        }
        let Connection {
            input,
            output,
            client,
            ..
        } = &mut self.connections[slot];
        let mut reply = Reply::new(output, header.request_id);
        let request = Request {
            code,
            request_id: header.request_id,
            body: &input[body_start..body_end],
            client,
        };
        match self.service.handle(&request, &mut reply) {
            Handled::Replied => {
                let status = reply.status().unwrap_or_else(|| {
                    debug_assert!(false, "handler for code {} wrote no reply", code.0);
                    reply.error(Status::InternalError, "the handler wrote no reply");
                    Status::InternalError
                });
                self.stats.record_request(code.0, status, started.elapsed());
            }
            Handled::Stream(task) => {
                debug_assert!(reply.status().is_none(), "a stream must not reply up front");
                self.start_stream(slot, header.request_id, task);
                self.stats
                    .record_request(code.0, Status::Ok, started.elapsed());
            }
        }
    }

    /// Why a request is answered without running it, checked in this order: the connection's
    /// limits (requests that only act on a running stream are exempt), an unknown code, a
    /// non-admin asking for an administrative request (before its body is decoded), and the
    /// stream memory budgets for a request that opens a stream.
    fn refusal(&self, slot: usize, code: RequestCode) -> Option<(Status, String)> {
        let options = &self.server.options;
        let conn = &self.connections[slot];
        let service = &*self.service;
        let exempt = !code.is_common() && service.acts_on_running_stream(code);
        if !exempt && conn.streams.len() >= options.max_in_flight {
            let message = format!("{} requests already in flight", options.max_in_flight);
            return Some((Status::TooManyRequests, message));
        }
        if code.is_common() {
            return None;
        }
        let Some(name) = service.request_name(code) else {
            let message = format!(
                "request code {} is not a {} request",
                code.0,
                service.kind()
            );
            return Some((Status::UnsupportedRequest, message));
        };
        if service.admin_only(code) && !conn.client.admin {
            let message = format!("{name} is an administrative request and needs an admin client");
            return Some((Status::NotPermitted, message));
        }
        if !exempt && service.opens_stream(code) {
            if conn.stream_bytes >= options.stream_memory_bytes {
                let message = format!(
                    "the streams of this connection hold {} bytes, its limit is {} \
                     (server.stream_memory_bytes): end or read some of them first",
                    conn.stream_bytes, options.stream_memory_bytes
                );
                return Some((Status::TooManyRequests, message));
            }
            if self.stream_bytes >= options.max_stream_memory_bytes {
                let message = format!(
                    "the node's streams hold {} bytes, its limit is {} \
                     (server.max_stream_memory_bytes): try again later",
                    self.stream_bytes, options.max_stream_memory_bytes
                );
                return Some((Status::TooManyRequests, message));
            }
        }
        None
    }

    fn on_common_request(
        &mut self,
        slot: usize,
        code: RequestCode,
        request_id: u64,
        body_len: usize,
    ) -> Status {
        let connections_open = self.connections.len() as u64;
        self.stats.stream_memory_bytes = self.stream_bytes as u64;
        let stats = match code {
            RequestCode::GET_STATS => {
                let service = &*self.service;
                let name_of = |code: u8| request_name(service, RequestCode(code));
                let mut pairs = self.stats.snapshot(&name_of);
                // The limit next to `connections_open`, so a client can judge how close it is.
                let max = self.options().max_connections as u64;
                pairs.push(("connections_max".to_string(), max));
                // How long the process has run: a dashboard tells a restart from a quiet node.
                pairs.push(("uptime_s".to_string(), crate::metrics::process::uptime_s()));
                service.stats(&mut pairs);
                pairs
            }
            _ => Vec::new(),
        };
        let conn = &mut self.connections[slot];
        let mut reply = Reply::new(&mut conn.output, request_id);
        common::answer(
            code,
            body_len,
            &*self.service,
            connections_open,
            &stats,
            &mut reply,
        )
    }

    fn on_control(&mut self, slot: usize, header: FrameHeader, body_start: usize, body_end: usize) {
        let conn = &mut self.connections[slot];
        let body = &conn.input[body_start..body_end];
        let Some(control) = ControlCode::from_u8(header.code) else {
            self.reject_frame(
                slot,
                header.request_id,
                Status::BadRequest,
                &format!("unknown control code {}", header.code),
            );
            return;
        };
        // A malformed Credit is a protocol error whatever its stream (docs/protocol.md §2).
        let grant = body.first_chunk::<4>().map(|b| u32::from_le_bytes(*b));
        if control == ControlCode::Credit && grant.is_none() {
            self.reject_frame(
                slot,
                header.request_id,
                Status::BadRequest,
                "Credit needs a u32 body",
            );
            return;
        }
        let conn = &mut self.connections[slot];
        let Some(entry) = conn.streams.get_mut(&header.request_id) else {
            // The stream may have just ended; its late control frames are harmless.
            return;
        };
        match control {
            ControlCode::Credit => {
                let grant = grant.unwrap_or(0);
                entry.credit = entry.credit.saturating_add(grant).min(MAX_STREAM_CREDIT);
                if !entry.waiting && !entry.queued && entry.credit > 0 {
                    entry.queued = true;
                    let handle = StreamHandle {
                        connection_serial: conn.serial,
                        slot,
                        request_id: header.request_id,
                    };
                    self.ready_streams.push_back(handle);
                }
            }
            ControlCode::Stop => {
                if self.cancel_stream_by_id(slot, header.request_id) {
                    let conn = &mut self.connections[slot];
                    frame::write_frame(
                        &mut conn.output,
                        FrameType::Reply,
                        Status::Ok as u8,
                        header.request_id,
                        &[],
                    );
                }
            }
        }
    }

    // ----- streams ---------------------------------------------------------------------------

    fn start_stream(
        &mut self,
        slot: usize,
        request_id: u64,
        task: Box<dyn super::service::StreamTask<S>>,
    ) {
        let conn = &mut self.connections[slot];
        let held = stream_held_bytes(&*task);
        recount(&mut self.stream_bytes, &mut conn.stream_bytes, 0, held);
        let entry = StreamEntry {
            task,
            credit: INITIAL_STREAM_CREDIT,
            waiting: false,
            queued: true,
            held,
        };
        conn.streams.insert(request_id, entry);
        self.stats.streams_open += 1;
        self.ready_streams.push_back(StreamHandle {
            connection_serial: conn.serial,
            slot,
            request_id,
        });
    }

    /// Ends stream `request_id` of connection `slot` without a Reply (see [`cancel_stream`]);
    /// false when no such stream runs.
    fn cancel_stream_by_id(&mut self, slot: usize, request_id: u64) -> bool {
        let conn = &mut self.connections[slot];
        let Some(entry) = conn.streams.remove(&request_id) else {
            return false;
        };
        let (node_bytes, stats) = (&mut self.stream_bytes, &mut self.stats);
        cancel_stream(
            self.service,
            stats,
            node_bytes,
            &mut conn.stream_bytes,
            entry,
        );
        true
    }

    fn take_wakeups(&mut self) {
        for handle in self.server.wakeups.take() {
            let Some(conn) = self.connections.get_mut(handle.slot) else {
                continue;
            };
            if conn.serial != handle.connection_serial {
                continue;
            }
            let Some(entry) = conn.streams.get_mut(&handle.request_id) else {
                continue;
            };
            if entry.waiting {
                entry.waiting = false;
                if !entry.queued && entry.credit > 0 {
                    entry.queued = true;
                    self.ready_streams.push_back(handle);
                }
            }
        }
    }

    /// Gives each ready stream a turn, bounded by its credit, the connection's output room and
    /// a per-pass budget.
    fn run_ready_streams(&mut self) {
        let high_water = self.server.options.output_buffer_bytes;
        let connection_budget = self.server.options.stream_memory_bytes;
        let node_budget = self.server.options.max_stream_memory_bytes;
        for _ in 0..self.ready_streams.len() {
            let Some(handle) = self.ready_streams.pop_front() else {
                break;
            };
            let Some(conn) = self.connections.get_mut(handle.slot) else {
                continue;
            };
            if conn.serial != handle.connection_serial {
                continue;
            }
            let Connection {
                streams,
                output,
                output_start,
                streams_blocked_on_output,
                stream_bytes: connection_bytes,
                ..
            } = conn;
            let Some(entry) = streams.get_mut(&handle.request_id) else {
                continue;
            };
            entry.queued = false;
            let mut finished = false;
            let mut budget_left = false;
            for item in 0..ITEMS_PER_PASS {
                if entry.credit == 0 {
                    break;
                }
                if output.len() - *output_start >= high_water {
                    *streams_blocked_on_output = true;
                    break;
                }
                let memory_room = connection_budget
                    .saturating_sub(*connection_bytes)
                    .min(node_budget.saturating_sub(self.stream_bytes));
                let mut out = StreamOut::new(output, handle, memory_room);
                let step = entry.task.resume(self.service, &mut out);
                let (written, done) = (out.items_written, out.finished);
                entry.credit = entry.credit.saturating_sub(written);
                let held = stream_held_bytes(&*entry.task);
                recount(&mut self.stream_bytes, connection_bytes, entry.held, held);
                entry.held = held;
                if done || step == StreamStep::Done {
                    finished = true;
                    break;
                }
                if step == StreamStep::Wait {
                    entry.waiting = true;
                    break;
                }
                // A step that wrote nothing used its own work budget (a scan that found nothing
                // to send yet): its turn ends here, or ITEMS_PER_PASS such steps would hold the
                // loop for that many budgets.
                if written == 0 {
                    budget_left = true;
                    break;
                }
                budget_left = item + 1 == ITEMS_PER_PASS;
            }
            if finished {
                recount(&mut self.stream_bytes, connection_bytes, entry.held, 0);
                streams.remove(&handle.request_id);
                self.stats.streams_open -= 1;
            } else if budget_left && entry.credit > 0 {
                entry.queued = true;
                self.ready_streams.push_back(handle);
            }
            self.dirty.push(handle.slot);
            // Wakeups raised by the stream itself (rare) are picked up on the next pass.
        }
    }

    /// Queues the streams of a connection whose output drained below the high-water mark.
    fn requeue_blocked_streams(&mut self, slot: usize) {
        let conn = &mut self.connections[slot];
        conn.streams_blocked_on_output = false;
        for (request_id, entry) in conn.streams.iter_mut() {
            if !entry.waiting && !entry.queued && entry.credit > 0 {
                entry.queued = true;
                self.ready_streams.push_back(StreamHandle {
                    connection_serial: conn.serial,
                    slot,
                    request_id: *request_id,
                });
            }
        }
    }

    // ----- writing and closing ---------------------------------------------------------------

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for slot in dirty {
            if self.connections.contains(slot) {
                self.flush(slot);
            }
        }
    }

    /// Writes what the socket takes; resumes reading and streams once output drains; closes a
    /// connection that is done.
    fn flush(&mut self, slot: usize) {
        let low_water = self.server.options.output_buffer_bytes / 2;
        let conn = &mut self.connections[slot];
        match conn.flush() {
            Ok(written) => self.stats.add_bytes_out(written),
            Err(err) => {
                tracing::debug!("write to {} failed: {err}", conn.client.peer);
                self.close(slot);
                return;
            }
        }
        let conn = &mut self.connections[slot];
        let drained = conn.pending_output() == 0;
        // A peer that closed its sending side still gets replies to every whole request it sent
        // first; those not yet processed (frame budget, paused reading) are pending_input work.
        let pending = conn.pending_input();
        let whole_frame_pending =
            pending.len() >= HEADER_LEN && pending.len() >= needed_frame_len(pending);
        if drained
            && (conn.close_when_flushed
                || (conn.peer_closed && conn.streams.is_empty() && !whole_frame_pending))
        {
            self.close(slot);
            return;
        }
        if conn.peer_closed
            && conn.pending_input().len() < HEADER_LEN
            && !conn.streams.is_empty()
            && drained
        {
            // The peer will read nothing more from streams it abandoned by closing.
            self.close(slot);
            return;
        }
        if conn.pending_output() <= low_water {
            if conn.reading_paused {
                conn.reading_paused = false;
                self.pending_input.push_back(slot);
            }
            if conn.streams_blocked_on_output {
                self.requeue_blocked_streams(slot);
            }
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(mut conn) = self.connections.try_remove(slot) else {
            return;
        };
        let (node_bytes, stats) = (&mut self.stream_bytes, &mut self.stats);
        cancel_all_streams(self.service, stats, node_bytes, &mut conn, false);
        debug_assert_eq!(conn.stream_bytes, 0, "stream memory of a closed connection");
        if let Err(err) = self.server.poll.registry().deregister(&mut conn.socket) {
            tracing::debug!("deregister: {err}");
        }
        self.stats.connections_open -= 1;
    }

    fn close_stalled_handshakes(&mut self, now: Instant) {
        let timeout = Duration::from_millis(self.server.options.hello_timeout_ms);
        let stalled: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| matches!(conn.phase, Phase::AwaitingHello { .. }))
            .filter(|(_, conn)| now.duration_since(conn.accepted_at) > timeout)
            .map(|(slot, _)| slot)
            .collect();
        for slot in stalled {
            tracing::debug!(
                "closing {}: no handshake within {timeout:?}",
                self.connections[slot].client.peer
            );
            self.close(slot);
        }
    }

    // ----- stats and shutdown ----------------------------------------------------------------

    fn write_stats_line(&mut self) {
        self.stats.stream_memory_bytes = self.stream_bytes as u64;
        let mut node_pairs = Vec::new();
        self.service.stats(&mut node_pairs);
        let service = &*self.service;
        let name_of = |code: u8| request_name(service, RequestCode(code));
        let line = self.stats.take_interval_line(&name_of, &node_pairs);
        if let Some(logs) = &self.server.logs {
            if let Err(err) = logs.write_stats_line(&line) {
                tracing::warn!("cannot write stats.log: {err}");
            }
        }
    }

    /// Once per tick: the systemd watchdog ping, and a copy of the counters when a scrape asked
    /// for one (see [`crate::metrics`]: the loop never waits for the HTTP thread).
    fn observe(&mut self, now: Instant) {
        crate::systemd::watchdog_ping_if_due(now);
        let Some(hub) = &self.server.metrics else {
            return;
        };
        if !hub.take_request() {
            return;
        }
        self.stats.stream_memory_bytes = self.stream_bytes as u64;
        let service = &*self.service;
        let name_of = |code: u8| request_name(service, RequestCode(code));
        let mut node = crate::metrics::Families::default();
        service.metrics(&mut node);
        hub.publish(crate::metrics::Snapshot {
            core: self.stats.metrics_snapshot(&name_of),
            node,
            taken: now,
        });
    }

    /// Refuses new connections (hello ShuttingDown, see `on_accepted`; the listener stays
    /// registered until the loop ends so late clients hear why), answers what was already
    /// received, ends streams, and lets output drain.
    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        crate::systemd::stopping(
            "shutting down: answering requests received, then the node's final flush or dump",
        );
        if let Some(hub) = &self.server.metrics {
            hub.set_ready(false);
        }
        let slots: Vec<usize> = self.connections.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            if matches!(self.connections[slot].phase, Phase::AwaitingHello { .. }) {
                self.close(slot);
                continue;
            }
            // Requests that already arrived, in our buffer or the socket's, are answered before
            // the node stops (those still in the socket only if the connection's output is under
            // its bound: a reader that stopped reading is not read from).
            self.read_connection(slot);
            self.answer_buffered_requests(slot);
            let Some(conn) = self.connections.get_mut(slot) else {
                continue;
            };
            let (node_bytes, stats) = (&mut self.stream_bytes, &mut self.stats);
            cancel_all_streams(self.service, stats, node_bytes, conn, true);
            conn.close_when_flushed = true;
            self.flush(slot);
        }
        tracing::info!(
            "stopped accepting; {} connections draining",
            self.connections.len()
        );
    }

    /// At shutdown: executes the requests already buffered while the connection's output is
    /// under its high-water mark; past it, answers the rest ShuttingDown without a body, so a
    /// reader that stopped reading cannot make the node buffer without bound (at most one short
    /// reply per buffered frame).
    fn answer_buffered_requests(&mut self, slot: usize) {
        let high_water = self.server.options.output_buffer_bytes;
        let max_frame_bytes = self.server.options.max_frame_bytes;
        loop {
            let Some(conn) = self.connections.get_mut(slot) else {
                return;
            };
            if conn.close_when_flushed {
                return;
            }
            if conn.pending_output() < high_water {
                if !self.process_frame(slot) {
                    return;
                }
                continue;
            }
            let Ok(Some(header)) = frame::parse_frame(conn.pending_input(), max_frame_bytes) else {
                return;
            };
            conn.consume_input(header.frame_len());
            if header.frame_type == FrameType::Request {
                let status = Status::ShuttingDown as u8;
                frame::write_frame(
                    &mut conn.output,
                    FrameType::Reply,
                    status,
                    header.request_id,
                    &[],
                );
            }
        }
    }

    fn finish_shutdown(mut self) -> io::Result<()> {
        let slots: Vec<usize> = self.connections.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.close(slot);
        }
        tracing::info!("connections closed; running the node's shutdown");
        let outcome = self.service.shutdown();
        self.write_stats_line();
        match outcome {
            Ok(()) => {
                tracing::info!("shutdown complete");
                Ok(())
            }
            Err(reason) => {
                tracing::error!("shutdown FAILED: {reason}");
                Err(io::Error::other(format!("shutdown failed: {reason}")))
            }
        }
    }
}

/// When a read loop may stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadUntil {
    /// At the first short read: the socket had nothing more, and new data brings a new
    /// edge-triggered event. Saves the one extra `read` per batch that would only say WouldBlock.
    Drained,
    /// At WouldBlock (mio's general contract), for reads not triggered by a fresh event.
    WouldBlock,
}

/// The memory a stream counts for: the core's entry, the task itself and what the task holds.
fn stream_held_bytes<S: ?Sized>(task: &dyn super::service::StreamTask<S>) -> usize {
    STREAM_ENTRY_OVERHEAD_BYTES + std::mem::size_of_val(task) + task.held_bytes()
}

/// Ends a stream that did not finish (Stop, a reused id, its connection closed, shutdown): gives
/// its memory back and lets its task release what it registered. The caller writes its Reply,
/// if it gets one.
fn cancel_stream<S: Service>(
    service: &mut S,
    stats: &mut ServerStats,
    node_bytes: &mut usize,
    connection_bytes: &mut usize,
    mut entry: StreamEntry<S>,
) {
    recount(node_bytes, connection_bytes, entry.held, 0);
    entry.task.cancel(service);
    stats.streams_open -= 1;
}

/// Ends every stream of `conn` (see [`cancel_stream`]); with `shutting_down`, each with a Reply
/// of status ShuttingDown.
fn cancel_all_streams<S: Service>(
    service: &mut S,
    stats: &mut ServerStats,
    node_bytes: &mut usize,
    conn: &mut Connection<S>,
    shutting_down: bool,
) {
    for (request_id, entry) in conn.streams.drain() {
        cancel_stream(service, stats, node_bytes, &mut conn.stream_bytes, entry);
        if shutting_down {
            frame::write_frame(
                &mut conn.output,
                FrameType::Reply,
                Status::ShuttingDown as u8,
                request_id,
                b"node shutting down",
            );
        }
    }
}

/// Moves a stream's counted memory from `old` to `new` bytes in its connection's total and the
/// node's.
fn recount(node_bytes: &mut usize, connection_bytes: &mut usize, old: usize, new: usize) {
    debug_assert!(old <= *node_bytes && old <= *connection_bytes);
    *node_bytes = node_bytes.saturating_sub(old) + new;
    *connection_bytes = connection_bytes.saturating_sub(old) + new;
}

/// The length of the frame being assembled at the start of `pending`, when its header is there.
fn needed_frame_len(pending: &[u8]) -> usize {
    pending
        .first_chunk::<4>()
        .map_or(0, |len| HEADER_LEN + u32::from_le_bytes(*len) as usize)
}

/// The name of any request code: common ones from the protocol, the rest from the service.
pub(crate) fn request_name<S: Service + ?Sized>(
    service: &S,
    code: RequestCode,
) -> Option<&'static str> {
    code.common_name().or_else(|| service.request_name(code))
}
