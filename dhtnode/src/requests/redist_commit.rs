//! RedistCommit (admins only when authentication is on): make every record of a channel that
//! this node holds now durable, and say which process instance holds them. The node dumps the
//! channel (the dump file written, fsynced and renamed into place) and then replies Ok with
//! its instance id; a sender deletes the records it moved here only when that id is the one
//! its RedistBatch replies named (a node that restarted in between may have lost them). A
//! channel that does not exist has nothing to write: Ok at once. A node that keeps no dumps
//! replies at once too.

use crate::service::DhtNode;
use node_core::protocol::dht::{check_channel_name, decode_channel};
use node_core::protocol::wire::put_u64;
use node_core::protocol::Status;
use node_core::server::{
    ErrorReply, Handled, Outcome, Reply, Request, StreamOut, StreamStep, StreamTask,
};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let channel = decode_channel(request.body)?;
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    check_channel_name(channel)?;
    let instance = node.redistributor.instance();
    let DhtNode { engine, dumper, .. } = node;
    let ticket = match dumper {
        Some(dumper) => dumper
            .commit_channel(engine, channel)
            .map_err(|error| ErrorReply::new(Status::InternalError, error))?,
        None => None,
    };
    match ticket {
        Some(ticket) => Ok(Handled::Stream(Box::new(CommitWait { ticket, instance }))),
        None => {
            reply.send_with(Status::Ok, |out| put_u64(out, instance));
            Ok(Handled::Replied)
        }
    }
}

/// Waits for the commit dump; a stream with no items, whose Reply comes when the dump is done.
struct CommitWait {
    ticket: u64,
    instance: u64,
}

impl StreamTask<DhtNode> for CommitWait {
    fn is_deferred_reply(&self) -> bool {
        true
    }

    fn resume(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        let outcome = node
            .dumper
            .as_mut()
            .and_then(|dumper| dumper.take_commit(self.ticket));
        match outcome {
            None => {
                node.commit_streams.insert(self.ticket, out.handle());
                StreamStep::Wait
            }
            Some(result) => {
                node.commit_streams.remove(&self.ticket);
                match result {
                    Ok(()) => out.finish(Status::Ok, &self.instance.to_le_bytes()),
                    Err(error) => out.finish_error(Status::InternalError, error),
                }
                StreamStep::Done
            }
        }
    }

    fn cancel(&mut self, node: &mut DhtNode) {
        node.commit_streams.remove(&self.ticket);
        if let Some(dumper) = &mut node.dumper {
            dumper.forget_commit(self.ticket);
        }
    }
}
