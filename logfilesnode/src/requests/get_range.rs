//! GetRange: stream the records of `[from, to]` (inclusive) whose value passes the filter, in key
//! order, as LZ4 batches (uncompressed ones when the request's flags ask) under the client's
//! credit. See [`super::read`].

use crate::service::LogfilesNode;
use node_core::protocol::logfiles::{check_channel_name, GetRangeRequest};
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let (get_range, flags) = GetRangeRequest::decode_with(request.body)?;
    check_channel_name(get_range.channel)?;
    let read = super::read::ReadRequest {
        name: "GetRange",
        channel: get_range.channel,
        from: get_range.from,
        to: get_range.to,
        filter: get_range.filter,
        flags,
    };
    Ok(super::read::start(node, read, reply))
}
