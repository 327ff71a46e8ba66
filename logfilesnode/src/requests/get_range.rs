//! GetRange: stream the records of `[from, to]` (inclusive) whose value passes the filter, in key
//! order, as LZ4 batches under the client's credit. See [`super::read`].

use super::{bad_request, check_channel_name};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::GetRangeRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let get_range = match GetRangeRequest::decode(request.body) {
        Ok(get_range) => get_range,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel_name(get_range.channel, reply) {
        return handled;
    }
    super::read::start(
        node,
        "GetRange",
        get_range.channel,
        get_range.from,
        get_range.to,
        get_range.filter,
        reply,
    )
}
