//! The contract between the server core and a node: a node is a [`Service`] (engine + request
//! handlers). The core owns sockets, frames and flow control; a service sees decoded requests and
//! writes replies through [`Reply`], or hands back a [`StreamTask`] that the core drives as the
//! client grants credit and the connection has room.

use crate::protocol::batch::{BatchBuilder, BatchEncoding};
use crate::protocol::frame::{self, FrameType};
use crate::protocol::status::MAX_ERROR_MESSAGE_BYTES;
use crate::protocol::{NodeKind, RequestCode, Status};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Display;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// Who sent a request, as established by the handshake.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The authenticated name, or empty for an anonymous client (auth off).
    pub name: String,
    /// Whether the client may run administrative requests. With auth off, every client is.
    pub admin: bool,
    pub peer: SocketAddr,
}

/// One decoded request.
#[derive(Debug)]
pub struct Request<'a> {
    pub code: RequestCode,
    pub request_id: u64,
    pub body: &'a [u8],
    pub client: &'a ClientInfo,
}

/// What a handler did with a request.
pub enum Handled<S: ?Sized> {
    /// The reply was written through [`Reply`].
    Replied,
    /// The request is a stream; the core calls the task as credit allows.
    Stream(Box<dyn StreamTask<S>>),
}

/// A node: its kind, its request handlers and its housekeeping hooks.
pub trait Service {
    fn kind(&self) -> NodeKind;

    /// The node's software version, reported by GetVersion.
    fn software_version(&self) -> &'static str;

    /// The name of a node-specific request code (for logs and stats); `None` for a code this node
    /// does not know, which the core answers with UnsupportedRequest without calling `handle`.
    fn request_name(&self, code: RequestCode) -> Option<&'static str>;

    /// Whether `code` is an administrative request. The core answers NotPermitted to a client
    /// that is not an admin before the request's body is even looked at, so a non-admin learns
    /// nothing from how its body would have been judged (docs/security.md).
    fn admin_only(&self, _code: RequestCode) -> bool {
        false
    }

    /// Whether `code` may open a stream that sends Items (GetAll, Listen, Consume...). Such a
    /// request is refused with TooManyRequests while its connection's streams hold
    /// [`ServerOptions::stream_memory_bytes`](super::ServerOptions) or all streams of the node
    /// hold [`ServerOptions::max_stream_memory_bytes`](super::ServerOptions).
    fn opens_stream(&self, _code: RequestCode) -> bool {
        false
    }

    /// Whether `code` only acts on a stream that already runs (queue ConsumeAck). Such a request
    /// is never refused for the connection's limits (`max_in_flight`, stream memory): refusing
    /// it would stall the very streams that hold the connection at its limit.
    fn acts_on_running_stream(&self, _code: RequestCode) -> bool {
        false
    }

    /// Executes one request. Must either write a reply through `reply` and return `Replied`, or
    /// return `Stream` without writing one.
    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self>;

    /// A look at requests before they run: the loop calls it with the whole request frames
    /// already read on a connection, up to [`LOOK_AHEAD_FRAMES`] of them, before it executes
    /// the first (and again every [`LOOK_AHEAD_FRAMES`] frames), when more than one frame is
    /// there; and with the lone frames (one request read, P=1) of up to [`LOOK_AHEAD_FRAMES`]
    /// connections read in the same pass, before the first of them runs. So a node can start
    /// the memory loads of their lookups (prefetches) and the loads overlap instead of waiting
    /// one after the other (docs/benchmarks.md, "Overlapping a read's misses" and "Lone
    /// frames, looked at together"). Only a hint: it must not reply, change anything a client can see, or wait;
    /// bounded work per frame; a frame whose body does not decode is skipped. The frames still
    /// go through every check and refusal when they run, so they may never run as seen here
    /// (a refusal, a connection closed before).
    fn look_ahead(&self, _frames: LookAheadFrames<'_>) {}

    /// Called every `tick_interval_ms` (flush timers and the like).
    fn tick(&mut self, _now: Instant) {}

    /// Called on every pass of the event loop, after the requests of that pass: a slice of
    /// long-running work (a dump walking a channel). Keep each call short (well under a
    /// millisecond); return true while more work is ready, so the loop polls without blocking,
    /// and false when the work waits for something (it resumes on the next tick or when another
    /// thread wakes the loop through [`Wakeups::loop_waker`]).
    fn background(&mut self, _now: Instant) -> bool {
        false
    }

    /// Called before any connection's output is written to its socket: whatever the replies
    /// written so far promise (a change log's group written out) must hold once this returns.
    /// The loop sends the replies of a pass at its end, so this runs about once per pass
    /// (cheap when there is nothing to do: it runs for every flush of a connection with output
    /// queued, not for a flush with nothing to send).
    fn before_output(&mut self) {}

    /// SIGHUP replaced the node's credentials (the server already judges handshakes by them): a
    /// node that authenticates with them itself (dht redistribution) takes the new set.
    fn credentials_reloaded(&mut self, _credentials: &std::sync::Arc<crate::auth::Credentials>) {}

    /// Node-specific live counters, appended to the core's for GetStats and stats.log.
    fn stats(&self, _out: &mut Vec<(String, u64)>) {}

    /// Node-specific metrics for `/metrics` (channels, dumps, fsyncs...), added to the core's.
    /// Called on the event loop only when a scrape asks (see [`crate::metrics`]); every metric
    /// is documented in docs/operations.md, "Metrics".
    fn metrics(&self, _out: &mut crate::metrics::Families) {}

    /// Called once at graceful shutdown after the last request was answered (flush, dump).
    /// A node whose final flush or dump failed returns the reason, and the process exits
    /// non-zero (an operator or systemd must not read data loss as success).
    fn shutdown(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// How many frames one [`Service::look_ahead`] call sees at most: about one pipelined batch of
/// a client (P=16), few enough that what the node prefetches for them is still in the cache
/// when they run.
pub const LOOK_AHEAD_FRAMES: usize = 16;

/// The whole Request frames at the start of one or more connections' unprocessed input, as
/// [`Service::look_ahead`] sees them: `(code, body)` of each, node-specific codes only (the
/// core answers the common ones itself), at most [`LOOK_AHEAD_FRAMES`] in all, each input's
/// ending at its first frame that is not whole or whose header is broken. Control frames are
/// skipped (they count towards the limit). `Clone`, so a node may walk them more than once.
#[derive(Clone)]
pub struct LookAheadFrames<'a> {
    /// The inputs not walked yet, the one being walked first (its frames not yet shown).
    inputs: [&'a [u8]; LOOK_AHEAD_FRAMES],
    /// Inputs in `inputs`, and the index of the one being walked.
    len: usize,
    next: usize,
    max_body_bytes: u32,
    left: usize,
}

impl<'a> LookAheadFrames<'a> {
    /// The frames at the start of `input` (a connection's pending input).
    pub fn new(input: &'a [u8], max_body_bytes: u32) -> LookAheadFrames<'a> {
        LookAheadFrames::across(std::iter::once(input), max_body_bytes)
    }

    /// How many inputs these frames come from (connections; one for [`LookAheadFrames::new`]).
    pub fn inputs(&self) -> usize {
        self.len
    }

    /// The frames at the start of each of `inputs` (connections' pending input), one input
    /// after the other; inputs past the [`LOOK_AHEAD_FRAMES`]th are not shown.
    pub fn across(
        inputs: impl IntoIterator<Item = &'a [u8]>,
        max_body_bytes: u32,
    ) -> LookAheadFrames<'a> {
        let mut frames = LookAheadFrames {
            inputs: [&[]; LOOK_AHEAD_FRAMES],
            len: 0,
            next: 0,
            max_body_bytes,
            left: LOOK_AHEAD_FRAMES,
        };
        for (slot, input) in frames.inputs.iter_mut().zip(inputs) {
            *slot = input;
            frames.len += 1;
        }
        frames
    }
}

impl<'a> Iterator for LookAheadFrames<'a> {
    type Item = (RequestCode, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 && self.next < self.len {
            let input = self.inputs[self.next];
            let Some(header) = frame::parse_frame(input, self.max_body_bytes)
                .ok()
                .flatten()
            else {
                // This input's whole frames are all shown: on to the next connection's.
                self.next += 1;
                continue;
            };
            self.left -= 1;
            let (whole, rest) = input.split_at(header.frame_len());
            self.inputs[self.next] = rest;
            let code = RequestCode(header.code);
            if header.frame_type == FrameType::Request && !code.is_common() {
                return Some((code, &whole[frame::HEADER_LEN..]));
            }
        }
        None
    }
}

/// Where a handler writes its reply: straight into the connection's output buffer, so a reply
/// costs no allocation.
pub struct Reply<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) request_id: u64,
    pub(crate) status: Option<Status>,
}

impl<'a> Reply<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, request_id: u64) -> Reply<'a> {
        Reply {
            out,
            request_id,
            status: None,
        }
    }

    /// Replies `status` with a result body (for Ok and NotFound).
    pub fn send(&mut self, status: Status, body: &[u8]) {
        debug_assert!(self.status.is_none(), "a request gets exactly one reply");
        frame::write_frame(
            self.out,
            FrameType::Reply,
            status as u8,
            self.request_id,
            body,
        );
        self.status = Some(status);
    }

    pub fn ok(&mut self, body: &[u8]) {
        self.send(Status::Ok, body);
    }

    /// Replies `status` with a body written in place by `write`.
    pub fn send_with(&mut self, status: Status, write: impl FnOnce(&mut Vec<u8>)) {
        debug_assert!(self.status.is_none(), "a request gets exactly one reply");
        let start = frame::begin_frame(self.out, FrameType::Reply, status as u8, self.request_id);
        write(self.out);
        frame::end_frame(self.out, start);
        self.status = Some(status);
    }

    /// Replies an error status with a message for people (cut at 1 KiB).
    pub fn error(&mut self, status: Status, message: impl Display) {
        debug_assert!(!status.is_success());
        let message = message.to_string();
        self.send(status, truncate_message(&message));
    }

    pub fn status(&self) -> Option<Status> {
        self.status
    }
}

/// Cuts a message at 1 KiB, on a character boundary.
pub(crate) fn truncate_message(message: &str) -> &[u8] {
    let mut end = message.len().min(MAX_ERROR_MESSAGE_BYTES);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}

/// Identifies one running stream, so that a service can wake it when data arrives (a Listen
/// woken by a Put on another connection). A handle outlives its stream harmlessly: waking a
/// finished stream does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamHandle {
    pub(crate) connection_serial: u64,
    pub(crate) slot: usize,
    pub(crate) request_id: u64,
}

/// The queue of streams a service wants resumed (single-threaded: the event loop and the service
/// share it on one thread), and the waker that other threads use to interrupt the loop.
#[derive(Clone, Default)]
pub struct Wakeups {
    queue: Rc<RefCell<VecDeque<StreamHandle>>>,
    loop_waker: Option<std::sync::Arc<mio::Waker>>,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("queued", &self.queue.borrow().len())
            .finish()
    }
}

impl Wakeups {
    pub(crate) fn with_loop_waker(waker: std::sync::Arc<mio::Waker>) -> Wakeups {
        Wakeups {
            queue: Rc::default(),
            loop_waker: Some(waker),
        }
    }

    pub fn wake(&self, handle: StreamHandle) {
        self.queue.borrow_mut().push_back(handle);
    }

    /// A handle another thread (a dump writer, a disk syncer) can use to make the event loop run
    /// a pass, so the service's [`Service::background`] is called again. `None` only for a
    /// `Wakeups` made outside a server (unit tests).
    pub fn loop_waker(&self) -> Option<std::sync::Arc<mio::Waker>> {
        self.loop_waker.clone()
    }

    pub(crate) fn take(&self) -> VecDeque<StreamHandle> {
        std::mem::take(&mut *self.queue.borrow_mut())
    }
}

/// What a stream did when resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStep {
    /// It wrote one item and may have more now.
    Continue,
    /// It has nothing to send now; it will be resumed after someone calls [`Wakeups::wake`].
    Wait,
    /// It wrote its final reply.
    Done,
}

/// A running stream (GetAll, Listen, GetRange, Consume...).
pub trait StreamTask<S: ?Sized> {
    /// Writes at most one item (or the final reply) through `out`. Called only while the client
    /// has credit and the connection's output has room.
    fn resume(&mut self, service: &mut S, out: &mut StreamOut<'_>) -> StreamStep;

    /// The stream ends without finishing: the client sent Stop, the connection dropped, or the
    /// node is shutting down. Release whatever the stream registered with the service.
    fn cancel(&mut self, _service: &mut S) {}

    /// Heap bytes the stream holds between its turns, beyond its own struct (which the core
    /// counts itself): names, filters, key windows, cursors, indexes, and state the service
    /// keeps for it (a consumer's entry). An honest upper estimate: the core counts it against
    /// the connection's and the node's stream memory budgets after every turn. Buffers used
    /// only within a turn (a batch being built and sent) are not held and not counted.
    fn held_bytes(&self) -> usize {
        0
    }

    /// Whether this is not a stream but a request whose one reply waits (for an fsync, a
    /// dump): a client's Stop for its id is then ignored, as for every request that is not a
    /// stream (docs/protocol.md §2.2), and the reply says what happened, when it happened.
    fn is_deferred_reply(&self) -> bool {
        false
    }
}

/// A stream's view of its connection's output.
pub struct StreamOut<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) handle: StreamHandle,
    pub(crate) items_written: u32,
    pub(crate) finished: bool,
    /// Stream memory still free for this stream in this turn: what both its connection's and
    /// the node's budgets leave, minus what [`StreamOut::try_reserve`] granted already.
    pub(crate) memory_room: usize,
}

impl<'a> StreamOut<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, handle: StreamHandle, memory_room: usize) -> Self {
        StreamOut {
            out,
            handle,
            items_written: 0,
            finished: false,
            memory_room,
        }
    }

    /// The handle to register for wakeups.
    pub fn handle(&self) -> StreamHandle {
        self.handle
    }

    /// Asks to hold `bytes` more between turns (an index of an unsorted bucket, say). Granted
    /// when that stays within the stream memory budgets of the connection and of the node;
    /// the stream then reports the memory in [`StreamTask::held_bytes`]. A stream refused does
    /// without (a cheaper way, documented), never waits for it: waiting for memory that other
    /// streams hold while they wait for their client could stall a connection for good.
    pub fn try_reserve(&mut self, bytes: usize) -> bool {
        if bytes > self.memory_room {
            return false;
        }
        self.memory_room -= bytes;
        true
    }

    pub fn item(&mut self, code: u8, body: &[u8]) {
        debug_assert!(!self.finished);
        frame::write_frame(
            self.out,
            FrameType::Item,
            code,
            self.handle.request_id,
            body,
        );
        self.items_written += 1;
    }

    /// Writes an item whose body `write` appends in place.
    pub fn item_with(&mut self, code: u8, write: impl FnOnce(&mut Vec<u8>)) {
        debug_assert!(!self.finished);
        let start = frame::begin_frame(self.out, FrameType::Item, code, self.handle.request_id);
        write(self.out);
        frame::end_frame(self.out, start);
        self.items_written += 1;
    }

    /// Ends one step of a stream of batches (GetAll, GetRange): sends `batch` as one Item
    /// (code `item_code`, encoded as `encoding` says) when it holds records, leaving it empty;
    /// otherwise finishes the stream with Ok when its walk `ended`, or says Continue (the step's
    /// work went on records that did not go out). A stream thus never sends an empty batch.
    pub fn send_batch_or_end(
        &mut self,
        item_code: u8,
        encoding: BatchEncoding,
        batch: &mut BatchBuilder,
        ended: bool,
    ) -> StreamStep {
        if !batch.is_empty() {
            self.item_with(item_code, |body| batch.finish_as(encoding, body));
            StreamStep::Continue
        } else if ended {
            self.finish(Status::Ok, &[]);
            StreamStep::Done
        } else {
            StreamStep::Continue
        }
    }

    /// Ends the stream with its final reply.
    pub fn finish(&mut self, status: Status, body: &[u8]) {
        debug_assert!(!self.finished);
        frame::write_frame(
            self.out,
            FrameType::Reply,
            status as u8,
            self.handle.request_id,
            body,
        );
        self.finished = true;
    }

    /// Ends the stream with an error status and a message for people (cut at 1 KiB), as
    /// [`Reply::error`] does for a plain request.
    pub fn finish_error(&mut self, status: Status, message: impl Display) {
        debug_assert!(!status.is_success());
        let message = message.to_string();
        self.finish(status, truncate_message(&message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::write_frame;

    const OWN_CODE: u8 = 16;

    fn frames(ids: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for id in ids {
            write_frame(
                &mut out,
                FrameType::Request,
                OWN_CODE,
                *id,
                &id.to_le_bytes(),
            );
        }
        out
    }

    fn shown(frames: LookAheadFrames<'_>) -> Vec<u64> {
        frames
            .map(|(code, body)| {
                assert_eq!(code, RequestCode(OWN_CODE));
                u64::from_le_bytes(body.try_into().expect("each body is its id"))
            })
            .collect()
    }

    #[test]
    fn across_shows_each_inputs_whole_frames_in_turn() {
        let first = frames(&[1, 2]);
        let mut cut = frames(&[3]);
        cut.extend_from_slice(&frames(&[4])[..20]); // 4 is not whole yet
        let mut with_common = frames(&[5]);
        write_frame(&mut with_common, FrameType::Request, 1, 6, &[]); // GetVersion: the core's
        write_frame(&mut with_common, FrameType::Control, 1, 7, &[]);
        with_common.extend_from_slice(&frames(&[8]));
        let broken = [0xffu8; 32]; // a header naming a body past any limit
        let inputs = [&first[..], &cut, &[], &broken, &with_common];
        let frames = LookAheadFrames::across(inputs, 1024);
        assert_eq!(frames.inputs(), 5);
        assert_eq!(shown(frames), [1, 2, 3, 5, 8]);
    }

    #[test]
    fn across_shows_at_most_look_ahead_frames_in_all() {
        let ids: Vec<u64> = (0..LOOK_AHEAD_FRAMES as u64 + 4).collect();
        let inputs: Vec<Vec<u8>> = ids.chunks(3).map(frames).collect();
        let seen = shown(LookAheadFrames::across(
            inputs.iter().map(Vec::as_slice),
            1024,
        ));
        assert_eq!(seen, ids[..LOOK_AHEAD_FRAMES]);
        let one = frames(&ids);
        assert_eq!(
            shown(LookAheadFrames::new(&one, 1024)),
            ids[..LOOK_AHEAD_FRAMES]
        );
    }
}
