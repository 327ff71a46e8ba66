//! PutBatch: append an LZ4 batch of records to one channel, all or nothing as far as checks go
//! (the engine checks every record before any is written: [`crate::engine::Engine::put_batch`]).
//! A disk error part-way takes back the records still buffered: InternalError when that is all
//! of them, NotDurable naming how many stay when some were written already. Acknowledged like
//! Put, with the count stored.

use crate::service::LogfilesNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::logfiles::decode_put_batch;
use node_core::protocol::Status;
use node_core::server::{ErrorReply, Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let (channel, batch) = decode_put_batch(request.body)?;
    // The node's buffer, lent for the request (the records borrow from it).
    let mut scratch = std::mem::take(&mut node.batch_scratch);
    let outcome = store(node, channel, batch, &mut scratch, reply);
    node.batch_scratch = scratch;
    outcome
}

fn store(
    node: &mut LogfilesNode,
    channel: &str,
    batch: &[u8],
    scratch: &mut Vec<u8>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let records = decode_batch(batch, scratch)
        .map_err(|error| ErrorReply::bad_request(format!("batch: {error}")))?;
    let all = records.clone();
    match node.engine.put_batch(channel, records) {
        Ok(tickets) => {
            let stored = tickets.count();
            Ok(node.acknowledge(reply, &stored.to_le_bytes(), tickets))
        }
        Err(failure) if failure.stored == 0 => Err(failure.error.into()),
        Err(failure) => Err(ErrorReply::new(
            Status::NotDurable,
            format!(
                "stored {} of {} records (the others were not: {})",
                failure.stored,
                all.count(),
                failure.error
            ),
        )),
    }
}
