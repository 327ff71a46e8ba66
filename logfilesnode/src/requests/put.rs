//! Put: append one record to a channel (creating it). Checks, in order: channel name and the
//! channel limit, empty value, value size. Acknowledged per the fsync policy
//! ([`LogfilesNode::acknowledge`]).

use super::{bad_request, engine_error};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::PutRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let put = match PutRequest::decode(request.body) {
        Ok(put) => put,
        Err(error) => return bad_request(reply, error),
    };
    match node.engine.put(put.channel, put.key, put.value) {
        Ok(tickets) => node.acknowledge(reply, &[], tickets),
        Err(error) => engine_error(reply, error),
    }
}
