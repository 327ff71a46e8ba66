//! Put: store a value under a key (overwriting), creating the channel if needed. Checks, in
//! order: channel name, key in range, value not empty, value size, node size limit.

use super::{bad_request, done};
use crate::service::DhtNode;
use node_core::protocol::dht::PutRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let put = match PutRequest::decode(request.body) {
        Ok(put) => put,
        Err(error) => return bad_request(reply, error),
    };
    done(reply, node.engine.put(put.channel, put.key, put.value))
}
