//! Writes that any node may take (logfiles puts, queue pushes): what one node's answer means
//! for the write. The blocking and the async clients walk the nodes in turn the same way, and
//! judge each answer with [`judge_write`], so a node that cannot take a write now is skipped by
//! both for the same reasons.

use crate::error::ClientError;
use crate::reply::Reply;
use node_core::protocol::Status;

/// One node's answer to a write.
#[derive(Debug)]
pub(crate) enum WriteStep {
    /// The node stored it (its Ok reply).
    Stored(Reply),
    /// The node cannot take it now (down, unreachable, full, ...): try the next one; the error
    /// is what the write fails with if no node takes it.
    Next(ClientError),
    /// The write failed (a refusal another node would repeat, a protocol error).
    Failed(ClientError),
}

/// Judges `result`, the answer of one node to write `request`. `elsewhere` says which errors
/// send the write to the next node.
pub(crate) fn judge_write(
    result: Result<Reply, ClientError>,
    elsewhere: fn(&ClientError) -> bool,
    request: &str,
) -> WriteStep {
    match result.and_then(Reply::into_result) {
        Ok(reply) if reply.status == Status::Ok => WriteStep::Stored(reply),
        Ok(reply) => WriteStep::Failed(ClientError::protocol(
            reply.node,
            format!("{request} answered {:?}", reply.status),
        )),
        Err(error) if elsewhere(&error) => WriteStep::Next(error),
        Err(error) => WriteStep::Failed(error),
    }
}
