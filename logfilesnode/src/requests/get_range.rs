//! GetRange: stream the records of `[from, to]` (inclusive) whose value passes the filter, in key
//! order, as LZ4 batches (uncompressed ones when the request's flags ask) under the client's
//! credit. See [`super::read`].

use super::{bad_request, check_channel_name};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::GetRangeRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let (get_range, flags) = match GetRangeRequest::decode_with(request.body) {
        Ok(decoded) => decoded,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel_name(get_range.channel, reply) {
        return handled;
    }
    let read = super::read::ReadRequest {
        name: "GetRange",
        channel: get_range.channel,
        from: get_range.from,
        to: get_range.to,
        filter: get_range.filter,
        flags,
    };
    super::read::start(node, read, reply)
}
