//! PutBatch: append an LZ4 batch of records to one channel, all or nothing as far as checks go
//! (every record is checked before any is written). A disk error part-way takes back the records
//! still buffered: InternalError when that is all of them, NotDurable naming how many stay when
//! some were written already. Acknowledged like Put, with the count stored.

use super::{bad_request, engine_error};
use crate::service::LogfilesNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::logfiles::decode_put_batch;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let (channel, batch) = match decode_put_batch(request.body) {
        Ok(decoded) => decoded,
        Err(error) => return bad_request(reply, error),
    };
    let mut scratch = std::mem::take(&mut node.batch_scratch);
    let handled = store(node, channel, batch, &mut scratch, reply);
    node.batch_scratch = scratch;
    handled
}

fn store(
    node: &mut LogfilesNode,
    channel: &str,
    batch: &[u8],
    scratch: &mut Vec<u8>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let records = match decode_batch(batch, scratch) {
        Ok(records) => records,
        Err(error) => {
            reply.error(Status::BadRequest, format!("batch: {error}"));
            return Handled::Replied;
        }
    };
    if let Err(error) = node.engine.check_channel(channel) {
        return engine_error(reply, error);
    }
    if let Some(error) = records
        .clone()
        .find_map(|(key, value)| node.engine.check_record(key, value).err())
    {
        return engine_error(reply, error);
    }
    let all = records.clone();
    match node.engine.put_batch(channel, records) {
        Ok(tickets) => {
            let stored = tickets.count();
            node.acknowledge(reply, &stored.to_le_bytes(), tickets)
        }
        Err(failure) if failure.stored == 0 => engine_error(reply, failure.error),
        Err(failure) => {
            reply.error(
                Status::NotDurable,
                format!(
                    "stored {} of {} records (the others were not: {})",
                    failure.stored,
                    all.count(),
                    failure.error
                ),
            );
            Handled::Replied
        }
    }
}
