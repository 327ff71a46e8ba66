//! PutBatch: store an LZ4 batch of records in one channel, all or nothing (every record is
//! checked before any is stored). Listeners see each record.

use super::{bad_request, engine_error};
use crate::service::DhtNode;
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::decode_put_batch;
use node_core::protocol::wire::put_u64;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let (channel, batch) = match decode_put_batch(request.body) {
        Ok(decoded) => decoded,
        Err(error) => return bad_request(reply, error),
    };
    let DhtNode {
        engine,
        batch_scratch,
        ..
    } = node;
    let records = match decode_batch(batch, batch_scratch) {
        Ok(records) => records,
        Err(error) => {
            reply.error(Status::BadRequest, format!("batch: {error}"));
            return Handled::Replied;
        }
    };
    match engine.put_batch(channel, records) {
        Ok(stored) => reply.send_with(Status::Ok, |out| put_u64(out, stored)),
        Err(error) => return engine_error(reply, error),
    }
    Handled::Replied
}
