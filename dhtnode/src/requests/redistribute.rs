//! Redistribute (admins only when authentication is on): give this node a new range and hand
//! the records outside it to the nodes that own them now (see [`crate::redistribution`]).
//!
//! Before anything changes the request is checked (targets distinct, ranges not overlapping,
//! every position of the node's current range owned by the node or a target afterwards) and
//! the new range is written to the state file; then writes outside the new range are refused
//! (WrongNode) and the worker starts. The reply is a stream of Progress items (records moved /
//! to move, failed attempts, the last failure) ending with Ok (`u64 moved`, `u64 stranded`).
//! A client that goes away does not stop the redistribution; a second Redistribute while one
//! runs gets Busy.

use crate::redistribution::{Progress, StartError};
use crate::service::DhtNode;
use node_core::protocol::dht::{RedistributeRequest, ITEM_PROGRESS};
use node_core::protocol::Status;
use node_core::server::{
    ErrorReply, Handled, Outcome, Reply, Request, StreamHandle, StreamOut, StreamStep, StreamTask,
};
use std::sync::Arc;

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    _reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let redistribute = RedistributeRequest::decode(request.body)?;
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    let DhtNode {
        engine,
        redistributor,
        ..
    } = node;
    let progress = redistributor
        .start(engine, redistribute, &request.client.name)
        .map_err(start_error)?;
    Ok(Handled::Stream(Box::new(ProgressStream {
        progress,
        sent_generation: None,
        watched: None,
        final_item_sent: false,
    })))
}

/// The reply to a Redistribute that did not start (an internal failure is logged too).
fn start_error(error: StartError) -> ErrorReply {
    let status = match error {
        StartError::Busy { .. } => Status::Busy,
        StartError::Invalid(_) => Status::BadRequest,
        StartError::State(_) | StartError::Spawn(_) => Status::InternalError,
    };
    if status == Status::InternalError {
        tracing::error!("Redistribute failed: {error}");
    }
    ErrorReply::new(status, error.to_string())
}

/// The Progress stream of one Redistribute.
struct ProgressStream {
    progress: Arc<Progress>,
    /// The progress generation of the last item sent.
    sent_generation: Option<u64>,
    watched: Option<StreamHandle>,
    final_item_sent: bool,
}

impl ProgressStream {
    fn send_progress(&mut self, out: &mut StreamOut<'_>) {
        self.sent_generation = Some(self.progress.generation());
        let snapshot = self.progress.snapshot();
        out.item_with(ITEM_PROGRESS, |body| snapshot.encode(body));
    }

    fn end(&mut self, node: &mut DhtNode) {
        if let Some(handle) = self.watched.take() {
            node.redistributor.unwatch(handle);
        }
    }
}

impl StreamTask<DhtNode> for ProgressStream {
    fn resume(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        if self.watched.is_none() {
            if !node.redistributor.watch(out.handle()) {
                out.finish(
                    Status::Busy,
                    b"too many clients watch this redistribution; it runs on (ask \
                      GetRedistribution for its progress)",
                );
                return StreamStep::Done;
            }
            self.watched = Some(out.handle());
        }
        if self.progress.is_finished() {
            if !self.final_item_sent {
                self.final_item_sent = true;
                self.send_progress(out);
                return StreamStep::Continue;
            }
            self.end(node);
            if self.progress.is_cancelled() {
                out.finish(
                    Status::ShuttingDown,
                    b"the node is shutting down; the redistribution resumes when it starts again",
                );
            } else {
                let done = self.progress.done();
                let mut body = Vec::with_capacity(16);
                done.encode(&mut body);
                out.finish(Status::Ok, &body);
            }
            return StreamStep::Done;
        }
        if self.sent_generation != Some(self.progress.generation()) {
            self.send_progress(out);
            return StreamStep::Continue;
        }
        StreamStep::Wait
    }

    fn cancel(&mut self, node: &mut DhtNode) {
        self.end(node);
    }
}
