//! What a caller gets back: [`Reply`] (a request's final frame), [`Pending`] (a submitted
//! request not yet waited for) and [`Stream`] (a streaming request, with its credit grants).
//!
//! Owns the caller's side of a request: waiting with a deadline, cancelling on timeout or drop
//! (so the I/O thread forgets the request and a late reply is dropped), and, for streams,
//! granting credit as items are consumed so that a caller who stops reading pauses the node.

use crate::error::ClientError;
use crate::shared::{Command, Routed, Shared};
use node_core::protocol::status::MAX_ERROR_MESSAGE_BYTES;
use node_core::protocol::{ControlCode, Status};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request's final frame: its status and body. For `Ok` and `NotFound` the body is the
/// request's result; for every other status it is a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub node: SocketAddr,
    pub status: Status,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body if the status is `Ok`; any other status (`NotFound` included) as
    /// `ClientError::Status`.
    pub fn ok_body(self) -> Result<Vec<u8>, ClientError> {
        if self.status == Status::Ok {
            Ok(self.body)
        } else {
            Err(self.into_error())
        }
    }

    /// The reply itself if the status is `Ok` or `NotFound` (both carry a result), else the
    /// status as `ClientError::Status`.
    pub fn into_result(self) -> Result<Reply, ClientError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }

    /// The body as the node's message (for error statuses), cut to the protocol's 1 KiB.
    pub fn message(&self) -> String {
        if self.status.is_success() {
            return String::new();
        }
        let cut = &self.body[..self.body.len().min(MAX_ERROR_MESSAGE_BYTES)];
        String::from_utf8_lossy(cut).into_owned()
    }

    fn into_error(self) -> ClientError {
        ClientError::Status {
            node: self.node,
            status: self.status,
            message: self.message(),
        }
    }
}

/// One event of a [`Stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// One element; `code` is the request's item code.
    Item { code: u8, body: Vec<u8> },
    /// The stream's Reply: the last event.
    End(Reply),
}

/// The caller's handle on one request id: sends Control frames for it, and Cancel if dropped
/// before its Reply arrived. Where the request's frames arrive (its own channel, or a
/// [`crate::StreamSet`]'s shared one) is up to the owner.
pub(crate) struct Ticket {
    pub(crate) shared: Arc<Shared>,
    pub(crate) node: usize,
    pub(crate) request_id: u64,
    pub(crate) finished: bool,
    /// The node's count of reads with data when the request was made: a request that times out
    /// while it moved was slow, not sent to a node that stopped answering (`crate::probe`).
    pub(crate) heard_before: u64,
}

impl Ticket {
    pub(crate) fn control(&self, code: ControlCode, body: Vec<u8>) {
        let command = Command::Control {
            node: self.node,
            request_id: self.request_id,
            code,
            body,
        };
        // A failed send means the client is shut down; the request is then gone anyway.
        let _ = self.shared.send(command, self.node);
    }

    /// A one-reply wait for this request ran out: starts the liveness probe of its node
    /// (`crate::probe`, which decides whether one is due) and returns the timeout error.
    pub(crate) fn timed_out(&self) -> ClientError {
        crate::probe::after_timeout(&self.shared, self.node, self.heard_before);
        self.timeout_error()
    }

    pub(crate) fn timeout_error(&self) -> ClientError {
        ClientError::Timeout {
            node: self.shared.addr(self.node),
            ms: self.shared.options.request_timeout_ms,
        }
    }

    pub(crate) fn closed_error(&self) -> ClientError {
        ClientError::Closed {
            node: self.shared.addr(self.node),
        }
    }

    /// The outcome of a one-reply request from the first message for it (blocking and async
    /// waits alike).
    pub(crate) fn finish(&mut self, event: Routed) -> Result<Reply, ClientError> {
        match event {
            Routed::Reply(reply) => {
                self.finished = true;
                Ok(reply)
            }
            Routed::Failed(error) => {
                self.finished = true;
                Err(error)
            }
            // A streaming request sent through the one-reply API: stop it rather than leave it
            // paused on the node holding a slot; the drop then cancels it.
            Routed::Item { .. } => {
                self.control(ControlCode::Stop, Vec::new());
                Err(ClientError::protocol(
                    self.shared.addr(self.node),
                    "the node answered with a stream of items; use Client::stream for this request",
                ))
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            let command = Command::Cancel {
                node: self.node,
                request_id: self.request_id,
            };
            let _ = self.shared.send(command, self.node);
        }
    }
}

/// A submitted request. Many may be outstanding on one connection; [`Pending::wait`] blocks for
/// this one's Reply. Dropping it unwaited cancels it (the reply is then discarded).
pub struct Pending {
    ticket: Ticket,
    rx: Receiver<Routed>,
    deadline: Instant,
}

impl Pending {
    pub(crate) fn new(ticket: Ticket, rx: Receiver<Routed>, deadline: Instant) -> Pending {
        Pending {
            ticket,
            rx,
            deadline,
        }
    }

    /// The request id on the wire.
    pub fn request_id(&self) -> u64 {
        self.ticket.request_id
    }

    /// Waits for the Reply, until `request_timeout_ms` after submission. On a timeout the
    /// client checks that the node still answers at all (`crate::probe`: if not, it is counted
    /// down and requests to it fail at once until it is back).
    pub fn wait(self) -> Result<Reply, ClientError> {
        self.wait_then(Ticket::timed_out)
    }

    /// [`Pending::wait`] without the probe that follows a timeout (for the probe itself).
    pub(crate) fn wait_unprobed(self) -> Result<Reply, ClientError> {
        self.wait_then(Ticket::timeout_error)
    }

    fn wait_then(mut self, on_timeout: fn(&Ticket) -> ClientError) -> Result<Reply, ClientError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(remaining) {
            Ok(event) => self.ticket.finish(event),
            Err(RecvTimeoutError::Timeout) => Err(on_timeout(&self.ticket)),
            Err(RecvTimeoutError::Disconnected) => Err(self.ticket.closed_error()),
        }
    }
}

/// The caller's side of one stream's flow control: widens the initial credit to the configured
/// window, grants credit back as items are taken, and stops the stream. Shared by [`Stream`]
/// and the members of a [`crate::StreamSet`].
pub(crate) struct StreamControl {
    pub(crate) ticket: Ticket,
    /// Items taken by the caller since credit was last granted.
    consumed: u32,
    grant_batch: u32,
    stopped: bool,
}

impl StreamControl {
    /// For a stream whose request was just sent.
    pub(crate) fn open(ticket: Ticket) -> StreamControl {
        let window = ticket.shared.options.effective_window();
        let initial = node_core::protocol::codes::INITIAL_STREAM_CREDIT;
        if window > initial {
            ticket.control(
                ControlCode::Credit,
                (window - initial).to_le_bytes().to_vec(),
            );
        }
        StreamControl {
            ticket,
            consumed: 0,
            // Grant in quarters of the window: one Control frame per few items rather than per
            // item, while the node still never runs dry if the caller keeps up.
            grant_batch: (window / 4).max(1),
            stopped: false,
        }
    }

    pub(crate) fn stop(&mut self) {
        if !self.stopped && !self.ticket.finished {
            self.stopped = true;
            self.ticket.control(ControlCode::Stop, Vec::new());
        }
    }

    /// Takes one message of this stream: counts items for credit, marks the end.
    pub(crate) fn on_event(&mut self, event: Routed) -> Result<StreamEvent, ClientError> {
        match event {
            Routed::Item { code, body } => {
                self.consumed_one();
                Ok(StreamEvent::Item { code, body })
            }
            Routed::Reply(reply) => {
                self.ticket.finished = true;
                Ok(StreamEvent::End(reply))
            }
            Routed::Failed(error) => {
                self.ticket.finished = true;
                Err(error)
            }
        }
    }

    fn consumed_one(&mut self) {
        self.consumed += 1;
        if self.consumed >= self.grant_batch && !self.stopped {
            let grant = std::mem::take(&mut self.consumed);
            self.ticket
                .control(ControlCode::Credit, grant.to_le_bytes().to_vec());
        }
    }
}

impl Drop for StreamControl {
    fn drop(&mut self) {
        // The ticket's own drop then sends Cancel, so items still in flight are discarded.
        if !self.ticket.finished && !self.stopped {
            self.ticket.control(ControlCode::Stop, Vec::new());
        }
    }
}

/// A streaming request. Iterate it: zero or more `StreamEvent::Item`s, then `StreamEvent::End`.
///
/// Flow control: the node may send as many items as the client has granted credit for. The
/// stream grants credit back as the caller takes items from it, so a caller that stops calling
/// `next()` pauses the node once the window is used up; calling it again resumes. `stop()` asks
/// the node to end the stream early (items already on their way still arrive, then `End`);
/// dropping an unfinished stream stops it and discards the rest.
pub struct Stream {
    control: StreamControl,
    rx: Receiver<Routed>,
}

impl Stream {
    /// Starts the caller's side of a stream whose request was just sent.
    pub(crate) fn open(ticket: Ticket, rx: Receiver<Routed>) -> Stream {
        Stream {
            control: StreamControl::open(ticket),
            rx,
        }
    }

    /// The request id on the wire.
    pub fn request_id(&self) -> u64 {
        self.control.ticket.request_id
    }

    /// Asks the node to end the stream now. Keep calling `next()` to receive the items already
    /// sent and the final `End`.
    pub fn stop(&mut self) {
        self.control.stop();
    }

    /// Like `next()`, with its own wait limit instead of `request_timeout_ms` (for change
    /// streams that may be quiet for long). A timeout does not end the stream.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<StreamEvent, ClientError>> {
        if self.control.ticket.finished {
            return None;
        }
        let event = match self.rx.recv_timeout(timeout) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                return Some(Err(self.control.ticket.timeout_error()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.control.ticket.finished = true;
                return Some(Err(self.control.ticket.closed_error()));
            }
        };
        Some(self.control.on_event(event))
    }
}

impl Iterator for Stream {
    type Item = Result<StreamEvent, ClientError>;

    /// The next event, waiting up to `request_timeout_ms` for it; `None` after `End` or an
    /// error that ended the stream.
    fn next(&mut self) -> Option<Self::Item> {
        let timeout = Duration::from_millis(self.control.ticket.shared.options.request_timeout_ms);
        self.next_timeout(timeout)
    }
}
