//! GetRange: stream the records of `[from, to]` (inclusive) whose value passes the filter, in key
//! order, as LZ4 batches under the client's credit. See [`super::read`].

use crate::service::LogfilesNode;
use node_core::protocol::logfiles::{check_channel_name, GetRangeRequest};
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let get_range = GetRangeRequest::decode(request.body)?;
    check_channel_name(get_range.channel)?;
    Ok(super::read::start(
        node,
        "GetRange",
        get_range.channel,
        get_range.from,
        get_range.to,
        get_range.filter,
        reply,
    ))
}
