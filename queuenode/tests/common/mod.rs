//! queuenode's process tests use the shared harness in `testkit`, pointed at this crate's binary,
//! plus [`Raw`]: a connection that speaks frames of any type, for streams (Consume items,
//! Credit and Stop controls) interleaved with ordinary requests.

#![allow(dead_code)]

pub use testkit::*;

use node_core::protocol::batch::{append_record, decode_batch, encode_batch};
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::{ControlCode, RequestCode, Status};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// This crate's node binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_queuenode");

/// One frame from the node.
#[derive(Debug, Clone)]
pub struct Frame {
    pub frame_type: FrameType,
    pub code: u8,
    pub id: u64,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn status(&self) -> Status {
        assert_eq!(self.frame_type, FrameType::Reply, "{self:?}");
        Status::from_u8(self.code).expect("known status")
    }
}

/// A raw connection: requests of any kind, frames matched to their request ids.
pub struct Raw {
    pub stream: TcpStream,
    buffer: Vec<u8>,
    next_id: u64,
    /// Frames read while looking for another request's.
    stash: VecDeque<Frame>,
}

impl Raw {
    pub fn open(addr: SocketAddr) -> Raw {
        let conn = Conn::open(addr);
        Raw {
            stream: conn.stream,
            buffer: Vec::new(),
            next_id: 1,
            stash: VecDeque::new(),
        }
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, code: RequestCode, body: &[u8]) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::new();
        write_frame(&mut out, FrameType::Request, code.0, id, body);
        self.stream.write_all(&out).expect("send request");
        id
    }

    pub fn credit(&mut self, id: u64, items: u32) {
        let mut out = Vec::new();
        write_frame(
            &mut out,
            FrameType::Control,
            ControlCode::Credit as u8,
            id,
            &items.to_le_bytes(),
        );
        self.stream.write_all(&out).expect("send credit");
    }

    pub fn stop(&mut self, id: u64) {
        let mut out = Vec::new();
        write_frame(
            &mut out,
            FrameType::Control,
            ControlCode::Stop as u8,
            id,
            &[],
        );
        self.stream.write_all(&out).expect("send stop");
    }

    /// A request and its Reply (frames of other requests are kept for later).
    pub fn call(&mut self, code: RequestCode, body: &[u8]) -> (Status, Vec<u8>) {
        let id = self.send(code, body);
        let frame = self.next_for(id);
        (frame.status(), frame.body)
    }

    /// Many requests in one write, then their Replies in request order.
    pub fn pipeline(&mut self, requests: &[(RequestCode, Vec<u8>)]) -> Vec<(Status, Vec<u8>)> {
        let mut out = Vec::new();
        let first = self.next_id;
        for (code, body) in requests {
            write_frame(&mut out, FrameType::Request, code.0, self.next_id, body);
            self.next_id += 1;
        }
        self.stream.write_all(&out).expect("send requests");
        (first..self.next_id)
            .map(|id| {
                let frame = self.next_for(id);
                (frame.status(), frame.body)
            })
            .collect()
    }

    /// The next frame of request `id`, waiting up to the harness's limit.
    pub fn next_for(&mut self, id: u64) -> Frame {
        self.next_for_timeout(id, WAIT)
            .unwrap_or_else(|| panic!("no frame for request {id} within {WAIT:?}"))
    }

    /// The next frame of request `id`, or `None` after `timeout`.
    pub fn next_for_timeout(&mut self, id: u64, timeout: Duration) -> Option<Frame> {
        if let Some(at) = self.stash.iter().position(|frame| frame.id == id) {
            return self.stash.remove(at);
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let frame = self.read_frame(deadline)?;
            if frame.id == id {
                return Some(frame);
            }
            self.stash.push_back(frame);
        }
    }

    fn read_frame(&mut self, deadline: std::time::Instant) -> Option<Frame> {
        loop {
            if let Some(header) = parse_frame(&self.buffer, u32::MAX).expect("valid frame") {
                let body = self.buffer[HEADER_LEN..header.frame_len()].to_vec();
                self.buffer.drain(..header.frame_len());
                return Some(Frame {
                    frame_type: header.frame_type,
                    code: header.code,
                    id: header.request_id,
                    body,
                });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed by the node"),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(error) => panic!("read: {error}"),
            }
        }
    }
}

/// The records (key, value) of a Consume batch item.
pub fn batch_records(body: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut scratch = Vec::new();
    decode_batch(body, &mut scratch)
        .expect("valid batch")
        .map(|(key, value)| (key, value.to_vec()))
        .collect()
}

/// An LZ4 batch of `values` (keys 0), as a Produce body carries it.
pub fn make_batch(values: &[Vec<u8>]) -> Vec<u8> {
    let mut raw = Vec::new();
    for value in values {
        append_record(&mut raw, 0, value);
    }
    let mut out = Vec::new();
    encode_batch(&raw, values.len() as u32, &mut out);
    out
}
