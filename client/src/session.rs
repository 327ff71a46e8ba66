//! One node's connection as the I/O thread sees it: link state (idle, connecting, up), the
//! output buffer where frames are coalesced, the input buffer where frames are reassembled,
//! the routing table and the reconnect backoff.
//!
//! Owns the non-blocking reads and writes (through [`Transport`], in clear or TLS; each drained until `WouldBlock`, as mio's
//! edge-triggered readiness requires) and frame parsing with the protocol module's
//! `parse_frame`. Requests submitted while the link is connecting are written into the output
//! buffer at once and sent when it comes up, so the caller-side code is the same in every state.
//!
//! Memory is bounded: the input buffer holds at most one partial frame (≤ `max_frame_bytes`)
//! plus one read; the output buffer holds at most the frames of `max_in_flight` requests (each
//! ≤ `max_request_bytes`) plus their few Control frames.

use crate::backoff::Backoff;
use crate::error::ClientError;
use crate::limit::Permit;
use crate::node_set::NodeInfo;
use crate::routing::Requests;
use crate::shared::Sink;
use node_core::protocol::frame::{parse_frame, write_frame};
use node_core::protocol::{ControlCode, FrameType, RequestCode, HEADER_LEN};
use node_core::tls::Transport;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// Bytes asked of the kernel per read: large enough for a bulk stream's 64 KiB batches.
const READ_CHUNK: usize = 64 * 1024;
/// Buffer capacity beyond which an emptied buffer is shrunk back.
const SHRINK_ABOVE: usize = 1024 * 1024;

pub(crate) enum Link {
    Idle,
    Connecting,
    /// The socket, in clear or through TLS.
    Up(Transport),
}

pub(crate) struct Session {
    pub(crate) addr: SocketAddr,
    /// The node's shared record: its health is set here as connects succeed and fail.
    pub(crate) info: Arc<NodeInfo>,
    pub(crate) link: Link,
    pub(crate) requests: Requests,
    pub(crate) backoff: Backoff,
    out: Vec<u8>,
    /// Bytes of `out` already written.
    out_pos: usize,
    /// Always fully initialised (so reads need no zeroing); `inbuf[in_start..in_end]` holds the
    /// bytes received but not yet routed.
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    max_frame_bytes: u32,
}

impl Session {
    pub(crate) fn new(info: Arc<NodeInfo>, max_frame_bytes: u32) -> Session {
        let addr = info.addr;
        Session {
            addr,
            info,
            link: Link::Idle,
            requests: Requests::new(addr),
            backoff: Backoff::new(),
            out: Vec::new(),
            out_pos: 0,
            inbuf: Vec::new(),
            in_start: 0,
            in_end: 0,
            max_frame_bytes,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// Frames to write, or TLS records still to send.
    pub(crate) fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
            || matches!(&self.link, Link::Up(transport) if transport.wants_write())
    }

    /// Registers a request and appends its frame; it goes out on the next flush.
    pub(crate) fn queue_request(
        &mut self,
        request_id: u64,
        code: RequestCode,
        body: &[u8],
        reply_to: Sink,
        permit: Permit,
    ) {
        self.requests.insert(request_id, reply_to, permit);
        write_frame(&mut self.out, FrameType::Request, code.0, request_id, body);
    }

    /// Appends a Control frame for a running request; one for a request that has ended is
    /// dropped here (the node would ignore it anyway).
    pub(crate) fn queue_control(&mut self, request_id: u64, code: ControlCode, body: &[u8]) {
        let running = match code {
            ControlCode::Credit => self.requests.grant(request_id, credit_amount(body)),
            ControlCode::Stop => self.requests.contains(request_id),
        };
        if running {
            write_frame(
                &mut self.out,
                FrameType::Control,
                code as u8,
                request_id,
                body,
            );
        }
    }

    /// Writes buffered frames until done or the socket would block (then a writable event
    /// brings us back).
    pub(crate) fn flush(&mut self) -> Result<(), ClientError> {
        let Link::Up(stream) = &mut self.link else {
            return Ok(());
        };
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(ClientError::Disconnected { node: self.addr }),
                Ok(written) => self.out_pos += written,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(lost(self.addr, &e)),
            }
        }
        stream.send_tls_records().map_err(|e| lost(self.addr, &e))?;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            shrink_if_idle(&mut self.out);
        }
        Ok(())
    }

    /// Reads until the socket would block, routing every whole frame as it arrives.
    pub(crate) fn read_ready(&mut self) -> Result<(), ClientError> {
        loop {
            let Link::Up(stream) = &mut self.link else {
                return Ok(());
            };
            make_room(&mut self.inbuf, &mut self.in_start, &mut self.in_end);
            let outcome = stream.read(&mut self.inbuf[self.in_end..]);
            if let Ok(got) = &outcome {
                self.in_end += *got;
            }
            match outcome {
                Ok(0) => return Err(ClientError::Disconnected { node: self.addr }),
                Ok(_) => {
                    self.info.note_heard();
                    self.route_frames()?
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(lost(self.addr, &e)),
            }
        }
    }

    /// Routes every whole frame at the front of the input buffer and keeps the partial rest.
    fn route_frames(&mut self) -> Result<(), ClientError> {
        loop {
            let pending = &self.inbuf[self.in_start..self.in_end];
            let header = parse_frame(pending, self.max_frame_bytes)
                .map_err(|e| ClientError::protocol(self.addr, e.to_string()))?;
            let Some(header) = header else { break };
            let body = pending[HEADER_LEN..header.frame_len()].to_vec();
            self.in_start += header.frame_len();
            self.requests.route(&header, body)?;
        }
        Ok(())
    }

    /// Takes the socket out (for deregistering) and resets an up link to idle; buffered bytes
    /// belonged to that connection (or were waiting for it) and are dropped. A connect under
    /// way stays under way: a node has at most one. The routing table is left to the caller,
    /// which fails it with the reason.
    pub(crate) fn take_link(&mut self) -> Option<Transport> {
        self.out.clear();
        self.out_pos = 0;
        self.in_start = 0;
        self.in_end = 0;
        match std::mem::replace(&mut self.link, Link::Idle) {
            Link::Up(stream) => Some(stream),
            Link::Connecting => {
                self.link = Link::Connecting;
                None
            }
            Link::Idle => None,
        }
    }
}

/// Gives back the memory of a buffer that once held a big frame, once it is empty again, so
/// one 16 MiB request does not pin 16 MiB per connection for the client's lifetime.
fn shrink_if_idle(buf: &mut Vec<u8>) {
    if buf.is_empty() && buf.capacity() > SHRINK_ABOVE {
        buf.shrink_to(READ_CHUNK);
    }
}

/// Makes room for one more read of up to [`READ_CHUNK`] bytes: restarts an empty buffer at its
/// front (giving back a big one), moves a partial frame to the front when the tail is short, and
/// grows the buffer (zeroing only the new part, once) when a large frame needs it.
fn make_room(buf: &mut Vec<u8>, start: &mut usize, end: &mut usize) {
    if *start == *end {
        *start = 0;
        *end = 0;
        if buf.len() > SHRINK_ABOVE {
            *buf = Vec::new();
        }
    }
    if buf.len() - *end < READ_CHUNK / 4 && *start > 0 {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
    }
    if buf.len() - *end < READ_CHUNK / 4 {
        buf.resize(*end + READ_CHUNK, 0);
    }
}

/// The amount of a Credit body; the stream built it, so a bad one means 0 rather than a crash.
fn credit_amount(body: &[u8]) -> u32 {
    body.first_chunk::<4>()
        .map_or(0, |bytes| u32::from_le_bytes(*bytes))
}

/// The connection died under us; the OS reason goes to the log, callers see "disconnected".
fn lost(node: SocketAddr, error: &io::Error) -> ClientError {
    tracing::debug!(%node, %error, "connection lost");
    ClientError::Disconnected { node }
}
