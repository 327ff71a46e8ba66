//! Reading and frames: reading a connection until its socket is drained (or reading must
//! pause), the frames of each pass under their budget, and what each frame does: a Request is
//! refused, answered by the core (the requests every node answers) or handed to the service;
//! a Control frame grants credit to or stops a stream; anything else is a protocol error that
//! closes the connection once answered.

use super::{request_name, EventLoop, Pending, EVENTS_CAPACITY, FRAMES_PER_PASS};
use crate::protocol::codes::{ControlCode, MAX_STREAM_CREDIT};
use crate::protocol::frame::{self, FrameError, FrameHeader, FrameType, HEADER_LEN};
use crate::protocol::{RequestCode, Status};
use crate::server::common;
use crate::server::connection::{reserve_output, Connection, Phase, ReadOutcome};
use crate::server::outcome::unsupported_message;
use crate::server::service::{
    Handled, LookAheadFrames, Reply, Request, Service, StreamHandle, LOOK_AHEAD_FRAMES,
};

impl<S: Service> EventLoop<'_, S> {
    pub(super) fn max_input_bytes(&self) -> usize {
        HEADER_LEN + self.options().max_frame_bytes as usize
    }

    /// Reads until WouldBlock (or until reading must pause), processing frames as they arrive.
    pub(super) fn read_connection(&mut self, slot: usize) {
        self.read_until(slot, ReadUntil::WouldBlock);
    }

    /// Reads until the socket is drained (see [`ReadUntil`]) or reading must pause, processing
    /// frames as they arrive; then writes the replies in one go.
    pub(super) fn read_until(&mut self, slot: usize, until: ReadUntil) {
        loop {
            match self.read_step(slot) {
                ReadStep::Data { drained } => {
                    if !self.process_read(slot, until, drained) {
                        break;
                    }
                }
                ReadStep::Stop => break,
                ReadStep::Gone => return,
            }
        }
        self.reply_at_end_of_pass(slot);
    }

    /// Processes what a read of `slot` brought; returns whether to read the socket again.
    fn process_read(&mut self, slot: usize, until: ReadUntil, drained: bool) -> bool {
        self.process_input(slot) && !(drained && until == ReadUntil::Drained)
    }

    /// The replies of a connection read in this pass are sent at its end (flush_dirty), with
    /// every other connection's: the replies of a pass leave back to back, so a client process
    /// on another core is woken once for many connections rather than once for each
    /// (docs/benchmarks.md, issue 22: dht put P=16 642k -> 886k ops/s), and before_output runs
    /// once for the pass (a change log writes one group).
    fn reply_at_end_of_pass(&mut self, slot: usize) {
        self.dirty.push(slot);
    }

    /// One read of a connection, without processing what it brought.
    fn read_step(&mut self, slot: usize) -> ReadStep {
        let max_input = self.max_input_bytes();
        let Some(conn) = self.connections.get_mut(slot) else {
            return ReadStep::Gone;
        };
        if conn.reading_paused || conn.close_when_flushed || conn.peer_closed {
            return ReadStep::Stop;
        }
        let needed = needed_frame_len(conn.pending_input());
        match conn.read_once(needed, max_input) {
            Ok(ReadOutcome::Data { bytes, drained }) => {
                self.stats.add_bytes_in(bytes);
                ReadStep::Data { drained }
            }
            Ok(ReadOutcome::WouldBlock) => ReadStep::Stop,
            Ok(ReadOutcome::BufferFull) => {
                // Every whole frame was processed, so a full buffer means processing paused.
                self.pending.push_back(Pending::Input(slot));
                ReadStep::Stop
            }
            Ok(ReadOutcome::Closed) => {
                conn.peer_closed = true;
                ReadStep::Stop
            }
            Err(err) => {
                self.on_read_failure(slot, &err);
                ReadStep::Gone
            }
        }
    }

    /// The first read of a connection with a readable event: what it brought waits in
    /// `first_reads` until every readable connection of the pass is read
    /// ([`EventLoop::process_first_reads`]).
    pub(super) fn read_first(&mut self, slot: usize, until: ReadUntil) {
        match self.read_step(slot) {
            ReadStep::Data { drained } => {
                // One first read per event: bounded by the poll's events.
                debug_assert!(self.first_reads.len() < EVENTS_CAPACITY);
                self.first_reads.push(FirstRead {
                    slot,
                    until,
                    drained,
                });
            }
            ReadStep::Stop => self.reply_at_end_of_pass(slot),
            ReadStep::Gone => {}
        }
    }

    /// Processes what the pass's first reads brought, [`LOOK_AHEAD_FRAMES`] connections at a
    /// time: their lone frames looked at together first, then each connection's frames, and
    /// its reading goes on as [`EventLoop::read_until`] would have.
    pub(super) fn process_first_reads(&mut self) {
        let mut first_reads = std::mem::take(&mut self.first_reads);
        for group in first_reads.chunks(LOOK_AHEAD_FRAMES) {
            self.look_ahead_lone_frames(group);
            for read in group {
                if self.process_read(read.slot, read.until, read.drained) {
                    self.read_until(read.slot, read.until);
                } else {
                    self.reply_at_end_of_pass(read.slot);
                }
            }
        }
        first_reads.clear();
        self.first_reads = first_reads;
    }

    /// Shows the service the lone frames (one whole request and nothing after it: P=1) of
    /// `group`'s open connections together, when there are two or more: one connection's lone
    /// frame has nothing to overlap with, but the connections read in one pass do (a frame
    /// with others after it on its connection is shown with them by process_input).
    fn look_ahead_lone_frames(&self, group: &[FirstRead]) {
        let lone_input = |read: &FirstRead| {
            let conn = self.connections.get(read.slot)?;
            let input = conn.pending_input();
            (matches!(conn.phase, Phase::Open) && holds_one_frame_alone(input)).then_some(input)
        };
        let frames = LookAheadFrames::across(
            group.iter().filter_map(lone_input),
            self.server.options.max_frame_bytes,
        );
        if frames.inputs() >= 2 {
            self.service.look_ahead(frames);
        }
    }

    /// Handles the frames buffered on a connection. Returns false when reading should stop
    /// (the connection closed, paused or is closing).
    pub(super) fn process_input(&mut self, slot: usize) -> bool {
        // Whatever ran since the last frame is no request's: the first one reads the clock.
        self.request_clock = None;
        for frame in 0..FRAMES_PER_PASS {
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
            reserve_output(&mut conn.output, self.server.options.output_buffer_bytes);
            let input = conn.pending_input();
            // The service sees the next frames before the first runs (prefetches); a lone
            // frame (no header after it: P=1) has nothing to overlap with.
            if frame % LOOK_AHEAD_FRAMES == 0
                && second_header_there(input)
                && matches!(conn.phase, Phase::Open)
            {
                let max_body_bytes = self.server.options.max_frame_bytes;
                self.service
                    .look_ahead(LookAheadFrames::new(input, max_body_bytes));
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
        self.pending.push_back(Pending::Input(slot));
        true
    }

    /// Does the work the last pass left ([`Pending`]). Work queued meanwhile (a budget used up
    /// again) waits for the next pass, so one busy connection cannot hold the loop.
    pub(super) fn drain_pending(&mut self) {
        for _ in 0..self.pending.len() {
            let slot = match self.pending.pop_front() {
                None => break,
                Some(Pending::Accept) => {
                    self.accept_connections();
                    continue;
                }
                Some(Pending::Input(slot)) => slot,
            };
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

    /// Handles one whole frame if there is one. Returns whether a frame was consumed.
    pub(super) fn process_frame(&mut self, slot: usize) -> bool {
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

    pub(super) fn protocol_error(&mut self, slot: usize, err: &FrameError) {
        let status = match err {
            FrameError::TooLarge { .. } => Status::FrameTooLarge,
            _ => Status::BadRequest,
        };
        self.reject_frame(slot, err.request_id(), status, &err.to_string());
    }

    /// Answers a broken frame and closes the connection once the answer is written.
    pub(super) fn reject_frame(
        &mut self,
        slot: usize,
        request_id: u64,
        status: Status,
        message: &str,
    ) {
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
            crate::server::service::truncate_message(&message),
        );
        conn.close_when_flushed = true;
        self.stats.count(|c| c.protocol_errors += 1);
    }

    pub(super) fn on_request(
        &mut self,
        slot: usize,
        header: FrameHeader,
        body_start: usize,
        body_end: usize,
    ) {
        let code = RequestCode(header.code);
        // The previous request's end, when it was handled just before in this run of frames:
        // one clock read per request rather than two.
        let started = match self.request_clock.take() {
            Some(started) => started,
            None => self.clock.now_ns(),
        };
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
            let elapsed = self.request_done(started);
            self.stats.record_request_ns(code.0, status, elapsed);
            return;
        }
        if code.is_common() {
            let body_len = body_end - body_start;
            let status = self.on_common_request(slot, code, header.request_id, body_len);
            let elapsed = self.request_done(started);
            self.stats.record_request_ns(code.0, status, elapsed);
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
                let elapsed = self.request_done(started);
                self.stats.record_request_ns(code.0, status, elapsed);
            }
            Handled::Stream(task) => {
                debug_assert!(reply.status().is_none(), "a stream must not reply up front");
                self.start_stream(slot, header.request_id, task);
                let elapsed = self.request_done(started);
                self.stats.record_request_ns(code.0, Status::Ok, elapsed);
            }
        }
    }

    /// The request started at `started` is done: its handling time in ns, and the start of the
    /// next request of this run of frames.
    fn request_done(&mut self, started: u64) -> u64 {
        let now = self.clock.now_ns();
        self.request_clock = Some(now);
        now.saturating_sub(started)
    }

    /// Why a request is answered without running it, checked in this order: the connection's
    /// limits (requests that only act on a running stream are exempt), an unknown code, a
    /// non-admin asking for an administrative request (before its body is decoded), and the
    /// stream memory budgets for a request that opens a stream.
    pub(super) fn refusal(&self, slot: usize, code: RequestCode) -> Option<(Status, String)> {
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
            let message = unsupported_message(code, service.kind());
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

    pub(super) fn on_common_request(
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

    pub(super) fn on_control(
        &mut self,
        slot: usize,
        header: FrameHeader,
        body_start: usize,
        body_end: usize,
    ) {
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
            // A request whose reply only waits is not a stream: Stop is ignored (§2.2).
            ControlCode::Stop if entry.task.is_deferred_reply() => {}
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
}

/// What one read of a connection came to.
enum ReadStep {
    /// Bytes arrived; `drained`: fewer than asked for (the socket had no more).
    Data { drained: bool },
    /// Nothing to process from this read: WouldBlock, the end of the stream, a full buffer,
    /// or reading paused.
    Stop,
    /// The read failed and the connection is closed.
    Gone,
}

/// A connection's first read of a pass, waiting for [`EventLoop::process_first_reads`].
#[derive(Debug, Clone, Copy)]
pub(super) struct FirstRead {
    slot: usize,
    until: ReadUntil,
    drained: bool,
}

/// When a read loop may stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadUntil {
    /// At the first short read: the socket had nothing more, and new data brings a new
    /// edge-triggered event. Saves the one extra `read` per batch that would only say WouldBlock.
    Drained,
    /// At WouldBlock (mio's general contract), for reads not triggered by a fresh event.
    WouldBlock,
}

/// Whether `pending` holds the header of a second frame after its first.
fn second_header_there(pending: &[u8]) -> bool {
    needed_frame_len(pending) + HEADER_LEN <= pending.len()
}

/// Whether `pending` holds one whole frame and nothing after it but part of a header (a lone
/// request: P=1).
fn holds_one_frame_alone(pending: &[u8]) -> bool {
    let first = needed_frame_len(pending);
    HEADER_LEN <= first && first <= pending.len() && !second_header_there(pending)
}

/// The length of the frame being assembled at the start of `pending`, when its header is there.
pub(super) fn needed_frame_len(pending: &[u8]) -> usize {
    pending
        .first_chunk::<4>()
        .map_or(0, |len| HEADER_LEN + u32::from_le_bytes(*len) as usize)
}
