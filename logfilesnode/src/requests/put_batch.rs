//! PutBatch: append an LZ4 batch of records to one channel, all or nothing as far as checks go
//! (every record is checked before any is written; a disk error part-way is reported and the
//! records before it stay). Acknowledged like Put, with the count stored.

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
    let mut stored = 0u64;
    for (key, value) in records {
        if let Err(error) = node.engine.append(channel, key, value) {
            return engine_error(reply, error);
        }
        stored += 1;
    }
    node.acknowledge(reply, &stored.to_le_bytes())
}
